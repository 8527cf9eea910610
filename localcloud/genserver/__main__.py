"""`python -m localcloud.genserver --port 8090 [--instant]`: serve Imagen/Veo's REST API locally."""
from __future__ import annotations

import argparse
import logging

import uvicorn

from .app import create_app
from .server import listening_socket


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m localcloud.genserver",
        description="Local stand-in for Vertex AI Imagen and Veo, for the google-genai client.")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default %(default)s)")
    parser.add_argument("--port", type=int, default=8090, help="port (default %(default)s)")
    parser.add_argument("--instant", action="store_true",
                        help="answer with tiny pre-rendered media at once (benchmarks)")
    args = parser.parse_args(argv)
    if not 0 <= args.port <= 65535:
        parser.error(f"--port must be 0-65535, got {args.port}")
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    try:
        sock = listening_socket(args.host, args.port)
    except OSError as exc:
        parser.exit(1, f"cannot listen on {args.host}:{args.port}: {exc}\n")
    port = sock.getsockname()[1]
    print(f"generation server on http://{args.host}:{port} "
          f"(google-genai: vertexai=True, HttpOptions(base_url=that URL), any static token)",
          flush=True)
    config = uvicorn.Config(create_app(instant=args.instant), log_level="info", access_log=False)
    uvicorn.Server(config).run(sockets=[sock])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
