"""``python -m benchmarks.report``: results/LEADERBOARD.md and plots, from the runner's JSON records.

The Markdown is a pure function of the records and of each suite file (its ``also_against``, which
names rows to compare with, and its job specs, against which records whose entry has changed since
they ran are named stale): everything is sorted, floats have fixed formats, and there is no
timestamp, so regenerating from the same JSONs gives the same bytes (and a diff of LEADERBOARD.md
shows exactly what new results changed).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from autoprompt_search import atomic

from . import plots
from .common import RESULTS, trained_parameters
from .perf_table import perf_rows
from .stats import ALPHA, Comparison, compare, mcnemar_exact, mean_std, paired_bootstrap_bleu
from .suite import SUITES_DIR, Suite, load_suite, same_job
from .summary import summary_table

#: Above this many tasks a suite's table is transposed (rows tasks, columns searchers).
WIDE = 8
METRIC_NAMES = {"accuracy": "accuracy", "p_at_1": "P@1", "bleu": "BLEU / ROUGE-L"}
ENV_KEYS = ("torch", "transformers", "python", "cpu", "cpu_count", "threads", "cuda", "dtype")


@dataclass
class SuiteView:
    """The records of one suite, grouped for tables and plots."""

    name: str
    records: list[dict[str, Any]]  # status ok, sorted
    errors: list[dict[str, Any]]
    tasks: list[str]
    searchers: list[str]  # baseline first
    baseline: str
    also_against: tuple[str, ...] = ()  # more reference rows, each with its own delta table
    stale: dict[str, int] = field(default_factory=dict)  # row → records of a suite entry changed since

    def cell(self, searcher: str, task: str) -> list[dict[str, Any]]:
        return [r for r in self.records if r["searcher"] == searcher and r["task"] == task]

    @property
    def generation(self) -> bool:
        """Whether the cells are decoded text (BLEU, paired bootstrap) rather than correct answers (McNemar)."""
        return any(r["metric"] == "bleu" for r in self.records)

    def comparison(self, searcher: str, task: str, against: str | None = None) -> Comparison | None:
        """``searcher`` against the baseline (or the row ``against``) on ``task``, seed by seed."""
        against = against or self.baseline
        evidence = "bleu_stats" if self.generation else "correct"

        def by_seed(name: str) -> dict[int, tuple[float, list]]:
            return {r["seed"]: (r["test_score"], r["test_predictions"][evidence]) for r in self.cell(name, task)}

        if searcher == against:
            return None
        return compare(by_seed(against), by_seed(searcher),
                       paired_bootstrap_bleu if self.generation else mcnemar_exact)


def load_suites(runs: Path) -> list[SuiteView]:
    """Every ``<runs>/<suite>/*.json`` record, grouped by suite, in a fixed order."""
    by_suite: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for path in sorted(runs.glob("*/*.json")):
        record = json.loads(path.read_text(encoding="utf-8"))
        by_suite[record["suite"]].append(record)
    views = []
    for name in sorted(by_suite):
        records = sorted(by_suite[name], key=lambda r: (r["task_index"], r["task"], r["searcher"], r["seed"]))
        ok = [r for r in records if r["status"] == "ok"]
        baseline = records[0]["baseline"]
        tasks = list(dict.fromkeys(r["task"] for r in records))
        others = sorted({r["searcher"] for r in records} - {baseline})
        suite = _suite_file(name)
        recorded = (a for r in records for a in r["job"].get("also_against", ()))
        named = [*(suite.also_against if suite else ()), *recorded]
        also = tuple(a for a in dict.fromkeys(named) if a in others)  # rows with records only
        views.append(SuiteView(name, ok, [r for r in records if r["status"] != "ok"], tasks, [baseline, *others],
                               baseline, also, _stale_rows(ok, suite)))
    return views


def _suite_file(name: str) -> Suite | None:
    """The suite's file (``benchmarks/suites/<name>.yaml``), if there is one.

    Its ``also_against`` changes no result, so the runner does not re-run a finished job when it is
    extended, and records made before the extension do not name the new rows: the file says it.
    """
    path = SUITES_DIR / f"{name}.yaml"
    return load_suite(path) if path.is_file() else None


def _stale_rows(records: Sequence[dict[str, Any]], suite: Suite | None) -> dict[str, int]:
    """Per row, the records whose job the suite file no longer has as they ran it (changed or dropped):
    their scores stand in the tables, but they are not what the suite now asks for."""
    if suite is None:
        return {}
    jobs = {job.id: job for job in suite.jobs}
    stale: dict[str, int] = defaultdict(int)
    for record in records:
        job = jobs.get(record["job_id"])
        if job is None or not same_job(record["job"], job):
            stale[record["searcher"]] += 1
    return dict(sorted(stale.items()))


def render(views: Sequence[SuiteView], command: str, perf: list[list[str]] | None = None) -> str:
    """The whole LEADERBOARD.md; ``perf`` the speed and memory table (:mod:`perf_table`), if any."""
    summary = summary_table(views)
    lines = [
        "# Leaderboard", "",
        f"Regenerate: `{command}` (from the runner's JSON records, one per job; run a suite with",
        "`python -m benchmarks.run SUITE`, suites in `benchmarks/suites/`). Generated: do not edit by hand.", "",
        "Cells: test score in % (accuracy; P@1 for LAMA facts), mean ± std over seeds (ddof=0, as LM-BFF reports);",
        "generation cells are corpus BLEU / ROUGE-L (0-100) of the greedily decoded test texts.",
        "Marks against the suite's baseline: ▲/▼ when the 95 % paired-bootstrap CI of the mean delta over seeds",
        f"excludes 0 *and* a paired test on the same test examples gives p < {ALPHA} in that direction on at least",
        "half of the seeds: McNemar's exact test, or for generation Koehn's paired bootstrap of corpus BLEU over",
        "the test inputs. *Stores*: what a found prompt adds per task (discrete trigger ids, trained soft, deep",
        "and head parameters) against the frozen model's parameter count. *s/job*: mean wall-clock of a job",
        "(search and test scoring; a worker's first job also loads the model), on the machine named under",
        "Environment.", "",
        "## Which searcher should I use?", "",
        "Per suite and task, the row with the best mean test score over seeds (among rows with the most seeds), its",
        "mean gain over the suite's baseline with the 95 % paired-bootstrap CI over seeds (and the ▲/▼ mark), and its",
        "mean search seconds per job (search only). The time-to-quality plots under each suite show how fast each",
        "searcher gets there.", "",
        *(_markdown(summary) if summary else ["No finished jobs yet."]), "",
    ]
    for view in views:
        lines += _suite_section(view)
    if perf:
        lines += ["## Speed and memory", "",
                  "Ratios measured against their reference in the same run, by the `perf_*` benchmarks (records in",
                  "`results/perf/`, one per benchmark, each rewritten by the command beside it).", "",
                  *_markdown(perf), ""]
    return "\n".join(lines).rstrip("\n") + "\n"


def _suite_section(view: SuiteView) -> list[str]:
    first = (view.records or view.errors)[0]
    metric = sorted({METRIC_NAMES.get(r["metric"], r["metric"]) for r in view.records}) or ["-"]
    seeds = sorted({r["seed"] for r in view.records})
    seconds = sum(r["seconds"]["total"] for r in view.records + view.errors)
    lines = [f"## {view.name}", "",
             f"Model `{first['model']}`{_parameters(view)} · metric {', '.join(metric)} · "
             f"{len(view.records)} finished job(s), {len(view.errors)} failed · seeds {', '.join(map(str, seeds))} · "
             f"{seconds:.0f} s of job wall-clock in total", "",
             f"Environment: {_environment(view)}", ""]
    if view.stale:
        rows = ", ".join(f"`{row}` ({count})" for row, count in view.stale.items())
        lines += [f"**Stale records** (row and count): {rows} ran a job that `benchmarks/suites/{view.name}.yaml` "
                  f"has changed or dropped since; `python -m benchmarks.run {view.name}` re-runs the changed ones.", ""]
    lines += [*_score_table(view), ""]
    test = "paired-bootstrap (BLEU)" if view.generation else "McNemar"
    for against in (view.baseline, *view.also_against):
        if deltas := _delta_table(view, against):
            lines += [f"Against `{against}` (test points; per-seed {test} p-values):", "", *deltas, ""]
    lines += ["<details><summary>Prompts found (per task and searcher; seeds that found each)</summary>", "",
              *_prompt_table(view), "", "</details>", "",
              "<details><summary>Selection scores (what each search saw: its selection split, mean over seeds)"
              "</summary>", "", *_selection_table(view), "", "</details>", "",
              "<details><summary>Row settings as run (registered searcher, budget, Evaluator options, config; "
              "`$name` is a task variable)</summary>", "",
              *_settings_table(view), "", "</details>", ""]
    for record in view.errors:
        error = record["error"]
        lines.append(f"- FAILED `{record['job_id']}`: {error['type']}: {' '.join(error['message'].split())}")
    if view.errors:
        lines.append("")
    if view.records:
        lines += [f"![{view.name} scores]({view.name}-scores.png)", "",
                  f"![{view.name} search curves vs forward passes]({view.name}-curves-forward.png)", "",
                  f"![{view.name} search curves vs seconds]({view.name}-curves-seconds.png)", "",
                  f"![{view.name} time to quality]({view.name}-time-to-quality.png)", ""]
    return lines


def _cells(view: SuiteView) -> dict[tuple[str, str], tuple[float, float, int]]:
    out = {}
    for searcher in view.searchers:
        for task in view.tasks:
            if cell := view.cell(searcher, task):
                mean, std = mean_std([100 * r["test_score"] for r in cell])
                out[searcher, task] = (mean, std, len(cell))
    return out


def _rouge_l(view: SuiteView, searcher: str, task: str) -> str:
    """`` / ROUGE-L mean ± std`` of a generation cell (per seed: the mean of its inputs' ROUGE-L)."""
    mean, std = mean_std([float(np.mean(r["test_predictions"]["rouge_l"])) for r in view.cell(searcher, task)])
    return f" / {mean:.1f} ± {std:.1f}"


def _score_table(view: SuiteView) -> list[str]:
    cells = _cells(view)
    full = max((n for _, _, n in cells.values()), default=0)

    def text(searcher: str, task: str) -> str:
        if (searcher, task) not in cells:
            return "–"
        mean, std, n = cells[searcher, task]
        comparison = view.comparison(searcher, task)
        mark = f" {comparison.mark}" if comparison and comparison.mark else ""
        rouge = _rouge_l(view, searcher, task) if view.generation else ""
        return f"{mean:.1f} ± {std:.1f}{rouge}{mark}" + (f" (n={n})" if n < full else "")

    def average(searcher: str) -> str:
        means = [cells[searcher, t][0] for t in view.tasks if (searcher, t) in cells]
        return f"{sum(means) / len(means):.1f}" if len(means) == len(view.tasks) else "–"

    names = [f"{s} (baseline)" if s == view.baseline else s for s in view.searchers]
    if len(view.tasks) <= WIDE:
        rows = [["searcher", *view.tasks, "avg", "stores per task", "s/job"]]
        rows += [[name, *(text(s, t) for t in view.tasks), average(s), _stores(view, s), _seconds(view, s)]
                 for name, s in zip(names, view.searchers, strict=True)]
        return _markdown(rows)
    rows = [["task", *names]] + [[t, *(text(s, t) for s in view.searchers)] for t in view.tasks]
    rows.append(["**avg**", *(average(s) for s in view.searchers)])
    stores = [["searcher", "stores per task", "s/job"]] + [
        [name, _stores(view, s), _seconds(view, s)] for name, s in zip(names, view.searchers, strict=True)]
    return [*_markdown(rows), "", *_markdown(stores)]


def _delta_table(view: SuiteView, against: str) -> list[str]:
    rows = [["searcher", "task", "Δ mean", "95 % CI", "wins", "significant wins / losses", "p per seed"]]
    for searcher in view.searchers:
        for task in view.tasks:
            c = view.comparison(searcher, task, against)
            if c is None:
                continue
            pvalues = ", ".join(f"{s}: {_p(t.p_value)}" for s, t in zip(c.seeds, c.tests, strict=True))
            interval = f"[{100 * c.ci_low:+.1f}, {100 * c.ci_high:+.1f}]"
            rows.append([searcher, task, f"{100 * c.mean_delta:+.1f}", interval, f"{c.wins}/{len(c.seeds)}",
                         f"{c.significant_wins} / {c.significant_losses}", pvalues])
    return _markdown(rows) if len(rows) > 1 else []


def _prompt_table(view: SuiteView) -> list[str]:
    """Each distinct prompt (template with its trigger tokens, label words) with the seeds that found it."""
    rows = [["task", "searcher", "prompt", "label words", "seeds"]]
    for task in view.tasks:
        for searcher in view.searchers:
            found: dict[tuple[str, str], list[str]] = {}
            for record in view.cell(searcher, task):
                prompt = record["result"]["prompt"]
                words = (prompt.get("verbalizer") or {}).get("words") or {}
                key = (prompt["rendered"], " · ".join(f"{label}: {'/'.join(w)}" for label, w in words.items()))
                found.setdefault(key, []).append(str(record["seed"]))
            for (rendered, words), seeds in sorted(found.items()):
                rows.append([task, searcher, f"`{json.dumps(rendered, ensure_ascii=False)[1:-1]}`", words or "–",
                             ", ".join(seeds)])
    return _markdown(rows)


#: Selection-split metrics shown beside the test cells: the cell metric, then the likelihood the
#: searches select by (mean class log-likelihood; per-token reference log-likelihood for generation).
SELECTION_METRICS = ("accuracy", "p_at_1", "bleu", "class_logprob", "token_logprob")


def _selection_table(view: SuiteView) -> list[str]:
    """Per row and task: the selection split(s) and the mean of each selection metric over seeds."""
    shown = [m for m in SELECTION_METRICS if any(m in (r["result"]["dev_metrics"] or {}) for r in view.records)]
    rows = [["searcher", "task", "selection split", "seeds", *shown]]
    for searcher in view.searchers:
        for task in view.tasks:
            if not (cell := view.cell(searcher, task)):
                continue
            splits = sorted({r["result"]["selection_split"] for r in cell})
            values = []
            for name in shown:
                seen = [r["result"]["dev_metrics"][name] for r in cell if name in (r["result"]["dev_metrics"] or {})]
                values.append(f"{np.mean(seen):.3f}" if len(seen) == len(cell) else "–")
            rows.append([searcher, task, "/".join(splits), str(len(cell)), *values])
    return _markdown(rows)


def _settings_table(view: SuiteView) -> list[str]:
    """Each row's job settings as its records ran them; a row run with several settings has a line each."""
    rows = [["searcher", "runs", "budget", "Evaluator options", "config"]]
    for searcher in view.searchers:
        settings = {(r["job"].get("method") or searcher, _compact(r["job"].get("budget")),
                     _compact(r["job"].get("evaluator")), _compact(r["job"].get("config")))
                    for r in view.records if r["searcher"] == searcher}
        rows += [[searcher, f"`{method}`", *rest] for method, *rest in sorted(settings)]
    return _markdown(rows)


def _compact(value: Any) -> str:
    """A JSON value on one line, as code."""
    return f"`{json.dumps(value or {}, ensure_ascii=False, sort_keys=True, separators=(', ', ': '))}`"


def _stores(view: SuiteView, searcher: str) -> str:
    records = [r for r in view.records if r["searcher"] == searcher]
    if not records:
        return "–"
    triggers = sorted({r["storage"]["trigger_ids"] for r in records})
    trained = sorted({trained_parameters(r["result"]["prompt"]) for r in records})
    model = max(r["storage"]["model_parameters"] for r in records)
    share = 100 * trained[-1] / model
    return (f"{_span(triggers)} trigger ids, {_span(trained)} trained params "
            f"({'0' if share == 0 else f'{share:.2g}'} % of {_millions(model)})")


def _seconds(view: SuiteView, searcher: str) -> str:
    records = [r for r in view.records if r["searcher"] == searcher]
    return f"{sum(r['seconds']['total'] for r in records) / len(records):.0f}" if records else "–"


def _parameters(view: SuiteView) -> str:
    counts = sorted({r["storage"]["model_parameters"] for r in view.records})
    return f" ({', '.join(_millions(c) for c in counts)} parameters)" if counts else ""


def _environment(view: SuiteView) -> str:
    envs = [r["environment"] for r in view.records + view.errors]
    parts = []
    for key in ENV_KEYS:
        values = sorted({str(env.get(key)) for env in envs})
        parts.append(f"{key} {'/'.join(values)}")
    return ", ".join(parts)


def _span(values: list[int]) -> str:
    return f"{values[0]:,}" if len(values) == 1 else f"{values[0]:,}–{values[-1]:,}"


def _millions(count: int) -> str:
    return f"{count / 1e6:.1f}M" if count >= 100_000 else f"{count:,}"


def _p(value: float) -> str:
    return "<0.001" if value < 0.001 else f"{value:.3f}"


def _markdown(rows: list[list[str]]) -> list[str]:
    escape = [[cell.replace("|", "\\|") for cell in row] for row in rows]
    lines = ["| " + " | ".join(escape[0]) + " |", "|" + "---|" * len(escape[0])]
    return lines + ["| " + " | ".join(row) + " |" for row in escape[1:]]


def write_plots(views: Sequence[SuiteView], out: Path) -> None:
    for view in views:
        if not view.records:
            continue
        cells = {key: (mean, std) for key, (mean, std, _) in _cells(view).items()}
        plots.score_bars(out / f"{view.name}-scores.png", view.name, view.tasks, view.searchers, cells,
                         "test score (%)")
        for x, suffix in (("forward_passes", "forward"), ("seconds", "seconds")):
            plots.search_curves(out / f"{view.name}-curves-{suffix}.png", view.name, view.tasks, view.searchers,
                                view.records, x)
        plots.time_to_quality(out / f"{view.name}-time-to-quality.png", view.name, view.tasks, view.searchers,
                              view.records)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.report", description=__doc__.splitlines()[0])
    parser.add_argument("--runs", default=str(RESULTS / "runs"), help="records folder (default results/runs)")
    parser.add_argument("--out", default=str(RESULTS), help="where LEADERBOARD.md and the PNGs go (default results/)")
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parser.parse_args(argv)
    views = load_suites(Path(args.runs))
    if not views:
        print(f"no records under {args.runs}: run `python -m benchmarks.run SUITE` first", file=sys.stderr)
        return 1
    out = Path(args.out)
    command = shlex.join(["python", "-m", "benchmarks.report", *argv])
    atomic.write_text(out / "LEADERBOARD.md", render(views, command, perf_rows(out / "perf")))
    write_plots(views, out)
    print(f"wrote {out / 'LEADERBOARD.md'} and {sum(4 for v in views if v.records)} plots", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
