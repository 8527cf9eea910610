"""Thumbnails and previews made by the real ffmpeg from real media."""
from __future__ import annotations

import subprocess

import imageio_ffmpeg
import pytest
from PIL import Image, ImageChops

from creations.errors import MediaError
from creations.thumbnails import image_preview, video_thumbnail
from localcloud.genserver import render


@pytest.fixture(scope="module")
def clip(tmp_path_factory):
    """A 2 s 16:9 clip whose frames change over time (a moving square, a clock)."""
    path = tmp_path_factory.mktemp("clips") / "clip.mp4"
    path.write_bytes(render.render_video("a red fox", "16:9", 2))
    return path


def frame_at(path, seconds: float, dst, width: int = 512) -> Image.Image:
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-ss", str(seconds),
                    "-i", str(path), "-frames:v", "1", "-vf", f"scale={width}:-2", str(dst)],
                   check=True)
    return Image.open(dst).convert("RGB")


def difference(a: Image.Image, b: Image.Image) -> float:
    """Mean absolute per-channel difference, 0-255."""
    hist = ImageChops.difference(a, b).convert("L").histogram()
    return sum(value * count for value, count in enumerate(hist)) / (a.width * a.height)


def test_video_thumbnail_is_a_512_wide_jpeg_of_the_frame_at_one_second(clip, tmp_path):
    dst = tmp_path / "thumb.jpg"

    video_thumbnail(clip, dst)

    thumb = Image.open(dst)
    assert thumb.format == "JPEG"
    assert thumb.size == (512, 288)
    thumb = thumb.convert("RGB")
    at_one = frame_at(clip, 1.0, tmp_path / "one.png")
    at_zero = frame_at(clip, 0.0, tmp_path / "zero.png")
    assert difference(thumb, at_one) < difference(thumb, at_zero)


def test_video_thumbnail_of_a_portrait_clip_keeps_the_aspect_ratio(tmp_path):
    src = tmp_path / "portrait.mp4"
    src.write_bytes(render.render_video("tall", "9:16", 1, tiny=True))
    video_thumbnail(src, tmp_path / "thumb.jpg", width=256)
    assert Image.open(tmp_path / "thumb.jpg").size == (256, 456)


def test_video_thumbnail_of_a_clip_shorter_than_one_second_uses_its_first_frame(tmp_path):
    src = tmp_path / "short.mp4"
    # Red for the first 0.2 s, then blue: only the first frame is red.
    subprocess.run([imageio_ffmpeg.get_ffmpeg_exe(), "-loglevel", "error", "-y", "-f", "lavfi",
                    "-i", "color=c=red:s=320x180:r=24:d=0.5",
                    "-vf", "drawbox=c=blue:t=fill:enable='gte(t,0.2)'", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", str(src)], check=True)

    video_thumbnail(src, tmp_path / "thumb.jpg")

    thumb = Image.open(tmp_path / "thumb.jpg").convert("RGB")
    assert thumb.size == (512, 288)
    red, green, blue = thumb.getpixel((256, 144))
    assert red > 200 and green < 60 and blue < 60


def test_corrupt_video_is_a_media_error_with_ffmpegs_reason(tmp_path):
    src = tmp_path / "broken.mp4"
    src.write_bytes(b"\x00\x00\x00\x18ftypmp42" + b"\xde\xad\xbe\xef" * 500)
    dst = tmp_path / "thumb.jpg"

    with pytest.raises(MediaError) as caught:
        video_thumbnail(src, dst)

    assert caught.value.code == "MEDIA_ERROR"
    assert caught.value.retryable is False
    assert "broken.mp4" in caught.value.message
    assert "moov atom not found" in caught.value.message or "Invalid data" in caught.value.message
    assert sorted(p.name for p in tmp_path.iterdir()) == ["broken.mp4"]  # nothing half-written


def test_missing_source_is_a_media_error(tmp_path):
    with pytest.raises(MediaError) as caught:
        video_thumbnail(tmp_path / "nope.mp4", tmp_path / "thumb.jpg")
    assert caught.value.code == "MEDIA_NOT_FOUND"


def test_image_preview_is_a_512_wide_jpeg(tmp_path):
    src = tmp_path / "image.png"
    src.write_bytes(render.render_image("a mountain lake", "4:3"))

    image_preview(src, tmp_path / "preview.jpg")

    preview = Image.open(tmp_path / "preview.jpg")
    assert preview.format == "JPEG"
    assert preview.size == (512, 384)


def test_image_preview_of_a_transparent_png(tmp_path):
    src = tmp_path / "alpha.png"
    Image.new("RGBA", (1000, 500), (0, 128, 255, 100)).save(src)
    image_preview(src, tmp_path / "preview.jpg")
    assert Image.open(tmp_path / "preview.jpg").size == (512, 256)


def test_corrupt_image_is_a_media_error(tmp_path):
    src = tmp_path / "broken.png"
    src.write_bytes(b"\x89PNG\r\n\x1a\n" + b"\x00" * 64)
    with pytest.raises(MediaError) as caught:
        image_preview(src, tmp_path / "preview.jpg")
    assert "ffmpeg" in caught.value.message
    assert not (tmp_path / "preview.jpg").exists()
