"""Shared-prefix reuse for causal LMs: run a prefix once, then only each row's differing suffix.

Rows share a prefix in two ways. Many candidates scored on one example share everything up to the
first candidate-specific token (the input text before the trigger slots, or — in AutoPrompt — every
trigger before the one being swapped). One prompt scored on many examples shares its text before the
input (an instruction, soft vectors at the start): scoring a prompt on a 2,000-example test set then
runs its instruction once instead of 2,000 times. Each row joins the grouping that saves it the most
tokens (its group's common prefix × the share of the group that skips it). Rows behind a deep prompt
share a prefix only with rows behind the same one, and the prefix then runs behind it. The prefix's keys and
values are computed once per group, gathered for each suffix row into a fresh cache (the forward
pass appends to a cache in place), and the suffix runs with explicit position ids, because
right-padded prefixes leave masked gaps.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

import numpy as np
import torch

from ..models.language_model import LanguageModel
from . import deep_prompt
from .rows import MAX_ROWS, Queries, Row, Scoring, is_oom, pad_rows, splice_soft

#: A prefix shorter than this is not worth a separate pass.
MIN_PREFIX = 4
#: Bytes of gathered keys/values allowed per suffix batch (CPU; a GPU gets 8×).
KV_BYTES = 256 * 2**20


def run_shared_prefixes(
    lm: LanguageModel,
    rows: Sequence[Row],
    queries: Queries,
    queries_of: Sequence[np.ndarray],
    groupings: Sequence[Sequence[int]],
    tables: Sequence[torch.Tensor | None],
    deep: Sequence[torch.Tensor | None],
    scoring: Scoring,
    budget: int,
    bar,
) -> list[int]:
    """Score the rows whose group shares a worthwhile prefix; return the other rows' indices.

    ``groupings`` holds one group id per row for each way rows may share a prefix (per example,
    per prompt); each row is run in the grouping that saves it the most tokens. Rows behind a deep
    prompt share a prefix only with rows behind the same one (its keys shape the text's).
    """
    rest: list[int] = []
    plain = list(range(len(rows)))
    first_query = first_queries(queries, [len(row.ids) for row in rows])
    best = {r: (0.0, -1) for r in plain}  # row → (tokens saved per row, grouping)
    for g, grouping in enumerate(groupings):
        for rs in _members(plain, grouping):
            saved = shared_length(rows, rs, first_query) * (1 - 1 / len(rs))
            for r in rs:
                if saved > best[r][0]:
                    best[r] = (saved, g)
    plans: list[tuple[int, list[int]]] = []
    for g, grouping in enumerate(groupings):
        for rs in _members([r for r in plain if best[r][1] == g], grouping):
            n = shared_length(rows, rs, first_query) if len(rs) > 1 else 0
            if n >= MIN_PREFIX:
                plans.append((n, rs))
            else:
                rest.extend(rs)
    rest.extend(r for r in plain if best[r][1] < 0)
    plans.sort(key=lambda plan: -plan[0])
    i = 0
    while i < len(plans):
        chunk = plans[i : i + max(1, min(MAX_ROWS, budget // plans[i][0]))]
        _run_chunk(lm, rows, queries, queries_of, chunk, tables, deep, scoring, budget, bar)
        i += len(chunk)
    return rest


def _members(rows: list[int], grouping: Sequence[int]) -> list[list[int]]:
    members: dict[int, list[int]] = defaultdict(list)
    for r in rows:
        members[grouping[r]].append(r)
    return list(members.values())


def shared_length(rows: Sequence[Row], members: Sequence[int], first_query: Sequence[int]) -> int:
    """Longest common prefix of the members' ids, stopping before any row's first queried position
    (``first_query[r]``) and any soft vector the members do not all share (one prompt's soft vectors
    are the same on every example); none if they sit behind different deep prompts."""
    if len({rows[r].deep for r in members}) > 1:
        return 0
    first = rows[members[0]].ids
    n = min(len(rows[r].ids) for r in members)
    common = set(rows[members[0]].soft)
    for r in members[1:]:
        ids = rows[r].ids
        k = 0
        while k < n and ids[k] == first[k]:
            k += 1
        n = k
        common &= set(rows[r].soft)
    for r in members:
        unshared = [p for p, *key in rows[r].soft if (p, *key) not in common]
        n = min(n, first_query[r], *unshared)
    return n


@torch.inference_mode()
def _run_chunk(lm, rows, queries, queries_of, chunk, tables, deep, scoring: Scoring, budget: int, bar) -> None:
    lengths = torch.tensor([n for n, _ in chunk], device=lm.device)
    kv, prefix_mask = _prefix_pass(lm, rows, chunk, tables, deep)
    width = prefix_mask.shape[1]
    per_row = sum(k.shape[1] * k.shape[3] * 2 * k.element_size() for k, _ in kv) * width
    kv_budget = KV_BYTES * (8 if lm.device.type == "cuda" else 1)
    suffix_rows = sorted(((g, r) for g, (_, rs) in enumerate(chunk) for r in rs),
                         key=lambda gr: (-(len(rows[gr[1]].ids) - chunk[gr[0]][0]), gr[1]))
    size = max(1, min(MAX_ROWS, kv_budget // max(1, per_row)))
    i = 0
    while i < len(suffix_rows):
        longest = len(rows[suffix_rows[i][1]].ids) - chunk[suffix_rows[i][0]][0]
        part = suffix_rows[i : i + max(1, min(size, budget // max(1, longest + width)))]
        try:
            _run_suffixes(lm, rows, queries, queries_of, chunk, part, kv, lengths, prefix_mask, tables, scoring)
        except (torch.cuda.OutOfMemoryError, MemoryError, RuntimeError) as error:
            if len(part) == 1 or not is_oom(error):
                raise
            size = max(1, len(part) // 2)
            continue
        i += len(part)
        bar.update(len(part))


def _prefix_pass(lm, rows, chunk, tables, deep) -> tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]:
    """Keys/values of each group's shared prefix (per layer ``(G, kv_heads, S, d)``) and their mask ``(G, S)``."""
    prefix_ids, prefix_mask = pad_rows(lm, [rows[rs[0]].ids[:n] for n, rs in chunk])
    splices = [(g, p, t, k) for g, (n, rs) in enumerate(chunk) for p, t, k in rows[rs[0]].soft if p < n]
    embeds = splice_soft(lm, prefix_ids, splices, tables)
    deeps = [deep[rows[rs[0]].deep] if rows[rs[0]].deep is not None else None for _, rs in chunk]
    return prefix_behind(lm, prefix_mask, None if embeds is not None else prefix_ids, embeds, deeps)


def prefix_behind(lm: LanguageModel, mask: torch.Tensor, ids: torch.Tensor | None, embeds: torch.Tensor | None,
                  deeps: Sequence[torch.Tensor | None]) -> tuple[list[tuple[torch.Tensor, ...]], torch.Tensor]:
    """Keys/values of prefix rows (ids or embeddings) and the mask covering them; behind deep prompts
    (one per row, or None) the slots hold the deep prompt first, the text at positions 0..."""
    if all(d is None for d in deeps):
        return lm.prefix_cache(mask, ids, embeds), mask
    past, deep_mask = deep_prompt.prefix_cache(lm, deeps)
    positions = torch.arange(mask.shape[1], device=lm.device).expand_as(mask)
    slots = torch.cat([deep_mask, mask], dim=1)
    return lm.prefix_cache(slots, ids, embeds, past_key_values=past, position_ids=positions), slots


def first_queries(queries: Queries, lengths: Sequence[int]) -> list[int]:
    """Each row's first queried position (its length when none): a shared prefix must stop before it."""
    first = list(lengths)
    for r, pos in zip(queries.row, queries.pos, strict=True):
        first[r] = min(first[r], pos)
    return first


def _run_suffixes(lm, rows, queries, queries_of, chunk, part, kv, lengths, prefix_mask, tables, scoring) -> None:
    g_idx = torch.tensor([g for g, _ in part], device=lm.device)
    starts = [chunk[g][0] for g, _ in part]
    ids, mask = pad_rows(lm, [rows[r].ids[s:] for (_, r), s in zip(part, starts, strict=True)])
    splices = [(b, p - starts[b], t, k) for b, (_, r) in enumerate(part) for p, t, k in rows[r].soft if p >= starts[b]]
    embeds = splice_soft(lm, ids, splices, tables)
    positions = lengths[g_idx].unsqueeze(1) + torch.arange(ids.shape[1], device=lm.device)
    hidden = lm.hidden_states(
        torch.cat([prefix_mask[g_idx], mask], dim=1),
        input_ids=None if embeds is not None else ids,
        inputs_embeds=embeds,
        past_key_values=lm.gather_cache(kv, g_idx),
        position_ids=positions,
    )
    q_idx = np.concatenate([queries_of[r] for _, r in part])
    q_b = np.concatenate([np.full(len(queries_of[r]), b) for b, (_, r) in enumerate(part)])
    q_p = np.array([queries.pos[q] for q in q_idx]) - np.repeat(starts, [len(queries_of[r]) for _, r in part])
    scoring.score_sites(hidden, q_idx, q_b, q_p)
