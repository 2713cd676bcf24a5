"""Streaming an upload to disk: multipart (field ``file``) or a raw body, with a running size limit.

The body is never held in memory: each received chunk goes straight to the target
file, and the upload stops with 413 as soon as it passes ``max_bytes`` (the partial
file is deleted).
"""

from __future__ import annotations

from pathlib import Path
from typing import IO

from python_multipart.multipart import MultipartParser, parse_options_header
from starlette.requests import ClientDisconnect, Request

from posestream.service.gateway.errors import ApiError

FILE_FIELD = "file"


class _TooLarge(Exception):
    pass


async def receive_upload(request: Request, target: Path, max_bytes: int) -> int:
    """Write the uploaded clip to ``target``; returns its size in bytes.

    Raises:
        ApiError: 413 ``upload_too_large``; 422 ``missing_file`` (multipart without a
            ``file`` part); 415 ``unsupported_media_type``; 400 ``bad_request`` (broken multipart).
    """
    content_type = request.headers.get("content-type", "")
    length = request.headers.get("content-length")
    if length and length.isdigit() and int(length) > max_bytes + 64 * 1024:
        raise _too_large(max_bytes)
    ctype, params = parse_options_header(content_type.encode("latin-1"))
    try:
        with open(target, "wb") as fh:
            if ctype == b"multipart/form-data":
                size = await _receive_multipart(request, fh, params.get(b"boundary"), max_bytes)
            elif ctype in (b"application/octet-stream", b"") or ctype.startswith(
                (b"video/", b"application/")
            ):
                size = await _receive_raw(request, fh, max_bytes)
            else:
                raise ApiError(
                    415, "unsupported_media_type",
                    f"send the clip as multipart/form-data (field '{FILE_FIELD}') or as a raw body, not {ctype.decode()}",
                )  # fmt: skip
    except _TooLarge:
        target.unlink(missing_ok=True)
        raise _too_large(max_bytes) from None
    except ClientDisconnect:
        target.unlink(missing_ok=True)
        raise ApiError(400, "bad_request", "the client disconnected during the upload") from None
    except BaseException:
        target.unlink(missing_ok=True)
        raise
    return size


def _too_large(max_bytes: int) -> ApiError:
    return ApiError(413, "upload_too_large", f"the upload is larger than the limit of {max_bytes} bytes")


async def _receive_raw(request: Request, fh: IO[bytes], max_bytes: int) -> int:
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > max_bytes:
            raise _TooLarge
        fh.write(chunk)
    return size


async def _receive_multipart(request: Request, fh: IO[bytes], boundary: bytes | None, max_bytes: int) -> int:
    if not boundary:
        raise ApiError(400, "bad_request", "multipart/form-data without a boundary")
    state = {"size": 0, "found": False, "in_file": False, "done_file": False}
    header_field = bytearray()
    header_value = bytearray()
    headers: dict[bytes, bytes] = {}

    def on_part_begin() -> None:
        headers.clear()

    def on_header_field(data: bytes, start: int, end: int) -> None:
        header_field.extend(data[start:end])

    def on_header_value(data: bytes, start: int, end: int) -> None:
        header_value.extend(data[start:end])

    def on_header_end() -> None:
        headers[bytes(header_field).lower()] = bytes(header_value)
        header_field.clear()
        header_value.clear()

    def on_headers_finished() -> None:
        _, opts = parse_options_header(headers.get(b"content-disposition", b""))
        is_file = opts.get(b"name") == FILE_FIELD.encode() and not state["done_file"]
        state["in_file"] = is_file
        state["found"] = state["found"] or is_file

    def on_part_data(data: bytes, start: int, end: int) -> None:
        if state["in_file"]:
            state["size"] += end - start
            if state["size"] > max_bytes:
                raise _TooLarge
            fh.write(data[start:end])

    def on_part_end() -> None:
        if state["in_file"]:
            state["in_file"] = False
            state["done_file"] = True

    parser = MultipartParser(
        boundary,
        {
            "on_part_begin": on_part_begin, "on_header_field": on_header_field, "on_header_value": on_header_value,
            "on_header_end": on_header_end, "on_headers_finished": on_headers_finished,
            "on_part_data": on_part_data, "on_part_end": on_part_end,
        },
    )  # fmt: skip
    try:
        async for chunk in request.stream():
            parser.write(chunk)
        parser.finalize()
    except _TooLarge:
        raise
    except Exception as exc:  # python-multipart raises its own parse errors
        raise ApiError(400, "bad_request", f"malformed multipart body: {exc}") from None
    if not state["found"]:
        raise ApiError(422, "missing_file", f"the multipart body has no '{FILE_FIELD}' part holding the clip")
    return int(state["size"])
