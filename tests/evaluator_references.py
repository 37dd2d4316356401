"""Independent references for the Evaluator tests: full forward passes of the rendered prompt text.

Every reference runs the *whole* model (``model(...).logits``) on one unpadded sequence built from
the rendered text (or from ids and embeddings spliced by hand), and reads log-softmax values off it.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.prompts.verbalizer import Verbalizer
from autoprompt_search.scoring.evaluator import Evaluator

ATOL = 1e-4
MULTI = "fantastic"  # not in the tokenizer's corpus: several tokens
SENTIMENT_WORDS = {"0": ["bad", "terrible"], "1": ["good", MULTI]}


def ids_of(lm: LanguageModel, text: str, *, special: bool = False) -> list[int]:
    return list(lm.tokenizer(text, add_special_tokens=special)["input_ids"])


def word_ids(lm: LanguageModel, word: str, *, at_line_start: bool = False) -> list[int]:
    ids = ids_of(lm, word if at_line_start else " " + word)
    assert ids and lm.tokenizer.unk_token_id not in ids
    return ids


@torch.no_grad()
def full_logprobs(
    lm: LanguageModel, ids: Sequence[int] | None = None, embeds: torch.Tensor | None = None
) -> torch.Tensor:
    """(T, V) log-probs of one sequence from the complete model, no padding, no attention mask."""
    if embeds is not None:
        logits = lm.model(inputs_embeds=embeds.unsqueeze(0)).logits[0]
    else:
        logits = lm.model(torch.tensor([list(ids or [])])).logits[0]
    return torch.log_softmax(logits.double(), dim=-1)


def teacher_forced(lm: LanguageModel, context: list[int], word: list[int], reduction: str = "sum") -> float:
    """Causal LM: log p(word | context), token by token, from one full forward of context + word."""
    lp = full_logprobs(lm, context + word[:-1])
    values = [lp[len(context) - 1 + j, t].item() for j, t in enumerate(word)]
    return float(np.sum(values) if reduction == "sum" else np.mean(values))


def masked_word(lm: LanguageModel, before: str, word: list[int], after: str, reduction: str = "sum") -> float:
    """Masked LM: one ``<mask>`` per word token at [P] in the rendered text, each scored on its own."""
    text = before + lm.tokenizer.mask_token * len(word) + after
    ids = ids_of(lm, text, special=True)
    positions = [i for i, t in enumerate(ids) if t == lm.mask_id]
    assert len(positions) == len(word)
    lp = full_logprobs(lm, ids)
    values = [lp[p, t].item() for p, t in zip(positions, word, strict=True)]
    return float(np.sum(values) if reduction == "sum" else np.mean(values))


def class_scores(lm: LanguageModel, verbalizer: Verbalizer, before: str, after: str = "") -> list[float]:
    """Reference class log-probs: log-sum-exp over each label's words, text rendered by hand."""
    line_start = before == "" or before.endswith("\n")
    out = []
    for words in verbalizer.words.values():
        scores = []
        for w in words:
            ids = word_ids(lm, w, at_line_start=line_start)
            if lm.is_causal:
                scores.append(teacher_forced(lm, ids_of(lm, before, special=True), ids, verbalizer.reduction))
            else:
                scores.append(masked_word(lm, before, ids, after, verbalizer.reduction))
        out.append(float(np.logaddexp.reduce(scores)))
    return out


def one_by_one(
    evaluator: Evaluator, prompts: Sequence[Prompt], examples: Sequence[Example], task: Task
) -> np.ndarray:
    rows = [[evaluator.score([p], [e], task).scores[0, 0] for e in examples] for p in prompts]
    return np.array(rows)


def prompts_for(lm: LanguageModel) -> list[Prompt]:
    if lm.is_causal:
        templates = ["Review: {sentence}\nSentiment:[P]", "{sentence} It was [P]", "{sentence}\n[P]"]
    else:
        templates = ["{sentence} It was [P].", "Review: {sentence}\nSentiment:[P]", "[P] : {sentence}"]
    verbalizers = [SENTIMENT_WORDS, {"0": "negative", "1": "positive"}, {"0": "bad", "1": ["good", "great"]}]
    return [Prompt.build(t, v) for t, v in zip(templates, verbalizers, strict=True)]
