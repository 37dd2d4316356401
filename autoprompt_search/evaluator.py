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
task's train split before each query (:mod:`demonstrations`). :meth:`Evaluator.fitted` returns a
prompt carrying both, with the fitted prior, which is what a search saves.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal, NamedTuple

import numpy as np
import torch

from . import metrics, text_metrics
from .batching import Normalize, Queries, Row, run_queries
from .calibration import Calibration
from .demonstrations import Demonstrations
from .encoding import Encoded, PromptEncoder, check_examples
from .generation import Decoding, decode
from .errors import BudgetError, DataError, TemplateError
from .in_context import InContext, Priors
from .models.language_model import LanguageModel
from .prompt import Prompt
from .reference_scoring import reference_ids, reference_likelihood, reference_texts
from .tasks import Example, Task

FactMatch = Literal["first-token", "greedy"]
#: (prompt, example, task) → the demonstrations before that example (:meth:`InContext.demonstrations`).
DemoSource = Callable[[Prompt, Example, Task], Sequence[Example]]


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


class Job(NamedTuple):
    """One task's share of a mixed batch: its prompt (or candidate prompts), examples and task."""

    prompts: Prompt | Sequence[Prompt]
    examples: Sequence[Example]
    task: Task


@dataclass
class Ranking:
    """Result of :meth:`Evaluator.rank`: survivors best-first, their final scores, every rung."""

    order: list[int]
    scores: list[float]
    rungs: list[dict]


@dataclass
class Evaluator:
    """Batched scoring of prompts on examples with one model.

    ``dtype`` selects the scoring precision (fp32 is the reference; bf16 pays off only where the
    hardware has bf16 matrix units — measure it, see ``benchmarks/perf_evaluator.py``).
    ``candidate_ids`` restricts fact ranking to a vocabulary (e.g. LAMA's common vocab); by default
    the gold object competes with the whole vocabulary. ``reuse_prefix`` (causal LMs) runs a prefix
    shared by several candidates on the same example once. ``normalize="labels"`` scores label
    words by a softmax over the label words only (cheaper; classification only).
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

    def settle(self, prompt: Prompt) -> Prompt:
        """The prompt with this Evaluator's calibration and demonstrations where it has none of its own."""
        return replace(prompt, calibration=prompt.calibration or self.calibration, demos=prompt.demos or self.demos)

    def fitted(self, prompt: Prompt, task: Task) -> Prompt:
        """The prompt exactly as it scores here on ``task``: settled, fitted to the task's labels, and
        with its calibration prior p_cf recorded — what a search saves, so it scores the same later."""
        prompt = self.prepare(prompt, task)
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
            out |= text_metrics.generation_metrics(self.generate(prompt, examples, task),
                                                   [reference_texts(x) for x in examples])
        return out

    def generate(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> list[str]:
        """The text the model writes at ``[P]`` for each example (batched ``generate``, see :mod:`generation`)."""
        prompt = self.prepare(prompt, task)
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
        """
        checked = [self._check_job(Job(*job)) for job in jobs]
        kinds = [[j for j, job in enumerate(checked) if (job.task.kind == "classification") == c] for c in (True, False)]
        passes = [list(range(len(checked)))] if self.normalize == "vocab" else [k for k in kinds if k]
        parts: list[list[ScoreTable]] = [[] for _ in checked]
        for members in passes:
            for chunk in _chunks(checked, members, self.chunk_pairs):
                for (j, _, _), table in zip(chunk, self._score_chunk(checked, chunk), strict=True):
                    parts[j].append(table)
        return [p[0] if len(p) == 1 else ScoreTable.concat(p) for p in parts]

    def prepare(self, prompt: Prompt, task: Task) -> Prompt:
        """The prompt as it is scored here on ``task``: settled (see :meth:`settle`) and validated."""
        prompt = self.encoder.validate(self.settle(prompt), task)
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
        return Job([self.prepare(p, job.task) for p in prompts], job.examples, job.task)

    def _score_chunk(self, jobs: Sequence[Job], chunk: Sequence[tuple[int, int, int]]) -> list[ScoreTable]:
        """Score the slices ``(job, start, stop)`` of ``chunk`` in one :func:`run_queries` call; the
        content-free inputs of calibrated prompts whose prior is not known yet join it as extra jobs."""
        plan = _Plan(self.encoder, self.model.is_causal, self.model.mask_id, self.context.demonstrations)
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
            groups=plan.groups if self.reuse_prefix else None,
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

    def rank(
        self,
        prompts: Sequence[Prompt],
        examples: Sequence[Example],
        task: Task,
        *,
        keep: float = 0.5,
        rungs: int = 3,
    ) -> Ranking:
        """Successive halving: score all candidates on a slice, keep the top ``keep`` fraction,
        double the slice, repeat; the last rung uses every example.

        Most candidates are dropped after a few examples, so ranking C candidates costs far less
        than C full evaluations. Returns the survivors best-first and every rung's scores.
        """
        if not 0 < keep < 1 or rungs < 1:
            raise BudgetError(f"successive halving needs 0 < keep < 1 and rungs >= 1, got keep={keep}, rungs={rungs}: "
                              "e.g. keep=0.5, rungs=3")
        alive = list(range(len(prompts)))
        history: list[dict] = []
        for rung, n in enumerate(halving_sizes(len(examples), rungs)):
            table = self.score([prompts[i] for i in alive], examples[:n], task)
            scores = [metrics.selection_score(table.metrics(j), task.kind) for j in range(len(alive))]
            history.append({"rung": rung, "examples": n, "candidates": list(alive), "scores": scores})
            survivors = len(alive) if rung == rungs - 1 else max(1, int(np.ceil(len(alive) * keep)))
            alive = best_first(alive, scores)[:survivors]
        return Ranking(alive, history[-1]["scores"], history)


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
def halving_sizes(n_examples: int, rungs: int) -> list[int]:
    """Example counts of successive-halving rungs: the last uses all ``n_examples``, each earlier one half the next."""
    return [n_examples if r == rungs - 1 else max(1, n_examples >> (rungs - 1 - r)) for r in range(rungs)]


def best_first(candidates: Sequence[int], scores: Sequence[float]) -> list[int]:
    """``candidates`` sorted by ``scores`` (parallel), best first; ties go to the lower index."""
    order = sorted(range(len(candidates)), key=lambda j: (-scores[j], candidates[j]))
    return [candidates[j] for j in order]


class _Plan:
    """Rows and queries for a set of pairs, and how to fold query answers back into scores.

    Causal LM: one row holds the context; a word's first token is read at its last position, and a
    multi-token word gets one extra row (context + its tokens but the last) for the rest. Masked LM:
    one row per distinct word length, with that many mask tokens at the answer slot. ``demos`` gives
    the in-context demonstrations that go before each (prompt, example) pair.
    """

    def __init__(self, encoder: PromptEncoder, is_causal: bool, mask_id: int | None,
                 demos: DemoSource | None = None) -> None:
        self.encoder, self.is_causal, self.mask_id, self.demos = encoder, is_causal, mask_id, demos
        self.rows: list[Row] = []
        self.groups: list[int] = []  # (job, example) of each row: rows of one example may share a prefix
        self.queries = Queries([], [], [])
        self.words: list[list[list[list[int]]]] = []  # pair → label → word → query indices
        self.jobs: list[tuple[int, Sequence[Prompt], Sequence[Example], Task]] = []  # first pair, prompts, ...
        self._groups_used = 0
        self._fact_queries: list[tuple[int, int]] = []  # query index ranges of fact jobs

    def add_job(self, first_prompt: int, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> None:
        """Add every (prompt, example) pair; prompt ``c`` is table ``first_prompt + c`` for soft/deep lookups."""
        self.jobs.append((len(self.words), prompts, examples, task))
        first_query = len(self.queries.row)
        for c, prompt in enumerate(prompts):
            for e, example in enumerate(examples):
                self._add(first_prompt + c, self._groups_used + e, prompt, example, task)
        self._groups_used += len(examples)
        if task.kind == "fact":
            self._fact_queries.append((first_query, len(self.queries.row)))

    def ranked(self) -> np.ndarray:
        """(Q,) bool: the queries that need a rank (those of fact jobs)."""
        mask = np.zeros(len(self.queries.row), dtype=bool)
        for start, stop in self._fact_queries:
            mask[start:stop] = True
        return mask

    def _add(self, table: int, group: int, prompt: Prompt, example: Example, task: Task) -> None:
        demos = self.demos(prompt, example, task) if self.demos else ()
        encoded = self.encoder.encode(prompt, example, demos)
        if prompt.head is not None:  # one site, the answer slot, read by the head (any token will do)
            targets = [[(self.encoder.lm.pad_id,)]]
        elif task.kind == "classification":
            targets = self.encoder.label_word_ids(prompt, encoded)
        elif task.kind == "generation":  # every reference, as the multi-token "words" of one label
            targets = [reference_ids(self.encoder, example, encoded)]
        else:
            targets = [[self.encoder.word_ids(str(example.label), encoded.text_before)]]
        self._group, self._deep = group, table if prompt.deep is not None else None
        self.words.append(self._causal(table, encoded, targets) if self.is_causal
                          else self._masked(table, encoded, targets))

    def _row(self, ids: tuple[int, ...], candidate: int, soft: list[tuple[int, int]]) -> int:
        self.rows.append(Row(ids, tuple((pos, candidate, k) for pos, k in soft), self._deep))
        self.groups.append(self._group)
        return len(self.rows) - 1

    def _causal(self, c: int, enc: Encoded, targets: list[list[tuple[int, ...]]]) -> list[list[list[int]]]:
        base = self._row(enc.before, c, list(enc.soft_before))
        last = len(enc.before) - 1
        out = []
        for words in targets:
            per_word = []
            for ids in words:
                q = [self.queries.add(base, last, ids[0])]
                if len(ids) > 1:
                    ext = self._row(enc.before + ids[:-1], c, list(enc.soft_before))
                    q += [self.queries.add(ext, last + j, t) for j, t in enumerate(ids) if j]
                per_word.append(q)
            out.append(per_word)
        return out

    def _masked(self, c: int, enc: Encoded, targets: list[list[tuple[int, ...]]]) -> list[list[list[int]]]:
        row_of_length: dict[int, int] = {}
        start = len(enc.before)
        out = []
        for words in targets:
            per_word = []
            for ids in words:
                m = len(ids)
                if m not in row_of_length:
                    soft = list(enc.soft_before) + [(start + m + off, k) for off, k in enc.soft_after]
                    row_of_length[m] = self._row(enc.before + (self.mask_id,) * m + enc.after, c, soft)
                per_word.append([self.queries.add(row_of_length[m], start + j, t) for j, t in enumerate(ids)])
            out.append(per_word)
        return out

    def tables(self, answers, fact_match) -> list[ScoreTable]:
        """One table per job added, in order."""
        return [self._table(answers, start, prompts, examples, task, fact_match)
                for start, prompts, examples, task in self.jobs]

    def _table(self, answers, start, prompts, examples, task, fact_match) -> ScoreTable:
        n_c, n_e = len(prompts), len(examples)
        lp = answers.logprob
        label_index = {label: i for i, label in enumerate(task.labels)}
        words = self.words[start : start + n_c * n_e]
        if task.kind == "classification":
            scores = np.empty((n_c, n_e, len(task.labels)))
            for pair, labels in enumerate(words):
                c, e = divmod(pair, n_e)
                if prompts[c].head is not None:
                    scores[c, e] = _head_log_probs(prompts[c].head, answers.hidden[labels[0][0][0]]).numpy()
                    continue
                reduce = np.mean if prompts[c].verbalizer.reduction == "mean" else np.sum
                for li, words in enumerate(labels):
                    scores[c, e, li] = np.logaddexp.reduce([reduce(lp[q]) for q in words])
            gold = np.array([label_index.get(str(x.label), -1) for x in examples], dtype=int)
            return ScoreTable("classification", task.labels, gold, scores=scores)
        if task.kind == "generation":
            logprob, tokens = reference_likelihood(answers.logprob, words, (n_c, n_e))
            return ScoreTable("generation", (), np.zeros(n_e, dtype=int), gold_logprob=logprob, gold_tokens=tokens)
        first = np.array([w[0][0][0] for w in words])
        whole = np.array([lp[w[0][0]].sum() for w in words])
        greedy = np.array([bool(np.all(answers.rank[w[0][0]] == 1)) for w in words])
        shape = (n_c, n_e)
        return ScoreTable(
            "fact", (), np.zeros(n_e, dtype=int), rank=answers.rank[first].reshape(shape),
            gold_logprob=whole.reshape(shape), greedy=greedy.reshape(shape), fact_match=fact_match,
        )


def _head_log_probs(head: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Class log-probs ``(..., L)`` of a linear head ``(L, H + 1)`` on hidden states ``(..., H)``."""
    return torch.log_softmax(hidden.float() @ head[:, :-1].float().T + head[:, -1].float(), dim=-1)
