"""A content-addressed cache of per-example scores, so the leaderboard never scores a prompt twice.

Scoring is deterministic given the model weights, the prompt, the examples and the Evaluator
options, so a :class:`ScoreTable` is stored under the hash of exactly those: the baseline row that
every seed of a fixed test set ends on, a prompt several seeds (or searchers) find, a re-run of a
suite whose JSONs were deleted, and the time-to-quality checkpoints all read the stored table
instead of running the model. What is stored is the whole per-example table (class log-probs, or
gold ranks and log-probs), so metrics and paired statistics can be recomputed from it.
An ensemble is stored as its members and combined on reading: the ensembles of different seeds
and searchers share most members (the manual prompt, the grammar's common templates), which each
cost one scoring in all.

The key holds (see :func:`cache_key`): a fingerprint of the model (its weights and vocabulary, not
its path), the prompt's content (template, verbalizer, trigger ids, hashes of soft/deep/head
tensors, calibration setting, demonstration settings), the content of the scored examples (and of
the train split when demonstrations are drawn from it) and the Evaluator options that change
scores. A calibration prior ``p_cf`` is left out: it is a function of the rest, so a fitted and an
unfitted copy of one prompt share an entry. Options that only change batching (``batch_tokens``,
``reuse_prefix``, ``chunk_pairs``) are left out too: they change scores only by float rounding.

Generation tasks are also decoded on test: the texts are stored as ``<key>.json`` under the
score key extended by the decoding settings (beams, new tokens, stop rule; not the batch size).

Entries are ``<root>/<key[:2]>/<key>.npz`` written atomically (temporary file, fsync, rename), so
two workers scoring the same prompt at once both write the same bytes and a reader never sees half
a file; an unreadable or mismatched entry counts as a miss and is rewritten. Loading never unpickles.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import zipfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from autoprompt_search import atomic
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.ensemble import EnsemblePrompt
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.scoring.score_table import ScoreTable

#: Bump when the Evaluator's scores change meaning, so old entries are no longer found.
CACHE_FORMAT = 1
_ARRAYS = ("gold", "scores", "rank", "gold_logprob", "greedy", "p_cf", "gold_tokens")


def default_root() -> Path:
    """``$AUTOPROMPT_SEARCH_CACHE/scores`` (the model cache's root), else ``~/.cache/autoprompt-search/scores``."""
    base = os.environ.get("AUTOPROMPT_SEARCH_CACHE") or Path.home() / ".cache" / "autoprompt-search"
    return Path(base) / "scores"


@dataclass
class CacheStats:
    """Lookups of one job (or one run): hits, misses and the forward rows the misses cost."""

    hits: int = 0
    misses: int = 0
    forward_rows: int = 0
    decoded_texts: int = 0

    def add(self, other: CacheStats | dict[str, int]) -> None:
        other = other if isinstance(other, dict) else vars(other)
        self.hits += int(other.get("hits", 0))
        self.misses += int(other.get("misses", 0))
        self.forward_rows += int(other.get("forward_rows", 0))
        self.decoded_texts += int(other.get("decoded_texts", 0))

    def summary(self) -> str:
        lookups = self.hits + self.misses
        rate = f"{100 * self.hits / lookups:.0f} %" if lookups else "–"
        decoded = f", {self.decoded_texts} texts decoded" if self.decoded_texts else ""
        return (f"{lookups} lookups, {self.hits} hits, {self.misses} misses (hit rate {rate}), "
                f"{self.forward_rows} forward rows{decoded}")


class ScoreCache:
    """Score tables by content; ``root=None`` disables storage (every lookup is a miss)."""

    def __init__(self, root: str | Path | None) -> None:
        self.root = Path(root) if root is not None else None
        self.stats = CacheStats()

    def score(self, evaluator: Evaluator, prompt: Prompt | EnsemblePrompt, examples: Sequence[Example], task: Task,
              train: Sequence[Example] = ()) -> tuple[ScoreTable, bool]:
        """``prompt``'s table on ``examples`` and whether it came from the cache. ``train`` is the
        pool demonstrations are drawn from (part of the key only when the prompt uses them)."""
        members = prompt.members if isinstance(prompt, EnsemblePrompt) else (prompt,)
        tables, cached = self._member_tables(evaluator, members, examples, task, train)
        if not isinstance(prompt, EnsemblePrompt):
            return tables[0], cached
        combined = prompt.combine(np.stack([table.scores[0] for table in tables]))
        p_cf = None if all(table.p_cf is None for table in tables) else np.full((1, combined.shape[1]), np.nan)
        return replace(tables[0], scores=combined[None], p_cf=p_cf), cached

    def _member_tables(self, evaluator: Evaluator, members: Sequence[Prompt], examples: Sequence[Example],
                       task: Task, train: Sequence[Example]) -> tuple[list[ScoreTable], bool]:
        """Each prompt's table (stored ones read, the missing ones scored together in one Evaluator
        run and stored) and whether all came from the cache. An ensemble is stored as its members, so
        a member another ensemble, seed or searcher already scored costs nothing; combining is cheap."""
        keys = [cache_key(evaluator, member, examples, task, train) for member in members]
        paths = [None if self.root is None else self.root / key[:2] / f"{key}.npz" for key in keys]
        tables = [None if path is None else _load(path, key) for path, key in zip(paths, keys, strict=True)]
        missing = [i for i, table in enumerate(tables) if table is None]
        self.stats.hits += len(tables) - len(missing)
        self.stats.misses += len(missing)
        if missing:
            before = evaluator.forward_rows
            scored = evaluator.score([members[i] for i in missing], examples, task)
            self.stats.forward_rows += evaluator.forward_rows - before
            for row, i in enumerate(missing):
                tables[i] = _one_prompt(scored, row)
                if paths[i] is not None:
                    _store(paths[i], keys[i], tables[i])
        return tables, not missing

    def texts(self, evaluator: Evaluator, prompt: Prompt, examples: Sequence[Example], task: Task,
              train: Sequence[Example] = ()) -> tuple[list[str], bool]:
        """The texts ``prompt`` decodes on ``examples`` (a generation task) and whether they came from the cache."""
        decoding = evaluator.decoding
        settings = [decoding.num_beams, decoding.max_new_tokens, decoding.stop_at_newline]
        key = _digest(json.dumps([cache_key(evaluator, prompt, examples, task, train), settings]))
        path = None if self.root is None else self.root / key[:2] / f"{key}.json"
        if path is not None and (texts := _load_texts(path, key, len(examples))) is not None:
            self.stats.hits += 1
            return texts, True
        texts = evaluator.generate(prompt, examples, task)
        self.stats.misses += 1
        self.stats.decoded_texts += len(texts)
        if path is not None:
            atomic.write_json(path, {"key": key, "texts": texts})
        return texts, False


def cache_key(evaluator: Evaluator, prompt: Prompt, examples: Sequence[Example], task: Task,
              train: Sequence[Example] = ()) -> str:
    """The SHA-256 of everything the scores of ``prompt`` on ``examples`` depend on (an ensemble is
    stored as its members, see :meth:`ScoreCache.score`)."""
    settled = evaluator.with_defaults(prompt)
    material = {
        "format": CACHE_FORMAT,
        "model": model_fingerprint(evaluator.model),
        "evaluator": {"dtype": evaluator.dtype, "fact_match": evaluator.fact_match, "normalize": evaluator.normalize,
                      "device": evaluator.model.device.type,
                      "candidate_ids": None if evaluator.candidate_ids is None else
                      _digest(json.dumps([int(i) for i in evaluator.candidate_ids]))},
        "prompt": prompt_identity(settled),
        "task": {"kind": task.kind, "labels": list(task.labels), "fields": list(task.fields)},
        "examples": examples_digest(examples),
        "demo_pool": examples_digest(train) if settled.demos is not None else None,
    }
    return _digest(json.dumps(material, sort_keys=True))


def prompt_identity(prompt: Prompt) -> dict[str, Any]:
    """The prompt's content: its JSON without display-only fields or a fitted prior, plus tensor hashes."""
    calibration = prompt.calibration.unfitted() if prompt.calibration else None
    data = replace(prompt, calibration=calibration).to_json()
    for display in ("rendered", "trigger_tokens"):
        data.pop(display, None)
    data["tensors"] = {name: tensor_digest(t) for name, t in (("soft", prompt.soft), ("deep", prompt.deep),
                                                              ("head", prompt.head)) if t is not None}
    return data


def _one_prompt(table: ScoreTable, row: int) -> ScoreTable:
    """Prompt ``row``'s part of a table that scored several prompts (the arrays with a prompt axis)."""
    def part(name: str) -> np.ndarray | None:
        value = getattr(table, name)
        return None if value is None else value[row : row + 1]

    return replace(table, **{name: part(name) for name in _ARRAYS if name != "gold"})


def examples_digest(examples: Sequence[Example]) -> str:
    """A hash of the examples' fields and labels, in order (the data the scores are of)."""
    rows = [[sorted((str(k), str(v)) for k, v in e.fields.items()), e.label] for e in examples]
    return _digest(json.dumps(rows, ensure_ascii=False))


def tensor_digest(tensor: torch.Tensor) -> str:
    """A hash of a tensor's dtype, shape and bytes."""
    data = tensor.detach().cpu().contiguous()
    digest = hashlib.sha256(f"{data.dtype}{list(data.shape)}".encode())
    digest.update(data.view(torch.uint8).numpy() if data.numel() else b"")
    return digest.hexdigest()


def model_fingerprint(lm: LanguageModel) -> str:
    """A hash of the model's architecture, weights and vocabulary, computed once per loaded model.

    Weights rather than a name or path: the same weights loaded from another folder share entries,
    and a model re-converted with other weights never reads stale scores.
    """
    if "score_cache_fingerprint" not in lm.memo:
        digest = hashlib.sha256(type(lm.model).__name__.encode())
        for name, parameter in sorted(lm.model.state_dict().items()):
            digest.update(name.encode())
            digest.update(tensor_digest(parameter).encode())
        vocab = lm.tokenizer.get_vocab() if hasattr(lm.tokenizer, "get_vocab") else {}
        digest.update(json.dumps(sorted(vocab.items()), ensure_ascii=False).encode())
        digest.update(json.dumps([lm.prefix_ids, lm.suffix_ids, lm.pad_id, lm.mask_id]).encode())
        lm.memo["score_cache_fingerprint"] = digest.hexdigest()
    return lm.memo["score_cache_fingerprint"]


def _digest(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()


def _store(path: Path, key: str, table: ScoreTable) -> None:
    meta = {"key": key, "kind": table.kind, "labels": list(table.labels), "fact_match": table.fact_match}
    arrays = {name: np.asarray(getattr(table, name)) for name in _ARRAYS if getattr(table, name) is not None}
    buffer = io.BytesIO()
    np.savez(buffer, meta=np.array(json.dumps(meta)), **arrays)
    atomic.write_with(path, lambda tmp: Path(tmp).write_bytes(buffer.getvalue()))


def _load_texts(path: Path, key: str, count: int) -> list[str] | None:
    """The stored texts, or None when the entry is missing, unreadable, not this key's or short."""
    try:
        stored = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    texts = stored.get("texts") if isinstance(stored, dict) and stored.get("key") == key else None
    ok = isinstance(texts, list) and len(texts) == count and all(isinstance(t, str) for t in texts)
    return texts if ok else None


def _load(path: Path, key: str) -> ScoreTable | None:
    """The stored table, or None when the entry is missing, unreadable or not this key's."""
    try:
        with np.load(path, allow_pickle=False) as stored:
            meta = json.loads(str(stored["meta"]))
            if meta.get("key") != key:
                return None
            arrays = {name: stored[name] for name in _ARRAYS if name in stored.files}
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile):
        return None
    return ScoreTable(meta["kind"], tuple(meta["labels"]), arrays.pop("gold"), fact_match=meta["fact_match"],
                      **arrays)
