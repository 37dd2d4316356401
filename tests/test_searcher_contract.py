"""One conformance suite, run over every registered searcher (ARCHITECTURE.md, "Add a searcher").

Each searcher runs on a tiny causal LM and on a tiny masked LM; its configuration must rebuild it;
an option that leaves it no work is refused before any work starts."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

from autoprompt_search import SEARCHERS, Budget, Searcher
from autoprompt_search.errors import AutopromptError
from autoprompt_search.searchers import StepRecord

VERBALIZER = {"0": "bad", "1": "good"}

#: A small configuration per registered searcher; a new searcher must add one here.
CONFIGS: dict[str, Callable[[int], Searcher]] = {
    "manual": lambda seed: SEARCHERS["manual"](
        templates=["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]", "{sentence}\nIn short:[P]"],
        verbalizers=[VERBALIZER, {"0": "terrible", "1": "great"}], per_step=2, seed=seed),
    "autoprompt": lambda seed: SEARCHERS["autoprompt"](
        templates=["{sentence} [T*2] It was[P]"], verbalizers=[VERBALIZER], num_cand=5, batch_size=4,
        iterations=3, seed=seed),
    "label-search": lambda seed: SEARCHERS["label-search"](
        templates=["{sentence} It was[P]"], top_k=3, finalists=6, per_step=2, seed=seed),
    "prompt-tuning": lambda seed: SEARCHERS["prompt-tuning"](
        templates=["[V*2]{sentence} It was[V][P]"], verbalizers=[VERBALIZER], batch_size=3, eval_every=2, seed=seed),
    "p-tuning": lambda seed: SEARCHERS["p-tuning"](
        templates=["{sentence}[V*3] It was[P]"], verbalizers=[VERBALIZER], batch_size=3, eval_every=1,
        encoder_hidden=16, seed=seed),
    "p-tuning-v2": lambda seed: SEARCHERS["p-tuning-v2"](
        templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER], prefix_length=3, batch_size=3, eval_every=2,
        seed=seed),
    "prefix-tuning": lambda seed: SEARCHERS["prefix-tuning"](
        templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER], prefix_length=2, mlp_hidden=16, batch_size=3,
        eval_every=1, seed=seed),
    "filter": lambda seed: SEARCHERS["filter"](
        templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER],
        grammar="<<|Review: >>{sentence}<< It was|\nSentiment:>>[P]", builtin=False, label_words=2, label_top_k=2,
        mutations=3, mutation_rounds=1, first_slice=2, finalists=2, seed=seed),
    "optuna": lambda seed: SEARCHERS["optuna"](
        templates=["<<|Review: >>{sentence}<< It was|\nIn short:| All in all, it was>>[P]"],
        verbalizers=[VERBALIZER, {"0": "terrible", "1": "great"}], trials=4, rungs=2, startup_trials=1, seed=seed),
}


#: Per searcher: an option that leaves it nothing to do, and the words its refusal must contain.
NO_WORK: dict[str, tuple[dict, str]] = {
    "manual": ({"templates": []}, "at least one template"),
    "autoprompt": ({"iterations": 0}, "iterations=0 leaves it no work"),
    "label-search": ({"finalists": 0}, "finalists=0 leaves it no work"),
    "prompt-tuning": ({"steps": 0}, "steps=0"),
    "p-tuning": ({"steps": 0}, "steps=0"),
    "p-tuning-v2": ({"steps": 0}, "steps=0"),
    "prefix-tuning": ({"steps": 0}, "steps=0"),
    "filter": ({"finalists": 0}, "finalists=0 leaves it no work"),
    "optuna": ({"trials": 0}, "trials=0 leaves it no work"),
}


def test_every_searcher_has_a_contract_config() -> None:
    assert set(CONFIGS) == set(SEARCHERS) == set(NO_WORK)


class _Interrupt(Exception):
    pass


def _stop_after(steps: int) -> Callable[[StepRecord], None]:
    def callback(record: StepRecord) -> None:
        if record.step >= steps:
            raise _Interrupt

    return callback


def _comparable(result) -> dict:
    data = result.to_json()
    for row in data["history"]:
        row.pop("seconds")
    return data


@pytest.mark.parametrize("name", sorted(CONFIGS))
class TestSearcherContract:
    def test_budget_is_respected(self, name, tiny_causal_lm, sentiment_task) -> None:
        result = CONFIGS[name](0).search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=1), progress=False)
        assert len(result.history) == 1

    def test_result_is_json_and_selects_on_dev(self, name, tiny_causal_lm, sentiment_task, tmp_path: Path) -> None:
        result = CONFIGS[name](0).search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=2),
                                         run_dir=tmp_path, progress=False)
        assert result.selection_split == "dev"
        text = json.dumps(result.to_json(tiny_causal_lm.decode))
        assert json.loads(text)["searcher"] == name
        for artifact in ("config.json", "history.jsonl", "prompt.json", "result.json"):
            assert (tmp_path / artifact).is_file()
        assert result.test_metrics is not None and result.test_metrics["n"] == len(sentiment_task.split("test"))

    def test_seed_is_reproducible(self, name, tiny_causal_lm, sentiment_task) -> None:
        runs = [CONFIGS[name](7).search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=3), progress=False)
                for _ in range(2)]
        assert _comparable(runs[0]) == _comparable(runs[1])

    def test_resume_after_interruption_is_identical(self, name, tiny_causal_lm, sentiment_task, tmp_path) -> None:
        budget = Budget(iterations=3)
        straight = CONFIGS[name](3).search(sentiment_task, tiny_causal_lm, budget=budget, progress=False)
        with pytest.raises(_Interrupt):
            CONFIGS[name](3).search(sentiment_task, tiny_causal_lm, budget=budget, run_dir=tmp_path,
                                    callbacks=[_stop_after(1)], progress=False)
        resumed = CONFIGS[name](3).search(sentiment_task, tiny_causal_lm, budget=budget, run_dir=tmp_path,
                                          resume=True, progress=False)
        assert _comparable(resumed) == _comparable(straight)
        assert len((tmp_path / "history.jsonl").read_text().splitlines()) == len(straight.history)

    def test_an_option_that_leaves_no_work_is_refused(self, name) -> None:
        config = {**CONFIGS[name](0).config(), **NO_WORK[name][0]}
        with pytest.raises(AutopromptError, match=NO_WORK[name][1]):
            SEARCHERS[name](**config)

    def test_config_rebuilds_an_equal_searcher(self, name) -> None:
        searcher = CONFIGS[name](5)
        config = searcher.config()
        assert json.loads(json.dumps(config)) == config  # what config.json holds
        assert SEARCHERS[name](**config).config() == config
        assert config["seed"] == 5

    def test_runs_on_a_masked_lm(self, name, tiny_masked_lm, sentiment_task) -> None:
        result = CONFIGS[name](0).search(sentiment_task, tiny_masked_lm, budget=Budget(iterations=2), progress=False)
        assert 1 <= len(result.history) <= 2
        assert result.test_metrics is not None and 0 <= result.test_metrics["accuracy"] <= 1
        assert "[T" not in result.prompt.render(tiny_masked_lm.decode)  # found triggers are filled in
