"""Prompt splicing, written once: (Prompt, Example) → token ids around the answer slot.

Literal text and field values that stand next to each other are tokenized together, exactly as a
user's rendered prompt would be; only trigger and soft slots and the answer slot split the text.
In-context demonstrations (:mod:`demonstrations`) are rendered with the same template before the
query. Inputs longer than the model allows lose demonstrations first, then tokens from their
longest field, never from the prompt or the answer slot (a warning says so once).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, replace

from ..data.tasks import Example, Task
from ..errors import DataError, PromptFileError, TemplateError
from ..models.language_model import LanguageModel
from ..prompts.prompt import Prompt
from ..prompts.template import Answer, Field, Soft, Text, Trigger
from ..prompts.verbalizer import spaced, word_token_ids
from .deep_prompt import check_deep

log = logging.getLogger(__name__)

#: Tokens kept free for the answer word(s) when an input must be truncated.
ANSWER_RESERVE = 16
_CACHE_LIMIT = 200_000


@dataclass(frozen=True)
class Encoded:
    """Token ids before and after the answer slot, and where soft vectors go.

    ``soft_before``/``soft_after`` hold ``(offset, soft index)`` pairs relative to ``before`` and
    ``after``; ``trigger_before``/``trigger_after`` the offsets of the trigger tokens, in trigger
    order; ``text_before`` is the text right before the slot (it decides label-word spacing).
    """

    before: tuple[int, ...]
    after: tuple[int, ...]
    soft_before: tuple[tuple[int, int], ...]
    soft_after: tuple[tuple[int, int], ...]
    text_before: str
    trigger_before: tuple[int, ...] = ()
    trigger_after: tuple[int, ...] = ()


class PromptEncoder:
    """Turns prompts and examples into :class:`Encoded` ids for one model, caching tokenization."""

    def __init__(self, lm: LanguageModel) -> None:
        self.lm = lm
        self._tokens: dict[str, tuple[int, ...]] = {}
        self._words: dict[tuple[str, str], tuple[int, ...]] = {}
        self._warned_truncation = False

    def tokenize(self, text: str) -> tuple[int, ...]:
        ids = self._tokens.get(text)
        if ids is None:
            if len(self._tokens) > _CACHE_LIMIT:
                self._tokens.clear()
            ids = self._tokens[text] = tuple(self.lm.tokenize(text))
        return ids

    def word_ids(self, word: str, text_before: str) -> tuple[int, ...]:
        """Token ids of a label word at the answer slot (see :func:`verbalizer.word_token_ids`)."""
        key = (word, text_before[-1:])
        if key not in self._words:
            unk = self.lm.tokenizer.unk_token_id
            unk = unk if unk is not None and unk not in self.lm.special_ids - {unk} else None
            self._words[key] = word_token_ids(lambda t: list(self.tokenize(t)), word, text_before, unk_id=unk)
        return self._words[key]

    def validate(self, prompt: Prompt, task: Task) -> Prompt:
        """Check a prompt against the task and model before any scoring; return it fitted to the task."""
        template = prompt.template
        template.check_fields(task.fields)
        if self.lm.is_causal and template.text_after_answer.strip():
            raise TemplateError(
                f"template {template.source!r} has {template.text_after_answer!r} after [P]; a causal LM "
                "predicts the answer before it sees later text, so that text cannot be scored: "
                "move it before [P] or drop it"
            )
        if template.n_triggers and len(prompt.trigger_ids) != template.n_triggers:
            raise TemplateError(
                f"template {template.source!r} has {template.n_triggers} [T] slot(s) but the prompt has "
                f"{len(prompt.trigger_ids)} trigger token(s): run a discrete searcher to fill them"
            )
        if template.n_soft and (prompt.soft is None or prompt.soft.shape[0] != template.n_soft):
            raise TemplateError(
                f"template {template.source!r} has {template.n_soft} [V] slot(s) but the prompt has no "
                "matching soft vectors: train them with a soft-prompt searcher"
            )
        prompt.check_model(self.lm.name, self.lm.vocab_size, self.lm.hidden_size)
        if prompt.deep is not None:
            check_deep(prompt.deep, self.lm, prompt.model.name if prompt.model else None)
        if bad := [i for i in prompt.trigger_ids if not 0 <= i < self.lm.vocab_size]:
            raise PromptFileError(
                f"trigger ids {bad} are outside this model's vocabulary of {self.lm.vocab_size}: the prompt was "
                "made for another model; evaluate it with that model or search again"
            )
        if prompt.head is not None:
            return _fit_head(prompt, task, self.lm.hidden_size)
        if task.kind == "classification":
            if prompt.verbalizer is None:
                raise TemplateError(
                    f"task {task.name!r} is a classification task: give a verbalizer, e.g. "
                    '\'{"0": "negative", "1": "positive"}\''
                )
            prompt = replace(prompt, verbalizer=prompt.verbalizer.for_labels(task.labels))
        return prompt

    def encode(self, prompt: Prompt, example: Example, demos: Sequence[Example] = ()) -> Encoded:
        """Ids of ``example`` under ``prompt``, after the demonstrations ``demos`` (rendered with the
        same template, joined by ``prompt.demos.separator``). An input too long for the model loses
        demonstrations first (the farthest from the query first), then tokens of its longest field."""
        values = _field_values(prompt, example)
        rendered = [(_field_values(prompt, d), self._demo_word(prompt, d)) for d in demos]
        encoded = self._encode(prompt, values, rendered)
        limit = self.lm.max_length - ANSWER_RESERVE
        while len(encoded.before) + len(encoded.after) > limit:
            if rendered:
                rendered = rendered[1:]
                encoded = self._encode(prompt, values, rendered)
                continue
            excess = len(encoded.before) + len(encoded.after) - limit
            longest = max(values, key=lambda k: len(self.tokenize(values[k])), default=None)
            field_ids = self.tokenize(values[longest]) if longest else ()
            if len(field_ids) <= 1:
                raise TemplateError(
                    f"the prompt alone needs {len(encoded.before) + len(encoded.after)} tokens but the model "
                    f"takes {self.lm.max_length}: shorten the template or use fewer [T]/[V] slots"
                )
            if not self._warned_truncation:
                log.warning("an input is longer than the model's %d tokens: truncating its field %r "
                            "(the prompt and answer slot are kept); further truncations are silent",
                            self.lm.max_length, longest)
                self._warned_truncation = True
            values[longest] = self.lm.decode(list(field_ids[: max(1, len(field_ids) - excess - 1)]))
            encoded = self._encode(prompt, values, rendered)
        return encoded

    @staticmethod
    def _demo_word(prompt: Prompt, demo: Example) -> str:
        """The word a demonstration shows at ``[P]``: its label's first word, or the label itself where
        there are no label words (a fact's object; a linear head's class name)."""
        if demo.label is None:
            raise DataError("a demonstration has no label: the demonstration pool (train split) must be labelled")
        if prompt.verbalizer is None:
            return str(demo.label)
        return prompt.verbalizer.words[str(demo.label)][0]

    def label_word_ids(self, prompt: Prompt, encoded: Encoded) -> list[list[tuple[int, ...]]]:
        """For each label (verbalizer order), the token ids of each of its words."""
        assert prompt.verbalizer is not None
        return [[self.word_ids(w, encoded.text_before) for w in words] for words in prompt.verbalizer.words.values()]

    def _encode(self, prompt: Prompt, values: dict[str, str], demos: Sequence[tuple[dict[str, str], str]]) -> Encoded:
        parts: list[list[int]] = [list(self.lm.prefix_ids), []]
        softs: list[list[tuple[int, int]]] = [[], []]
        triggers: list[list[int]] = [[], []]
        side, buffer, text_before = 0, "", ""
        separator = prompt.demos.separator if prompt.demos else ""
        # Each demonstration, then the query: (field values, the demonstration's word or None).
        for fields, word in [*demos, (values, None)]:
            soft_index = trigger_index = 0
            for segment in prompt.template.segments:
                if isinstance(segment, Text):
                    buffer += segment.text
                elif isinstance(segment, Field):
                    buffer += fields[segment.name]
                elif isinstance(segment, Answer) and word is not None:
                    buffer = buffer.rstrip(" \t")
                    buffer += spaced(word, buffer or ("x" if parts[0][len(self.lm.prefix_ids):] else ""))
                else:
                    if isinstance(segment, Answer):
                        buffer = buffer.rstrip(" \t")
                        text_before = buffer or ("x" if parts[0][len(self.lm.prefix_ids):] else "")
                    parts[side].extend(self.tokenize(buffer))
                    buffer = ""
                    if isinstance(segment, Trigger):
                        if word is None:  # only the query's trigger positions are reported
                            triggers[side].extend(range(len(parts[side]), len(parts[side]) + segment.count))
                        parts[side].extend(prompt.trigger_ids[trigger_index : trigger_index + segment.count])
                        trigger_index += segment.count
                    elif isinstance(segment, Soft):
                        for _ in range(segment.count):
                            softs[side].append((len(parts[side]), soft_index))
                            parts[side].append(self.lm.pad_id)
                            soft_index += 1
                    else:
                        side = 1
            if word is not None:
                buffer += separator
        parts[1].extend(self.tokenize(buffer if not self.lm.is_causal else ""))
        parts[1].extend(self.lm.suffix_ids)
        if self.lm.is_causal and not parts[0]:  # nothing to read before [P]: start from the boundary token
            parts[0].append(self.lm.start_id)
        return Encoded(tuple(parts[0]), tuple(parts[1]), tuple(softs[0]), tuple(softs[1]), text_before,
                       tuple(triggers[0]), tuple(triggers[1]))


def _field_values(prompt: Prompt, example: Example) -> dict[str, str]:
    """The example's values of the template's fields, as text."""
    values = {}
    for name in prompt.template.fields:
        if name not in example.fields:
            raise DataError(
                f"an example lacks the field {name!r} the template uses (it has {sorted(example.fields)}); "
                "fix the data or the template"
            )
        values[name] = str(example.fields[name])
    return values


def _fit_head(prompt: Prompt, task: Task, hidden_size: int) -> Prompt:
    """A prompt with a linear head, its rows reordered to the task's labels."""
    if task.kind != "classification":
        raise TemplateError(f"task {task.name!r} is a fact task: a linear head classifies, it cannot name objects")
    if sorted(prompt.head_labels) != sorted(task.labels) or prompt.head.shape != (len(task.labels), hidden_size + 1):
        raise PromptFileError(
            f"the prompt's head has shape {list(prompt.head.shape)} for labels {list(prompt.head_labels)}, but task "
            f"{task.name!r} has labels {list(task.labels)} and the model hidden size {hidden_size}: train a head "
            "for this task and model"
        )
    rows = [prompt.head_labels.index(label) for label in task.labels]
    return replace(prompt, head=prompt.head[rows], head_labels=tuple(task.labels))


def check_examples(examples: Sequence[Example], task: Task) -> None:
    """Every labelled example of a classification task must carry one of the task's labels."""
    if task.kind != "classification":
        return
    known = set(task.labels)
    unknown = sorted({str(e.label) for e in examples if e.label is not None and e.label not in known})
    if unknown:
        raise DataError(f"labels {unknown} are not among the task's labels {list(task.labels)}; fix the data")
