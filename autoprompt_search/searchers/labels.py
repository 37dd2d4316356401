"""Automatic label-word search (LM-BFF, Gao et al., 2021, "Making Pre-trained Language Models
Better Few-shot Learners", section 5.1).

For each class, the ``top_k`` vocabulary tokens with the highest mean log-prob at ``[P]`` over that
class's training examples are its candidate words. Assignments (one word per class, no word
shared) are ranked by training accuracy — read off the same log-prob table, so this costs no
further forward passes — and the best ``finalists`` are scored on the selection split through
the Evaluator, in chunks of ``per_step``. The result is a verbalizer a person can read and reuse,
and it can run before a trigger search.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from ..data.tasks import Example
from ..errors import TemplateError
from ..models.vocabulary import clean_token_mask
from ..prompts.prompt import Prompt
from ..prompts.template import parse_template
from ..scoring.differentiable import answer_log_probs
from ..scoring.selection import CalibrateChoice, Combine, SelectBy, SelectOn
from .base import SearchContext, register
from .config import positive, single
from .pool import PoolSearcher, Spec

#: Above this many assignments, a beam over classes replaces exhaustive enumeration.
EXHAUSTIVE_LIMIT = 20_000


@register
class LabelSearcher(PoolSearcher):
    """LM-BFF's label-word search for one template (classification tasks)."""

    name = "label-search"

    def __init__(
        self,
        *,
        templates: list[str] | None = None,
        verbalizers: list[Mapping[str, Any] | None] | None = None,
        top_k: int = 10,
        max_examples: int = 512,
        finalists: int = 16,
        per_step: int = 8,
        allow_capitalized: bool = True,
        select_by: SelectBy = "logloss",
        select_on: SelectOn = "all",
        calibrate: CalibrateChoice = "choose",
        ensemble: int = 1,
        combine: Combine = "mean",
        guard: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(per_step=per_step, seed=seed, select_by=select_by, select_on=select_on, calibrate=calibrate,
                         ensemble=ensemble, combine=combine, guard=guard)
        self.templates = single(self.name, "templates", templates, "{sentence} It was[P]")
        self.verbalizers = list(verbalizers or [])
        positive(self.name, top_k=top_k, max_examples=max_examples, finalists=finalists)
        self.top_k, self.max_examples, self.finalists = top_k, max_examples, finalists
        self.allow_capitalized = allow_capitalized


    def expected_steps(self) -> int:
        return -(-(self.finalists + len(self.verbalizers)) // self.per_step)

    def reference(self) -> Prompt | None:
        """The template with the first given label words, if any were given."""
        return super().reference() if any(self.verbalizers) else None

    def describe(self, index: int) -> str:
        return "/".join(str(w) for w in self._pool[index][1].values())

    def build_pool(self, ctx: SearchContext) -> list[Spec]:
        given = [{str(k): v for k, v in m.items()} for m in self.verbalizers if m]
        found = find_label_words(ctx, self.templates[0], top_k=self.top_k, max_examples=self.max_examples,
                                 count=self.finalists, allow_capitalized=self.allow_capitalized)
        return [(self.templates[0], v) for v in given + found]


def find_label_words(
    ctx: SearchContext, template_text: str, *, top_k: int, max_examples: int, count: int, allow_capitalized: bool
) -> list[dict[str, str]]:
    """The ``count`` best label → word assignments for ``template_text``, best first (LM-BFF 5.1).

    One pass over at most ``max_examples`` training examples (drawn with ``ctx.rng``); shared by the
    label-word searcher and the filter searcher, which crosses the words with its templates.
    """
    examples = sample_examples(ctx.train, max_examples, ctx.rng)
    found = candidate_words(ctx, template_text, examples, top_k=top_k, allow_capitalized=allow_capitalized)
    assignments = _rank_assignments(found.log_probs, found.gold, found.tokens)[:count]
    return [{label: ctx.model.decode([t]).strip() for label, t in zip(ctx.task.labels, combo, strict=True)}
            for combo in assignments]


@dataclass
class CandidateWords:
    """Per class, the ``top_k`` tokens with the highest mean log-prob at ``[P]`` over that class's
    examples (``tokens[c]``), with the log-prob table ``(E, V)`` and gold class indices ``(E,)``."""

    tokens: list[list[int]]
    log_probs: np.ndarray
    gold: np.ndarray

    def words(self, decode: Callable[[list[int]], str]) -> list[list[str]]:
        return [[decode([t]).strip() for t in tokens] for tokens in self.tokens]


def candidate_words(
    ctx: SearchContext, template: str, examples: Sequence[Example], *, top_k: int, allow_capitalized: bool = True
) -> CandidateWords:
    """LM-BFF's candidate label words per class for ``template`` (one forward pass per example); the
    Optuna searcher lets TPE choose among them, label search ranks whole assignments of them."""
    if ctx.task.kind != "classification":
        raise TemplateError("label-word search needs a classification task; fact tasks have no label words")
    parsed = parse_template(template)
    if parsed.n_triggers or parsed.n_soft:
        raise TemplateError(f"label search scores a plain template; {template!r} has [T]/[V] slots: drop them")
    encoder = ctx.evaluator.encoder
    prompt = Prompt(parsed)
    log_probs = answer_log_probs(encoder, prompt, examples).numpy()  # (E, V)
    text_before = encoder.encode(prompt, examples[0]).text_before
    gold = np.array([ctx.task.labels.index(e.label) for e in examples])
    usable = clean_token_mask(ctx.model, word_start=False, allow_capitalized=allow_capitalized)
    tokens = []
    for c in range(len(ctx.task.labels)):
        mean = np.where(usable, log_probs[gold == c].mean(axis=0), -np.inf)
        tokens.append(_top_words(ctx, mean, text_before, top_k))
    return CandidateWords(tokens, log_probs, gold)


def sample_examples(examples: Sequence[Example], n: int, rng: np.random.Generator) -> list[Example]:
    """Up to ``n`` examples, drawn without replacement and kept in their original order."""
    n = min(n, len(examples))
    return [examples[int(i)] for i in sorted(rng.choice(len(examples), size=n, replace=False))]


def _top_words(ctx: SearchContext, mean: np.ndarray, text_before: str, top_k: int) -> list[int]:
    """The ``top_k`` best tokens that the verbalizer maps back to themselves at this slot."""
    chosen: list[int] = []
    for token in np.argsort(-mean, kind="stable"):
        if not np.isfinite(mean[token]) or len(chosen) == top_k:
            break
        word = ctx.model.decode([int(token)]).strip()
        if ctx.evaluator.encoder.word_ids(word, text_before) == (int(token),):
            chosen.append(int(token))
    return chosen


def _rank_assignments(log_probs: np.ndarray, gold: np.ndarray, words: list[list[int]]) -> list[tuple[int, ...]]:
    """Assignments (one distinct token per class) sorted by training accuracy, then gold log-prob."""
    def quality(combo: tuple[int, ...]) -> tuple[float, float]:
        scores = log_probs[:, list(combo)]  # (E, L)
        normalised = scores - np.logaddexp.reduce(scores, axis=1, keepdims=True)
        return float(np.mean(scores.argmax(1) == gold)), float(np.mean(normalised[np.arange(len(gold)), gold]))

    if np.prod([len(w) for w in words], dtype=float) <= EXHAUSTIVE_LIMIT:
        pool = [c for c in itertools.product(*words) if len(set(c)) == len(c)]
    else:  # beam over classes, scoring partial assignments on the examples of the classes so far
        pool = [()]
        for c, options in enumerate(words):
            grown = [(*p, t) for p in pool for t in options if t not in p]
            seen = gold <= c
            grown.sort(key=lambda p: _partial(log_probs[seen], gold[seen], p), reverse=True)
            pool = grown[:1000]
    return sorted(pool, key=quality, reverse=True)


def _partial(log_probs: np.ndarray, gold: np.ndarray, combo: tuple[int, ...]) -> float:
    return float(np.mean(log_probs[:, list(combo)].argmax(1) == gold)) if len(gold) else 0.0
