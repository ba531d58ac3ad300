"""Strict readers for GLUE TSV and user CSV / TSV / JSONL files.

Every reader returns raw records (column -> string) with the 1-based line number they came from,
so that every later error can name the file and row. GLUE TSV is read with quoting OFF: MRPC
and SST-2 sentences contain bare ``"`` characters that a default CSV reader would swallow.
"""

from __future__ import annotations

import csv
import io
import json
from dataclasses import dataclass
from pathlib import Path

from lorascope.errors import DataError


@dataclass
class RawTable:
    """Rows of one file: ``rows[i]`` maps column name -> text; ``lines[i]`` is its line number."""

    path: Path
    columns: list[str]
    rows: list[dict[str, str]]
    lines: list[int]


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


def read_tsv_unquoted(path: Path) -> RawTable:
    """GLUE layout: header line, tab-separated fields, no quoting, every row as wide as the header."""
    text = _read_text(path)
    lines = text.split("\n")
    if lines and lines[-1] == "":
        lines.pop()
    if not lines:
        raise DataError(f"{path}: empty file (expected a header line)")
    header = lines[0].rstrip("\r").split("\t")
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    for i, raw in enumerate(lines[1:], start=2):
        raw = raw.rstrip("\r")
        if raw == "":
            continue
        fields = raw.split("\t")
        if len(fields) != len(header):
            raise DataError(
                f"{path}:{i}: expected {len(header)} tab-separated fields ({', '.join(header)}), found {len(fields)}"
            )
        rows.append(dict(zip(header, fields)))
        numbers.append(i)
    return RawTable(path, header, rows, numbers)


def _shown(names: list[str]) -> str:
    """Column names for a one-line message: newlines and other control characters escaped."""
    return ", ".join(json.dumps(n, ensure_ascii=False)[1:-1] for n in names)


def read_csv(path: Path, delimiter: str = ",") -> RawTable:
    """RFC 4180 CSV (quoted fields allowed) with a header line.

    Lines end only at ``\n``, ``\r\n`` or ``\r`` (``newline=""``, as the csv module asks):
    ``str.splitlines`` would also split inside a row at U+2028, form feeds and the like.
    """
    text = _read_text(path)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, strict=True)
    try:
        header = next(reader)
    except StopIteration:
        raise DataError(f"{path}: empty file (expected a header line)") from None
    except csv.Error as exc:
        raise DataError(f"{path}:1: malformed header ({exc})") from None
    rows: list[dict[str, str]] = []
    numbers: list[int] = []
    line = reader.line_num + 1  # a row is named by the line it starts on (quoted fields may span lines)
    try:
        for fields in reader:
            if fields and fields != [""]:
                if len(fields) != len(header):
                    raise DataError(f"{path}:{line}: expected {len(header)} fields ({_shown(header)}), found {len(fields)}")
                rows.append(dict(zip(header, fields)))
                numbers.append(line)
            line = reader.line_num + 1
    except csv.Error as exc:
        raise DataError(f"{path}:{reader.line_num}: malformed CSV ({exc})") from None
    return RawTable(path, header, rows, numbers)


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
        row = {k: "" if v is None else str(v) for k, v in obj.items()}
        if not all(_is_valid_unicode(k) and _is_valid_unicode(v) for k, v in row.items()):
            raise DataError(f"{path}:{i}: not valid Unicode (a lone surrogate escape such as \\ud800)")
        for k in row:
            if k not in columns:
                columns.append(k)
        rows.append(row)
        numbers.append(i)
    return RawTable(path, columns, rows, numbers)


def read_table(path: Path, glue: bool = False) -> RawTable:
    """Pick the reader by extension (.tsv unquoted as in GLUE, .csv quoted, .jsonl)."""
    suffix = path.suffix.lower()
    if glue or suffix == ".tsv":
        # TSV follows GLUE's convention: quoting off, a tab never occurs inside a field.
        return read_tsv_unquoted(path)
    if suffix == ".csv":
        return read_csv(path)
    if suffix in (".jsonl", ".json"):
        return read_jsonl(path)
    raise DataError(f"{path}: unsupported file type '{suffix}' (expected .csv, .tsv or .jsonl)")
