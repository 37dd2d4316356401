"""Template mutations and model-proposed (APE) templates."""

from __future__ import annotations

import numpy as np
import pytest

from autoprompt_search.data.tasks import Example
from autoprompt_search.errors import ModelError
from autoprompt_search.models.vocabulary import clean_token_mask
from autoprompt_search.prompts.template import parse_template
from autoprompt_search.searchers.candidates.mutations import OPERATIONS, mutants, mutate, nearest_tokens, to_source
from autoprompt_search.searchers.candidates.proposals import instruction_of, propose_templates

PARENT = "Review: {sentence} [T*2]\nSentiment was[P]"


@pytest.mark.parametrize("source", [PARENT, "{{x}} [[y]] {a}[V*3][P].", "{sentence}[P]"])
def test_to_source_inverts_parse(source: str) -> None:
    assert to_source(parse_template(source).segments) == source


def test_mutations_keep_fields_slots_and_answer(tiny_causal_lm) -> None:
    rng = np.random.default_rng(0)
    children = mutants([PARENT], 12, rng=rng, lm=tiny_causal_lm, bank=[" It was", "\nAnswer:"])
    assert len(children) == len(set(children)) > 4 and PARENT not in children
    for child in children:
        template = parse_template(child)
        assert template.fields == ("sentence",) and template.n_triggers == 2
        assert template.text_after_answer == ""


def test_each_operation_changes_only_literal_text(tiny_causal_lm) -> None:
    seen = set()
    for seed in range(40):
        rng = np.random.default_rng(seed)
        child = mutate("{sentence} it was[P]", rng=rng, lm=tiny_causal_lm, bank=[" so"])
        if child is not None:
            assert child.startswith("{sentence}") and child.endswith("[P]")
            seen.add(child)
    assert "{sentence} it[P]" in seen or "{sentence} was[P]" in seen  # a deletion
    assert any(" so" in child for child in seen)  # an insertion or a swap
    assert len(OPERATIONS) == 4


def test_mutants_are_seeded(tiny_causal_lm) -> None:
    def run() -> list[str]:
        return mutants([PARENT], 6, rng=np.random.default_rng(5), lm=tiny_causal_lm, bank=[" It was"])

    assert run() == run()


def test_nearest_tokens_are_clean_and_exclude_the_token(tiny_causal_lm) -> None:
    token = tiny_causal_lm.tokenize(" movie")[0]
    near = nearest_tokens(tiny_causal_lm, token, 5)
    assert len(near) == 5 and token not in near
    assert clean_token_mask(tiny_causal_lm)[near].all()


@pytest.mark.parametrize(
    ("reply", "instruction"),
    [
        ("Instruction: Label each review by its overall tone.", "Label each review by its overall tone."),
        ("Here's a possible instruction for labeling reviews:\n\n\"Decide if the review likes the film. More",
         "Decide if the review likes the film."),
        ("Sort the reviews:\n- a", "Sort the reviews"),
        ("ok\n\n", None),
        (" ".join(["word"] * 40), None),
    ],
)
def test_instruction_of_keeps_one_short_sentence(reply: str, instruction: str | None) -> None:
    assert instruction_of(reply) == instruction


class _Writer:
    """A stand-in model that writes fixed replies (the real model's replies are random text here)."""

    def generate(self, request: str, *, samples: int, max_new_tokens: int, seed: int) -> list[str]:
        assert "good" in request and "bad" in request and "great film" in request
        return ["Say {whether} the [review] is good.", "no", "Say {whether} the [review] is good."][:samples]


def test_propose_templates_puts_instructions_before_the_base() -> None:
    examples = [Example({"sentence": "a great film"}, "1"), Example({"sentence": "dull"}, "0")]
    found = propose_templates(_Writer(), examples, {"0": "bad", "1": "good"}, ["sentence"],  # type: ignore[arg-type]
                              "{sentence} It was[P]", samples=3, seed=0)
    assert found == ["Say {{whether}} the [[review]] is good.\n{sentence} It was[P]"]
    parse_template(found[0])


def test_generate_is_seeded_and_masked_lms_refuse(tiny_causal_lm, tiny_masked_lm) -> None:
    def run() -> list[str]:
        return tiny_causal_lm.generate("Write an instruction.", samples=2, max_new_tokens=5, seed=3)

    first = run()
    assert len(first) == 2 and first == run()
    with pytest.raises(ModelError, match="masked LM"):
        tiny_masked_lm.generate("x", samples=1, max_new_tokens=2, seed=0)
