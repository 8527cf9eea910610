"""JPEG thumbnails of videos and previews of images, made with the ffmpeg that imageio-ffmpeg ships.

Output is written to a temporary file next to the destination and renamed into place, so a
half-written JPEG never looks like a finished one. Failures raise MediaError carrying the last
lines ffmpeg printed.
"""
from __future__ import annotations

import os
import subprocess
import tempfile
from pathlib import Path

from .errors import MediaError

_TIMEOUT_SECONDS = 120
_STDERR_LINES = 8
_MAX_WIDTH = 4096


def _ffmpeg() -> str:
    import imageio_ffmpeg

    return imageio_ffmpeg.get_ffmpeg_exe()


def video_thumbnail(src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str], *,
                    width: int = 512) -> None:
    """JPEG of the frame at 1 s, or of the first frame when the clip is shorter than 1 s."""
    src, dst = _check_paths(src_path, dst_path, width)
    # Seeking past the end of a short clip makes ffmpeg succeed with no frame at all, so fall
    # back to the first frame rather than probing the duration (no ffprobe ships with the wheel).
    if not _render_frame(src, dst, width, seek=1.0):
        if not _render_frame(src, dst, width, seek=None):
            raise MediaError(f"{src.name} has no video frame to make a thumbnail from")


def image_preview(src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str], *,
                  width: int = 512) -> None:
    """JPEG preview of an image (PNG, JPEG, WebP...), `width` pixels wide, aspect ratio kept."""
    src, dst = _check_paths(src_path, dst_path, width)
    if not _render_frame(src, dst, width, seek=None):
        raise MediaError(f"{src.name} has no image to make a preview from")


def _check_paths(src_path: str | os.PathLike[str], dst_path: str | os.PathLike[str],
                 width: int) -> tuple[Path, Path]:
    if not isinstance(width, int) or not 16 <= width <= _MAX_WIDTH:
        raise ValueError(f"width must be an integer between 16 and {_MAX_WIDTH}, got {width!r}")
    src, dst = Path(src_path), Path(dst_path)
    if not src.is_file():
        raise MediaError(f"cannot read {src}: no such file", code="MEDIA_NOT_FOUND")
    if src.stat().st_size == 0:
        raise MediaError(f"{src} is empty: nothing to decode")
    dst.parent.mkdir(parents=True, exist_ok=True)
    return src, dst


def _render_frame(src: Path, dst: Path, width: int, *, seek: float | None) -> bool:
    """Write one scaled JPEG frame of `src` to `dst`; False when ffmpeg found no frame there."""
    fd, tmp_name = tempfile.mkstemp(dir=dst.parent, prefix=f".{dst.name}.", suffix=".jpg")
    os.close(fd)
    cmd = [_ffmpeg(), "-nostdin", "-hide_banner", "-loglevel", "error", "-y"]
    if seek is not None:
        cmd += ["-ss", f"{seek:g}"]  # before -i: a fast keyframe seek, then decode to the time
    cmd += [
        "-i", str(src),
        "-frames:v", "1",
        # Even height keeps every JPEG decoder happy; full-range YUV is what JPEG expects.
        "-vf", f"scale={width}:-2:flags=bicubic,format=yuvj420p",
        "-q:v", "3",
        "-f", "image2", "-c:v", "mjpeg",
        tmp_name,
    ]
    try:
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=_TIMEOUT_SECONDS, check=False)
        except subprocess.TimeoutExpired as exc:
            raise MediaError(f"ffmpeg took more than {_TIMEOUT_SECONDS} s on {src.name}",
                             code="MEDIA_TIMEOUT", retryable=True) from exc
        except OSError as exc:
            raise MediaError(f"could not run ffmpeg: {exc}", code="MEDIA_TOOL_MISSING") from exc
        if proc.returncode != 0:
            raise MediaError(f"ffmpeg could not decode {src.name}: {_tail(proc.stderr)}")
        if os.path.getsize(tmp_name) == 0:
            return False
        os.chmod(tmp_name, 0o644)  # mkstemp makes files private; a thumbnail is not
        os.replace(tmp_name, dst)
        return True
    finally:
        if os.path.exists(tmp_name):
            os.unlink(tmp_name)


def _tail(stderr: bytes) -> str:
    lines = [line for line in stderr.decode("utf-8", "replace").splitlines() if line.strip()]
    return " | ".join(lines[-_STDERR_LINES:]) or "no error output"
