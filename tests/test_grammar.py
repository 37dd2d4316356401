"""Template grammars: choice points, escapes, rendering, expansion, errors and the built-in pools."""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from autoprompt_search.errors import TemplateError
from autoprompt_search.prompts.grammar import Grammar, builtin_grammar, escape
from autoprompt_search.prompts.template import parse_template

ISSUE_EXAMPLE = "<<Review: |Text: |>>{sentence}<<| It was| In summary, it was|\nSentiment:>>[P]"


def test_issue_example_choices_render_and_count() -> None:
    grammar = Grammar.parse(ISSUE_EXAMPLE)
    assert grammar.choices == [("Review: ", "Text: ", ""), ("", " It was", " In summary, it was", "\nSentiment:")]
    assert len(grammar) == 12
    assert grammar.render([0, 3]) == "Review: {sentence}\nSentiment:[P]"
    assert grammar.render([2, 0]) == "{sentence}[P]"


def test_expand_is_every_combination_in_a_stable_order() -> None:
    grammar = Grammar.parse("<<a|b>>{x}<<1|2|3>>[P]")
    expanded = list(grammar.expand())
    assert expanded == ["a{x}1[P]", "a{x}2[P]", "a{x}3[P]", "b{x}1[P]", "b{x}2[P]", "b{x}3[P]"]
    assert len(expanded) == len(grammar)
    assert expanded == list(grammar.expand())
    for text in expanded:
        parse_template(text)


def test_plain_template_is_a_grammar_of_one() -> None:
    grammar = Grammar.parse("Review: {sentence} It was[P]")
    assert grammar.choices == [] and len(grammar) == 1
    assert list(grammar.expand()) == ["Review: {sentence} It was[P]"]
    assert grammar.render([]) == "Review: {sentence} It was[P]"


def test_alternatives_may_hold_fields_slots_and_template_escapes() -> None:
    grammar = Grammar.parse("<<{a}|[T*2]{a}|{{{a}}}>> [[x]]<<[P]|:[P]>>")
    assert grammar.render([2, 1]) == "{{{a}}} [[x]]:[P]"
    assert parse_template(grammar.render([1, 0])).n_triggers == 2


@pytest.mark.parametrize(
    ("source", "literal"),
    [
        (r"a \<< b{x}[P]", "a << b{x}[P]"),
        (r"a \>> b{x}[P]", "a >> b{x}[P]"),
        (r"<<x\|y|z>>{x}[P]", "x|y{x}[P]"),
        (r"<<\\|z>>{x}[P]", "\\{x}[P]"),
        (r"a\b|c{x}[P]", "a\\b|c{x}[P]"),  # other backslashes and | outside a choice are literal
    ],
)
def test_escapes(source: str, literal: str) -> None:
    assert Grammar.parse(source).render([0] * len(Grammar.parse(source).choices)) == literal


@given(st.text(max_size=30))
def test_escape_round_trips_any_text(text: str) -> None:
    grammar = Grammar.parse(
        escape(text.replace("{", "{{").replace("}", "}}").replace("[", "[[").replace("]", "]]")) + "[P]"
    )
    assert grammar.choices == []
    assert parse_template(grammar.render([])).render() == text + "[P]"


@pytest.mark.parametrize(
    ("source", "column", "fix"),
    [
        ("<<a|b{x}[P]", 1, "add '>>'"),
        ("<<a|<<b>>>>{x}[P]", 5, "close it with '>>' first"),
        ("{x} >> [P]", 5, r"'\>>'"),
    ],
)
def test_syntax_errors_name_column_and_fix(source: str, column: int, fix: str) -> None:
    with pytest.raises(TemplateError) as error:
        Grammar.parse(source)
    assert int(re.search(r"column (\d+)", str(error.value)).group(1)) == column
    assert fix in str(error.value)


def test_a_bad_alternative_is_reported_at_parse_time() -> None:
    with pytest.raises(TemplateError, match=r"alternative '\{oops' of choice point 2.*unbalanced"):
        Grammar.parse("<<a|b>>{x}<< is|{oops>>[P]")
    with pytest.raises(TemplateError, match="no answer slot"):
        Grammar.parse("<<a|b>>{x}")
    with pytest.raises(TemplateError, match="must be a string"):
        Grammar.parse(None)  # type: ignore[arg-type]


def test_render_rejects_wrong_indices() -> None:
    grammar = Grammar.parse(ISSUE_EXAMPLE)
    with pytest.raises(TemplateError, match="2 choice point"):
        grammar.render([0])
    with pytest.raises(TemplateError, match=r"pick 0\.\.3"):
        grammar.render([0, 4])


@pytest.mark.parametrize(
    ("fields", "kind", "needle"),
    [
        (["sentence"], "classification", "Sentence: {sentence} It was[P]"),
        (["premise", "hypothesis"], "classification", "Premise: {premise}\nHypothesis: {hypothesis}\nAnswer:[P]"),
        (["sub_label"], "fact", "{sub_label} is located in[P]"),
    ],
)
def test_builtin_pools_fit_the_task_fields(fields: list[str], kind: str, needle: str) -> None:
    grammar = builtin_grammar(fields, kind)  # type: ignore[arg-type]
    templates = list(grammar.expand())
    assert needle in templates
    for text in templates:
        template = parse_template(text)
        assert set(template.fields) == set(fields)
        assert template.text_after_answer == ""  # usable by causal LMs


def test_builtin_pool_needs_fields() -> None:
    with pytest.raises(TemplateError, match="input fields"):
        builtin_grammar([])
