"""The one Evaluator every searcher shares: many (prompt, example) pairs → label-score tables.

All candidates × examples of a call go through :func:`batching.run_queries` together, never one
candidate at a time. Scores are true log-probabilities over the full vocabulary (log-softmax at
the answer positions only, which costs <1 % of a forward pass), so multi-token label words,
AutoPrompt's loss and P@1 all read off the same numbers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np
import torch

from . import metrics
from .batching import Normalize, Queries, Row, run_queries
from .encoding import Encoded, PromptEncoder, check_examples
from .errors import BudgetError, DataError
from .models.language_model import LanguageModel
from .prompt import Prompt
from .tasks import Example, Task

FactMatch = Literal["first-token", "greedy"]


@dataclass
class ScoreTable:
    """Scores of C prompts on E examples.

    Classification: ``scores`` (C, E, L) class log-probs, ``gold`` (E,) label indices (-1 if none).
    Fact tasks: ``rank`` (C, E) rank of the gold object's first token, ``gold_logprob`` (C, E) the
    whole object's log-prob, ``greedy`` (C, E) whether greedy decoding yields the whole object.
    """

    kind: str
    labels: tuple[str, ...]
    gold: np.ndarray
    scores: np.ndarray | None = None
    rank: np.ndarray | None = None
    gold_logprob: np.ndarray | None = None
    greedy: np.ndarray | None = None
    fact_match: FactMatch = "first-token"

    def metrics(self, candidate: int = 0) -> dict[str, float]:
        """Metrics of one prompt (row ``candidate``) over the labelled examples."""
        if self.kind == "classification":
            keep = self.gold >= 0
            return metrics.classification_metrics(self.scores[candidate][keep], self.gold[keep])
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
                          fact_match=first.fact_match)

    def predictions(self, candidate: int = 0) -> list[str]:
        """Predicted labels of one prompt (classification only)."""
        return [self.labels[i] for i in self.scores[candidate].argmax(axis=1)]


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
    forward_rows: int = field(default=0, init=False)
    forward_tokens: int = field(default=0, init=False)

    def __post_init__(self) -> None:
        self._lm = self.model.with_dtype(self.dtype)
        self.encoder = PromptEncoder(self.model)

    def evaluate(self, prompt: Prompt, examples: Sequence[Example], task: Task) -> dict[str, float]:
        """Metrics of one prompt on ``examples``."""
        return self.score([prompt], examples, task).metrics(0)

    def score(self, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> ScoreTable:
        """Score every prompt on every example in shared batched passes."""
        if not examples:
            raise DataError(f"no examples to score for task {task.name!r}: give a non-empty split")
        check_examples(examples, task)
        prompts = [self.encoder.validate(p, task) for p in prompts]
        step = max(1, self.chunk_pairs // len(prompts))
        parts = [self._score_chunk(prompts, examples[i : i + step], task) for i in range(0, len(examples), step)]
        return parts[0] if len(parts) == 1 else ScoreTable.concat(parts)

    def _score_chunk(self, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> ScoreTable:
        plan = _Plan(self.encoder, self.model.is_causal, self.model.mask_id)
        for c, prompt in enumerate(prompts):
            for e, example in enumerate(examples):
                plan.add(c, e, prompt, example, task)
        cand = None if self.candidate_ids is None else torch.as_tensor(list(self.candidate_ids), device=self._lm.device)
        answers = run_queries(
            self._lm, plan.rows, plan.queries, [p.soft for p in prompts],
            groups=plan.groups if self.reuse_prefix else None, want_rank=task.kind == "fact",
            normalize=self.normalize, candidate_ids=cand, batch_tokens=self.batch_tokens, progress=self.progress,
        )
        self.forward_rows += len(plan.rows)
        self.forward_tokens += sum(len(r.ids) for r in plan.rows)
        return plan.table(answers, prompts, examples, task, self.fact_match)

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
    one row per distinct word length, with that many mask tokens at the answer slot.
    """

    def __init__(self, encoder: PromptEncoder, is_causal: bool, mask_id: int | None) -> None:
        self.encoder, self.is_causal, self.mask_id = encoder, is_causal, mask_id
        self.rows: list[Row] = []
        self.groups: list[int] = []  # example index of each row: rows of one example may share a prefix
        self.queries = Queries([], [], [])
        self.words: list[list[list[list[int]]]] = []  # pair → label → word → query indices

    def add(self, candidate: int, example_index: int, prompt: Prompt, example: Example, task: Task) -> None:
        encoded = self.encoder.encode(prompt, example)
        if task.kind == "classification":
            targets = self.encoder.label_word_ids(prompt, encoded)
        else:
            targets = [[self.encoder.word_ids(str(example.label), encoded.text_before)]]
        self._example = example_index
        self.words.append(self._causal(candidate, encoded, targets) if self.is_causal
                          else self._masked(candidate, encoded, targets))

    def _row(self, ids: tuple[int, ...], candidate: int, soft: list[tuple[int, int]]) -> int:
        self.rows.append(Row(ids, tuple((pos, candidate, k) for pos, k in soft)))
        self.groups.append(self._example)
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

    def table(self, answers, prompts, examples, task, fact_match) -> ScoreTable:
        n_c, n_e = len(prompts), len(examples)
        lp = answers.logprob
        label_index = {label: i for i, label in enumerate(task.labels)}
        if task.kind == "classification":
            scores = np.empty((n_c, n_e, len(task.labels)))
            for pair, labels in enumerate(self.words):
                c, e = divmod(pair, n_e)
                reduce = np.mean if prompts[c].verbalizer.reduction == "mean" else np.sum
                for li, words in enumerate(labels):
                    scores[c, e, li] = np.logaddexp.reduce([reduce(lp[q]) for q in words])
            gold = np.array([label_index.get(str(x.label), -1) for x in examples])
            return ScoreTable("classification", task.labels, gold, scores=scores)
        first = np.array([w[0][0][0] for w in self.words])
        whole = np.array([lp[w[0][0]].sum() for w in self.words])
        greedy = np.array([bool(np.all(answers.rank[w[0][0]] == 1)) for w in self.words])
        shape = (n_c, n_e)
        return ScoreTable(
            "fact", (), np.zeros(n_e, dtype=int), rank=answers.rank[first].reshape(shape),
            gold_logprob=whole.reshape(shape), greedy=greedy.reshape(shape), fact_match=fact_match,
        )
