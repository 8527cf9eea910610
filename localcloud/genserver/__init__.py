"""Local generation server: Vertex AI's Imagen and Veo REST API on loopback, making real media.

The same google-genai client that talks to Vertex AI in production talks to this server locally
(`genai.Client(vertexai=True, project=..., location=..., credentials=<any static token>,
http_options=HttpOptions(base_url=server.url, api_version="v1beta1"))`). Images are PNGs showing
the prompt; videos are H.264 MP4s showing the prompt, a moving square and a clock.

Test prompts (tags anywhere in the prompt, like a payment provider's test cards):
- `#blocked`  refused by the safety filter (Imagen: a prediction with only `raiFilteredReason`;
              Veo: done with `raiMediaFilteredCount: 1` and a reason, no videos)
- `#flaky`    HTTP 503 on the first two calls with the same prompt text, then success
- `#down`     HTTP 503 on every call
- `#slow`     3 s before the image is answered / before the video operation is done
- `#stuck`    the video operation never completes (deadline tests)
- `#internal` Imagen: HTTP 500; Veo: the operation ends with `error {code: 13}`

`instant=True` answers with tiny media rendered once per aspect ratio (benchmarks). Full notes:
docs/generation-server.md.
"""
from .app import create_app
from .server import GenServer

__all__ = ["GenServer", "create_app"]
