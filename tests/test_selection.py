"""Selection that respects the noise: log-loss score, paired-bootstrap guard, calibration choice, final pick."""

from __future__ import annotations

import numpy as np
import pytest

from autoprompt_search import SEARCHERS, Budget, Evaluator, Prompt
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.errors import ConfigError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.scoring.selection import SelectionPolicy, bootstrap_lower, class_loglik, guard, selection_score
from autoprompt_search.searchers.final import final_selection

VERBALIZER = {"0": "bad", "1": "good"}


def test_logloss_score_ranks_by_class_loglik_and_breaks_ties_by_accuracy() -> None:
    confident = {"accuracy": 0.5, "class_logprob": -0.3, "gold_logprob": -5.0}
    lucky = {"accuracy": 0.75, "class_logprob": -0.6, "gold_logprob": -1.0}
    assert selection_score(confident, "classification") > selection_score(lucky, "classification")
    by_accuracy = [selection_score(m, "classification", "accuracy") for m in (confident, lucky)]
    assert by_accuracy[0] < by_accuracy[1]
    tied = dict(confident, accuracy=0.75)
    assert selection_score(tied, "classification") > selection_score(confident, "classification")
    fact = {"p_at_1": 0.5, "gold_logprob": -2.0}
    assert selection_score(fact, "fact") == selection_score(fact, "fact", "accuracy") > 0.49  # facts keep P@1


def test_class_loglik_is_renormalised_over_the_classes() -> None:
    scores = np.log(np.array([[0.2, 0.2], [0.1, 0.3]]))
    np.testing.assert_allclose(class_loglik(scores, np.array([0, 1])), np.log([0.5, 0.75]))


def test_guard_keeps_the_reference_when_the_gain_is_noise_and_switches_when_it_is_large() -> None:
    rng = np.random.default_rng(0)
    reference = rng.normal(-0.7, 0.3, size=64)
    noise = reference + rng.normal(0.0, 0.3, size=64)  # no real gain
    large = reference + 0.4 + rng.normal(0.0, 0.1, size=64)
    assert not guard(noise, reference, 0.9, seed=1).passed
    kept = guard(large, reference, 0.9, seed=1)
    assert kept.passed and kept.lower > 0.3 and kept.gain == pytest.approx(np.mean(large - reference))
    # a lower level is a looser bound
    gain = noise - reference
    assert bootstrap_lower(gain, 0.5, 0) > bootstrap_lower(gain, 0.9, 0) > bootstrap_lower(gain, 0.99, 0)


def test_policy_refuses_bad_options() -> None:
    for bad in ({"by": "f1"}, {"ensemble": 0}, {"guard": 1.5}, {"combine": "max"}, {"select_on": "test"}):
        with pytest.raises(ConfigError):
            SelectionPolicy(**bad)


def _skewed_task() -> Task:
    """A task whose sentences all make the tiny model lean the same way: plain scoring predicts one class."""
    pos = ["good good good", "a good great film", "good and great", "great good fun", "good music good cast"]
    neg = ["bad bad bad", "a bad terrible film", "bad and terrible", "terrible bad plot", "bad music bad cast"]
    rows = [Example({"sentence": s}, "1") for s in pos] + [Example({"sentence": s}, "0") for s in neg]
    return Task("skewed", "classification", {"train": rows, "dev": rows}, labels=("0", "1"), fields=("sentence",))


def test_calibration_dimension_scores_both_variants_as_the_evaluator_would(tiny_causal_lm) -> None:
    task = _skewed_task()
    plain = Prompt.build("{sentence} It was[P]", VERBALIZER)
    decision = final_selection(Evaluator(tiny_causal_lm), task, task.split("dev"), [plain], None, SelectionPolicy(),
                               seed=0)
    by_variant = {row["calibrated"]: row["score"] for row in decision.evidence["candidates"]}
    expected = {calibrated: selection_score(Evaluator(tiny_causal_lm, calibration="contextual" if calibrated else None)
                                            .evaluate(plain, task.split("dev"), task), "classification")
                for calibrated in (False, True)}
    assert by_variant == pytest.approx(expected)
    winner = max(expected, key=expected.get)
    assert (decision.prompt.calibration is not None) == winner
    assert decision.score == pytest.approx(expected[winner])


def test_calibrated_variant_is_chosen_when_it_fixes_a_one_class_prompt(tiny_causal_lm: LanguageModel) -> None:
    """Search the pool the tiny model answers with one class: the calibrated variant must win there."""
    task = _skewed_task()
    evaluator = Evaluator(tiny_causal_lm)
    candidates = [Prompt.build(t, v) for t in ("{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]")
                  for v in (VERBALIZER, {"0": "terrible", "1": "great"})]
    plain = evaluator.score(candidates, task.split("dev"), task)
    calibrated = Evaluator(tiny_causal_lm, calibration="contextual").score(candidates, task.split("dev"), task)
    skewed = [c for c in range(len(candidates)) if len(set(plain.scores[c].argmax(1))) == 1
              and calibrated.metrics(c)["class_logprob"] > plain.metrics(c)["class_logprob"]]
    assert skewed, "the tiny model should answer some candidate with one class only"
    pick = candidates[skewed[0]]
    decision = final_selection(evaluator, task, task.split("dev"), [pick], None, SelectionPolicy(), seed=0)
    assert decision.prompt.calibration is not None and decision.prompt.calibration.fitted
    assert decision.evidence["chosen"]["calibrated"] is True
    off = final_selection(evaluator, task, task.split("dev"), [pick], None, SelectionPolicy(calibrate="off"), seed=0)
    assert off.prompt.calibration is None


def test_search_records_the_guard_and_keeps_the_manual_prompt_when_on(tiny_causal_lm, sentiment_task) -> None:
    templates = ["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]", "{sentence}\nIn short:[P]"]
    free = SEARCHERS["manual"](templates=templates, verbalizers=[VERBALIZER], seed=0).search(
        sentiment_task, tiny_causal_lm, progress=False)
    assert free.selection["guard"]["on"] is False and "lower" in free.selection["guard"]
    strict = SEARCHERS["manual"](templates=templates, verbalizers=[VERBALIZER], guard=0.999999, seed=0).search(
        sentiment_task, tiny_causal_lm, progress=False)
    # on 12 dev examples no gain clears a 99.9999 % bound: the first given pair comes back
    assert strict.selection["guard"]["decision"] == "reference"
    assert strict.prompt.template.source == templates[0] and strict.prompt.calibration is None


def test_select_on_all_uses_train_and_dev(tiny_causal_lm, sentiment_task) -> None:
    searcher = SEARCHERS["manual"](templates=["{sentence} It was[P]"], verbalizers=[VERBALIZER], select_on="all")
    result = searcher.search(sentiment_task, tiny_causal_lm, budget=Budget(iterations=1), progress=False)
    assert result.selection_split == "train+dev"
    assert result.dev_metrics["n"] == len(sentiment_task.split("train")) + len(sentiment_task.split("dev"))


def test_select_by_accuracy_is_the_old_rule(tiny_causal_lm, sentiment_task) -> None:
    templates = ["{sentence} It was[P]", "Review: {sentence}\nSentiment:[P]"]
    result = SEARCHERS["manual"](templates=templates, verbalizers=[VERBALIZER], select_by="accuracy",
                                 calibrate="off", seed=0).search(sentiment_task, tiny_causal_lm, progress=False)
    table = Evaluator(tiny_causal_lm).score([Prompt.build(t, VERBALIZER) for t in templates],
                                            sentiment_task.split("dev"), sentiment_task)
    scores = [selection_score(table.metrics(i), "classification", "accuracy") for i in range(2)]
    assert result.dev_score == pytest.approx(max(scores))


@pytest.mark.parametrize(("name", "split"), [("auto", "all"), ("filter", "all"), ("label-search", "all"),
                                              ("optuna", "dev"), ("autoprompt", "dev")])
def test_searchers_that_rank_many_cheap_candidates_select_on_every_labelled_example(name, split) -> None:
    """32 dev examples cannot tell a real gain from noise: the searchers whose candidates are scored
    on the labelled data anyway select on train + dev; AutoPrompt's triggers and optuna's trials are
    fit on train or rungs of dev, which stay apart."""
    assert SEARCHERS[name]().selection_policy().select_on == split
