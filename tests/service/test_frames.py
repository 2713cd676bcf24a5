"""``posestream.service.frames.image_size``: JPEG/PNG sizes from headers, against real encoder output."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from posestream.service.frames import ImageHeaderError, image_size


def _encode(ext: str, width: int, height: int, *params: int) -> bytes:
    img = np.random.default_rng(0).integers(0, 255, (height, width, 3), np.uint8)
    ok, buf = cv2.imencode(ext, img, list(params))
    assert ok
    return buf.tobytes()


@pytest.mark.parametrize(
    ("ext", "params"),
    [(".jpg", ()), (".jpg", (cv2.IMWRITE_JPEG_PROGRESSIVE, 1)), (".jpg", (cv2.IMWRITE_JPEG_OPTIMIZE, 1)),
     (".png", ()), (".png", (cv2.IMWRITE_PNG_COMPRESSION, 9))],
)  # fmt: skip
@pytest.mark.parametrize(("width", "height"), [(320, 240), (1, 1), (17, 901)])
def test_sizes_of_real_images(ext: str, params: tuple[int, ...], width: int, height: int) -> None:
    data = _encode(ext, width, height, *params)
    assert image_size(data) == (width, height)


def test_progressive_jpeg_uses_sof2() -> None:
    data = _encode(".jpg", 64, 48, cv2.IMWRITE_JPEG_PROGRESSIVE, 1)
    assert b"\xff\xc2" in data and b"\xff\xc0" not in data
    assert image_size(data) == (64, 48)


def test_huge_jpeg_header_is_read_without_decoding() -> None:
    # A hand-made header announcing 16384x16384: only the header exists, no pixels.
    sof = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, 16384, 16384, 1) + b"\x01\x11\x00"
    data = b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00" + bytes(9) + sof
    assert image_size(data) == (16384, 16384)


def test_truncated_headers_are_clear_errors() -> None:
    jpg = _encode(".jpg", 320, 240)
    png = _encode(".png", 320, 240)
    sof = jpg.index(b"\xff\xc0")
    for cut in (2, 3, 5, sof, sof + 4):
        with pytest.raises(ImageHeaderError, match="truncated JPEG"):
            image_size(jpg[:cut])
    for cut in (8, 12, 20):
        with pytest.raises(ImageHeaderError, match="truncated PNG"):
            image_size(png[:cut])


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "not a JPEG or PNG"),
        (b"GIF89a....", "not a JPEG or PNG"),
        (b"\xff\xd8\xff\xe0 truncated jpeg", "JPEG"),
        (b"\xff\xd8\x00\x00", "expected a marker"),
        (b"\xff\xd8\xff\xda\x00\x08", "before any frame header"),
        (b"\xff\xd8\xff\xd9", "EOI before any frame header"),
        (b"\xff\xd8\xff\xe0\x00\x01", "has length 1"),
        (b"\xff\xd8\xff\xc0\x00\x0b\x08\x00\x00\x01\x00\x01\x01\x11\x00", "zero height"),
        (b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IDAT", 10, 10) + bytes(9), "13-byte IHDR"),
        (b"\x89PNG\r\n\x1a\n" + struct.pack(">I4sII", 13, b"IHDR", 0, 10) + bytes(9), "invalid size"),
    ],
)
def test_garbage_is_a_clear_error(data: bytes, match: str) -> None:
    with pytest.raises(ImageHeaderError, match=match):
        image_size(data)
    assert issubclass(ImageHeaderError, ValueError)
