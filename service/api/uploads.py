"""Reading a training-job submission's multipart/form-data body as it streams in.

The ``data`` file part goes straight to a temporary file (never into memory whole), and the
whole body is capped: a request over the limit is refused from its ``Content-Length`` before
a byte is read, and one that streams past it (chunked, or a lying length) is cut off there
and what was written is removed. The other parts are small text fields, capped too.

The file goes into the job store's uploads folder as ``.incoming-*.tmp`` so that an upload a
crash interrupts is swept like the store's own temporary files.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import anyio.to_thread
from python_multipart.exceptions import MultipartParseError
from python_multipart.multipart import MultipartParser, parse_options_header

from service.core.features import InputError

DATA_PART = "data"
MAX_FIELD_BYTES = 64 * 1024
MAX_PARTS = 64
FLUSH_BYTES = 1 << 20


def too_large(size: int | None, limit: int) -> InputError:
    what = f"body is {size} bytes" if size is not None else "body is over the limit"
    return InputError(
        f"{what}; training uploads are limited to {limit} bytes (VIGIL_MAX_UPLOAD_BYTES);"
        " nothing was stored",
        413,
    )


def check_length(content_length: str | None, limit: int) -> None:
    """413 from the ``Content-Length`` header, before the body is read."""
    if content_length is not None and content_length.strip().isdigit():
        size = int(content_length)
        if size > limit:
            raise too_large(size, limit)


@dataclass
class Form:
    """A parsed form: its text fields (a name may repeat) and where the data part went."""

    fields: dict[str, list[str]] = field(default_factory=dict)
    data_path: Path | None = None
    filename: str | None = None
    data_bytes: int = 0


class _Parser:
    """python-multipart's callbacks, collecting fields and the data part's chunks."""

    def __init__(self, form: Form) -> None:
        self.form = form
        self.pending: list[bytes] = []  # data-part bytes not yet written
        self.ended = False
        self._parts = 0
        self._header_field = b""
        self._header_value = b""
        self._headers: dict[bytes, bytes] = {}
        self._name: str | None = None
        self._is_data = False
        self._value = bytearray()

    def callbacks(self) -> dict:
        return {
            "on_part_begin": self.on_part_begin,
            "on_part_data": self.on_part_data,
            "on_part_end": self.on_part_end,
            "on_header_field": self.on_header_field,
            "on_header_value": self.on_header_value,
            "on_header_end": self.on_header_end,
            "on_headers_finished": self.on_headers_finished,
            "on_end": self.on_end,
        }

    def on_part_begin(self) -> None:
        self._parts += 1
        if self._parts > MAX_PARTS:
            raise InputError(f"the form has more than {MAX_PARTS} parts", 422)
        self._headers = {}
        self._name = None
        self._is_data = False
        self._value = bytearray()

    def on_header_field(self, data: bytes, start: int, end: int) -> None:
        self._header_field += data[start:end]

    def on_header_value(self, data: bytes, start: int, end: int) -> None:
        self._header_value += data[start:end]

    def on_header_end(self) -> None:
        self._headers[self._header_field.strip().lower()] = self._header_value.strip()
        self._header_field = self._header_value = b""

    def on_headers_finished(self) -> None:
        disposition, options = parse_options_header(self._headers.get(b"content-disposition"))
        name = options.get(b"name")
        if disposition != b"form-data" or name is None:
            raise InputError("a form part has no Content-Disposition: form-data; name=...", 400)
        self._name = name.decode("utf-8", "replace")
        if self._name == DATA_PART:
            if self.form.data_path is not None:
                raise InputError("the form has more than one 'data' part: send one CSV file", 422)
            self._is_data = True
            filename = options.get(b"filename")
            self.form.filename = (
                Path(filename.decode("utf-8", "replace").replace("\\", "/")).name or None
                if filename
                else None
            )
            self.form.data_path = Path("pending")  # set for real by the reader

    def on_part_data(self, data: bytes, start: int, end: int) -> None:
        if self._is_data:
            self.pending.append(data[start:end])
            self.form.data_bytes += end - start
            return
        self._value += data[start:end]
        if len(self._value) > MAX_FIELD_BYTES:
            raise InputError(f"form field {self._name!r} is over {MAX_FIELD_BYTES} bytes", 413)

    def on_part_end(self) -> None:
        if not self._is_data and self._name is not None:
            try:
                text = self._value.decode("utf-8")
            except UnicodeDecodeError:
                raise InputError(f"form field {self._name!r} is not UTF-8 text", 422) from None
            self.form.fields.setdefault(self._name, []).append(text)

    def on_end(self) -> None:
        self.ended = True


async def read_form(
    chunks: AsyncIterator[bytes], content_type: str, folder: Path, limit: int
) -> Form:
    """Parse a multipart body from ``chunks`` into a :class:`Form`; the data part is written
    to a new file in ``folder`` (the caller removes it). InputError for a malformed body
    (400), more than ``limit`` bytes (413) or a form without a data part (422)."""
    _, options = parse_options_header(content_type)
    boundary = options.get(b"boundary")
    if not boundary:
        raise InputError("Content-Type multipart/form-data has no boundary", 400)
    form = Form()
    state = _Parser(form)
    parser = MultipartParser(boundary, state.callbacks())
    path = folder / f".incoming-{secrets.token_hex(8)}.tmp"
    fh: IO[bytes] | None = None
    size = 0
    try:
        async for chunk in chunks:
            size += len(chunk)
            if size > limit:
                raise too_large(None, limit)
            try:
                parser.write(chunk)
            except MultipartParseError as exc:
                raise InputError(f"malformed multipart/form-data body: {exc}", 400) from None
            if sum(map(len, state.pending)) >= FLUSH_BYTES:
                fh = fh or path.open("xb")
                await anyio.to_thread.run_sync(fh.writelines, state.pending)
                state.pending = []
        if state.pending:
            fh = fh or path.open("xb")
            await anyio.to_thread.run_sync(fh.writelines, state.pending)
            state.pending = []
        if not state.ended:
            raise InputError("multipart/form-data body ends before its closing boundary", 400)
        if form.data_path is None:
            raise InputError(
                "the form has no 'data' part: send the CSV as a file field named data"
                " (curl -F data=@train.csv)",
                422,
            )
        if fh is None:
            fh = path.open("xb")  # an empty file: the job's reader says what is wrong with it
        fh.close()
        fh = None
        form.data_path = path
        return form
    except BaseException:
        if fh is not None:
            fh.close()
        path.unlink(missing_ok=True)
        raise
    finally:
        if fh is not None:
            fh.close()
