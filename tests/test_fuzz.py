"""Fuzzing: whatever bytes a data file, a verbalizer or a prompt file holds, the toolkit either reads it
or raises its own error for that kind of input (DataError, VerbalizerError, PromptFileError), never
anything else. (The template parser's fuzz test lives in test_template.py.)
"""

from __future__ import annotations

import io
import json
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import torch
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from safetensors.torch import save

from autoprompt_search.data.loaders import load_task
from autoprompt_search.data.tasks import Task
from autoprompt_search.errors import DataError, PromptFileError, VerbalizerError
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.prompts.verbalizer import Verbalizer

FUZZ = settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])


@contextmanager
def folder() -> Iterator[Path]:
    """A fresh folder per example (pytest's tmp_path is one folder for all of a test's examples)."""
    with tempfile.TemporaryDirectory(prefix="fuzz-") as name:
        yield Path(name)


# --- strategies ----------------------------------------------------------------------------------

# Hazards: json.loads refuses integers past Python's 4300-digit limit (with a plain ValueError), recurses
# into deep nesting, and reads Infinity/NaN, which int() then refuses.
HUGE = "9" * 5000
DEEP = "[" * 3000
COLUMNS = ["label", "sentence", "sentence1", "premise", "sub_label", "obj_label", "gold_label", "split", "text", "x"]
# Pieces that matter to the readers: delimiters, quotes, line ends, BOM, NUL, JSON punctuation, column names.
PIECES = [*COLUMNS, "\t", ",", '"', "'", "\n", "\r\n", "\r", " ", "\ufeff", "\x00", "{", "}", "[", "]", ":",
          "0", "1", "-1", "true", "null", "é", "ü", "good film", "\\", "dev", "train", "test",
          DEEP, HUGE, "Infinity", "NaN"]

json_scalars = (st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=12)
                | st.sampled_from([float("inf"), float("nan")]))
json_values = st.recursive(
    json_scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
cells = st.one_of(st.sampled_from(["good film", "bad", "0", "1", "", " ", '"q"', "a\tb", "a,b"]), st.text(max_size=10))


@st.composite
def tabular_text(draw: st.DrawFn, delimiter: str) -> str:
    """A roughly well-formed table: a header of (mostly) known columns and rows of mixed cells."""
    header = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=4))
    rows = draw(st.lists(st.lists(cells, min_size=0, max_size=len(header) + 1), max_size=6))
    lines = [delimiter.join(header)] if draw(st.booleans()) else []
    lines += [delimiter.join(row) for row in rows]
    return draw(st.sampled_from(["\n", "\r\n"])).join(lines) + draw(st.sampled_from(["", "\n"]))


@st.composite
def jsonl_text(draw: st.DrawFn) -> str:
    """JSON lines of objects with known and unknown keys, plus the occasional non-object or torn line."""
    record = st.dictionaries(st.sampled_from(COLUMNS), json_values | cells, max_size=5)
    lines = [json.dumps(r) for r in draw(st.lists(record | json_values, max_size=6))]
    if lines and draw(st.booleans()):
        i = draw(st.integers(0, len(lines) - 1))
        lines[i] = lines[i][: draw(st.integers(0, len(lines[i])))]
    return "\n".join(lines)


file_content = st.one_of(
    st.binary(max_size=400),
    st.text(max_size=200),
    st.lists(st.sampled_from(PIECES), max_size=40).map("".join),
    tabular_text("\t"),
    tabular_text(","),
    jsonl_text(),
)


# --- loaders -------------------------------------------------------------------------------------


@FUZZ
@given(content=file_content, suffix=st.sampled_from([".tsv", ".csv", ".jsonl"]),
       label_field=st.sampled_from([None, "label", "x"]))
@example(content='{"sentence": "a", "label": ' + HUGE + "}\n", suffix=".jsonl", label_field=None)
@example(content=DEEP + "\n", suffix=".jsonl", label_field=None)
@example(content='label,sentence\n1,"' + "x" * 140_000, suffix=".csv", label_field=None)
@example(content=b"sentence\tlabel\ncaf\xe9\t1\n", suffix=".tsv", label_field=None)
def test_load_task_reads_a_task_or_raises_data_error(
    content: str | bytes, suffix: str, label_field: str | None
) -> None:
    with folder() as tmp:
        path = tmp / f"data{suffix}"
        if isinstance(content, bytes):
            path.write_bytes(content)
        else:
            path.write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            task = load_task(path, label_field=label_field)
        except DataError:
            return
        assert isinstance(task, Task)
        assert sum(len(rows) for rows in task.splits.values()) >= 1
        assert all(isinstance(x.label, str) for rows in task.splits.values() for x in rows)
        assert all(isinstance(v, str) for rows in task.splits.values() for x in rows for v in x.fields.values())


@FUZZ
@given(train=file_content, dev=file_content)
def test_load_task_on_a_folder_reads_a_task_or_raises_data_error(train: str | bytes, dev: str | bytes) -> None:
    with folder() as tmp:
        for name, content in (("train.tsv", train), ("dev.jsonl", dev)):
            if isinstance(content, bytes):
                (tmp / name).write_bytes(content)
            else:
                (tmp / name).write_text(content, encoding="utf-8", errors="surrogatepass")
        try:
            task = load_task(tmp)
        except DataError:
            return
        assert set(task.splits) <= {"train", "dev"} and isinstance(task, Task)


# --- verbalizers ---------------------------------------------------------------------------------

verbalizer_like = st.dictionaries(
    st.text(max_size=5),
    st.one_of(st.text(max_size=8), st.lists(st.text(max_size=8), max_size=3), json_values),
    max_size=4,
)


@FUZZ
@given(spec=json_values | verbalizer_like, reduction=st.sampled_from(["sum", "mean", "max", ""]),
       as_text=st.booleans())
@example(spec={"0": [], "1": " "}, reduction="sum", as_text=False)
def test_verbalizer_parse_accepts_or_raises_verbalizer_error(spec: Any, reduction: str, as_text: bool) -> None:
    try:
        verbalizer = Verbalizer.parse(json.dumps(spec) if as_text else spec, reduction=reduction)  # type: ignore[arg-type]
    except VerbalizerError:
        return
    assert verbalizer.labels and reduction in ("sum", "mean")
    assert all(words and all(w.strip() for w in words) for words in verbalizer.words.values())
    assert Verbalizer.from_json(verbalizer.to_json()) == verbalizer


@FUZZ
@example(text=DEEP)
@example(text='{"0": ' + HUGE + "}")
@given(text=st.text(max_size=60) | st.lists(st.sampled_from(['{', '}', '"0"', ':', '"a"', ",", "[", "]", "1"]),
                                            max_size=20).map("".join))
def test_verbalizer_parse_of_any_text(text: str) -> None:
    with suppress(VerbalizerError):
        Verbalizer.parse(text)


# --- prompt files --------------------------------------------------------------------------------

TEMPLATES = ["{sentence} It was[P]", "[T*2]{sentence}[P]", "[V]{sentence}[V*2] It was[P]", "{x}[P]", "no slot",
             "{", "[P*2]", "{sentence}[T*0][P]"]
prompt_fields = {
    "format_version": st.just(1) | json_values,
    "template": st.sampled_from(TEMPLATES[:4]) | st.sampled_from(TEMPLATES) | json_values,
    "verbalizer": st.fixed_dictionaries({"words": verbalizer_like | json_values},
                                        optional={"reduction": st.sampled_from(["sum", "mean", "max"]) | json_values})
    | json_values,
    "trigger_ids": st.lists(st.integers(-5, 10**6) | st.floats() | st.text(max_size=3), max_size=4) | json_values,
    "model": st.fixed_dictionaries(
        {"name": st.text(max_size=5), "vocab_size": st.integers(), "hidden_size": st.integers()}
    ) | json_values,
    "soft": st.fixed_dictionaries({"file": st.just("prompt.safetensors")},
                                  optional={"shape": st.lists(st.integers(-1, 4), max_size=3) | json_values})
    | json_values,
}
prompt_json = st.one_of(
    json_values,
    st.fixed_dictionaries({"template": prompt_fields["template"]},
                          optional={k: v for k, v in prompt_fields.items() if k != "template"}),
)


@st.composite
def tensor_file(draw: st.DrawFn) -> bytes | None:
    """No file, random bytes, or a real safetensors file with any name, dtype and shape."""
    kind = draw(st.sampled_from(["none", "bytes", "tensor"]))
    if kind == "none":
        return None
    if kind == "bytes":
        return draw(st.binary(max_size=200))
    shape = draw(st.lists(st.integers(0, 4), min_size=0, max_size=3))
    dtype = draw(st.sampled_from([torch.float32, torch.float16, torch.int64, torch.bool]))
    name = draw(st.sampled_from(["soft", "other"]))
    return save({name: torch.zeros(shape, dtype=dtype)})


@FUZZ
@given(data=prompt_json, tensors=tensor_file(), truncate=st.none() | st.integers(0, 200))
@example(data={"template": "{s}[T][P]", "trigger_ids": [float("inf")]}, tensors=None, truncate=None)
@example(data={"template": "[V]{s}[P]", "soft": {"file": "prompt.safetensors", "shape": [1, 4]}},
         tensors=b"\x08" + b"\x00" * 7 + b"{}", truncate=None)
def test_prompt_load_returns_a_prompt_or_raises_prompt_file_error(
    data: Any, tensors: bytes | None, truncate: int | None
) -> None:
    with folder() as tmp:
        text = json.dumps(data)  # allow_nan: Infinity and NaN reach the loader too
        (tmp / "prompt.json").write_text(text if truncate is None else text[:truncate], encoding="utf-8")
        if tensors is not None:
            (tmp / "prompt.safetensors").write_bytes(tensors)
        try:
            prompt = Prompt.load(tmp)
        except PromptFileError:
            return
        assert isinstance(prompt, Prompt)
        assert len(prompt.trigger_ids) in (0, prompt.template.n_triggers)
        if prompt.soft is not None:
            assert prompt.soft.ndim == 2 and prompt.soft.shape[0] == prompt.template.n_soft
        buffer = io.StringIO()
        json.dump(prompt.to_json(), buffer)  # a loaded prompt can always be saved again


@FUZZ
@given(text=st.text(max_size=80) | st.lists(st.sampled_from(PIECES), max_size=20).map("".join))
@example(text='{"template": "{s}[T][P]", "trigger_ids": [' + HUGE + "]}")
@example(text='{"template": "{s}[T][P]", "trigger_ids": [NaN]}')
@example(text=DEEP)
def test_prompt_load_of_any_text(text: str) -> None:
    with folder() as tmp:
        (tmp / "prompt.json").write_text(text, encoding="utf-8", errors="surrogatepass")
        with suppress(PromptFileError):
            Prompt.load(tmp / "prompt.json")
