"""What the Evaluator keeps for calibration and demonstrations between calls, and the rows and score
changes the two add: Zhao et al.'s content-free inputs (:mod:`calibration`), the demonstrations
before each query (:mod:`demonstrations`), fitted priors ``p_cf`` cached per prompt and
demonstration selectors per pool. The Evaluator plans and batches the rows; this says which.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from ..data.tasks import Example, Task
from ..errors import DataError
from ..models.language_model import LanguageModel
from ..prompts.calibration import calibrate, content_free_values, fit_prior
from ..prompts.demonstrations import DemoSelector
from ..prompts.prompt import Prompt

_CACHE_LIMIT = 4096
PriorKey = tuple
Priors = Mapping[PriorKey, np.ndarray]


class InContext:
    """Per-Evaluator state of calibration and demonstrations (prompts arrive validated: see Evaluator.validated)."""

    def __init__(self, model: LanguageModel) -> None:
        self.model = model
        self._priors: dict[PriorKey, np.ndarray] = {}  # prompt key → fitted p_cf (L,)
        self._selectors: dict[tuple, DemoSelector] = {}  # (pool id, config, per_class) → selector

    # --- demonstrations -------------------------------------------------------------------------
    def demonstrations(self, prompt: Prompt, example: Example, task: Task) -> list[Example]:
        """The demonstrations that go before ``example`` (none unless the prompt asks for them)."""
        if prompt.demos is None:
            return []
        if not task.has_split("train"):
            raise DataError(
                f"in-context demonstrations come from the task's train split, but task {task.name!r} has none "
                f"(splits: {sorted(k for k in task.splits if task.has_split(k))}): load a folder with a train "
                "file (train.tsv) or a file whose 'split' column marks train rows, or score without demonstrations"
            )
        pool = task.split("train")
        per_class = prompt.demos.per_class and task.kind == "classification"
        key = (id(pool), prompt.demos, per_class)
        if key not in self._selectors:
            self._remember(self._selectors, key, DemoSelector(pool, prompt.demos, per_class=per_class))
        return self._selectors[key].choose(example)

    # --- calibration ----------------------------------------------------------------------------
    def content_free(self, prompt: Prompt) -> list[Example]:
        """Zhao et al.'s content-free inputs: each string in every field of the template."""
        assert prompt.calibration is not None
        mask = None if self.model.is_causal else self.model.tokenizer.mask_token
        strings = content_free_values(prompt.calibration.content_free, mask)
        return [Example({name: text for name in prompt.template.fields}) for text in strings]

    def unfitted(self, pairs: Iterable[tuple[Prompt, Task]]) -> dict[PriorKey, tuple[Prompt, Task]]:
        """The calibrated (prompt, task) pairs whose prior is neither recorded nor cached, by prior key:
        their content-free inputs must be scored."""
        pending: dict[PriorKey, tuple[Prompt, Task]] = {}
        for prompt, task in pairs:
            if prompt.calibration and self.prior(prompt, task) is None:
                pending.setdefault(self._prior_key(prompt, task), (prompt, task))
        return pending

    def fit(self, keys: Iterable[PriorKey], scores: Iterable[np.ndarray]) -> dict[PriorKey, np.ndarray]:
        """Fit and cache the priors of ``keys`` from their content-free class scores (N, L)."""
        fresh = {key: fit_prior(s) for key, s in zip(keys, scores, strict=True)}
        for key, prior in fresh.items():
            self._remember(self._priors, key, prior)
        return fresh

    def calibrated(self, scores: np.ndarray, prompts: Sequence[Prompt], task: Task,
                   fresh: Priors) -> tuple[np.ndarray, np.ndarray | None]:
        """Scores (C, E, L) with the calibrated prompts' rows calibrated, and their priors p_cf (C, L)
        (NaN rows for the others; None when no prompt is calibrated)."""
        if not any(p.calibration for p in prompts):
            return scores, None
        scores = scores.copy()
        p_cf = np.full((len(prompts), len(task.labels)), np.nan)
        for c, prompt in enumerate(prompts):
            if prompt.calibration:
                p_cf[c] = self.prior(prompt, task, fresh)
                scores[c] = calibrate(scores[c], p_cf[c])
        return scores, p_cf

    def prior(self, prompt: Prompt, task: Task, fresh: Priors | None = None) -> np.ndarray | None:
        """A calibrated prompt's p_cf (L,): recorded with it, just fitted (``fresh``) or cached here;
        None if it must be fitted."""
        assert prompt.calibration is not None
        if prompt.calibration.fitted:
            return prompt.calibration.prior(task.labels)
        key = self._prior_key(prompt, task)
        return fresh[key] if fresh and key in fresh else self._priors.get(key)

    def _prior_key(self, prompt: Prompt, task: Task) -> PriorKey:
        """What p_cf depends on: the prompt (its soft, deep and head tensors by content) and the
        demonstration pool."""
        tensors = tuple(None if t is None else hashlib.sha1(t.detach().float().cpu().numpy().tobytes()).hexdigest()
                        for t in (prompt.soft, prompt.deep, prompt.head))
        pool = id(task.split("train")) if prompt.demos else None
        verbalizer = json.dumps(prompt.verbalizer.to_json()) if prompt.verbalizer else None
        return (prompt.template.source, verbalizer, prompt.trigger_ids, tensors, prompt.head_labels, prompt.demos,
                prompt.calibration, self.model.name, pool)

    def _remember(self, cache: dict, key: tuple, value: object) -> None:
        """Bounded caches; priors are keyed by pool ids that only the selectors keep alive, so both go."""
        if len(cache) >= _CACHE_LIMIT:
            self._priors.clear()
            self._selectors.clear()
        cache[key] = value
