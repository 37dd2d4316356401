"""Batched forward passes that answer "log-prob (and rank) of token t at position p of row r".

Rows are sorted by length and packed under a token budget, padded on the right (causal rows need
no position ids then, and masked rows are masked), run through the encoder without any output
layer, and only the hidden states at queried positions go through the vocabulary head. Out of
memory halves the batch and retries instead of crashing.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from .models.language_model import LanguageModel

#: Tokens per batch by device type: enough to keep the matmuls busy, small enough for 2 CPU cores.
DEFAULT_BATCH_TOKENS = {"cpu": 8192, "cuda": 65536}
MAX_ROWS = 512


@dataclass(frozen=True)
class Row:
    """One sequence to run. ``soft`` holds ``(position, soft table, vector index)`` splices."""

    ids: tuple[int, ...]
    soft: tuple[tuple[int, int, int], ...] = ()


@dataclass
class Queries:
    """Parallel arrays: for query ``i``, the token ``token[i]`` at position ``pos[i]`` of row ``row[i]``."""

    row: list[int]
    pos: list[int]
    token: list[int]

    def add(self, row: int, pos: int, token: int) -> int:
        self.row.append(row)
        self.pos.append(pos)
        self.token.append(token)
        return len(self.row) - 1


@dataclass
class Answers:
    logprob: np.ndarray  # (Q,) float64 log-probs over the full vocabulary
    rank: np.ndarray | None  # (Q,) 1-based rank of the token (inf when not a candidate), if asked


def run_queries(
    lm: LanguageModel,
    rows: Sequence[Row],
    queries: Queries,
    soft_tables: Sequence[torch.Tensor | None] = (),
    *,
    want_rank: bool = False,
    candidate_ids: torch.Tensor | None = None,
    batch_tokens: int | None = None,
    progress: bool = False,
) -> Answers:
    """Answer every query with as few, as full forward passes as the token budget allows."""
    n_q = len(queries.row)
    logprob = np.zeros(n_q)
    rank = np.full(n_q, np.inf) if want_rank else None
    if not rows:
        return Answers(logprob, rank)
    q_row = np.asarray(queries.row)
    by_row = np.argsort(q_row, kind="stable")
    starts = np.searchsorted(q_row[by_row], np.arange(len(rows) + 1))
    order = sorted(range(len(rows)), key=lambda r: (-len(rows[r].ids), r))
    budget = batch_tokens or DEFAULT_BATCH_TOKENS.get(lm.device.type, 8192)
    tables = [t.to(lm.device, lm.dtype) if t is not None else None for t in soft_tables]
    bar = tqdm(total=len(rows), desc="scoring", unit="seq", disable=not progress, leave=False)
    i = 0
    while i < len(order):
        size = max(1, min(MAX_ROWS, budget // max(1, len(rows[order[i]].ids))))
        batch = order[i : i + size]
        try:
            _run_batch(lm, rows, batch, queries, by_row, starts, tables, logprob, rank, candidate_ids)
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if size == 1 or not _is_oom(error):
                raise
            budget = max(1, budget // 2)
            continue
        i += len(batch)
        bar.update(len(batch))
    bar.close()
    return Answers(logprob, rank)


@torch.inference_mode()
def _run_batch(lm, rows, batch, queries, by_row, starts, tables, logprob, rank, candidate_ids) -> None:
    width = max(len(rows[r].ids) for r in batch)
    ids = torch.full((len(batch), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(batch), width), dtype=torch.long)
    for b, r in enumerate(batch):
        ids[b, : len(rows[r].ids)] = torch.tensor(rows[r].ids)
        mask[b, : len(rows[r].ids)] = 1
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    embeds = None
    splices = [(b, pos, t, k) for b, r in enumerate(batch) for pos, t, k in rows[r].soft]
    if splices:
        embeds = lm.embed(ids)
        b_idx, p_idx, vectors = zip(*((b, p, tables[t][k]) for b, p, t, k in splices), strict=True)
        embeds[list(b_idx), list(p_idx)] = torch.stack(vectors).to(embeds.dtype)
    hidden = lm.hidden_states(mask, input_ids=None if embeds is not None else ids, inputs_embeds=embeds)
    # Gather the queried sites: (S, H) hidden states, then (S, V) logits, for S << B * T.
    q_idx = np.concatenate([by_row[starts[r] : starts[r + 1]] for r in batch])
    local = {r: b for b, r in enumerate(batch)}
    q_b = np.array([local[queries.row[q]] for q in q_idx])
    q_p = np.array([queries.pos[q] for q in q_idx])
    sites, site_of_query = np.unique(q_b * width + q_p, return_inverse=True)
    h = hidden[torch.as_tensor(sites // width), torch.as_tensor(sites % width)]
    logits = lm.vocab_logits(h)  # (S, V) float32
    log_probs = torch.log_softmax(logits, dim=-1)
    site_t = torch.as_tensor(site_of_query)
    tokens = torch.as_tensor([queries.token[q] for q in q_idx], device=logits.device)
    logprob[q_idx] = log_probs[site_t, tokens].double().cpu().numpy()
    if rank is not None:
        gold = logits[site_t, tokens].unsqueeze(1)
        pool = logits[site_t] if candidate_ids is None else logits[site_t][:, candidate_ids]
        ranks = (pool > gold).sum(dim=1).double() + 1
        if candidate_ids is not None:
            member = torch.isin(tokens, candidate_ids)
            ranks = torch.where(member, ranks, torch.full_like(ranks, float("inf")))
        rank[q_idx] = ranks.cpu().numpy()


def _is_oom(error: BaseException) -> bool:
    return isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower()
