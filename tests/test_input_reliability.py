"""Reliability beyond errors: long inputs are truncated with one warning (the answer slot survives),
a broken model cache is rebuilt rather than trusted, and the package never unpickles anything.
Refused inputs, with the error each names, are the table in ``test_bad_inputs.py``."""

from __future__ import annotations

import logging
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models import embedded
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring.evaluator import Evaluator

VERBALIZER = '{"0":"bad","1":"good"}'
PACKAGE = Path(__file__).resolve().parents[1] / "autoprompt_search"


# --- long inputs are truncated, not refused ------------------------------------------------------


@pytest.mark.parametrize(("model", "templates"), [
    ("tiny_causal_lm", ("{sentence} It was[P]", "{sentence}\nSentiment:[P]")),
    ("tiny_masked_lm", ("{sentence} It was[P].", "{sentence}\nSentiment:[P] indeed.")),
])
def test_long_inputs_are_truncated_with_one_warning(
    model: str, templates: tuple[str, str], request: pytest.FixtureRequest,
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture,
) -> None:
    lm: LanguageModel = request.getfixturevalue(model)
    words = ["the", "movie", "was", "good", "and", "the", "cast", "was", "great", "but", "the", "plot", "bad"]
    long = [Example({"sentence": " ".join(words[(i + j) % len(words)] for j in range(400))}, str(i % 2))
            for i in range(24)]
    task = Task("long", "classification", {"dev": long}, labels=("0", "1"), fields=("sentence",))
    assert all(len(lm.tokenize(x.fields["sentence"])) > 3 * lm.max_length for x in long)
    widths: list[int] = []
    forward = lm.hidden_states

    def recording(attention_mask: torch.Tensor, **kw: Any) -> torch.Tensor:
        widths.append(attention_mask.shape[1])
        return forward(attention_mask, **kw)

    monkeypatch.setattr(lm, "hidden_states", recording)
    prompts = [Prompt.build(t, VERBALIZER) for t in templates]
    with caplog.at_level(logging.WARNING):
        table = Evaluator(lm).score(prompts, long, task)
    warnings = [r for r in caplog.records if r.levelno >= logging.WARNING and "truncat" in r.getMessage()]
    assert len(warnings) == 1, [r.getMessage() for r in caplog.records]
    assert widths and max(widths) <= lm.max_length
    assert table.scores is not None and torch.isfinite(torch.as_tensor(table.scores)).all()
    # The answer slot and the text before it survive: were the template's tail cut off with the overflow,
    # both templates would give the same (truncated-sentence-only) input and so the same scores.
    assert not torch.allclose(torch.as_tensor(table.scores[0]), torch.as_tensor(table.scores[1]))


# --- a broken model cache is rebuilt, never trusted ------------------------------------------------


def test_corrupt_model_cache_is_detected_and_rebuilt(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    monkeypatch.setenv(embedded.CACHE_ENV, str(tmp_path / "cache"))
    gguf = tmp_path / "wheel" / embedded.GGUF_NAME
    gguf.parent.mkdir()
    gguf.write_bytes(b"GGUF stand-in")
    monkeypatch.setattr(embedded, "gguf_path", lambda: gguf)
    conversions: list[Path] = []

    def fake_convert(source: Path, target: Path) -> None:  # the real conversion takes ~15 s: not here
        conversions.append(target)
        (target / "config.json").write_text("{}")
        (target / "tokenizer.json").write_text("{}")
        save_file({"w": torch.ones(4)}, str(target / "model.safetensors"))

    monkeypatch.setattr(embedded, "_convert", fake_convert)
    folder = embedded.converted_dir()
    assert folder.parent.parent == tmp_path / "cache" and len(conversions) == 1
    assert embedded._cache_usable(folder)
    assert embedded.converted_dir() == folder and len(conversions) == 1  # a good cache is reused

    weights = folder / "model.safetensors"
    good = weights.read_bytes()
    for broken in (b"\x00garbage" * 16, good[: len(good) // 2], b""):
        weights.write_bytes(broken)
        with caplog.at_level(logging.WARNING, logger=embedded.__name__):
            assert embedded._cache_usable(folder) is False
        assert "converting again" in caplog.text
        caplog.clear()
        assert embedded.converted_dir() == folder
        assert weights.read_bytes() == good
    assert len(conversions) == 4
    (folder / "tokenizer.json").unlink()  # an incomplete cache (a kill mid-copy) is rebuilt too
    assert embedded._cache_usable(folder) is False
    assert embedded.converted_dir() == folder and (folder / "tokenizer.json").is_file() and len(conversions) == 5


# --- nothing is ever unpickled -------------------------------------------------------------------


def test_package_never_unpickles() -> None:
    """The package reads JSON and safetensors only: no pickle, no torch.load anywhere in its source."""
    pattern = re.compile(r"\bimport pickle\b|\bpickle\.|\btorch\.load\b|\bjoblib\.load\b|weights_only\s*=\s*False")
    offenders = [f"{path.relative_to(PACKAGE)}:{number}: {line.strip()}"
                 for path in sorted(PACKAGE.rglob("*.py"))
                 for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1)
                 if pattern.search(line)]
    assert offenders == []
