"""Reference likelihood for generation tasks: the training loss and the cheap selection signal.

A generation example is scored by the teacher-forced log-probability of each of its references
after the prompt, followed by the model's end-of-text token (Li & Liang 2021 append it too, so a
trained prompt learns to stop). The Evaluator plans these like multi-token label words — one row
per reference, its first token read where the prompt ends — so batching, prefix reuse (the
references of one input share the prompt's keys and values) and deep/soft prompts all apply
unchanged. A reference too long for the model's context is refused, never truncated.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from ..data.tasks import Example
from ..errors import DataError
from .encoding import Encoded, PromptEncoder


def reference_texts(example: Example) -> tuple[str, ...]:
    """An example's reference texts (its label alone where it lists none)."""
    return example.references or ((str(example.label),) if example.label is not None else ())


def reference_ids(encoder: PromptEncoder, example: Example, encoded: Encoded) -> list[tuple[int, ...]]:
    """Token ids of each reference at the answer slot, each ending with the end-of-text token."""
    lm = encoder.lm
    refs = reference_texts(example)
    if not refs:
        raise DataError(f"the example {dict(example.fields)} has no reference text: give every input of a generation "
                        "task at least one reference (a 'target' value), or drop it")
    eos = lm.tokenizer.eos_token_id
    out = []
    for ref in refs:
        ids = (*encoder.word_ids(ref, encoded.text_before), *(() if eos is None else (int(eos),)))
        if len(encoded.before) + len(ids) - 1 > lm.max_length:
            raise DataError(
                f"the reference {ref[:60]!r}... of the input {dict(example.fields)} needs {len(ids)} tokens after a "
                f"{len(encoded.before)}-token prompt, more than the model's {lm.max_length}: shorten that reference "
                "(or its input/demonstrations), or drop that row"
            )
        out.append(ids)
    return out


def reference_likelihood(
    logprob: np.ndarray, words: Sequence[Sequence[Sequence[Sequence[int]]]], shape: tuple[int, int]
) -> tuple[np.ndarray, np.ndarray]:
    """Per (prompt, example) pair, the mean log-prob of a reference and its mean token count, each
    ``shape`` (C, E), from the query answers ``logprob`` and the plan's ``words`` (pair → [refs] → queries)."""
    lp = np.array([np.mean([logprob[q].sum() for q in pair[0]]) for pair in words])
    tokens = np.array([np.mean([len(q) for q in pair[0]]) for pair in words])
    return lp.reshape(shape), tokens.reshape(shape)
