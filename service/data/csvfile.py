"""Reading a CSV file's records with bounded memory, whatever the file holds.

Lines are read at most ``max_line_bytes`` (+2 for the line end) at a time, so a 300 MB line
without a newline costs no more memory than a short one: it is refused as soon as it passes
the limit. A record (one line, or several when a quoted cell holds line breaks) may not pass
the limit either. Every problem is a :class:`DataError` naming the file and the line, and the
byte where there is one: not UTF-8 (a UTF-8 byte order mark is allowed and dropped), NUL
bytes, over-long lines and records, and malformed quoting.
"""

from __future__ import annotations

import csv
from collections.abc import Iterator
from pathlib import Path
from types import TracebackType
from typing import BinaryIO

UTF8_BOM = b"\xef\xbb\xbf"
_UTF16_BOMS = (b"\xff\xfe", b"\xfe\xff")


class DataError(ValueError):
    """The data file cannot be used; the message says why and where, on one line."""


def shorten(text: str, limit: int = 40) -> str:
    """``repr`` of a cell for an error message, cut to ``limit`` characters."""
    if len(text) <= limit:
        return repr(text)
    return f"{text[:limit]!r}... ({len(text):,} characters)"


def is_blank(record: list[str], width: int) -> bool:
    """An empty line, or a row of empty cells as wide as the header: not a data row.

    A row of separators of another width is not blank: it is reported as the wrong number of
    cells rather than skipped.
    """
    if not record:
        return True
    if record[0].strip():  # the usual case, decided at once
        return False
    return len(record) in (1, width) and all(not c.strip() for c in record)


class _Lines:
    """The decoded lines of a binary file, each checked before it is decoded."""

    def __init__(self, fh: BinaryIO, path: Path, max_line_bytes: int) -> None:
        self._fh = fh
        self._path = path
        self._limit = max_line_bytes
        self.line_no = 0
        self.bytes_read = 0
        self.record_start = 1
        self.record_bytes = 0

    def __iter__(self) -> Iterator[str]:
        return self

    def __next__(self) -> str:
        try:
            raw = self._fh.readline(self._limit + 2)  # bounded: never a whole huge line
        except OSError as exc:
            raise DataError(f"cannot read {self._path}: {exc.strerror or exc}") from None
        if not raw:
            raise StopIteration
        self.line_no += 1
        self.bytes_read += len(raw)
        offset = 0
        if self.line_no == 1:
            if raw.startswith(_UTF16_BOMS):
                raise DataError(f"{self._where()}: the file is UTF-16; save it as UTF-8")
            if raw.startswith(UTF8_BOM):
                raw, offset = raw[len(UTF8_BOM) :], len(UTF8_BOM)
        nul = raw.find(b"\0")
        if nul >= 0:
            raise DataError(
                f"{self._where()}, byte {nul + offset + 1}: a NUL byte; this is not a text CSV file"
            )
        if len(raw) > self._limit:  # near the limit: measure without the line end
            end = 2 if raw.endswith(b"\r\n") else 1 if raw.endswith(b"\n") else 0
            if len(raw) - end > self._limit:
                raise DataError(
                    f"{self._where()}: longer than {self._limit:,} bytes"
                    " (the limit is VIGIL_MAX_CSV_LINE_BYTES)"
                )
        self.record_bytes += len(raw)
        if self.record_bytes > self._limit + 2:  # several lines of one quoted record
            raise DataError(
                f"{self._path}, lines {self.record_start}-{self.line_no}: a record longer than"
                f" {self._limit:,} bytes (a quoted cell left open?; the limit is"
                " VIGIL_MAX_CSV_LINE_BYTES)"
            )
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DataError(
                f"{self._where()}, byte {exc.start + offset + 1}: not UTF-8 text"
                f" (byte 0x{raw[exc.start]:02x}); save the file as UTF-8"
            ) from None

    def _where(self) -> str:
        return f"{self._path}, line {self.line_no}"


class CsvFile:
    """A CSV file opened for reading: ``records()`` yields ``(line number, cells)``.

    Use as a context manager. The header is the first record; line numbers count from 1, and a
    record spanning several lines has the number of its first line.
    """

    def __init__(self, path: str | Path, max_line_bytes: int) -> None:
        self.path = Path(path)
        self.max_line_bytes = max_line_bytes
        self._fh: BinaryIO | None = None
        self._lines: _Lines | None = None
        self._reader = None

    def __enter__(self) -> CsvFile:
        if not self.path.exists():
            raise DataError(f"data file not found: {self.path}")
        if not self.path.is_file():
            raise DataError(f"{self.path} is not a regular file")
        try:
            self._fh = self.path.open("rb")
        except OSError as exc:
            raise DataError(f"cannot read {self.path}: {exc.strerror or exc}") from None
        self._lines = _Lines(self._fh, self.path, self.max_line_bytes)
        # The csv module's own cell limit (128 KiB by default) must not cut in before ours.
        if csv.field_size_limit() < self.max_line_bytes + 2:
            csv.field_size_limit(self.max_line_bytes + 2)
        self._reader = csv.reader(self._lines, strict=True)
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fh is not None:
            self._fh.close()

    @property
    def bytes_read(self) -> int:
        return self._lines.bytes_read if self._lines is not None else 0

    def records(self) -> Iterator[tuple[int, list[str]]]:
        """Each record with the number of the line it starts on; blank lines are ``[]``."""
        lines, reader = self._lines, self._reader
        if lines is None or reader is None:
            raise RuntimeError("use CsvFile as a context manager")
        while True:
            lines.record_start = lines.line_no + 1
            lines.record_bytes = 0
            try:
                record = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                if str(exc) == "unexpected end of data":
                    raise DataError(
                        f"{self.path}, line {lines.record_start}: a quoted cell is never closed"
                    ) from None
                raise DataError(f"{self.path}, line {lines.line_no}: {exc}") from None
            yield lines.record_start, record
