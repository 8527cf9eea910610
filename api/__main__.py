"""`python -m api`: serve the API with the server limits of docs/security.md.

Listens on PHOENIX_HOST:PORT (the image sets 0.0.0.0 and Cloud Run sets PORT). Refuses to start,
with one line naming the variable to set, when the settings are unsafe (Settings.refusal).
"""
from __future__ import annotations

import sys

from creations.settings import Settings, UnsafeSettings

from .main import create_app
from .server import server_config


def main() -> int:
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        print(f"phoenix api: invalid settings: {problems}", file=sys.stderr)
        return 2
    try:
        app = create_app(settings, host=settings.host)
    except UnsafeSettings as exc:
        print(f"phoenix api: refusing to start: {exc}", file=sys.stderr)
        return 2
    import uvicorn

    uvicorn.Server(server_config(app, settings, host=settings.host, port=settings.port,
                                 proxy_headers=True, forwarded_allow_ips="*", access_log=False)).run()
    return 0


if __name__ == "__main__":
    sys.exit(main())
