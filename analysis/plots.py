"""The study's plots: accuracy vs batch size, vs positive views and compute, training curves.

Figures are built on matplotlib's object API with the Agg canvas, so nothing touches pyplot's
global state or needs a display. Each plot shows the same validation-selected cells as the
tables (``selection.summarize``), with the same bootstrap intervals, and the random-init
baseline as a grey band where the study recorded one. A plot over an axis the study did not
vary is not drawn.
"""

from __future__ import annotations

import io
import math
import os
from pathlib import Path

import pandas as pd
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from analysis import load
from analysis.compute import DEVICE_HOURS_AT, MINUTES_AT, Compute
from analysis.labels import (
    EVAL_LABELS,
    RANDOM_INIT,
    commits_text,
    distinct_text,
    hours_unit,
    loss_label,
    loss_order,
)
from analysis.selection import seed_values, summarize
from analysis.statistics import LEVEL, mean_interval
from trainables.spec import run_schema as rs
from trainables.spec.losses import CATALOG

PLOT_FORMATS = ("png", "svg")
PNG_DPI = 150
CURVE_METRICS = (rs.M_VAL_KNN, rs.M_POS_PROB)
MAX_CURVES = 10

LOSS_COLORS: dict[str, str] = {name: entry.colour for name, entry in CATALOG.items()}
_SPARE_COLORS = ("tab:brown", "tab:pink", "tab:gray", "tab:olive", "tab:cyan")
_LINESTYLES = ("-", "--", ":", "-.")

AXIS_LABELS: dict[str, str] = {
    rs.M_TEST_AT_BEST_VAL: "test accuracy at val-selected epoch (%)",
    rs.M_MAX_TEST_OVER_EPOCHS: "max test accuracy over epochs (%)\n(test-set-selected)",
}

# Title and caption of each plot, by file stem; a title is never a table's (the page's headings tell them apart).
PLOTS: dict[str, tuple[str, str]] = {
    "accuracy_vs_batch_size": (
        "Plot of accuracy vs batch size",
        "Mean over seeds per loss and batch size (log-2 axis); error bars: 95 % bootstrap interval over seeds; "
        "grey band: the random-init baseline (named under the axis where it lies far below). Each point is the "
        "configuration with the best mean validation accuracy, as in the batch-size table.",
    ),
    "accuracy_vs_views": (
        "Accuracy vs positive views M and vs compute",
        "Left: mean over seeds per loss and M at equal epochs. Right: the same points against the mean "
        "device-hours per trial (V × epochs where none were logged), so that extra views are paid for; "
        "labels give M where a loss was run at several. Error bars: 95 % bootstrap interval over seeds; grey "
        "band: the random-init baseline (named under the axis where it lies far below).",
    ),
    "accuracy_vs_compute": (
        "Plot of accuracy against compute",
        "Left: test accuracy at the validation-selected epoch against the device-hours per trial, per loss and batch "
        "size (mean over seeds; bars: 95 % t interval over seeds). Middle and right: validation kNN accuracy at each "
        "evaluated epoch against the device-hours and the wall-clock minutes spent to reach it (mean over seeds per "
        "cell). Colour: loss; line style: batch size. The cells are the batch-size table's.",
    ),
    "training_curves": (
        "Training curves",
        "Per epoch: validation kNN accuracy and the mean InfoNCE probability of the positive, π⁺ "
        "(InfoNCE's gradient scale is 1 − π⁺). Default runs: per loss, the best-validation trial at the "
        "smallest and the largest batch size.",
    ),
}


def accuracy_figure(
    trials: pd.DataFrame, axis: str, metric: str = rs.M_TEST_AT_BEST_VAL, baselines: pd.DataFrame | None = None
) -> Figure:
    """Accuracy vs a study's axis, one line per loss: vs batch size, the picture of the log-K curse; vs
    positive views M, at equal epochs (left) and against device-hours per trial (right).

    Args:
        trials: Frame from ``load_study``.
        axis: ``rs.P_BATCH_SIZE`` or ``rs.P_VIEWS``.
        metric: Accuracy column to plot.
        baselines: Frame from ``load_baselines``, drawn as a band; None for none.

    Returns:
        The figure.
    """
    stem, panels, size, draw = _ACCURACY_PLOTS[axis]
    figure, axes = _figure(panels, size, stem, trials, sharey=True)
    summary = _present(summarize(trials, [rs.P_LOSS, axis], metric))
    if summary.empty:
        return _no_data(figure, _nothing_measured(trials, metric))
    draw(axes, summary, trials, metric)
    for ax in axes:
        _baseline_band(ax, baselines, metric, summary)
    _legend(axes[-1])
    return figure


def _batch_size_panel(axes: list[Axes], summary: pd.DataFrame, trials: pd.DataFrame, metric: str) -> None:
    [ax] = axes
    losses = list(summary[rs.P_LOSS].drop_duplicates())
    for position, (loss, group) in enumerate(summary.groupby(rs.P_LOSS, sort=False)):
        # Nudge each loss sideways (in log-2 units) so that overlapping error bars stay readable.
        nudge = 2 ** (0.04 * (position - (len(losses) - 1) / 2))
        _errorbar(ax, group[rs.P_BATCH_SIZE].astype(float) * nudge, group, loss)
    batch_sizes = sorted(summary[rs.P_BATCH_SIZE].astype(int).unique())
    ax.set_xscale("log", base=2)
    ax.set_xticks(batch_sizes, [str(size) for size in batch_sizes])
    ax.minorticks_off()
    ax.set_xlabel("batch size (images per step, log-2 scale)")
    ax.set_ylabel(AXIS_LABELS[metric])


def _views_panels(axes: list[Axes], summary: pd.DataFrame, trials: pd.DataFrame, metric: str) -> None:
    by_views, by_compute = axes
    # No sideways nudge: on an integer axis a shifted point reads as another M.
    for loss, group in summary.groupby(rs.P_LOSS, sort=False):
        _errorbar(by_views, group[rs.P_VIEWS].astype(float), group, loss)
    views = sorted(summary[rs.P_VIEWS].astype(int).unique())
    by_views.set_xticks(views, [str(count) for count in views])
    by_views.set_xlabel("positive views per anchor, M")
    by_views.set_ylabel(AXIS_LABELS[metric])
    by_views.set_title("equal epochs", fontsize=10)
    _compute_panel(by_compute, summary, trials)


# Per axis: the plot's file stem, its panels and size (inches), and what draws them.
_ACCURACY_PLOTS = {
    rs.P_BATCH_SIZE: ("accuracy_vs_batch_size", 1, (7.5, 4.6), _batch_size_panel),
    rs.P_VIEWS: ("accuracy_vs_views", 2, (11, 4.6), _views_panels),
}


def curves_figure(history: pd.DataFrame, trials: pd.DataFrame, run_ids: list[str]) -> Figure:
    """Validation kNN accuracy and π⁺ per epoch for some trials.

    Args:
        history: Frame from ``load_history`` with ``CURVE_METRICS``.
        trials: Frame from ``load_study`` (for each run's loss, batch size, M and seed).
        run_ids: The trials to draw, in legend order.

    Returns:
        The figure; colour is the loss, line style the batch size.
    """
    figure, (knn, pos_prob) = _figure(2, (13, 4.8), "training_curves", trials)
    if history.empty:
        return _no_data(figure, "no training curves were logged for the chosen runs")
    runs = trials.set_index(load.RUN_ID).loc[[run for run in run_ids if run in set(history[load.RUN_ID])]]
    styles = _batch_styles(runs[rs.P_BATCH_SIZE])
    name_views = runs[rs.P_VIEWS].nunique() > 1
    for run_id, run in runs.iterrows():
        for ax, metric, scale in ((knn, rs.M_VAL_KNN, 100), (pos_prob, rs.M_POS_PROB, 1)):
            points = history[(history[load.RUN_ID] == run_id) & (history["metric"] == metric)]
            ax.plot(
                points["step"], scale * points["value"], marker="." if len(points) < 30 else None,
                color=_color(run[rs.P_LOSS]), linestyle=styles[run[rs.P_BATCH_SIZE]], label=_run_label(run, name_views),
            )
    knn.set_ylabel("validation kNN accuracy (%)")
    pos_prob.set_ylabel("π⁺, mean probability of the positive")
    pos_prob.set_ylim(0, 1)
    for ax in (knn, pos_prob):
        ax.set_xlabel("pretraining epoch")
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    handles, labels = knn.get_legend_handles_labels()
    # One column beside the panels: run labels are long, and up to MAX_CURVES of them must fit.
    figure.legend(
        handles, labels, loc="outside right upper", frameon=False, fontsize=8,
        title="colour: loss, line: batch size", title_fontsize=8,
    )
    return figure


def default_curve_runs(trials: pd.DataFrame) -> list[str]:
    """Per loss, the best-validation completed trial at the smallest and at the largest batch size.

    Args:
        trials: Frame from ``load_study``.

    Returns:
        Up to ``MAX_CURVES`` run ids, losses in table order.
    """
    completed = trials[trials[load.STATUS] == rs.STATUS_COMPLETED]
    score = completed[rs.M_BEST_VAL_ACC].fillna(completed[rs.M_BEST_VAL_KNN])
    ranked = completed.assign(_score=score.fillna(-math.inf)).sort_values("_score", ascending=False)
    chosen = []
    for loss in loss_order(completed[rs.P_LOSS]):
        runs = ranked[ranked[rs.P_LOSS] == loss]
        for batch_size in sorted({runs[rs.P_BATCH_SIZE].min(), runs[rs.P_BATCH_SIZE].max()}):
            chosen.append(runs[runs[rs.P_BATCH_SIZE] == batch_size][load.RUN_ID].iloc[0])
    return chosen[:MAX_CURVES]


def study_figures(
    trials: pd.DataFrame,
    tracking_uri: str | None,
    metric: str = rs.M_TEST_AT_BEST_VAL,
    curve_runs: list[str] | None = None,
    baselines: pd.DataFrame | None = None,
) -> dict[str, Figure]:
    """The plots of the report, by file stem (keys of ``PLOTS``), for the axes the study varied.

    Args:
        trials: Frame from ``load_study``.
        tracking_uri: Where to read the training curves from.
        metric: Accuracy column to plot.
        curve_runs: Trial run ids for the training curves; default ``default_curve_runs``.
        baselines: Frame from ``load_baselines``, drawn as a band.

    Returns:
        The batch-size plot where more than one batch size ran, the views plot where more than
        one M ran, and the training curves.

    Raises:
        ValueError: A run in ``curve_runs`` is not a trial of this study.
    """
    runs = default_curve_runs(trials) if curve_runs is None else curve_runs
    strangers = sorted(set(runs) - set(trials[load.RUN_ID]))
    if strangers:
        raise ValueError(f"not trial runs of study {trials[load.STUDY].iloc[0]!r}: {', '.join(strangers)}")
    history = load.load_history(runs, CURVE_METRICS, tracking_uri)
    completed = trials[trials[load.STATUS] == rs.STATUS_COMPLETED]
    figures = {
        stem: accuracy_figure(trials, axis, metric, baselines)
        for axis, (stem, *_) in _ACCURACY_PLOTS.items()
        if completed[axis].nunique() > 1
    }
    return figures | {"training_curves": curves_figure(history, trials, runs)}


def compute_figure(compute: Compute, trials: pd.DataFrame, metric: str = rs.M_TEST_AT_BEST_VAL) -> Figure:
    """The headline against device-hours per trial, and validation kNN per epoch against device-hours and minutes."""
    figure, (final, by_hours, by_minutes) = _figure(3, (16, 4.8), "accuracy_vs_compute", trials)
    if compute.selected.empty:
        return _no_data(figure, _nothing_measured(trials, metric))
    unit = hours_unit(trials)
    styles = _batch_styles(compute.selected[rs.P_BATCH_SIZE])
    for (loss, batch), cell in compute.selected.groupby([rs.P_LOSS, rs.P_BATCH_SIZE], sort=False):
        seeds = seed_values(cell, metric)
        interval = mean_interval(seeds)
        error = [[100 * (seeds.mean() - interval.low)], [100 * (interval.high - seeds.mean())]] if interval.exists else None
        final.errorbar([cell[rs.M_DEVICE_HOURS].mean()], [100 * seeds.mean()], yerr=error, marker="o", capsize=3, color=_color(loss))
        final.annotate(f"B={batch}", (cell[rs.M_DEVICE_HOURS].mean(), 100 * seeds.mean()), textcoords="offset points", xytext=(5, 4), fontsize=8)
        curve = compute.curves[compute.curves[load.RUN_ID].isin(cell[load.RUN_ID])].groupby("step").mean(numeric_only=True)
        label = f"{loss_label(loss)}, B={batch}"
        for ax, column in ((by_hours, DEVICE_HOURS_AT), (by_minutes, MINUTES_AT)):
            ax.plot(curve[column], 100 * curve[rs.M_VAL_KNN], marker=".", color=_color(loss), linestyle=styles[batch], label=label)
    final.set_xlabel(f"{unit} per trial")
    final.set_ylabel(AXIS_LABELS.get(metric, metric))
    by_hours.set_xlabel(f"{unit} spent")
    by_minutes.set_xlabel("wall-clock minutes spent")
    for ax in (by_hours, by_minutes):
        ax.set_ylabel("validation kNN accuracy (%)")
        for threshold in compute.thresholds:
            ax.axhline(100 * threshold, color="0.6", linewidth=0.8, linestyle=":")
    handles, labels = by_hours.get_legend_handles_labels()
    figure.legend(handles, labels, loc="outside right upper", frameon=False, fontsize=8, title="colour: loss, line: batch size", title_fontsize=8)
    return figure


def save(figure: Figure, out_dir: Path, stem: str) -> list[Path]:
    """Write the figure as ``<stem>.png`` and ``<stem>.svg`` into ``out_dir``, each atomically."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = [out_dir / f"{stem}.{extension}" for extension in PLOT_FORMATS]
    for path in paths:
        partial = path.with_name(f".{path.name}.tmp")
        figure.savefig(partial, dpi=PNG_DPI, format=path.suffix[1:])
        os.replace(partial, path)
    return paths


def png_bytes(figure: Figure) -> bytes:
    """The figure as PNG bytes, for embedding in HTML."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=PNG_DPI)
    return buffer.getvalue()


def _figure(
    panels: int, size: tuple[float, float], stem: str, trials: pd.DataFrame, sharey: bool = False
) -> tuple[Figure, list[Axes]]:
    figure = Figure(figsize=size, layout="constrained")
    FigureCanvasAgg(figure)
    axes = list(figure.subplots(1, panels, sharey=sharey, squeeze=False)[0])
    for ax in axes:
        ax.grid(alpha=0.3)
    # Wrapped to the figure's width (about 10 characters per inch at this size) so that it is never cut.
    subtitle = _wrap(_subtitle_parts(trials, stem), width=int(10 * size[0]))
    figure.suptitle(f"{PLOTS[stem][0]}\n{subtitle}", fontsize=10.5)
    return figure, axes


def _subtitle_parts(trials: pd.DataFrame, stem: str) -> list[str]:
    mode = str(trials[load.EVAL_MODE].iloc[0])
    parts = [
        f"study {trials[load.STUDY].iloc[0]}",
        distinct_text(trials, rs.P_DATASET),
        distinct_text(trials, rs.P_BACKBONE),
        f"{distinct_text(trials, rs.P_EPOCHS)} epochs",
        f"{EVAL_LABELS.get(mode, mode)}",
        f"code {commits_text(trials, load.CODE_VERSION)}",
    ]
    return parts if stem == "training_curves" else [*parts, f"bars: {100 * LEVEL:g} % t interval over seeds"]


def _wrap(parts: list[str], width: int) -> str:
    """Join with " · ", breaking lines between parts only."""
    lines = [parts[0]]
    for part in parts[1:]:
        if len(lines[-1]) + 3 + len(part) > width:
            lines.append(part)
        else:
            lines[-1] += f" · {part}"
    return "\n".join(lines)


def _present(summary: pd.DataFrame) -> pd.DataFrame:
    return summary[summary["n"] > 0]


def _errorbar(ax: Axes, x: pd.Series, group: pd.DataFrame, loss: str) -> None:
    """Means with their t intervals over seeds (no bar where a cell has one seed)."""
    intervals = [mean_interval(seeds) for seeds in group["seeds"]]
    below = [cell - i.low if i.exists else 0.0 for cell, i in zip(group["mean"], intervals)]
    above = [i.high - cell if i.exists else 0.0 for cell, i in zip(group["mean"], intervals)]
    ax.errorbar(
        x, 100 * group["mean"], yerr=[[100 * value for value in below], [100 * value for value in above]],
        marker="o", markersize=5, capsize=3, color=_color(loss), label=loss_label(loss),
    )


def _baseline_band(ax: Axes, baselines: pd.DataFrame | None, metric: str, summary: pd.DataFrame) -> None:
    """The random-init mean as a dashed line, its interval as a band across the axes.

    Where the baseline lies further below the trained cells than they spread, drawing it would
    flatten their differences, so it is named under the x-axis label instead.
    """
    if baselines is None or baselines[metric].notna().sum() == 0:
        return
    seeds = seed_values(baselines[baselines[metric].notna()], metric)
    interval = mean_interval(seeds)
    low, high = 100 * summary["mean"].min(), 100 * summary["mean"].max()
    if 100 * seeds.mean() < low - max(high - low, 2.0):
        span = f" [{100 * interval.low:.1f}, {100 * interval.high:.1f}]" if interval.exists else ""
        ax.set_xlabel(f"{ax.get_xlabel()}\n{RANDOM_INIT}: {100 * seeds.mean():.1f} %{span}, below the axis")
        return
    if interval.exists:
        ax.axhspan(100 * interval.low, 100 * interval.high, color="0.85", zorder=0)
    ax.axhline(100 * seeds.mean(), color="0.45", linestyle="--", linewidth=1, label=RANDOM_INIT, zorder=1)


def _compute_panel(ax: Axes, summary: pd.DataFrame, trials: pd.DataFrame) -> None:
    """Accuracy against device-hours per trial (V × epochs where hours were not logged)."""
    use_hours = summary["device_hours"].notna().all()
    unit = hours_unit(trials)
    for loss, group in summary.groupby(rs.P_LOSS, sort=False):
        x = group["device_hours"] if use_hours else _encoder_passes(group, trials)
        order = x.argsort()
        _errorbar(ax, x.iloc[order], group.iloc[order], loss)
        if len(group) < 2:
            continue  # a loss run at one M only needs no label: the legend names it
        for value, (_, cell) in zip(x.iloc[order], group.iloc[order].iterrows()):
            ax.annotate(
                f"M={cell[rs.P_VIEWS]}", (value, 100 * cell["mean"]), textcoords="offset points",
                xytext=(6, -12), fontsize=8, color=_color(loss),
            )
    # Room at the right for the last point's label.
    ax.margins(x=0.1)
    ax.set_xlabel(f"{unit} per trial" if use_hours else "encoder passes per image (V × epochs)")
    ax.set_title("equal compute", fontsize=10)


def _encoder_passes(group: pd.DataFrame, trials: pd.DataFrame) -> pd.Series:
    passes = trials.groupby([rs.P_LOSS, rs.P_VIEWS])[load.ENCODER_PASSES].mean()
    return pd.Series([passes[(row[rs.P_LOSS], row[rs.P_VIEWS])] for _, row in group.iterrows()], index=group.index)


def _legend(ax: Axes) -> None:
    # Outside the axes, so that it never hides a point.
    ax.legend(title="loss", loc="upper left", bbox_to_anchor=(1.02, 1.0), frameon=False)


def _no_data(figure: Figure, message: str) -> Figure:
    """The figure with its empty axes hidden and a line saying why there is nothing to show."""
    for ax in figure.axes:
        ax.set_axis_off()
    figure.text(0.5, 0.45, message, ha="center", va="center", color="0.35", fontsize=11)
    return figure


def _nothing_measured(trials: pd.DataFrame, metric: str) -> str:
    mode = trials[load.EVAL_MODE].iloc[0]
    return f"no completed trial has a {mode} evaluation with {metric}"


def _color(loss: str) -> str:
    if loss in LOSS_COLORS:
        return LOSS_COLORS[loss]
    return _SPARE_COLORS[sum(map(ord, loss)) % len(_SPARE_COLORS)]


def _batch_styles(batch_sizes: pd.Series) -> dict[int, str]:
    ordered = sorted(set(batch_sizes), reverse=True)
    return {size: _LINESTYLES[index % len(_LINESTYLES)] for index, size in enumerate(ordered)}


def _run_label(run: pd.Series, name_views: bool) -> str:
    views = f", M={run[rs.P_VIEWS]}" if name_views else ""
    return f"{loss_label(run[rs.P_LOSS])}, B={run[rs.P_BATCH_SIZE]}{views}, seed {run[rs.P_SEED]}"
