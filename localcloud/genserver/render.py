"""Real media from a prompt: a PNG/JPEG drawn with Pillow, an H.264 MP4 rendered by ffmpeg.

The pictures show the prompt, so a developer looking at a draft sees which request made it; the
video has a moving square and a running clock, so frames at different times differ (a thumbnail
taken at 1 s is visibly not the first frame). Sizes stay small so a render takes well under a
second.
"""
from __future__ import annotations

import hashlib
import io
import os
import subprocess
import tempfile
import textwrap
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

FONT_DIR = Path("/usr/share/fonts/truetype/dejavu")
FONT_BOLD = FONT_DIR / "DejaVuSans-Bold.ttf"
FONT_MONO = FONT_DIR / "DejaVuSansMono.ttf"

IMAGE_SIZES = {
    "1:1": (512, 512),
    "16:9": (640, 360),
    "9:16": (360, 640),
    "4:3": (512, 384),
    "3:4": (384, 512),
}
VIDEO_SIZES = {"16:9": (640, 360), "9:16": (360, 640)}
VIDEO_FPS = 24
TINY_DIVISOR = 4  # instant mode: a quarter of the normal size
TINY_FPS = 8


class RenderError(Exception):
    """ffmpeg failed to render a clip; `detail` holds its last stderr lines."""

    def __init__(self, message: str, detail: str = ""):
        super().__init__(f"{message}: {detail}" if detail else message)
        self.detail = detail


def _colours(prompt: str) -> tuple[tuple[int, int, int], tuple[int, int, int]]:
    """Two dark colours derived from the prompt, so different prompts look different."""
    digest = hashlib.sha256(prompt.encode()).digest()
    first = tuple(40 + b % 110 for b in digest[:3])
    second = tuple(20 + b % 90 for b in digest[3:6])
    return first, second  # type: ignore[return-value]


def _font(size: int, path: Path = FONT_BOLD) -> ImageFont.ImageFont | ImageFont.FreeTypeFont:
    if path.is_file():
        return ImageFont.truetype(str(path), size)
    return ImageFont.load_default(size)


def _wrap(prompt: str, width_px: int, font_size: int, max_lines: int) -> str:
    chars_per_line = max(8, int(width_px / (font_size * 0.62)))
    lines = textwrap.wrap(" ".join(prompt.split()), chars_per_line) or [""]
    if len(lines) > max_lines:
        lines = lines[:max_lines]
        lines[-1] = lines[-1][: max(0, chars_per_line - 1)] + "…"
    return "\n".join(lines)


def _picture(prompt: str, size: tuple[int, int], caption: str) -> Image.Image:
    """A gradient background with the wrapped prompt in the middle and a small caption."""
    width, height = size
    top, bottom = _colours(prompt)
    gradient = Image.linear_gradient("L").resize(size)
    image = Image.composite(Image.new("RGB", size, bottom), Image.new("RGB", size, top), gradient)
    draw = ImageDraw.Draw(image)
    font_size = max(10, min(width, height) // 14)
    text = _wrap(prompt, int(width * 0.85), font_size, max_lines=6)
    draw.multiline_text((width / 2, height / 2), text, font=_font(font_size), fill="white",
                        anchor="mm", align="center", spacing=font_size // 3)
    if caption:
        draw.text((8, height - 8), caption, font=_font(max(8, font_size // 2), FONT_MONO),
                  fill=(230, 230, 230), anchor="ld")
    return image


def render_image(prompt: str, aspect_ratio: str, *, mime_type: str = "image/png",
                 caption: str = "", tiny: bool = False) -> bytes:
    """A PNG (or JPEG) of `aspect_ratio` showing the prompt."""
    width, height = IMAGE_SIZES[aspect_ratio]
    if tiny:
        width, height = width // TINY_DIVISOR, height // TINY_DIVISOR
    image = _picture(prompt, (width, height), caption)
    out = io.BytesIO()
    if mime_type == "image/jpeg":
        image.save(out, format="JPEG", quality=85)
    else:
        image.save(out, format="PNG", compress_level=1)
    return out.getvalue()


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def _filter_path(path: str) -> str:
    """Quote a path for an ffmpeg filter option (':' and '\\' are separators there)."""
    return "'" + path.replace("\\", "\\\\").replace("'", "'\\''").replace(":", "\\:") + "'"


def render_video(prompt: str, aspect_ratio: str, duration_seconds: int, *,
                 audio: bool = False, tiny: bool = False,
                 font_path: Path | None = FONT_BOLD, mono_font_path: Path | None = FONT_MONO) -> bytes:
    """An H.264 MP4 of `duration_seconds` showing the prompt, a moving square and a clock.

    The prompt is drawn by ffmpeg's drawtext when the font file exists; otherwise Pillow draws it
    on a still background frame that ffmpeg animates.
    """
    width, height = VIDEO_SIZES[aspect_ratio]
    fps = VIDEO_FPS
    if tiny:
        width, height, fps = width // TINY_DIVISOR, height // TINY_DIVISOR, TINY_FPS
    box = max(8, min(width, height) // 10)
    top, _ = _colours(prompt)
    colour = f"0x{top[0]:02x}{top[1]:02x}{top[2]:02x}"
    with tempfile.TemporaryDirectory(prefix="genserver-") as tmp:
        out_path = os.path.join(tmp, "out.mp4")
        cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
        use_drawtext = font_path is not None and Path(font_path).is_file()
        if use_drawtext:
            cmd += ["-f", "lavfi", "-i", f"color=c={colour}:s={width}x{height}:r={fps}:d={duration_seconds}"]
        else:
            still = os.path.join(tmp, "still.png")
            _picture(prompt, (width, height), "").save(still, compress_level=1)
            cmd += ["-loop", "1", "-framerate", str(fps), "-t", str(duration_seconds), "-i", still]
        cmd += ["-f", "lavfi", "-i", f"color=c=white:s={box}x{box}:r={fps}"]
        if audio:
            cmd += ["-f", "lavfi", "-i",
                    f"sine=frequency=440:sample_rate=48000:duration={duration_seconds}"]
        # The square crosses the frame about once every two seconds, bouncing back at the edge.
        speed = max(1, (width - box) // 2)
        chain = [f"[0:v][1:v]overlay=x='abs(mod(t*{speed}\\,2*(W-w))-(W-w))':y='H-h-{box}':shortest=1"]
        if use_drawtext:
            font_size = max(10, min(width, height) // 13)
            text_file = os.path.join(tmp, "prompt.txt")
            Path(text_file).write_text(_wrap(prompt, int(width * 0.85), font_size, max_lines=5),
                                       encoding="utf-8")
            chain.append(
                f"drawtext=fontfile={_filter_path(str(font_path))}:textfile={_filter_path(text_file)}"
                f":fontsize={font_size}:fontcolor=white:line_spacing={font_size // 3}"
                ":x=(w-text_w)/2:y=(h-text_h)/2")
        if mono_font_path is not None and Path(mono_font_path).is_file():
            chain.append(
                f"drawtext=fontfile={_filter_path(str(mono_font_path))}:text='%{{pts\\:hms}}'"
                f":fontsize={max(8, height // 22)}:fontcolor=white:x=8:y=8")
        chain.append("format=yuv420p[v]")
        cmd += ["-filter_complex", ",".join(chain), "-map", "[v]"]
        if audio:
            cmd += ["-map", "2:a", "-c:a", "aac", "-b:a", "64k"]
        cmd += ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-r", str(fps),
                "-t", str(duration_seconds), "-movflags", "+faststart", out_path]
        proc = subprocess.run(cmd, capture_output=True, timeout=120, check=False)
        if proc.returncode != 0 or not os.path.exists(out_path):
            lines = proc.stderr.decode("utf-8", "replace").strip().splitlines()[-6:]
            raise RenderError("ffmpeg could not render the video", " | ".join(lines))
        return Path(out_path).read_bytes()
