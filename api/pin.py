"""Writes the API image's pinned requirements from the versions installed in this environment.

    .venv/bin/python -m api.pin

Same method as the step images (`steps.pin`): pin the dependency closure of what the API
imports to the installed versions, so the image runs exactly what the tests ran.
"""
from __future__ import annotations

from pathlib import Path

from steps.pin import closure, render

# What the API imports: the web stack, the triggers' Google clients, Firebase token checks
# (google-auth over requests), the store adapters and media storage.
API_ROOTS = ["fastapi", "uvicorn", "pydantic", "pydantic-settings", "google-auth", "requests", "urllib3",
             "packaging",  # google.auth.transport.urllib3 (the Executions REST client) imports it
             "google-cloud-workflows", "google-cloud-tasks", "google-cloud-firestore", "boto3", "grpcio",
             "grpcio-status"]

HERE = Path(__file__).resolve().parent


def main() -> int:
    pins = closure(API_ROOTS)
    text = render(pins, "# The API service.\n").replace("steps.pin", "api.pin", 1)
    (HERE / "requirements.txt").write_text(text)
    print(f"api/requirements.txt: {len(pins)} packages")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
