"""Where soft vectors start (Lester et al., 2021, section 3 and figure 3(b)).

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

from pathlib import Path

import torch

from ...errors import AutopromptError, PromptFileError
from ...prompts.prompt import Prompt
from ..base import SearchContext

INITS = ("random", "vocab", "labels", "text:<words>", "prompt:<path>")


def initial_vectors(ctx: SearchContext, prompt: Prompt, n: int, spec: str, seed: int) -> torch.Tensor:
    """``(n, H)`` float32 starting vectors for ``prompt``'s ``n`` soft slots."""
    embeddings = ctx.model.model.get_input_embeddings().weight.detach().float().cpu()  # (V, H)
    generator = torch.Generator().manual_seed(seed)
    if spec == "random":
        scale = embeddings.norm(dim=1).mean()
        vectors = torch.randn(n, embeddings.shape[1], generator=generator)
        return vectors / vectors.norm(dim=1, keepdim=True) * scale
    if spec == "vocab":
        return embeddings[_sample(_frequent_ids(ctx), n, generator)]
    if spec == "labels":
        ids = _label_ids(ctx, prompt)
        return embeddings[[ids[i % len(ids)] for i in range(n)]]
    if spec.startswith("text:"):
        ids = ctx.model.tokenize(spec[5:])
        if not ids:
            raise AutopromptError(f"init {spec!r} has no text to embed: write e.g. 'text:Is this review positive?'")
        return embeddings[[ids[i % len(ids)] for i in range(n)]]
    if spec.startswith("prompt:"):
        return _saved_vectors(Path(spec[7:]), n, embeddings.shape[1])
    raise AutopromptError(f"unknown soft-prompt init {spec!r}: use one of {', '.join(INITS)}")


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
