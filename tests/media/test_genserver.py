"""The local generation server's wire format, spoken over plain HTTP."""
from __future__ import annotations

import base64
import io
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from PIL import Image

from localcloud.genserver import GenServer, render
from tests.support.genserver import unique_prompt

MODEL_PATH = "/v1beta1/projects/p/locations/us-central1/publishers/google/models"
AUTH = {"Authorization": "Bearer local-token"}
REPO = Path(__file__).resolve().parents[2]


def predict(server: GenServer, body: dict, *, model: str = "imagen-4.0-generate-001",
            headers: dict | None = None) -> httpx.Response:
    return httpx.post(f"{server.url}{MODEL_PATH}/{model}:predict", json=body,
                      headers=AUTH if headers is None else headers, timeout=30)


def start_video(server: GenServer, body: dict, model: str = "veo-3.0-generate-001") -> str:
    response = httpx.post(f"{server.url}{MODEL_PATH}/{model}:predictLongRunning", json=body,
                          headers=AUTH, timeout=30)
    assert response.status_code == 200, response.text
    assert set(response.json()) == {"name"}
    return response.json()["name"]


def fetch(server: GenServer, name: str, model: str = "veo-3.0-generate-001") -> httpx.Response:
    return httpx.post(f"{server.url}{MODEL_PATH}/{model}:fetchPredictOperation",
                      json={"operationName": name}, headers=AUTH, timeout=30)


def wait_done(server: GenServer, name: str, limit: float = 30.0) -> dict:
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        body = fetch(server, name).json()
        if body.get("done"):
            return body
        time.sleep(0.05)
    raise AssertionError(f"operation {name} not done after {limit} s")


def decode_image(prediction: dict) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(prediction["bytesBase64Encoded"])))


@pytest.mark.parametrize("aspect, size", [("1:1", (512, 512)), ("4:3", (512, 384)),
                                          ("9:16", (360, 640))])
def test_predict_answers_a_png_sized_by_aspect_ratio(gen_server, aspect, size):
    response = predict(gen_server, {"instances": [{"prompt": "a red fox"}],
                                    "parameters": {"sampleCount": 1, "aspectRatio": aspect}})
    assert response.status_code == 200
    [prediction] = response.json()["predictions"]
    assert prediction["mimeType"] == "image/png"
    assert decode_image(prediction).size == size


def test_predict_honours_jpeg_output_and_sample_count(gen_server):
    response = predict(gen_server, {"instances": [{"prompt": "a red fox"}], "parameters": {
        "sampleCount": 2, "outputOptions": {"mimeType": "image/jpeg"}}})
    predictions = response.json()["predictions"]
    assert len(predictions) == 2
    assert {decode_image(p).format for p in predictions} == {"JPEG"}


def test_blocked_image_carries_the_reason_only_when_asked(gen_server):
    body = {"instances": [{"prompt": "x #blocked"}], "parameters": {"includeRaiReason": True}}
    [prediction] = predict(gen_server, body).json()["predictions"]
    assert set(prediction) == {"raiFilteredReason"}

    silent = predict(gen_server, {"instances": [{"prompt": "x #blocked"}]})
    assert silent.status_code == 200
    assert silent.json() == {}


@pytest.mark.parametrize("body, fragment", [
    ({"instances": [{}]}, "prompt is required"),
    ({"instances": [{"prompt": "  "}]}, "prompt is required"),
    ({"instances": []}, "instances"),
    ({"instances": [{"prompt": "x"}], "parameters": {"aspectRatio": "2:1"}}, "aspectRatio"),
    ({"instances": [{"prompt": "x"}], "parameters": {"sampleCount": 9}}, "sampleCount"),
])
def test_bad_requests_get_googles_error_shape(gen_server, body, fragment):
    response = predict(gen_server, body)
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["code"] == 400
    assert error["status"] == "INVALID_ARGUMENT"
    assert fragment in error["message"]


def test_a_request_without_credentials_is_unauthenticated(gen_server):
    response = predict(gen_server, {"instances": [{"prompt": "x"}]}, headers={})
    assert response.status_code == 401
    assert response.json()["error"]["status"] == "UNAUTHENTICATED"


def test_video_operation_is_pending_then_done_with_a_playable_mp4(gen_server):
    name = start_video(gen_server, {"instances": [{"prompt": "a river"}],
                                    "parameters": {"durationSeconds": 1, "aspectRatio": "9:16"}})
    assert name.startswith("projects/p/locations/us-central1/publishers/google/models/"
                           "veo-3.0-generate-001/operations/")

    body = wait_done(gen_server, name)

    [video] = body["response"]["videos"]
    assert video["mimeType"] == "video/mp4"
    assert base64.b64decode(video["bytesBase64Encoded"])[4:8] == b"ftyp"


def test_blocked_video_is_done_with_a_filtered_count_and_no_videos(gen_server):
    name = start_video(gen_server, {"instances": [{"prompt": "x #blocked"}]})
    response = wait_done(gen_server, name)["response"]
    assert response["raiMediaFilteredCount"] == 1
    assert response["raiMediaFilteredReasons"]
    assert "videos" not in response


def test_slow_video_stays_pending_until_its_delay_has_passed():
    with GenServer(slow_seconds=0.5) as server:
        name = start_video(server, {"instances": [{"prompt": "x #slow"}],
                                    "parameters": {"durationSeconds": 1}})
        assert fetch(server, name).json() == {"name": name, "done": False}
        assert "videos" in wait_done(server, name)["response"]


def test_unknown_operation_is_not_found(gen_server):
    name = "projects/p/locations/us-central1/publishers/google/models/veo-3.0-generate-001/operations/nope"
    response = fetch(gen_server, name)
    assert response.status_code == 404
    assert response.json()["error"]["status"] == "NOT_FOUND"


def test_reset_forgets_flaky_counts(gen_server):
    prompt = unique_prompt("#flaky")
    body = {"instances": [{"prompt": prompt}]}
    assert [predict(gen_server, body).status_code for _ in range(2)] == [503, 503]
    assert httpx.post(f"{gen_server.url}/_local/reset").status_code == 200
    assert predict(gen_server, body).status_code == 503  # counting starts again
    assert predict(gen_server, body).status_code == 503
    assert predict(gen_server, body).status_code == 200


def test_instant_server_answers_tiny_media_and_done_operations(instant_gen_server):
    response = predict(instant_gen_server, {"instances": [{"prompt": "a red fox"}],
                                            "parameters": {"aspectRatio": "16:9"}})
    assert decode_image(response.json()["predictions"][0]).size == (160, 90)

    name = start_video(instant_gen_server, {"instances": [{"prompt": "a red fox"}],
                                            "parameters": {"durationSeconds": 2}})
    first = fetch(instant_gen_server, name).json()
    assert first["done"] is True
    assert base64.b64decode(first["response"]["videos"][0]["bytesBase64Encoded"])[4:8] == b"ftyp"


def test_video_renders_without_the_font_file(tmp_path):
    data = render.render_video("no fonts here", "16:9", 1, tiny=True,
                               font_path=tmp_path / "missing.ttf", mono_font_path=None)
    assert data[4:8] == b"ftyp"


def test_command_line_entry_point_serves_the_api():
    proc = subprocess.Popen([sys.executable, "-m", "localcloud.genserver", "--port", "0"],
                            cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    try:
        banner = proc.stdout.readline()  # "generation server on http://127.0.0.1:PORT (...)"
        url = re.search(r"http://127\.0\.0\.1:\d+", banner).group(0)
        health = httpx.get(f"{url}/_local/health", timeout=10)
        assert health.json() == {"ok": True, "instant": False}
        image = httpx.post(f"{url}{MODEL_PATH}/imagen:predict", headers=AUTH, timeout=10,
                           json={"instances": [{"prompt": "from the command line"}]})
        assert decode_image(image.json()["predictions"][0]).format == "PNG"
    finally:
        proc.terminate()
        proc.wait(timeout=10)
