"""The local stack: a small cloud on loopback, wired to the production code.

    S3 server (moto)            ← media storage (boto3, the same code as for R2)
    generation server           ← google-genai in Vertex mode (Imagen / Veo REST paths)
    Workflows engine + its Executions REST API
        jobs.run connector      → the step entry points (subprocesses, or in-process)
        Firestore connector     → the configured store
    API (FastAPI on uvicorn)    → trigger "local": the Executions REST API of the engine

Everything keeps its state under the data dir: the store and the engine in SQLite files, the
media saved on stop and restored on start.
"""
from __future__ import annotations

import os
import socket
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from creations.settings import Settings
from creations.storage import MediaStorage
from creations.store import open_store
from devstack import media_snapshot
from devstack.firestore_rest import DOCUMENTS_GET, StoreDocuments
from devstack.jobs import JOBS_RUN, JobsRunner, Mode
from localcloud.genserver import GenServer
from localcloud.s3server import S3Server
from localcloud.workflows import Clock, ConnectorRegistry, Engine, RealClock
from localcloud.workflows.server import ExecutionsServer

ROOT = Path(__file__).resolve().parent.parent
WORKFLOW_FILE = ROOT / "workflows" / "creation.yaml"
WORKFLOW_ID = "creation"
JOB_PREFIX = "creation-"
PROJECT = "phoenix-local"
REGION = "us-central1"
BUCKET = "phoenix-media"


@dataclass
class StackConfig:
    data_dir: Path
    port: int = 8080                 # the API's; the engine, generation and S3 servers take the next three (0: free ports)
    host: str = "127.0.0.1"
    jobs_mode: Mode = "process"
    instant_generation: bool = False
    max_concurrent: int = 50
    clock: Clock | None = None       # tests pass a VirtualClock: backoffs cost no wall time
    extra_settings: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not (self.port == 0 or 1024 <= self.port <= 65532):
            raise ValueError(f"--port must be 0 (free ports) or between 1024 and 65532, not {self.port}")
        if self.jobs_mode not in ("process", "inprocess"):
            raise ValueError(f"jobs mode must be 'process' or 'inprocess', not {self.jobs_mode!r}")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")


def settings_env(settings: Settings) -> dict[str, str]:
    """The settings as the PHOENIX_* environment of a step job's process."""
    env: dict[str, str] = {}
    for name, value in settings.model_dump().items():
        if value is None:
            continue
        env[f"PHOENIX_{name.upper()}"] = str(value).lower() if isinstance(value, bool) else str(value)
    return env


class LocalStack:
    """Starts and stops every piece; `with LocalStack(config) as stack:` or start()/stop()."""

    def __init__(self, config: StackConfig):
        self.config = config
        self.settings: Settings | None = None
        self.store = None
        self.storage: MediaStorage | None = None
        self.engine: Engine | None = None
        self._stops: list[Any] = []
        self._api_server = None
        self.urls: dict[str, str] = {}

    # --- lifecycle -----------------------------------------------------------------------

    def start(self) -> LocalStack:
        cfg = self.config
        cfg.data_dir.mkdir(parents=True, exist_ok=True)
        try:
            self._start(cfg)
        except BaseException:
            self.stop()
            raise
        return self

    def _port(self, offset: int) -> int:
        return 0 if self.config.port == 0 else self.config.port + offset

    def _start(self, cfg: StackConfig) -> None:
        s3 = S3Server(cfg.host, self._port(3), own_process=True).start()
        self._stops.append(s3.stop)
        gen = GenServer(cfg.host, self._port(2), instant=cfg.instant_generation).start()
        self._stops.append(gen.stop)

        api_socket = _listen(cfg.host, self._port(0))
        engine_port = self._port(1)
        # The engine's REST server is bound before the API's settings are made, so port 0 works.
        engine = Engine(db_path=str(cfg.data_dir / "workflows.sqlite3"), clock=cfg.clock or RealClock(),
                        connectors=ConnectorRegistry(), max_concurrent=cfg.max_concurrent,
                        project_id=PROJECT, location=REGION)
        self.engine = engine
        self._stops.append(lambda: engine.shutdown(wait=False))
        executions = ExecutionsServer(engine, cfg.host, engine_port).start()
        self._stops.append(executions.stop)

        settings = Settings(**{
            "store": "sqlite",
            "sqlite_path": cfg.data_dir / "phoenix.sqlite3",
            "s3_endpoint_url": s3.endpoint_url,
            "s3_region": "us-east-1",
            "s3_bucket": BUCKET,
            "s3_access_key_id": "local",
            "s3_secret_access_key": "local",
            "genai_base_url": gen.url,
            "genai_static_token": "local",
            "gcp_project": PROJECT,
            "gcp_region": REGION,
            "video_poll_seconds": 0.25,
            "auth_mode": "local",
            "trigger": "local",
            "local_engine_url": executions.url,
            "workflow_name": WORKFLOW_ID,
            **cfg.extra_settings,
        })
        self.settings = settings
        self.store = open_store(settings)
        self._stops.append(self.store.close)
        self.storage = MediaStorage.from_settings(settings)
        self.storage.ensure_bucket()
        media_dir = cfg.data_dir / "media"
        media_snapshot.restore(self.storage.client, BUCKET, media_dir)
        self._stops.append(lambda: media_snapshot.save(self.storage.client, BUCKET, media_dir))

        services = None
        if cfg.jobs_mode == "inprocess":
            from creations.pipeline import StepServices

            services = StepServices(settings, store=self.store, storage=self.storage)
            self._stops.append(services.close)
        env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1"}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        jobs = JobsRunner(job_prefix=JOB_PREFIX, mode=cfg.jobs_mode, env=env, services=services,
                          cwd=ROOT, log_dir=cfg.data_dir / "jobs")
        self.jobs = jobs
        engine.connectors.bind(JOBS_RUN, jobs)
        engine.connectors.bind(DOCUMENTS_GET, StoreDocuments(self.store).get)
        engine.deploy(WORKFLOW_ID, WORKFLOW_FILE, env={"JOB_PREFIX": JOB_PREFIX, "JOBS_LOCATION": REGION})

        self._start_api(settings, api_socket)
        self.urls = {
            "api": f"http://{cfg.host}:{api_socket.getsockname()[1]}",
            "executions": executions.url,
            "generation": gen.url,
            "s3": s3.endpoint_url,
        }

    def _start_api(self, settings: Settings, sock: socket.socket) -> None:
        import uvicorn

        from api.main import create_app

        app = create_app(settings, store=self.store, storage=self.storage)
        server = uvicorn.Server(uvicorn.Config(app, log_level="warning", lifespan="on"))
        thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="api", daemon=True)
        thread.start()
        deadline = time.monotonic() + 20
        while not server.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the API did not start (see the log above)")
            time.sleep(0.02)
        self._api_server = server

        def stop_api() -> None:
            server.should_exit = True
            thread.join(timeout=10)
            sock.close()

        self._stops.append(stop_api)

    def stop(self) -> None:
        """Stop what was started, last first; every stop runs even if one fails."""
        errors = []
        while self._stops:
            stop = self._stops.pop()
            try:
                stop()
            except Exception as exc:  # noqa: BLE001 - report, keep stopping the rest
                errors.append(exc)
        for exc in errors:
            print(f"phoenix dev: while stopping: {exc}", file=sys.stderr)

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _listen(host: str, port: int) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Inherited by accepted connections: without it a keep-alive response written in two parts
    # waits for the client's delayed ACK (~40 ms a request).
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise RuntimeError(f"cannot listen on {host}:{port} ({exc.strerror}); pick another --port") from exc
    sock.listen(2048)
    return sock
