"""Scoring ensembles: their members join the Evaluator's one mixed run, their rows are combined
after it (:class:`~autoprompt_search.prompts.ensemble.EnsemblePrompt`), and the logistic rule's
weights are fitted on selection data.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import replace

import numpy as np
import torch
from scipy.special import logsumexp

from ..data.tasks import Task
from ..errors import TemplateError
from ..prompts.ensemble import EnsemblePrompt
from ..prompts.prompt import Prompt
from .score_table import ScoreTable

#: Strength of the pull of logistic weights towards the plain mean (per member and class bias).
L2 = 1.0

def fit_logistic(scores: np.ndarray, gold: np.ndarray, l2: float = L2) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """Weights (M,) and class biases (L,) of the logistic rule, fitted on members' class scores
    (M, E, L) and gold labels (E,) by L-BFGS; the penalty pulls them to the mean rule (1/M, 0)."""
    keep = gold >= 0
    log_p = torch.from_numpy(scores[:, keep] - logsumexp(scores[:, keep], axis=2, keepdims=True)).double()
    target = torch.from_numpy(gold[keep]).long()
    m, _, n_labels = log_p.shape
    prior = torch.full((m,), 1.0 / m, dtype=torch.double)
    w = prior.clone().requires_grad_(True)
    b = torch.zeros(n_labels, dtype=torch.double, requires_grad=True)
    optimizer = torch.optim.LBFGS([w, b], lr=0.5, max_iter=200, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        optimizer.zero_grad()
        z = torch.einsum("m,mel->el", w, log_p) + b
        loss = torch.nn.functional.cross_entropy(z, target) + l2 / max(1, len(target)) * (
            ((w - prior) ** 2).sum() + (b**2).sum())
        loss.backward()
        return loss

    optimizer.step(closure)
    return tuple(float(x) for x in w.detach()), tuple(float(x) for x in b.detach())


def expand(jobs: Sequence[tuple[Prompt | EnsemblePrompt | Sequence[Prompt | EnsemblePrompt], Task]]
           ) -> tuple[list[list[Prompt]], Callable[[list[ScoreTable]], list[ScoreTable]]]:
    """Per job ``(prompts, task)``, its prompts with every ensemble replaced by its members (so all
    members share one mixed run; a prompt given twice is scored once), and the function that folds
    the members' rows of the scored tables back into one row per ensemble."""
    flat: list[list[Prompt]] = []
    places: list[list[tuple[list[int], EnsemblePrompt | None]]] = []
    for given, task in jobs:
        prompts = [given] if isinstance(given, Prompt | EnsemblePrompt) else list(given)
        members: list[Prompt] = []
        place: list[tuple[list[int], EnsemblePrompt | None]] = []
        for prompt in prompts:
            if isinstance(prompt, EnsemblePrompt) and task.kind != "classification":
                raise TemplateError(f"an ensemble combines class scores; task {task.name!r} is a "
                                    f"{task.kind} task: score its members one by one")
            group = prompt.members if isinstance(prompt, EnsemblePrompt) else (prompt,)
            place.append(([_index(members, m) for m in group], prompt if isinstance(prompt, EnsemblePrompt) else None))
        flat.append(members)
        places.append(place)

    def collapse(tables: list[ScoreTable]) -> list[ScoreTable]:
        return [_collapse(table, place) for table, place in zip(tables, places, strict=True)]

    return flat, collapse


def _index(members: list[Prompt], prompt: Prompt) -> int:
    """Where ``prompt`` is in ``members``, appended if new: a prompt given twice (say, alone and in an
    ensemble) is scored once."""
    found = next((i for i, m in enumerate(members) if m is prompt), None)
    if found is None:
        members.append(prompt)
        return len(members) - 1
    return found


def _collapse(table: ScoreTable, place: list[tuple[list[int], EnsemblePrompt | None]]) -> ScoreTable:
    rows, priors = [], []
    for indices, ensemble in place:
        rows.append(table.scores[indices[0]] if ensemble is None else ensemble.combine(table.scores[indices]))
        no_prior = np.full(table.scores.shape[2], np.nan)
        priors.append(table.p_cf[indices[0]] if table.p_cf is not None and ensemble is None else no_prior)
    p_cf = None if table.p_cf is None else np.stack(priors)
    return replace(table, scores=np.stack(rows), p_cf=p_cf)
