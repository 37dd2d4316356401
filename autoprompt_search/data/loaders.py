"""Turn data files, directories and Hugging Face data sets into :class:`Task` objects.

Conventions every loader follows, so templates can rely on them:

* Text fields keep their source column names (``sentence``; ``sentence1``/``sentence2`` for GLUE
  pairs; ``premise``/``hypothesis`` for SuperGLUE; ``sub_label`` for LAMA facts) unless a
  ``field_map`` renames them. Surrounding whitespace is stripped (GLUE sentences end with a space
  that would otherwise leak into every prompt); inner text is kept exactly.
* Labels are strings: JSON booleans become ``"true"``/``"false"``, numbers their decimal text.
  Classification labels are ordered numerically when all are integers, else alphabetically.
* A task is a fact task (open label space) when its label column is ``obj_label``, and a
  generation task when it is a target column (``target``, ``targets``, ``ref``, ``references``):
  a target cell may hold one text or (JSON) a list of texts, and rows with the same input fields
  are one example with all their references (E2E's CSV has one row per reference).
* Split names are ``train``, ``dev`` and ``test``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any, get_args

from ..errors import DataError
from .readers import SUFFIXES, Record, iter_records
from .tasks import Example, Task, TaskKind

# Known text columns, detected when no field_map is given: GLUE, SuperGLUE, LAMA and generic names.
TEXT_COLUMNS = (
    *("sentence", "sentence1", "sentence2"),  # GLUE
    *("premise", "hypothesis", "question", "passage"),  # SuperGLUE
    *("text", "sub_label"),  # generic; LAMA
    "mr",  # E2E meaning representations
)
TARGET_COLUMNS = ("target", "targets", "ref", "references")
LABEL_COLUMNS = ("label", "gold_label", "obj_label", *TARGET_COLUMNS)
# File stems that hold each split, most specific first (FewGLUE: dev32/val; GLUE MNLI: dev_matched).
SPLIT_STEMS = {"train": ("train",), "dev": ("dev", "dev32", "dev_matched"), "test": ("test", "val")}
HF_SPLIT_NAMES = {"validation": "dev"}
_INTEGER = re.compile(r"-?\d+")


@dataclass(frozen=True)
class _Schema:
    """Which columns feed the template fields (``{field name: column}``) and which holds the label."""

    fields: dict[str, str]
    label: str

    @property
    def kind(self) -> TaskKind:
        if self.label in TARGET_COLUMNS:
            return "generation"
        return "fact" if self.label == "obj_label" else "classification"


def load_task(
    path: str | Path,
    *,
    name: str | None = None,
    kind: TaskKind | None = None,
    field_map: Mapping[str, str] | None = None,
    label_field: str | None = None,
    split: str | None = None,
) -> Task:
    """Load a task from one data file or from a directory of split files.

    A file becomes one split named ``split`` (default ``test``), except that rows with a ``split``
    column go to the split it names. A directory contributes ``train``/``dev``/``test`` from
    ``train.*``, ``dev.*`` (or ``dev32``, ``dev_matched``) and ``test.*`` (or ``val``); there
    ``split``, if given, loads only that split. ``field_map`` maps template field names to columns
    and ``label_field`` names the label column; both are detected when omitted.
    """
    path = Path(path)
    if path.is_dir():
        files = _split_files(path, split)
    elif path.is_file():
        files = {split or "test": path}
    else:
        raise DataError(
            f"{path} does not exist; give a data file ({', '.join(SUFFIXES)}) or a directory "
            "holding train/dev/test files"
        )
    if kind is not None and kind not in get_args(TaskKind):
        raise DataError(f"unknown task kind {kind!r}; use one of {', '.join(get_args(TaskKind))}")
    schema: _Schema | None = None
    splits: dict[str, list[Example]] = {}
    for split_name, file in files.items():
        file_schema, parts = _read_file(file, split_name, field_map, label_field, split_column=path.is_file())
        if schema is not None and list(file_schema.fields) != list(schema.fields):
            raise DataError(
                f"{file} has fields {list(file_schema.fields)} but other splits have "
                f"{list(schema.fields)}; pass field_map so every split uses the same names"
            )
        schema = schema or file_schema
        for part, rows in parts.items():
            splits.setdefault(part, []).extend(rows)
    assert schema is not None  # files is never empty
    return _make_task(name or _default_name(path), kind or schema.kind, splits, schema)


def load_lmbff(data_dir: str | Path, task: str, *, k: int = 16, seed: int = 13) -> Task:
    """One of LM-BFF's k-shot splits: ``<data_dir>/<task>/k-shot/<k>-<seed>/`` (task name case-insensitive).

    LM-BFF's SNLI/MNLI test files are not in the data snapshot, so for them ``test`` comes from
    ``<task>/generative-nli/dev.jsonl`` (SNLI dev; MNLI dev-matched, which *is* LM-BFF's MNLI
    test set), with premise/hypothesis renamed to sentence1/sentence2 to match the k-shot files.
    """
    root = _child_dir(_existing_dir(data_dir), task, "task")
    loaded = load_task(_child_dir(root / "k-shot", f"{k}-{seed}", "k-shot split"), name=root.name)
    nli_dev = root / "generative-nli" / "dev.jsonl"
    if loaded.has_split("test") or not nli_dev.is_file():
        return loaded
    test = load_task(nli_dev, field_map={"sentence1": "premise", "sentence2": "hypothesis"}, split="test")
    if not set(test.labels) <= set(loaded.labels):
        raise DataError(
            f"{nli_dev} has labels {test.labels} but the k-shot files have {loaded.labels}; "
            "check the data directory"
        )
    return loaded.with_splits(test=test.split("test"))


def load_lama(data_dir: str | Path, relation: str, *, drop_self_answers: bool = True) -> Task:
    """A LAMA T-REx relation as a fact task: AutoPrompt's train/dev facts, LAMA's facts as test.

    Test is ``LAMA/mlama1.1_en/<relation>/train.jsonl`` plus ``dev.jsonl``: that copy of LAMA was
    split 80/20 by its publisher, and together the two files are the LAMA test set.

    ``drop_self_answers`` removes train/dev facts whose object is the subject itself (same label,
    ignoring case). In AutoPrompt's files they are most of P36 "capital" (85 %) and P1376 "capital
    of" (89 %): municipalities that are their own seat, against 2 % of LAMA's facts. A prompt
    trained or selected on them learns to repeat the subject, which is no knowledge; test is
    never filtered.
    """
    lama = _existing_dir(data_dir) / "LAMA"
    train_dev = load_task(
        _child_dir(lama / "autoprompt_TREx_all", relation, "LAMA relation"),
        name=f"LAMA-{relation}",
        kind="fact",
    )
    if drop_self_answers:
        train_dev = train_dev.with_splits(**{
            split: [e for e in train_dev.split(split) if not _answers_itself(e)] for split in ("train", "dev")})
    lama_facts = load_task(_child_dir(lama / "mlama1.1_en", relation, "LAMA relation"), kind="fact")
    test = [*lama_facts.split("train"), *lama_facts.split("dev")]
    return train_dev.with_splits(test=test)


def _answers_itself(fact: Example) -> bool:
    return str(fact.label).casefold() == str(fact.fields["sub_label"]).casefold()


def lama_manual_template(data_dir: str | Path, relation: str) -> str:
    """LAMA's hand-written prompt for ``relation`` in this toolkit's syntax: ``{sub_label} ... [P]``.

    Punctuation after the answer slot is dropped (``[X] was born in [Y] .`` becomes
    ``{sub_label} was born in [P]``) because a causal LM predicts ``[P]`` before it sees that text.
    """
    path = _existing_dir(data_dir) / "LAMA" / "relation_metainfo" / "LAMA_relations.jsonl"
    if not path.is_file():
        raise DataError(f"{path} does not exist; point data_dir at the benchmark data directory")
    templates = {str(record.get("relation")): str(record.get("template")) for _, record in iter_records(path)}
    if relation not in templates:
        raise DataError(f"{path} has no relation {relation!r}; relations: {', '.join(sorted(templates))}")
    template = templates[relation].replace("[X]", "{sub_label}").replace("[Y]", "[P]")
    head, slot, tail = template.partition("[P]")
    if slot and not any(char.isalnum() for char in tail):
        return head + slot
    return template


def from_hf_dataset(
    dataset_or_dict: Any,
    *,
    text_fields: Sequence[str] | Mapping[str, str],
    label_field: str,
    name: str,
    kind: TaskKind | None = None,
    split: str = "test",
) -> Task:
    """A task from a ``datasets.Dataset`` (one split named ``split``) or a ``DatasetDict``.

    ``text_fields`` lists columns to keep, or maps template field names to columns. Split
    ``validation`` is renamed ``dev``. ClassLabel ids become their names; rows labelled -1 (the
    Hub's "no label", e.g. GLUE test) are skipped. ``datasets`` is never imported: a DatasetDict
    is a mapping of split name to Dataset, so duck typing is enough and the toolkit does not
    depend on it.
    """
    parts = dict(dataset_or_dict) if isinstance(dataset_or_dict, Mapping) else {split: dataset_or_dict}
    field_map = dict(text_fields) if isinstance(text_fields, Mapping) else {f: f for f in text_fields}
    schema: _Schema | None = None
    splits: dict[str, list[Example]] = {}
    for part, dataset in parts.items():
        if not hasattr(dataset, "column_names") or not hasattr(dataset, "features"):
            raise DataError(
                f"split {part!r} of {name!r} is a {type(dataset).__name__}, not a datasets.Dataset; "
                "pass a Dataset or DatasetDict"
            )
        source = f"data set {name!r} split {part!r}"
        schema = _resolve_schema(list(dataset.column_names), source, field_map, label_field)
        class_names = getattr(dataset.features.get(label_field), "names", None)
        records = (_class_named(record, label_field, class_names) for record in dataset)
        rows = [
            _example(record, schema, f"{source}, row {index}")
            for index, record in enumerate(records)
            if record is not None
        ]
        if rows:
            splits[HF_SPLIT_NAMES.get(part, part)] = rows
    if schema is None:
        raise DataError(f"data set {name!r} has no splits; pass a Dataset or a non-empty DatasetDict")
    return _make_task(name, kind or schema.kind, splits, schema)


def _class_named(record: Record, label_field: str, class_names: Sequence[str] | None) -> Record | None:
    """Replace a ClassLabel id by its name; ``None`` for the Hub's unlabelled rows (id -1)."""
    if class_names is None:
        return record
    label = record.get(label_field)
    if label is None or label == -1:
        return None
    return {**record, label_field: class_names[label]}  # type: ignore[index]


def _read_file(
    path: Path,
    split: str,
    field_map: Mapping[str, str] | None,
    label_field: str | None,
    *,
    split_column: bool,
) -> tuple[_Schema, dict[str, list[Example]]]:
    """Examples of one file by split; with ``split_column``, a row's ``split`` cell overrides ``split``."""
    wanted = {*(field_map or {}).values(), *([label_field] if label_field else [])}
    records = iter_records(path, wanted=wanted)
    first = next(records, None)
    if first is None:
        raise DataError(f"{path} has no rows; add at least one example (a header alone is not enough)")
    schema = _resolve_schema(list(first[1]), str(path), field_map, label_field)
    by_column = split_column and "split" not in {*schema.fields.values(), schema.label}
    splits: dict[str, list[Example]] = {}
    for number, record in chain([first], records):
        where = f"{path}, line {number}"
        target = str(record.get("split") or split).strip() if by_column else split
        splits.setdefault(target, []).append(_example(record, schema, where))
    return schema, splits


def _resolve_schema(
    columns: list[str], source: str, field_map: Mapping[str, str] | None, label_field: str | None
) -> _Schema:
    """Pick text and label columns: as given, or the first known names present in the source."""
    available = ", ".join(columns)
    label = label_field or next((c for c in LABEL_COLUMNS if c in columns), None)
    if label is None:
        raise DataError(
            f"{source} has no label column (looked for {', '.join(LABEL_COLUMNS)}); columns: "
            f"{available}; pass label_field=<column>"
        )
    fields = dict(field_map) if field_map else {c: c for c in columns if c in TEXT_COLUMNS}
    for column in [*fields.values(), label]:
        if column not in columns:
            raise DataError(
                f"{source} has no column {column!r}; columns: {available}; "
                "fix field_map/label_field to name one of those"
            )
    if not fields:
        raise DataError(
            f"{source} has no known text column (looked for {', '.join(TEXT_COLUMNS)}); columns: "
            f"{available}; pass field_map={{'sentence': '<column>'}}"
        )
    return _Schema(fields, label)


def _example(record: Record, schema: _Schema, where: str) -> Example:
    fields = {name: _value(record, column, where) for name, column in schema.fields.items()}
    if schema.kind == "generation":
        return Example.generation(fields, _references(record.get(schema.label), schema.label, where))
    label = _value(record, schema.label, where)
    if not label:
        raise DataError(f"{where}: empty label in column {schema.label!r}; give every row a label")
    return Example(fields, label)


def _references(value: object, column: str, where: str) -> list[str]:
    """A target cell as reference texts: one text, or a JSON list of texts; none may be empty."""
    texts = value if isinstance(value, list) else [value]
    if not texts:
        raise DataError(f"{where}: {column!r} is an empty list, so this input has no reference; give it at least "
                        "one reference text or drop the row")
    refs = []
    for text in texts:
        if text is None or isinstance(text, dict | list | bool):
            raise DataError(f"{where}: {column!r} holds {text!r}; a reference must be text (or a list of texts)")
        if not str(text).strip():
            raise DataError(f"{where}: empty reference in {column!r}; every target must be a non-empty text "
                            "(fill it in or drop the row)")
        refs.append(str(text).strip())
    return refs


def _value(record: Record, column: str, where: str) -> str:
    """A cell as stripped text; booleans as ``true``/``false`` (SuperGLUE BoolQ labels)."""
    value = record.get(column)
    if value is None:
        raise DataError(
            f"{where}: row has no {column!r} value; every row needs one (fill it in or drop the row)"
        )
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict | list):
        raise DataError(
            f"{where}: {column!r} holds a JSON {type(value).__name__}; it must be text or a number"
        )
    return str(value).strip()


def _make_task(name: str, kind: TaskKind, splits: dict[str, list[Example]], schema: _Schema) -> Task:
    if kind == "generation":
        splits = {part: _grouped(rows) for part, rows in splits.items()}
    gold = (example.label or "" for rows in splits.values() for example in rows)
    labels = () if kind == "fact" else _ordered_labels(gold)
    return Task(name, kind, splits, labels, tuple(schema.fields))


def _grouped(rows: Sequence[Example]) -> list[Example]:
    """Rows with the same input fields as one example holding all their references (repeats kept, as
    published), in first-seen order."""
    merged: dict[tuple[tuple[str, str], ...], list[str]] = {}
    fields: dict[tuple[tuple[str, str], ...], Mapping[str, str]] = {}
    for row in rows:
        key = tuple(sorted(row.fields.items()))
        fields.setdefault(key, row.fields)
        merged.setdefault(key, []).extend(row.references or (row.label or "",))
    return [Example.generation(fields[key], refs) for key, refs in merged.items()]


def _ordered_labels(labels: Iterable[str]) -> tuple[str, ...]:
    """Integer ids in numeric order (``2`` before ``10``), anything else alphabetically."""
    unique = set(labels)
    if all(_INTEGER.fullmatch(label) for label in unique):
        return tuple(sorted(unique, key=int))
    return tuple(sorted(unique))


def _split_files(directory: Path, only: str | None) -> dict[str, Path]:
    """The file of each split found in ``directory`` (first matching stem and suffix wins)."""
    found: dict[str, Path] = {}
    for split, stems in SPLIT_STEMS.items():
        candidates = (directory / f"{stem}{suffix}" for stem in stems for suffix in SUFFIXES)
        match = next((c for c in candidates if c.is_file()), None)
        if match is not None:
            found[split] = match
    if only is not None:
        if only not in found:
            raise DataError(
                f"{directory} has no {only!r} split file (splits found: "
                f"{', '.join(found) or 'none'}); pass one of those or a file path"
            )
        return {only: found[only]}
    if not found:
        files = ", ".join(sorted(p.name for p in directory.iterdir())) or "nothing"
        raise DataError(
            f"{directory} holds no train/dev/test files (it has: {files}); name them train.tsv, "
            "dev.tsv, test.tsv (or .csv/.jsonl), or pass a single file"
        )
    return found


def _default_name(path: Path) -> str:
    """The path's last two parts without suffix (``glue/dev``, ``SST-2/glue``): ``dev`` says too little."""
    path = path.resolve()
    return "/".join((path.with_suffix("") if path.is_file() else path).parts[-2:])


def _existing_dir(path: str | Path) -> Path:
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"data directory {path} does not exist; pass the benchmark data directory")
    return path


def _child_dir(parent: Path, name: str, what: str) -> Path:
    """``parent/name``, matching ``name`` case-insensitively; the error lists what exists."""
    exact = parent / name
    if exact.is_dir():
        return exact
    children = sorted(p for p in parent.iterdir() if p.is_dir()) if parent.is_dir() else []
    match = next((p for p in children if p.name.lower() == name.lower()), None)
    if match is None:
        have = ", ".join(p.name for p in children) or "none"
        raise DataError(f"no {what} {name!r} in {parent} (have: {have}); pass one of those")
    return match
