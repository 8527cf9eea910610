"""Image and video generation through google-genai in Vertex mode (Imagen and Veo).

Every provider failure leaves as one of three domain errors, so the workflow's retry predicate
only has to read `retryable`:
- ContentPolicy (not retryable): the safety filter refused the prompt or filtered the output;
  the message tells the user why.
- InvalidRequest (not retryable): the provider answered 400 / INVALID_ARGUMENT.
- ProviderUnavailable (retryable): 429, 5xx, timeouts, connection errors, a video that was not
  ready before the deadline. 401/403 are ProviderUnavailable with code PROVIDER_AUTH and
  retryable False: a credential problem an operator must fix.

Options (as stored on the creation; camelCase and snake_case spellings are both accepted):
`aspectRatio` ("16:9", "9:16", "1:1", "4:3", "3:4"), `negativePrompt`, `seed`, `personGeneration`,
`enhancePrompt`; for video also `durationSeconds`, `resolution` ("720p", "1080p") and
`generateAudio`. Keys that do not apply to the media type are ignored.
"""
from __future__ import annotations

import logging
import re
import time
import warnings
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from google import genai
from google.genai import errors as genai_errors
from google.genai import types
from pydantic import ValidationError

from .errors import ContentPolicy, CreationsError, InvalidRequest, ProviderUnavailable

log = logging.getLogger(__name__)

# Option name as stored on the creation (camelCase, as the REST API spells it) -> SDK field.
_IMAGE_OPTIONS = {
    "aspectRatio": "aspect_ratio",
    "negativePrompt": "negative_prompt",
    "seed": "seed",
    "personGeneration": "person_generation",
    "enhancePrompt": "enhance_prompt",
}
_VIDEO_OPTIONS = {
    **_IMAGE_OPTIONS,
    "durationSeconds": "duration_seconds",
    "resolution": "resolution",
    "generateAudio": "generate_audio",
}

# google.rpc.Code numbers, as a long-running operation's error carries them.
_RPC_NAMES = {
    1: "CANCELLED", 2: "UNKNOWN", 3: "INVALID_ARGUMENT", 4: "DEADLINE_EXCEEDED", 5: "NOT_FOUND",
    6: "ALREADY_EXISTS", 7: "PERMISSION_DENIED", 8: "RESOURCE_EXHAUSTED",
    9: "FAILED_PRECONDITION", 10: "ABORTED", 11: "OUT_OF_RANGE", 12: "UNIMPLEMENTED",
    13: "INTERNAL", 14: "UNAVAILABLE", 15: "DATA_LOSS", 16: "UNAUTHENTICATED",
}
_RETRYABLE_RPC = {"CANCELLED", "UNKNOWN", "DEADLINE_EXCEEDED", "RESOURCE_EXHAUSTED", "ABORTED",
                  "INTERNAL", "UNAVAILABLE", "DATA_LOSS"}
_AUTH_RPC = {"PERMISSION_DENIED", "UNAUTHENTICATED"}

# Google reports a prompt refused by Responsible AI filters as a 400 / INVALID_ARGUMENT whose
# message says so ("...violate Google's Responsible AI practices... Support codes: ...").
_SAFETY_MESSAGE = re.compile(
    r"responsible ai|usage guideline|safety|sensitive words|violat|prohibited|blocked",
    re.IGNORECASE)


def _transport_errors() -> tuple[type[BaseException], ...]:
    """Connection and timeout errors of whichever HTTP library google-genai picked."""
    classes: list[type[BaseException]] = []
    for module in ("httpx", "httpx2"):
        try:
            mod = __import__(module)
        except ImportError:
            continue
        transport = getattr(mod, "TransportError", None)
        if isinstance(transport, type):
            classes.append(transport)
    try:
        import requests

        classes.append(requests.exceptions.RequestException)
    except ImportError:
        pass
    return tuple(classes)


_TRANSPORT_ERRORS = _transport_errors()


@dataclass(frozen=True)
class GeneratedMedia:
    """The bytes the provider produced and their MIME type (image/png, video/mp4...)."""

    data: bytes
    mime_type: str


class Generator:
    """Makes one image or one video from a prompt, with errors classified for the workflow."""

    def __init__(self, client: genai.Client, *, image_model: str, video_model: str,
                 poll_seconds: float, deadline_seconds: float,
                 sleep: Callable[[float], None] = time.sleep,
                 monotonic: Callable[[], float] = time.monotonic):
        if poll_seconds <= 0:
            raise ValueError(f"poll_seconds must be positive, got {poll_seconds}")
        if deadline_seconds <= 0:
            raise ValueError(f"deadline_seconds must be positive, got {deadline_seconds}")
        self._client = client
        self.image_model = image_model
        self.video_model = video_model
        self.poll_seconds = poll_seconds
        self.deadline_seconds = deadline_seconds
        self._sleep = sleep
        self._monotonic = monotonic

    @classmethod
    def from_settings(cls, settings: Any, *, sleep: Callable[[float], None] = time.sleep,
                      monotonic: Callable[[], float] = time.monotonic) -> Generator:
        """A Vertex-mode client: Google's endpoint and ADC by default, or the local server with
        a static token when genai_base_url / genai_static_token are set."""
        credentials = None
        if settings.genai_static_token:
            from google.oauth2.credentials import Credentials

            credentials = Credentials(token=settings.genai_static_token)
        client = genai.Client(
            vertexai=True,
            project=settings.gcp_project,
            location=settings.gcp_region,
            credentials=credentials,
            http_options=types.HttpOptions(
                base_url=settings.genai_base_url,
                api_version=settings.genai_api_version,
                # Bounds each HTTP call (an image is one call); in milliseconds.
                timeout=int(settings.image_timeout_seconds * 1000),
            ),
        )
        return cls(client, image_model=settings.image_model, video_model=settings.video_model,
                   poll_seconds=settings.video_poll_seconds,
                   deadline_seconds=settings.video_deadline_seconds, sleep=sleep,
                   monotonic=monotonic)

    # --- images ------------------------------------------------------------------------------

    def generate_image(self, prompt: str, options: Mapping[str, Any]) -> GeneratedMedia:
        """One Imagen image for `prompt`."""
        _check_prompt(prompt)
        try:
            config = types.GenerateImagesConfig(
                number_of_images=1, include_rai_reason=True,
                **_sdk_options(options, _IMAGE_OPTIONS))
        except ValidationError as exc:
            raise InvalidRequest(f"invalid image options: {_first_problem(exc)}") from exc
        try:
            with warnings.catch_warnings():
                # generate_images is marked deprecated in favour of generate_content, which does
                # not serve Imagen models; the REST call it makes is the supported one.
                warnings.filterwarnings("ignore", message=r".*generate_images method is deprecated")
                response = self._client.models.generate_images(
                    model=self.image_model, prompt=prompt, config=config)
        except Exception as exc:  # noqa: BLE001 - every failure is classified below
            raise classify_exception(exc, "image generation") from exc

        images = (response.generated_images if response else None) or []
        for generated in images:
            image = generated.image
            if image is not None and image.image_bytes:
                return GeneratedMedia(image.image_bytes, image.mime_type or "image/png")
        reasons = [g.rai_filtered_reason for g in images if g.rai_filtered_reason]
        raise ContentPolicy(_policy_message("image", reasons))

    # --- videos ------------------------------------------------------------------------------

    def generate_video(self, prompt: str, options: Mapping[str, Any]) -> GeneratedMedia:
        """One Veo video for `prompt`, polling the operation until done or the deadline."""
        _check_prompt(prompt)
        try:
            config = types.GenerateVideosConfig(
                number_of_videos=1, **_sdk_options(options, _VIDEO_OPTIONS))
        except ValidationError as exc:
            raise InvalidRequest(f"invalid video options: {_first_problem(exc)}") from exc
        deadline = self._monotonic() + self.deadline_seconds
        try:
            operation = self._client.models.generate_videos(
                model=self.video_model, source=types.GenerateVideosSource(prompt=prompt),
                config=config)
        except Exception as exc:  # noqa: BLE001
            raise classify_exception(exc, "video generation") from exc

        last_poll_error: CreationsError | None = None
        while not operation.done:
            remaining = deadline - self._monotonic()
            if remaining <= 0:
                detail = f"; last poll failed: {last_poll_error.message}" if last_poll_error else ""
                raise ProviderUnavailable(
                    f"the video was not ready within {self.deadline_seconds:g} s "
                    f"(operation {operation.name}){detail}")
            self._sleep(min(self.poll_seconds, remaining))
            try:
                operation = self._client.operations.get(operation)
                last_poll_error = None
            except Exception as exc:  # noqa: BLE001
                error = classify_exception(exc, "polling the video operation")
                if not error.retryable:
                    raise error from exc
                # The operation keeps running on the provider's side: a failed poll is retried
                # at the next interval rather than paying for a second generation.
                log.warning("video operation poll failed, will poll again: %s", error.message)
                last_poll_error = error

        if operation.error:
            raise classify_operation_error(operation.error)
        response = operation.response or operation.result
        videos = (response.generated_videos if response else None) or []
        filtered = (response.rai_media_filtered_count or 0) if response else 0
        if filtered or not videos:
            reasons = list((response.rai_media_filtered_reasons or []) if response else [])
            raise ContentPolicy(_policy_message("video", reasons))
        video = videos[0].video
        if video is None or not video.video_bytes:
            raise ProviderUnavailable(
                "the provider returned a video without its bytes (an output storage URI is "
                "configured on the provider side?)", code="PROVIDER_BAD_RESPONSE", retryable=False)
        return GeneratedMedia(video.video_bytes, video.mime_type or "video/mp4")


# --- classification -----------------------------------------------------------------------------

def classify_exception(exc: BaseException, doing: str) -> CreationsError:
    """Map a google-genai / transport failure to ContentPolicy, InvalidRequest or
    ProviderUnavailable."""
    if isinstance(exc, CreationsError):
        return exc
    if isinstance(exc, genai_errors.APIError):
        code = int(exc.code or 0)
        status = exc.status or ""
        message = exc.message or str(exc)
        text = f"{doing} failed: {code} {status}: {message}".replace("  ", " ")
        if code == 400:
            if _SAFETY_MESSAGE.search(message):
                return ContentPolicy(message)
            return InvalidRequest(text)
        if code in (401, 403):
            return ProviderUnavailable(text, code="PROVIDER_AUTH", retryable=False)
        if code in (408, 429) or code >= 500:
            return ProviderUnavailable(text)
        return InvalidRequest(text)
    if _TRANSPORT_ERRORS and isinstance(exc, _TRANSPORT_ERRORS):
        return ProviderUnavailable(f"{doing} failed: could not reach the provider: "
                                   f"{type(exc).__name__}: {exc}")
    if isinstance(exc, (TimeoutError, ConnectionError)):
        return ProviderUnavailable(f"{doing} failed: {type(exc).__name__}: {exc}")
    try:
        from google.auth import exceptions as auth_exceptions

        if isinstance(exc, auth_exceptions.GoogleAuthError):
            retryable = bool(getattr(exc, "retryable", False)) or isinstance(
                exc, auth_exceptions.TransportError)
            return ProviderUnavailable(f"{doing} failed: credentials: {exc}",
                                       code="PROVIDER_UNAVAILABLE" if retryable else "PROVIDER_AUTH",
                                       retryable=retryable)
    except ImportError:
        pass
    # An unexpected failure inside the SDK: let the workflow retry it (bounded by max attempts).
    return ProviderUnavailable(f"{doing} failed unexpectedly: {type(exc).__name__}: {exc}")


def classify_operation_error(error: Mapping[str, Any]) -> CreationsError:
    """Map a finished operation's `error {code, message}` (google.rpc.Status) to a domain error."""
    raw_code = error.get("code")
    message = str(error.get("message") or "the operation failed without a message")
    if isinstance(raw_code, int) or (isinstance(raw_code, str) and raw_code.isdigit()):
        name = _RPC_NAMES.get(int(raw_code), "UNKNOWN")
    else:
        name = str(raw_code or error.get("status") or "UNKNOWN").upper()
    text = f"video generation failed: {name}: {message}"
    if _SAFETY_MESSAGE.search(message) and name not in _RETRYABLE_RPC:
        return ContentPolicy(message)
    if name in _RETRYABLE_RPC:
        return ProviderUnavailable(text)
    if name in _AUTH_RPC:
        return ProviderUnavailable(text, code="PROVIDER_AUTH", retryable=False)
    return InvalidRequest(text)


# --- helpers ------------------------------------------------------------------------------------

def _check_prompt(prompt: str) -> None:
    if not isinstance(prompt, str) or not prompt.strip():
        raise InvalidRequest("the prompt is empty: describe what to generate")


def _sdk_options(options: Mapping[str, Any] | None, known: Mapping[str, str]) -> dict[str, Any]:
    """Creation options -> SDK config fields; both camelCase and snake_case keys are accepted."""
    if options is None:
        return {}
    if not isinstance(options, Mapping):
        raise InvalidRequest(f"options must be an object, got {type(options).__name__}")
    by_snake = {snake: snake for snake in known.values()}
    result: dict[str, Any] = {}
    for key, value in options.items():
        field = known.get(key) or by_snake.get(key)
        if field is not None and value is not None:
            result[field] = value
    return result


def _first_problem(exc: ValidationError) -> str:
    problem = exc.errors()[0]
    where = ".".join(str(p) for p in problem.get("loc", ()))
    return f"{where}: {problem.get('msg')}"


def _policy_message(kind: str, reasons: list[str]) -> str:
    if reasons:
        return f"The {kind} was blocked by the safety filter: " + " ".join(reasons)
    return (f"The {kind} was blocked by the safety filter. Rephrase the prompt and try again.")
