"""Decoding text at ``[P]``: greedy or beam search through the model's own ``generate``, batched.

Every kind of prompt decodes: discrete text and triggers (token ids), ``[V]`` soft vectors
(``inputs_embeds`` with the vectors spliced in), deep prompts (the prefix enters as the
``generate`` call's starting cache, exactly as in scoring: see :mod:`deep_prompt`) and in-context
demonstrations (they are part of the encoded input). Inputs are left-padded (a causal LM continues
from each row's last token) and run in batches of similar length, the KV cache carrying each step.

Positions: the text keeps positions ``0..T-1`` behind a deep prompt, as the Evaluator and the
trainer run it, so ``position_ids`` are given explicitly (``generate`` extends them by one per
step). With ``inputs_embeds`` and a prefix cache, ``generate`` drops as many leading embeddings as
the cache holds (it takes the cache for an already-run part of the input), so that many dummy
rows stand in front.

Stop rule: end of text, a newline (a token whose text holds one; the text is cut there), or
``max_new_tokens``. End of text and newline are suppressed at the first step, so no input yields
an empty text.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm

from ..data.tasks import Example, Task
from ..errors import BudgetError
from ..models.language_model import LanguageModel
from ..prompts.prompt import Prompt
from .deep_prompt import prefix_cache
from .encoding import PromptEncoder
from .plan import DemoSource
from .rows import splice_soft


@dataclass(frozen=True)
class Decoding:
    """How text is decoded: ``num_beams`` 1 is greedy; ``batch_size`` inputs per ``generate`` call."""

    num_beams: int = 1
    max_new_tokens: int = 60
    stop_at_newline: bool = True
    batch_size: int = 16

    def __post_init__(self) -> None:
        if min(self.num_beams, self.max_new_tokens, self.batch_size) < 1:
            raise BudgetError(f"decoding needs num_beams, max_new_tokens and batch_size >= 1, got {self}")


def stop_ids(lm: LanguageModel, newline: bool) -> list[int]:
    """End-of-text, and (with ``newline``) every token whose text holds a newline; computed once per model."""
    key = ("stop_ids", newline)
    if key not in lm.memo:
        eos = lm.tokenizer.eos_token_id
        ids = [] if eos is None else [int(eos)]
        if newline:
            ids += [i for i in range(len(lm.tokenizer)) if "\n" in lm.tokenizer.decode([i]) and i != eos]
        lm.memo[key] = ids
    return lm.memo[key]


def decode(
    lm: LanguageModel,
    encoder: PromptEncoder,
    prompt: Prompt,
    examples: Sequence[Example],
    task: Task,
    demos: DemoSource | None,
    decoding: Decoding,
    *,
    progress: bool = False,
) -> list[str]:
    """The text ``lm`` writes at ``prompt``'s ``[P]`` for each example (``prompt`` already validated)."""
    inputs = []
    for example in examples:
        encoded = encoder.encode(prompt, example, demos(prompt, example, task) if demos else ())
        inputs.append((encoded.before, encoded.soft_before))
    order = sorted(range(len(inputs)), key=lambda i: (-len(inputs[i][0]), i))
    texts: list[str] = [""] * len(inputs)
    with tqdm(total=len(order), desc="decoding", unit="text", disable=not progress, leave=False) as bar:
        for start in range(0, len(order), decoding.batch_size):
            batch = order[start : start + decoding.batch_size]
            for i, text in zip(batch, _generate(lm, prompt, [inputs[i] for i in batch], decoding), strict=True):
                texts[i] = text
            bar.update(len(batch))
    return texts


@torch.inference_mode()
def _generate(lm: LanguageModel, prompt: Prompt, rows: list, decoding: Decoding) -> list[str]:
    """One ``generate`` call on left-padded ``rows`` of ``(ids, soft splices)``."""
    width = max(len(ids) for ids, _ in rows)
    ids = torch.full((len(rows), width), lm.pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    splices = []
    for b, (row, soft) in enumerate(rows):
        pad = width - len(row)
        ids[b, pad:] = torch.tensor(row, dtype=torch.long)
        mask[b, pad:] = 1
        splices += [(b, pad + pos, 0, k) for pos, k in soft]
    ids, mask = ids.to(lm.device), mask.to(lm.device)
    positions = (mask.cumsum(-1) - 1).clamp(min=0)
    soft = [prompt.soft.to(lm.device, lm.dtype)] if prompt.soft is not None else []
    embeds = splice_soft(lm, ids, splices, soft)
    kwargs: dict = {}
    if prompt.deep is not None:
        # generate repeats each input per beam but takes a given cache as it is: give one row per beam
        cache, prefix_mask = prefix_cache(lm, [prompt.deep.to(lm.device, lm.dtype)] * (len(rows) * decoding.num_beams))
        kwargs[lm.cache_argument()] = cache  # the keyword generate takes a starting cache under
        mask = torch.cat([prefix_mask[: len(rows)], mask], dim=1)
        if embeds is not None:  # generate skips as many leading embeddings as the cache holds
            embeds = torch.cat([embeds.new_zeros(len(rows), prefix_mask.shape[1], embeds.shape[2]), embeds], dim=1)
    stops = stop_ids(lm, decoding.stop_at_newline)
    new_tokens = max(1, min(decoding.max_new_tokens, lm.max_length - width))
    out = lm.model.generate(
        **({"inputs_embeds": embeds} if embeds is not None else {"input_ids": ids}),
        attention_mask=mask, position_ids=positions, max_new_tokens=new_tokens, do_sample=False,
        num_beams=decoding.num_beams, eos_token_id=stops or None, pad_token_id=lm.pad_id,
        begin_suppress_tokens=stops or None, **kwargs,
    )
    generated = out if embeds is not None else out[:, width:]
    texts = [lm.tokenizer.decode(row.tolist(), skip_special_tokens=True) for row in generated]
    return [text.split("\n")[0].strip() if decoding.stop_at_newline else text.strip() for text in texts]

