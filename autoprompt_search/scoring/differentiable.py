"""Full-vocabulary scores at the answer slot, with gradients when a searcher needs them.

The Evaluator scores label words only; two searchers need more: AutoPrompt's HotFlip step needs
the gradient of the loss with respect to the trigger-slot input embeddings, and label-word search
needs each example's whole next-token distribution at ``[P]``. Both run here, on one batch at a time.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from ..data.tasks import Example
from ..errors import TemplateError
from ..models.language_model import LanguageModel
from ..prompts.prompt import Prompt
from .encoding import PromptEncoder
from .rows import pad_rows


def _rows(encoder: PromptEncoder, prompt: Prompt, examples: Sequence[Example]):
    """Ids with the answer slot in place, the answer position, and the trigger positions per example."""
    lm = encoder.lm
    if prompt.template.n_soft:
        raise TemplateError("gradient search works on [T] slots; this template also has [V] slots: drop them")
    ids, answer, triggers = [], [], []
    for example in examples:
        enc = encoder.encode(prompt, example)
        if lm.is_causal:
            ids.append(enc.before)
            answer.append(len(enc.before) - 1)
            triggers.append(enc.trigger_before)
        else:
            ids.append((*enc.before, lm.mask_id, *enc.after))
            answer.append(len(enc.before))
            triggers.append(enc.trigger_before + tuple(len(enc.before) + 1 + o for o in enc.trigger_after))
    return ids, answer, triggers


def answer_log_probs(
    encoder: PromptEncoder, prompt: Prompt, examples: Sequence[Example], chunk: int = 64
) -> torch.Tensor:
    """``(E, V)`` float32 log-probs of every vocabulary token as the first token at ``[P]``."""
    lm = encoder.lm
    out = []
    for start in range(0, len(examples), chunk):
        ids, answer, _ = _rows(encoder, prompt, examples[start : start + chunk])
        with torch.inference_mode():
            out.append(_answer_logits(lm, ids, answer, None).log_softmax(-1).cpu())
    return torch.cat(out)


def trigger_gradient(
    encoder: PromptEncoder,
    prompt: Prompt,
    examples: Sequence[Example],
    gold_tokens: Sequence[Sequence[int]],
    class_tokens: Sequence[Sequence[int]] | None = None,
) -> tuple[torch.Tensor, float]:
    """Gradient ``(n_triggers, H)`` of the summed loss w.r.t. the trigger embeddings, and the loss.

    Loss per example: ``-log sum_w p(w)`` over the first tokens ``w`` of the gold class's label
    words (AutoPrompt's class probability), read from the full-vocabulary softmax at ``[P]``.
    With ``class_tokens`` (every class's label tokens) that probability is renormalised over the
    classes: the cross-entropy of the classifier the prompt induces, which a prompt cannot lower
    by raising all label words at once.
    """
    lm = encoder.lm
    ids, answer, triggers = _rows(encoder, prompt, examples)
    padded, mask = pad_rows(lm, ids)
    embeds = lm.embed(padded).detach().requires_grad_(True)
    logits = _answer_logits(lm, ids, answer, embeds, mask)  # (E, V)
    log_probs = logits.log_softmax(-1)
    gold = torch.stack([torch.logsumexp(log_probs[e, list(tokens)], dim=0) for e, tokens in enumerate(gold_tokens)])
    if class_tokens is not None:
        per_class = torch.stack([torch.logsumexp(log_probs[:, list(tokens)], dim=1) for tokens in class_tokens], 1)
        gold = gold - torch.logsumexp(per_class, dim=1)
    loss = -gold.sum()
    loss.backward()
    rows = torch.tensor([e for e, pos in enumerate(triggers) for _ in pos])
    cols = torch.tensor([p for pos in triggers for p in pos])
    grads = embeds.grad[rows, cols].reshape(len(examples), -1, embeds.shape[-1])  # (E, n_triggers, H)
    return grads.sum(0).float(), float(loss.item())


def _answer_logits(lm: LanguageModel, ids, answer, embeds=None, mask=None) -> torch.Tensor:
    if embeds is None:
        padded, mask = pad_rows(lm, ids)
        hidden = lm.hidden_states(mask, input_ids=padded)
    else:
        hidden = lm.hidden_states(mask, inputs_embeds=embeds)
    at = hidden[torch.arange(len(ids)), torch.tensor(answer)]  # (E, H)
    return lm.vocab_logits(at)
