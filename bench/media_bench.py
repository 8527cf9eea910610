"""Media timings on this machine: local renders, thumbnails, and generation through the server.

Run: .venv/bin/python bench/media_bench.py [--runs N]
Prints the median and worst of N runs for each figure, in milliseconds.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from creations.generation import Generator  # noqa: E402
from creations.settings import Settings  # noqa: E402
from creations.thumbnails import image_preview, video_thumbnail  # noqa: E402
from localcloud.genserver import GenServer, render  # noqa: E402


def timed(runs: int, func: Callable[[], object]) -> tuple[float, float]:
    func()  # warm up: first ffmpeg start, font loading, connection set-up
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        func()
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples), max(samples)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)

    rows: list[tuple[str, tuple[float, float]]] = []
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        image_path, video_path = tmp / "image.png", tmp / "clip.mp4"
        image_path.write_bytes(render.render_image("a red fox in the snow", "16:9"))
        video_path.write_bytes(render.render_video("a red fox in the snow", "16:9", 4))

        rows.append(("render image 640x360 PNG (Pillow)",
                     timed(args.runs, lambda: render.render_image("a red fox", "16:9"))))
        rows.append(("render video 4 s 640x360 H.264 (ffmpeg)",
                     timed(args.runs, lambda: render.render_video("a red fox", "16:9", 4))))
        rows.append(("render video 4 s 640x360 H.264 + AAC",
                     timed(args.runs, lambda: render.render_video("a red fox", "16:9", 4, audio=True))))
        rows.append(("video thumbnail 512 px JPEG at 1 s",
                     timed(args.runs, lambda: video_thumbnail(video_path, tmp / "thumb.jpg"))))
        rows.append(("image preview 512 px JPEG",
                     timed(args.runs, lambda: image_preview(image_path, tmp / "preview.jpg"))))

        for instant in (False, True):
            with GenServer(instant=instant) as server:
                generator = Generator.from_settings(Settings(
                    genai_base_url=server.url, genai_static_token="local",
                    video_poll_seconds=0.02, video_deadline_seconds=60))
                label = "instant server" if instant else "server"
                rows.append((f"generate_image via google-genai ({label})",
                             timed(args.runs, lambda generator=generator: generator.generate_image("a red fox", {}))))
                rows.append((f"generate_video 4 s via google-genai ({label}, 20 ms polls)",
                             timed(args.runs, lambda generator=generator: generator.generate_video(
                                 "a red fox", {"durationSeconds": 4}))))

    width = max(len(label) for label, _ in rows)
    print(f"{'figure':<{width}}  {'median ms':>10}  {'worst ms':>9}   (runs={args.runs})")
    for label, (median, worst) in rows:
        print(f"{label:<{width}}  {median:>10.1f}  {worst:>9.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
