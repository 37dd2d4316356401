"""Contextual calibration: the maths against a hand computation, batching, caching, persistence."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoprompt_search import SEARCHERS
from autoprompt_search.cli import main
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.errors import PromptFileError, TemplateError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.calibration import Calibration, calibrate, fit_prior
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.scoring.halving import rank
from autoprompt_search.scoring.metrics import selection_score
from autoprompt_search.scoring.selection import selection_score as new_selection_score

VERBALIZER = {"0": "bad", "1": "good"}
CAUSAL = Prompt.build("{sentence} It was[P]", VERBALIZER)
MASKED = Prompt.build("{sentence} It was[P].", VERBALIZER)


def _by_hand(lm: LanguageModel, prompt: Prompt, task: Task, mask_text: str) -> tuple[np.ndarray, np.ndarray]:
    """Zhao et al.'s recipe written out with a plain Evaluator: p_cf and calibrated log-probs."""
    plain = Evaluator(lm)
    raw = plain.score([prompt], task.split("dev"), task).scores[0]  # (E, L)
    free = [Example({"sentence": s}) for s in ("N/A", "", mask_text)]
    free_scores = plain.score([prompt], free, task).scores[0]  # (3, L)
    probs = np.exp(free_scores) / np.exp(free_scores).sum(axis=1, keepdims=True)
    p_cf = probs.mean(axis=0)
    p = np.exp(raw) / np.exp(raw).sum(axis=1, keepdims=True)
    q = (p / p_cf) / (p / p_cf).sum(axis=1, keepdims=True)  # W = diag(p_cf)^-1, renormalised
    return p_cf, np.log(q)


@pytest.mark.parametrize(("lm_name", "prompt", "mask_text"),
                         [("tiny_causal_lm", CAUSAL, "[MASK]"), ("tiny_masked_lm", MASKED, "<mask>")])
def test_calibrated_scores_equal_hand_computation(request, sentiment_task: Task, lm_name, prompt, mask_text) -> None:
    lm = request.getfixturevalue(lm_name)
    p_cf, expected = _by_hand(lm, prompt, sentiment_task, mask_text)
    table = Evaluator(lm, calibration="contextual").score([prompt], sentiment_task.split("dev"), sentiment_task)
    np.testing.assert_allclose(table.p_cf[0], p_cf, atol=1e-5)  # float32 batches pad differently
    np.testing.assert_allclose(table.scores[0], expected, atol=1e-5)
    assert not np.allclose(p_cf, 0.5, atol=1e-3)  # the tiny model has a prior to remove


def test_calibrate_and_fit_prior_by_hand() -> None:
    scores = np.log(np.array([[0.2, 0.6], [0.5, 0.1]]))  # unnormalised class scores
    p_cf = fit_prior(scores)
    np.testing.assert_allclose(p_cf, [(0.25 + 5 / 6) / 2, (0.75 + 1 / 6) / 2])
    calibrated = calibrate(np.log(np.array([[0.3, 0.7]])), np.array([0.2, 0.8]))
    ratio = np.array([0.3 / 0.2, 0.7 / 0.8])
    np.testing.assert_allclose(np.exp(calibrated[0]), ratio / ratio.sum())


def test_content_free_rows_share_the_batched_pass(tiny_causal_lm: LanguageModel, sentiment_task: Task,
                                                  monkeypatch) -> None:
    from autoprompt_search.scoring import evaluator as evaluator_module

    rows = []  # rows of each run_queries call
    real = evaluator_module.run_queries

    def counted(lm, planned, *args, **kwargs):
        rows.append(len(planned))
        return real(lm, planned, *args, **kwargs)

    monkeypatch.setattr(evaluator_module, "run_queries", counted)
    dev = sentiment_task.split("dev")
    prompts = [CAUSAL, Prompt.build("Review: {sentence}\nSentiment:[P]", VERBALIZER)]
    evaluator = Evaluator(tiny_causal_lm, calibration="contextual", reuse_prefix=False)
    evaluator.score(prompts, dev, sentiment_task)
    assert rows == [2 * len(dev) + 2 * 3]  # one planned run for 2 × 12 pairs and 2 × 3 content-free rows
    evaluator.score(prompts, dev, sentiment_task)  # p_cf is cached per prompt: no content-free rows again
    assert rows[1] == 2 * len(dev) and evaluator.forward_rows == sum(rows)


def test_an_empty_content_free_input_reads_the_start_token(tiny_gpt2_lm: LanguageModel, sentiment_task: Task) -> None:
    """``{sentence}[P]`` on the content-free "" leaves a BOS-less model nothing to read: it reads its
    start token (as GPT-2 does to generate unconditionally) instead of failing on an empty row."""
    prompt = Prompt.build("{sentence}[P]", VERBALIZER)
    evaluator = Evaluator(tiny_gpt2_lm)
    assert tiny_gpt2_lm.prefix_ids == ()
    assert evaluator.encoder.encode(prompt, Example({"sentence": ""})).before == (tiny_gpt2_lm.start_id,)
    great = tuple(tiny_gpt2_lm.tokenize("great"))
    assert evaluator.encoder.encode(prompt, Example({"sentence": "great"})).before == great
    table = Evaluator(tiny_gpt2_lm, calibration="contextual").score([prompt], sentiment_task.split("dev"),
                                                                     sentiment_task)
    assert np.isfinite(table.scores).all()


def test_rank_and_metrics_use_calibrated_scores(tiny_causal_lm: LanguageModel, sentiment_task: Task) -> None:
    prompts = [CAUSAL, Prompt.build("{sentence} It was[P]", {"0": "terrible", "1": "great"})]
    dev = sentiment_task.split("dev")
    evaluator = Evaluator(tiny_causal_lm, calibration="contextual")
    table = evaluator.score(prompts, dev, sentiment_task)
    expected = [selection_score(table.metrics(c), "classification") for c in range(2)]
    ranking = rank(evaluator, prompts, dev, sentiment_task, rungs=1)
    assert sorted(ranking.scores) == sorted(expected)
    plain = Evaluator(tiny_causal_lm).score(prompts, dev, sentiment_task)
    assert [plain.metrics(c)["gold_logprob"] for c in range(2)] != [table.metrics(c)["gold_logprob"] for c in range(2)]


def test_fitted_prompt_round_trips_and_scores_the_same(tiny_causal_lm: LanguageModel, sentiment_task: Task,
                                                        tmp_path: Path) -> None:
    evaluator = Evaluator(tiny_causal_lm, calibration="contextual")
    fitted = evaluator.resolved(CAUSAL, sentiment_task)
    assert fitted.calibration.fitted and dict(fitted.calibration.p_cf).keys() == {"0", "1"}
    fitted.save(tmp_path)
    saved = json.loads((tmp_path / "prompt.json").read_text())["calibration"]
    assert saved["mode"] == "contextual" and saved["content_free"] == ["N/A", "", "[MASK]"]
    loaded = Prompt.load(tmp_path)
    assert loaded.calibration == fitted.calibration
    dev = sentiment_task.split("dev")
    again = Evaluator(tiny_causal_lm)  # a plain Evaluator honours the prompt's own calibration and p_cf
    np.testing.assert_allclose(again.score([loaded], dev, sentiment_task).scores,
                               evaluator.score([CAUSAL], dev, sentiment_task).scores)
    assert again.forward_rows == len(dev)  # the recorded p_cf is used, not refitted
    assert loaded.with_triggers(()).calibration.p_cf is None  # other tokens, other prior


def test_recorded_prior_for_other_labels_is_refused(tiny_causal_lm: LanguageModel, sentiment_task: Task) -> None:
    prompt = Prompt.build("{sentence} It was[P]", VERBALIZER,
                          calibration=Calibration(p_cf=(("neg", 0.5), ("pos", 0.5))))
    with pytest.raises(PromptFileError, match="refit"):
        Evaluator(tiny_causal_lm).score([prompt], sentiment_task.split("dev"), sentiment_task)


def test_fact_tasks_refuse_calibration(tiny_causal_lm: LanguageModel, fact_task: Task) -> None:
    with pytest.raises(TemplateError, match="fact task"):
        Evaluator(tiny_causal_lm, calibration="contextual").score(
            [Prompt.build("The capital of {sub_label} is[P]")], fact_task.split("dev"), fact_task)


def test_bad_calibration_options() -> None:
    with pytest.raises(TemplateError, match="contextual"):
        Calibration(mode="affine")  # type: ignore[arg-type]
    with pytest.raises(TemplateError, match="content-free"):
        Calibration(content_free=())
    assert Calibration.coerce("none") is None and Calibration.coerce("contextual") == Calibration()


def test_search_result_prompt_carries_the_fitted_calibration(tiny_causal_lm: LanguageModel, sentiment_task: Task,
                                                              tmp_path: Path) -> None:
    searcher = SEARCHERS["manual"](templates=["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]"],
                                   verbalizers=[VERBALIZER], seed=0)
    evaluator = Evaluator(tiny_causal_lm, calibration="contextual")
    result = searcher.search(sentiment_task, tiny_causal_lm, evaluator=evaluator, run_dir=tmp_path, progress=False)
    assert result.prompt.calibration is not None and result.prompt.calibration.fitted
    assert Prompt.load(tmp_path / "prompt.json").calibration == result.prompt.calibration
    table = evaluator.score([result.prompt], sentiment_task.split("dev"), sentiment_task)
    assert result.dev_score == pytest.approx(new_selection_score(table.metrics(0), "classification"))


def test_cli_calibrate_flag(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = ["sentence\tlabel", "good film\t1", "bad film\t0", "good plot\t1"]
    (tmp_path / "test.tsv").write_text("\n".join(rows) + "\n")
    out = tmp_path / "m.json"
    assert main(["evaluate", "--model", str(tiny_model_dir), "--data", str(tmp_path / "test.tsv"), "--template",
                 "{sentence} It was[P]", "--verbalizer", json.dumps(VERBALIZER), "--calibrate",
                 "--output-json", str(out)]) == 0
    result = json.loads(out.read_text())
    assert result["calibration"]["mode"] == "contextual" and set(result["calibration"]["p_cf"]) == {"0", "1"}
