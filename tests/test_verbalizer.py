"""Verbalizers: parsing, checking against a task's labels, and label-word spacing and token ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest
from tokenizers import Tokenizer
from transformers import PreTrainedTokenizerFast

from autoprompt_search.errors import VerbalizerError
from autoprompt_search.prompts.verbalizer import Verbalizer, spaced, word_token_ids

# --- parsing ---------------------------------------------------------------------------------------


def test_parse_json_string() -> None:
    verbalizer = Verbalizer.parse('{"0": "negative", "1": "positive"}')
    assert verbalizer.words == {"0": ("negative",), "1": ("positive",)}
    assert verbalizer.labels == ("0", "1")
    assert verbalizer.reduction == "sum"


def test_parse_dict_with_word_lists_and_non_string_labels() -> None:
    verbalizer = Verbalizer.parse({1: ["good", "great"], 0: "bad"}, reduction="mean")
    assert verbalizer.words == {"1": ("good", "great"), "0": ("bad",)}
    assert verbalizer.labels == ("1", "0")
    assert verbalizer.reduction == "mean"


def test_json_round_trip() -> None:
    verbalizer = Verbalizer.parse({"0": ["bad", "awful"], "1": "good"}, reduction="mean")
    assert Verbalizer.from_json(verbalizer.to_json()) == verbalizer
    assert Verbalizer.from_json({"words": {"0": "x"}}).reduction == "sum"


@pytest.mark.parametrize("spec", ['{"0": "negative", ', "negative", "{'0': 'bad'}"])
def test_bad_json_says_how_to_write_it(spec: str) -> None:
    with pytest.raises(VerbalizerError, match=r"not valid JSON .* at column \d+"):
        Verbalizer.parse(spec)


@pytest.mark.parametrize(
    ("spec", "needle"),
    [
        ('["negative", "positive"]', "must be a JSON object"),
        ('"positive"', "must be a JSON object"),
        ("{}", "empty"),
        ('{"0": ""}', "empty label word"),
        ('{"0": "   "}', "empty label word"),
        ('{"0": []}', "empty label word"),
        ('{"0": ["bad", ""]}', "empty label word"),
        ('{"0": 5}', "must map to a word or a list of words"),
        ('{"0": ["bad", 5]}', "must map to a word or a list of words"),
        ('{"0": {"w": "bad"}}', "must map to a word or a list of words"),
    ],
)
def test_bad_specs(spec: str, needle: str) -> None:
    with pytest.raises(VerbalizerError, match=needle):
        Verbalizer.parse(spec)


def test_unknown_reduction() -> None:
    with pytest.raises(VerbalizerError, match="unknown reduction"):
        Verbalizer.parse({"0": "bad"}, reduction="max")  # type: ignore[arg-type]


# --- for_labels -------------------------------------------------------------------------------------


def test_for_labels_reorders_to_the_task() -> None:
    verbalizer = Verbalizer.parse({"1": "positive", "0": "negative"}, reduction="mean")
    fitted = verbalizer.for_labels(("0", "1"))
    assert fitted.labels == ("0", "1")
    assert fitted.words == {"0": ("negative",), "1": ("positive",)}
    assert fitted.reduction == "mean"


def test_for_labels_label_missing_from_verbalizer() -> None:
    verbalizer = Verbalizer.parse({"0": "negative", "1": "positive"})
    with pytest.raises(
        VerbalizerError, match=r"\['2'\] occur in the data but not in the verbalizer"
    ) as error:
        verbalizer.for_labels(("0", "1", "2"))
    assert '{"2": "word"}' in str(error.value)


def test_for_labels_extra_label_in_verbalizer() -> None:
    verbalizer = Verbalizer.parse({"0": "negative", "1": "positive", "neutral": "okay"})
    with pytest.raises(VerbalizerError, match=r"\['neutral'\] do not occur in the data"):
        verbalizer.for_labels(("0", "1"))


# --- spacing and token ids -----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("word", "before", "expected"),
    [
        ("positive", "Sentiment:", " positive"),
        ("positive", "It was", " positive"),
        (" positive ", "It was", " positive"),
        ("positive", "Review: x\n", "positive"),
        ("positive", "", "positive"),
        ("  positive", "", "positive"),
    ],
)
def test_spaced(word: str, before: str, expected: str) -> None:
    assert spaced(word, before) == expected


def _tokenize(tokenizer: PreTrainedTokenizerFast):
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def test_word_token_ids_use_the_space_prefixed_token(tiny_tokenizer_bpe: PreTrainedTokenizerFast) -> None:
    tokenize = _tokenize(tiny_tokenizer_bpe)
    expected = tiny_tokenizer_bpe(" positive", add_special_tokens=False)["input_ids"]
    assert tiny_tokenizer_bpe.convert_ids_to_tokens(expected) == ["Ġpositive"]  # one token, with Ġ
    assert word_token_ids(tokenize, "positive", "Sentiment:") == tuple(expected)
    assert word_token_ids(tokenize, "positive", "It was") == tuple(expected)


def test_word_token_ids_at_line_start_have_no_space(tiny_tokenizer_bpe: PreTrainedTokenizerFast) -> None:
    tokenize = _tokenize(tiny_tokenizer_bpe)
    bare = tuple(tiny_tokenizer_bpe("positive", add_special_tokens=False)["input_ids"])
    spaced_ids = tuple(tiny_tokenizer_bpe(" positive", add_special_tokens=False)["input_ids"])
    assert bare != spaced_ids
    assert word_token_ids(tokenize, "positive", "Review: good\n") == bare
    assert word_token_ids(tokenize, "positive", "") == bare


def test_word_token_ids_multi_token_word_matches_in_context(
    tiny_tokenizer_bpe: PreTrainedTokenizerFast,
) -> None:
    tokenize = _tokenize(tiny_tokenizer_bpe)
    ids = word_token_ids(tokenize, "Nairobi", "The capital of Kenya is")
    assert len(ids) > 1
    context = tokenize("The capital of Kenya is")
    assert tuple(tokenize("The capital of Kenya is Nairobi")[len(context) :]) == ids
    assert tiny_tokenizer_bpe.decode(list(ids)) == " Nairobi"


def test_word_token_ids_refuse_unknown_words() -> None:
    def tokenize(text: str) -> list[int]:
        return [3 if ch == "?" else ord(ch) for ch in text]

    assert word_token_ids(tokenize, "ab", ":", unk_id=3) == (ord(" "), ord("a"), ord("b"))
    with pytest.raises(VerbalizerError, match="unknown to the tokenizer"):
        word_token_ids(tokenize, "a?b", ":", unk_id=3)


def test_test_tokenizer_is_deterministic(
    bpe_trainer: Callable[[], Tokenizer], tiny_tokenizer_bpe: PreTrainedTokenizerFast
) -> None:
    assert bpe_trainer().to_str() == bpe_trainer().to_str()
    assert 400 <= len(tiny_tokenizer_bpe) <= 1000
