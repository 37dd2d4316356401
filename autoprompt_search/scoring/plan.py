"""The row layout of a scoring run: which rows and queries score a set of (prompt, example) pairs,
and how the answers fold back into :class:`ScoreTable` s. Shared by the Evaluator and the
differentiable training forward (:mod:`soft_forward`), so training optimises what is reported.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch

from ..data.tasks import Example, Task
from ..prompts.prompt import Prompt
from .encoding import Encoded, PromptEncoder
from .reference_scoring import reference_ids, reference_likelihood
from .rows import Queries, Row
from .score_table import ScoreTable

#: (prompt, example, task) → the demonstrations before that example (:meth:`InContext.demonstrations`).
DemoSource = Callable[[Prompt, Example, Task], Sequence[Example]]


class Plan:
    """Rows and queries for a set of pairs, and how to fold query answers back into scores.

    Causal LM: a single-token word is read at the last position of a row holding the context; a
    multi-token word gets its own row (context + its tokens but the last) and all its tokens are read
    there, so a generation example (every reference is several tokens) needs no context-only row. Masked LM:
    one row per distinct word length, with that many mask tokens at the answer slot. ``demos`` gives
    the in-context demonstrations that go before each (prompt, example) pair.
    """

    def __init__(self, encoder: PromptEncoder, is_causal: bool, mask_id: int | None,
                 demos: DemoSource | None = None) -> None:
        self.encoder, self.is_causal, self.mask_id, self.demos = encoder, is_causal, mask_id, demos
        self.rows: list[Row] = []
        self.groups: list[int] = []  # (job, example) of each row: rows of one example may share a prefix
        self.prompt_groups: list[int] = []  # (job, prompt) of each row: one prompt's rows may share its text
        self.queries = Queries([], [], [])
        self.words: list[list[list[list[int]]]] = []  # pair → label → word → query indices
        self.jobs: list[tuple[int, Sequence[Prompt], Sequence[Example], Task]] = []  # first pair, prompts, ...
        self._groups_used = 0
        self._prompts_used = 0
        self._fact_queries: list[tuple[int, int]] = []  # query index ranges of fact jobs

    def add_job(self, first_prompt: int, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task) -> None:
        """Add every (prompt, example) pair; prompt ``c`` is table ``first_prompt + c`` for soft/deep lookups."""
        self.jobs.append((len(self.words), prompts, examples, task))
        first_query = len(self.queries.row)
        for c, prompt in enumerate(prompts):
            for e, example in enumerate(examples):
                self._add(first_prompt + c, (self._groups_used + e, self._prompts_used + c), prompt, example, task)
        self._groups_used += len(examples)
        self._prompts_used += len(prompts)
        if task.kind == "fact":
            self._fact_queries.append((first_query, len(self.queries.row)))

    def ranked(self) -> np.ndarray:
        """(Q,) bool: the queries that need a rank (those of fact jobs)."""
        mask = np.zeros(len(self.queries.row), dtype=bool)
        for start, stop in self._fact_queries:
            mask[start:stop] = True
        return mask

    def _add(self, table: int, group: tuple[int, int], prompt: Prompt, example: Example, task: Task) -> None:
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
        self.groups.append(self._group[0])
        self.prompt_groups.append(self._group[1])
        return len(self.rows) - 1

    def _causal(self, c: int, enc: Encoded, targets: list[list[tuple[int, ...]]]) -> list[list[list[int]]]:
        last = len(enc.before) - 1
        soft = list(enc.soft_before)
        base: int | None = None  # the context alone, made only when a single-token word needs it
        out = []
        for words in targets:
            per_word = []
            for ids in words:
                if len(ids) > 1:  # context + the word's tokens but the last: every token is read on this row
                    row = self._row(enc.before + ids[:-1], c, soft)
                else:
                    base = self._row(enc.before, c, soft) if base is None else base
                    row = base
                per_word.append([self.queries.add(row, last + j, t) for j, t in enumerate(ids)])
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
                    scores[c, e] = head_log_probs(prompts[c].head, answers.hidden[labels[0][0][0]]).numpy()
                    continue
                reduce = np.mean if prompts[c].verbalizer.reduction == "mean" else np.sum
                for li, words in enumerate(labels):
                    scores[c, e, li] = np.logaddexp.reduce([reduce(lp[q]) for q in words])
            gold = np.array([label_index.get(str(x.label), -1) for x in examples], dtype=int)
            return ScoreTable("classification", task.labels, gold, scores=scores)
        if task.kind == "generation":
            logprob, tokens = reference_likelihood(lp, words, (n_c, n_e))
            return ScoreTable("generation", (), np.zeros(n_e, dtype=int), gold_logprob=logprob, gold_tokens=tokens)
        first = np.array([w[0][0][0] for w in words])
        whole = np.array([lp[w[0][0]].sum() for w in words])
        greedy = np.array([bool(np.all(answers.rank[w[0][0]] == 1)) for w in words])
        shape = (n_c, n_e)
        return ScoreTable(
            "fact", (), np.zeros(n_e, dtype=int), rank=answers.rank[first].reshape(shape),
            gold_logprob=whole.reshape(shape), greedy=greedy.reshape(shape), fact_match=fact_match,
        )


def head_log_probs(head: torch.Tensor, hidden: torch.Tensor) -> torch.Tensor:
    """Class log-probs ``(..., L)`` of a linear head ``(L, H + 1)`` on hidden states ``(..., H)``."""
    return torch.log_softmax(hidden.float() @ head[:, :-1].float().T + head[:, -1].float(), dim=-1)
