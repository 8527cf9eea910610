"""One settings object, read from the environment (prefix PHOENIX_) once per process.

Every configurable value of the domain, the steps and the API lives here; nothing else reads
os.environ. Values are validated when read, so a bad deployment fails at start with a message
that names the variable.
"""
from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Literal

from pydantic import AliasChoices, Field
from pydantic_settings import BaseSettings, SettingsConfigDict

# The secret every copy of the source once knew: refused, so old configurations fail loudly.
PUBLIC_LOCAL_SECRET = "phoenix-local-dev-secret"
MIN_LOCAL_SECRET_CHARS = 32
_LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="PHOENIX_", extra="ignore", frozen=True, populate_by_name=True)

    # --- store -------------------------------------------------------------------------------
    store: Literal["sqlite", "firestore"] = "sqlite"
    sqlite_path: Path = Path(".data/phoenix.sqlite3")
    # Firestore: project and database; FIRESTORE_EMULATOR_HOST (read by the client) points it at
    # the emulator.
    firestore_project: str = "phoenix-local"
    firestore_database: str = "(default)"
    # Set by the Firestore emulator's users; then the Firestore store is not production data.
    firestore_emulator_host: str | None = Field(None, validation_alias=AliasChoices(
        "FIRESTORE_EMULATOR_HOST", "firestore_emulator_host"))

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
    # Local (HMAC) tokens only when asked for, with a secret of the deployment's own (`phoenix dev`
    # makes one per data dir): see `refusal` for the combinations the API refuses to start with.
    auth_mode: Literal["firebase", "local"] = "firebase"
    firebase_project_id: str | None = None
    local_auth_secret: str | None = Field(None, repr=False)
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
    # The edge of the API (docs/security.md): request bodies larger than this answer 413; a body
    # (or the request headers) not received within these many seconds ends the request (408 /
    # the connection is closed); an idle keep-alive connection is closed after keep_alive.
    max_body_bytes: int = Field(64 * 1024, ge=1024, le=16 * 1024 * 1024)
    body_timeout_seconds: float = Field(20.0, gt=0)
    header_timeout_seconds: float = Field(10.0, gt=0)
    keep_alive_seconds: float = Field(5.0, gt=0)
    host: str = "127.0.0.1"          # where `python -m api` listens (the image sets 0.0.0.0)
    port: int = Field(8080, ge=0, le=65535, validation_alias=AliasChoices("PORT", "PHOENIX_PORT", "port"))

    # --- where this process runs ------------------------------------------------------------------
    # Cloud Run sets K_SERVICE in a service: the API is then in production, whatever else says.
    # (CLOUD_RUN_JOB tells nothing: the local stack sets it for its step jobs, as Cloud Run does.)
    k_service: str | None = Field(None, validation_alias=AliasChoices("K_SERVICE", "k_service"))

    def cost_of(self, creation_type: str) -> int:
        return self.cost_video if creation_type == "video" else self.cost_image

    # --- what is production ---------------------------------------------------------------------

    @property
    def on_cloud_run(self) -> bool:
        return bool(self.k_service)

    @property
    def production_store(self) -> bool:
        """Real users' tokens: Firestore that is not the emulator, or any store on Cloud Run."""
        return (self.store == "firestore" and not self.firestore_emulator_host) or self.on_cloud_run

    @property
    def production_trigger(self) -> bool:
        """A trigger that starts real Workflows executions (Google's endpoint, not a loopback one)."""
        if self.trigger == "executions":
            return not _loopback_url(self.executions_endpoint)
        if self.trigger == "tasks":
            return not _loopback_url(self.tasks_endpoint)
        return False

    def refusal(self, role: Literal["api", "job"], *, host: str | None = None) -> str | None:
        """Why this process must not start with these settings, as one line naming the variable
        to set; None when the combination is safe. `host` is where the API listens, when known."""
        if role == "api":
            return self._api_refusal(host)
        if self.genai_base_url and self.production_store:
            return ("PHOENIX_GENAI_BASE_URL points generation at a local server while the store holds real "
                    "users' tokens: unset PHOENIX_GENAI_BASE_URL")
        if _loopback_url(self.s3_endpoint_url) and self.production_store:
            return ("PHOENIX_S3_ENDPOINT_URL points media at a loopback server while the store holds real "
                    "users' tokens: set PHOENIX_S3_ENDPOINT_URL to the R2 endpoint")
        return None

    def _api_refusal(self, host: str | None) -> str | None:
        if self.auth_mode == "local":
            fix = "set PHOENIX_AUTH_MODE=firebase (and PHOENIX_FIREBASE_PROJECT_ID)"
            if not self.local_auth_secret:
                return ("PHOENIX_AUTH_MODE=local needs PHOENIX_LOCAL_AUTH_SECRET (`phoenix dev` makes one per "
                        f"data dir); in production {fix}")
            if self.local_auth_secret == PUBLIC_LOCAL_SECRET or len(self.local_auth_secret) < MIN_LOCAL_SECRET_CHARS:
                return (f"PHOENIX_LOCAL_AUTH_SECRET is public or shorter than {MIN_LOCAL_SECRET_CHARS} characters: "
                        "set PHOENIX_LOCAL_AUTH_SECRET to a random secret (e.g. `python -c 'import secrets; "
                        "print(secrets.token_urlsafe(32))'`)")
            if host is not None and not is_loopback(host):
                return f"local tokens are accepted on loopback only, not on {host}: {fix}"
            if self.on_cloud_run:
                return f"PHOENIX_AUTH_MODE=local on Cloud Run: {fix}"
            if self.production_store:
                return f"PHOENIX_AUTH_MODE=local with the production Firestore store: {fix}"
            if self.production_trigger:
                return f"PHOENIX_AUTH_MODE=local with the production trigger PHOENIX_TRIGGER={self.trigger}: {fix}"
        elif not self.firebase_project_id:
            return ("PHOENIX_AUTH_MODE=firebase needs PHOENIX_FIREBASE_PROJECT_ID (for the local stack, "
                    "run `phoenix dev`)")
        if self.trigger == "local" and (self.production_store or self.on_cloud_run):
            return ("PHOENIX_TRIGGER=local starts executions on the local engine while the store holds real users' "
                    "tokens: set PHOENIX_TRIGGER=tasks (or executions)")
        if self.store == "sqlite" and self.on_cloud_run:
            return ("PHOENIX_STORE=sqlite on Cloud Run would keep tokens in a file the instance loses: "
                    "set PHOENIX_STORE=firestore")
        return None


class UnsafeSettings(ValueError):
    """The settings combine production and local pieces in a way that must not serve (one line)."""


def is_loopback(host: str) -> bool:
    import ipaddress

    host = host.strip("[]")
    if host in _LOOPBACK_HOSTS:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _loopback_url(url: str | None) -> bool:
    if not url:
        return False
    from urllib.parse import urlsplit

    return is_loopback(urlsplit(url).hostname or "")


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings()
