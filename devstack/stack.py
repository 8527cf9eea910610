"""The local stack: a small cloud on loopback, wired to the production code.

    S3 server (moto)            ← media storage (boto3, the same code as for R2)
    generation server           ← google-genai in Vertex mode (Imagen / Veo REST paths)
    Workflows engine + its Executions REST API
        jobs.run connector      → the step entry points (subprocesses, or in-process)
        Firestore connector     → the configured store
    API (FastAPI on uvicorn)    → trigger "local": the Executions REST API of the engine

Production settings (`store="firestore"`, `trigger="tasks"`): Google's Firestore emulator is the
store of the API, the jobs and the operator tools, and the workflow's Firestore connector is
forwarded to the emulator's own REST API (devstack/firestore_connector.py); the API enqueues a
Cloud Tasks HTTP task per creation attempt on the local Cloud Tasks (localcloud/cloudtasks.py),
which delivers it to the engine's Executions REST API as Cloud Tasks does to Google's.

Everything keeps its state under the data dir: the store and the engine in SQLite files, the
media written through to DATA_DIR/s3 by the S3 stand-in (its own process group, so Ctrl-C does
not stop it first), the step jobs' logs in DATA_DIR/jobs under names never reused. Neither Ctrl-C
nor a crash of the stack loses a draft's media or a job's log. The Firestore emulator keeps its
documents in memory only: they last as long as the stack. `ops.env` in the data dir holds the
settings that reach the running stack (for `phoenix dev grant` and `phoenix ops`).
"""
from __future__ import annotations

import os
import secrets
import shlex
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
from devstack.faults import Fault, Faults, unreachable_settings
from devstack.firestore_connector import EmulatorDocuments
from devstack.firestore_rest import DOCUMENTS_GET, StoreDocuments
from devstack.jobs import JOBS_RUN, JobsRunner, Mode
from localcloud.cloudtasks import CloudTasksServer, RateLimits, RetryConfig
from localcloud.firestore_emulator import FirestoreEmulator
from localcloud.firestore_meter import FirestoreMeter
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
TASKS_SERVICE_ACCOUNT = f"tasks-invoker@{PROJECT}.iam.gserviceaccount.com"
OPS_ENV_FILE = "ops.env"

# The queues as deployed: per-type rate limits (video 10/s with 5 concurrent, image 20/s with 10
# concurrent) and a retry config that keeps a dispatch that found the Executions API unavailable
# going for a while. Creation-level retries are the workflow's business, not the queue's.
QUEUE_RETRY = RetryConfig(max_attempts=10, min_backoff=1.0, max_backoff=60.0, max_doublings=4)
QUEUE_RATES = {"creations-image": RateLimits(max_dispatches_per_second=20, max_concurrent_dispatches=10),
               "creations-video": RateLimits(max_dispatches_per_second=10, max_concurrent_dispatches=5)}
SECRET_FILE = "local-auth-secret"


def local_auth_secret(data_dir: Path, *, create: bool = True) -> str:
    """The data dir's own secret for local bearer tokens (`phoenix dev token` signs with it).

    Made on first use, random, readable by its owner only (0600): a token minted for one data dir
    is worthless against another, and no secret is written in the source."""
    path = Path(data_dir) / SECRET_FILE
    if create and not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        except FileExistsError:
            pass  # another process made it first: read theirs
        else:
            with os.fdopen(fd, "w") as out:
                out.write(secrets.token_urlsafe(32) + "\n")
    try:
        if path.stat().st_mode & 0o077:
            path.chmod(0o600)  # copied or restored with looser rights: the owner's alone again
        secret = path.read_text().strip()
    except FileNotFoundError:
        raise FileNotFoundError(f"no local auth secret in {Path(data_dir).resolve()}: start the stack there first "
                                f"(phoenix dev --data-dir {data_dir})") from None
    if not secret:
        raise ValueError(f"{path} is empty: delete it and start the stack again")
    return secret


@dataclass
class StackConfig:
    data_dir: Path
    port: int = 8080  # the API's; the engine, generation, S3 and Cloud Tasks servers take the next four (0: free ports)
    host: str = "127.0.0.1"
    jobs_mode: Mode = "process"
    instant_generation: bool = False
    max_concurrent: int = 50
    clock: Clock | None = None       # tests pass a VirtualClock: backoffs cost no wall time
    extra_settings: dict[str, Any] = field(default_factory=dict)
    store: str = "sqlite"            # "firestore": Google's Firestore emulator (production's store)
    trigger: str = "local"           # "tasks": the API enqueues Cloud Tasks, as in production
    # A running emulator to use (tests share one); None with store="firestore": the stack starts one.
    firestore_emulator: FirestoreEmulator | None = None
    meter_firestore: bool = False    # count Firestore reads and writes (benchmarks)
    queue_retry: RetryConfig | None = None   # the Cloud Tasks queues' retry config (default QUEUE_RETRY)
    faults: list[str] = field(default_factory=list)   # fault switches, JOB:KIND[:TIMES][@MARKER]
    inprocess_log: Path | None = None                  # in-process jobs' JSON logs (default: stdout)

    def __post_init__(self) -> None:
        self.data_dir = Path(self.data_dir)
        if not (self.port == 0 or 1024 <= self.port <= 65531):
            raise ValueError(f"--port must be 0 (free ports) or between 1024 and 65531, not {self.port}")
        if self.jobs_mode not in ("process", "inprocess"):
            raise ValueError(f"jobs mode must be 'process' or 'inprocess', not {self.jobs_mode!r}")
        if self.max_concurrent < 1:
            raise ValueError("max_concurrent must be at least 1")
        if self.store not in ("sqlite", "firestore"):
            raise ValueError(f"--store must be 'sqlite' or 'firestore', not {self.store!r}")
        if self.trigger not in ("local", "tasks"):
            raise ValueError(f"--trigger must be 'local' or 'tasks', not {self.trigger!r}")
        for spec in self.faults:
            Fault.parse(spec)     # a bad switch stops the stack before it starts


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
        self.jobs: JobsRunner | None = None
        self.faults: Faults | None = None
        self._stops: list[Any] = []
        self._api_server = None
        self.urls: dict[str, str] = {}
        self.firestore_emulator: FirestoreEmulator | None = None
        self.firestore_meter: FirestoreMeter | None = None
        self.firestore_connector: EmulatorDocuments | None = None
        self.tasks: CloudTasksServer | None = None

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
        s3 = S3Server(cfg.host, self._port(3), own_process=True, data_dir=cfg.data_dir / "s3").start()
        self._stops.append(s3.stop)
        gen = GenServer(cfg.host, self._port(2), instant=cfg.instant_generation).start()
        self._stops.append(gen.stop)
        store_settings = self._start_firestore(cfg) if cfg.store == "firestore" else {
            "store": "sqlite", "sqlite_path": cfg.data_dir / "phoenix.sqlite3"}

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
        trigger_settings = self._start_tasks(cfg, executions.url) if cfg.trigger == "tasks" else {
            "trigger": "local", "local_engine_url": executions.url}

        settings = Settings(**{
            **store_settings,
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
            "local_auth_secret": local_auth_secret(cfg.data_dir),
            **trigger_settings,
            "workflow_name": WORKFLOW_ID,
            **cfg.extra_settings,
        })
        self.settings = settings
        self.store = open_store(settings)
        self._stops.append(self.store.close)
        self.storage = MediaStorage.from_settings(settings)
        self.storage.ensure_bucket()
        media_snapshot.import_legacy(self.storage.client, BUCKET, cfg.data_dir / "media")

        services = services_with = None
        if cfg.jobs_mode == "inprocess":
            from creations.joblog import JobLog
            from creations.pipeline import StepServices

            log = None
            if cfg.inprocess_log is not None:
                stream = open(cfg.inprocess_log, "a", encoding="utf-8")
                self._stops.append(stream.close)
                log = JobLog(stream)
            services = StepServices(settings, store=self.store, storage=self.storage, log=log)
            self._stops.append(services.close)

            def services_with(overrides: dict[str, Any]) -> StepServices:
                # Only what the overrides touch is built anew; the rest is the stack's own.
                changed = settings.model_copy(update=overrides)
                return StepServices(changed, log=log,
                                    store=None if "sqlite_path" in overrides else self.store,
                                    storage=None if "s3_endpoint_url" in overrides else self.storage)
        self.faults = Faults(self._prompt_of, unreachable_settings(cfg.data_dir))
        for spec in cfg.faults:
            self.faults.add(Fault.parse(spec))
        env = {**os.environ, **settings_env(settings), "PYTHONUNBUFFERED": "1", **self._firestore_env()}
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), os.environ.get("PYTHONPATH")) if p)
        jobs = JobsRunner(job_prefix=JOB_PREFIX, mode=cfg.jobs_mode, env=env, services=services,
                          cwd=ROOT, log_dir=cfg.data_dir / "jobs", faults=self.faults,
                          services_with=services_with)
        self.jobs = jobs
        self._stops.append(jobs.close)
        engine.connectors.bind(JOBS_RUN, jobs)
        if cfg.store == "firestore":
            # The workflow reads the very documents the API and the jobs wrote, through the
            # emulator's REST API, by their production names.
            self.firestore_connector.bind(engine.connectors)
        else:
            engine.connectors.bind(DOCUMENTS_GET, StoreDocuments(self.store).get)
        engine.deploy(WORKFLOW_ID, WORKFLOW_FILE, env={"JOB_PREFIX": JOB_PREFIX, "JOBS_LOCATION": REGION})
        # On stop, the engine ends (its in-process steps finish) before the store and the services
        # they use are closed: a step must never meet a closed database.
        self._stops.append(lambda: engine.shutdown(wait=False))
        # Creations a crash of the stack interrupted run again from their start (safe: every step
        # is idempotent and fenced by attempt), so a crash costs time, not the user's creation.
        self.resumed = engine.resume_interrupted()

        self._start_api(settings, api_socket)
        self.urls = {
            "api": f"http://{cfg.host}:{api_socket.getsockname()[1]}",
            "executions": executions.url,
            "generation": gen.url,
            "s3": s3.endpoint_url,
        }
        if self.firestore_emulator is not None:
            self.urls["firestore"] = self.firestore_emulator.url
        if self.tasks is not None:
            self.urls["cloudtasks"] = self.tasks.url
        self._write_ops_env(settings)

    def _start_firestore(self, cfg: StackConfig) -> dict[str, Any]:
        """The emulator (given, or started here), optionally behind the metering proxy; points this
        process's Firestore clients at it (FIRESTORE_EMULATOR_HOST, restored on stop)."""
        emulator = cfg.firestore_emulator
        if emulator is None:
            emulator = FirestoreEmulator().start()   # EmulatorNotInstalled says how to install it
            self._stops.append(emulator.stop)
        self.firestore_emulator = emulator
        host = emulator.address
        if cfg.meter_firestore:
            self.firestore_meter = FirestoreMeter(emulator.address).start()
            self._stops.append(self.firestore_meter.stop)
            host = self.firestore_meter.address
        self._firestore_host = host
        previous = os.environ.get("FIRESTORE_EMULATOR_HOST")
        os.environ["FIRESTORE_EMULATOR_HOST"] = host

        def restore_env() -> None:
            if previous is None:
                os.environ.pop("FIRESTORE_EMULATOR_HOST", None)
            else:
                os.environ["FIRESTORE_EMULATOR_HOST"] = previous

        self._stops.append(restore_env)
        self.firestore_connector = EmulatorDocuments(emulator.url)
        self._stops.append(self.firestore_connector.close)
        return {"store": "firestore", "firestore_project": PROJECT, "firestore_database": "(default)"}

    def _firestore_env(self) -> dict[str, str]:
        host = getattr(self, "_firestore_host", None)
        return {"FIRESTORE_EMULATOR_HOST": host} if host else {}

    def _start_tasks(self, cfg: StackConfig, executions_url: str) -> dict[str, Any]:
        """The local Cloud Tasks with the production queues; tasks POST to the engine's Executions API."""
        tasks = CloudTasksServer(host=cfg.host, port=self._port(4), clock=cfg.clock)
        for queue, rate in QUEUE_RATES.items():
            tasks.tasks.create_queue(f"projects/{PROJECT}/locations/{REGION}/queues/{queue}",
                                     retry=cfg.queue_retry or QUEUE_RETRY, rate=rate)
        tasks.start()
        self.tasks = tasks
        self._stops.append(tasks.stop)
        return {"trigger": "tasks", "tasks_endpoint": tasks.url, "executions_endpoint": executions_url,
                "tasks_service_account": TASKS_SERVICE_ACCOUNT, "local_engine_url": executions_url,
                "tasks_queue_image": "creations-image", "tasks_queue_video": "creations-video"}

    def ops_env(self, settings: Settings | None = None) -> dict[str, str]:
        """The environment that points `phoenix ops` and `phoenix dev grant` at this stack."""
        settings = settings or self.settings
        keep = ("store", "sqlite_path", "firestore_project", "firestore_database", "trigger", "local_engine_url",
                "executions_endpoint", "tasks_endpoint", "tasks_service_account", "tasks_queue_image",
                "tasks_queue_video", "gcp_project", "gcp_region", "workflow_name")
        env = {k: v for k, v in settings_env(settings).items() if k[len("PHOENIX_"):].lower() in keep}
        if settings.store == "sqlite":
            env["PHOENIX_SQLITE_PATH"] = str(Path(settings.sqlite_path).resolve())
        else:
            env.pop("PHOENIX_SQLITE_PATH", None)
        env.update(self._firestore_env())
        return env

    def _write_ops_env(self, settings: Settings) -> None:
        path = self.config.data_dir / OPS_ENV_FILE
        lines = ["# The settings that reach the running `phoenix dev` stack: set -a; . THIS_FILE; set +a"]
        lines += [f"{k}={shlex.quote(v)}" for k, v in sorted(self.ops_env(settings).items())]
        path.write_text("\n".join(lines) + "\n")
        self._stops.append(lambda: path.unlink(missing_ok=True))

    def _prompt_of(self, creation_id: str) -> str | None:
        creation = self.store.get_creation(creation_id)
        return creation.prompt if creation is not None else None

    def _start_api(self, settings: Settings, sock: socket.socket) -> None:
        import uvicorn

        from api.main import create_app
        from api.server import server_config

        host = sock.getsockname()[0]
        app = create_app(settings, store=self.store, storage=self.storage, host=host)
        server = uvicorn.Server(server_config(app, settings))
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
