r"""Template grammars: a template with choice points, expanded into a pool of candidate templates.

LM-BFF (Gao et al. 2021) showed that automatically chosen templates match hand-written ones; a
grammar states the space cheaply: ``<<Review: |Text: |>>{sentence}<< It was|\nSentiment:>>[P]``
has two choice points and expands to 3 x 2 = 6 templates. Alternatives are ordinary template text
(``{field}``, ``[T]``, ``[V]``, ``[P]`` and the ``{{ }}`` / ``[[ ]]`` escapes keep their meaning) and
may be empty.

Syntax, on top of the template language of :mod:`template`:

- ``<<a|b|c>>``  a choice point with alternatives ``a``, ``b`` and ``c`` (no nesting);
- ``\<``, ``\|``, ``\>``, ``\\``  a literal ``<``, ``|``, ``>`` or backslash (so ``\<<`` is a literal
  ``<<``); a backslash before any other character is itself literal. ``|`` is only special inside
  a choice point, so outside one it needs no escape.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from ..data.tasks import TaskKind
from ..errors import TemplateError
from .template import parse_template

_ESCAPABLE = "<|>\\"

#: A piece is fixed text (``str``) or a choice point (its alternatives).
Piece = str | tuple[str, ...]


@dataclass(frozen=True)
class Grammar:
    """A template with choice points; ``choices[i]`` are the alternatives of the i-th point."""

    source: str
    pieces: tuple[Piece, ...]

    @property
    def choices(self) -> list[tuple[str, ...]]:
        return [p for p in self.pieces if isinstance(p, tuple)]

    def __len__(self) -> int:
        return math.prod(len(c) for c in self.choices)

    @classmethod
    def parse(cls, text: str) -> Grammar:
        """Parse ``text``, or raise :class:`TemplateError` naming the column and the fix.

        Every alternative is checked once in context (the other points at their first alternative),
        so a typo inside any alternative is reported here rather than midway through a search.
        """
        if not isinstance(text, str):
            raise TemplateError(
                f"a template grammar must be a string, got {type(text).__name__}: "
                "pass text like '<<Review: |Text: >>{sentence}[P]'"
            )
        grammar = cls(text, tuple(_scan(text)))
        grammar._check()
        return grammar

    def render(self, indices: Sequence[int]) -> str:
        """The template picking alternative ``indices[i]`` at choice point ``i``."""
        choices = self.choices
        if len(indices) != len(choices):
            raise TemplateError(
                f"grammar {self.source!r} has {len(choices)} choice point(s), got {len(indices)} "
                "index(es): pass one index per choice point"
            )
        picks = iter(indices)
        out: list[str] = []
        for piece in self.pieces:
            if isinstance(piece, str):
                out.append(piece)
                continue
            k = next(picks)
            if not 0 <= k < len(piece):
                raise TemplateError(
                    f"index {k} is out of range for choice point {piece!r} of grammar {self.source!r}: "
                    f"pick 0..{len(piece) - 1}"
                )
            out.append(piece[k])
        return "".join(out)

    def expand(self) -> Iterator[str]:
        """All ``len(self)`` templates, in a stable order (the last choice point varies fastest).

        Different picks can render the same text (``<<a|>><<|a>>``); callers that score candidates
        drop repeats.
        """
        for indices in itertools.product(*(range(len(c)) for c in self.choices)):
            yield self.render(indices)

    def _check(self) -> None:
        base = [0] * len(self.choices)
        for point, alternatives in enumerate(self.choices):
            for k in range(len(alternatives)):
                indices = base.copy()
                indices[point] = k
                text = self.render(indices)
                try:
                    parse_template(text)
                except TemplateError as error:
                    raise TemplateError(
                        f"grammar {self.source!r}, alternative {alternatives[k]!r} of choice point "
                        f"{point + 1} gives the bad template {text!r}: {error}"
                    ) from None


def escape(text: str) -> str:
    """``text`` with grammar syntax escaped, so :meth:`Grammar.parse` reads it back literally."""
    return "".join("\\" + ch if ch in _ESCAPABLE else ch for ch in text)


def _scan(text: str) -> list[Piece]:
    """Split ``text`` into fixed text and choice points, unescaping ``\\<`` ``\\|`` ``\\>`` ``\\\\``."""
    pieces: list[Piece] = []
    current: list[str] = []  # characters of the fixed text or alternative being read
    alternatives: list[str] | None = None  # not None while inside << >>
    opened = 0
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPABLE:
            current.append(text[i + 1])
            i += 2
            continue
        if text.startswith("<<", i):
            if alternatives is not None:
                raise TemplateError(
                    f"nested '<<' at column {i + 1} of grammar {text!r} (the choice point opened at "
                    f"column {opened + 1} is still open): close it with '>>' first, or write '\\<<' "
                    "for a literal '<<'"
                )
            pieces.append("".join(current))
            current, alternatives, opened = [], [], i
            i += 2
            continue
        if text.startswith(">>", i):
            if alternatives is None:
                raise TemplateError(
                    f"'>>' at column {i + 1} of grammar {text!r} closes no choice point: open one with "
                    "'<<' before it, or write '\\>>' for a literal '>>'"
                )
            alternatives.append("".join(current))
            pieces.append(tuple(alternatives))
            current, alternatives = [], None
            i += 2
            continue
        if ch == "|" and alternatives is not None:
            alternatives.append("".join(current))
            current = []
            i += 1
            continue
        current.append(ch)
        i += 1
    if alternatives is not None:
        raise TemplateError(
            f"the choice point opened at column {opened + 1} of grammar {text!r} is never closed: "
            "add '>>' after its last alternative, or write '\\<<' for a literal '<<'"
        )
    pieces.append("".join(current))
    return [p for p in pieces if p != ""]


# Generic cue phrases before the answer slot. They end the prompt, so they suit masked and causal
# LMs alike (a causal LM cannot condition its answer on text after [P]).
_CLASSIFY_CUES = (
    " It was",
    " This is",
    "\nAnswer:",
    "\nLabel:",
    "\nCategory:",
    " All in all, it was",
    " In summary, it was",
)
_PAIR_CUES = ("\nAnswer:", " Is that right?", "\nQuestion: Do they agree? Answer:", " The relation is")
_FACT_CUES = (" is", " is a", " is located in", " belongs to", ",", ":")
# Generation (table-to-text, summarisation): an optional instruction, the input, a cue for the text.
_WRITE_INSTRUCTIONS = ("", "Describe the data in one sentence.\n", "Write a sentence from the attributes.\n")
_WRITE_CUES = ("\n", "\nDescription:", "\nText:", "\nSentence:", " =>")


def builtin_grammar(fields: Sequence[str], kind: TaskKind = "classification") -> Grammar:
    """A generic pool for a task with these input ``fields``: optional field names, then a cue.

    One field gives LM-BFF-style single-sentence templates (SST-2, TREC); two fields premise /
    hypothesis-style pair templates (NLI, paraphrase); ``kind="fact"`` LAMA-style
    ``{sub_label} <relation cue>[P]`` templates; ``kind="generation"`` an optional instruction, the
    input fields and a cue after which the text is written.
    """
    if not fields:
        raise TemplateError("a built-in grammar needs the task's input fields, e.g. ['sentence']: none were given")
    if kind == "fact":
        body, cues = "".join("{" + name + "}" for name in fields), _FACT_CUES
    elif kind == "generation":
        fields_text = "\n".join(f"<<|{_title(name)}: |Input: >>{{{name}}}" for name in fields)
        body = "<<" + "|".join(escape(i) for i in _WRITE_INSTRUCTIONS) + ">>" + fields_text
        cues = _WRITE_CUES
    elif len(fields) == 1:
        body, cues = f"<<|{_title(fields[0])}: |Input: >>{{{fields[0]}}}", _CLASSIFY_CUES
    else:
        body, cues = "<<\n| >>".join(f"<<|{_title(name)}: >>{{{name}}}" for name in fields), _PAIR_CUES
    return Grammar.parse(body + "<<" + "|".join(escape(c) for c in cues) + ">>[P]")


def _title(field: str) -> str:
    """``sub_label`` -> ``Sub label``: a field's name as a person would label it."""
    return field.replace("_", " ").capitalize()
