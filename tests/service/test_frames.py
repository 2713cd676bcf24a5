"""``posestream.service.frames``: JPEG/PNG sizes from headers and the frame codec, against real encoder output."""

from __future__ import annotations

import struct

import cv2
import numpy as np
import pytest

from posestream.service.frames import ImageHeaderError, decode_image, encode_jpeg, image_size


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


def _photo(width: int = 97, height: int = 61) -> np.ndarray:
    """An (H, W, 3) uint8 RGB picture with smooth areas and edges (JPEG behaves as on video frames)."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack(((x * 255) // width, (y * 255) // height, 255 - (x * 255) // width), axis=-1).astype(
        np.uint8
    )
    rgb[height // 3 : height // 2, width // 4 : width // 2] = (250, 20, 40)
    return rgb


def test_encode_jpeg_is_opencv_jpeg_of_the_bgr_frame() -> None:
    """The gateway's JPEG bytes are what it sent before the codec moved here (RGB -> BGR -> imencode)."""
    rgb = _photo()
    for quality in (50, 90):
        ok, buf = cv2.imencode(
            ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, quality]
        )
        assert ok
        assert encode_jpeg(rgb, quality) == buf.tobytes()
    back, err = decode_image(encode_jpeg(rgb, 95))
    assert err == "" and back.shape == rgb.shape
    error = np.abs(back.astype(int) - rgb).mean()
    swapped = np.abs(back[..., ::-1].astype(int) - rgb).mean()
    assert error < 3 < 30 < swapped  # the colour order survives the trip


def _variants() -> list[bytes]:
    bgr = cv2.cvtColor(_photo(), cv2.COLOR_RGB2BGR)
    bgra = cv2.cvtColor(bgr, cv2.COLOR_BGR2BGRA)
    bgra[..., 3] = np.arange(bgra.shape[1], dtype=np.uint8)[None, :] * 2
    images = [
        (".jpg", bgr, [cv2.IMWRITE_JPEG_QUALITY, 80]),
        (".jpg", bgr, [cv2.IMWRITE_JPEG_PROGRESSIVE, 1]),
        (".jpg", bgr, [cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]),
        (".jpg", bgr[:, :, 1], []),  # grey
        (".png", bgr, []),
        (".png", bgr[:, :, 2], []),  # grey
        (".png", bgra, []),
        (".png", bgr.astype(np.uint16) * 257 + 3, []),  # 16 bits per channel
    ]
    out = []
    for ext, img, params in images:
        ok, buf = cv2.imencode(ext, img, params)
        assert ok
        out.append(buf.tobytes())
    return out


@pytest.mark.parametrize("index", range(8))
def test_decode_image_equals_decoding_to_bgr_and_swapping(index: int) -> None:
    """Decoding straight to RGB gives the worker the pixels the old BGR decode + swap gave."""
    data = _variants()[index]
    old = cv2.cvtColor(cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    rgb, err = decode_image(data, max_pixels=10**6)
    assert err == ""
    assert rgb.dtype == np.uint8 and rgb.shape == old.shape
    assert np.array_equal(rgb, old)


def test_decode_image_refuses_before_decoding() -> None:
    rgb, err = decode_image(_encode(".png", 64, 48), max_pixels=64 * 48 - 1)
    assert rgb is None and "max_frame_pixels" in err
    rgb, err = decode_image(b"GIF89a" + bytes(32), max_pixels=10**6)
    assert rgb is None and err.startswith("undecodable image")
    rgb, err = decode_image(_encode(".jpg", 64, 48)[:200])
    assert rgb is None or rgb.shape == (48, 64, 3)  # OpenCV may return a partial image of a truncated JPEG
