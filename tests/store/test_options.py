"""Creation request validation: what Imagen and Veo accept, with messages a user can act on."""
from __future__ import annotations

import pytest

from creations.errors import InvalidOptions
from creations.options import PROMPT_MAX_CHARS, validate_request
from creations.settings import Settings

VEO3 = Settings(video_model="veo-3.0-generate-001", image_model="imagen-4.0-generate-001")
VEO2 = Settings(video_model="veo-2.0-generate-001", image_model="imagen-3.0-generate-001")


def problems(type_, prompt, options, settings=VEO3) -> dict[str, str]:
    with pytest.raises(InvalidOptions) as info:
        validate_request(type_, prompt, options, settings=settings)
    assert info.value.code == "INVALID_REQUEST"
    for field in info.value.fields:
        assert field in info.value.message
    return info.value.fields


def test_image_defaults():
    assert validate_request("image", "a red fox", {}, settings=VEO3) == {"aspectRatio": "1:1", "numberOfImages": 1}
    assert validate_request("image", "a red fox", None, settings=VEO3) == {"aspectRatio": "1:1", "numberOfImages": 1}


@pytest.mark.parametrize("ratio", ["1:1", "3:4", "4:3", "9:16", "16:9"])
def test_image_aspect_ratios(ratio):
    assert validate_request("image", "a fox", {"aspectRatio": ratio}, settings=VEO3)["aspectRatio"] == ratio


def test_video_defaults_on_veo3_and_veo2():
    assert validate_request("video", "waves", {}, settings=VEO3) == {
        "aspectRatio": "16:9", "durationSeconds": 8, "resolution": "720p", "generateAudio": False}
    assert validate_request("video", "waves", {}, settings=VEO2) == {"aspectRatio": "16:9", "durationSeconds": 8}


def test_video_full_request_and_snake_case_spelling():
    options = {"aspect_ratio": "9:16", "duration_seconds": 8.0, "resolution": "1080P", "generate_audio": True,
               "negative_prompt": "  text overlays "}
    assert validate_request("video", "waves", options, settings=VEO3) == {
        "aspectRatio": "9:16", "durationSeconds": 8, "resolution": "1080p", "generateAudio": True,
        "negativePrompt": "text overlays"}


@pytest.mark.parametrize("duration,settings,ok", [
    (4, VEO3, True), (6, VEO3, True), (8, VEO3, True), (5, VEO3, False), (10, VEO3, False),
    (5, VEO2, True), (7, VEO2, True), (4, VEO2, False), (9, VEO2, False),
])
def test_video_durations_per_model(duration, settings, ok):
    options = {"durationSeconds": duration}
    if ok:
        assert validate_request("video", "waves", options, settings=settings)["durationSeconds"] == duration
    else:
        message = problems("video", "waves", options, settings)["options.durationSeconds"]
        assert settings.video_model in message


def test_video_refusals_name_each_field():
    fields = problems("video", "waves", {"aspectRatio": "1:1", "durationSeconds": "8", "resolution": "4k",
                                         "generateAudio": "yes"})
    assert set(fields) == {"options.aspectRatio", "options.durationSeconds", "options.resolution",
                           "options.generateAudio"}
    assert "16:9, 9:16" in fields["options.aspectRatio"]
    assert "4, 6, 8" in fields["options.durationSeconds"]
    assert "720p, 1080p" in fields["options.resolution"]


def test_1080p_only_for_8_second_videos():
    assert "8" in problems("video", "waves", {"resolution": "1080p", "durationSeconds": 4})["options.resolution"]


def test_veo2_has_no_resolution_or_audio_choice():
    fields = problems("video", "waves", {"resolution": "1080p", "generateAudio": True}, VEO2)
    assert set(fields) == {"options.resolution", "options.generateAudio"}
    # Asking for what the model does anyway is fine.
    assert validate_request("video", "waves", {"resolution": "720p", "generateAudio": False}, settings=VEO2) == {
        "aspectRatio": "16:9", "durationSeconds": 8}


def test_image_refusals():
    fields = problems("image", "a fox", {"aspectRatio": "2:1", "numberOfImages": 4})
    assert "1:1, 3:4, 4:3, 9:16, 16:9" in fields["options.aspectRatio"]
    assert "one image" in fields["options.numberOfImages"]


def test_negative_prompt_depends_on_the_image_model():
    message = problems("image", "a fox", {"negativePrompt": "people"})["options.negativePrompt"]
    assert "imagen-4.0-generate-001" in message
    assert validate_request("image", "a fox", {"negativePrompt": "people"}, settings=VEO2)["negativePrompt"] == "people"
    # Blank means nothing to avoid, on any model.
    assert "negativePrompt" not in validate_request("image", "a fox", {"negativePrompt": "  "}, settings=VEO3)


def test_unknown_and_misplaced_options_are_refused():
    fields = problems("image", "a fox", {"durationSeconds": 8, "seed": 3, "aspectRatio": "1:1"})
    assert set(fields) == {"options.durationSeconds", "options.seed"}
    assert "aspectRatio" in fields["options.seed"]
    assert "options.numberOfImages" in problems("video", "waves", {"numberOfImages": 1})


def test_the_same_option_in_two_spellings_is_refused():
    assert "options.aspect_ratio" in problems("image", "a fox", {"aspectRatio": "1:1", "aspect_ratio": "1:1"})


@pytest.mark.parametrize("prompt,fragment", [
    ("", "empty"), ("   \n\t", "empty"), (None, "text"), (42, "text"),
    ("x" * (PROMPT_MAX_CHARS + 1), str(PROMPT_MAX_CHARS)), ("a fox\x00", "NUL"),
])
def test_prompt_refusals(prompt, fragment):
    assert fragment in problems("image", prompt, {})["prompt"]


def test_prompt_at_the_limit_and_with_line_breaks_is_fine():
    assert validate_request("image", "y" * PROMPT_MAX_CHARS, {}, settings=VEO3)
    assert validate_request("video", "scene one\nscene two\ttab", {}, settings=VEO3)


def test_bad_type_and_bad_options_shape():
    fields = problems("audio", "", ["aspectRatio"])
    assert set(fields) == {"type", "prompt", "options"}
    assert "'image' or 'video'" in fields["type"]


def test_model_names_come_from_settings():
    veo31 = Settings(video_model="veo-3.1-fast-generate-preview")
    assert validate_request("video", "w", {"durationSeconds": 4}, settings=veo31)["durationSeconds"] == 4
    assert "options.durationSeconds" in problems("video", "w", {"durationSeconds": 4},
                                                  Settings(video_model="veo-2.0-generate-exp"))
