"""Where soft vectors and deep prefixes start (Lester et al., 2021, section 3 and figure 3(b);
Li & Liang, 2021, section 7.4), and the one parser of the ``init`` option both use.

``init`` names one of:

- ``"random"``: random directions scaled to the mean norm of the model's token embeddings (not
  N(0, 1): a vector far off the embedding scale trains slowly or not at all);
- ``"vocab"``: embeddings of distinct tokens sampled from the *frequent vocabulary*, defined here
  as the token ids that occur in the training examples' text (the paper samples from T5's 5,000
  most frequent SentencePiece tokens; the training data is the frequency list we have);
- ``"labels"``: the label words' token embeddings, cycled; the paper's class-label init;
- ``"text:<words>"``: the embeddings of a text's tokens, cycled to the slot count;
- ``"prompt:<path>"``: the vectors of a saved soft prompt (e.g. one trained on several tasks).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import torch

from ...errors import ConfigError, PromptFileError
from ...prompts.prompt import Prompt
from ..base import SearchContext

INITS = ("random", "vocab", "labels", "text:<words>", "prompt:<path>")
InitKind = Literal["random", "vocab", "labels", "text", "prompt"]


@dataclass(frozen=True)
class InitSpec:
    """A parsed ``init`` option: its kind and, for ``text:``/``prompt:``, the words or the path."""

    kind: InitKind
    argument: str = ""

    @property
    def spec(self) -> str:
        """The option as written (``"vocab"``, ``"text:Is it good?"``)."""
        return f"{self.kind}:{self.argument}" if self.kind in ("text", "prompt") else self.kind


def parse_init(spec: str) -> InitSpec:
    """``spec`` as an :class:`InitSpec`; a ConfigError naming the choices when it is none of them."""
    kind, colon, argument = str(spec).partition(":")
    if not colon and kind in ("random", "vocab", "labels"):
        return InitSpec(kind)  # type: ignore[arg-type]
    if colon and kind in ("text", "prompt"):
        if not argument.strip():
            raise ConfigError(f"init {spec!r} names no {'text' if kind == 'text' else 'file'}: write e.g. "
                              "'text:Is this review positive?' or 'prompt:runs/pt/prompt.json'")
        return InitSpec(kind, argument)  # type: ignore[arg-type]
    raise ConfigError(f"unknown init {spec!r}: use one of {', '.join(INITS)}")


def init_token_ids(ctx: SearchContext, prompt: Prompt, init: InitSpec, n: int,
                   generator: torch.Generator) -> list[int]:
    """``n`` token ids a ``vocab``/``labels``/``text`` init starts from (sampled or cycled)."""
    if init.kind == "vocab":
        return _sample(_frequent_ids(ctx), n, generator)
    ids = _label_ids(ctx, prompt) if init.kind == "labels" else ctx.model.tokenize(init.argument)
    if not ids:
        raise ConfigError(f"init {init.spec!r} gives no tokens to start from: use another init, e.g. 'vocab'")
    return [ids[i % len(ids)] for i in range(n)]


def initial_vectors(ctx: SearchContext, prompt: Prompt, n: int, spec: str, seed: int) -> torch.Tensor:
    """``(n, H)`` float32 starting vectors for ``prompt``'s ``n`` soft slots."""
    init = parse_init(spec)
    embeddings = ctx.model.model.get_input_embeddings().weight.detach().float().cpu()  # (V, H)
    generator = torch.Generator().manual_seed(seed)
    if init.kind == "random":
        scale = embeddings.norm(dim=1).mean()
        vectors = torch.randn(n, embeddings.shape[1], generator=generator)
        return vectors / vectors.norm(dim=1, keepdim=True) * scale
    if init.kind == "prompt":
        return _saved_vectors(Path(init.argument), n, embeddings.shape[1])
    return embeddings[init_token_ids(ctx, prompt, init, n, generator)]


def _frequent_ids(ctx: SearchContext) -> list[int]:
    """Distinct non-special token ids of the training examples' fields, in first-seen order."""
    special = ctx.model.special_ids
    seen: dict[int, None] = {}
    for example in ctx.train:
        for text in example.fields.values():
            seen.update((i, None) for i in ctx.model.tokenize(str(text)) if i not in special)
    return list(seen) or [i for i in range(ctx.model.vocab_size) if i not in special]


def _sample(ids: list[int], n: int, generator: torch.Generator) -> list[int]:
    """``n`` ids drawn without replacement while they last, then again."""
    out: list[int] = []
    while len(out) < n:
        order = torch.randperm(len(ids), generator=generator).tolist()
        out += [ids[i] for i in order[: n - len(out)]]
    return out


def _label_ids(ctx: SearchContext, prompt: Prompt) -> list[int]:
    encoder = ctx.evaluator.encoder
    text_before = encoder.encode(prompt, ctx.train[0]).text_before
    if prompt.verbalizer is None:  # fact task: the gold objects of the training facts
        words = [str(e.label) for e in ctx.train]
    else:
        words = [w for group in prompt.verbalizer.words.values() for w in group]
    return [i for w in words for i in encoder.word_ids(w, text_before)]


def _saved_vectors(path: Path, n: int, hidden: int) -> torch.Tensor:
    saved = Prompt.load(path)
    if saved.soft is None or tuple(saved.soft.shape) != (n, hidden):
        shape = None if saved.soft is None else list(saved.soft.shape)
        raise PromptFileError(
            f"init prompt {path} has soft vectors of shape {shape}, but this template needs ({n}, {hidden}): "
            "use a template with as many [V] slots as the saved prompt, on the same model"
        )
    return saved.soft.float().clone()
