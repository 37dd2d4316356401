"""BLEU and ROUGE-L of generated text, from the field's own libraries (not re-implemented here).

- BLEU: sacrebleu's corpus BLEU (Post 2018) with every reference of each input, as the E2E
  challenge scores it (multi-reference), with sacrebleu's defaults (13a tokenisation, mixed case).
- ROUGE-L: Google's ``rouge-score`` (the package behind most published ROUGE numbers), F-measure of
  the longest common subsequence with stemming, the best reference per input, averaged.

Both on a 0-100 scale, as the papers report them.
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


def rouge_l(hypotheses: Sequence[str], references: Sequence[Sequence[str]]) -> float:
    """Mean over inputs of the best ROUGE-L F-measure against any of its references (rouge-score)."""
    from rouge_score import rouge_scorer

    scorer = rouge_scorer.RougeScorer(["rougeL"], use_stemmer=True)
    best = [max(scorer.score(ref, hyp)["rougeL"].fmeasure for ref in refs)
            for hyp, refs in zip(hypotheses, references, strict=True)]
    return 100.0 * sum(best) / len(best) if best else float("nan")
