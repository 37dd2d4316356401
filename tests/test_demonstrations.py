"""In-context demonstrations: selection (seeded, per class, similar), no leakage, rendering,
truncation order, persistence, and the Evaluator and CLI wiring."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from autoprompt_search.cli import main
from autoprompt_search.data.tasks import Example, Task
from autoprompt_search.errors import DataError, TemplateError
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.demonstrations import Demonstrations, DemoSelector
from autoprompt_search.prompts.prompt import Prompt
from autoprompt_search.scoring.encoding import PromptEncoder
from autoprompt_search.scoring.evaluator import Evaluator

VERBALIZER = {"0": "bad", "1": "good"}
PROMPT = Prompt.build("{sentence} It was[P]", VERBALIZER)


def _ex(text: str, label: str | None = "1") -> Example:
    return Example({"sentence": text}, label)


def test_selection_is_reproducible_per_seed_and_per_class(sentiment_task: Task) -> None:
    pool = sentiment_task.split("train")
    queries = sentiment_task.split("dev")
    first = DemoSelector(pool, Demonstrations(k=2, seed=1), per_class=True)
    again = DemoSelector(pool, Demonstrations(k=2, seed=1), per_class=True)
    other = DemoSelector(pool, Demonstrations(k=2, seed=2), per_class=True)
    chosen = [first.choose(q) for q in queries]
    assert chosen == [again.choose(q) for q in reversed(queries)][::-1]  # independent of query order
    assert chosen != [other.choose(q) for q in queries]
    assert all(demos == chosen[0] for demos in chosen)  # one fixed context for queries outside the pool
    assert all(sorted(d.label for d in demos) == ["0", "0", "1", "1"] for demos in chosen)
    total = DemoSelector(pool, Demonstrations(k=3, per_class=False), per_class=False)
    assert all(len(total.choose(q)) == 3 for q in queries)


@pytest.mark.parametrize("selection", ["random", "similar"])
def test_a_query_never_demonstrates_itself(sentiment_task: Task, selection: str) -> None:
    pool = sentiment_task.split("train")
    selector = DemoSelector(pool, Demonstrations(k=5, selection=selection), per_class=True)
    for query in pool:
        demos = selector.choose(query)
        assert len(demos) == 10 and all(d.fields != query.fields for d in demos)
    duplicate = _ex(pool[0].fields["sentence"], label=None)  # same text, no label: still excluded
    assert pool[0] not in selector.choose(duplicate)


def test_similar_selection_puts_the_most_similar_next_to_the_query() -> None:
    pool = [_ex("apple pie recipe"), _ex("apple banana cherry"), _ex("apple banana date"), _ex("red car wheel")]
    selector = DemoSelector(pool, Demonstrations(k=3, per_class=False, selection="similar"), per_class=False)
    demos = selector.choose(_ex("apple banana cherry kiwi"))
    assert [d.fields["sentence"] for d in demos] == ["apple pie recipe", "apple banana date", "apple banana cherry"]
    sim = selector.similarity(_ex("apple banana cherry kiwi"))
    assert sim[3] == 0 and np.all(np.diff(sim[[0, 2, 1]]) > 0)
    per_class = [_ex("apple pie", "0"), _ex("apple banana", "0"), _ex("car", "1"), _ex("banana car", "1")]
    chosen = DemoSelector(per_class, Demonstrations(k=1, selection="similar"), per_class=True).choose(
        _ex("apple banana split"))
    assert [d.fields["sentence"] for d in chosen] == ["banana car", "apple banana"]


def test_demonstrations_render_with_the_template_before_the_query(tiny_causal_lm: LanguageModel) -> None:
    encoder = PromptEncoder(tiny_causal_lm)
    prompt = Prompt.build("Review: {sentence}\nSentiment:[P]", VERBALIZER, demos=Demonstrations(separator="\n\n"))
    encoded = encoder.encode(prompt, _ex("what a film"), [_ex("good fun", "1"), _ex("a bad plot", "0")])
    text = "Review: good fun\nSentiment: good\n\nReview: a bad plot\nSentiment: bad\n\nReview: what a film\nSentiment:"
    assert encoded.before == tuple(tiny_causal_lm.prefix_ids) + tuple(tiny_causal_lm.tokenize(text))


def test_triggers_and_soft_slots_repeat_in_demonstrations(tiny_masked_lm: LanguageModel) -> None:
    encoder = PromptEncoder(tiny_masked_lm)
    prompt = Prompt.build("{sentence} [T*2][V] It was[P].", VERBALIZER, demos=Demonstrations(),
                          trigger_ids=(7, 8))
    plain = encoder.encode(prompt, _ex("what a film"))
    shown = encoder.encode(prompt, _ex("what a film"), [_ex("good fun", "1")])
    assert len(shown.trigger_before) == 2 and shown.before[-len(plain.before) + 1 :] == plain.before[1:]
    assert [shown.before[i] for i in shown.trigger_before] == [7, 8]
    assert shown.before.count(7) == 2  # the demonstration shows the same trigger tokens
    assert [k for _, k in shown.soft_before] == [0, 0]  # and the same soft vector
    assert shown.after == plain.after


def test_overlong_inputs_drop_demonstrations_before_truncating_the_query(tiny_causal_lm: LanguageModel) -> None:
    encoder = PromptEncoder(tiny_causal_lm)
    prompt = Prompt.build("{sentence} It was[P]", VERBALIZER, demos=Demonstrations(separator="\n"))
    far, near = _ex("bad from start to end " * 6, "0"), _ex("the cast is great " * 6, "1")
    query = _ex("what a wonderful story")
    encoded = encoder.encode(prompt, query, [far, near])
    text = tiny_causal_lm.decode(list(encoded.before))
    assert "what a wonderful story It was" in text and "the cast is great" in text and "bad from" not in text
    long_query = _ex("the people of the country were happy " * 20)
    encoded = encoder.encode(prompt, long_query, [far, near])
    text = tiny_causal_lm.decode(list(encoded.before))
    assert "the cast" not in text and "bad from" not in text and text.endswith(" It was")
    assert len(encoded.before) <= tiny_causal_lm.max_length


@pytest.mark.parametrize("lm_name", ["tiny_causal_lm", "tiny_masked_lm"])
def test_evaluator_scores_equal_the_demonstrations_written_into_the_template(request, sentiment_task: Task,
                                                                             lm_name: str) -> None:
    lm = request.getfixturevalue(lm_name)
    config = Demonstrations(k=1, seed=3)
    query = sentiment_task.split("dev")[0]
    demos = DemoSelector(sentiment_task.split("train"), config, per_class=True).choose(query)
    written = "".join(f"{d.fields['sentence']} It was {VERBALIZER[d.label]}\n\n" for d in demos)
    literal = Prompt.build(written + "{sentence} It was[P]", VERBALIZER)
    expected = Evaluator(lm).score([literal], [query], sentiment_task).scores
    got = Evaluator(lm, demos=config).score([PROMPT], [query], sentiment_task).scores
    np.testing.assert_allclose(got, expected, atol=1e-5)


def test_demonstrations_round_trip_and_are_recorded(tiny_causal_lm: LanguageModel, sentiment_task: Task,
                                                    tmp_path: Path) -> None:
    config = Demonstrations(k=2, per_class=False, selection="similar", seed=5, separator="\n---\n")
    evaluator = Evaluator(tiny_causal_lm, demos=config, calibration="contextual")
    fitted = evaluator.resolved(PROMPT, sentiment_task)
    assert fitted.demos == config
    fitted.save(tmp_path)
    assert json.loads((tmp_path / "prompt.json").read_text())["demonstrations"] == {
        "k": 2, "per_class": False, "selection": "similar", "seed": 5, "separator": "\n---\n"}
    loaded = Prompt.load(tmp_path)
    assert loaded.demos == config and loaded.calibration == fitted.calibration
    dev = sentiment_task.split("dev")
    np.testing.assert_allclose(Evaluator(tiny_causal_lm).score([loaded], dev, sentiment_task).scores,
                               evaluator.score([PROMPT], dev, sentiment_task).scores)


def test_demonstrations_need_a_train_split(tiny_causal_lm: LanguageModel, sentiment_task: Task) -> None:
    no_train = Task("t", "classification", {"test": sentiment_task.split("dev")}, labels=("0", "1"))
    with pytest.raises(DataError, match="train split"):
        Evaluator(tiny_causal_lm, demos=Demonstrations()).score([PROMPT], no_train.split("test"), no_train)
    with pytest.raises(TemplateError, match="k >= 1"):
        Demonstrations(k=0)
    with pytest.raises(TemplateError, match="random"):
        Demonstrations(selection="nearest")  # type: ignore[arg-type]


def test_fact_tasks_show_the_object_and_draw_k_in_all(tiny_causal_lm: LanguageModel, fact_task: Task) -> None:
    prompt = Prompt.build("The capital of {sub_label} is[P]", demos=Demonstrations(k=2))
    evaluator = Evaluator(tiny_causal_lm)
    evaluator.score([prompt], fact_task.split("dev"), fact_task)
    query = fact_task.split("dev")[0]
    demos = evaluator.context.demonstrations(evaluator.with_defaults(prompt), query, fact_task)
    assert len(demos) == 2 and all(d in fact_task.split("train") for d in demos)
    text = tiny_causal_lm.decode(list(evaluator.encoder.encode(prompt, query, demos).before))
    assert f"The capital of {demos[0].fields['sub_label']} is {demos[0].label}\n\n" in text


def test_cli_demos_flags(tiny_model_dir: Path, tmp_path: Path) -> None:
    rows = {"train": ["good film", "bad film", "good plot", "bad plot"], "dev": ["good acting", "bad acting"]}
    for split, sentences in rows.items():
        lines = ["sentence\tlabel"] + [f"{s}\t{int(s.startswith('good'))}" for s in sentences]
        (tmp_path / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    run = tmp_path / "run"
    assert main(["discover", "--model", str(tiny_model_dir), "--data", str(tmp_path), "--template",
                 "{sentence} It was[P]", "--verbalizer", json.dumps(VERBALIZER), "--demos", "1",
                 "--demo-selection", "similar", "--demo-separator", r"\n", "--calibrate", "--out", str(run)]) == 0
    saved = json.loads((run / "prompt.json").read_text())
    assert saved["demonstrations"]["selection"] == "similar" and saved["demonstrations"]["separator"] == "\n"
    assert saved["calibration"]["p_cf"] is not None
