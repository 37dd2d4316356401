"""The plain data of a batched scoring run: a :class:`Row` (token ids, where soft vectors go, which
deep prompt it runs behind), the :class:`Queries` asked of rows ("log-prob of token t at position
p"), the :class:`Answers`, how sites become answers (:class:`Scoring`), and the padding and
soft-vector splicing both forward paths (:mod:`batching`, :mod:`prefix_reuse`) use.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch

from ..models.language_model import LanguageModel

#: Tokens per batch on a CPU: enough to keep the matmuls busy; more only adds memory traffic.
CPU_BATCH_TOKENS = 8192
MAX_ROWS = 512


def default_batch_tokens(lm: LanguageModel) -> int:
    """Tokens per batch: fixed on CPU; on a GPU, half the free memory over an estimate of the
    activation bytes one token needs in one layer (out-of-memory still backs off by halving)."""
    if lm.device.type != "cuda":
        return CPU_BATCH_TOKENS
    free, _ = torch.cuda.mem_get_info(lm.device)
    config = lm.model.config
    width = getattr(config, "intermediate_size", None) or 4 * lm.hidden_size
    per_token = 2 * torch.finfo(lm.dtype).bits // 8 * (8 * lm.hidden_size + 3 * width)
    return int(max(CPU_BATCH_TOKENS, min(2**20, free // 2 // per_token)))

#: "vocab": log-softmax over the whole vocabulary (true log-probs; ranks; multi-token words).
#: "labels": only the queried tokens' rows of the output layer, log-softmax among them (LM-BFF's
#: softmax over label words) — cheaper when the vocabulary is large and the suffix is short.
Normalize = Literal["vocab", "labels"]


@dataclass(frozen=True)
class Row:
    """One sequence to run. ``soft`` holds ``(position, soft table, vector index)`` splices;
    ``deep`` the index of the deep prompt (in ``run_queries``' ``deep_tables``) the row runs behind."""

    ids: tuple[int, ...]
    soft: tuple[tuple[int, int, int], ...] = ()
    deep: int | None = None


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
    logprob: np.ndarray  # (Q,) float64 log-probs
    rank: np.ndarray | None  # (Q,) 1-based rank of the token (inf when not a candidate), if asked
    hidden: torch.Tensor | None = None  # (Q, H) float32 hidden state at each query's site, if asked


@dataclass
class Scoring:
    """How sites become answers; shared by the plain and the prefix-reuse paths."""

    lm: LanguageModel
    queries: Queries
    answers: Answers
    normalize: Normalize = "vocab"
    candidate_ids: torch.Tensor | None = None
    ranked: np.ndarray | None = None  # (Q,) bool: the queries that need a rank (None: all, when ranks are asked)

    def score_sites(self, hidden: torch.Tensor, q_idx: np.ndarray, q_b: np.ndarray, q_p: np.ndarray) -> None:
        """Fill answers for queries ``q_idx`` read at ``hidden[q_b, q_p]`` (hidden is ``(B, T, H)``)."""
        width = hidden.shape[1]
        sites, site_of_query = np.unique(q_b * width + q_p, return_inverse=True)
        h = hidden[torch.as_tensor(sites // width), torch.as_tensor(sites % width)]  # (S, H)
        site_t = torch.as_tensor(site_of_query.reshape(-1), device=h.device)
        tokens = torch.as_tensor([self.queries.token[q] for q in q_idx], device=h.device)
        if self.answers.hidden is not None:
            self.answers.hidden[torch.as_tensor(q_idx)] = h[site_t].float().cpu()
        if self.normalize == "labels" and self.answers.rank is None:
            self._label_only(h, site_t, tokens, q_idx)
            return
        logits = self.lm.vocab_logits(h)  # (S, V) float32
        log_probs = torch.log_softmax(logits, dim=-1)
        self.answers.logprob[q_idx] = log_probs[site_t, tokens].double().cpu().numpy()
        if self.answers.rank is not None:
            need = np.ones(len(q_idx), dtype=bool) if self.ranked is None else self.ranked[q_idx]
            keep = torch.as_tensor(need, device=h.device)
            site_t, tokens = site_t[keep], tokens[keep]
            gold = logits[site_t, tokens].unsqueeze(1)
            pool = logits[site_t] if self.candidate_ids is None else logits[site_t][:, self.candidate_ids]
            ranks = (pool > gold).sum(dim=1).double() + 1
            if self.candidate_ids is not None:
                ranks = torch.where(torch.isin(tokens, self.candidate_ids), ranks, torch.full_like(ranks, np.inf))
            self.answers.rank[q_idx[need]] = ranks.cpu().numpy()

    def _label_only(self, h: torch.Tensor, site_t: torch.Tensor, tokens: torch.Tensor, q_idx: np.ndarray) -> None:
        vocab = torch.unique(tokens)
        logits = self.lm.token_logits(h, vocab)  # (S, K) over the queried tokens only
        column = torch.searchsorted(vocab, tokens)
        asked = torch.zeros_like(logits, dtype=torch.bool)
        asked[site_t, column] = True
        log_probs = torch.log_softmax(logits.masked_fill(~asked, float("-inf")), dim=-1)
        self.answers.logprob[q_idx] = log_probs[site_t, column].double().cpu().numpy()


def pad_rows(lm: LanguageModel, seqs: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """Right-padded ids and attention mask ``(B, T)`` on the model's device."""
    width = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for b, seq in enumerate(seqs):
        ids[b, : len(seq)] = torch.tensor(seq, dtype=torch.long)
        mask[b, : len(seq)] = 1
    return ids.to(lm.device), mask.to(lm.device)


def splice_soft(
    lm: LanguageModel, ids: torch.Tensor, splices: list[tuple[int, int, int, int]], tables: Sequence
) -> torch.Tensor | None:
    """Input embeddings with soft vectors written at ``(row, position, table, index)``; None if none."""
    if not splices:
        return None
    embeds = lm.embed(ids)
    b_idx, p_idx, vectors = zip(*((b, p, tables[t][k]) for b, p, t, k in splices), strict=True)
    embeds[list(b_idx), list(p_idx)] = torch.stack(vectors).to(embeds.dtype)
    return embeds


def is_oom(error: BaseException) -> bool:
    return isinstance(error, (torch.cuda.OutOfMemoryError, MemoryError)) or "out of memory" in str(error).lower()
