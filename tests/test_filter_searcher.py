"""The filter searcher: pool building, successive-halving rungs, mutation rounds, the dev final."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np
import pytest

from autoprompt_search import Budget
from autoprompt_search.errors import BudgetError, ConfigError, TemplateError
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.scoring.selection import selection_score
from autoprompt_search.searchers.filtering import FilterSearcher, _balanced_order

WORDS = {"0": "bad", "1": "good"}
GRAMMAR = "<<|Review: |Text: >>{sentence}<< It was| This is|\nSentiment:| Overall:>>[P]"


def _search(lm, task, **config):
    """The filter with its rungs on train and its finalists on dev (the rung arithmetic the tests check)."""
    config.setdefault("select_on", "dev")
    evaluator = Evaluator(lm)
    searcher = FilterSearcher(templates=["{sentence} So it was[P]"], verbalizers=[WORDS], grammar=GRAMMAR,
                              builtin=False, **config)
    return searcher.search(task, lm, evaluator=evaluator, progress=False), evaluator


def test_rungs_double_the_slice_and_halve_the_candidates(tiny_causal_lm, sentiment_task) -> None:
    result, _ = _search(tiny_causal_lm, sentiment_task, first_slice=3, finalists=2)
    rungs = [r for r in result.history if r.note.startswith("rung")]
    assert [r.scores["examples"] for r in rungs] == [3, 6, 12]  # 12 training examples
    assert [r.scores["candidates"] for r in rungs] == [13, 7, 4]  # 1 given + 12 from the grammar
    final = result.history[-1]
    assert final.note.startswith("final") and final.scores["examples"] == 12  # the dev split
    assert len(result.history) == 4


def test_the_given_template_is_the_fallback(tiny_causal_lm, sentiment_task) -> None:
    result, evaluator = _search(tiny_causal_lm, sentiment_task, first_slice=3, finalists=1)
    manual = evaluator.evaluate(Prompt.build("{sentence} So it was[P]", WORDS), sentiment_task.split("dev"),
                                sentiment_task)
    assert result.dev_score >= selection_score(manual, "classification")
    assert result.history[-1].scores["candidates"] == 1


def test_halving_costs_fewer_forward_passes_than_scoring_everything(tiny_causal_lm, sentiment_task) -> None:
    halved, _ = _search(tiny_causal_lm, sentiment_task, first_slice=3, finalists=2)
    full, _ = _search(tiny_causal_lm, sentiment_task, finalists=2, halving=False)
    assert [r.scores["examples"] for r in full.history if r.note.startswith("rung")] == [12]
    assert halved.history[-1].forward_passes < full.history[-1].forward_passes


def test_label_words_and_mutations_add_candidates(tiny_causal_lm, sentiment_task) -> None:
    result, _ = _search(tiny_causal_lm, sentiment_task, first_slice=6, finalists=2, label_words=2, label_top_k=2,
                        mutations=4, mutation_rounds=1)
    first = result.history[0]
    assert first.scores["candidates"] > 13  # the grammar's templates crossed with found label words
    assert any(not key.endswith("| bad/good") for key in first.scores if key.startswith("#"))
    assert any(key.endswith("| bad/good") for key in first.scores)
    mutation = next(r for r in result.history if r.note.startswith("mutation"))
    assert mutation.scores["examples"] == 12
    assert result.config["mutation_rounds"] == 1


def test_max_examples_caps_the_rungs_and_mutations_not_the_selection(tiny_causal_lm, sentiment_task) -> None:
    """Full data: rungs end at ``max_examples`` training examples, the final still scores the selection split."""
    result, _ = _search(tiny_causal_lm, sentiment_task, first_slice=3, finalists=2, max_examples=6, mutations=2,
                        mutation_rounds=1)
    assert [r.scores["examples"] for r in result.history if r.note.startswith("rung")] == [3, 6]
    assert next(r for r in result.history if r.note.startswith("mutation")).scores["examples"] == 6
    assert result.history[-1].note.startswith("final") and result.history[-1].scores["examples"] == 12


def test_a_capped_last_rung_does_not_stand_in_for_the_selection_final(tiny_causal_lm, sentiment_task) -> None:
    """select_on="all" merges train and dev (24 examples): a last rung of 8 of them is not the final."""
    result, _ = _search(tiny_causal_lm, sentiment_task, select_on="all", first_slice=4, finalists=2, max_examples=8)
    assert [r.scores["examples"] for r in result.history if r.note.startswith("rung")] == [4, 8]
    assert result.history[-1].note.startswith("final") and result.history[-1].scores["examples"] == 24


def test_only_an_uncapped_last_rung_on_the_merged_split_replaces_the_final(sentiment_task) -> None:
    """What lets ``auto`` skip the final: the last rung scored every survivor on the selection split."""
    train, dev = sentiment_task.split("train"), sentiment_task.split("dev")
    merged = [*train, *dev]
    same, apart = SimpleNamespace(train=merged, select=merged), SimpleNamespace(train=train, select=dev)
    for cap, ctx, redundant in ((512, same, True), (8, same, False), (512, apart, False)):
        searcher = FilterSearcher(first_slice=4, max_examples=cap)
        searcher._rung = len(searcher._sizes(searcher._n_train(ctx)))  # the step after the last rung
        assert searcher.final_is_redundant(ctx) is redundant


def test_fact_tasks_use_the_builtin_fact_pool(tiny_causal_lm, fact_task) -> None:
    searcher = FilterSearcher(templates=["The capital of {sub_label} is[P]"], first_slice=3, finalists=2)
    result = searcher.search(fact_task, tiny_causal_lm, budget=Budget(iterations=2), progress=False)
    assert result.history[0].scores["candidates"] == 1 + 6  # the given one and six relation cues
    assert any("{sub_label} is located in[P]" in key for key in result.history[0].scores)


@pytest.mark.parametrize(
    ("config", "error", "match"),
    [
        ({"keep": 1.0}, BudgetError, "0 < keep < 1"),
        ({"max_examples": 0}, ConfigError, "max_examples=0"),
        ({"templates": [], "builtin": False}, TemplateError, "no candidates"),
        ({"templates": ["{review} was[P]"]}, TemplateError, "unknown field"),
        ({"grammar": "<<a|b{sentence}[P]"}, TemplateError, "never closed"),
    ],
)
def test_bad_configs_are_refused_before_scoring(tiny_causal_lm, sentiment_task, config, error, match) -> None:
    with pytest.raises(error, match=match):
        FilterSearcher(**config).search(sentiment_task, tiny_causal_lm, progress=False)


def test_training_slices_are_class_balanced(sentiment_task) -> None:
    train = sentiment_task.split("train")
    order = _balanced_order(train, np.random.default_rng(0).permutation(len(train)), "classification")
    assert sorted(order) == list(range(len(train)))
    labels = [train[i].label for i in order]
    assert all(labels[k] != labels[k + 1] for k in range(len(labels) - 1))  # two classes take turns


def test_coarse_rungs_in_bf16_count_their_forward_passes(tiny_causal_lm, sentiment_task) -> None:
    fp32, _ = _search(tiny_causal_lm, sentiment_task, first_slice=3, finalists=2)
    bf16, evaluator = _search(tiny_causal_lm, sentiment_task, first_slice=3, finalists=2, coarse_dtype="bfloat16")
    assert evaluator.dtype == "float32"
    assert bf16.history[-1].forward_passes == fp32.history[-1].forward_passes
    assert bf16.config["coarse_dtype"] == "bfloat16"


def test_by_default_the_filter_searches_and_selects_on_every_labelled_example(tiny_causal_lm, sentiment_task) -> None:
    """select_on="all" by default: 32 dev examples cannot tell noise from gain (Perez et al. 2021)."""
    result, _ = _search(tiny_causal_lm, sentiment_task, select_on="all", first_slice=4, finalists=2)
    default, _ = _search(tiny_causal_lm, sentiment_task, select_on=FilterSearcher().select_on, first_slice=4,
                         finalists=2)
    assert result.selection_split == default.selection_split == "train+dev"
    assert result.selection["examples"] == len(sentiment_task.split("train")) + len(sentiment_task.split("dev"))
