"""The training-side forward of soft prompts: a batch under one prompt whose tensors train.

The Evaluator answers "what does this prompt score?" under ``inference_mode``; training needs the
same numbers with gradients flowing into the prompt's vectors. Rows, queries and the fold of token
log-probs into class scores come from the Evaluator's own plan, so training optimises exactly what
the Evaluator reports: full-vocabulary log-softmax at the answer sites only, a class = log-sum-exp
over its words, a multi-token word = sum (or mean) of its tokens' log-probs.

Extension points: a ``deep`` tensor supplies per-layer key/value prefixes (P-tuning v2, prefix
tuning; run exactly as the Evaluator runs them, see :mod:`deep_prompt`), and a linear ``head``
replaces the verbalizer by a trained classifier on the hidden state at ``[P]`` (P-tuning v2's sentence-level head).

On a causal LM the text every row of a batch starts with (BOS, the soft vectors, the words before
the input) runs once, as in the Evaluator's prefix reuse: the rows continue from its keys and
values, and its gradient is the sum of theirs.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from ..data.tasks import Example, Task
from ..prompts.prompt import Prompt
from . import deep_prompt
from .encoding import PromptEncoder
from .plan import DemoSource, Plan, head_log_probs
from .prefix_reuse import MIN_PREFIX, first_queries, prefix_behind, shared_length
from .rows import pad_rows, splice_soft


@dataclass(frozen=True)
class SoftBatch:
    """What one forward produced: ``scores`` (E, L) class log-probs, or (E,) gold-object log-probs
    for fact tasks, or (E,) summed reference log-probs for generation with ``tokens`` (E,) their
    token counts; ``gold`` (E,) gold label indices (classification; -1 when unlabelled)."""

    scores: torch.Tensor
    gold: torch.Tensor
    tokens: torch.Tensor | None = None

    def loss(self) -> torch.Tensor:
        """Mean cross-entropy over the classes (classification), mean -log p(gold object) (facts), or
        the references' mean per-token NLL (generation, as language-model fine-tuning averages it)."""
        if self.tokens is not None:
            return -self.scores.sum() / self.tokens.sum()
        if self.scores.ndim == 1:
            return -self.scores.mean()
        keep = self.gold >= 0
        return -torch.log_softmax(self.scores[keep], dim=-1).gather(1, self.gold[keep, None]).mean()


def soft_forward(
    encoder: PromptEncoder,
    prompt: Prompt,
    examples: Sequence[Example],
    task: Task,
    soft: torch.Tensor | None,
    *,
    deep: torch.Tensor | None = None,
    head: torch.Tensor | None = None,
    demos: DemoSource | None = None,
    reuse_prefix: bool = True,
) -> SoftBatch:
    """Score ``examples`` under ``prompt`` with ``soft`` (n_soft, H) in its ``[V]`` slots, with grad.

    ``prompt`` must have passed :meth:`PromptEncoder.validate`; its own ``soft`` is ignored in
    favour of ``soft``. ``head`` (L, H + 1): class scores are the log-softmax of a linear head on the
    hidden state at ``[P]`` instead of the verbalizer's words. ``deep`` (layers, 2, kv_heads, n, head_dim):
    per-layer key/value prefixes every row attends to. ``demos`` (e.g. the Evaluator's
    ``context.demonstrations``) puts in-context demonstrations before each example, as in scoring.
    ``reuse_prefix`` runs the rows' shared beginning once (see the module docstring).
    """
    lm = encoder.lm
    plan = Plan(encoder, lm.is_causal, lm.mask_id, demos)
    plan.add_job(0, [prompt], examples, task)
    ids, mask = pad_rows(lm, [row.ids for row in plan.rows])
    splices = [(b, p, t, k) for b, row in enumerate(plan.rows) for p, t, k in row.soft]
    embeds = splice_soft(lm, ids, splices, [soft]) if splices else lm.embed(ids)
    hidden = _hidden_states(lm, plan, mask, embeds, deep, reuse_prefix)  # (R, T, H)
    label_index = {label: i for i, label in enumerate(task.labels)}
    gold = torch.tensor([label_index.get(str(x.label), -1) for x in examples], dtype=torch.long)
    if head is not None:
        return SoftBatch(_head_scores(plan, hidden, head), gold)
    log_probs = _query_log_probs(lm, plan, hidden)  # (Q,)
    if task.kind == "generation":  # every reference of each example: one label, its references the words
        tokens = torch.tensor([float(sum(len(q) for q in w[0])) for w in plan.words])
        return SoftBatch(torch.stack([sum(log_probs[q].sum() for q in w[0]) for w in plan.words]), gold, tokens)
    if task.kind != "classification":
        return SoftBatch(torch.stack([log_probs[list(w[0][0])].sum() for w in plan.words]), gold)
    reduce = torch.mean if prompt.verbalizer.reduction == "mean" else torch.sum
    scores = [
        torch.stack([torch.logsumexp(torch.stack([reduce(log_probs[q]) for q in words]), dim=0) for words in labels])
        for labels in plan.words
    ]
    return SoftBatch(torch.stack(scores), gold)  # (E, L)


def _hidden_states(lm: Any, plan: Plan, mask: torch.Tensor, embeds: torch.Tensor, deep: torch.Tensor | None,
                   reuse_prefix: bool) -> torch.Tensor:
    """(R, T, H) hidden states of the plan's rows behind ``deep``; positions before the shared prefix's
    end hold zeros when it ran once (no query reads them)."""
    rows = plan.rows
    n = 0
    if reuse_prefix and lm.is_causal and len(rows) > 1:
        n = shared_length(rows, range(len(rows)), first_queries(plan.queries, [len(row.ids) for row in rows]))
    if n < MIN_PREFIX:
        return deep_prompt.hidden_states(lm, mask, [deep] * len(rows), inputs_embeds=embeds)
    kv, slots = prefix_behind(lm, mask[:1, :n], None, embeds[:1, :n], [deep])
    cache = lm.gather_cache(kv, torch.zeros(len(rows), dtype=torch.long, device=lm.device))
    positions = torch.arange(n, embeds.shape[1], device=lm.device).expand(len(rows), -1)
    hidden = lm.hidden_states(torch.cat([slots.expand(len(rows), -1), mask[:, n:]], dim=1),
                              inputs_embeds=embeds[:, n:], past_key_values=cache, position_ids=positions)
    return torch.cat([hidden.new_zeros(len(rows), n, hidden.shape[2]), hidden], dim=1)


def _query_log_probs(lm: Any, plan: Plan, hidden: torch.Tensor) -> torch.Tensor:
    """Log-prob of each query's token, read once per distinct site (row, position)."""
    q = plan.queries
    width = hidden.shape[1]
    sites, site_of_query = np.unique(np.asarray(q.row) * width + np.asarray(q.pos), return_inverse=True)
    h = hidden[torch.as_tensor(sites // width), torch.as_tensor(sites % width)]  # (S, H)
    log_probs = torch.log_softmax(lm.vocab_logits(h), dim=-1)  # (S, V) float32
    return log_probs[torch.as_tensor(site_of_query.reshape(-1)), torch.as_tensor(q.token)]


def _head_scores(plan: Plan, hidden: torch.Tensor, head: torch.Tensor) -> torch.Tensor:
    """(E, L) log-softmax of ``head`` (L, H + 1) on the hidden state where each example's answer is read."""
    first = [w[0][0][0] for w in plan.words]  # the query of each example's first word token
    rows = torch.as_tensor([plan.queries.row[i] for i in first])
    pos = torch.as_tensor([plan.queries.pos[i] for i in first])
    return head_log_probs(head, hidden[rows, pos])  # (E, L)
