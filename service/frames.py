"""The frame codec of the gateway -> worker trip: JPEG/PNG sizes from headers, JPEG encoding, decoding.

A frame travels as JPEG or PNG bytes in a ``FrameJob``: the gateway encodes an uploaded
video's decoded RGB frames with ``encode_jpeg`` (WebSocket frames are passed on as the
client sent them), checks sizes with ``image_size`` (header only, never a full decode) and
the worker turns the bytes back into RGB with ``decode_image``.

``image_size`` reads only the bytes up to the JPEG SOF segment or the PNG IHDR chunk; it
does not check the compressed data after them (a corrupt body is found when decoding), so
a frame's pixel count is known before anything is allocated for its pixels.

Colour order: frames are RGB on both ends. OpenCV's JPEG writer takes BGR, so
``encode_jpeg`` swaps the channels once; ``decode_image`` decodes straight to RGB
(``IMREAD_COLOR_RGB``), which gives the same pixels as decoding to BGR and swapping
(``tests/service/test_frames.py`` checks it on real encoder output).
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic).
# 0xC4 (DHT), 0xC8 (JPG extension) and 0xCC (DAC) share the range but are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0-7 (SOI/EOI are handled apart).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


__all__ = ["ImageHeaderError", "decode_image", "encode_jpeg", "image_size"]


class ImageHeaderError(ValueError):
    """The bytes are not a JPEG or PNG, or their header is truncated or malformed."""


def image_size(data: bytes) -> tuple[int, int]:
    """(width, height) in pixels of a JPEG or PNG, read from its header only.

    Raises ``ImageHeaderError`` (a ``ValueError``) with what is wrong: not JPEG/PNG,
    a truncated header, a malformed segment or chunk, or a zero size.
    """
    if data.startswith(PNG_SIGNATURE):
        return _png_size(data)
    if data.startswith(JPEG_SOI):
        return _jpeg_size(data)
    raise ImageHeaderError("not a JPEG or PNG image (unknown signature)")


def _png_size(data: bytes) -> tuple[int, int]:
    head = data[
        8:33
    ]  # length(4) type(4) width(4) height(4) depth, colour, compression, filter, interlace, crc(4)
    if len(head) < 16:
        raise ImageHeaderError("truncated PNG: the IHDR chunk is incomplete")
    length, ctype, width, height = struct.unpack(">I4sII", head[:16])
    if ctype != b"IHDR" or length != 13:
        raise ImageHeaderError("malformed PNG: the first chunk must be a 13-byte IHDR")
    if width == 0 or height == 0 or width > 2**31 - 1 or height > 2**31 - 1:
        raise ImageHeaderError(f"malformed PNG: invalid size {width}x{height}")
    return width, height


def _jpeg_size(data: bytes) -> tuple[int, int]:
    pos, n = 2, len(data)
    while True:
        if pos >= n:
            raise ImageHeaderError("truncated JPEG: no frame header (SOF) before the end of the data")
        if data[pos] != 0xFF:
            raise ImageHeaderError(f"malformed JPEG: expected a marker at byte {pos}")
        while pos < n and data[pos] == 0xFF:  # fill bytes before a marker
            pos += 1
        if pos >= n:
            raise ImageHeaderError("truncated JPEG: the data ends inside a marker")
        marker = data[pos]
        pos += 1
        if marker in _STANDALONE:
            continue
        if marker in (0xD8, 0xD9, 0xDA, 0x00):
            what = {0xD8: "a second SOI", 0xD9: "EOI", 0xDA: "scan data (SOS)", 0x00: "a stuffed byte"}[
                marker
            ]
            raise ImageHeaderError(f"malformed JPEG: {what} before any frame header (SOF)")
        if pos + 2 > n:
            raise ImageHeaderError("truncated JPEG: the data ends inside a segment length")
        (length,) = struct.unpack_from(">H", data, pos)
        if length < 2:
            raise ImageHeaderError(f"malformed JPEG: segment 0xFF{marker:02X} has length {length}")
        if marker in _SOF_MARKERS:
            if length < 8 or pos + 7 > n:
                raise ImageHeaderError("truncated JPEG: the frame header (SOF) is incomplete")
            height, width = struct.unpack_from(">HH", data, pos + 3)
            if width == 0 or height == 0:
                raise ImageHeaderError(
                    f"unsupported JPEG: size {width}x{height} (a zero height is set later by DNL)"
                )
            return width, height
        pos += length


def encode_jpeg(rgb: np.ndarray, quality: int) -> bytes:
    """(H, W, 3) uint8 RGB -> JPEG bytes at ``quality`` (0-100).

    Raises ``ValueError`` when OpenCV cannot encode it.
    """
    ok, buf = cv2.imencode(
        ".jpg", cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, int(quality)]
    )
    if not ok:
        raise ValueError("the frame could not be JPEG-encoded")
    return buf.tobytes()


def decode_image(data: bytes, max_pixels: int | None = None) -> tuple[np.ndarray | None, str]:
    """JPEG/PNG bytes -> ((H, W, 3) uint8 RGB, "") or (None, error message).

    With ``max_pixels``, the size is read from the header first and a larger image is
    refused before anything is allocated for its pixels. Grey and RGBA images come back as
    three channels (OpenCV's ``IMREAD_COLOR`` rules), 16-bit PNGs as 8 bits.
    """
    if max_pixels is not None:
        try:
            w, h = image_size(data)
        except ImageHeaderError as exc:
            return None, f"undecodable image: {exc}"
        if w * h > max_pixels:
            return None, f"image is {w}x{h} = {w * h} pixels; the limit is max_frame_pixels={max_pixels}"
    rgb_flag = getattr(cv2, "IMREAD_COLOR_RGB", None)  # OpenCV >= 4.10; older ones decode to BGR
    try:
        img = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR if rgb_flag is None else rgb_flag)
    except cv2.error as exc:
        return None, f"undecodable image: {exc}"
    if img is None:
        return None, "undecodable image (not a JPEG or PNG)"
    return (cv2.cvtColor(img, cv2.COLOR_BGR2RGB) if rgb_flag is None else img), ""
