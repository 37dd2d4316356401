"""How readable a discrete prompt is: the frozen model's own log-likelihood of the template text.

Gradient-guided trigger search happily returns token soup that works on the search data and
nowhere else. FluentPrompt (Shi et al. 2022, "Toward Human Readable Prompt Tuning") and PEZ (Wen
et al. 2023, "Hard Prompts Made Easy") add the language model's log-likelihood of the prompt to
the objective so that found prompts read as text. Here it is an optional term in the ranking of
AutoPrompt's candidates and of the filter's mutations (weight ``fluency``), and every saved
discrete prompt reports its perplexity.

The template text is its literal pieces and trigger tokens in order, with fields, soft slots and
the answer slot left out (``Review: {sentence}\\nSentiment:[P]`` reads ``Review: \\nSentiment:``).
Masked LMs have no cheap left-to-right likelihood: there the score is 0 and the perplexity None.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from ..models.language_model import LanguageModel
from ..prompts.prompt import Prompt
from ..prompts.template import Text, Trigger


def template_ids(prompt: Prompt, lm: LanguageModel) -> list[int]:
    """Token ids of the prompt's text (literal pieces + trigger ids), without fields and slots."""
    ids: list[int] = []
    triggers = iter(prompt.trigger_ids)
    for segment in prompt.template.segments:
        if isinstance(segment, Text):
            ids += lm.tokenize(segment.text)
        elif isinstance(segment, Trigger):
            ids += [next(triggers) for _ in range(segment.count)] if prompt.trigger_ids else []
    return ids


@torch.no_grad()
def mean_log_likelihoods(lm: LanguageModel, prompts: Sequence[Prompt]) -> list[float]:
    """Per prompt, the mean log-prob per token of its text under ``lm`` (one padded batch; the first
    token is conditioned on the tokenizer's BOS where it has one, else only predicts the rest).
    0.0 on a masked LM."""
    if not lm.is_causal:
        return [0.0 for _ in prompts]
    rows = [list(lm.prefix_ids) + template_ids(p, lm) for p in prompts]
    width = max((len(r) for r in rows), default=0)
    if width < 2:
        return [0.0 for _ in prompts]
    ids = torch.full((len(rows), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros_like(ids)
    for i, row in enumerate(rows):
        ids[i, : len(row)] = torch.tensor(row, dtype=torch.long)
        mask[i, : len(row)] = 1
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    log_p = torch.log_softmax(lm.model(input_ids=ids, attention_mask=mask).logits.float(), dim=-1)
    token_lp = log_p[:, :-1].gather(2, ids[:, 1:, None])[..., 0].cpu()  # [i, j]: log p(token j+1 | tokens ..j)
    return [float(token_lp[i, : len(row) - 1].mean()) if len(row) > 1 else 0.0 for i, row in enumerate(rows)]


def perplexity(lm: LanguageModel, prompt: Prompt) -> float | None:
    """exp(−mean log-likelihood) of the prompt's text; None on a masked LM or for a text-less prompt."""
    if not lm.is_causal or len(template_ids(prompt, lm)) < (1 if lm.prefix_ids else 2):
        return None
    return math.exp(-mean_log_likelihoods(lm, [prompt])[0])
