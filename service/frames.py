"""Image sizes from JPEG/PNG headers, without decoding (so a frame's pixel count is known before allocation).

``image_size`` reads only the bytes up to the JPEG SOF segment or the PNG IHDR chunk; it
does not check the compressed data after them (a corrupt body is found when decoding).
"""

from __future__ import annotations

import struct

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_SOI = b"\xff\xd8"
# Start-of-frame markers (baseline, extended, progressive, lossless; Huffman and arithmetic).
# 0xC4 (DHT), 0xC8 (JPG extension) and 0xCC (DAC) share the range but are not frames.
_SOF_MARKERS = frozenset(range(0xC0, 0xD0)) - {0xC4, 0xC8, 0xCC}
# Markers without a length field: TEM and RST0-7 (SOI/EOI are handled apart).
_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})


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
    head = data[8:33]  # length(4) type(4) width(4) height(4) depth, colour, compression, filter, interlace, crc(4)
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
            what = {0xD8: "a second SOI", 0xD9: "EOI", 0xDA: "scan data (SOS)", 0x00: "a stuffed byte"}[marker]
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
                raise ImageHeaderError(f"unsupported JPEG: size {width}x{height} (a zero height is set later by DNL)")
            return width, height
        pos += length
