"""The streamed multipart form reader: fields before the file, the file's bytes as they
come, in whatever pieces the network cuts the body into."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator

import httpx
import pytest

from hwfleet.web.multipart import FIELD_MAX, FormError, FormStream


def encoded(fields: dict[str, str], file: tuple[str, bytes] | None) -> tuple[str, bytes]:
    """A real multipart body and its content type, as httpx (a browser's twin) writes it."""
    if file is None:  # fields only: (None, value) keeps httpx on multipart
        plain = {name: (None, value) for name, value in fields.items()}
        request = httpx.Request("POST", "http://x/", files=plain)
    else:
        files = {"file": (file[0], file[1], "application/octet-stream")}
        request = httpx.Request("POST", "http://x/", data=fields, files=files)
    return request.headers["content-type"], request.read()


async def pieces(body: bytes, size: int) -> AsyncIterator[bytes]:
    for start in range(0, len(body), size):
        yield body[start : start + size]


async def read(
    content_type: str, body: bytes, size: int
) -> tuple[dict[str, str], str | None, bytes]:
    form = FormStream(content_type, pieces(body, size))
    fields = await form.fields()
    data = b"".join([chunk async for chunk in form.file()])
    return fields, form.filename, data


@pytest.mark.parametrize("size", [1, 7, 4096, 1 << 20])
async def test_fields_then_the_file_whatever_the_chunking(size: int) -> None:
    length = 20_000 if size == 1 else 200_000  # byte by byte is slow in pure Python
    payload = os.urandom(length) + b"\r\n--not-the-boundary\r\n" + os.urandom(1000)
    content_type, body = encoded({"csrf": "tok", "name": "disk one"}, ("d.img", payload))
    fields, filename, data = await read(content_type, body, size)
    assert fields == {"csrf": "tok", "name": "disk one"}
    assert filename == "d.img" and data == payload


async def test_fields_are_known_before_the_file_is_read() -> None:
    content_type, body = encoded({"csrf": "tok"}, ("d.img", b"x" * 100_000))
    consumed = 0

    async def counted() -> AsyncIterator[bytes]:
        nonlocal consumed
        async for chunk in pieces(body, 1000):
            consumed += len(chunk)
            yield chunk

    form = FormStream(content_type, counted())
    assert await form.fields() == {"csrf": "tok"}
    assert consumed < 2000  # stopped at the file part's headers, not at the end


async def test_a_form_without_a_file_and_bad_bodies() -> None:
    content_type, body = encoded({"csrf": "tok"}, None)
    assert await read(content_type, body, 64) == ({"csrf": "tok"}, None, b"")
    with pytest.raises(FormError, match="multipart/form-data"):
        FormStream("application/x-www-form-urlencoded", pieces(b"", 1))
    with pytest.raises(FormError, match="boundary"):
        FormStream("multipart/form-data", pieces(b"", 1))
    content_type, body = encoded({"csrf": "x" * (FIELD_MAX + 1)}, ("d.img", b"x"))
    with pytest.raises(FormError, match="too long"):
        await read(content_type, body, 512)
    content_type, body = encoded({"csrf": "tok"}, ("d.img", b"y" * 5000))
    with pytest.raises(FormError, match="ended inside the file"):
        await read(content_type, body[:3000], 512)  # the connection dropped mid-file
