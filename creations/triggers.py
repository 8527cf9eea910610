"""Starting the one Workflows execution of a creation (used by the API and the operator CLI):
the Trigger interface and its adapters.

`settings.trigger` picks one: `executions` (the Executions API, directly), `tasks` (a Cloud Tasks
HTTP task that calls the Executions API: rate limits per queue, dedup by task name) or `local`
(the Executions REST API of the local engine). The execution's argument is always
`{"creationId": id, "attempt": n}`.
"""
from __future__ import annotations

import hashlib
import json
from typing import Any, Protocol
from urllib.parse import urlsplit

from google.api_core import exceptions as core_exceptions
from google.auth.exceptions import GoogleAuthError

from creations.errors import CreationsError
from creations.model import Creation, CreationType

CLOUD_PLATFORM_SCOPE = "https://www.googleapis.com/auth/cloud-platform"
EXECUTIONS_API = "https://workflowexecutions.googleapis.com"


class TriggerFailed(CreationsError):
    """The execution could not be started; the caller refunds and fails the creation."""

    code = "TRIGGER_FAILED"
    retryable = True


class Trigger(Protocol):
    def start(self, creation: Creation) -> str | None:
        """Start the execution of the creation's current attempt. Returns the execution name when
        the backend tells it; raises TriggerFailed when the execution was not (known to be) started."""


def execution_argument(creation: Creation) -> str:
    """The workflow's argument as the JSON string the Executions API takes."""
    return json.dumps({"creationId": creation.id, "attempt": creation.attempt}, separators=(",", ":"))


def execution_labels(creation: Creation) -> dict[str, str]:
    """Labels an operator filters executions by (`labels.creation-id="..."`)."""
    return {"creation-id": creation.id, "type": creation.type.value, "attempt": str(creation.attempt)}


def workflow_path(project: str, location: str, workflow: str) -> str:
    return f"projects/{project}/locations/{location}/workflows/{workflow}"


# --- Executions API ---------------------------------------------------------------------------


class ExecutionsRestClient:
    """`create_execution` of the Executions API over its REST wire format (JSON over HTTP).

    google-cloud-workflows ships only gRPC transports for `executions_v1`; the local engine, and
    any http:// endpoint, speak REST, so this client talks REST with the library's own message
    types and error classes, on google-auth's urllib3 transport (credentials refreshed as needed).
    """

    def __init__(self, endpoint: str, credentials=None, *, pool_size: int = 64):
        import urllib3
        from google.auth.transport.urllib3 import AuthorizedHttp

        if credentials is None:
            from google.auth.credentials import AnonymousCredentials

            credentials = AnonymousCredentials()
        self.endpoint = endpoint.rstrip("/")
        self.pool = urllib3.PoolManager(maxsize=pool_size, retries=False)
        self.http = AuthorizedHttp(credentials, http=self.pool)

    def create_execution(self, *, parent: str, execution, timeout: float | None = None):
        import urllib3
        from google.cloud.workflows.executions_v1 import Execution

        response = self.http.urlopen(
            "POST",
            f"{self.endpoint}/v1/{parent}/executions",
            body=Execution.to_json(execution, indent=None).encode(),
            headers={"Content-Type": "application/json"},
            timeout=urllib3.Timeout(total=timeout) if timeout else None,
        )
        if response.status >= 400:
            raise _http_error(response.status, response.data)
        return Execution.from_json(response.data, ignore_unknown_fields=True)

    def get_json(self, path: str, params: dict[str, str] | None = None, timeout: float = 30.0) -> dict:
        """GET `/v1/{path}` as JSON: executions and their step entries (which only the REST API
        serves), for the operator CLI."""
        from urllib.parse import urlencode

        import urllib3

        query = f"?{urlencode(params)}" if params else ""
        response = self.http.urlopen("GET", f"{self.endpoint}/v1/{path}{query}", timeout=urllib3.Timeout(total=timeout))
        if response.status >= 400:
            raise _http_error(response.status, response.data)
        return json.loads(response.data)

    def close(self) -> None:
        self.pool.clear()


def executions_reader_from_settings(settings) -> ExecutionsRestClient:
    """A REST client of the Executions API the settings point at: the local engine, an
    override endpoint, or Google's, with application-default credentials."""
    if settings.trigger == "local":
        return ExecutionsRestClient(settings.local_engine_url)
    endpoint = settings.executions_endpoint or EXECUTIONS_API
    if endpoint.startswith("http://"):
        return ExecutionsRestClient(endpoint)
    import google.auth

    credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
    return ExecutionsRestClient(endpoint, credentials)


def _http_error(status: int, data: bytes) -> core_exceptions.GoogleAPICallError:
    """The api_core error for a Google JSON error answer (`{"error": {"code", "message", "status"}}`)."""
    try:
        message = json.loads(data)["error"]["message"]
    except Exception:
        message = data.decode("utf-8", "replace")[:300] or f"HTTP {status}"
    return core_exceptions.from_http_status(status, message)


class ExecutionsTrigger:
    """Starts the execution directly with `ExecutionsClient.create_execution` (or the REST client)."""

    def __init__(self, client: Any, workflow: str, *, timeout: float = 10.0):
        self.client = client
        self.workflow = workflow  # projects/P/locations/L/workflows/W
        self.timeout = timeout

    def start(self, creation: Creation) -> str | None:
        import urllib3
        from google.cloud.workflows.executions_v1 import Execution

        execution = Execution(argument=execution_argument(creation), labels=execution_labels(creation))
        try:
            started = self.client.create_execution(parent=self.workflow, execution=execution, timeout=self.timeout)
        except (core_exceptions.GoogleAPIError, GoogleAuthError, urllib3.exceptions.HTTPError, OSError,
                ValueError) as exc:  # ValueError: an answer that is not an Execution
            raise TriggerFailed(f"the workflow execution could not be started: {_describe(exc)}") from exc
        return started.name or None

    def close(self) -> None:
        close = getattr(self.client, "close", None) or getattr(getattr(self.client, "transport", None), "close", None)
        if close:
            close()


# --- Cloud Tasks ------------------------------------------------------------------------------


def task_id(creation: Creation) -> str:
    """A hashed, deterministic task id: one task per (creation, attempt), spread across the keyspace."""
    return hashlib.sha256(f"{creation.id}:{creation.attempt}".encode()).hexdigest()


class TasksTrigger:
    """Enqueues an HTTP task (per-type queue) that POSTs to the Executions API with an OAuth token.

    The task name deduplicates: a second create of the same (creation, attempt) answers
    ALREADY_EXISTS, which means the execution is already on its way.
    """

    def __init__(
        self,
        client: Any,
        *,
        queues: dict[CreationType, str],
        workflow: str,
        service_account: str,
        executions_api: str = EXECUTIONS_API,
        timeout: float = 10.0,
    ):
        self.client = client
        self.queues = queues
        self.url = f"{executions_api.rstrip('/')}/v1/{workflow}/executions"
        self.service_account = service_account
        self.timeout = timeout

    def task_for(self, creation: Creation) -> tuple[str, Any]:
        """(queue path, tasks_v2.Task) for the creation's current attempt. The body is the
        Execution to create: its argument, and the labels operators filter executions by."""
        from google.cloud import tasks_v2

        queue = self.queues[creation.type]
        task = tasks_v2.Task(
            name=f"{queue}/tasks/{task_id(creation)}",
            http_request=tasks_v2.HttpRequest(
                http_method=tasks_v2.HttpMethod.POST,
                url=self.url,
                headers={"Content-Type": "application/json"},
                body=json.dumps({"argument": execution_argument(creation),
                                 "labels": execution_labels(creation)}).encode(),
                oauth_token=tasks_v2.OAuthToken(
                    service_account_email=self.service_account, scope=CLOUD_PLATFORM_SCOPE
                ),
            ),
        )
        return queue, task

    def start(self, creation: Creation) -> str | None:
        import requests

        queue, task = self.task_for(creation)
        try:
            self.client.create_task(parent=queue, task=task, timeout=self.timeout)
        except core_exceptions.GoogleAPIError as exc:
            if not _already_exists(exc):
                raise TriggerFailed(f"the creation could not be queued: {_describe(exc)}") from exc
        except (GoogleAuthError, requests.RequestException, OSError, ValueError) as exc:
            raise TriggerFailed(f"the creation could not be queued: {_describe(exc)}") from exc
        return None  # the execution starts when the task runs; its name is not known here

    def close(self) -> None:
        close = getattr(getattr(self.client, "transport", None), "close", None)
        if close:
            close()


def _already_exists(exc: Exception) -> bool:
    """ALREADY_EXISTS, whether it came over gRPC (AlreadyExists) or REST (a 409 whose status says so)."""
    if isinstance(exc, core_exceptions.AlreadyExists):
        return True
    if isinstance(exc, core_exceptions.Conflict) and not isinstance(exc, core_exceptions.Aborted):
        response = getattr(exc, "response", None)
        try:
            status = response.json()["error"]["status"]
        except Exception:
            return False
        return status == "ALREADY_EXISTS"
    return False


def _describe(exc: Exception) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    return text.splitlines()[0][:300]


# --- configuration ----------------------------------------------------------------------------


def _http_endpoint(url: str) -> tuple[str, str]:
    """(scheme, host[:port]) of an endpoint URL; a bare host[:port] is https."""
    parts = urlsplit(url if "://" in url else f"https://{url}")
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise ValueError(f"not an http(s) endpoint: {url!r}")
    return parts.scheme, parts.netloc


def trigger_from_settings(settings) -> ExecutionsTrigger | TasksTrigger:
    """The trigger `settings.trigger` names, with clients built for its endpoint."""
    workflow = workflow_path(settings.gcp_project, settings.gcp_region, settings.workflow_name)
    timeout = settings.trigger_timeout_seconds

    if settings.trigger == "local":
        return ExecutionsTrigger(ExecutionsRestClient(settings.local_engine_url), workflow, timeout=timeout)

    if settings.trigger == "executions":
        endpoint = settings.executions_endpoint
        if endpoint and endpoint.startswith("http://"):
            return ExecutionsTrigger(ExecutionsRestClient(endpoint), workflow, timeout=timeout)
        if endpoint and endpoint.startswith("https://"):
            import google.auth

            credentials, _ = google.auth.default(scopes=[CLOUD_PLATFORM_SCOPE])
            return ExecutionsTrigger(ExecutionsRestClient(endpoint, credentials), workflow, timeout=timeout)
        from google.cloud.workflows import executions_v1

        options = {"api_endpoint": endpoint} if endpoint else None
        return ExecutionsTrigger(executions_v1.ExecutionsClient(client_options=options), workflow, timeout=timeout)

    # tasks
    from google.cloud import tasks_v2

    if not settings.tasks_service_account:
        raise ValueError(
            "PHOENIX_TASKS_SERVICE_ACCOUNT must name the service account whose OAuth token the tasks "
            "send to the Executions API (it needs roles/workflows.invoker)"
        )

    def queue_path(name: str) -> str:
        if name.startswith("projects/"):
            return name
        return tasks_v2.CloudTasksClient.queue_path(settings.gcp_project, settings.gcp_region, name)

    if settings.tasks_endpoint:
        from google.auth.credentials import AnonymousCredentials
        from google.cloud.tasks_v2.services.cloud_tasks.transports.rest import CloudTasksRestTransport

        scheme, host = _http_endpoint(settings.tasks_endpoint)
        if scheme == "http":
            transport = CloudTasksRestTransport(host=host, url_scheme="http", credentials=AnonymousCredentials())
            client = tasks_v2.CloudTasksClient(transport=transport)
        else:
            client = tasks_v2.CloudTasksClient(client_options={"api_endpoint": host})
    else:
        client = tasks_v2.CloudTasksClient()
    return TasksTrigger(
        client,
        queues={
            CreationType.IMAGE: queue_path(settings.tasks_queue_image),
            CreationType.VIDEO: queue_path(settings.tasks_queue_video),
        },
        workflow=workflow,
        service_account=settings.tasks_service_account,
        # The tasks call the Executions API the settings name (an override reaches it too).
        executions_api=settings.executions_endpoint or EXECUTIONS_API,
        timeout=timeout,
    )
