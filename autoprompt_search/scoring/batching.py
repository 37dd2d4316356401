"""Batched forward passes that answer "log-prob (and rank) of token t at position p of row r".

Rows are sorted by length and packed under a token budget (a batch's rows at least half as long as
its longest, so padding at most doubles the work), padded on the right (causal rows need no position
ids then, and masked rows are masked), run through the network without any output layer, and only
the hidden states at queried positions ("sites") go through the vocabulary head. Causal rows that
share a long prefix (the same input under many candidate triggers, or one prompt's instruction over
many inputs) are handed to :mod:`prefix_reuse`, which runs it once. Rows behind a deep prompt
(:mod:`deep_prompt`) carry its keys/values into every layer; they count its slots in the token
budget and share a prefix only with rows behind the same deep prompt. Out of
memory halves the batch and retries.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from ..models.language_model import LanguageModel
from . import deep_prompt
from .deep_prompt import deep_length
from .prefix_reuse import run_shared_prefixes
from .rows import (
    MAX_ROWS,
    Answers,
    Normalize,
    Queries,
    Row,
    Scoring,
    default_batch_tokens,
    is_oom,
    pad_rows,
    splice_soft,
)


def run_queries(
    lm: LanguageModel,
    rows: Sequence[Row],
    queries: Queries,
    soft_tables: Sequence[torch.Tensor | None] = (),
    *,
    deep_tables: Sequence[torch.Tensor | None] = (),
    groupings: Sequence[Sequence[int]] = (),
    want_rank: bool | np.ndarray = False,
    want_hidden: bool = False,
    normalize: Normalize = "vocab",
    candidate_ids: torch.Tensor | None = None,
    batch_tokens: int | None = None,
    progress: bool = False,
) -> Answers:
    """Answer every query with as few, as full forward passes as the token budget allows.

    ``groupings`` (causal LMs): for each way rows may share a prefix, a group id per row (e.g. the
    same example under different candidates, the same prompt on different examples); rows of a
    group are checked for a shared prefix, which is then computed once. ``deep_tables``
    holds the deep prompts ``(layers, 2, kv_heads, n, head_dim)`` that rows point to.
    ``want_rank`` may be a ``(Q,)`` bool mask: only those queries get ranks (a mixed run's fact
    queries), the rest keep ``inf``. ``want_hidden`` also returns each query site's hidden state
    (for a linear head).
    """
    n_q = len(queries.row)
    ranked = np.asarray(want_rank, dtype=bool) if isinstance(want_rank, np.ndarray) else None
    answers = Answers(np.zeros(n_q), np.full(n_q, np.inf) if np.any(want_rank) else None,
                      torch.zeros(n_q, lm.hidden_size) if want_hidden else None)
    if not rows:
        return answers
    scoring = Scoring(lm, queries, answers, normalize, candidate_ids, ranked)
    q_row = np.asarray(queries.row)
    by_row = np.argsort(q_row, kind="stable")
    starts = np.searchsorted(q_row[by_row], np.arange(len(rows) + 1))
    queries_of = [by_row[starts[r] : starts[r + 1]] for r in range(len(rows))]
    tables = [t.to(lm.device, lm.dtype) if t is not None else None for t in soft_tables]
    deep = [t.to(lm.device, lm.dtype) if t is not None else None for t in deep_tables]
    length = [len(row.ids) + (deep_length(deep[row.deep]) if row.deep is not None else 0) for row in rows]
    budget = batch_tokens or default_batch_tokens(lm)
    bar = tqdm(total=len(rows), desc="scoring", unit="seq", disable=not progress, leave=False)
    plain = list(range(len(rows)))
    if groupings and lm.is_causal:
        plain = run_shared_prefixes(lm, rows, queries, queries_of, groupings, tables, deep, scoring, budget, bar)
    order = sorted(plain, key=lambda r: (-length[r], r))
    i = 0
    while i < len(order):
        size = max(1, min(MAX_ROWS, budget // max(1, length[order[i]])))
        batch = _bucket(order[i : i + size], length)
        try:
            _run_batch(lm, rows, batch, queries, queries_of, tables, deep, scoring)
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if size == 1 or not is_oom(error):
                raise
            budget = max(1, budget // 2)
            continue
        i += len(batch)
        bar.update(len(batch))
    bar.close()
    return answers


def _bucket(batch: list[int], length: Sequence[int]) -> list[int]:
    """The leading rows of ``batch`` (longest first) at least half as long as its first: rows of
    short inputs (another task's, in a mixed run) are not padded to a long input's width, so padding
    at most doubles a batch's work."""
    cut = next((k for k, r in enumerate(batch) if 2 * length[r] < length[batch[0]]), len(batch))
    return batch[: max(1, cut)]


@torch.inference_mode()
def _run_batch(lm, rows, batch, queries, queries_of, tables, deep, scoring: Scoring) -> None:
    ids, mask = pad_rows(lm, [rows[r].ids for r in batch])
    embeds = splice_soft(lm, ids, [(b, p, t, k) for b, r in enumerate(batch) for p, t, k in rows[r].soft], tables)
    prefixes = [deep[rows[r].deep] if rows[r].deep is not None else None for r in batch]
    hidden = deep_prompt.hidden_states(lm, mask, prefixes, input_ids=None if embeds is not None else ids,
                                       inputs_embeds=embeds)
    q_idx = np.concatenate([queries_of[r] for r in batch])
    q_b = np.concatenate([np.full(len(queries_of[r]), b) for b, r in enumerate(batch)])
    q_p = np.array([queries.pos[q] for q in q_idx])
    scoring.score_sites(hidden, q_idx, q_b, q_p)
