"""Calibration and demonstrations on every path: mixed-task jobs, soft, deep and linear-head prompts,
soft-prompt training, a prompt file carrying all of them, and the evaluate-many CLI.

References: each job scored alone (mixed batches), Zhao et al.'s recipe written out with a plain
Evaluator (head prompts), the Evaluator's own scores (the training forward).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from autoprompt_search.cli import main
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.calibration import Calibration, calibrate, fit_prior
from autoprompt_search.prompts.demonstrations import Demonstrations
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring import deep_prompt
from autoprompt_search.scoring.evaluator import Evaluator, Job
from autoprompt_search.scoring.soft_forward import soft_forward
from autoprompt_search.searchers import PromptTuningSearcher

ATOL = 1e-4
VERBALIZER = {"0": "bad", "1": "good"}


def _tensor(*shape: int, seed: int) -> torch.Tensor:
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed))


def _deep(lm: LanguageModel, n: int, seed: int) -> torch.Tensor:
    shape = deep_prompt.kv_shape(lm)
    return _tensor(shape.layers, 2, shape.kv_heads, n, shape.head_dim, seed=seed)


def _head_prompt(lm: LanguageModel, body: str, **kw) -> Prompt:
    return Prompt.build(body, None, soft=_tensor(2, lm.hidden_size, seed=1),
                        head=_tensor(2, lm.hidden_size + 1, seed=2), head_labels=("1", "0"), **kw)


def _jobs(lm: LanguageModel, sentiment_task: Task, fact_task: Task) -> list[Job]:
    """Calibrated and demonstrated discrete, soft, deep and head prompts beside plain fact jobs."""
    end = "" if lm.is_causal else " ."
    calibrated, demos = Calibration(), Demonstrations(k=1, seed=2)
    dev, facts = sentiment_task.split("dev"), fact_task.split("dev")
    trigger_ids = tuple(lm.tokenize(" the movie"))[:2]
    return [
        Job(Prompt.build("{sentence} [T*2] It was[P]" + end, VERBALIZER, trigger_ids=trigger_ids,
                         calibration=calibrated), dev, sentiment_task),
        Job(Prompt.build("[V*2]{sentence} It was[P]" + end, VERBALIZER, soft=_tensor(2, lm.hidden_size, seed=3),
                         calibration=calibrated, demos=demos), dev[:7], sentiment_task),
        Job(Prompt.build("{sentence} It was[P]" + end, VERBALIZER, deep=_deep(lm, 3, 4), calibration=calibrated,
                         demos=demos), dev[3:], sentiment_task),
        Job(_head_prompt(lm, "[V*2]{sentence} It was[P]" + end, calibration=calibrated, demos=demos), dev,
            sentiment_task),
        Job(Prompt.build("The capital of {sub_label} is[P]" + end, demos=Demonstrations(k=2)), facts, fact_task),
        Job(Prompt.build("The capital of {sub_label} is[P]" + end), facts, fact_task),
    ]


@pytest.mark.parametrize("lm_name", ["tiny_causal_lm", "tiny_masked_lm"])
def test_mixed_jobs_calibrate_and_demonstrate_like_each_job_alone(request, lm_name, sentiment_task, fact_task,
                                                                  monkeypatch) -> None:
    from autoprompt_search.scoring import evaluator as evaluator_module

    lm = request.getfixturevalue(lm_name)
    jobs = _jobs(lm, sentiment_task, fact_task)
    calls = []
    real = evaluator_module.run_queries
    monkeypatch.setattr(evaluator_module, "run_queries", lambda *a, **k: calls.append(1) or real(*a, **k))
    together = Evaluator(lm).score_many(jobs)
    assert len(calls) == 1  # content-free rows of the four calibrated prompts ride along
    for job, table in zip(jobs, together, strict=True):
        alone = Evaluator(lm).score([job.prompts], job.examples, job.task)
        for name in ("scores", "p_cf", "rank", "gold_logprob"):
            if getattr(alone, name) is not None:
                np.testing.assert_allclose(getattr(table, name), getattr(alone, name), atol=ATOL, err_msg=name)
    assert all(table.p_cf is not None for table in together[:4]) and together[4].p_cf is None
    plain = Evaluator(lm).score([dataclasses.replace(jobs[1].prompts, demos=None)], jobs[1].examples, sentiment_task)
    assert np.abs(plain.scores - together[1].scores).max() > 100 * ATOL  # the demonstrations matter


@pytest.mark.parametrize("lm_name", ["tiny_causal_lm", "tiny_masked_lm"])
def test_head_scores_are_calibrated_by_hand(request, lm_name, sentiment_task) -> None:
    lm = request.getfixturevalue(lm_name)
    prompt = _head_prompt(lm, "[V*2]{sentence} It was[P]" + ("" if lm.is_causal else " ."))
    plain = Evaluator(lm)
    raw = plain.score([prompt], sentiment_task.split("dev"), sentiment_task).scores[0]
    mask = "[MASK]" if lm.is_causal else lm.tokenizer.mask_token
    free = plain.score([prompt], [Example({"sentence": s}) for s in ("N/A", "", mask)], sentiment_task).scores[0]
    table = Evaluator(lm, calibration="contextual").score([prompt], sentiment_task.split("dev"), sentiment_task)
    np.testing.assert_allclose(table.p_cf[0], fit_prior(free), atol=1e-5)
    np.testing.assert_allclose(table.scores[0], calibrate(raw, fit_prior(free)), atol=1e-5)


@pytest.mark.parametrize("lm_name", ["tiny_causal_lm", "tiny_masked_lm"])
def test_training_forward_sees_the_evaluators_demonstrations(request, lm_name, sentiment_task) -> None:
    lm = request.getfixturevalue(lm_name)
    evaluator = Evaluator(lm, demos=Demonstrations(k=1, seed=4))
    prompt = Prompt.build("[V*2]{sentence} It was[P]" + ("" if lm.is_causal else " ."), VERBALIZER,
                          soft=_tensor(2, lm.hidden_size, seed=5))
    examples = sentiment_task.split("train")[:5]  # drawn from the pool: each gets others as demonstrations
    expected = evaluator.score([prompt], examples, sentiment_task).scores[0]
    soft = prompt.soft.clone().requires_grad_(True)
    batch = soft_forward(evaluator.encoder, evaluator.validated(prompt, sentiment_task), examples, sentiment_task,
                         soft, demos=evaluator.context.demonstrations)
    np.testing.assert_allclose(batch.scores.detach().numpy(), expected, rtol=ATOL, atol=ATOL)


def test_prompt_file_carries_soft_deep_head_calibration_and_demos(tiny_causal_lm, sentiment_task,
                                                                  tmp_path: Path) -> None:
    lm = tiny_causal_lm
    evaluator = Evaluator(lm, calibration="contextual", demos=Demonstrations(k=1, separator="\n"))
    prompt = dataclasses.replace(_head_prompt(lm, "[V*2]{sentence} It was[P]"), deep=_deep(lm, 2, 6))
    fitted = evaluator.resolved(prompt, sentiment_task)
    fitted.save(tmp_path)
    loaded = Prompt.load(tmp_path)
    for name in ("soft", "deep", "head"):
        assert torch.equal(getattr(loaded, name), getattr(fitted, name)), name
    assert loaded.head_labels == fitted.head_labels and loaded.demos == fitted.demos
    assert loaded.calibration == fitted.calibration and loaded.calibration.fitted
    dev = sentiment_task.split("dev")
    again = Evaluator(lm)
    np.testing.assert_allclose(again.score([loaded], dev, sentiment_task).scores,
                               evaluator.score([prompt], dev, sentiment_task).scores, atol=1e-6)
    assert again.forward_rows == len(dev)  # the recorded prior is used, not refitted


def test_soft_search_with_calibration_and_demos_saves_what_it_scored(tiny_causal_lm, sentiment_task,
                                                                     tmp_path: Path, monkeypatch) -> None:
    from autoprompt_search.searchers.soft import trainer as soft

    trained_with = []
    monkeypatch.setattr(soft, "soft_forward", lambda *a, **k: trained_with.append(k["demos"]) or soft_forward(*a, **k))
    evaluator = Evaluator(tiny_causal_lm, calibration="contextual", demos=Demonstrations(k=1))
    searcher = PromptTuningSearcher(templates=["[V*2]{sentence} It was[P]"], verbalizers=[VERBALIZER], lr=0.05,
                                    batch_size=4, steps=2, eval_every=1, seed=0)
    result = searcher.search(sentiment_task, tiny_causal_lm, evaluator=evaluator, run_dir=tmp_path, progress=False)
    assert trained_with and all(demos == evaluator.context.demonstrations for demos in trained_with)
    saved = Prompt.load(tmp_path)
    assert saved.demos == Demonstrations(k=1) and saved.calibration.fitted
    assert Evaluator(tiny_causal_lm).evaluate(saved, sentiment_task.split("test"), sentiment_task) \
        == pytest.approx(result.test_metrics)


def test_evaluate_many_cli_calibrates_every_job(tiny_model_dir: Path, tmp_path: Path) -> None:
    job = json.dumps({"template": "{sentence} It was[P]", "verbalizer": {"negative": "bad", "positive": "good"},
                      "data": "sentiment", "limit": 6})
    outs = [tmp_path / "plain.json", tmp_path / "calibrated.json"]
    for out, flags in zip(outs, [[], ["--calibrate", "--demos", "1"]], strict=True):
        assert main(["evaluate-many", "--model", str(tiny_model_dir), "--job", job, "--output-json", str(out),
                     *flags]) == 0
    plain, calibrated = (json.loads(out.read_text())["jobs"][0] for out in outs)
    assert plain["n"] == calibrated["n"] == 6 and plain["gold_logprob"] != calibrated["gold_logprob"]
