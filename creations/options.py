"""Validation of a creation request before any token is taken: what Imagen and Veo would accept.

`validate_request(type, prompt, options)` returns the options to store on the creation (camelCase,
as the REST API and the generation provider spell them, with defaults filled in) or raises
InvalidOptions with one message per field, each saying what to send instead.

What the models accept (Vertex AI docs for Imagen `generate_images` and Veo `generate_videos`):
- Imagen: aspectRatio 1:1 (default), 3:4, 4:3, 9:16, 16:9; up to 4 images per request, of which
  this service makes ONE per creation (a creation has one media and one price); negativePrompt
  only on the Imagen 3.0 models that support it (Imagen 4 does not).
- Veo: aspectRatio 16:9 (default) or 9:16; durationSeconds 4, 6 or 8 on Veo 3 / 3.1, 5 to 8 on
  Veo 2 (default 8); resolution 720p (default) or 1080p on Veo 3 only, 1080p only for 8 s clips;
  generateAudio on Veo 3 only (default off); negativePrompt on every Veo model.
- The prompt: Imagen reads at most 480 tokens. PROMPT_MAX_CHARS is 2,000 characters: about
  480 tokens of English (~4 characters a token), a round limit a user can see in a text box.
  Tokens are not characters, so a dense prompt under the cap can still be refused by the model;
  that refusal is an INVALID_REQUEST failure and is refunded.

Which rules apply depends on the configured model names (Settings.image_model / video_model).
"""
from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from .errors import InvalidOptions
from .model import CreationType
from .text import scrub, text_problem

PROMPT_MAX_CHARS = 2000
NEGATIVE_PROMPT_MAX_CHARS = 2000


@dataclass(frozen=True)
class ImageRules:
    model: str
    aspect_ratios: tuple[str, ...] = ("1:1", "3:4", "4:3", "9:16", "16:9")
    default_aspect_ratio: str = "1:1"
    negative_prompt: bool = False


@dataclass(frozen=True)
class VideoRules:
    model: str
    durations: tuple[int, ...]
    resolutions: tuple[str, ...]      # empty: the model has no resolution choice (always 720p)
    audio: bool
    aspect_ratios: tuple[str, ...] = ("16:9", "9:16")
    default_aspect_ratio: str = "16:9"
    default_duration: int = 8


# Imagen models documented as honouring a negative prompt.
_NEGATIVE_PROMPT_IMAGE_MODELS = ("imagen-3.0-generate-001", "imagen-3.0-fast-generate-001",
                                 "imagen-3.0-capability-001")


def image_rules(model: str) -> ImageRules:
    return ImageRules(model=model, negative_prompt=model.startswith(_NEGATIVE_PROMPT_IMAGE_MODELS))


def video_rules(model: str) -> VideoRules:
    if model.startswith("veo-2"):
        return VideoRules(model=model, durations=(5, 6, 7, 8), resolutions=(), audio=False)
    # Veo 3, 3.1 and any newer name: the Veo 3 rules.
    return VideoRules(model=model, durations=(4, 6, 8), resolutions=("720p", "1080p"), audio=True)


# Option names: camelCase as stored (and as the HTTP API spells them); snake_case accepted too.
_IMAGE_KEYS = ("aspectRatio", "numberOfImages", "negativePrompt")
_VIDEO_KEYS = ("aspectRatio", "durationSeconds", "resolution", "generateAudio", "negativePrompt")
_SNAKE = {"aspect_ratio": "aspectRatio", "number_of_images": "numberOfImages",
          "negative_prompt": "negativePrompt", "duration_seconds": "durationSeconds",
          "generate_audio": "generateAudio"}


def validate_request(type: str | CreationType, prompt: Any, options: Mapping[str, Any] | None,
                     *, settings=None) -> dict[str, Any]:
    """The normalized options of a valid request, or InvalidOptions naming every bad field.

    `settings` gives the model names (Settings.image_model / video_model); by default the
    process's settings."""
    if settings is None:
        from .settings import get_settings

        settings = get_settings()
    problems: dict[str, str] = {}

    kind = _check_type(type, problems)
    _check_prompt(prompt, problems)
    if options is None:
        options = {}
    if not isinstance(options, Mapping):
        problems["options"] = "send options as a JSON object (or leave it out for the defaults)"
        options = {}

    normalized: dict[str, Any] = {}
    if kind is CreationType.IMAGE:
        given = _canonical_keys(options, _IMAGE_KEYS, "image", problems)
        normalized = _image_options(given, image_rules(settings.image_model), problems)
    elif kind is CreationType.VIDEO:
        given = _canonical_keys(options, _VIDEO_KEYS, "video", problems)
        normalized = _video_options(given, video_rules(settings.video_model), problems)

    if problems:
        summary = "; ".join(f"{field}: {message}" for field, message in problems.items())
        raise InvalidOptions(f"the creation request is invalid: {summary}", problems)
    return normalized


# --- fields -----------------------------------------------------------------------------------

def _check_type(value: Any, problems: dict[str, str]) -> CreationType | None:
    try:
        return CreationType(value)
    except ValueError:
        problems["type"] = "use 'image' or 'video'"
        return None


def _check_prompt(prompt: Any, problems: dict[str, str]) -> None:
    if not isinstance(prompt, str):
        problems["prompt"] = "send the prompt as text"
    elif text_problem(prompt):
        problems["prompt"] = f"the prompt {text_problem(prompt)}"
    elif not prompt.strip():
        problems["prompt"] = "describe what to generate: the prompt is empty"
    elif len(prompt) > PROMPT_MAX_CHARS:
        problems["prompt"] = (f"shorten the prompt to at most {PROMPT_MAX_CHARS} characters "
                              f"(it has {len(prompt)})")
    elif _has_control_characters(prompt):
        problems["prompt"] = "remove control characters from the prompt (line breaks and tabs are fine)"


def _has_control_characters(text: str) -> bool:
    return any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in text)


def _canonical_keys(options: Mapping[str, Any], allowed: tuple[str, ...], kind: str,
                    problems: dict[str, str]) -> dict[str, Any]:
    """The options under their camelCase names; unknown names and double spellings are problems.
    A null value counts as absent (the default applies)."""
    given: dict[str, Any] = {}
    for key, value in options.items():
        if isinstance(key, str) and text_problem(key):
            problems[f"options.{scrub(key)}"] = f"the option name {text_problem(key)}"
            continue
        bad_text = _text_problem_within(value)
        if bad_text:
            problems[f"options.{key}"] = f"the value {bad_text}"
            continue
        name = _SNAKE.get(key, key) if isinstance(key, str) else key
        if name not in allowed:
            problems[f"options.{key}"] = (f"unknown option for {kind}s; the options are "
                                          f"{', '.join(allowed)}")
            continue
        if name in given:
            problems[f"options.{key}"] = f"given twice (as {name} and {key}); send it once, as {name}"
            continue
        if value is not None:
            given[name] = value
    return given


def _text_problem_within(value: Any) -> str | None:
    """The first text problem in a JSON value's strings (and object keys), None when all are fine."""
    pending = [value]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            problem = text_problem(item)
            if problem:
                return problem
        elif isinstance(item, Mapping):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, (list, tuple)):
            pending.extend(item)
    return None


def _image_options(given: dict[str, Any], rules: ImageRules, problems: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"aspectRatio": _aspect_ratio(given, rules.aspect_ratios, rules.default_aspect_ratio,
                                                        "image", problems)}
    count = given.get("numberOfImages", 1)
    if _whole_number(count) != 1:
        problems["options.numberOfImages"] = ("each creation makes one image; send 1 (or leave it out) and "
                                              "make one creation per image")
    out["numberOfImages"] = 1
    negative = _negative_prompt(given, problems)
    if negative is not None:
        if not rules.negative_prompt:
            problems["options.negativePrompt"] = (
                f"the image model ({rules.model}) does not take a negative prompt; leave it out and "
                "describe in the prompt what the image should show")
        else:
            out["negativePrompt"] = negative
    return out


def _video_options(given: dict[str, Any], rules: VideoRules, problems: dict[str, str]) -> dict[str, Any]:
    out: dict[str, Any] = {"aspectRatio": _aspect_ratio(given, rules.aspect_ratios, rules.default_aspect_ratio,
                                                        "video", problems)}
    duration = _whole_number(given.get("durationSeconds", rules.default_duration))
    allowed = ", ".join(str(d) for d in rules.durations)
    if duration not in rules.durations:
        problems["options.durationSeconds"] = f"use one of {allowed} (seconds) for the video model ({rules.model})"
    out["durationSeconds"] = duration

    resolution = given.get("resolution")
    if rules.resolutions:
        resolution = resolution if resolution is not None else rules.resolutions[0]
        if not isinstance(resolution, str) or resolution.strip().lower() not in rules.resolutions:
            problems["options.resolution"] = f"use one of {', '.join(rules.resolutions)}"
        else:
            resolution = resolution.strip().lower()
            out["resolution"] = resolution
            if resolution == "1080p" and duration != 8 and "options.durationSeconds" not in problems:
                problems["options.resolution"] = (
                    "1080p is made only for 8-second videos: set durationSeconds to 8 or use 720p"
                )
    elif resolution is not None and str(resolution).strip().lower() != "720p":
        problems["options.resolution"] = f"the video model ({rules.model}) makes 720p only; leave resolution out"

    audio = given.get("generateAudio")
    if audio is not None and not isinstance(audio, bool):
        problems["options.generateAudio"] = "send true or false"
    elif rules.audio:
        out["generateAudio"] = bool(audio)
    elif audio:
        problems["options.generateAudio"] = (
            f"the video model ({rules.model}) makes silent video; leave generateAudio out"
        )

    negative = _negative_prompt(given, problems)
    if negative is not None:
        out["negativePrompt"] = negative
    return out


def _aspect_ratio(given: dict[str, Any], allowed: tuple[str, ...], default: str, kind: str,
                  problems: dict[str, str]) -> str:
    value = given.get("aspectRatio", default)
    if not isinstance(value, str) or value.strip() not in allowed:
        problems["options.aspectRatio"] = f"use one of {', '.join(allowed)} for {kind}s"
        return default
    return value.strip()


def _negative_prompt(given: dict[str, Any], problems: dict[str, str]) -> str | None:
    value = given.get("negativePrompt")
    if value is None:
        return None
    if not isinstance(value, str):
        problems["options.negativePrompt"] = "send the negative prompt as text"
        return None
    if text_problem(value):
        problems["options.negativePrompt"] = f"the negative prompt {text_problem(value)}"
        return None
    if not value.strip():
        return None  # blank: nothing to avoid
    if len(value) > NEGATIVE_PROMPT_MAX_CHARS:
        problems["options.negativePrompt"] = f"shorten it to at most {NEGATIVE_PROMPT_MAX_CHARS} characters"
        return None
    if _has_control_characters(value):
        problems["options.negativePrompt"] = "remove control characters"
        return None
    return value.strip()


def _whole_number(value: Any) -> int | None:
    """An int from JSON (8 or 8.0); None for anything else (true, "8", 8.5)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return None
