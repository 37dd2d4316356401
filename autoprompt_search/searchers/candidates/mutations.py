"""Local edits of good templates: the mutation step of an evolutionary prompt search.

Four edits act on the literal text between fields and slots, one word at a time:

- ``delete``     drop a word;
- ``insert``     put a piece from a bank (cue phrases such as `` It was``) at a word boundary;
- ``swap``       replace one whole literal piece by a bank piece (keeping its outer whitespace);
- ``paraphrase`` replace a word by one of its nearest neighbours in the model's input-embedding
  space (cosine), among clean word-start tokens (:func:`vocabulary.clean_token_mask`) — so
  `` was`` may become `` is``, and the result is still text a person can read and type.

Fields, ``[T]``/``[V]`` slots and ``[P]`` are never touched. Edits that leave an invalid template are
discarded; the caller checks the rest against the task.
"""

from __future__ import annotations

import re
from collections.abc import Sequence

import numpy as np
import torch

from ...errors import TemplateError
from ...models.language_model import LanguageModel
from ...models.vocabulary import clean_token_mask
from ...prompts.template import Answer, Field, Segment, Soft, Text, Trigger, parse_template

OPERATIONS = ("delete", "insert", "swap", "paraphrase")

_WORDS = re.compile(r"\s*\S+|\s+")
_LETTERS = re.compile(r"(\s*\W*?)([^\W\d_]+)(.*)", re.S)


def mutants(
    templates: Sequence[str],
    count: int,
    *,
    rng: np.random.Generator,
    lm: LanguageModel,
    bank: Sequence[str],
    neighbours: int = 8,
    exclude: Sequence[str] = (),
) -> list[str]:
    """Up to ``count`` distinct new templates, each one random edit of a random parent in ``templates``."""
    seen = set(templates) | set(exclude)
    out: list[str] = []
    for _ in range(10 * count):
        if len(out) == count or not templates:
            break
        parent = templates[int(rng.integers(len(templates)))]
        child = mutate(parent, rng=rng, lm=lm, bank=bank, neighbours=neighbours)
        if child is not None and child not in seen:
            seen.add(child)
            out.append(child)
    return out


def mutate(
    template: str, *, rng: np.random.Generator, lm: LanguageModel, bank: Sequence[str], neighbours: int = 8
) -> str | None:
    """One random edit of ``template``, or None if the chosen edit does not apply."""
    segments = list(parse_template(template).segments)
    operation = OPERATIONS[int(rng.integers(len(OPERATIONS)))]
    texts = [i for i, s in enumerate(segments) if isinstance(s, Text) and s.text.strip()]
    if operation == "insert" or (operation == "swap" and texts):
        if not bank:
            return None
        piece = bank[int(rng.integers(len(bank)))]
        if operation == "swap":  # the replaced piece's outer whitespace stays, so words do not glue
            index = texts[int(rng.integers(len(texts)))]
            old = segments[index].text
            lead, trail = old[: len(old) - len(old.lstrip())], old[len(old.rstrip()) :]
            segments[index] = Text((lead or piece[: len(piece) - len(piece.lstrip())]) + piece.strip() + trail)
        else:
            _insert(segments, piece, rng)
    elif texts:
        index = texts[int(rng.integers(len(texts)))]
        words = _WORDS.findall(segments[index].text)
        w = int(rng.integers(len(words)))
        if operation == "delete":
            words[w] = ""
        else:
            replacement = _paraphrase(lm, words[w], rng, neighbours)
            if replacement is None:
                return None
            words[w] = replacement
        segments[index] = Text("".join(words))
    else:
        return None
    source = to_source(segments)
    try:
        parse_template(source)
    except TemplateError:
        return None
    return source if source != template else None


def to_source(segments: Sequence[Segment]) -> str:
    """Template text for ``segments`` (the inverse of :func:`template.parse_template`)."""
    out = []
    for seg in segments:
        if isinstance(seg, Text):
            out.append(seg.text.replace("{", "{{").replace("}", "}}").replace("[", "[[").replace("]", "]]"))
        elif isinstance(seg, Field):
            out.append("{" + seg.name + "}")
        elif isinstance(seg, Trigger | Soft):
            out.append(f"[{'T' if isinstance(seg, Trigger) else 'V'}*{seg.count}]")
        else:
            out.append("[P]")
    return "".join(out)


def _insert(segments: list[Segment], piece: str, rng: np.random.Generator) -> None:
    """Insert ``piece`` at a word boundary of a literal piece, or right before ``[P]``."""
    boundaries = [(i, k) for i, s in enumerate(segments) if isinstance(s, Text)
                  for k in range(len(_WORDS.findall(s.text)) + 1)]
    answer = next(i for i, s in enumerate(segments) if isinstance(s, Answer))
    choice = int(rng.integers(len(boundaries) + 1))
    if choice == len(boundaries):
        segments.insert(answer, Text(piece))
        return
    i, k = boundaries[choice]
    words = _WORDS.findall(segments[i].text)
    segments[i] = Text("".join(words[:k]) + piece + "".join(words[k:]))


def _paraphrase(lm: LanguageModel, word: str, rng: np.random.Generator, neighbours: int) -> str | None:
    """``word`` with its letters replaced by a random near neighbour (spacing and punctuation kept)."""
    match = _LETTERS.fullmatch(word)
    ids = lm.tokenize(" " + match.group(2)) if match else []
    if len(ids) != 1:
        return None
    options = nearest_tokens(lm, ids[0], neighbours)
    if not options:
        return None
    return match.group(1) + lm.decode([options[int(rng.integers(len(options)))]]).strip() + match.group(3)


def nearest_tokens(lm: LanguageModel, token: int, k: int) -> list[int]:
    """The ``k`` clean word-start tokens nearest to ``token`` by cosine of input embeddings."""
    if "unit_embeddings" not in lm.memo:
        weight = lm.model.get_input_embeddings().weight.detach().float()  # (V, H)
        lm.memo["unit_embeddings"] = torch.nn.functional.normalize(weight, dim=-1)
    unit = lm.memo["unit_embeddings"]
    similarity = unit @ unit[token]  # (V,)
    similarity[~torch.from_numpy(clean_token_mask(lm))] = float("-inf")
    similarity[token] = float("-inf")
    top = torch.topk(similarity, min(k, int(torch.isfinite(similarity).sum())))
    return top.indices.tolist()
