"""Strict readers for GLUE TSV and user CSV / TSV / JSONL files.

Every reader returns raw records (column -> string) with the 1-based line number they came from,
so that every later error can name the file and row. GLUE TSV is read with quoting OFF: MRPC
and SST-2 sentences contain bare ``"`` characters that a default CSV reader would swallow.
A :class:`TableLayout` describes any other delimited file: its delimiter, whether fields may be
quoted, and whether it has a header line (without one, columns are named by ``column_names`` or
by their position, ``"0"``, ``"1"`` …).
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from lorascope.errors import DataError


@dataclass
class RawTable:
    """Rows of one file: ``rows[i]`` maps column name -> text; ``lines[i]`` is its line number.

    ``structured`` maps a JSON Lines key to the first line where its value is an array or an
    object (kept as JSON text in ``rows``): a column used as text, label or id must hold scalars.
    """

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]
    structured: dict[str, int] = field(default_factory=dict)
    named_by: str = "header has"  # where the column names come from, as an error message says it

    def column(self, ref: str | int) -> str | None:
        """The name of column ``ref`` (a name, or a 0-based position); None when the file has no such column.

        A name also matches a header name with spaces around it (``label `` in ``text,label ``): a
        task file's names are read without surrounding spaces, so it could not name that column otherwise.
        """
        if isinstance(ref, int):
            return self.columns[ref] if ref < len(self.columns) else None
        if ref in self.columns:
            return ref
        padded = [c for c in self.columns if c.strip() == ref]
        return padded[0] if len(padded) == 1 else None

    def missing(self, ref: str | int) -> str:
        """Why ``ref`` is not a column of this file, for an error message."""
        if isinstance(ref, int):
            return f"no column at position {ref} (0-based; the file has {len(self.columns)} columns)"
        return f"missing column '{ref}' ({self.named_by}: {_shown(self.columns)})"


Format = Literal["csv", "tsv", "jsonl"]
_DEFAULT_DELIMITER = {"csv": ",", "tsv": "\t"}


@dataclass(frozen=True)
class TableLayout:
    """How a delimited file is written; None means the format's default.

    Attributes:
        format: csv, tsv or jsonl; None picks it from the file's extension.
        delimiter: one character; default ``,`` for csv and a tab for tsv.
        quoting: whether fields may be quoted (RFC 4180); default on for csv, off for tsv (GLUE).
        header: whether the first line names the columns.
        column_names: names for the columns of a file without a header line; None names them by
            position (``"0"``, ``"1"`` …).
    """

    format: Format | None = None
    delimiter: str | None = None
    quoting: bool | None = None
    header: bool = True
    column_names: tuple[str, ...] | None = None

    def format_of(self, path: Path) -> Format:
        if self.format is not None:
            return self.format
        suffix = path.suffix.lower()
        if suffix in (".csv", ".tsv"):
            return suffix[1:]  # type: ignore[return-value]
        if suffix in (".jsonl", ".json"):
            return "jsonl"
        raise DataError(f"{path}: unsupported file type '{suffix}' (expected .csv, .tsv or .jsonl, or set 'format')")

    def delimiter_of(self, fmt: Format) -> str:
        return self.delimiter or _DEFAULT_DELIMITER[fmt]

    def quoted(self, fmt: Format) -> bool:
        """Whether fields may be quoted: TSV follows GLUE's convention unless told otherwise (quoting off,
        a tab never occurs inside a field)."""
        return self.quoting if self.quoting is not None else fmt == "csv"


def _columns(path: Path, layout: TableLayout, first: list[str]) -> list[str]:
    """The column names of a file whose first record is ``first`` (its header, or its first data row)."""
    if layout.header:
        return first
    if layout.column_names is None:
        return [str(i) for i in range(len(first))]
    if len(layout.column_names) != len(first):
        raise DataError(
            f"{path}:1: column_names has {len(layout.column_names)} names "
            f"({_shown(list(layout.column_names))}) but the row has {len(first)} fields"
        )
    return list(layout.column_names)


def _named_by(layout: TableLayout) -> str:
    """Where a delimited file's column names come from, for :meth:`RawTable.missing`."""
    if layout.header:
        return "header has"
    return "column_names" if layout.column_names is not None else "no header, columns by position"


def _read_text(path: Path) -> str:
    if not path.is_file():
        raise DataError(f"{path}: file not found")
    data = path.read_bytes()
    try:
        # utf-8-sig strips the byte-order mark that the MRPC files start with.
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = data[: exc.start].count(b"\n") + 1
        raise DataError(f"{path}:{line}: not valid UTF-8 (byte {exc.start})") from None


def source_lines(path: Path) -> list[str]:
    """The lines of a text file as the readers see them: line ``n`` (1-based) is ``[n - 1]``, without its ``\n``."""
    return _read_text(path).split("\n")


def read_unquoted(path: Path, delimiter: str = "\t", layout: TableLayout = TableLayout()) -> RawTable:
    """GLUE layout: one record per line, fields split at ``delimiter``, no quoting, every row as wide as the first."""
    text = _read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty file (expected {'a header line' if layout.header else 'data rows'})")
    header = _columns(path, layout, lines[0].rstrip("\r").split(delimiter))
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    sep = "tab" if delimiter == "\t" else repr(delimiter)
    for i, raw in enumerate(lines[1 if layout.header else 0:], start=2 if layout.header else 1):
        raw = raw.rstrip("\r")
        if raw == "":
            continue
        fields = raw.split(delimiter)
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{i}: expected {len(header)} {sep}-separated fields ({_shown(header)}), found {len(fields)}"
            )
        rows.append(dict(zip(header, fields)))
        numbers.append(i)
    return RawTable(path, header, rows, numbers, named_by=_named_by(layout))


def read_tsv_unquoted(path: Path) -> RawTable:
    """GLUE's own TSV: header line, tab-separated, quoting off."""
    return read_unquoted(path, "\t")


def _shown(names: list[str]) -> str:
    """Column names for a one-line message: newlines and other control characters escaped."""
    return ", ".join(json.dumps(n, ensure_ascii=False)[1:-1] for n in names)


def read_csv(path: Path, delimiter: str = ",", layout: TableLayout = TableLayout()) -> RawTable:
    """RFC 4180 CSV (quoted fields allowed), with a header line unless ``layout.header`` is false.

    Lines end only at ``\n``, ``\r\n`` or ``\r`` (``newline=""``, as the csv module asks):
    ``str.splitlines`` would also split inside a row at U+2028, form feeds and the like.
    """
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        first = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected {'a header line' if layout.header else 'data rows'})") from None
    except csv.Error as exc:
        raise DataError(f"{path}:1: malformed {'header' if layout.header else 'row'} ({exc})") from None
    header = _columns(path, layout, first)
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    line = reader.line_num + 1  # a row is named by the line it starts on (quoted fields may span lines)
    records = reader if layout.header else itertools.chain([first], reader)
    if not layout.header:
        line = 1
    try:
        for fields in records:
            if fields and fields != [""]:
                if len(fields) != len(header):
                    raise DataError(f"{path}:{line}: expected {len(header)} fields ({_shown(header)}), found {len(fields)}")
                rows.append(dict(zip(header, fields)))
                numbers.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return RawTable(path, header, rows, numbers, named_by=_named_by(layout))


def _is_valid_unicode(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate, written in JSON as "\ud800"
        return False
    return True


def read_jsonl(path: Path) -> RawTable:
    """One JSON object per line (lines end at ``\n``); values are converted to strings."""
    text = _read_text(path)
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    columns: list[str] = []
    structured: dict[str, int] = {}
    for i, raw in enumerate(text.split("\n"), start=1):
        if not raw.strip():
            continue
        try:
            obj = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise DataError(f"{path}:{i}: not valid JSON ({exc.msg})") from None
        except RecursionError:
            raise DataError(f"{path}:{i}: JSON nested too deeply (expected a flat object)") from None
        if not isinstance(obj, dict):
            raise DataError(f"{path}:{i}: expected a JSON object per line")
        row = {k: _json_cell(v) for k, v in obj.items()}
        if not all(_is_valid_unicode(k) and _is_valid_unicode(v) for k, v in row.items()):
            raise DataError(f"{path}:{i}: not valid Unicode (a lone surrogate escape such as \\ud800)")
        for k, v in obj.items():
            if k not in columns:
                columns.append(k)
            if isinstance(v, (dict, list)):
                structured.setdefault(k, i)
        rows.append(row)
        numbers.append(i)
    return RawTable(path, columns, rows, numbers, structured, named_by="keys")


def _json_cell(value: object) -> str:
    """A JSON value as text: a string as it is, a number or boolean as JSON writes it (``1``, ``1.0``,
    ``true``: a task file's labels match the file, never Python's ``True``), null as empty; an array or
    object as its compact JSON text (refused where a task reads it, see ``RawTable.structured``)."""
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    if isinstance(value, (dict, list)):
        return json.dumps(value, ensure_ascii=False, separators=(",", ":"))
    return json.dumps(value)  # numbers and booleans: as JSON writes them


def read_table(path: Path, glue: bool = False, layout: TableLayout = TableLayout()) -> RawTable:
    """Read ``path`` as ``layout`` says (by default: .tsv unquoted as in GLUE, .csv quoted, .jsonl)."""
    if glue:
        return read_tsv_unquoted(path)
    fmt = layout.format_of(path)
    if fmt == "jsonl":
        return read_jsonl(path)
    delimiter = layout.delimiter_of(fmt)
    return read_csv(path, delimiter, layout) if layout.quoted(fmt) else read_unquoted(path, delimiter, layout)
