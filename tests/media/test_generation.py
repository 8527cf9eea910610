"""The real Generator and google-genai client against the local generation server."""
from __future__ import annotations

import io
import re
import socket
import subprocess

import imageio_ffmpeg
import pytest
from PIL import Image

from creations.errors import ContentPolicy, InvalidRequest, ProviderUnavailable
from creations.generation import Generator, classify_operation_error
from localcloud.genserver import GenServer
from tests.support.genserver import generation_settings, unique_prompt


def clip_duration(data: bytes, tmp_path) -> float:
    path = tmp_path / "clip.mp4"
    path.write_bytes(data)
    proc = subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-hide_banner", "-i", str(path)],
                          capture_output=True, text=True)
    hours, minutes, seconds = re.search(r"Duration: (\d+):(\d+):([\d.]+)", proc.stderr).groups()
    return int(hours) * 3600 + int(minutes) * 60 + float(seconds)


class FakeClock:
    """A clock the test drives: sleep() advances monotonic() instead of waiting."""

    def __init__(self):
        self.now = 1000.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def test_image_is_a_png_of_the_requested_aspect_ratio(generator: Generator):
    media = generator.generate_image("a red fox in the snow", {"aspectRatio": "16:9"})

    assert media.mime_type == "image/png"
    image = Image.open(io.BytesIO(media.data))
    assert image.format == "PNG"
    assert image.size == (640, 360)


def test_image_options_accept_snake_case_keys(generator: Generator):
    media = generator.generate_image("a tall tower", {"aspect_ratio": "9:16", "negative_prompt": "fog"})
    assert Image.open(io.BytesIO(media.data)).size == (360, 640)


def test_video_is_an_mp4_of_the_requested_duration(generator: Generator, tmp_path):
    media = generator.generate_video("waves on a beach", {"aspectRatio": "16:9", "durationSeconds": 2})

    assert media.mime_type == "video/mp4"
    assert media.data[4:8] == b"ftyp"
    assert clip_duration(media.data, tmp_path) == pytest.approx(2.0, abs=0.1)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_blocked_prompt_is_a_content_policy_refusal_with_the_reason(generator, kind):
    generate = generator.generate_image if kind == "image" else generator.generate_video
    with pytest.raises(ContentPolicy) as caught:
        generate("a forbidden scene #blocked", {})

    assert caught.value.retryable is False
    assert "#blocked" in caught.value.message  # the provider's reason reaches the user
    assert f"The {kind} was blocked by the safety filter" in caught.value.message


@pytest.mark.parametrize("kind", ["image", "video"])
def test_flaky_provider_fails_twice_then_succeeds(generator, kind):
    generate = generator.generate_image if kind == "image" else generator.generate_video
    prompt = unique_prompt("a lighthouse #flaky")
    for _ in range(2):
        with pytest.raises(ProviderUnavailable) as caught:
            generate(prompt, {"durationSeconds": 1} if kind == "video" else {})
        assert caught.value.retryable is True
        assert "503" in caught.value.message

    media = generate(prompt, {"durationSeconds": 1} if kind == "video" else {})
    assert media.data


@pytest.mark.parametrize("kind", ["image", "video"])
def test_provider_down_is_retryable(generator, kind):
    generate = generator.generate_image if kind == "image" else generator.generate_video
    with pytest.raises(ProviderUnavailable) as caught:
        generate("anything #down", {})
    assert caught.value.retryable is True


def test_video_operation_that_ends_in_an_internal_error_is_retryable(generator: Generator):
    with pytest.raises(ProviderUnavailable) as caught:
        generator.generate_video("anything #internal", {})
    assert caught.value.retryable is True
    assert "INTERNAL" in caught.value.message


@pytest.mark.parametrize("kind, options", [
    ("image", {"aspectRatio": "2:1"}),
    ("video", {"aspectRatio": "1:1"}),
    ("video", {"durationSeconds": 30}),
])
def test_request_the_provider_refuses_is_invalid_and_not_retryable(generator, kind, options):
    generate = generator.generate_image if kind == "image" else generator.generate_video
    with pytest.raises(InvalidRequest) as caught:
        generate("a red fox", options)
    assert caught.value.retryable is False
    assert "400" in caught.value.message


def test_options_the_sdk_cannot_take_are_invalid_before_any_call(generator: Generator):
    with pytest.raises(InvalidRequest) as caught:
        generator.generate_video("a red fox", {"durationSeconds": "four"})
    assert "duration_seconds" in caught.value.message


def test_empty_prompt_is_invalid(generator: Generator):
    with pytest.raises(InvalidRequest):
        generator.generate_image("   ", {})


def test_video_not_ready_by_the_deadline_is_retryable(gen_server: GenServer):
    clock = FakeClock()
    generator = Generator.from_settings(
        generation_settings(gen_server, video_poll_seconds=10, video_deadline_seconds=45),
        sleep=clock.sleep, monotonic=clock.monotonic)

    with pytest.raises(ProviderUnavailable) as caught:
        generator.generate_video("an endless render #stuck", {})

    assert caught.value.retryable is True
    assert "45 s" in caught.value.message
    assert clock.sleeps == [10, 10, 10, 10, 5]  # polled every interval, the last one clipped


def test_a_poll_that_cannot_connect_is_retried_and_the_operation_is_not_lost(caplog):
    server = GenServer().start()
    try:
        restarts = []

        def sleep_through_a_restart(seconds: float) -> None:
            # The provider is unreachable for the first poll only, then comes back.
            if not restarts:
                server.stop()
            elif len(restarts) == 1:
                server.start()
            restarts.append(seconds)

        generator = Generator.from_settings(generation_settings(server),
                                            sleep=sleep_through_a_restart)
        with caplog.at_level("WARNING", logger="creations.generation"):
            media = generator.generate_video("a slow boat", {"durationSeconds": 1})

        assert media.data[4:8] == b"ftyp"
        assert len(restarts) >= 2
        assert "poll failed, will poll again" in caplog.text
    finally:
        server.stop()


def test_unreachable_provider_is_retryable():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]

    class Nowhere:
        url = f"http://127.0.0.1:{port}"

    generator = Generator.from_settings(generation_settings(Nowhere()))
    with pytest.raises(ProviderUnavailable) as caught:
        generator.generate_image("a red fox", {})
    assert caught.value.retryable is True
    assert "could not reach" in caught.value.message


@pytest.mark.parametrize("error, kind, retryable", [
    ({"code": 3, "message": "durationSeconds out of range"}, InvalidRequest, False),
    ({"code": 8, "message": "Quota exceeded"}, ProviderUnavailable, True),
    ({"code": "RESOURCE_EXHAUSTED", "message": "Quota exceeded"}, ProviderUnavailable, True),
    ({"code": 14, "message": "The service is unavailable"}, ProviderUnavailable, True),
    ({"code": 13, "message": "Internal error"}, ProviderUnavailable, True),
    ({"code": 7, "message": "Permission denied on resource"}, ProviderUnavailable, False),
    ({"code": 3, "message": "The prompt could not be submitted. This prompt contains sensitive "
                            "words that violate Google's Responsible AI practices."},
     ContentPolicy, False),
])
def test_operation_errors_are_classified_by_code(error, kind, retryable):
    classified = classify_operation_error(error)
    assert type(classified) is kind
    assert classified.retryable is retryable
