"""The one Evaluator every searcher shares: many (prompt, example) pairs → label-score tables.

All candidates × examples of a call go through :func:`batching.run_queries` together, never one
candidate at a time — and :meth:`Evaluator.score_many` puts several tasks, each with its own prompt
(discrete, soft, deep or plain), into the same batches: one frozen model serving many tasks.
Scores are true log-probabilities over the full vocabulary (log-softmax at the answer positions
only, which costs <1 % of a forward pass), so multi-token label words, AutoPrompt's loss and P@1
all read off the same numbers.

Two options change what is scored, for every searcher and every job at once (a prompt's own setting
wins): ``calibration="contextual"`` divides out the label-word prior measured on content-free inputs
(:mod:`calibration`; their rows join the same batched passes as one more job per prompt, the prior
is cached per prompt), and ``demos=Demonstrations(k=1)`` puts in-context demonstrations from the
task's train split before each query (:mod:`demonstrations`). A prompt goes through three steps
before it is scored, each a method: :meth:`Evaluator.with_defaults` (the Evaluator's calibration and
demonstrations where the prompt has none), :meth:`Evaluator.validated` (that, checked against the
task) and :meth:`Evaluator.resolved` (that, with the calibration prior fitted: what a search saves).
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import NamedTuple

import torch

from ..data.tasks import Example, Task
from ..errors import DataError, TemplateError
from ..models.language_model import LanguageModel
from ..prompts.calibration import Calibration
from ..prompts.demonstrations import Demonstrations
from ..prompts.ensemble import EnsemblePrompt
from ..prompts.prompt import Prompt
from . import text_metrics
from .batching import run_queries
from .encoding import PromptEncoder, check_examples
from .ensembles import expand
from .generation import Decoding, decode
from .in_context import InContext, Priors
from .plan import Plan
from .reference_scoring import reference_texts
from .rows import Normalize
from .score_table import FactMatch, ScoreTable


class Job(NamedTuple):
    """One task's share of a mixed batch: its prompt (or candidate prompts), examples and task."""

    prompts: Prompt | Sequence[Prompt]
    examples: Sequence[Example]
    task: Task


@dataclass
class Evaluator:
    """Batched scoring of prompts on examples with one model.

    ``dtype`` selects the scoring precision (fp32 is the reference; bf16 pays off only where the
    hardware has bf16 matrix units — measure it, see ``benchmarks/perf_evaluator.py``).
    ``candidate_ids`` restricts fact ranking to a vocabulary (e.g. LAMA's common vocab); by default
    the gold object competes with the whole vocabulary. ``reuse_prefix`` (causal LMs) runs a prefix
    shared by several candidates on one example, or by one prompt on many examples, once.
    ``normalize="labels"`` scores label words by a softmax over the label words only (cheaper;
    classification only).
    ``chunk_pairs`` bounds memory: pairs are planned and scored that many at a time.
    ``calibration`` ("contextual" or a :class:`Calibration`) and ``demos`` (a
    :class:`Demonstrations`) apply to every prompt that does not carry its own. ``decoding`` says how
    generation tasks are decoded (:meth:`generate`; greedy by default).
    """

    model: LanguageModel
    dtype: str = "float32"
    batch_tokens: int | None = None
    candidate_ids: Sequence[int] | None = None
    fact_match: FactMatch = "first-token"
    reuse_prefix: bool = True
    normalize: Normalize = "vocab"
    chunk_pairs: int = 16384
    progress: bool = False
    calibration: Calibration | str | None = None
    demos: Demonstrations | None = None
    decoding: Decoding = field(default_factory=Decoding)
    forward_rows: int = field(default=0, init=False)
    forward_tokens: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lm = self.model.with_dtype(self.dtype)
        self.encoder = PromptEncoder(self.model)
        self.calibration = Calibration.coerce(self.calibration)
        self.context = InContext(self.model)  # cached priors and demonstration selectors

    def with_defaults(self, prompt: Prompt) -> Prompt:
        """Step 1: the prompt with this Evaluator's calibration and demonstrations where it has none of its own."""
        return replace(prompt, calibration=prompt.calibration or self.calibration, demos=prompt.demos or self.demos)

    def resolved(self, prompt: Prompt, task: Task) -> Prompt:
        """Step 3: the prompt exactly as it scores here on ``task`` — validated, and with its calibration
        prior p_cf fitted and recorded: what a search saves, so it scores the same later. An ensemble's
        members are resolved one by one."""
        if isinstance(prompt, EnsemblePrompt):
            return prompt.with_members([self.resolved(member, task) for member in prompt.members])
        prompt = self.validated(prompt, task)
        if prompt.calibration is None or prompt.calibration.fitted:
            return prompt
        table = self._score_chunk([Job([prompt], (), task)], [(0, 0, 0)])[0]  # content-free rows only
        return replace(prompt, calibration=prompt.calibration.with_prior(task.labels, table.p_cf[0]))

    def evaluate(self, prompt: Prompt, examples: Sequence[Example], task: Task, *,
                 decode: bool = False) -> dict[str, float]:
        """Metrics of one prompt on ``examples``; with ``decode``, a generation task's are also BLEU and
        ROUGE-L of the decoded texts (:meth:`generate`) against all references."""
        out = self.score([prompt], examples, task).metrics(0)
        if decode and task.kind == "generation":
            out |= self.decoded_metrics(prompt, examples, task)
        return out

    def decoded_metrics(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> dict[str, float]:
        """BLEU and ROUGE-L of the texts ``prompt`` decodes on a generation task's ``examples``."""
        return text_metrics.generation_metrics(self.generate(prompt, examples, task),
                                               [reference_texts(x) for x in examples])

    def generate(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> list[str]:
        """The text the model writes at ``[P]`` for each example (batched ``generate``, see :mod:`generation`)."""
        prompt = self.validated(prompt, task)
        check_examples(examples, task)
        return decode(self._lm, self.encoder, prompt, examples, task, self.context.demonstrations, self.decoding,
                      progress=self.progress)

    def score(self, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> ScoreTable:
        """Score every prompt on every example in shared batched passes."""
        return self.score_many([Job(prompts, examples, task)])[0]

    def evaluate_many(self, jobs: Sequence[Job | tuple]) -> list[dict[str, float]]:
        """Metrics of each job's prompt on its examples, all jobs scored in the same batches."""
        return [table.metrics(0) for table in self.score_many(jobs)]

    def score_many(self, jobs: Sequence[Job | tuple]) -> list[ScoreTable]:
        """One ScoreTable per job; the rows of every job are sorted and packed together.

        Jobs may mix tasks and prompt kinds; each result equals scoring that job alone (up to
        float rounding from different padding). With ``normalize="labels"``, fact and
        classification jobs run in separate passes (fact ranks need the full-vocabulary softmax).
        An :class:`EnsemblePrompt` is scored as its members, in the same run, and its row combined.
        """
        jobs = [Job(*job) for job in jobs]
        if any(isinstance(p, EnsemblePrompt) for job in jobs
               for p in ([job.prompts] if isinstance(job.prompts, Prompt | EnsemblePrompt) else job.prompts)):
            flat, collapse = expand([(job.prompts, job.task) for job in jobs])
            return collapse(self.score_many([Job(prompts, job.examples, job.task)
                                             for prompts, job in zip(flat, jobs, strict=True)]))
        checked = [self._check_job(job) for job in jobs]
        closed = [job.task.kind == "classification" for job in checked]  # the others need the full vocabulary
        kinds = [[j for j, is_closed in enumerate(closed) if is_closed == c] for c in (True, False)]
        passes = [list(range(len(checked)))] if self.normalize == "vocab" else [k for k in kinds if k]
        parts: list[list[ScoreTable]] = [[] for _ in checked]
        for members in passes:
            for chunk in _chunks(checked, members, self.chunk_pairs):
                for (j, _, _), table in zip(chunk, self._score_chunk(checked, chunk), strict=True):
                    parts[j].append(table)
        return [p[0] if len(p) == 1 else ScoreTable.concat(p) for p in parts]

    def validated(self, prompt: Prompt, task: Task) -> Prompt:
        """Step 2: the prompt with defaults (:meth:`with_defaults`), checked against ``task``."""
        prompt = self.encoder.validate(self.with_defaults(prompt), task)
        if task.kind == "generation" and not self.model.is_causal:
            raise TemplateError(f"task {task.name!r} is a generation task, but {self.model.name!r} is a masked LM that "
                                "cannot write text: use a causal LM (e.g. the default smollm2-135m)")
        if task.kind != "classification" and prompt.calibration:
            raise TemplateError(
                f"contextual calibration rescales the probabilities of a closed set of label words, but task "
                f"{task.name!r} is a fact task whose answer can be any word: score it without calibration"
            )
        return prompt

    def _check_job(self, job: Job) -> Job:
        prompts = [job.prompts] if isinstance(job.prompts, Prompt) else list(job.prompts)
        if not job.examples:
            raise DataError(f"no examples to score for task {job.task.name!r}: give a non-empty split")
        if not prompts:
            raise DataError(f"no prompts to score for task {job.task.name!r}: give at least one")
        check_examples(job.examples, job.task)
        return Job([self.validated(p, job.task) for p in prompts], job.examples, job.task)

    def _score_chunk(self, jobs: Sequence[Job], chunk: Sequence[tuple[int, int, int]]) -> list[ScoreTable]:
        """Score the slices ``(job, start, stop)`` of ``chunk`` in one :func:`run_queries` call; the
        content-free inputs of calibrated prompts whose prior is not known yet join it as extra jobs."""
        plan = Plan(self.encoder, self.model.is_causal, self.model.mask_id, self.context.demonstrations)
        prompts: list[Prompt] = []
        for j, start, stop in chunk:
            plan.add_job(len(prompts), jobs[j].prompts, jobs[j].examples[start:stop], jobs[j].task)
            prompts.extend(jobs[j].prompts)
        unfitted = self.context.unfitted((p, jobs[j].task) for j, _, _ in chunk for p in jobs[j].prompts)
        for prompt, task in unfitted.values():
            plan.add_job(len(prompts), [prompt], self.context.content_free(prompt), task)
            prompts.append(prompt)
        cand = None if self.candidate_ids is None else torch.as_tensor(list(self.candidate_ids), device=self._lm.device)
        answers = run_queries(
            self._lm, plan.rows, plan.queries, [p.soft for p in prompts], deep_tables=[p.deep for p in prompts],
            groupings=(plan.groups, plan.prompt_groups) if self.reuse_prefix else (),
            want_rank=plan.ranked(),
            want_hidden=any(p.head is not None for p in prompts),
            normalize=self.normalize, candidate_ids=cand, batch_tokens=self.batch_tokens, progress=self.progress,
        )
        self.forward_rows += len(plan.rows)
        self.forward_tokens += sum(len(r.ids) for r in plan.rows)
        tables = plan.tables(answers, self.fact_match)
        scored, free = tables[: len(chunk)], tables[len(chunk) :]
        fresh = self.context.fit(unfitted, [table.scores[0] for table in free])
        return [self._calibrated(table, jobs[j], fresh) for (j, _, _), table in zip(chunk, scored, strict=True)]

    def _calibrated(self, table: ScoreTable, job: Job, fresh: Priors) -> ScoreTable:
        """The job's table with its calibrated prompts' scores calibrated and their priors in ``p_cf``."""
        if table.kind != "classification":
            return table
        scores, p_cf = self.context.calibrated(table.scores, job.prompts, job.task, fresh)
        return replace(table, scores=scores, p_cf=p_cf)

def _chunks(jobs: Sequence[Job], members: Sequence[int], pairs: int) -> Iterator[list[tuple[int, int, int]]]:
    """Example slices ``(job, start, stop)`` of the ``members`` jobs, grouped so that each group
    holds at most ``pairs`` (prompt, example) pairs (or a single slice of one example)."""
    chunk: list[tuple[int, int, int]] = []
    size = 0
    for j in members:
        n_prompts = len(jobs[j].prompts)
        step = max(1, pairs // n_prompts)
        for start in range(0, len(jobs[j].examples), step):
            stop = min(start + step, len(jobs[j].examples))
            if chunk and size + (stop - start) * n_prompts > pairs:
                yield chunk
                chunk, size = [], 0
            chunk.append((j, start, stop))
            size += (stop - start) * n_prompts
    if chunk:
        yield chunk
