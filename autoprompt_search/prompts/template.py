"""The template mini-language, parsed by a real scanner into plain segments.

Syntax (ARCHITECTURE.md and README.md, "Templates"):

- ``{field}``        a field of the example, e.g. ``{sentence}``, ``{sub_label}``;
- ``[T]``, ``[T*5]``  discrete trigger slots, filled by a discrete searcher;
- ``[V]``, ``[V*20]`` soft (virtual) token slots, trained by a continuous searcher;
- ``[P]``            the answer slot, exactly once;
- ``{{ }} [[ ]]``    literal braces and brackets; everything else is literal text.

Errors name the column, the problem and the fix, because a typo in a template is the most common
way a search is started wrongly.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ..errors import TemplateError

#: Upper bound on ``[T*n]`` / ``[V*n]``: beyond this no model's context holds the prompt.
MAX_SLOTS = 512

_FIELD_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_SLOT = re.compile(r"(?P<kind>[A-Z])(?:\*(?P<count>-?\d+))?\Z")


@dataclass(frozen=True)
class Text:
    """Literal text, kept byte for byte (spaces and newlines matter to the tokenizer)."""

    text: str


@dataclass(frozen=True)
class Field:
    """An example field, substituted per example."""

    name: str


@dataclass(frozen=True)
class Trigger:
    """``count`` discrete trigger tokens shared by every example."""

    count: int


@dataclass(frozen=True)
class Soft:
    """``count`` trainable soft-token vectors shared by every example."""

    count: int


@dataclass(frozen=True)
class Answer:
    """The answer slot where label words are scored."""


Segment = Text | Field | Trigger | Soft | Answer


@dataclass(frozen=True)
class Template:
    """A parsed template: the source string and its segments in order."""

    source: str
    segments: tuple[Segment, ...]

    @property
    def fields(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(s.name for s in self.segments if isinstance(s, Field)))

    @property
    def n_triggers(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, Trigger))

    @property
    def n_soft(self) -> int:
        return sum(s.count for s in self.segments if isinstance(s, Soft))

    @property
    def answer_index(self) -> int:
        return next(i for i, s in enumerate(self.segments) if isinstance(s, Answer))

    @property
    def text_after_answer(self) -> str:
        """Literal text after ``[P]`` (a causal LM cannot condition its answer on it)."""
        after = self.segments[self.answer_index + 1 :]
        return "".join(s.text if isinstance(s, Text) else "\0" for s in after)

    def check_fields(self, available: Sequence[str]) -> None:
        """Raise if the template uses a field the data does not have."""
        missing = [name for name in self.fields if name not in available]
        if missing:
            have = ", ".join("{" + f + "}" for f in available) or "none"
            raise TemplateError(
                f"template {self.source!r} uses unknown field(s) "
                + ", ".join("{" + m + "}" for m in missing)
                + f"; the data has {have}: use one of those"
            )

    def render(self, trigger_tokens: Sequence[str] | None = None, example: dict[str, str] | None = None) -> str:
        """The template as a person reads it, with found trigger tokens filled in if given."""
        out: list[str] = []
        triggers = iter(trigger_tokens or ())
        for seg in self.segments:
            if isinstance(seg, Text):
                out.append(seg.text)
            elif isinstance(seg, Field):
                out.append(example[seg.name] if example and seg.name in example else "{" + seg.name + "}")
            elif isinstance(seg, Trigger):
                out.append("".join(next(triggers, "[T]") for _ in range(seg.count)))
            elif isinstance(seg, Soft):
                out.append(f"[V*{seg.count}]")
            else:
                out.append("[P]")
        return "".join(out)


def parse_template(source: str) -> Template:
    """Parse ``source`` into a :class:`Template`, or raise :class:`TemplateError` saying where."""
    if not isinstance(source, str):
        raise TemplateError(
            f"a template must be a string, got {type(source).__name__}: pass text like 'Review: {{sentence}} It was[P]'"
        )
    segments: list[Segment] = []
    literal: list[str] = []
    i = 0
    while i < len(source):
        ch = source[i]
        if ch in "{[" and source.startswith(ch * 2, i):
            literal.append(ch)
            i += 2
            continue
        if ch in "}]":
            if source.startswith(ch * 2, i):
                literal.append(ch)
                i += 2
                continue
            opener = "{" if ch == "}" else "["
            raise TemplateError(
                f"unbalanced {ch!r} at column {i + 1} of template {source!r}: "
                f"close a {opener!r} opened before it, or write {ch * 2!r} for a literal {ch!r}"
            )
        if ch in "{[":
            closer = "}" if ch == "{" else "]"
            end = source.find(closer, i + 1)
            nested = source.find(ch, i + 1)
            if end < 0 or (0 <= nested < end):
                raise TemplateError(
                    f"unbalanced {ch!r} at column {i + 1} of template {source!r}: "
                    f"add the closing {closer!r}, or write {ch * 2!r} for a literal {ch!r}"
                )
            if literal:
                segments.append(Text("".join(literal)))
                literal = []
            body = source[i + 1 : end]
            segments.append(_field(body, i, source) if ch == "{" else _slot(body, i, source))
            i = end + 1
            continue
        literal.append(ch)
        i += 1
    if literal:
        segments.append(Text("".join(literal)))
    return _validated(Template(source, tuple(segments)))


def _field(body: str, column: int, source: str) -> Field:
    if not _FIELD_NAME.match(body):
        raise TemplateError(
            f"bad field name {{{body}}} at column {column + 1} of template {source!r}: "
            "a field is a name like {sentence}; write {{ and }} for literal braces"
        )
    return Field(body)


def _slot(body: str, column: int, source: str) -> Segment:
    match = _SLOT.match(body)
    where = f"at column {column + 1} of template {source!r}"
    if not match or match["kind"] not in "TVP":
        raise TemplateError(
            f"unknown slot [{body}] {where}: slots are [T], [T*n], [V], [V*n] and [P]; "
            "write [[ and ]] for literal brackets"
        )
    kind, count = match["kind"], match["count"]
    if kind == "P":
        if count is not None:
            raise TemplateError(f"[P*{count}] {where}: the answer slot takes no count; write [P]")
        return Answer()
    # A count thousands of digits long would make int() itself raise; any count that long is too big.
    n = 1 if count is None else int(count) if len(count) <= 6 else MAX_SLOTS + 1
    if n < 1 or n > MAX_SLOTS:
        raise TemplateError(
            f"[{kind}*{count}] {where}: the count must be between 1 and {MAX_SLOTS}; "
            f"write e.g. [{kind}*5], or leave the slot out"
        )
    return Trigger(n) if kind == "T" else Soft(n)


def _validated(template: Template) -> Template:
    answers = sum(isinstance(s, Answer) for s in template.segments)
    if answers == 0:
        raise TemplateError(
            f"template {template.source!r} has no answer slot [P]: add [P] where the label word goes, "
            "e.g. 'Review: {sentence}\\nSentiment:[P]'"
        )
    if answers > 1:
        raise TemplateError(
            f"template {template.source!r} has {answers} answer slots [P]: keep exactly one"
        )
    return template


def unescape_cli(text: str) -> str:
    r"""Turn the two-character sequences ``\n`` and ``\t`` typed on a command line into newline and tab."""
    return text.replace("\\n", "\n").replace("\\t", "\t")
