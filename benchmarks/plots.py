"""Leaderboard figures (matplotlib, Agg): per-task scores with error bars, search curves, time to quality.

PNG files are byte-identical when redrawn from the same records: the backend is Agg, nothing
depends on the clock, and the metadata that would hold a version string is dropped.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # the backend is chosen before pyplot loads
from matplotlib import ticker

from autoprompt_search import atomic

DPI = 100
_SAVE = {"dpi": DPI, "format": "png", "metadata": {"Software": None}}


def score_bars(
    path: Path, title: str, tasks: Sequence[str], searchers: Sequence[str],
    cells: dict[tuple[str, str], tuple[float, float]], ylabel: str,
) -> None:
    """Grouped bars: one group per task, one bar per searcher, height mean, error bar std (in %).
    The figure grows with the bar count up to a page width (then bars get thinner); the legend
    sits right of the axes, where it hides no bar."""
    width = 0.8 / len(searchers)
    colours = searcher_colours(searchers)
    bars = len(tasks) * max(1, len(searchers))
    fig, ax = plt.subplots(figsize=(min(16.0, max(5.0, 0.2 * bars + 3.0)), 3.6))
    for i, searcher in enumerate(searchers):
        xs = [t + (i - (len(searchers) - 1) / 2) * width for t in range(len(tasks))]
        means = [cells.get((searcher, task), (math.nan, math.nan))[0] for task in tasks]
        stds = [cells.get((searcher, task), (math.nan, math.nan))[1] for task in tasks]
        ax.bar(xs, means, width, yerr=stds, capsize=2, label=searcher, color=colours[searcher])
    ax.set_xticks(range(len(tasks)), tasks, rotation=90 if len(tasks) > 10 else 0, fontsize=8)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=7, loc="upper left", bbox_to_anchor=(1.0, 1.0), ncol=math.ceil(len(searchers) / 14),
              frameon=False)
    _save(fig, path)


def search_curves(path: Path, title: str, tasks: Sequence[str], searchers: Sequence[str],
                  records: Sequence[dict[str, Any]], x: str) -> None:
    """Best-so-far dev score against ``x`` (``forward_passes`` or ``seconds``), one panel per task,
    one thin line per seed, one colour per searcher."""
    cols = min(6, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    height = 2.1 * rows + 0.4  # inches; the last 0.4 hold the legend
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 2.6 * cols), height), squeeze=False)
    colours = searcher_colours(searchers)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for record in records:
            if record["task"] != task:
                continue
            history = record["result"]["history"]
            xs = [float(step[x]) for step in history]
            ys = [float(step["best_score"]) for step in history]
            ax.plot(xs, ys, color=colours[record["searcher"]], linewidth=0.8, marker=".", markersize=3,
                    drawstyle="steps-post")
        ax.set_title(task, fontsize=8)
        ax.tick_params(labelsize=6)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[s], label=s) for s in searchers]
    fig.suptitle(f"{title}: best dev score vs {x.replace('_', ' ')}", fontsize=10)
    fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=len(searchers), frameon=False)
    _save(fig, path, bottom=0.35 / height)


def time_to_quality(path: Path, title: str, tasks: Sequence[str], searchers: Sequence[str],
                    records: Sequence[dict[str, Any]]) -> None:
    """Test score of the prompt found so far against search seconds (log axis), one panel per task,
    one line per searcher: the mean over seeds of each seed's step function (:func:`quality_curve`)."""
    cols = min(6, len(tasks))
    rows = math.ceil(len(tasks) / cols)
    per_row = min(len(searchers), 2 * cols + 1)  # legend entries per line, to fit the figure's width
    legend = 0.22 * math.ceil(len(searchers) / per_row) + 0.15  # inches below the panels
    height = 2.1 * rows + legend + 0.4
    fig, axes = plt.subplots(rows, cols, figsize=(max(5.0, 2.6 * cols), height), squeeze=False)
    colours = searcher_colours(searchers)
    for ax, task in zip(axes.flat, tasks, strict=False):
        for searcher in searchers:
            xs, ys = mean_quality_curve([quality_curve(r) for r in records
                                         if r["task"] == task and r["searcher"] == searcher])
            if xs:
                ax.plot(xs, ys, color=colours[searcher], linewidth=1.0, marker="o", markersize=3,
                        drawstyle="steps-post")
        _log_seconds_axis(ax)
        ax.set_title(task, fontsize=8)
        ax.tick_params(which="both", labelsize=6)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles = [plt.Line2D([], [], color=colours[s], label=s) for s in searchers]
    fig.suptitle(f"{title}: test score (%) of the best prompt so far\nvs search seconds (log), mean over seeds",
                 fontsize=9)
    fig.legend(handles=handles, loc="lower center", fontsize=7, ncol=per_row, frameon=False)
    _save(fig, path, bottom=legend / height)


def searcher_colours(searchers: Sequence[str]) -> dict[str, Any]:
    """One colour per searcher, the same in every figure of a suite: matplotlib's 10-colour cycle,
    or 40 colours (the tab20 and tab20b maps) when a suite has more rows than the cycle holds."""
    if len(searchers) <= 10:
        return {s: f"C{i}" for i, s in enumerate(searchers)}
    palette = [*plt.get_cmap("tab20").colors, *plt.get_cmap("tab20b").colors]
    return {s: palette[i % len(palette)] for i, s in enumerate(searchers)}


def _log_seconds_axis(ax: plt.Axes) -> None:
    """A log x axis labelled 1, 2, 5, 10, 20, ... in plain numbers: a panel spanning less than a
    decade otherwise labels every minor tick in scientific notation, and the labels overlap."""
    ax.set_xscale("log")
    ax.xaxis.set_major_locator(ticker.LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(ticker.FuncFormatter(lambda x, _: f"{x:g}"))
    ax.xaxis.set_minor_formatter(ticker.NullFormatter())


def quality_curve(record: dict[str, Any]) -> list[tuple[float, float]]:
    """(search seconds, test %) of one job: its checkpoints, then the final prompt at the search's end."""
    history = record["result"]["history"]
    end = float(history[-1]["seconds"]) if history else float(record["seconds"]["search"])
    points = [(float(c["seconds"]), 100 * float(c["test_score"])) for c in record.get("checkpoints", [])]
    return sorted({*points, (max(end, 1e-3), 100 * float(record["test_score"]))})


def mean_quality_curve(curves: Sequence[list[tuple[float, float]]]) -> tuple[list[float], list[float]]:
    """The mean of step functions, on the union of their x values from where every curve has begun
    (each curve holds its last value after its end)."""
    curves = [c for c in curves if c]
    if not curves:
        return [], []
    start = max(c[0][0] for c in curves)
    xs = sorted({x for c in curves for x, _ in c if x >= start})
    ys = [sum(next(y for x0, y in reversed(c) if x0 <= x) for c in curves) / len(curves) for x in xs]
    return xs, ys


def _save(fig: plt.Figure, path: Path, bottom: float = 0.0) -> None:
    """Write the PNG atomically; ``bottom`` is the figure fraction kept free for a legend."""
    fig.tight_layout(rect=(0, bottom, 1, 1))
    atomic.write_with(path, lambda tmp: fig.savefig(tmp, **_SAVE))
    plt.close(fig)
