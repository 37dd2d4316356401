"""The leaderboard's first table: which searcher to use, per suite and task.

For every task of every suite, the row (searcher or variant) with the highest mean test score over
the seeds it finished, among the rows with as many seeds as the suite's fullest row on that task
(a row with fewer seeds is not compared on an unequal footing). Its gain over the suite's baseline
is the paired comparison of :mod:`benchmarks.stats` (mean delta over seeds, 95 % paired-bootstrap
CI, the ▲/▼ mark), and its cost is the mean search seconds of a job (search only: no model
loading, no test scoring). When no row beats the baseline, the baseline is the answer.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .stats import mean_std

if TYPE_CHECKING:
    from .report import SuiteView


def summary_table(views: Sequence[SuiteView]) -> list[str]:
    """Markdown rows: suite, task, best row, its test score, Δ over the baseline with CI, search seconds."""
    rows = [["suite", "task", "use", "test %", "Δ vs baseline (95 % CI)", "search s/job", "baseline test %",
             "rows compared"]]
    for view in views:
        for task in view.tasks:
            cells = {s: view.cell(s, task) for s in view.searchers if view.cell(s, task)}
            if not cells:
                continue
            full = max(len(c) for c in cells.values())
            scores = {s: mean_std([100 * r["test_score"] for r in c]) for s, c in cells.items() if len(c) == full}
            best = max(scores, key=lambda s: (scores[s][0], -search_seconds(cells[s]), s == view.baseline))
            baseline = (f"{mean_std([100 * r['test_score'] for r in cells[view.baseline]])[0]:.1f}"
                        if view.baseline in cells else "–")
            comparison = view.comparison(best, task)
            if comparison is None:
                delta = "– (the baseline)" if best == view.baseline else "– (no common seeds)"
            else:
                mark = f" {comparison.mark}" if comparison.mark else ""
                delta = (f"{100 * comparison.mean_delta:+.1f} [{100 * comparison.ci_low:+.1f}, "
                         f"{100 * comparison.ci_high:+.1f}]{mark}")
            mean, std = scores[best]
            rows.append([view.name, task, f"`{best}`", f"{mean:.1f} ± {std:.1f}", delta,
                         f"{search_seconds(cells[best]):.0f}", baseline, str(len(scores))])
    return rows if len(rows) > 1 else []


def search_seconds(records: Sequence[dict]) -> float:
    """Mean search wall-clock of the records (the runner's ``seconds.search``)."""
    return sum(r["seconds"]["search"] for r in records) / len(records)
