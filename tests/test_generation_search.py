"""Searchers on a generation task: the same contract, likelihood to train and select, decoded metrics at the end."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from generation_fixtures import TEMPLATE, generation_task
from test_generation_data import _fake_e2e

from autoprompt_search import SEARCHERS, Budget, Evaluator, Prompt
from autoprompt_search.cli import main
from autoprompt_search.errors import TemplateError
from autoprompt_search.prompts.demonstrations import Demonstrations
from autoprompt_search.scoring.generation import Decoding

SMALL = {"batch_size": 3, "eval_every": 1, "steps": 2}
CONFIGS = {
    "manual": {"templates": [TEMPLATE, "{mr}\n[P]"]},
    "prompt-tuning": {"templates": ["[V*2]" + TEMPLATE], **SMALL},
    "p-tuning": {"templates": ["{mr}[V*2]\nText:[P]"], "encoder_hidden": 8, **SMALL},
    "prefix-tuning": {"templates": [TEMPLATE], "prefix_length": 2, "mlp_hidden": 8, **SMALL},
    "p-tuning-v2": {"templates": [TEMPLATE], "prefix_length": 2, **SMALL},
    "optuna": {"templates": ["<<|Table: >>{mr}<<\nText:|\n>>[P]"], "trials": 3, "rungs": 2, "startup_trials": 1},
    "filter": {"templates": [TEMPLATE], "builtin": True, "mutations": 0, "mutation_rounds": 0, "first_slice": 2,
               "finalists": 2, "select_on": "dev"},  # the e2e-lowdata setting: finalists decoded on dev only
}


@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_searcher_on_generation_reports_decoded_metrics(name, tiny_causal_lm, tmp_path: Path) -> None:
    task = generation_task()
    evaluator = Evaluator(tiny_causal_lm, decoding=Decoding(max_new_tokens=6))
    searcher = SEARCHERS[name](seed=0, **CONFIGS[name])
    result = searcher.search(task, tiny_causal_lm, budget=Budget(iterations=3), evaluator=evaluator,
                             run_dir=tmp_path, progress=False)
    assert result.selection_split == "dev"
    for metrics in (result.dev_metrics, result.test_metrics):
        assert {"bleu", "rouge_l", "token_logprob"} <= set(metrics)
    saved = Prompt.load(tmp_path / "prompt.json")
    again = evaluator.evaluate(saved, task.split("test"), task, decode=True)
    assert again["bleu"] == pytest.approx(result.test_metrics["bleu"])
    assert again["token_logprob"] == pytest.approx(result.test_metrics["token_logprob"], abs=1e-4)


def test_autoprompt_refuses_generation(tiny_causal_lm) -> None:
    searcher = SEARCHERS["autoprompt"](templates=["{mr} [T*2]\nText:[P]"], seed=0)
    with pytest.raises(TemplateError, match="generation task"):
        searcher.search(generation_task(), tiny_causal_lm, budget=Budget(iterations=1), progress=False)


def test_soft_training_lowers_the_reference_nll(tiny_causal_lm) -> None:
    task = generation_task()
    searcher = SEARCHERS["prefix-tuning"](templates=[TEMPLATE], prefix_length=2, mlp_hidden=16, batch_size=4,
                                          eval_every=5, steps=15, lr=0.05, patience=0, seed=0)
    result = searcher.search(task, tiny_causal_lm, budget=Budget(iterations=15), progress=False)
    losses = [r.scores["train_loss"] for r in result.history]
    assert sum(losses[-3:]) / 3 < sum(losses[:3]) / 3


def test_demonstrations_baseline_decodes(tiny_causal_lm) -> None:
    task = generation_task()
    evaluator = Evaluator(tiny_causal_lm, demos=Demonstrations(k=2, per_class=False, selection="similar"),
                          decoding=Decoding(max_new_tokens=4))
    metrics = evaluator.evaluate(Prompt.build(TEMPLATE), task.split("test"), task, decode=True)
    assert 0 <= metrics["bleu"] <= 100 and 0 <= metrics["rouge_l"] <= 100


def test_cli_make_e2e_discover_prefix_tuning_then_evaluate(tiny_model_dir, tmp_path: Path, capsys) -> None:
    data = tmp_path / "e2e"
    assert main(["make-e2e", "--data-dir", str(_fake_e2e(tmp_path / "shared")), "--train", "6", "--dev", "3",
                 "--test-limit", "4", "--out", str(data)]) == 0
    run = tmp_path / "run"
    code = main(["discover", "--searcher", "prefix-tuning", "--model", str(tiny_model_dir), "--data", str(data),
                 "--template", r"{mr}\n[P]", "--config", json.dumps({"prefix_length": 2, "mlp_hidden": 8, **SMALL}),
                 "--max-new-tokens", "4", "--out", str(run)])
    assert code == 0
    capsys.readouterr()
    out = tmp_path / "eval.json"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(data), "--prompt",
                 str(run / "prompt.json"), "--max-new-tokens", "4", "--output-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["split"] == "test" and result["n"] == 4 and {"bleu", "rouge_l"} <= set(result)


@pytest.mark.parametrize("name", ["manual", "filter"])
def test_no_prompt_is_decoded_twice_on_the_selection_split(name, tiny_causal_lm, monkeypatch) -> None:
    """Decoding dominates a generation search: the pick's dev texts (and, for the manual searcher, its
    dev likelihood) are reused for the result instead of being computed again."""
    task = generation_task()
    evaluator = Evaluator(tiny_causal_lm, decoding=Decoding(max_new_tokens=4))
    dev, decoded = task.split("dev"), []
    original = Evaluator.generate

    def counted(self, prompt, examples, task):
        decoded.append((prompt.template.source, list(examples) == list(dev)))
        return original(self, prompt, examples, task)

    monkeypatch.setattr(Evaluator, "generate", counted)
    result = SEARCHERS[name](seed=0, **CONFIGS[name]).search(task, tiny_causal_lm, budget=Budget(iterations=3),
                                                             evaluator=evaluator, progress=False)
    on_dev = [source for source, is_dev in decoded if is_dev]
    assert on_dev and len(on_dev) == len(set(on_dev))
    assert {"bleu", "rouge_l", "token_logprob"} <= set(result.dev_metrics)
    if name == "manual":  # one likelihood pass per candidate on dev, none again for the result
        assert evaluator.forward_rows == len(CONFIGS["manual"]["templates"]) * sum(
            len(x.references) for x in dev) + sum(len(x.references) for x in task.split("test"))


def test_filter_ranks_on_the_first_references_and_decodes_dev_with_all(tiny_causal_lm, monkeypatch) -> None:
    """``rank_references`` trims what the training rungs score, never the selection split's references."""
    task = generation_task()
    held_out = (list(task.split("dev")), list(task.split("test")))
    references: dict[str, list[int]] = {"train": [], "held out": []}
    original = Evaluator.score

    def recorded(self, prompts, examples, task, **kwargs):
        references["held out" if list(examples) in held_out else "train"].extend(len(e.references) for e in examples)
        return original(self, prompts, examples, task, **kwargs)

    monkeypatch.setattr(Evaluator, "score", recorded)
    rows = {}
    for limit in (None, 1):
        references["train"].clear()
        evaluator = Evaluator(tiny_causal_lm, decoding=Decoding(max_new_tokens=4))
        searcher = SEARCHERS["filter"](seed=0, **CONFIGS["filter"], rank_references=limit)
        result = searcher.search(task, tiny_causal_lm, budget=Budget(iterations=3), evaluator=evaluator,
                                 progress=False)
        rows[limit] = evaluator.forward_rows
        assert result.dev_metrics["bleu"] >= 0
        assert max(references["train"]) == (3 if limit is None else 1)  # the 3-reference input, whole or trimmed
    assert rows[1] < rows[None]
    assert max(references["held out"]) == 3  # dev (Berlin's 3 references) and test are always scored whole
