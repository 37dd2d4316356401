"""Label → label words, and the token ids those words become at the answer slot.

BPE tokenizers (GPT-2, Llama 3, SmolLM2, RoBERTa) spell a word differently with and without a
leading space. A word is scored as the model would write it after the prompt's text: ``" positive"``
after ``Sentiment:`` or ``It was``, ``"positive"`` right after a newline. Users write plain words;
the spacing is handled here, once.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ..errors import VerbalizerError

Reduction = Literal["sum", "mean"]


@dataclass(frozen=True)
class Verbalizer:
    """Maps each label to one or more words; a class scores the log-sum-exp of its words' scores.

    A multi-token word scores the ``reduction`` (sum, the default, or mean) of its tokens'
    log-probs; the choice is saved with the prompt.
    """

    words: Mapping[str, tuple[str, ...]]
    reduction: Reduction = "sum"

    def __post_init__(self) -> None:
        if not self.words:
            raise VerbalizerError('the verbalizer is empty: map each label to a word, e.g. {"0": "negative"}')
        if self.reduction not in ("sum", "mean"):
            raise VerbalizerError(f"unknown reduction {self.reduction!r}: use 'sum' or 'mean'")
        for label, words in self.words.items():
            if not words or any(not isinstance(w, str) or not w.strip() for w in words):
                raise VerbalizerError(
                    f"label {label!r} has an empty label word: give it a non-empty word, e.g. "
                    f'{{"{label}": "great"}}'
                )

    @classmethod
    def parse(cls, spec: str | Mapping[str, Any], *, reduction: Reduction = "sum") -> Verbalizer:
        """From a JSON object string or a dict: label → word, or label → [words]."""
        if isinstance(spec, str):
            try:
                spec = json.loads(spec)
            except (ValueError, RecursionError) as error:  # JSONDecodeError, over-long integers, deep nesting
                detail = f"{error.msg} at column {error.colno}" if isinstance(error, json.JSONDecodeError) else error
                raise VerbalizerError(
                    f"the verbalizer is not valid JSON ({detail}): "
                    'write it like \'{"0": "negative", "1": "positive"}\''
                ) from None
        if not isinstance(spec, Mapping):
            raise VerbalizerError(
                'the verbalizer must be a JSON object of label → word(s), e.g. {"0": "bad", "1": "good"}'
            )
        words: dict[str, tuple[str, ...]] = {}
        for label, value in spec.items():
            values = [value] if isinstance(value, str) else value
            if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
                raise VerbalizerError(f"label {label!r} must map to a word or a list of words, got {value!r}")
            words[str(label)] = tuple(values)
        return cls(words, reduction)

    @property
    def labels(self) -> tuple[str, ...]:
        return tuple(self.words)

    def for_labels(self, labels: Sequence[str]) -> Verbalizer:
        """This verbalizer checked against a task's labels, its words in the task's label order."""
        missing = [label for label in labels if label not in self.words]
        if missing:
            raise VerbalizerError(
                f"label(s) {missing} occur in the data but not in the verbalizer: add a word for each, "
                f"e.g. {json.dumps({label: 'word' for label in missing})}"
            )
        extra = [label for label in self.words if label not in labels]
        if extra:
            raise VerbalizerError(
                f"verbalizer label(s) {extra} do not occur in the data (its labels: {list(labels)}): "
                "remove them or fix the label spelling"
            )
        return Verbalizer({label: self.words[label] for label in labels}, self.reduction)

    def to_json(self) -> dict[str, Any]:
        return {"words": {k: list(v) for k, v in self.words.items()}, "reduction": self.reduction}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Verbalizer:
        return cls.parse(data["words"], reduction=data.get("reduction", "sum"))


def spaced(word: str, text_before: str) -> str:
    """The word as the model writes it after ``text_before``: with a leading space unless it
    starts a line (or the whole input)."""
    word = word.strip()
    if not text_before or text_before.endswith("\n"):
        return word
    return " " + word


def word_token_ids(tokenize: Any, word: str, text_before: str, *, unk_id: int | None = None) -> tuple[int, ...]:
    """Token ids of ``word`` at the answer slot, as the tokenizer splits it in context.

    The ids are read off ``anchor + word`` minus ``anchor`` (the last characters before the slot), so
    tokenizers that change a word's first piece by context (SentencePiece's ``▁``) get it right.
    """
    text = spaced(word, text_before)
    anchor = text_before[-1:] if text_before else ""
    base = tokenize(anchor) if anchor else []
    joined = tokenize(anchor + text) if anchor else tokenize(text)
    ids = joined[len(base) :] if joined[: len(base)] == base else tokenize(text)
    if not ids or (unk_id is not None and unk_id in ids):
        raise VerbalizerError(
            f"label word {word!r} is unknown to the tokenizer (it becomes {ids}): choose a word the model knows"
        )
    return tuple(ids)

