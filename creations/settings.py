"""One settings object, read from the environment (prefix PHOENIX_) once per process.

Every configurable value of the domain, the steps and the API lives here; nothing else reads
os.environ. Values are validated when read, so a bad deployment fails at start with a message
that names the variable.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHOENIX_", extra="ignore", frozen=True)

    # --- store -------------------------------------------------------------------------------
    store: Literal["sqlite", "firestore"] = "sqlite"
    sqlite_path: Path = Path(".data/phoenix.sqlite3")
    # Firestore: project and database; FIRESTORE_EMULATOR_HOST (read by the client) points it at
    # the emulator.
    firestore_project: str = "phoenix-local"
    firestore_database: str = "(default)"

    # --- costs (tokens) ----------------------------------------------------------------------
    cost_image: int = Field(1, ge=0)
    cost_video: int = Field(10, ge=0)

    # --- media storage (Cloudflare R2 in production; any S3 API) -------------------------------
    s3_endpoint_url: str | None = None
    s3_region: str = "auto"
    s3_bucket: str = "phoenix-media"
    s3_access_key_id: str | None = None
    s3_secret_access_key: str | None = None
    # Public URL prefix of the bucket (R2 custom domain / r2.dev); when unset, presigned GETs.
    public_base_url: str | None = None
    presign_ttl_seconds: int = Field(3600, ge=1, le=604800)
    staging_prefix: str = "staging/"

    # --- generation (google-genai, Vertex mode) --------------------------------------------------
    gcp_project: str = "phoenix-local"
    gcp_region: str = "us-central1"
    genai_base_url: str | None = None          # set to the local generation server
    genai_api_version: str = "v1beta1"
    genai_static_token: str | None = None      # offline credential for the local server
    image_model: str = "imagen-4.0-generate-001"
    video_model: str = "veo-3.0-generate-001"
    video_poll_seconds: float = Field(5.0, gt=0)
    video_deadline_seconds: float = Field(540.0, gt=0)
    image_timeout_seconds: float = Field(120.0, gt=0)

    # --- API -----------------------------------------------------------------------------------
    auth_mode: Literal["firebase", "local"] = "local"
    firebase_project_id: str | None = None
    local_auth_secret: str = "phoenix-local-dev-secret"
    max_active_per_user: int = Field(5, ge=1)
    trigger: Literal["local", "executions", "tasks"] = "local"
    workflow_name: str = "creation"
    local_engine_url: str = "http://127.0.0.1:8081"
    tasks_queue_image: str = "creations-image"
    tasks_queue_video: str = "creations-video"
    tasks_service_account: str | None = None
    executions_endpoint: str | None = None     # override of workflowexecutions.googleapis.com
    tasks_endpoint: str | None = None          # override of cloudtasks.googleapis.com
    trigger_timeout_seconds: float = Field(10.0, gt=0)
    # A retried POST (same Idempotency-Key) starts the execution again only when the creation is
    # still pending with no execution recorded this long after it was created: the first request
    # then died between its commit and its trigger.
    retrigger_after_seconds: float = Field(60.0, gt=0)
    # Live status streams (GET /v1/creations/{id}/events): open streams per user and API process
    # (beyond: 429), how long one stream lasts before the client reconnects with Last-Event-ID,
    # the heartbeat (and slow re-read) interval, and how often the SQLite store is checked for
    # other processes' commits.
    events_max_streams_per_user: int = Field(3, ge=1)
    events_max_stream_seconds: float = Field(900.0, gt=0)
    events_heartbeat_seconds: float = Field(15.0, gt=0)
    events_change_check_seconds: float = Field(0.1, gt=0)

    def cost_of(self, creation_type: str) -> int:
        return self.cost_video if creation_type == "video" else self.cost_image


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
