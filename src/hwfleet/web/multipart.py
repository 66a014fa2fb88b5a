"""A ``multipart/form-data`` body read as it arrives: small fields first, then one file.

The Images page's form posts without JavaScript as ``multipart/form-data`` (the fields in
the form's order: the CSRF token and the name before the file). :class:`FormStream` feeds
the body to python-multipart's push parser chunk by chunk: it collects the fields before
the file part (each capped at :data:`FIELD_MAX`), stops at the file part's headers so the
caller can check the CSRF token before a byte of the file is accepted, then yields the
file's bytes as they arrive (the registry writes them to disk) — nothing is spooled to a
temporary file or held whole in memory. Fields after the file are ignored.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

from python_multipart.multipart import MultipartParser, parse_options_header

#: A form field before the file (a CSRF token, a name) is short; a bigger one is refused.
FIELD_MAX = 4096
#: Fields before the file, at most.
FIELDS_MAX = 16


class FormError(ValueError):
    """A body that is not the form the page sends (the message says what is wrong)."""


def disposition(headers: dict[str, str]) -> tuple[str, str | None]:
    """A part's field name and file name (None for a plain field), from its headers."""
    _, params = parse_options_header(headers.get("content-disposition", ""))
    field = params.get(b"name", b"").decode("utf-8", "replace")
    filename = params.get(b"filename")
    return field, None if filename is None else filename.decode("utf-8", "replace")


class FormStream:
    """Reads one multipart body from ``chunks``: :meth:`fields` first, then :meth:`file`."""

    def __init__(self, content_type: str, chunks: AsyncIterator[bytes]) -> None:
        kind, params = parse_options_header(content_type)
        boundary = params.get(b"boundary")
        if kind != b"multipart/form-data" or not boundary:
            raise FormError("expected a multipart/form-data body with a boundary")
        self._chunks = chunks
        self._fields: dict[str, str] = {}
        self.filename: str | None = None
        self._headers: dict[str, str] = {}
        self._header_name = bytearray()
        self._header_value = bytearray()
        self._part: tuple[str, str | None] | None = None
        self._value = bytearray()
        self._file_out: list[bytes] = []
        self._file_started = False
        self._file_done = False
        self._ended = False
        self._parser = MultipartParser(
            boundary,
            {
                "on_part_begin": self._part_begin,
                "on_header_field": self._header_field,
                "on_header_value": self._header_value_data,
                "on_header_end": self._header_end,
                "on_headers_finished": self._headers_finished,
                "on_part_data": self._part_data,
                "on_part_end": self._part_end,
                "on_end": self._end,
            },
        )

    # -- parser callbacks -------------------------------------------------------------
    def _part_begin(self) -> None:
        self._headers.clear()
        self._value.clear()
        self._part = None

    def _header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_name += data[start:end]
        self._check_header()

    def _header_value_data(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]
        self._check_header()

    def _check_header(self) -> None:
        if len(self._header_name) + len(self._header_value) > FIELD_MAX:
            raise FormError("a part's header is too long")

    def _header_end(self) -> None:
        name = self._header_name.decode("latin-1").strip().lower()
        self._headers[name] = self._header_value.decode("utf-8", "replace").strip()
        self._header_name.clear()
        self._header_value.clear()

    def _headers_finished(self) -> None:
        self._part = disposition(self._headers)
        if self._part[1] is not None and not self._file_started:
            self._file_started = True
            self.filename = self._part[1]

    def _part_data(self, data: bytes, start: int, end: int) -> None:
        if self._part is not None and self._part[1] is not None:
            if not self._file_done and self.filename == self._part[1]:
                self._file_out.append(data[start:end])
            return
        if self._file_started:
            return  # a field after the file: ignored
        self._value += data[start:end]
        if len(self._value) > FIELD_MAX:
            raise FormError("a form field before the file is too long")

    def _part_end(self) -> None:
        if self._part is None:
            return
        name, filename = self._part
        if filename is not None:
            self._file_done = True
        elif not self._file_started:
            if len(self._fields) >= FIELDS_MAX:
                raise FormError("too many form fields")
            self._fields.setdefault(name, self._value.decode("utf-8", "replace"))

    def _end(self) -> None:
        self._ended = True

    # -- reading ------------------------------------------------------------------------
    async def _feed(self) -> bool:
        """Parse the next chunk; False at the end of the body."""
        async for chunk in self._chunks:
            if chunk:
                self._parser.write(chunk)
                return True
        self._parser.finalize()
        self._ended = True
        return False

    async def fields(self) -> dict[str, str]:
        """The fields before the file (reads until the file part begins, or the end)."""
        while not self._file_started and not self._ended:
            await self._feed()
        return dict(self._fields)

    async def file(self) -> AsyncIterator[bytes]:
        """The file's bytes as they arrive (empty when the form has no file part)."""
        await self.fields()
        while True:
            if self._file_out:
                out, self._file_out = self._file_out, []
                for piece in out:
                    if piece:
                        yield piece
            if self._file_done or self._ended:
                break
            await self._feed()
        if not self._file_done and self._file_started:
            raise FormError("the body ended inside the file")
