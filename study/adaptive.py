"""Adaptive seeds and seed planning: a study's comparisons, the cells each one needs, its looks.

The family is the tables' (``analysis/loss_tables.py``): each loss against InfoNCE in each grid
column (the cell's values other than the loss), and each cell against the random-init baseline,
paired by seed, on the reported test accuracy at the validation-selected epoch. An adaptive study
(``Preset.adaptive``) runs every cell's first ``initial`` seeds, then, at each look of its
schedule, ``analysis.sequential`` says which comparisons are resolved with the family-wise error
held over every look; the cells of those still open get the next ``step`` seeds, and the random
init gets them too. ``--seeds-for`` plans from a recorded study's per-seed spread instead.

The family and the schedule's text are pure Python, so that a dry run answers without pandas;
what reads MLflow or tests imports ``analysis`` when it is called.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from analysis.labels import REFERENCE_LOSS
from search_spaces.preset import Adaptive, Preset
from study.cost import estimated_seconds, minutes
from study.plan import Plan
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import PretrainConfig

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

    from analysis.sequential import Schedule
    from analysis.statistics import Verdict

RANDOM_INIT_CELL = "random-init"  # the baseline's name among a comparison's cells
METRIC = rs.M_TEST_AT_BEST_VAL  # the tables' reported number
ALPHA = 0.05  # the tables' family-wise error (95 % intervals)
POWER = 0.8  # the planning power of --seeds-for


def cell_label(cell: dict[str, Any]) -> str:
    """A cell's name in MLflow params, file names and the console: its values joined by '-'."""
    return "-".join(str(v) for v in cell.values()) or "all"


def cell_loss(preset: Preset, cell: dict[str, Any]) -> str:
    return cell.get("loss", preset.fixed.get("loss", PretrainConfig.loss))


@dataclass(frozen=True)
class Comparison:
    """X - Y of the family: two cells of the grid, or a cell and the random-init baseline (y None)."""

    x: dict[str, Any]
    y: dict[str, Any] | None

    @property
    def label(self) -> str:
        """``flatnce - infonce at batch_size=32`` or ``flatnce at batch_size=32 - random init``."""
        column = ", ".join(f"{k}={v}" for k, v in self.x.items() if k != "loss")
        at = f" at {column}" if column else ""
        if self.y is None:
            return f"{self.x.get('loss', 'trials')}{at} - random init"
        return f"{self.x['loss']} - {self.y['loss']}{at}"

    @property
    def cells(self) -> tuple[str, ...]:
        return (cell_label(self.x), RANDOM_INIT_CELL if self.y is None else cell_label(self.y))


def family(preset: Preset) -> list[Comparison]:
    """The study's comparisons, in table order: each loss against InfoNCE per column, then each cell
    against the random init."""
    cells = preset.cells()

    def column(cell: dict[str, Any]) -> dict[str, Any]:
        return {k: v for k, v in cell.items() if k != "loss"}

    references = {tuple(column(c).items()): c for c in cells if c.get("loss") == REFERENCE_LOSS}
    against_reference = [
        Comparison(cell, references[tuple(column(cell).items())])
        for cell in cells
        if "loss" in cell and cell["loss"] != REFERENCE_LOSS and tuple(column(cell).items()) in references
    ]
    return against_reference + [Comparison(cell, None) for cell in cells]


def schedule_lines(plan: Plan) -> list[str]:
    """What the plan and the console say of an adaptive study: its looks, family, most trials and cost."""
    adaptive = plan.preset.adaptive
    if adaptive is None:
        return []
    cells, comparisons = plan.preset.cells(), family(plan.preset)
    reference = sum(c.y is not None for c in comparisons)
    most = len(cells) * adaptive.max_seeds
    seconds = [estimated_seconds(c) for c in plan.configs]
    cost = (
        f"; at most {minutes(sum(seconds) * adaptive.max_seeds / adaptive.initial)} of trials (from measured throughput)"  # type: ignore[arg-type]
        if all(s is not None for s in seconds)
        else ""
    )
    return [
        f"adaptive seeds {adaptive.text()}: looks at {', '.join(map(str, adaptive.looks()))} seeds "
        f"(alpha {ALPHA:g} family-wise over every look, {adaptive.spending} spending); seeds in order: {list(plan.preset.seeds)}",
        f"  family: {len(comparisons)} comparisons ({reference} against {REFERENCE_LOSS} per column, "
        f"{len(comparisons) - reference} against random init); a look adds {adaptive.step} seed(s) to the cells of those still open",
        f"  first look: {len(plan.configs)} trials; at most {most} trials (every cell to {adaptive.max_seeds} seeds) "
        f"and {adaptive.max_seeds} random-init baselines{cost}",
    ]


# --- what reads the study's runs ----------------------------------------------------------------
def schedule(adaptive: Adaptive) -> Schedule:
    from analysis.sequential import Schedule

    return Schedule(adaptive.initial, adaptive.step, adaptive.max_seeds, ALPHA, adaptive.spending)


def matching(trials: pd.DataFrame, cell: dict[str, Any]) -> pd.DataFrame:
    """The trials of one cell: config params are typed columns of ``load_study``, others ``param.<name>`` text."""
    from analysis import load

    mask = trials[load.STATUS] == rs.STATUS_COMPLETED
    for key, value in cell.items():
        if key in load.CONFIG_TYPES:
            mask &= trials[key] == value
        else:
            mask &= trials[load.EXTRA_PARAM_PREFIX + key] == str(value)
    return trials[mask & trials[METRIC].notna()]


def per_seed(frame: pd.DataFrame) -> dict[int, float]:
    """Seed -> the metric (averaged where a seed ran twice, as ``analysis.selection.seed_values`` does)."""
    return {int(seed): float(value) for seed, value in frame.groupby(rs.P_SEED)[METRIC].mean().items()}


def differences(
    comparisons: list[Comparison], trials: pd.DataFrame, baselines: pd.DataFrame, seeds: tuple[int, ...]
) -> dict[str, np.ndarray]:
    """Per comparison, X - Y on the seeds both sides have, in the study's seed order.

    Shape: each array is [common seeds]."""
    import numpy as np

    def baseline(cell: dict[str, Any]) -> dict[int, float]:
        rows = baselines[baselines[METRIC].notna()]
        for key in (rs.P_DATASET, rs.P_BACKBONE):  # a grid over architectures has a baseline per architecture
            if key in cell:
                rows = rows[rows[key] == str(cell[key])]
        return per_seed(rows)

    found = {}
    for comparison in comparisons:
        x = per_seed(matching(trials, comparison.x))
        y = baseline(comparison.x) if comparison.y is None else per_seed(matching(trials, comparison.y))
        found[comparison.label] = np.array([x[s] - y[s] for s in seeds if s in x and s in y], dtype="float64")
    return found


def load_runs(study: str, tracking_uri: str, eval_mode: str) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, random-init baselines) of a recorded study, as the tables read them."""
    from analysis.load import load_baselines, load_study

    return load_study(study, tracking_uri, eval_mode=eval_mode), load_baselines(study, tracking_uri, eval_mode=eval_mode)


@dataclass(frozen=True)
class Look:
    """The verdicts at one look, and the cells that get the next seeds."""

    seeds: int  # seeds of the comparisons still open at this look
    verdicts: dict[str, Verdict]
    resolved: tuple[str, ...]
    open: tuple[str, ...]  # unresolved and short of max_seeds: their cells get more seeds
    cells: tuple[str, ...]  # cell labels, the random init among them where it is compared


def look_at(preset: Preset, seeds: int, trials: pd.DataFrame, baselines: pd.DataFrame) -> Look:
    """The sequential verdicts of every comparison of the study at the look of ``seeds`` seeds,
    replayed from its per-seed results (seeds beyond the look are not read)."""
    from analysis.sequential import (
        cells_needing_seeds,
        open_comparisons,
        sequential_verdicts,
    )

    assert preset.adaptive is not None
    comparisons = family(preset)
    plan = schedule(preset.adaptive)
    found = differences(comparisons, trials, baselines, preset.seeds[:seeds])
    verdicts = sequential_verdicts(found, plan, len(comparisons))
    still = open_comparisons(verdicts, plan)
    cells = cells_needing_seeds(verdicts, {c.label: c.cells for c in comparisons}, plan)
    order = list(dict.fromkeys(label for c in comparisons for label in c.cells))
    return Look(
        seeds,
        verdicts,
        tuple(c.label for c in comparisons if verdicts[c.label].resolved),
        tuple(c.label for c in comparisons if c.label in still),
        tuple(sorted(cells, key=order.index)),
    )


def look_line(look: Look, total: int, next_seeds: int | None) -> str:
    more = f"; next: {len(look.cells)} cell(s) to {next_seeds} seeds ({', '.join(look.cells)})" if look.cells and next_seeds else ""
    return f"look at {look.seeds} seeds: {len(look.resolved)} of {total} comparisons resolved, {len(look.open)} open{more}"


# --- seed planning --------------------------------------------------------------------------------
@dataclass(frozen=True)
class Need:
    """What one comparison of the family needs for an effect, from a recorded spread."""

    label: str
    pairs: int  # common seeds recorded
    sd: float  # their per-seed differences' standard deviation (NaN under 2 pairs)
    seeds: int | None  # seeds needed (None: more than the most considered, or no spread)


def seeds_for(preset: Preset, effect_pp: float, recorded: Mapping[str, np.ndarray]) -> list[Need]:
    """Per comparison, the seeds that resolve a true difference of ``effect_pp`` percentage points with
    ``POWER`` at the family's level (Bonferroni over the family: Holm's strictest step)."""
    import math

    from analysis.power import seeds_needed

    comparisons = family(preset)
    needs = []
    for comparison in comparisons:
        values = recorded.get(comparison.label)
        pairs = 0 if values is None else len(values)
        sd = float(values.std(ddof=1)) if pairs >= 2 else math.nan  # type: ignore[union-attr]
        seeds = None if math.isnan(sd) else seeds_needed(sd, effect_pp / 100, len(comparisons), ALPHA, POWER)
        needs.append(Need(comparison.label, pairs, sd, seeds))
    return needs


def seeds_for_lines(preset: Preset, effect_pp: float, study: str, needs: list[Need]) -> list[str]:
    from analysis.power import MAX_SEEDS

    lines = [
        f"seeds for a true difference of {effect_pp:g} pp at {POWER:.0%} power, family-wise alpha {ALPHA:g} over the "
        f"{len(needs)} comparisons (each at {ALPHA / len(needs):.4g}), from the per-seed spread of study {study!r}:",
        f"  {'comparison':<56}{'pairs':>6}{'sd (pp)':>9}{'seeds':>7}",
    ]
    for need in needs:
        sd = f"{need.sd * 100:9.2f}" if need.pairs >= 2 else f"{'n/a':>9}"
        seeds = str(need.seeds) if need.seeds is not None else (f">{MAX_SEEDS}" if need.pairs >= 2 else "n/a")
        lines.append(f"  {need.label:<56}{need.pairs:>6}{sd}{seeds:>7}")
    if any(need.pairs < 2 for need in needs):
        lines.append("  n/a: the recorded study has fewer than 2 common seeds of that comparison")
    return lines


def pilot_lines(preset_name: str, effect_pp: float) -> list[str]:
    """What --seeds-for says without a recorded study: the spread must be measured first."""
    return [
        f"seeds for {effect_pp:g} pp need the per-seed spread of a recorded study of preset {preset_name!r}; run a pilot first:",
        f"  python study/run_sweep.py --preset {preset_name} --set seeds=3 --name {preset_name}-pilot",
        f"  python study/run_sweep.py --preset {preset_name} --dry-run --seeds-for {effect_pp:g} --from-study {preset_name}-pilot",
    ]
