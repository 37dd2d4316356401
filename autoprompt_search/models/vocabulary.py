"""Which vocabulary tokens may stand in a prompt or serve as a label word.

AutoPrompt's candidate filter (Shin et al., 2020): no special tokens, no label words, only tokens
that decode to a clean word piece; optionally no capitalised tokens (their fact-retrieval setting).
We also require that a token survives decode → re-encode, so a found prompt can be written out as
text and typed back in; ``word_start`` keeps only tokens that begin a word (a leading space in
BPE vocabularies, no ``##`` in WordPiece), so neighbours never glue together.
"""

from __future__ import annotations

import numpy as np

from .language_model import LanguageModel


def clean_token_mask(lm: LanguageModel, *, word_start: bool = True, allow_capitalized: bool = True) -> np.ndarray:
    """Boolean mask ``(V,)`` of usable tokens, computed once per model and option set."""
    key = ("clean_tokens", word_start, allow_capitalized)
    if key not in lm.memo:
        special = lm.special_ids
        mask = np.zeros(lm.vocab_size, dtype=bool)
        for token in range(lm.vocab_size):
            if token in special:
                continue
            text = lm.decode([token])
            word = text.strip()
            if not word or not word.isprintable() or "\ufffd" in text or not any(ch.isalnum() for ch in word):
                continue
            if word_start and lm.is_causal and not text.startswith(" "):
                continue
            if not allow_capitalized and word[0].isupper():
                continue
            mask[token] = lm.tokenize(text) == [token]
        lm.memo[key] = mask
    return lm.memo[key]
