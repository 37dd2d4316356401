"""Shared fixtures: a byte-level BPE tokenizer trained in-process and tiny random LMs built from configs.

Nothing is downloaded: the tokenizer is trained on the small corpus below (deterministically, in
well under a second) and every model is built from a config with a fixed seed. The models use a
large ``initializer_range`` so that their output distributions are far from uniform: scores of
different examples, positions and tokens then differ by much more than the tolerances the tests
use, so a test that reads the wrong position or token fails instead of passing by accident.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import pytest
import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import (
    BertConfig,
    BertForMaskedLM,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    PreTrainedTokenizerFast,
)

from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models.language_model import LanguageModel

SPECIAL_TOKENS = ["<pad>", "<s>", "</s>", "<unk>", "<mask>"]
VOCAB_SIZE = 600
MAX_POSITIONS = 128
INIT_RANGE = 0.5

CORPUS_SENTENCES = (
    "This movie is great and the acting is good.",
    "A terrible movie with a bad plot and bad acting.",
    "The review was positive: a great film, good music, great cast.",
    "The review was negative: a terrible film, bad music, terrible cast.",
    "Sentiment: positive. Sentiment: negative. Sentiment: positive.",
    "Review: I loved this movie, it is good.\nSentiment: positive",
    "Review: I hated this movie, it is bad.\nSentiment: negative",
    "Paris is the capital of France. Berlin is the capital of Germany.",
    "Rome is the capital of Italy. Madrid is the capital of Spain.",
    "The capital of France is Paris, and the capital of Italy is Rome.",
    "It was great. It was terrible. It was good. It was bad.",
    "the sentiment of the review is positive or negative",
    "a good story, a bad ending, a great actor, a terrible script",
    "What a wonderful day in the city; the people of the country were happy.",
    "Question: what is the capital? Answer: the capital is a city.",
)
CORPUS = [line for line in CORPUS_SENTENCES for _ in range(20)]


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line("markers", "slow: needs the real (embedded) model; deselect with -m 'not slow'")


_DEFAULT_THREADS = torch.get_num_threads()


@pytest.fixture(autouse=True)
def _torch_threads(request: pytest.FixtureRequest) -> Iterator[None]:
    """One thread for the tiny models: their matmuls are too small to share, and on a busy 2-core
    machine two spinning threads make them ~30x slower. Tests marked ``slow`` get the default."""
    previous = torch.get_num_threads()
    torch.set_num_threads(_DEFAULT_THREADS if request.node.get_closest_marker("slow") else 1)
    yield
    torch.set_num_threads(previous)


def train_bpe() -> Tokenizer:
    """A byte-level BPE tokenizer (GPT-2 style: no prefix space) trained on :data:`CORPUS`."""
    tokenizer = Tokenizer(models.BPE(unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=VOCAB_SIZE,
        min_frequency=2,
        special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tokenizer.train_from_iterator(CORPUS, trainer=trainer)
    return tokenizer


def _wrap(tokenizer: Tokenizer, template: str | None = None, **special: str) -> PreTrainedTokenizerFast:
    """A copy of ``tokenizer`` as a transformers tokenizer; ``template`` adds special tokens (``<s> $A``)."""
    copy = Tokenizer.from_str(tokenizer.to_str())
    if template is not None:
        ids = [(t, copy.token_to_id(t)) for t in ("<s>", "</s>")]
        copy.post_processor = processors.TemplateProcessing(single=template, special_tokens=ids)
    return PreTrainedTokenizerFast(
        tokenizer_object=copy,
        pad_token="<pad>",
        eos_token="</s>",
        unk_token="<unk>",
        bos_token="<s>",
        **special,
    )


@pytest.fixture(scope="session")
def bpe_trainer() -> Callable[[], Tokenizer]:
    """The training function itself (to check that training is deterministic)."""
    return train_bpe


@pytest.fixture(scope="session")
def bpe_model() -> Tokenizer:
    return train_bpe()


@pytest.fixture(scope="session")
def tiny_tokenizer_bpe(bpe_model: Tokenizer) -> PreTrainedTokenizerFast:
    """GPT-2 style: no special tokens around text."""
    return _wrap(bpe_model)


@pytest.fixture(scope="session")
def tiny_tokenizer_bos(bpe_model: Tokenizer) -> PreTrainedTokenizerFast:
    """Llama style: ``<s>`` before the text (exercises ``LanguageModel.prefix_ids``)."""
    return _wrap(bpe_model, "<s> $A")


@pytest.fixture(scope="session")
def tiny_tokenizer_mlm(bpe_model: Tokenizer) -> PreTrainedTokenizerFast:
    """RoBERTa style: ``<s> text </s>`` and a ``<mask>`` token."""
    return _wrap(bpe_model, "<s> $A </s>", mask_token="<mask>", cls_token="<s>", sep_token="</s>")


def _ids(tokenizer: PreTrainedTokenizerFast) -> dict[str, int]:
    return {
        "vocab_size": len(tokenizer),
        "pad_token_id": tokenizer.pad_token_id,
        "bos_token_id": tokenizer.bos_token_id,
        "eos_token_id": tokenizer.eos_token_id,
    }


@pytest.fixture(scope="session")
def tiny_causal_lm(tiny_tokenizer_bos: PreTrainedTokenizerFast) -> LanguageModel:
    torch.manual_seed(0)
    config = LlamaConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        initializer_range=INIT_RANGE,
        **_ids(tiny_tokenizer_bos),
    )
    model = LlamaForCausalLM(config).float().eval()
    return LanguageModel.wrap(model, tiny_tokenizer_bos, name="tiny-llama")


@pytest.fixture(scope="session")
def tiny_gpt2_lm(tiny_tokenizer_bpe: PreTrainedTokenizerFast) -> LanguageModel:
    torch.manual_seed(0)
    config = GPT2Config(
        n_embd=32,
        n_layer=2,
        n_head=4,
        n_inner=64,
        n_positions=MAX_POSITIONS,
        initializer_range=INIT_RANGE,
        **_ids(tiny_tokenizer_bpe),
    )
    model = GPT2LMHeadModel(config).float().eval()
    return LanguageModel.wrap(model, tiny_tokenizer_bpe, name="tiny-gpt2")


@pytest.fixture(scope="session")
def tiny_masked_lm(tiny_tokenizer_mlm: PreTrainedTokenizerFast) -> LanguageModel:
    torch.manual_seed(0)
    config = BertConfig(
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=4,
        intermediate_size=64,
        max_position_embeddings=MAX_POSITIONS,
        initializer_range=INIT_RANGE,
        vocab_size=len(tiny_tokenizer_mlm),
        pad_token_id=tiny_tokenizer_mlm.pad_token_id,
    )
    model = BertForMaskedLM(config).float().eval()
    return LanguageModel.wrap(model, tiny_tokenizer_mlm, name="tiny-bert")


# --- tasks ----------------------------------------------------------------------------------------

POSITIVE = (
    "a great movie with good acting",
    "I loved this film",
    "the cast is great and the music is good",
    "what a wonderful story",
    "good fun from start to end",
    "the best movie of the year",
)
NEGATIVE = (
    "a terrible movie with bad acting",
    "I hated this film",
    "the plot is bad and the script is terrible",
    "a boring and sad story",
    "bad from start to end",
    "the worst movie of the year",
)
FACTS = (
    ("France", "Paris"),
    ("Italy", "Rome"),
    ("Germany", "Berlin"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Peru", "Lima"),
    ("Egypt", "Cairo"),
    ("Kenya", "Nairobi"),
    ("Chile", "Santiago"),
    ("Canada", "Ottawa"),
    ("Norway", "Oslo"),
    ("Greece", "Athens"),
)


def _sentiment_split(prefix: str) -> list[Example]:
    rows: list[Example] = []
    for pos, neg in zip(POSITIVE, NEGATIVE, strict=True):
        rows.append(Example({"sentence": f"{prefix}{pos}"}, "1"))
        rows.append(Example({"sentence": f"{prefix}{neg}"}, "0"))
    return rows


@pytest.fixture(scope="session")
def sentiment_task() -> Task:
    """Binary sentiment, labels ("0", "1"), 12 examples in each of train/dev/test."""
    splits = {
        "train": _sentiment_split(""),
        "dev": _sentiment_split("honestly, "),
        "test": _sentiment_split("so "),
    }
    return Task("tiny-sentiment", "classification", splits, labels=("0", "1"), fields=("sentence",))


def _fact_split(pairs: Sequence[tuple[str, str]]) -> list[Example]:
    return [Example({"sub_label": country}, capital) for country, capital in pairs]


@pytest.fixture(scope="session")
def fact_task() -> Task:
    """Country → capital facts (LAMA P36-like); open label space."""
    splits = {"train": _fact_split(FACTS[:6]), "dev": _fact_split(FACTS[6:]), "test": _fact_split(FACTS)}
    return Task("tiny-capitals", "fact", splits, fields=("sub_label",))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory: pytest.TempPathFactory, tiny_causal_lm: LanguageModel) -> Path:
    """The tiny causal LM saved as a model folder, for code that loads models by path (CLI, runner)."""
    folder = tmp_path_factory.mktemp("tiny-llama")
    tiny_causal_lm.model.save_pretrained(folder)
    tiny_causal_lm.tokenizer.save_pretrained(folder)
    return folder


@pytest.fixture(params=["tiny_causal_lm", "tiny_gpt2_lm", "tiny_masked_lm"])
def any_lm(request: pytest.FixtureRequest) -> LanguageModel:
    """Each tiny model in turn: Llama-style causal, GPT-2 (absolute positions), masked."""
    return request.getfixturevalue(request.param)


@pytest.fixture(params=["tiny_causal_lm", "tiny_gpt2_lm"])
def causal_lm(request: pytest.FixtureRequest) -> LanguageModel:
    """Each tiny causal model in turn: rotary (Llama-style) and absolute (GPT-2) positions."""
    return request.getfixturevalue(request.param)
