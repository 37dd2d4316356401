"""``autoprompt-search evaluate-many``: several tasks, each with its own prompt, scored in shared batches.

One frozen model serves every job: the rows of all jobs are sorted and packed together
(:meth:`Evaluator.evaluate_many`). A job is written either as ``PROMPT=DATA`` (a saved prompt.json
or its run directory, ``=``, a data file, folder or demo task) or as a JSON object::

    --job runs/sst2=data/SST-2/k-shot/16-13
    --job '{"template": "{sentence} It was[P]", "verbalizer": {"0": "bad", "1": "good"}, "data": "sentiment"}'
    --job '{"prompt": "runs/trec", "data": "data/trec/k-shot/16-13", "split": "dev", "limit": 100}'

JSON keys: ``prompt`` or ``template`` (+ ``verbalizer``), ``data``, and optionally ``split``,
``field_map``, ``label_field``, ``limit`` (first n examples) and ``name`` (shown in the output).
``--calibrate`` and ``--demos K`` apply to every job whose prompt does not carry its own.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

from ..data.tasks import Task
from ..errors import DataError
from ..models import load_model
from ..prompts.prompt import Prompt
from ..prompts.template import unescape_cli
from ..scoring.evaluator import Job
from .options import build_evaluator, emit, load_data

KEYS = ("prompt", "template", "verbalizer", "data", "split", "field_map", "label_field", "limit", "name")


def add_parser(sub: Any, model_options: argparse.ArgumentParser) -> None:
    many = sub.add_parser("evaluate-many", parents=[model_options],
                          help="score several tasks, each with its own prompt, in shared batches")
    many.add_argument("--job", action="append", required=True, metavar="PROMPT=DATA|JSON",
                      help="one task and its prompt, repeated per task: PROMPT=DATA (a saved prompt.json or run "
                           "directory, and a data file, folder or demo task) or a JSON object with keys "
                           + ", ".join(KEYS))
    many.set_defaults(run=run)


def parse_job(text: str) -> dict[str, Any]:
    """A ``--job`` value as a dict with known keys, refused with a DataError naming the fix."""
    if text.lstrip().startswith("{"):
        try:
            spec = json.loads(text)
        except (ValueError, RecursionError):
            raise DataError(f"--job {text!r} is not valid JSON: write e.g. "
                            '\'{"prompt": "runs/x", "data": "sentiment"}\'') from None
        if not isinstance(spec, dict):
            raise DataError(f"--job {text!r} must be a JSON object")
    else:
        prompt, sep, data = text.partition("=")
        if not sep or not prompt or not data:
            raise DataError(f"--job {text!r} is neither PROMPT=DATA nor a JSON object: write e.g. runs/sst2=data/sst2")
        spec = {"prompt": prompt, "data": data}
    if unknown := sorted(set(spec) - set(KEYS)):
        raise DataError(f"--job has unknown key(s) {', '.join(unknown)}: use {', '.join(KEYS)}")
    if ("prompt" in spec) == ("template" in spec):
        raise DataError(f"--job {text!r} needs exactly one of 'prompt' (a saved prompt.json) or 'template'")
    if "data" not in spec:
        raise DataError(f"--job {text!r} has no 'data': give a data file, folder or demo task")
    if "limit" in spec and (not isinstance(spec["limit"], int) or spec["limit"] < 1):
        raise DataError(f"--job limit {spec['limit']!r} must be a positive integer")
    return spec


def _task(spec: dict[str, Any]) -> Task:
    data = str(spec["data"])
    return load_data(data, field_map=spec.get("field_map"), label_field=spec.get("label_field"),
                     split=spec.get("split") if Path(data).is_file() else None)


def _prompt(spec: dict[str, Any]) -> Prompt:
    if "prompt" in spec:
        return Prompt.load(spec["prompt"])
    verbalizer = spec.get("verbalizer")
    return Prompt.build(unescape_cli(str(spec["template"])), json.dumps(verbalizer) if verbalizer else None)


def run(args: argparse.Namespace) -> int:
    specs = [parse_job(text) for text in args.job]
    jobs, described = [], []
    for spec in specs:  # every input is checked before the model loads
        task, prompt = _task(spec), _prompt(spec)
        split = spec.get("split") or next((s for s in ("test", "dev", "train") if task.has_split(s)), "test")
        examples = task.split(split)[: spec.get("limit")]
        jobs.append(Job(prompt, examples, task))
        described.append({"name": spec.get("name") or task.name, "data": str(spec["data"]), "split": split})
    lm = load_model(args.model, device=args.device)
    evaluator = build_evaluator(args, lm, progress=True)
    started = time.perf_counter()
    results = evaluator.evaluate_many(jobs)
    seconds = time.perf_counter() - started
    n = sum(len(job.examples) for job in jobs)
    out = {"jobs": [{**d, "template": job.prompts.render(lm.decode), **metrics}
                    for d, job, metrics in zip(described, jobs, results, strict=True)],
           "examples": n, "seconds": round(seconds, 3), "examples_per_second": round(n / seconds, 2),
           "dtype": args.dtype}
    emit(out, args.output_json)
    return 0
