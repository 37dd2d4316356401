"""Row readers for the tabular formats benchmark data comes in: .tsv (and .txt), .csv, .jsonl.

Readers stream a file line by line and yield ``(line_number, record)`` pairs, where the line
number is 1-based and points at the line a record starts on, so every error can say exactly where
the file is broken. They know nothing about tasks; :mod:`autoprompt_search.data.loaders` does that.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Collection, Iterator
from itertools import chain
from pathlib import Path
from typing import TextIO

from ..errors import DataError

Record = dict[str, object]
NumberedRecord = tuple[int, Record]

SUFFIXES = (".tsv", ".csv", ".jsonl", ".json", ".txt")
_LABEL_LIKE = re.compile(r"-?\w[\w.-]{0,31}")


def iter_records(path: Path, *, wanted: Collection[str] = ()) -> Iterator[NumberedRecord]:
    """Numbered records of one data file, chosen by its suffix.

    ``wanted`` names columns the caller asked for; a .csv whose first row holds one of them is
    read as having a header even if that row would otherwise look like data.
    """
    suffix = path.suffix.lower()
    if suffix not in SUFFIXES:
        raise DataError(
            f"{path}: unsupported file type {suffix or '(none)'!r}; use one of {', '.join(SUFFIXES)}"
        )
    try:
        if suffix in (".jsonl", ".json"):
            yield from _json_lines(path)
        else:
            yield from _delimited(path, "," if suffix == ".csv" else "\t", wanted)
    except UnicodeDecodeError as exc:
        raise DataError(f"{path} is not UTF-8 text ({exc.reason}); re-save it with UTF-8 encoding") from None


def _json_lines(path: Path) -> Iterator[NumberedRecord]:
    """One JSON object per line; blank lines are skipped."""
    with path.open(encoding="utf-8-sig") as handle:
        for number, text in enumerate(handle, start=1):
            if not text.strip():
                continue
            try:
                record = json.loads(text)
            except (ValueError, RecursionError) as exc:  # JSONDecodeError, over-long integers, deep nesting
                hint = " (a JSON array is not supported)" if text.lstrip().startswith("[") else ""
                reason = exc.msg if isinstance(exc, json.JSONDecodeError) else exc
                raise DataError(
                    f"{path}, line {number}: not valid JSON ({reason}){hint}; "
                    "each line must hold exactly one JSON object (JSON lines)"
                ) from None
            if not isinstance(record, dict):
                raise DataError(
                    f"{path}, line {number}: expected a JSON object, got {type(record).__name__}; "
                    'write each row as {"column": value, ...}'
                )
            yield number, record


def _delimited(path: Path, delimiter: str, wanted: Collection[str]) -> Iterator[NumberedRecord]:
    """Rows of a .tsv/.csv file as dicts keyed by the header (or by default names, see below).

    TSV follows GLUE: a header row and no quoting (quotes are ordinary characters). CSV uses
    standard quoting and may lack a header, as LM-BFF's ``label,sentence`` files do.
    """
    quoting = csv.QUOTE_MINIMAL if delimiter == "," else csv.QUOTE_NONE
    with path.open(encoding="utf-8-sig", newline="") as handle:
        rows = _numbered_rows(handle, delimiter, quoting, path)
        first = next(rows, None)
        if first is None:
            return
        header = first[1]
        if delimiter == "," and _is_headerless(header, wanted):
            header = _headerless_names(len(header))
            rows = chain([first], rows)
        for number, row in rows:
            if len(row) > len(header) and header[-1] == "gold_label":
                # GLUE SNLI/MNLI: the header names one annotator label, rows hold 1-5 before gold_label.
                row = [*row[: len(header) - 1], row[-1]]
            if len(row) != len(header):
                raise DataError(
                    f"{path}, line {number}: expected {len(header)} columns ({', '.join(header)}), found "
                    f"{len(row)}; fix that line (a stray {'tab' if delimiter != ',' else 'comma or quote'}?)"
                )
            yield number, dict(zip(header, row, strict=True))


def _numbered_rows(
    handle: TextIO, delimiter: str, quoting: int, path: Path
) -> Iterator[tuple[int, list[str]]]:
    """Non-blank rows with the line each starts on (a quoted CSV field may span lines)."""
    reader = csv.reader(handle, delimiter=delimiter, quoting=quoting)
    start = 1
    try:
        for row in reader:
            number, start = start, reader.line_num + 1
            if any(cell.strip() for cell in row):
                yield number, row
    except csv.Error as exc:
        raise DataError(
            f"{path}, line {start}: malformed row ({exc}); fix the quoting on that line (a quote left open "
            "runs on to the end of the file)"
        ) from None


def _is_headerless(first: list[str], wanted: Collection[str]) -> bool:
    """Guess whether a CSV's first row is data: a short label first, then free text (LM-BFF).

    A first cell that is an integer (``3``) or a short token followed by a cell holding spaces
    marks data; a row of plain column names is a header.
    """
    if set(first) & set(wanted) or len(first) < 2:
        return False
    label = first[0].strip()
    if not _LABEL_LIKE.fullmatch(label):
        return False
    return label.lstrip("-").isdigit() or any(" " in cell.strip() for cell in first[1:])


def _headerless_names(count: int) -> list[str]:
    """Column names given to a headerless CSV: ``label, sentence`` or ``label, sentence1, sentence2, ...``."""
    if count == 2:
        return ["label", "sentence"]
    return ["label", *(f"sentence{i}" for i in range(1, count))]
