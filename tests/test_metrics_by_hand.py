"""Metrics and score tables computed by hand: accuracy, macro-F1, ranks, selection tie-breaks."""

from __future__ import annotations

import numpy as np
import pytest

from autoprompt_search.scoring import metrics
from autoprompt_search.scoring.score_table import ScoreTable


def test_accuracy_and_macro_f1_by_hand() -> None:
    pred = np.array([0, 1, 1, 2, 0])
    gold = np.array([0, 1, 0, 2, 2])
    assert metrics.accuracy(pred, gold) == pytest.approx(3 / 5)
    # class 0: tp 1, fp 1, fn 1 -> 1/2; class 1: tp 1, fp 1 -> 2/3; class 2: tp 1, fn 1 -> 2/3
    assert metrics.macro_f1(pred, gold, 3) == pytest.approx((1 / 2 + 2 / 3 + 2 / 3) / 3)
    assert metrics.macro_f1(pred, gold, 5) == pytest.approx(
        (1 / 2 + 2 / 3 + 2 / 3) / 3
    )  # absent classes skipped
    assert metrics.macro_f1(np.array([0, 0, 0, 0]), np.array([0, 0, 1, 1]), 2) == pytest.approx(
        (2 / 3 + 0) / 2
    )
    assert np.isnan(metrics.accuracy(np.array([]), np.array([])))


def test_selection_score_breaks_accuracy_ties_by_the_named_logprob() -> None:
    vocab_better = {"accuracy": 0.75, "gold_logprob": -2.0, "class_logprob": -0.6}
    class_better = {"accuracy": 0.75, "gold_logprob": -3.0, "class_logprob": -0.4}
    def score(m: dict[str, float], tiebreak: str = "gold_logprob") -> float:
        return metrics.selection_score(m, "classification", tiebreak)

    assert score(vocab_better) > score(class_better)
    assert score(vocab_better, "class_logprob") < score(class_better, "class_logprob")
    assert score({**vocab_better, "accuracy": 0.8}, "class_logprob") > score(class_better, "class_logprob")


def test_rank_metrics_by_hand() -> None:
    rank = np.array([1, 2, 1, np.inf, 4])
    assert metrics.precision_at_1(rank) == pytest.approx(2 / 5)
    assert metrics.mean_reciprocal_rank(rank) == pytest.approx((1 + 1 / 2 + 1 + 0 + 1 / 4) / 5)
    out = metrics.fact_metrics(
        rank, np.array([-1.0, -2.0, -3.0, -4.0, -5.0]), np.array([True, False, False, False, False])
    )
    assert out == pytest.approx(
        {"p_at_1": 0.4, "mrr": 0.55, "gold_logprob": -3.0, "n": 5, "greedy_match": 0.2}
    )


def test_score_table_metrics() -> None:
    scores = np.log(
        np.array(
            [
                [[0.9, 0.1], [0.2, 0.8], [0.6, 0.4], [0.3, 0.7]],
                [[0.1, 0.9], [0.1, 0.9], [0.1, 0.9], [0.1, 0.9]],
            ]
        )
    )
    table = ScoreTable("classification", ("neg", "pos"), np.array([0, 1, 1, -1]), scores=scores)
    m0 = table.metrics(0)
    assert m0["accuracy"] == pytest.approx(2 / 3)
    # neg: tp 1, fp 1 -> 2/3; pos: tp 1, fn 1 -> 2/3
    assert m0["macro_f1"] == pytest.approx(2 / 3)
    assert m0["gold_logprob"] == pytest.approx(np.mean(np.log([0.9, 0.8, 0.4])))
    assert m0["class_logprob"] == pytest.approx(m0["gold_logprob"])  # rows already sum to 1 over the classes
    assert m0["n"] == 3
    halved = ScoreTable("classification", ("neg", "pos"), np.array([0, 1]), scores=scores[:, :2] + np.log(0.5))
    assert halved.metrics(0)["gold_logprob"] == pytest.approx(np.mean(np.log([0.45, 0.4])))
    assert halved.metrics(0)["class_logprob"] == pytest.approx(np.mean(np.log([0.9, 0.8])))
    m1 = table.metrics(1)
    assert m1["accuracy"] == pytest.approx(2 / 3)
    assert m1["macro_f1"] == pytest.approx((0 + 0.8) / 2)  # neg: fn 1 -> 0; pos: tp 2, fp 1 -> 4/5
    assert table.predictions(0) == ["neg", "pos", "neg", "pos"]
    fact = ScoreTable(
        "fact",
        (),
        np.zeros(2, dtype=int),
        rank=np.array([[1.0, 3.0]]),
        gold_logprob=np.array([[-1.0, -2.0]]),
        greedy=np.array([[False, False]]),
        fact_match="greedy",
    )
    assert fact.metrics() == pytest.approx(
        {"p_at_1": 0.0, "mrr": (1 + 1 / 3) / 2, "gold_logprob": -1.5, "n": 2, "greedy_match": 0.0}
    )
