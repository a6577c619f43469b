"""Read raw rows from a Hub dataset, a local .json/.jsonl/.parquet/.csv file, a folder of them, or the toy world
(or several of these, comma-separated).

Each input becomes a `Source`: a label for error messages (`FILE` of `FILE:ROW: field: problem`), the column
names (for schema detection) and an iterator of `(row_number, row)` where `row` is a dict, or a `RowError`
for a row that could not even be parsed. Row numbers are line numbers for .jsonl and .csv files and 1-based
record positions for .json, .parquet and Hub datasets.
"""

from __future__ import annotations

import csv
import json
import logging
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Iterator

from ..errors import DataError
from ..toy import WORLDS, generate_world
from .schemas import RowError

log = logging.getLogger(__name__)

EXTENSIONS = (".jsonl", ".json", ".parquet", ".csv")


@dataclass
class Source:
    label: str  # shown in errors: a file path or "hub-id[split]"
    name: str  # written to each record's `source`
    columns: list[str]
    rows: Iterable[tuple[int, Any]]
    total: int | None = None
    loose: bool = False  # values are text (CSV): "true"/"1" accepted for booleans
    schema_hint: str | None = field(default=None)


def open_sources(dataset: str, *, split: str = "train", revision: str | None = None, subset: str | None = None,
                 toy=None) -> list[Source]:
    """Resolve `dataset` (a toy world "toy" / "tradeoff" generated with the `toy` section `toy`, a local file
    or folder, else a Hub id) into sources. Several, comma-separated, are read together (e.g. a few real rows
    padded with toy rows: each record's `source` says which is which)."""
    if "," in dataset:
        parts = [d.strip() for d in dataset.split(",") if d.strip()]
        return [src for part in parts for src in open_sources(part, split=split, revision=revision, subset=subset,
                                                              toy=toy)]
    if dataset in WORLDS:
        source, rows = generate_world(dataset, toy)
        return [Source(dataset, source, list(rows[0]) if rows else [], list(enumerate(rows, 1)), len(rows),
                       schema_hint="pku2024")]
    path = Path(dataset).expanduser()
    if path.is_dir():
        files = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in EXTENSIONS
                       and not any(part.startswith(".") for part in p.relative_to(path).parts))
        if not files:
            raise DataError(str(path), None, None, f"no {', '.join(EXTENSIONS)} files in this folder")
        return [open_file(f, name=str(f.relative_to(path))) for f in files]
    if path.is_file():
        return [open_file(path, name=path.name)]
    if path.suffix.lower() in EXTENSIONS or dataset.startswith((".", "/", "~")):
        raise DataError(dataset, None, None, "no such file or folder")
    return [open_hub(dataset, split=split, revision=revision, subset=subset)]


def open_file(path: Path, name: str | None = None) -> Source:
    suffix = path.suffix.lower()
    label, name = str(path), name or path.name
    if suffix == ".jsonl":
        rows = list(_jsonl_rows(path))
        return Source(label, name, _columns(rows), rows, len(rows))
    if suffix == ".json":
        rows = _json_rows(path)
        return Source(label, name, _columns(rows), rows, len(rows))
    if suffix == ".csv":
        rows, columns = _csv_rows(path)
        return Source(label, name, columns, rows, len(rows), loose=True)
    if suffix == ".parquet":
        return _parquet_source(path, label, name)
    raise DataError(label, None, None, f"unsupported file type {suffix!r}; use one of {', '.join(EXTENSIONS)}")


def _columns(rows: list[tuple[int, Any]]) -> list[str]:
    for _, row in rows:
        if isinstance(row, dict):
            return list(row)
    return []


def _jsonl_rows(path: Path) -> Iterator[tuple[int, Any]]:
    with open(path, encoding="utf-8", errors="replace") as fh:
        for line_no, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                yield line_no, json.loads(line)
            except json.JSONDecodeError as err:
                yield line_no, RowError(None, f"unreadable line (not valid JSON: {json_problem(err)})")


def _json_rows(path: Path) -> list[tuple[int, Any]]:
    try:
        with open(path, encoding="utf-8") as fh:
            data = json.load(fh)
    except json.JSONDecodeError as err:
        if err.msg == "Extra data":  # JSON Lines saved under a .json name (common for Hub exports)
            return list(_jsonl_rows(path))
        if not err.doc.strip():  # an empty file: no rows (the caller says so)
            return []
        raise DataError(str(path), err.lineno, None, f"not valid JSON ({json_problem(err)})") from None
    except UnicodeDecodeError:
        raise DataError(str(path), None, None, "not UTF-8 text") from None
    if isinstance(data, dict):  # {"data": [...]} / {"train": [...]}: the one list of rows inside
        lists = [v for v in data.values() if isinstance(v, list)]
        if len(lists) != 1:
            raise DataError(str(path), None, None, "expected a list of rows (or an object holding one list)")
        data = lists[0]
    if not isinstance(data, list):
        raise DataError(str(path), None, None, "expected a list of rows")
    return list(enumerate(data, 1))


def json_problem(err: json.JSONDecodeError) -> str:
    """A whole sentence for a JSON error: `err.msg` alone reads "Unterminated string starting at" (the position
    is only in str(err)); say where, and say so when the text simply ends early (a cut-off download or copy)."""
    rest = err.doc[err.pos:].strip()
    cut = not rest or err.msg.startswith("Unterminated") or (err.msg.startswith("Expecting") and len(rest) <= 1)
    where = f"line {err.lineno} column {err.colno}" if "\n" in err.doc.strip() else f"column {err.colno}"
    if not err.doc.strip():
        return "no text: the file is empty"
    at = "" if err.msg.endswith(" at") else " at"
    return f"{err.msg}{at} {where}" + ("; the text ends early: cut off?" if cut else "")


def _csv_rows(path: Path) -> tuple[list[tuple[int, Any]], list[str]]:
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))
    try:
        with open(path, encoding="utf-8", newline="") as fh:
            reader = csv.DictReader(fh)
            columns = list(reader.fieldnames or [])
            rows = []
            for row in reader:
                if None in row:  # more cells than header names
                    rows.append((reader.line_num, RowError(None, f"{len(columns) + len(row[None])} cells but "
                                                                 f"{len(columns)} columns")))
                else:
                    rows.append((reader.line_num, {k: v for k, v in row.items()}))
    except (UnicodeDecodeError, csv.Error) as err:
        raise DataError(str(path), None, None, f"unreadable CSV ({err})") from None
    return rows, columns


def _parquet_source(path: Path, label: str, name: str) -> Source:
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except Exception as err:  # pyarrow raises several types for a corrupt file
        raise DataError(label, None, None, f"unreadable Parquet ({str(err).splitlines()[0]})") from None

    def rows():
        n = 0
        for batch in pf.iter_batches(batch_size=4096):
            for row in batch.to_pylist():
                n += 1
                yield n, row

    return Source(label, name, list(pf.schema_arrow.names), rows(), pf.metadata.num_rows)


def open_hub(dataset: str, *, split: str, revision: str | None, subset: str | None) -> Source:
    """A Hub dataset through `datasets.load_dataset` (respects HF_HUB_OFFLINE and the local cache)."""
    import datasets

    label = f"{dataset}[{split}]"
    try:
        ds = datasets.load_dataset(dataset, name=subset, split=split, revision=revision)
    except Exception as err:  # network, not found, bad split: all one line for the user
        raise DataError(label, None, None, f"cannot load from the Hub ({type(err).__name__}: "
                                           f"{str(err).splitlines()[0] if str(err) else ''})") from None
    log.info("loaded %s: %d rows", label, len(ds))
    return Source(label, dataset, list(ds.column_names), ((i, row) for i, row in enumerate(ds, 1)), len(ds))
