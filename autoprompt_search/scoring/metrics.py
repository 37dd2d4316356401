"""Metrics from label-score tables: plain numpy, no model in sight.

Classification: accuracy, macro-F1, mean gold log-prob (in the vocabulary and among the classes).
Fact retrieval (LAMA): P@1 and MRR from the gold object's rank, and mean gold log-prob.
Generation: the references' log-likelihood (per token and per reference); BLEU and ROUGE-L of
decoded text come from the field's libraries, in :mod:`text_metrics`.
"""

from __future__ import annotations

import numpy as np
from scipy.special import logsumexp


def accuracy(pred: np.ndarray, gold: np.ndarray) -> float:
    return float(np.mean(pred == gold)) if len(gold) else float("nan")


def macro_f1(pred: np.ndarray, gold: np.ndarray, n_labels: int) -> float:
    """Unweighted mean of per-class F1 over the classes present in gold or predictions."""
    scores = []
    for label in range(n_labels):
        tp = np.sum((pred == label) & (gold == label))
        fp = np.sum((pred == label) & (gold != label))
        fn = np.sum((pred != label) & (gold == label))
        if tp + fp + fn == 0:
            continue
        scores.append(2 * tp / (2 * tp + fp + fn))
    return float(np.mean(scores)) if scores else float("nan")


def precision_at_1(rank: np.ndarray) -> float:
    return float(np.mean(rank == 1)) if len(rank) else float("nan")


def mean_reciprocal_rank(rank: np.ndarray) -> float:
    return float(np.mean(1.0 / rank)) if len(rank) else float("nan")


def classification_metrics(scores: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    """``scores`` (E, L) class log-probs, ``gold`` (E,) label indices.

    ``gold_logprob`` is the gold class's log-prob in the LM's vocabulary; ``class_logprob`` the same
    renormalised over the classes (minus the cross-entropy of the classifier the prompt induces).
    """
    pred = scores.argmax(axis=1)
    gold_lp = scores[np.arange(len(gold)), gold]
    class_lp = gold_lp - logsumexp(scores, axis=1)
    return {
        "accuracy": accuracy(pred, gold),
        "macro_f1": macro_f1(pred, gold, scores.shape[1]),
        "gold_logprob": float(np.mean(gold_lp)) if len(gold) else float("nan"),
        "class_logprob": float(np.mean(class_lp)) if len(gold) else float("nan"),
        "n": len(gold),
    }


def fact_metrics(rank: np.ndarray, gold_logprob: np.ndarray, greedy: np.ndarray | None = None) -> dict[str, float]:
    """``rank`` (E,) 1-based rank of the gold object's first token (inf: not a candidate)."""
    out = {
        "p_at_1": precision_at_1(rank),
        "mrr": mean_reciprocal_rank(rank),
        "gold_logprob": float(np.mean(gold_logprob)) if len(rank) else float("nan"),
        "n": len(rank),
    }
    if greedy is not None:
        out["greedy_match"] = float(np.mean(greedy)) if len(greedy) else float("nan")
    return out


def generation_likelihood(gold_logprob: np.ndarray, gold_tokens: np.ndarray) -> dict[str, float]:
    """``gold_logprob`` (E,) each example's mean log-prob of a reference (its tokens and the end of
    text), ``gold_tokens`` (E,) its mean token count. ``token_logprob`` is the per-token mean (minus
    the NLL a trained prompt minimises; each example weighs the same), ``perplexity`` its exp."""
    tokens = float(np.sum(gold_tokens))
    per_token = float(np.sum(gold_logprob) / tokens) if tokens else float("nan")
    return {
        "token_logprob": per_token,
        "perplexity": float(np.exp(-per_token)),
        "gold_logprob": float(np.mean(gold_logprob)) if len(gold_logprob) else float("nan"),
        "n": len(gold_logprob),
    }


def primary_metric(kind: str) -> str:
    """The metric a search maximises: accuracy for classification, P@1 for facts, the references'
    per-token log-likelihood for generation (decoded BLEU is too dear to compute at every step)."""
    return {"classification": "accuracy", "generation": "token_logprob"}.get(kind, "p_at_1")


def decoded_score(metrics: dict[str, float]) -> float:
    """How decoded generation candidates compare: BLEU, ties broken by ROUGE-L (both 0-100)."""
    return float(metrics["bleu"]) + 1e-3 * float(metrics["rouge_l"])


def selection_score(metrics: dict[str, float], kind: str, tiebreak: str = "gold_logprob") -> float:
    """Primary metric, ties broken by a mean log-prob (accuracy alone ties constantly).

    ``tiebreak`` names that log-prob: ``gold_logprob``, or ``class_logprob`` for a search whose
    objective is the class-normalised one, so that selection and search agree on what is better.
    """
    return float(metrics[primary_metric(kind)]) + 1e-6 * float(np.tanh(metrics[tiebreak] / 100.0))
