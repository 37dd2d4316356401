"""BLEU and ROUGE-L of generated text, from the field's own libraries (not re-implemented here).

- BLEU: sacrebleu's corpus BLEU (Post 2018) with every reference of each input, as the E2E
  challenge scores it (multi-reference), with sacrebleu's defaults (13a tokenisation, mixed case).
- ROUGE-L: Google's ``rouge-score`` (the package behind most published ROUGE numbers), F-measure of
  the longest common subsequence with stemming, the best reference per input, averaged.

Both on a 0-100 scale, as the papers report them. For paired significance tests that resample the
inputs (Koehn 2004), :func:`bleu_statistics` keeps each input's n-gram counts and lengths:
corpus BLEU is a function of their sums (:func:`bleu_from_statistics`), not a mean of sentence
BLEUs, so a resample must re-sum them.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..errors import DataError


def generation_metrics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> dict[str, float]:
    """``bleu`` and ``rouge_l`` of ``hypotheses`` (one per input) against each input's ``references``."""
    if len(hypotheses) != len(references) or any(not refs for refs in references):
        raise DataError("every generated text needs at least one reference: give each input its 'target' text(s)")
    return {"bleu": corpus_bleu(hypotheses, references), "rouge_l": rouge_l(hypotheses, references)}


def corpus_bleu(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """sacrebleu corpus BLEU; inputs with fewer references get ``None`` streams, which sacrebleu skips."""
    import sacrebleu

    width = max(len(refs) for refs in references)
    streams = [[refs[i] if i < len(refs) else None for refs in references] for i in range(width)]
    return float(sacrebleu.corpus_bleu(list(hypotheses), streams).score)


def bleu_statistics(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[list[int]]:
    """Per input: ``[hypothesis length, closest reference length, 4 n-gram matches, 4 n-gram totals]``,
    as sacrebleu counts them for the corpus score (their column sums give :func:`corpus_bleu`)."""
    from sacrebleu.metrics import BLEU

    bleu = BLEU()
    rows = []
    for hypothesis, refs in zip(hypotheses, references, strict=True):
        score = bleu.corpus_score([hypothesis], [[ref] for ref in refs])
        rows.append([int(score.sys_len), int(score.ref_len), *map(int, score.counts), *map(int, score.totals)])
    return rows


def bleu_from_statistics(statistics: Sequence[Sequence[int]]) -> float:
    """Corpus BLEU (0-100) of the inputs whose :func:`bleu_statistics` rows are given (repeats allowed)."""
    from sacrebleu.metrics import BLEU

    sums = [int(sum(column)) for column in zip(*statistics, strict=True)]
    bleu = BLEU()  # its defaults, as corpus_bleu: exponential smoothing of zero n-gram matches
    return float(BLEU.compute_bleu(sums[2:6], sums[6:10], sums[0], sums[1], smooth_method=bleu.smooth_method,
                                   smooth_value=bleu.smooth_value).score)


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over inputs of the best ROUGE-L F-measure against any of its references (rouge-score)."""
    best = rouge_l_scores(hypotheses, references)
    return sum(best) / len(best) if best else float("nan")


def rouge_l_scores(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> list[float]:
    """Per input, the best ROUGE-L F-measure (0-100) against any of its references (rouge-score)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    return [100.0 * max(scorer.score(ref, hyp)["rougeL"].fmeasure for ref in refs)
            for hyp, refs in zip(hypotheses, references, strict=True)]
