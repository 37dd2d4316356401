"""``autoprompt-search``: evaluate a prompt, or discover one, from the command line.

Errors caused by the user's input print one line naming the problem and the fix (exit code 2);
only bugs show a traceback.
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path
from typing import Any

from ..data.demo_tasks import DEMO_TASKS, load_demo
from ..data.tasks import Task
from ..errors import AutopromptError, ConfigError, DataError
from ..models import DEFAULT_MODEL, load_model
from ..prompts.ensemble import load_prompt
from ..prompts.peft_export import export_peft
from ..prompts.prompt import Prompt
from ..prompts.template import unescape_cli
from ..prompts.verbalizer import Verbalizer
from ..scoring.generation import Decoding
from ..searchers import SEARCHERS, Budget, SoftSearcher
from ..searchers.config import check_options
from ..searchers.soft.deep import DeepSearcher
from . import default_run, e2e, evaluate_many
from .options import Parser, build_evaluator, emit, fail, json_object, load_data


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    try:
        args = parser.parse_args(argv)
    except AutopromptError as error:
        return fail(error)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING, format="%(levelname)s: %(message)s")
    try:
        return args.run(args)
    except AutopromptError as error:
        return fail(error)
    except KeyboardInterrupt:
        print("interrupted; a search with --out can continue with --resume", file=sys.stderr)
        return 130


def _parser() -> argparse.ArgumentParser:
    parser = Parser(prog="autoprompt-search", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(required=True, metavar="COMMAND")

    model_options = Parser(add_help=False)
    model_options.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or folder (default {DEFAULT_MODEL})")
    model_options.add_argument("--dtype", default="float32", choices=["float32", "bfloat16", "float16"])
    model_options.add_argument("--device", default="auto", help="auto, cpu or cuda[:N]")
    model_options.add_argument("--fact-match", default="first-token", choices=["first-token", "greedy"],
                               help="fact tasks: P@1 on the object's first token (LAMA) or its greedy whole word")
    model_options.add_argument("--calibrate", action="store_true",
                               help="contextual calibration (Zhao et al. 2021): divide out the label words' prior "
                                    "measured on content-free inputs (classification only)")
    model_options.add_argument("--demos", type=int, metavar="K",
                               help="in-context demonstrations from the train split: K per class (or K in all, "
                                    "see --demo-per-class) before each query")
    model_options.add_argument("--demo-selection", default="random", choices=["random", "similar"],
                               help="demonstrations drawn at random or most similar to the query (TF-IDF)")
    model_options.add_argument("--demo-per-class", default=True, action=argparse.BooleanOptionalAction,
                               help="K demonstrations per class (LM-BFF, default) or K in all")
    model_options.add_argument("--demo-seed", type=int, default=0, help="seed of the demonstration draw")
    model_options.add_argument("--demo-separator", default=r"\n\n",
                               help=r"text between demonstrations (default \n\n)")
    model_options.add_argument("--num-beams", type=int, default=1,
                               help="generation tasks: beam width of decoding (default 1: greedy)")
    model_options.add_argument("--max-new-tokens", type=int, default=Decoding.max_new_tokens,
                               help="generation tasks: decoding stops at end of text, a newline, or this many tokens")
    model_options.add_argument("--output-json", type=Path, help="also write the printed JSON to this file")
    model_options.add_argument("-v", "--verbose", action="store_true")

    common = Parser(add_help=False, parents=[model_options])
    common.add_argument("--data", help=f"data file or folder, or a demo task: {', '.join(DEMO_TASKS)}")
    common.add_argument("--field-map", type=json_object,
                        help='JSON {template field: column}, e.g. \'{"sentence": "text"}\'')
    common.add_argument("--label-field", help="column holding the label (default: detected)")
    common.add_argument("--verbalizer", action="append", help='JSON label → word(s), e.g. \'{"0":"bad","1":"good"}\'')
    common.add_argument("--template", action="append", help=r"template, e.g. 'Review: {sentence}\nSentiment:[P]'")

    ev = sub.add_parser("evaluate", parents=[common], help="score one prompt on a data split")
    ev.add_argument("--split", help="split to score (default: the file itself, else test, else dev)")
    ev.add_argument("--prompt", type=Path, help="a saved prompt.json (instead of --template/--verbalizer)")
    ev.set_defaults(run=_evaluate)

    evaluate_many.add_parser(sub, model_options)
    e2e.add_parser(sub)

    searching = Parser(add_help=False)
    searching.add_argument("--searcher", default="auto", choices=sorted(SEARCHERS),
                           help="search strategy (default auto: filter with calibration, soft prompt if "
                                "affordable, then the top-k ensemble)")
    searching.add_argument("--config", type=json_object, default={}, help="JSON of searcher options")
    searching.add_argument("--iterations", type=int, help="budget: searcher steps")
    searching.add_argument("--forward-passes", type=int, help="budget: sequences run by the evaluator")
    searching.add_argument("--seconds", type=float, help="budget: wall-clock seconds")
    searching.add_argument("--seed", type=int, default=0)

    disc = sub.add_parser("discover", parents=[common, searching], help="search for a prompt and write a run directory")
    disc.add_argument("--out", type=Path, default=Path("runs/latest"), help="run directory (default runs/latest)")
    disc.add_argument("--resume", action="store_true", help="continue the run in --out where it stopped")
    disc.set_defaults(run=_discover)

    exp = sub.add_parser("export-peft", help="write a trained soft prompt as a PEFT prompt-tuning adapter")
    exp.add_argument("--prompt", type=Path, required=True, help="the prompt.json of a prompt-tuning/p-tuning run")
    exp.add_argument("--model", default=DEFAULT_MODEL, help=f"the model it was trained on (default {DEFAULT_MODEL})")
    exp.add_argument("--out", type=Path, required=True, help="folder for the PEFT adapter files")
    exp.add_argument("-v", "--verbose", action="store_true")
    exp.set_defaults(run=_export_peft)

    tn = sub.add_parser("tune", parents=[common, searching],
                        help="tune a searcher's hyperparameters with Optuna (objective: its dev score)")
    tn.add_argument("--space", type=json_object, required=True,
                    help='JSON search space, e.g. \'{"num_cand": ["int", 8, 32], "lr": ["log", 1e-3, 1e-1]}\'')
    tn.add_argument("--trials", type=int, default=20, help="trials (inner searches) this worker runs (default 20)")
    tn.add_argument("--storage", help="study storage: a SQLite file or a URL like postgresql://user@host/db "
                                      "(default: in memory); workers on one storage and --study share the study")
    tn.add_argument("--study", default="autoprompt-tune", help="study name (default autoprompt-tune)")
    tn.add_argument("--pruner", default="none", choices=["none", "median"],
                    help="stop inner searches whose best-so-far trails the median at the same step")
    tn.add_argument("--out", type=Path, default=Path("runs/tune"),
                    help="folder for tune.json and one run directory per trial (default runs/tune); run again "
                         "with the same --out and --storage to resume")
    tn.set_defaults(run=_tune)
    return parser


def _task(args: argparse.Namespace, *, split: str | None = None) -> Task:
    if args.data is None:
        return load_demo(default_run.DEMO_TASK)
    return load_data(args.data, field_map=args.field_map, label_field=args.label_field, split=split)


def _evaluate(args: argparse.Namespace) -> int:
    single_file = args.data is not None and Path(args.data).is_file()
    task = _task(args, split=args.split if single_file else None)
    split = args.split or next((s for s in ("test", "dev", "train") if task.has_split(s)), "test")
    if args.prompt:
        prompt = load_prompt(args.prompt)
    elif args.template:
        verbalizer = args.verbalizer[0] if args.verbalizer else None
        prompt = Prompt.build(unescape_cli(args.template[0]), verbalizer)
    else:
        raise DataError("evaluate needs a prompt: give --template (and --verbalizer), or --prompt prompt.json")
    lm = load_model(args.model, device=args.device)
    evaluator = build_evaluator(args, lm, progress=True)
    started = time.perf_counter()
    prompt = evaluator.resolved(prompt, task)
    result: dict[str, Any] = evaluator.evaluate(prompt, task.split(split), task, decode=True)
    seconds = time.perf_counter() - started
    result.update(split=split, seconds=round(seconds, 3), examples_per_second=round(result["n"] / seconds, 2),
                  template=prompt.render(lm.decode), dtype=args.dtype)
    if prompt.calibration:
        result["calibration"] = prompt.calibration.to_json()
    if prompt.demos:
        result["demonstrations"] = prompt.demos.to_json()
    emit(result, args.output_json)
    return 0


def _searcher_options(args: argparse.Namespace, task: Task) -> dict[str, Any]:
    """--config with --template/--verbalizer folded in (or the demo defaults on a demo task)."""
    config = dict(args.config)
    templates = [unescape_cli(t) for t in args.template or []]
    verbalizers = [_verbalizer_spec(v) for v in args.verbalizer or []]
    if (args.data is None or args.data in DEMO_TASKS) and not templates:
        soft = issubclass(SEARCHERS[args.searcher], SoftSearcher)
        deep = issubclass(SEARCHERS[args.searcher], DeepSearcher)
        defaults = default_run.demo_config(args.searcher, task.kind, soft=soft, deep=deep)
        templates, verbalizers = defaults["templates"], verbalizers or defaults.get("verbalizers", [])
        for key, value in defaults.items():
            if key not in ("templates", "verbalizers"):
                config.setdefault(key, value)
    if templates:
        config.setdefault("templates", templates)
    if verbalizers:
        config.setdefault("verbalizers", verbalizers)
    return config


def _discover(args: argparse.Namespace) -> int:
    task = _task(args)
    config = _searcher_options(args, task)
    check_options(args.searcher, SEARCHERS[args.searcher], config)
    try:
        searcher = SEARCHERS[args.searcher](seed=args.seed, **config)
    except TypeError as error:
        raise ConfigError(f"bad option for searcher {args.searcher!r}: {error}; see its docstring") from None
    budget = Budget(args.iterations, args.forward_passes, args.seconds)  # refused before the model loads
    if args.searcher == "auto" and (args.data is None or args.data in DEMO_TASKS) and budget == Budget():
        budget = Budget(seconds=default_run.DEMO_SECONDS)
    lm = load_model(args.model, device=args.device)
    evaluator = build_evaluator(args, lm)
    started = time.perf_counter()
    result = searcher.search(task, lm, budget=budget, evaluator=evaluator, run_dir=args.out, resume=args.resume)
    print(f"best prompt: {result.prompt.render(lm.decode)!r}")
    if result.prompt.verbalizer:
        print(f"label words: {json.dumps(dict(result.prompt.verbalizer.to_json()['words']))}")
    summary = {"task": task.name, "model": lm.name, "searcher": searcher.name, "run_dir": str(args.out),
               "selection_split": result.selection_split, "dev": result.dev_metrics, "test": result.test_metrics,
               "steps": len(result.history), "seconds": round(time.perf_counter() - started, 2)}
    if result.selection:
        summary["chosen"] = result.selection.get("chosen")
    emit(summary, args.output_json)
    return 0


def _export_peft(args: argparse.Namespace) -> int:
    prompt = Prompt.load(args.prompt)
    folder = export_peft(prompt, args.out, load_model(args.model, device="cpu"))
    print(f"wrote a PEFT adapter to {folder}: peft.PeftModel.from_pretrained(base_model, {str(folder)!r})")
    return 0


def _tune(args: argparse.Namespace) -> int:
    from ..tuning.tune import tune

    task = _task(args)
    config = _searcher_options(args, task)
    budget = Budget(args.iterations, args.forward_passes, args.seconds)
    lm = load_model(args.model, device=args.device)
    evaluator = build_evaluator(args, lm)
    result = tune(args.searcher, args.space, task, lm, config=config, trials=args.trials, budget=budget,
                  storage=args.storage, study=args.study, pruner=args.pruner, seed=args.seed, evaluator=evaluator,
                  out=args.out)
    summary = {"searcher": result.searcher, "best_params": result.best_params, "best_dev_score": result.best_value,
               "best_run": result.best_run, "trials": len(result.trials), "study": args.study, "out": str(args.out)}
    emit(summary, args.output_json)
    return 0


def _verbalizer_spec(text: str) -> dict[str, Any]:
    """A --verbalizer value as a dict, refused with a VerbalizerError when it is not one."""
    Verbalizer.parse(text)
    return json.loads(text)
