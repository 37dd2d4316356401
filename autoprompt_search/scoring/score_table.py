"""What scoring returns: a :class:`ScoreTable` of C prompts on E examples, from which every metric
(accuracy, macro-F1, class log-prob, P@1, MRR, reference likelihood) is read. Plain arrays; no model in sight."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np

from . import metrics

#: How a fact's answer counts as right: its first token ranked first (LAMA), or greedy decoding of the whole word.
FactMatch = Literal["first-token", "greedy"]


@dataclass
class ScoreTable:
    """Scores of C prompts on E examples.

    Classification: ``scores`` (C, E, L) class log-probs (calibrated where calibration is on),
    ``gold`` (E,) label indices (-1 if none), ``p_cf`` (C, L) each prompt's calibration prior (NaN
    rows for uncalibrated prompts; None if none is calibrated).
    Fact tasks: ``rank`` (C, E) rank of the gold object's first token, ``gold_logprob`` (C, E) the
    whole object's log-prob, ``greedy`` (C, E) whether greedy decoding yields the whole object.
    Generation: ``gold_logprob`` (C, E) the mean log-prob of a reference, ``gold_tokens`` (C, E) its
    mean token count (see :mod:`reference_scoring`).
    """

    kind: str
    labels: tuple[str, ...]
    gold: np.ndarray
    scores: np.ndarray | None = None
    rank: np.ndarray | None = None
    gold_logprob: np.ndarray | None = None
    greedy: np.ndarray | None = None
    fact_match: FactMatch = "first-token"
    p_cf: np.ndarray | None = None
    gold_tokens: np.ndarray | None = None

    def metrics(self, candidate: int = 0) -> dict[str, float]:
        """Metrics of one prompt (row ``candidate``) over the labelled examples."""
        if self.kind == "classification":
            keep = self.gold >= 0
            return metrics.classification_metrics(self.scores[candidate][keep], self.gold[keep])
        if self.kind == "generation":
            return metrics.generation_likelihood(self.gold_logprob[candidate], self.gold_tokens[candidate])
        out = metrics.fact_metrics(self.rank[candidate], self.gold_logprob[candidate], self.greedy[candidate])
        if self.fact_match == "greedy":
            out["p_at_1"] = out["greedy_match"]
        return out

    @staticmethod
    def concat(parts: Sequence[ScoreTable]) -> ScoreTable:
        """Join tables of the same prompts over consecutive example chunks."""
        def cat(name: str) -> np.ndarray | None:
            arrays = [getattr(p, name) for p in parts]
            return None if arrays[0] is None else np.concatenate(arrays, axis=1)

        first = parts[0]
        return ScoreTable(first.kind, first.labels, np.concatenate([p.gold for p in parts]), scores=cat("scores"),
                          rank=cat("rank"), gold_logprob=cat("gold_logprob"), greedy=cat("greedy"),
                          fact_match=first.fact_match, p_cf=first.p_cf, gold_tokens=cat("gold_tokens"))

    def predictions(self, candidate: int = 0) -> list[str]:
        """Predicted labels of one prompt (classification only)."""
        return [self.labels[i] for i in self.scores[candidate].argmax(axis=1)]
