"""Prompt files: JSON + safetensors round trips, and every defect refused as a PromptFileError."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch
from pickle_bomb import forbid_unpickling, write_bomb
from safetensors.torch import save_file
from transformers import PreTrainedTokenizerFast

from autoprompt_search.data.tasks import Task
from autoprompt_search.errors import PromptFileError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import JSON_NAME, TENSOR_NAME, ModelSignature, Prompt
from autoprompt_search.prompts.verbalizer import Verbalizer
from autoprompt_search.scoring.evaluator import Evaluator

SIGNATURE = ModelSignature("tiny-gpt2", 458, 32)


def discrete_prompt() -> Prompt:
    return Prompt.build(
        "Review: {sentence}[T*3] Sentiment:[P]",
        '{"0": ["negative", "bad"], "1": "positive"}',
        trigger_ids=(17, 250, 3),
        model=SIGNATURE,
    )


def soft_prompt() -> Prompt:
    soft = torch.linspace(-1, 1, 3 * 32).reshape(3, 32)
    return Prompt.build(
        "[V*2]{sentence}[V] It was[P]",
        Verbalizer.parse({"0": "bad", "1": "good"}, reduction="mean"),
        soft=soft,
        model=SIGNATURE,
    )


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name not in (JSON_NAME, TENSOR_NAME))


# --- round trips ---------------------------------------------------------------------------------


def test_discrete_round_trip(tmp_path: Path, tiny_tokenizer_bpe: PreTrainedTokenizerFast) -> None:
    prompt = discrete_prompt()
    path = prompt.save(tmp_path, decode=tiny_tokenizer_bpe.decode)
    assert path == tmp_path / JSON_NAME
    assert not (tmp_path / TENSOR_NAME).exists()
    assert leftovers(tmp_path) == []
    data = json.loads(path.read_text(encoding="utf-8"))
    tokens = [tiny_tokenizer_bpe.decode([i]) for i in (17, 250, 3)]
    assert data["trigger_tokens"] == tokens
    assert data["rendered"] == "Review: {sentence}" + "".join(tokens) + " Sentiment:[P]"
    assert data["verbalizer"] == {"words": {"0": ["negative", "bad"], "1": ["positive"]}, "reduction": "sum"}
    loaded = Prompt.load(path)
    assert loaded == prompt
    assert loaded.trigger_ids == (17, 250, 3)
    assert loaded.model == SIGNATURE
    assert loaded.soft is None
    assert Prompt.load(tmp_path) == prompt  # the folder works too


def test_soft_round_trip(tmp_path: Path) -> None:
    prompt = soft_prompt()
    prompt.save(tmp_path)
    assert leftovers(tmp_path) == []
    data = json.loads((tmp_path / JSON_NAME).read_text(encoding="utf-8"))
    assert data["soft"] == {"file": TENSOR_NAME, "shape": [3, 32]}
    loaded = Prompt.load(tmp_path)
    assert loaded == prompt
    assert loaded.verbalizer is not None and loaded.verbalizer.reduction == "mean"
    assert loaded.soft is not None and loaded.soft.dtype == torch.float32
    assert torch.equal(loaded.soft, prompt.soft)


def test_save_overwrites_atomically(tmp_path: Path) -> None:
    soft_prompt().save(tmp_path)
    second = Prompt.build("[V*2]{sentence}[V] It was[P]", {"0": "bad", "1": "good"}, soft=torch.ones(3, 32))
    second.save(tmp_path)
    assert leftovers(tmp_path) == []
    loaded = Prompt.load(tmp_path)
    assert loaded.soft is not None and torch.equal(loaded.soft, torch.ones(3, 32))
    assert loaded.model is None


def test_fact_prompt_without_verbalizer_round_trips(tmp_path: Path) -> None:
    prompt = Prompt.build("The capital of {sub_label} is[P]")
    prompt.save(tmp_path)
    assert Prompt.load(tmp_path) == prompt


# --- corrupt files ---------------------------------------------------------------------------------


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(PromptFileError, match="no prompt file"):
        Prompt.load(tmp_path)


def _edit(data: dict[str, Any], key: str, value: Any) -> dict[str, Any]:
    return {**data, key: value}


JSON_DEFECTS = {
    "not json": lambda text, data: "this is not json",
    "truncated": lambda text, data: text[: len(text) // 2],
    "empty": lambda text, data: "",
    "a list": lambda text, data: "[1, 2]",
    "null": lambda text, data: "null",
    "no template": lambda text, data: json.dumps({k: v for k, v in data.items() if k != "template"}),
    "bad template": lambda text, data: json.dumps(_edit(data, "template", "{sentence} [X]")),
    "template not a string": lambda text, data: json.dumps(_edit(data, "template", 3)),
    "bad verbalizer": lambda text, data: json.dumps(_edit(data, "verbalizer", {"words": {"0": ""}})),
    "verbalizer not an object": lambda text, data: json.dumps(_edit(data, "verbalizer", [1])),
    "bad trigger ids": lambda text, data: json.dumps(_edit(data, "trigger_ids", ["a", "b", "c"])),
    "trigger ids not a list": lambda text, data: json.dumps(_edit(data, "trigger_ids", 5)),
    "wrong trigger count": lambda text, data: json.dumps(_edit(data, "trigger_ids", [1, 2])),
    "bad model": lambda text, data: json.dumps(_edit(data, "model", {"vocab": 3})),
    "not utf-8": None,
}


@pytest.mark.parametrize("defect", sorted(JSON_DEFECTS))
def test_corrupt_prompt_json(tmp_path: Path, defect: str) -> None:
    path = discrete_prompt().save(tmp_path)
    text = path.read_text(encoding="utf-8")
    make = JSON_DEFECTS[defect]
    if make is None:
        path.write_bytes(b'{"template": "\xff\xfe"}')
    else:
        path.write_text(make(text, json.loads(text)), encoding="utf-8")
    with pytest.raises(PromptFileError):
        Prompt.load(path)


SOFT_META_DEFECTS = {
    "meta a string": "x",
    "meta a list": [3, 32],
    "shape not a list": {"file": TENSOR_NAME, "shape": 3},
    "wrong shape": {"file": TENSOR_NAME, "shape": [3, 16]},
}


@pytest.mark.parametrize("defect", sorted(SOFT_META_DEFECTS))
def test_corrupt_soft_entry_in_prompt_json(tmp_path: Path, defect: str) -> None:
    path = soft_prompt().save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    data["soft"] = SOFT_META_DEFECTS[defect]
    path.write_text(json.dumps(data), encoding="utf-8")
    with pytest.raises(PromptFileError):
        Prompt.load(path)


def _truncate(path: Path) -> None:
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


TENSOR_DEFECTS = {
    "missing": lambda path: path.unlink(),
    "truncated": _truncate,
    "header only": lambda path: path.write_bytes(path.read_bytes()[:8]),
    "empty": lambda path: path.write_bytes(b""),
    "garbage": lambda path: path.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json at all"),
    "no soft tensor": lambda path: save_file({"other": torch.zeros(3, 32)}, str(path)),
    "too few vectors": lambda path: save_file({"soft": torch.zeros(2, 32)}, str(path)),
    "one-dimensional": lambda path: save_file({"soft": torch.zeros(3)}, str(path)),
    "a scalar": lambda path: save_file({"soft": torch.tensor(1.0)}, str(path)),
    "integers": lambda path: save_file({"soft": torch.zeros(3, 32, dtype=torch.int64)}, str(path)),
}


@pytest.mark.parametrize("defect", sorted(TENSOR_DEFECTS))
def test_corrupt_prompt_safetensors(tmp_path: Path, defect: str) -> None:
    prompt = soft_prompt()
    prompt.save(tmp_path)
    data = json.loads((tmp_path / JSON_NAME).read_text(encoding="utf-8"))
    del data["soft"]["shape"]  # the tensor file alone must be checked, not only against the JSON
    (tmp_path / JSON_NAME).write_text(json.dumps(data), encoding="utf-8")
    TENSOR_DEFECTS[defect](tmp_path / TENSOR_NAME)
    with pytest.raises(PromptFileError):
        Prompt.load(tmp_path)


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickle_renamed_to_safetensors_is_never_unpickled(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, writer: str
) -> None:
    folder = tmp_path / "run"
    soft_prompt().save(folder)
    marker = tmp_path / "unpickled"
    write_bomb(folder / TENSOR_NAME, "soft", (3, 32), marker, writer)
    forbid_unpickling(monkeypatch)
    with pytest.raises(PromptFileError, match="corrupt"):
        Prompt.load(folder)
    assert not marker.exists()


# --- model signature -------------------------------------------------------------------------------


def test_check_model_refuses_another_vocabulary() -> None:
    prompt = discrete_prompt()
    prompt.check_model("tiny-gpt2", 458, 32)
    prompt.check_model("wider", 458, 64)  # discrete ids depend on the vocabulary only
    with pytest.raises(PromptFileError, match="made for model 'tiny-gpt2'"):
        prompt.check_model("other", 50257, 32)
    Prompt.build("{sentence}[P]").check_model("any", 1, 1)  # no signature: nothing to check


def test_check_model_refuses_another_width_for_soft_prompts() -> None:
    prompt = soft_prompt()
    prompt.check_model("tiny-gpt2", 458, 32)
    with pytest.raises(PromptFileError, match="hidden size"):
        prompt.check_model("wider", 458, 64)


def test_evaluator_refuses_a_prompt_for_another_vocabulary(
    tmp_path: Path, tiny_gpt2_lm: LanguageModel, sentiment_task: Task
) -> None:
    prompt = Prompt.build(
        "{sentence} It was[P]",
        {"0": "bad", "1": "good"},
        model=ModelSignature("big", tiny_gpt2_lm.vocab_size + 1, tiny_gpt2_lm.hidden_size),
    )
    prompt.save(tmp_path)
    with pytest.raises(PromptFileError, match="vocabulary"):
        Evaluator(tiny_gpt2_lm).score([Prompt.load(tmp_path)], sentiment_task.split("dev"), sentiment_task)
    bad_ids = Prompt.build("{sentence}[T] It was[P]", {"0": "bad", "1": "good"}, trigger_ids=(10**6,))
    with pytest.raises(PromptFileError, match="outside this model's vocabulary"):
        Evaluator(tiny_gpt2_lm).score([bad_ids], sentiment_task.split("dev"), sentiment_task)


# --- deep prompts ----------------------------------------------------------------------------------


def deep_prompt_with_soft() -> Prompt:
    deep = torch.linspace(-1, 1, 2 * 2 * 3 * 4 * 5).reshape(2, 2, 3, 4, 5)
    return Prompt.build("[V*3]{sentence} It was[P]", {"0": "bad", "1": "good"}, soft=soft_prompt().soft, deep=deep)


def test_deep_round_trip_beside_soft(tmp_path: Path) -> None:
    prompt = deep_prompt_with_soft()
    path = prompt.save(tmp_path)
    data = json.loads(path.read_text(encoding="utf-8"))
    assert data["deep"]["shape"] == [2, 2, 3, 4, 5] and "kv_heads" in data["deep"]["layout"]
    loaded = Prompt.load(tmp_path)
    assert torch.equal(loaded.deep, prompt.deep) and torch.equal(loaded.soft, prompt.soft)


@pytest.mark.parametrize("defect", ["wrong rank", "shape disagrees", "missing"])
def test_corrupt_deep_tensor_is_refused(tmp_path: Path, defect: str) -> None:
    prompt = deep_prompt_with_soft()
    prompt.save(tmp_path)
    tensors = {"soft": prompt.soft, "deep": {"wrong rank": torch.zeros(2, 2, 3, 4), "shape disagrees":
                                              torch.zeros(2, 2, 3, 7, 5), "missing": None}[defect]}
    save_file({k: v for k, v in tensors.items() if v is not None}, str(tmp_path / TENSOR_NAME))
    with pytest.raises(PromptFileError):
        Prompt.load(tmp_path)
