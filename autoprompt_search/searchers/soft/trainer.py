"""The soft-prompt trainer, inside the Searcher loop: one ``step()`` = one optimizer update.

The frozen model stays frozen; only a :class:`Parameterization` trains (prompt tuning: the
vectors themselves; P-tuning: an encoder that produces them; deep prompts: per-layer prefixes).
A subclass supplies the parameterization; this base owns everything else, once:

- a seeded data order (one permutation per epoch from ``(seed, epoch)``), so the position in it
  is two integers and resuming continues the same order;
- the optimizer (AdamW or Adafactor), a linear warm-up, optional bf16 autocast;
- evaluation on the selection split every ``eval_every`` steps through the shared Evaluator (never
  test), the best prompt kept, early stopping after ``patience`` evaluations without improvement
  (``patience=0`` turns it off; None, like every option left out, takes the preset's value);
  selection by the mean class log-likelihood (``select_by="logloss"``, the default: on 32 dev
  examples accuracy ties constantly and a lucky tie decides) or by accuracy;
- checkpoint averaging (``average=n``): at every evaluation the mean of the prompt tensors of the
  last ``n`` evaluations is scored as well and competes for best (a cheap stand-in for stochastic
  weight averaging, Izmailov et al. 2018: the mean of nearby points of the trajectory sits in a
  flatter, better-generalising region than any one of them);
- the Evaluator's demonstrations (LM-BFF trains behind them) and prefix reuse in training too; its
  contextual calibration applies to evaluation only (Zhao et al. calibrate at inference);
- ``state_dict``/``load_state_dict`` with parameters, optimizer state, data position and the best
  prompt, so a resumed run equals an uninterrupted one bit for bit;
- ``fallback`` (default on): the template as written (no ``[V]``, deep prompt or head) is scored on
  the selection split too and returned when no trained prompt beats it there (evidence: both scores);
- multi-task training (P-tuning v2): ``also`` names further tasks, each with its own template and
  verbalizer over the same ``[V]`` vectors; batches mix all tasks' examples and selection averages
  the tasks' dev scores. The result initialises each task's own prompt (``init="prompt:<path>"``).
"""

from __future__ import annotations

import dataclasses
import math
import re
from abc import abstractmethod
from collections.abc import Mapping, Sequence
from contextlib import nullcontext
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch
from torch import nn

from ...data.loaders import load_task
from ...data.tasks import Example, Task, one_per_reference
from ...errors import AutopromptError, BudgetError, ConfigError, TemplateError
from ...prompts.prompt import Prompt
from ...prompts.template import parse_template
from ...scoring.selection import SelectBy, SelectionPolicy, selection_score
from ...scoring.soft_forward import SoftBatch, soft_forward
from ..base import OneTemplate, SearchContext, Searcher
from ..config import choice, merge_preset, single
from ..final import Decision
from ..records import Step
from .initialization import parse_init


@dataclass(frozen=True)
class PromptTensors:
    """What a parameterization materialises: ``soft`` (n_soft, H) for the ``[V]`` slots, an optional
    linear ``head`` (L, H + 1), and an optional per-layer ``deep`` prefix (layers, 2, kv_heads, n, head_dim)."""

    soft: torch.Tensor | None = None
    head: torch.Tensor | None = None
    deep: torch.Tensor | None = None

    def tensors(self) -> dict[str, torch.Tensor]:
        """The plain tensors, detached (for the best-prompt copy and checkpoints)."""
        return {k: getattr(self, k).detach().clone() for k in ("soft", "head", "deep") if getattr(self, k) is not None}

    def apply(self, prompt: Prompt) -> Prompt:
        """``prompt`` carrying these tensors (detached), ready for the Evaluator or ``save``."""
        return dataclasses.replace(prompt, **{k: v.float() for k, v in self.tensors().items()})


class Parameterization(nn.Module):
    """Trainable parameters → :class:`PromptTensors`. Its ``state_dict`` is its resume state."""

    @abstractmethod
    def materialise(self) -> PromptTensors:
        """The prompt's tensors as functions of the parameters (differentiable)."""


class WithHead(Parameterization):
    """Any parameterization plus a linear head ``(L, H + 1)`` on the hidden state at ``[P]``
    (P-tuning v2's classification head), starting at zero: uniform class scores."""

    def __init__(self, inner: Parameterization, labels: int, hidden: int) -> None:
        super().__init__()
        self.inner = inner
        self.head = nn.Parameter(torch.zeros(labels, hidden + 1))

    def materialise(self) -> PromptTensors:
        return dataclasses.replace(self.inner.materialise(), head=self.head)


@dataclass(frozen=True)
class TaskPart:
    """One task a prompt trains on: the task, its validated prompt, its train and selection examples."""

    task: Task
    prompt: Prompt
    train: Sequence[Example]
    select: Sequence[Example]


@dataclass(frozen=True)
class TrainSettings:
    """Optimisation settings; presets give defaults, every field can be overridden."""

    optimizer: str = "adamw"
    lr: float = 0.01
    weight_decay: float = 0.0
    batch_size: int = 8
    steps: int = 100
    eval_every: int = 10
    patience: int | None = None
    warmup: int = 0

    def __post_init__(self) -> None:
        if self.optimizer not in ("adamw", "adafactor"):
            raise ConfigError(f"unknown optimizer {self.optimizer!r}: use 'adamw' or 'adafactor'")
        for name in ("batch_size", "steps", "eval_every"):
            if getattr(self, name) < 1:
                raise BudgetError(f"{name}={getattr(self, name)} must be at least 1")
        if self.lr <= 0 or (self.patience is not None and self.patience < 0) or self.warmup < 0:
            raise BudgetError(f"lr must be > 0, patience >= 0 (0: no early stopping), warmup >= 0; got {self}")


class SoftSearcher(OneTemplate, Searcher):
    """Base of the continuous searchers; subclasses implement :meth:`parameterization`."""

    #: Named settings (``preset=``); subclasses cite their source.
    presets: ClassVar[dict[str, dict[str, Any]]] = {"cpu": {}}

    def __init__(
        self,
        *,
        templates: list[str] | None = None,
        verbalizers: list[Mapping[str, Any] | None] | None = None,
        preset: str | None = "cpu",
        init: str = "vocab",
        head: bool = False,
        also: list[Mapping[str, Any]] | None = None,
        optimizer: str | None = None,
        lr: float | None = None,
        weight_decay: float | None = None,
        batch_size: int | None = None,
        steps: int | None = None,
        eval_every: int | None = None,
        patience: int | None = None,
        warmup: int | None = None,
        dtype: str = "float32",
        select_by: SelectBy = "logloss",
        average: int = 0,
        fallback: bool = True,
        seed: int = 0,
    ) -> None:
        super().__init__(seed=seed)
        SelectionPolicy(by=select_by)  # refuse a bad value now
        if not isinstance(average, int) or average < 0:
            raise ConfigError(f"average={average!r}: the number of last evaluations to average, 0 or 1 for none")
        self.select_by, self.average, self.fallback = select_by, average, fallback
        self.dtype = choice(self.name, "dtype", dtype, ("float32", "bfloat16"))
        self.templates = single(self.name, "templates", templates, self.default_template)
        self.verbalizers = single(self.name, "verbalizers", verbalizers, None)
        self.preset, self.init, self.head = preset, parse_init(init).spec, head
        self.also = list(also or [])
        given = {"optimizer": optimizer, "lr": lr, "weight_decay": weight_decay, "batch_size": batch_size,
                 "steps": steps, "eval_every": eval_every, "patience": patience, "warmup": warmup}
        settings = TrainSettings(**merge_preset(self.name, self.presets, preset, given))  # validates
        vars(self).update(dataclasses.asdict(settings))  # each setting under its option name (config())
        self._step = 0

    @property
    def settings(self) -> TrainSettings:
        """The optimisation settings, resolved from the preset and the options given."""
        return TrainSettings(**{f.name: getattr(self, f.name) for f in dataclasses.fields(TrainSettings)})

    default_template: ClassVar[str] = "[V*8]{sentence} It was[P]"

    def expected_steps(self) -> int:
        return self.settings.steps

    # --- what a soft searcher implements -------------------------------------------------------
    @abstractmethod
    def parameterization(self, ctx: SearchContext, prompt: Prompt) -> Parameterization:
        """A fresh parameterization for ``prompt`` (seeded from ``self.seed``)."""

    def forward(self, ctx: SearchContext, batch: list, tensors: PromptTensors, part: int = 0) -> SoftBatch:
        """Scores of a training batch of task ``part`` (0: the searched task) under the current tensors."""
        task = self._parts[part]
        return soft_forward(ctx.evaluator.encoder, task.prompt, batch, task.task, tensors.soft,
                            deep=tensors.deep, head=tensors.head, demos=ctx.evaluator.context.demonstrations,
                            reuse_prefix=ctx.evaluator.reuse_prefix)

    # --- searcher protocol ---------------------------------------------------------------------
    def start(self, ctx: SearchContext) -> None:
        self._prepare(ctx)
        with torch.no_grad():
            tensors = self.param.materialise()
        self._best = (tensors.tensors(), self._dev_score(ctx, tensors), 0)
        plain = self.plain_prompt(ctx)
        self._plain_score = None if plain is None else self._dev_score(ctx, PromptTensors(), plain)

    def plain_prompt(self, ctx: SearchContext) -> Prompt | None:
        """The fallback: the template without ``[V]`` slots, deep prompt or head (None when off, with
        ``also`` tasks, or when a head stands in for the verbalizer)."""
        if not self.fallback or self.also or (self.head and ctx.task.kind == "classification"):
            return None
        template = parse_template(re.sub(r"\[V(?:\*\d+)?\]", "", self._prompt.template.source))
        return ctx.evaluator.validated(Prompt.build(template, self.verbalizer), ctx.task)

    def conclude(self, ctx: SearchContext) -> Decision:
        """The best trained prompt, or the plain template when that scored higher on the selection split."""
        prompt, score = self.best
        if self._plain_score is None:
            return Decision(prompt, score, None)
        plain, kept = self.plain_prompt(ctx), self._plain_score > score
        evidence = {"by": self.select_by, "examples": len(ctx.select), "trained": score,
                    "plain": {"prompt": plain.render(), "score": self._plain_score},
                    "chosen": "plain" if kept else "trained"}
        return Decision(plain, self._plain_score, evidence) if kept else Decision(prompt, score, evidence)

    def step(self, ctx: SearchContext) -> Step | None:
        s = self.settings
        if self._step >= s.steps or (s.patience and self._stale >= s.patience):
            return None
        batch = self._next_batch(ctx)
        for group in self._optim.param_groups:
            group["lr"] = s.lr * min(1.0, (self._step + 1) / (s.warmup + 1))
        self._optim.zero_grad(set_to_none=True)
        autocast = torch.autocast(ctx.model.device.type, dtype=torch.bfloat16) if self.dtype == "bfloat16" \
            else nullcontext()
        with autocast:
            loss = self._loss(ctx, batch, self.param.materialise())
        if not torch.isfinite(loss):
            raise AutopromptError(f"the training loss became {loss.item()} at step {self._step + 1}: lower the lr")
        loss.backward()
        self._optim.step()
        self._step += 1
        scores = {"train_loss": float(loss.item())}
        if self._step % s.eval_every == 0 or self._step == s.steps:
            with torch.no_grad():
                tensors = self.param.materialise()
            dev = scores["dev"] = self._dev_score(ctx, tensors)
            candidate = tensors.tensors()
            if self.average > 1:
                self._recent = [*self._recent, {k: v.clone() for k, v in candidate.items()}][-self.average :]
                if len(self._recent) > 1:
                    mean = {k: torch.stack([r[k] for r in self._recent]).mean(0) for k in candidate}
                    averaged = scores["dev_average"] = self._dev_score(ctx, PromptTensors(**mean))
                    if averaged > dev:
                        candidate, dev = mean, averaged
            if dev > self._best[1]:
                self._best, self._stale = (candidate, dev, self._step), 0
            else:
                self._stale += 1
        return Step(scores, note=f"epoch {self._epoch}")

    def _loss(self, ctx: SearchContext, batch: list[tuple[int, Example]], tensors: PromptTensors) -> torch.Tensor:
        """Mean loss over a batch: one forward per task part it holds, weighted by its share."""
        groups: dict[int, list[Example]] = {}
        for part, example in batch:
            groups.setdefault(part, []).append(example)
        return sum(self.forward(ctx, rows, tensors, part).loss() * (len(rows) / len(batch))
                   for part, rows in sorted(groups.items()))

    @property
    def best(self) -> tuple[Prompt, float]:
        tensors, score, _ = self._best
        return dataclasses.replace(self._prompt, **tensors), score

    def state_dict(self) -> tuple[dict[str, Any], dict[str, torch.Tensor]]:
        opt = self._optim.state_dict()["state"]
        tensors = {f"param.{k}": v for k, v in self.param.state_dict().items()}
        tensors |= {f"best.{k}": v for k, v in self._best[0].items()}
        tensors |= {f"recent.{i}.{k}": v for i, r in enumerate(self._recent) for k, v in r.items()}
        scalars: dict[str, Any] = {}
        for index, slots in opt.items():
            for key, value in slots.items():
                if isinstance(value, torch.Tensor):
                    tensors[f"opt.{index}.{key}"] = value
                else:
                    scalars[f"{index}.{key}"] = value
        state = {"step": self._step, "epoch": self._epoch, "cursor": self._cursor, "stale": self._stale,
                 "best_score": self._best[1], "best_step": self._best[2], "plain_score": self._plain_score,
                 "opt_scalars": scalars}
        return state, tensors

    def load_state_dict(self, state: dict[str, Any], tensors: dict[str, torch.Tensor], ctx: SearchContext) -> None:
        self._prepare(ctx)
        self.param.load_state_dict({k[6:]: v for k, v in tensors.items() if k.startswith("param.")})
        opt: dict[int, dict[str, Any]] = {}
        for key, value in tensors.items():
            if key.startswith("opt."):
                _, index, slot = key.split(".", 2)
                opt.setdefault(int(index), {})[slot] = value
        for key, value in state["opt_scalars"].items():
            index, slot = key.split(".", 1)
            opt.setdefault(int(index), {})[slot] = value
        self._optim.load_state_dict({"state": opt, "param_groups": self._optim.state_dict()["param_groups"]})
        best = {k[5:]: v for k, v in tensors.items() if k.startswith("best.")}
        self._best = (best, float(state["best_score"]), int(state["best_step"]))
        self._step, self._epoch, self._cursor = int(state["step"]), int(state["epoch"]), int(state["cursor"])
        self._stale, self._plain_score = int(state["stale"]), state.get("plain_score")
        recent: dict[int, dict[str, torch.Tensor]] = {}
        for key, value in tensors.items():
            if key.startswith("recent."):
                _, index, name = key.split(".", 2)
                recent.setdefault(int(index), {})[name] = value
        self._recent = [recent[i] for i in sorted(recent)]

    # --- helpers -------------------------------------------------------------------------------
    def _prepare(self, ctx: SearchContext) -> None:
        """Parse and check the prompt, build the parameterization and optimizer; reset the position."""
        template = parse_template(self.template)
        self._check_template(template, ctx)
        prompt = Prompt.build(template, self.verbalizer)
        hidden, labels = ctx.model.hidden_size, ctx.task.labels
        if template.n_soft:  # validation wants tensors of the right shape; training supplies its own
            prompt = dataclasses.replace(prompt, soft=torch.zeros(template.n_soft, hidden))
        if self.head:
            prompt = dataclasses.replace(prompt, head=torch.zeros(len(labels), hidden + 1), head_labels=labels)
        self._prompt = ctx.evaluator.validated(prompt, ctx.task)  # with the Evaluator's demonstrations
        self._parts = self._load_parts(ctx)
        param = self.parameterization(ctx, self._prompt)
        self.param = (WithHead(param, len(labels), hidden) if self.head else param).to(ctx.model.device)
        params = [p for p in self.param.parameters() if p.requires_grad]
        s = self.settings
        if s.optimizer == "adafactor":
            self._optim = torch.optim.Adafactor(params, lr=s.lr, weight_decay=s.weight_decay)
        else:
            self._optim = torch.optim.AdamW(params, lr=s.lr, weight_decay=s.weight_decay)
        self._step, self._epoch, self._cursor, self._stale = 0, 0, 0, 0
        self._recent: list[dict[str, torch.Tensor]] = []  # tensors of the last ``average`` evaluations

    def _check_template(self, template, ctx: SearchContext) -> None:
        """Subclasses refuse templates they cannot train (e.g. no ``[V]`` slots)."""
        if template.n_triggers:
            raise TemplateError(
                f"template {self.template!r} has [T] slots, which a soft-prompt searcher cannot fill: "
                "use [V*n] slots, or run --searcher autoprompt for discrete triggers"
            )

    def _next_batch(self, ctx: SearchContext) -> list[tuple[int, Example]]:
        """The next ``batch_size`` (task part, example) pairs of the seeded order over the training
        examples of every task part (see :func:`batch_indices`): batches mix the tasks."""
        pool = [(i, x) for i, part in enumerate(self._parts) for x in part.train]
        rows, self._epoch, self._cursor = batch_indices(len(pool), self.settings.batch_size, self.seed,
                                                        self._epoch, self._cursor)
        return [pool[i] for i in rows]

    def _dev_score(self, ctx: SearchContext, tensors: PromptTensors, prompt: Prompt | None = None) -> float:
        """Selection score averaged over the task parts (``prompt``: that prompt, searched task only)."""
        scores = []
        for part in self._parts[:1] if prompt is not None else self._parts:
            metrics = ctx.evaluator.evaluate(prompt or tensors.apply(part.prompt), part.select, part.task)
            nan = math.isnan(metrics["gold_logprob"])
            scores.append(-math.inf if nan else ctx.score(metrics) if part.task is ctx.task
                          else selection_score(metrics, part.task.kind, self.select_by))
        return float(np.mean(scores))

    def _load_parts(self, ctx: SearchContext) -> list[TaskPart]:
        """The searched task, then each ``also`` task with its own template and verbalizer."""
        train = one_per_reference(ctx.train) if ctx.task.kind == "generation" else ctx.train
        parts = [TaskPart(ctx.task, self._prompt, train, ctx.select)]
        for spec in self.also:
            if not isinstance(spec, Mapping) or not {"data", "template"} <= set(spec) or self.head:
                raise AutopromptError(
                    f"also={spec!r}: each extra task is {{'data': folder, 'template': ..., 'verbalizer': {{...}}}} "
                    "(multi-task training shares the [V] vectors, not a linear head: drop head=true)"
                )
            task = load_task(spec["data"])
            template = parse_template(spec["template"])
            if template.n_soft != self._prompt.template.n_soft:
                raise TemplateError(
                    f"template {spec['template']!r} has {template.n_soft} [V] slots but {self.template!r} has "
                    f"{self._prompt.template.n_soft}: every task of a multi-task prompt uses the same number"
                )
            prompt = Prompt.build(template, spec.get("verbalizer"), soft=self._prompt.soft)
            prompt = ctx.evaluator.validated(prompt, task)
            select = task.split("dev" if task.has_split("dev") else "train")
            parts.append(TaskPart(task, prompt, task.split("train") if task.has_split("train") else select, select))
        return parts


def batch_indices(n: int, batch_size: int, seed: int, epoch: int, cursor: int) -> tuple[list[int], int, int]:
    """The batch at position ``(epoch, cursor)`` of the seeded order over ``n`` examples, and the
    position after it. Each epoch is a fresh permutation drawn from ``(seed, epoch)``; a batch that
    reaches the end of an epoch continues into the next one."""
    rows: list[int] = []
    while len(rows) < min(batch_size, n):
        order = np.random.default_rng([seed, epoch]).permutation(n)
        take = order[cursor : cursor + batch_size - len(rows)]
        rows += [int(i) for i in take]
        cursor += len(take)
        if cursor >= n:
            epoch, cursor = epoch + 1, 0
    return rows, epoch, cursor
