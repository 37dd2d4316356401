"""AutoPrompt (Shin et al., 2020): gradient-guided swaps of discrete trigger tokens.

Each step: accumulate the gradient of the loss w.r.t. the trigger-slot embeddings over a few
training batches; pick one trigger position; take the ``num_cand`` tokens whose embeddings most
decrease the first-order loss estimate ``-(E · g)`` (HotFlip); re-score the incumbent and every
candidate on the same fresh batch — all in one batched Evaluator call, where the prefix before the
swapped position is computed once — and swap in the best candidate if it beats the incumbent.

Differences from the reference code, each against a failure seen when it was re-run on small
data: candidates are ranked by mean gold log-prob (accuracy ties constantly; ``score="accuracy"``
restores the reference); a win must be confirmed on a second fresh batch (``confirm``), since the
batch that picked a candidate flatters it; and the template without triggers is a candidate too,
so the search returns the manual prompt when no trigger beats it on dev.

``objective="class"`` (classification only) renormalises the gold class's probability over the
classes, in the gradient, the ranking and the dev tie-break alike. The reference's vocabulary-wide
objective can be lowered by a trigger that raises every label word at once, without the model
telling the classes apart better; the class-normalised one is the cross-entropy of the induced
classifier.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, Literal

import numpy as np
import torch

from ..errors import TemplateError, VerbalizerError
from ..models.vocabulary import clean_token_mask
from ..prompts.prompt import Prompt
from ..prompts.template import parse_template
from ..scoring.differentiable import trigger_gradient
from ..scoring.fluency import mean_log_likelihoods
from ..scoring.metrics import selection_score
from ..scoring.selection import CalibrateChoice, Combine, SelectBy, SelectionOptions, SelectOn
from .base import OneTemplate, SearchContext, Searcher, register
from .config import choice, merge_preset, positive, single
from .records import Step

#: Named settings. "sst2" and "lama" are the reference code's README settings; "cpu" reaches most
#: of the gain in minutes on 2 CPU cores (fewer candidates, one gradient batch, small batches).
PRESETS: dict[str, dict[str, Any]] = {
    "sst2": {"num_cand": 100, "accumulation_steps": 30, "batch_size": 24, "iterations": 180},
    "lama": {"num_cand": 10, "accumulation_steps": 1, "batch_size": 56, "iterations": 1000,
             "allow_capitalized": False},
    "cpu": {"num_cand": 24, "accumulation_steps": 1, "batch_size": 16, "iterations": 30},
}
#: What a search without a preset (``preset=None``) uses for options left unset: the cpu preset's values.
DEFAULTS: dict[str, Any] = {**PRESETS["cpu"], "allow_capitalized": True}

_TRIGGER_SLOTS = re.compile(r" ?\[T(?:\*\d+)?\]")


@register
class AutoPromptSearcher(SelectionOptions, OneTemplate, Searcher):
    """Gradient-guided trigger search over the ``[T]`` slots of one template.

    ``fluency`` (default 0: off) adds that weight times the mean log-likelihood of the template
    text with the candidate triggers (:mod:`scoring.fluency`) to every candidate's batch score. The
    final pick (:mod:`searchers.final`; options ``select_by`` … ``guard``) is between the found
    triggers and the template without them, which is also the guard's reference.
    """

    name = "autoprompt"

    def __init__(
        self,
        *,
        templates: list[str] | None = None,
        verbalizers: list[Mapping[str, Any] | None] | None = None,
        preset: str | None = "cpu",
        init: str = " the",
        num_cand: int | None = None,
        accumulation_steps: int | None = None,
        batch_size: int | None = None,
        iterations: int | None = None,
        position: Literal["random", "cycle"] = "random",
        score: Literal["logprob", "accuracy"] = "logprob",
        objective: Literal["vocab", "class"] = "vocab",
        confirm: bool = True,
        allow_capitalized: bool | None = None,
        fluency: float = 0.0,
        select_by: SelectBy = "logloss",
        select_on: SelectOn = "dev",
        calibrate: CalibrateChoice = "choose",
        ensemble: int = 1,
        combine: Combine = "mean",
        guard: float | None = None,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        self.set_selection(select_by=select_by, select_on=select_on, calibrate=calibrate, ensemble=ensemble,
                           combine=combine, guard=guard)
        given = {"num_cand": num_cand, "accumulation_steps": accumulation_steps, "batch_size": batch_size,
                 "iterations": iterations, "allow_capitalized": allow_capitalized}
        settings = merge_preset("AutoPrompt", PRESETS, preset, given, defaults=DEFAULTS)
        self.templates = single(self.name, "templates", templates, "{sentence} [T*3] It was[P]")
        self.verbalizers = single(self.name, "verbalizers", verbalizers, None)
        self.position = choice("AutoPrompt", "position", position, ("random", "cycle"))
        self.score = choice("AutoPrompt", "score", score, ("logprob", "accuracy"))
        self.objective = choice("AutoPrompt", "objective", objective, ("vocab", "class"))
        self.preset, self.init, self.confirm, self.fluency = preset, init, confirm, fluency
        counts = ("num_cand", "accumulation_steps", "batch_size", "iterations")
        positive("AutoPrompt", **{k: settings[k] for k in counts})
        self._logprob_key = "class_logprob" if objective == "class" else "gold_logprob"  # the objective's metric
        self.num_cand = int(settings["num_cand"])
        self.accumulation_steps = int(settings["accumulation_steps"])
        self.batch_size = int(settings["batch_size"])
        self.iterations = int(settings["iterations"])
        self.allow_capitalized = bool(settings["allow_capitalized"])
        self._triggers: list[int] = []
        self._best: tuple[list[int] | None, float] = (None, float("-inf"))
        self._steps = 0


    def expected_steps(self) -> int:
        return self.iterations

    # --- searcher protocol ---------------------------------------------------------------------
    def start(self, ctx: SearchContext) -> None:
        self._prepare(ctx)
        init = ctx.model.tokenize(self.init)
        n = self._prompt.template.n_triggers
        self._triggers = [init[i % len(init)] for i in range(n)] if init else [self._the] * n
        for triggers in (None, self._triggers):
            score = self._dev_score(ctx, triggers)
            if score > self._best[1]:
                self._best = (triggers, score)

    def step(self, ctx: SearchContext) -> Step | None:
        if self._steps >= self.iterations:
            return None
        self._steps += 1
        prompt = self._prompt.with_triggers(self._triggers)
        grad = torch.zeros(len(self._triggers), ctx.model.hidden_size)
        loss = 0.0
        for _ in range(self.accumulation_steps):
            batch = self._batch(ctx)
            g, batch_loss = trigger_gradient(ctx.evaluator.encoder, prompt, batch, self._gold_tokens(batch),
                                             self._class_tokens)
            grad += g
            loss += batch_loss / len(batch) / self.accumulation_steps
        slot = (self._steps - 1) % len(self._triggers) if self.position == "cycle" else int(
            ctx.rng.integers(len(self._triggers)))
        candidates = self._candidates(ctx, grad[slot])
        proposals = [[*self._triggers[:slot], int(t), *self._triggers[slot + 1 :]] for t in candidates]
        scores = self._batch_scores(ctx, [self._triggers, *proposals])
        best = int(np.argmax(scores[1:])) + 1 if proposals else 0
        accepted = best > 0 and scores[best] > scores[0]
        if accepted and self.confirm:
            check = self._batch_scores(ctx, [self._triggers, proposals[best - 1]])
            accepted = check[1] > check[0]
        report = {"train_loss": loss, "incumbent": scores[0], "best_candidate": scores[best],
                  "slot": float(slot), "accepted": float(accepted)}
        if accepted:
            self._triggers = proposals[best - 1]
            dev = self._dev_score(ctx, self._triggers)
            report["dev"] = dev
            if dev > self._best[1]:
                self._best = (list(self._triggers), dev)
        token = ctx.model.decode([self._triggers[slot]])
        return Step(report, note=f"slot {slot} -> {token!r}" if accepted else f"slot {slot}: kept")

    @property
    def best(self) -> tuple[Prompt, float]:
        triggers, score = self._best
        return (self._baseline if triggers is None else self._prompt.with_triggers(triggers)), score

    def final_candidates(self) -> list[Prompt]:
        return [self.best[0], self._baseline]

    def reference(self) -> Prompt | None:
        return self._baseline

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        return {"triggers": self._triggers, "best": [self._best[0], self._best[1]], "steps": self._steps}, {}

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self._prepare(ctx)
        self._triggers = [int(t) for t in state["triggers"]]
        self._best = (state["best"][0], float(state["best"][1]))
        self._steps = int(state["steps"])

    # --- helpers -------------------------------------------------------------------------------
    def _prepare(self, ctx: SearchContext) -> None:
        """Parse and check the template and label words; build the candidate vocabulary."""
        if ctx.task.kind == "generation":
            raise TemplateError(f"task {ctx.task.name!r} is a generation task, but AutoPrompt's gradient step reads "
                                "one answer token, not a whole text: train [V]/deep prompts (prompt-tuning, "
                                "prefix-tuning) or search discrete templates with filter/optuna")
        template = parse_template(self.template)
        if not template.n_triggers:
            raise TemplateError(f"template {self.template!r} has no [T] slots for AutoPrompt to fill: add e.g. [T*3]")
        self._enc = ctx.evaluator.encoder
        prompt = Prompt.build(template, self.verbalizer).with_triggers([0] * template.n_triggers)
        self._prompt = self._enc.validate(prompt, ctx.task)
        self._text_before = self._enc.encode(self._prompt, ctx.train[0]).text_before
        self._baseline = Prompt.build(_TRIGGER_SLOTS.sub("", self.template), self._prompt.verbalizer)
        self._the = ctx.model.tokenize(" the")[0]
        allowed = clean_token_mask(ctx.model, allow_capitalized=self.allow_capitalized).copy()
        label_tokens = self._label_tokens(ctx)
        allowed[list(label_tokens)] = False
        self._class_tokens = self._per_class_tokens(ctx) if self.objective == "class" else None
        self._allowed = torch.from_numpy(allowed)

    def _label_tokens(self, ctx: SearchContext) -> set[int]:
        """First tokens of all label words; AutoPrompt needs each word to be a single token."""
        if ctx.task.kind != "classification":
            return set()
        tokens = set()
        for label, words in self._prompt.verbalizer.words.items():
            for word in words:
                ids = self._enc.word_ids(word, self._text_before)
                if len(ids) != 1:
                    raise VerbalizerError(
                        f"label word {word!r} of label {label!r} is {len(ids)} tokens; AutoPrompt needs single-token "
                        "label words: pick another word, or run --searcher label-search to find some"
                    )
                tokens.add(ids[0])
        return tokens

    def _per_class_tokens(self, ctx: SearchContext) -> list[list[int]]:
        """Each class's label tokens, for the class-normalised objective."""
        if ctx.task.kind != "classification":
            raise TemplateError("objective='class' renormalises over a classification task's labels; this is a "
                                f"{ctx.task.kind} task: use objective='vocab'")
        words = self._prompt.verbalizer.words
        return [[self._enc.word_ids(w, self._text_before)[0] for w in words[label]] for label in ctx.task.labels]

    def _gold_tokens(self, batch) -> list[list[int]]:
        """Per example, the first tokens of its gold label's words (fact tasks: of the object)."""
        verbalizer = self._prompt.verbalizer
        if verbalizer is None:
            return [[self._enc.word_ids(str(e.label), self._text_before)[0]] for e in batch]
        return [[self._enc.word_ids(w, self._text_before)[0] for w in verbalizer.words[e.label]] for e in batch]

    def _candidates(self, ctx: SearchContext, grad: torch.Tensor) -> list[int]:
        embeddings = ctx.model.model.get_input_embeddings().weight.detach().float()
        estimate = -(embeddings @ grad)  # first-order decrease of the loss for each replacement token
        estimate[~self._allowed] = float("-inf")
        return torch.topk(estimate, min(self.num_cand, int(self._allowed.sum()))).indices.tolist()

    def _batch(self, ctx: SearchContext) -> list:
        rows = ctx.rng.choice(len(ctx.train), size=min(self.batch_size, len(ctx.train)), replace=False)
        return [ctx.train[int(i)] for i in rows]

    def _batch_scores(self, ctx: SearchContext, trigger_sets: list[list[int]]) -> list[float]:
        """Score trigger sets on one fresh batch, in one Evaluator call."""
        batch = self._batch(ctx)
        prompts = [self._prompt.with_triggers(t) for t in trigger_sets]
        table = ctx.evaluator.score(prompts, batch, ctx.task)
        if self.score == "logprob":  # the objective's log-prob: the same quantity as the gradient's loss
            scores = [table.metrics(i)[self._logprob_key] for i in range(len(trigger_sets))]
        else:
            scores = [selection_score(table.metrics(i), ctx.task.kind, self._logprob_key)
                      for i in range(len(trigger_sets))]
        if self.fluency:  # readable triggers first among near-equals (FluentPrompt, Shi et al. 2022)
            texts = mean_log_likelihoods(ctx.model, prompts)
            scores = [s + self.fluency * t for s, t in zip(scores, texts, strict=True)]
        return scores

    def _dev_score(self, ctx: SearchContext, triggers: list[int] | None) -> float:
        prompt = self._baseline if triggers is None else self._prompt.with_triggers(triggers)
        return ctx.score(ctx.evaluator.evaluate(prompt, ctx.select, ctx.task), self._logprob_key)
