"""The template mini-language: segments, escapes, rendering, and errors that say where."""

from __future__ import annotations

import re

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from autoprompt_search.errors import AutopromptError, TemplateError
from autoprompt_search.prompts.template import (
    MAX_SLOTS,
    Answer,
    Field,
    Soft,
    Text,
    Trigger,
    parse_template,
    unescape_cli,
)


def column_of(error: pytest.ExceptionInfo[TemplateError]) -> int:
    match = re.search(r"column (\d+)", str(error.value))
    assert match, f"no column in {error.value}"
    return int(match.group(1))


# --- segments ------------------------------------------------------------------------------------


def test_fields_and_answer_keep_literal_text_byte_for_byte() -> None:
    template = parse_template("Review: {sentence}\nSentiment:[P]")
    assert template.segments == (Text("Review: "), Field("sentence"), Text("\nSentiment:"), Answer())
    assert template.fields == ("sentence",)
    assert template.n_triggers == 0 and template.n_soft == 0
    assert template.answer_index == 3
    assert template.text_after_answer == ""


def test_trigger_and_soft_counts() -> None:
    template = parse_template("{sentence}[T*3] [T] x[V*2][V]{sentence} [P].")
    assert template.segments == (
        Field("sentence"),
        Trigger(3),
        Text(" "),
        Trigger(1),
        Text(" x"),
        Soft(2),
        Soft(1),
        Field("sentence"),
        Text(" "),
        Answer(),
        Text("."),
    )
    assert template.fields == ("sentence",)  # each field once, in order of first use
    assert template.n_triggers == 4
    assert template.n_soft == 3
    assert template.text_after_answer == "."


def test_several_fields_in_order() -> None:
    template = parse_template("{sentence1} ? [P] , {sentence2}")
    assert template.fields == ("sentence1", "sentence2")
    assert template.text_after_answer == " , \0"


def test_escapes_are_literal_braces_and_brackets() -> None:
    template = parse_template("{{x}} [[T]] {{{a}}} [[[P]]]")
    assert template.segments == (Text("{x} [T] {"), Field("a"), Text("} ["), Answer(), Text("]"))
    assert template.fields == ("a",)


def test_max_slots_is_accepted() -> None:
    assert parse_template(f"[T*{MAX_SLOTS}][P]").n_triggers == MAX_SLOTS


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("source", "needle"),
    [
        ("{sentence} It was", "no answer slot"),
        ("", "no answer slot"),
        ("[P] and [P]", "2 answer slots"),
    ],
)
def test_answer_slot_must_occur_exactly_once(source: str, needle: str) -> None:
    with pytest.raises(TemplateError, match=needle):
        parse_template(source)


@pytest.mark.parametrize(
    ("source", "column", "needle"),
    [
        ("abc [X] [P]", 5, "unknown slot [X]"),
        ("ab[T*0][P]", 3, "between 1 and"),
        ("[P][V*-1]", 4, "between 1 and"),
        ("[P] [T*100000]", 5, "between 1 and"),
        ("[P] [T*" + "9" * 5000 + "]", 5, "between 1 and"),  # int() of 5000 digits would itself raise
        (f"[P][T*{MAX_SLOTS + 1}]", 4, "between 1 and"),
        ("[P*2]", 1, "takes no count"),
        ("[t][P]", 1, "unknown slot"),
        ("[][P]", 1, "unknown slot"),
        ("[T *2][P]", 1, "unknown slot"),
        ("x {sentence [P]", 3, "unbalanced '{'"),
        ("x {sentence", 3, "unbalanced '{'"),
        ("[P]]", 4, "unbalanced ']'"),
        ("ab } [P]", 4, "unbalanced '}'"),
        ("[P [P]", 1, "unbalanced '['"),
        ("{} [P]", 1, "bad field name"),
        ("[P] {1st}", 5, "bad field name"),
        ("[P] {a b}", 5, "bad field name"),
    ],
)
def test_errors_name_the_column(source: str, column: int, needle: str) -> None:
    with pytest.raises(TemplateError) as error:
        parse_template(source)
    assert needle in str(error.value)
    assert column_of(error) == column


def test_errors_suggest_a_fix() -> None:
    with pytest.raises(TemplateError, match=r"write \[\[ and \]\] for literal brackets"):
        parse_template("[X][P]")
    with pytest.raises(TemplateError, match=r"'\}\}' for a literal"):
        parse_template("a}[P]")
    with pytest.raises(TemplateError, match="add \\[P\\]"):
        parse_template("no slot")


def test_template_error_is_an_autoprompt_error() -> None:
    with pytest.raises(AutopromptError):
        parse_template("[X]")


def test_non_string_template_is_refused() -> None:
    with pytest.raises(TemplateError, match="must be a string"):
        parse_template(None)  # type: ignore[arg-type]


# --- render / check_fields -------------------------------------------------------------------------


def test_render_with_and_without_triggers() -> None:
    template = parse_template("{sentence}[T*2] so[V*3] it was [P] [[ok]]")
    assert template.render() == "{sentence}[T][T] so[V*3] it was [P] [ok]"
    assert template.render([" very", " much"]) == "{sentence} very much so[V*3] it was [P] [ok]"
    assert template.render([" a"], {"sentence": "Fine."}) == "Fine. a[T] so[V*3] it was [P] [ok]"
    assert template.render(example={"other": "x"}).startswith("{sentence}")


def test_check_fields() -> None:
    template = parse_template("{premise} ? [P] , {hypothesis}")
    template.check_fields(["premise", "hypothesis", "idx"])
    with pytest.raises(TemplateError) as error:
        template.check_fields(["premise", "sentence"])
    assert "{hypothesis}" in str(error.value) and "{sentence}" in str(error.value)
    assert "{premise}" not in str(error.value).split("uses unknown field(s)")[1].split(";")[0]
    with pytest.raises(TemplateError, match="the data has none"):
        template.check_fields([])


def test_unescape_cli() -> None:
    assert unescape_cli(r"Review: {sentence}\nSentiment:\t[P]") == "Review: {sentence}\nSentiment:\t[P]"


# --- fuzzing ---------------------------------------------------------------------------------------

TEMPLATE_ALPHABET = st.sampled_from([*"{}[]TVPX*-0123456789 ab_\n", "[P]", "[T*", "{sentence}", "]]", "[["])


@settings(max_examples=400, deadline=None, database=None)
@given(st.one_of(st.text(), st.lists(TEMPLATE_ALPHABET, max_size=30).map("".join)))
def test_any_text_parses_or_raises_template_error(source: str) -> None:
    try:
        template = parse_template(source)
    except TemplateError:
        return
    assert sum(isinstance(s, Answer) for s in template.segments) == 1
    for segment in template.segments:
        if isinstance(segment, (Trigger, Soft)):
            assert 1 <= segment.count <= MAX_SLOTS
    # rendering a parsed template never fails and keeps every literal character
    rendered = template.render()
    for segment in template.segments:
        if isinstance(segment, Text):
            assert segment.text in rendered
