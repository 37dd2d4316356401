"""``auto``: the default pipeline — filter with calibration, soft prompt if affordable, then ensemble.

Why this order: on few examples the methods that carry over to unseen data are calibration (Zhao
et al. 2021), aggregating many imperfect prompts (Arora et al. 2022) and gradient training on all
examples (Lester et al. 2021); picking one discrete winner on a small dev split is mostly noise
(Perez et al. 2021). So, within one budget:

1. **Discrete stage** — the filter searcher (:mod:`filtering`) over the given templates, the
   built-in grammar for the task's fields and the given label words, scored on every labelled
   example (``select_on="all"`` by default); one searcher step per halving rung.
2. **Soft stage** — if a model gradient is affordable (``soft="auto"``: the estimated cost of
   ``soft_steps`` training steps, from the seconds per forward pass measured in stage 1, fits in
   what is left of the budget), prompt tuning of ``[V*soft_tokens]`` before the best discrete
   template, initialised from that template's own words, trained on train, selected on dev by
   log-loss with checkpoint averaging; one searcher step per optimizer update.
3. **Final pick** (in :meth:`conclude`, so a budget cut still ends with one) — the discrete
   finalists through :func:`final.final_selection` (calibration choice, top-``ensemble``
   ensemble, optional guard); then, when a soft prompt exists, the discrete pick, the soft prompt
   and both together as one ensemble are compared on dev (which the soft prompt never trained on);
   with the guard on, the soft prompt or the mix replaces the discrete pick only if it passes the
   guard against it there too, so what auto returns beats the given prompt at the guard's level.

The evidence of every decision is in the result's ``selection``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Literal

import torch

from ..errors import ConfigError
from ..prompts.ensemble import Combine, EnsemblePrompt
from ..prompts.prompt import Prompt
from ..prompts.template import Text
from ..scoring.selection import (
    CalibrateChoice,
    SelectBy,
    SelectionOptions,
    SelectOn,
    class_loglik,
    guard,
    selection_score,
    top_indices,
)
from .base import SearchContext, Searcher, register
from .filtering import FilterSearcher
from .final import Decision, final_selection
from .records import Step
from .soft.prompt_tuning import PromptTuningSearcher

#: A soft step costs about this many forward passes per training example (forward + backward).
BACKWARD_FACTOR = 3.0
#: Share of the remaining budget the soft stage may plan to use (the final pick needs the rest).
SOFT_SHARE = 0.8


@register
class AutoSearcher(SelectionOptions, Searcher):
    """Filter (with calibration as a dimension) → soft prompt if affordable → guard/ensemble.

    Options: ``templates``/``verbalizers`` the given prompt (the guard's reference) and label
    words; ``grammar`` a template grammar added to the pool; ``builtin`` the generic pool for the
    task's fields; ``label_words`` LM-BFF label-word sets to find; ``finalists`` discrete
    candidates that reach the final pick; ``soft``: ``auto`` (if affordable), ``on`` or ``off``;
    ``soft_tokens``, ``soft_steps``, ``soft_average`` (checkpoint averaging); and the selection
    options of :class:`selection.SelectionPolicy` (here ``select_on="all"``, ``ensemble=5``).
    """

    name = "auto"

    def __init__(
        self,
        *,
        templates: Sequence[str] = (),
        verbalizers: Sequence[Mapping[str, Any] | None] = (),
        grammar: str | None = None,
        builtin: bool = True,
        label_words: int = 0,
        finalists: int = 8,
        soft: Literal["auto", "on", "off"] = "auto",
        soft_tokens: int = 8,
        soft_steps: int = 60,
        soft_average: int = 3,
        select_by: SelectBy = "logloss",
        select_on: SelectOn = "all",
        calibrate: CalibrateChoice = "choose",
        ensemble: int = 5,
        combine: Combine = "mean",
        guard: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.set_selection(select_by=select_by, select_on=select_on, calibrate=calibrate, ensemble=ensemble,
                           combine=combine, guard=guard)
        if soft not in ("auto", "on", "off"):
            raise ConfigError(f"soft={soft!r}: use 'auto' (when affordable), 'on' or 'off'")
        self.templates, self.verbalizers = list(templates), list(verbalizers)
        self.grammar, self.builtin, self.label_words, self.finalists = grammar, builtin, label_words, finalists
        self.soft, self.soft_tokens, self.soft_steps, self.soft_average = soft, soft_tokens, soft_steps, soft_average
        self._filter = self._make_filter()
        self._soft: PromptTuningSearcher | None = None
        self._soft_spec: dict[str, Any] | None = None
        self._stage = "discrete"
        self._stage_cost = (0.0, 0)  # (seconds, forward passes) of the discrete stage

    def _make_filter(self) -> FilterSearcher:
        return FilterSearcher(templates=self.templates, verbalizers=self.verbalizers, grammar=self.grammar,
                              builtin=self.builtin, label_words=self.label_words, finalists=self.finalists,
                              calibrate="off", ensemble=1, seed=self.seed)  # auto's own pick ensembles

    # --- searcher protocol ---------------------------------------------------------------------
    def start(self, ctx: SearchContext) -> None:
        self._filter, self._soft, self._soft_spec, self._stage = self._make_filter(), None, None, "discrete"
        self._filter.start(ctx)

    def step(self, ctx: SearchContext) -> Step | None:
        if self._stage == "discrete":
            skip = self._filter.final_is_redundant(ctx)
            report = None if skip else self._filter.step(ctx)
            if report is not None:
                return Step(report.scores, note=f"discrete: {report.note}")
            self._stage_cost = ctx.spent()
            self._stage = "soft" if self._start_soft(ctx) else "done"
        if self._stage == "soft":
            report = self._soft.step(self._soft_context(ctx))
            if report is not None:
                return Step(report.scores, note=f"soft: {report.note}")
            self._stage = "done"
        return None

    @property
    def best(self) -> tuple[Prompt, float]:
        return self._filter.best

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        state, filter_tensors = self._filter.state_dict()
        out: dict[str, Any] = {"stage": self._stage, "filter": state, "cost": list(self._stage_cost),
                               "soft_spec": self._soft_spec}
        tensors = {f"filter.{k}": v for k, v in filter_tensors.items()}
        if self._soft is not None:
            out["soft"], soft_tensors = self._soft.state_dict()
            tensors |= {f"soft.{k}": v for k, v in soft_tensors.items()}
        return out, tensors

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self._filter.load_state_dict(state["filter"], _under(tensors, "filter."), ctx)
        self._stage, self._stage_cost = str(state["stage"]), (float(state["cost"][0]), int(state["cost"][1]))
        self._soft_spec = state.get("soft_spec")
        if self._soft_spec is not None:
            self._soft = PromptTuningSearcher(**self._soft_spec)
            self._soft.load_state_dict(state["soft"], _under(tensors, "soft."), self._soft_context(ctx))

    # --- the soft stage ------------------------------------------------------------------------
    def _start_soft(self, ctx: SearchContext) -> bool:
        """Plan the soft stage; False when it is off, impossible or not affordable."""
        if self.soft == "off" or ctx.task.kind != "classification" or not ctx.model.is_causal:
            return False
        if self.soft == "auto" and not self._affordable(ctx):
            return False
        winner = self._filter.best[0]
        words = [s.text for s in winner.template.segments if isinstance(s, Text)]
        instruction = " ".join(" ".join(words).split())
        self._soft_spec = {
            "templates": [f"[V*{self.soft_tokens}]{winner.template.source}"],
            "verbalizers": [winner.verbalizer.to_json()["words"]] if winner.verbalizer else [None],
            "init": f"text:{instruction}" if instruction else "vocab",
            "steps": self.soft_steps, "average": self.soft_average, "select_by": self.select_by, "seed": self.seed}
        self._soft = PromptTuningSearcher(**self._soft_spec)
        self._soft.start(self._soft_context(ctx))
        return True

    def _affordable(self, ctx: SearchContext) -> bool:
        """Whether ``soft_steps`` training steps fit in what is left of the budget, at the cost per
        forward pass the discrete stage measured."""
        seconds, passes = self._stage_cost
        settings = PromptTuningSearcher(steps=self.soft_steps).settings
        dev = len(self._soft_dev(ctx))
        planned = (self.soft_steps * settings.batch_size * BACKWARD_FACTOR
                   + (self.soft_steps // settings.eval_every + 1) * dev * (2 if self.soft_average > 1 else 1))
        budget = ctx.budget
        if budget.forward_passes is not None and planned > SOFT_SHARE * (budget.forward_passes - passes):
            return False
        if budget.seconds is not None:
            per_pass = seconds / max(passes, 1)
            if planned * per_pass > SOFT_SHARE * (budget.seconds - seconds):
                return False
        return True

    def _soft_dev(self, ctx: SearchContext) -> Sequence:
        return ctx.task.split("dev") if ctx.task.has_split("dev") else ctx.select

    def _soft_context(self, ctx: SearchContext) -> SearchContext:
        """Train on train, select on dev: the soft prompt never selects on what it trained on."""
        train = ctx.task.split("train") if ctx.task.has_split("train") else ctx.train
        return SearchContext(ctx.task, ctx.model, ctx.evaluator, ctx.rng, train, self._soft_dev(ctx), ctx.seed,
                             ctx.by, ctx.budget, ctx.spent)

    # --- the final pick ------------------------------------------------------------------------
    def conclude(self, ctx: SearchContext) -> Decision:
        if ctx.task.kind == "generation":  # the filter decoded its finalists on dev; no soft stage, no ensemble
            return Decision(*self._filter.best, None)
        candidates, rows = self._filter.final_candidates(), self._filter.final_rows()
        if self._stage == "discrete" and rows is not None and any(r is not None for r in rows):
            # the budget ended inside the discrete stage: pick among what is scored, at no further cost
            kept = [(c, r) for c, r in zip(candidates, rows, strict=True) if r is not None]
            candidates, rows = [c for c, _ in kept], [r for _, r in kept]
        discrete = final_selection(ctx.evaluator, ctx.task, ctx.select, list(candidates), self._filter.reference(),
                                   self.selection_policy(), seed=self.seed, decode=ctx.model.decode,
                                   known=None if rows is None else list(rows))
        evidence = {**(discrete.evidence or {}), "stages": {"soft": self._soft is not None}}
        if self._soft is None or ctx.task.kind != "classification":
            return Decision(discrete.prompt, discrete.score, evidence)
        soft = self._soft.best[0]
        members = discrete.prompt.members if isinstance(discrete.prompt, EnsemblePrompt) else (discrete.prompt,)
        options = {"discrete": discrete.prompt, "soft": soft, "both": EnsemblePrompt((*members, soft))}
        dev = self._soft_dev(ctx)
        table = ctx.evaluator.score(list(options.values()), dev, ctx.task)
        scores = [selection_score(table.metrics(i), ctx.task.kind, self.select_by) for i in range(len(options))]
        pick = top_indices(scores, 1)[0]
        evidence["final"] = {"on": "dev", "examples": len(dev), "scores": dict(zip(options, scores, strict=True)),
                             "accuracy": {k: table.metrics(i)["accuracy"] for i, k in enumerate(options)}}
        if self.guard is not None and pick != 0:
            # the guard holds for what auto returns: the soft prompt must beat the (guarded) discrete pick too
            check = guard(class_loglik(table.scores[pick], table.gold), class_loglik(table.scores[0], table.gold),
                          self.guard, self.seed)
            evidence["final"]["guard"] = {**check.to_json(), "against": "discrete"}
            pick = pick if check.passed else 0
        evidence["final"]["decision"] = list(options)[pick]
        return Decision(list(options.values())[pick], scores[pick], evidence)


def _under(tensors: dict[str, torch.Tensor], prefix: str) -> dict[str, torch.Tensor]:
    """The tensors named ``prefix...``, without the prefix."""
    return {k[len(prefix):]: v for k, v in tensors.items() if k.startswith(prefix)}
