"""The final pick every discrete searcher shares: calibration as a candidate dimension, the top-k
ensemble, and the guard — with the numbers that justify the pick, for the result's evidence.

The finalists are scored once on the selection examples, in one Evaluator call (with the given
prompt, the guard's reference). Each finalist's contextually calibrated variant (Zhao et al. 2021)
costs only its content-free rows: its prior is fitted in one more call (one example and three
content-free inputs per prompt, all prompts together) and divided out of the plain scores already
in hand, which is exactly what the Evaluator computes for a calibrated prompt. Variants are ranked
by :func:`selection.selection_score`; the top ``ensemble`` become one :class:`EnsemblePrompt`.
The guard then keeps the reference unless the pick's paired-bootstrap lower bound of per-example
class log-likelihood gain is above zero (:func:`selection.guard`); its numbers are recorded
whether or not it is on, so a reader sees how far from noise the pick is.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np

from ..data.tasks import Example, Task
from ..prompts.calibration import Calibration, calibrate
from ..prompts.ensemble import EnsemblePrompt
from ..prompts.prompt import Prompt
from ..scoring.ensembles import fit_logistic
from ..scoring.evaluator import Evaluator
from ..scoring.metrics import classification_metrics
from ..scoring.selection import SelectionPolicy, class_loglik, guard, selection_score, top_indices

#: Level of the guard numbers recorded when the guard is off (information only).
INFO_LEVEL = 0.9


@dataclass
class Decision:
    """The pick, its selection score, the evidence (plain JSON) behind it, and — when the pick was
    scored on the selection examples — its metrics there (so they need not be computed again)."""

    prompt: Prompt | EnsemblePrompt
    score: float
    evidence: dict[str, Any] | None
    metrics: dict[str, float] | None = None


@dataclass
class _Variant:
    prompt: Prompt | EnsemblePrompt
    scores: np.ndarray  # (E, L) class scores as the Evaluator gives them for this prompt
    calibrated: bool


def final_selection(
    evaluator: Evaluator,
    task: Task,
    examples: Sequence[Example],
    candidates: Sequence[Prompt],
    reference: Prompt | None,
    policy: SelectionPolicy,
    *,
    seed: int,
    decode: Callable[[list[int]], str] | None = None,
    known: Sequence[np.ndarray | None] | None = None,
) -> Decision:
    """Pick among ``candidates`` (best first as the searcher ranked them) on ``examples``; ``known``
    holds class scores (E, L) on ``examples`` a searcher already has for some candidates."""
    pairs = _distinct(candidates, known if known is not None and task.kind == "classification"
                      else [None] * len(candidates))
    candidates = [p for p, _ in pairs]
    if task.kind != "classification":  # fact tasks keep their metric: one pick by P@1
        table = evaluator.score(candidates, examples, task)
        scores = [selection_score(table.metrics(i), task.kind, policy.by) for i in range(len(candidates))]
        best = top_indices(scores, 1)[0]
        return Decision(candidates[best], scores[best], {
            "by": "p_at_1", "examples": len(examples),
            "candidates": [{"prompt": p.render(decode), "score": s} for p, s in zip(candidates, scores, strict=True)],
            "chosen": {"kind": "single", "prompt": candidates[best].render(decode), "score": scores[best]}})
    rows = _rows(evaluator, task, examples, [*candidates, reference], [r for _, r in pairs])
    gold = np.array([task.labels.index(e.label) if e.label in task.labels else -1 for e in examples])
    variants = [_Variant(p, rows[i], p.calibration is not None or evaluator.calibration is not None)
                for i, p in enumerate(candidates)]
    if policy.calibrate == "choose" and evaluator.calibration is None:
        variants += _calibrated_variants(evaluator, task, examples, variants)
    rated = [_rate(v.scores, gold, policy) for v in variants]
    order = top_indices([r["score"] for r in rated], len(variants))
    evidence: dict[str, Any] = {
        "by": policy.by, "examples": len(examples), "calibrate": policy.calibrate,
        "candidates": [{"prompt": variants[i].prompt.render(decode), "calibrated": variants[i].calibrated,
                        **rated[i]} for i in order]}
    chosen, rating = variants[order[0]], rated[order[0]]
    if policy.ensemble > 1 and len(variants) > 1:
        chosen, rating = _ensemble([variants[i] for i in order[: policy.ensemble]], gold, policy, task.labels)
        evidence["ensemble"] = {"members": len(chosen.prompt.members), "rule": policy.combine, **rating}
    evidence["chosen"] = {"kind": "ensemble" if isinstance(chosen.prompt, EnsemblePrompt) else "single",
                          "prompt": chosen.prompt.render(decode), "calibrated": chosen.calibrated, **rating}
    if reference is None:
        return Decision(chosen.prompt, rating["score"], evidence, _metrics(chosen.scores, gold))
    reference_rating = _rate(rows[-1], gold, policy)
    check = guard(class_loglik(chosen.scores, gold), class_loglik(rows[-1], gold),
                  policy.guard if policy.guard is not None else INFO_LEVEL, seed)
    keep_reference = policy.guard is not None and not check.passed
    evidence["reference"] = {"prompt": reference.render(decode), **reference_rating}
    evidence["guard"] = {**check.to_json(), "on": policy.guard is not None,
                         "decision": "reference" if keep_reference else "pick"}
    if keep_reference:
        evidence["chosen"] = {"kind": "reference", "prompt": reference.render(decode), **reference_rating}
        return Decision(reference, reference_rating["score"], evidence, _metrics(rows[-1], gold))
    return Decision(chosen.prompt, rating["score"], evidence, _metrics(chosen.scores, gold))


def _distinct(prompts: Sequence[Prompt],
              rows: Sequence[np.ndarray | None]) -> list[tuple[Prompt, np.ndarray | None]]:
    """(prompt, known rows) without repeated prompts (discrete prompts compare by value; prompts with
    tensors by identity)."""
    out: list[tuple[Prompt, np.ndarray | None]] = []
    for prompt, row in zip(prompts, rows, strict=True):
        tensors = any(t is not None for t in (prompt.soft, prompt.deep, prompt.head))
        if not any(q is prompt or (not tensors and q == prompt) for q, _ in out):
            out.append((prompt, row))
    return out


def _rows(evaluator: Evaluator, task: Task, examples: Sequence[Example], prompts: Sequence[Prompt | None],
          known: Sequence[np.ndarray | None]) -> list[np.ndarray | None]:
    """Class scores (E, L) of each prompt (None stays None): the known ones as given, the rest (a
    reference equal to a known candidate reuses its rows) scored together in one Evaluator call."""
    out: list[np.ndarray | None] = [*known, *[None] * (len(prompts) - len(known))]
    for i, prompt in enumerate(prompts):
        if out[i] is None and prompt is not None and prompt.soft is None and prompt.deep is None:
            out[i] = next((out[j] for j in range(len(known)) if out[j] is not None and prompts[j] == prompt), None)
    todo = [i for i, prompt in enumerate(prompts) if prompt is not None and out[i] is None]
    if todo:
        table = evaluator.score([prompts[i] for i in todo], examples, task)
        for j, i in enumerate(todo):
            out[i] = table.scores[j]
    return out


def _calibrated_variants(evaluator: Evaluator, task: Task, examples: Sequence[Example],
                         plain: Sequence[_Variant]) -> list[_Variant]:
    """The contextually calibrated twin of every uncalibrated candidate, from its plain scores and a
    prior fitted on content-free rows only (one example rides along: the Evaluator needs one)."""
    todo = [v for v in plain if not v.calibrated]
    if not todo:
        return []
    asked = [replace(v.prompt, calibration=Calibration()) for v in todo]
    p_cf = evaluator.score(asked, examples[:1], task).p_cf
    return [_Variant(replace(p, calibration=p.calibration.with_prior(task.labels, p_cf[i])),
                     calibrate(v.scores, p_cf[i]), True) for i, (p, v) in enumerate(zip(asked, todo, strict=True))]


def _metrics(scores: np.ndarray, gold: np.ndarray) -> dict[str, float]:
    keep = gold >= 0
    return classification_metrics(scores[keep], gold[keep])


def _rate(scores: np.ndarray, gold: np.ndarray, policy: SelectionPolicy) -> dict[str, float]:
    metrics = _metrics(scores, gold)
    return {"score": selection_score(metrics, "classification", policy.by), "accuracy": metrics["accuracy"],
            "class_logprob": metrics["class_logprob"]}


def _ensemble(members: Sequence[_Variant], gold: np.ndarray, policy: SelectionPolicy,
              labels: Sequence[str]) -> tuple[_Variant, dict[str, float]]:
    stacked = np.stack([m.scores for m in members])
    weights = bias = None
    if policy.combine == "logistic":
        weights, bias = fit_logistic(stacked, gold)
    ensemble = EnsemblePrompt(tuple(m.prompt for m in members), policy.combine, weights, bias,
                              tuple(labels) if bias is not None else ())
    combined = ensemble.combine(stacked)
    return _Variant(ensemble, combined, any(m.calibrated for m in members)), _rate(combined, gold, policy)

