"""The analysis package against a real MLflow store holding a synthetic study.

Expected numbers are computed here from the trial specs themselves (not from the loaded
frame), with plain pandas and scipy, and compared with what the tables report.
"""

from __future__ import annotations

import itertools
import math
import random
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow_fixtures import (  # tests/ helpers, via conftest
    make_synthetic_study,
    synthetic_baseline,
    synthetic_trial,
)
from scipy import stats

from analysis import (
    StudyNotFoundError,
    batch_size_table,
    equal_compute_table,
    load_baselines,
    load_study,
    lr_table,
    render,
    reported_table,
    views_table,
    write_report,
)
from analysis.__main__ import main
from analysis.cells import Diff, Span, Stat
from analysis.conditions import conditions
from analysis.labels import counted
from analysis.reported import PROVENANCE_TAGS, REPORTED
from trainables.spec import run_schema as rs

NAME = "synthetic-cifar"
LABELS = {"infonce": "InfoNCE", "flatnce": "FlatNCE", "dcl": "Debiased CL", "attentionnce": "AttentionNCE"}
BASE = {"infonce": 0.78, "flatnce": 0.84, "dcl": 0.81, "attentionnce": 0.83}
SLOPE = {"infonce": 0.025, "flatnce": 0.005, "dcl": 0.015, "attentionnce": 0.0}
EARLY_STOPPED_ACC = 0.10
STALE_EVAL_ACC = 0.50
OOM = "CUDA out of memory"
LINEAR = ("linear",)
KNN_TOO = {32: ("linear", "knn"), 256: ("linear", "knn")}  # batch sizes whose trials also get a kNN evaluation
RANDOM_INIT = {0: 0.402, 1: 0.391, 2: 0.415}  # random-init baseline accuracy per seed (no seed 3, as trials have)


@dataclass(frozen=True)
class Study:
    """The synthetic study as written: where, its study run, the trial specs and their truth."""

    uri: str
    run_id: str
    specs: list[dict[str, Any]]
    truth: pd.DataFrame


def accuracy(loss: str, batch_size: int, seed: int, views: int = 1) -> float:
    """A plausible test accuracy: the loss's level, its batch-size slope, and seeded noise."""
    noise = random.Random(f"{loss}/{batch_size}/{seed}/{views}").uniform(-0.01, 0.01)
    return BASE[loss] + SLOPE[loss] * math.log2(batch_size / 32) + 0.01 * views + noise


def study_specs() -> list[dict[str, Any]]:
    """Three losses x three batch sizes x three seeds, an lr sweep, M for AttentionNCE, and the odd cases."""
    specs = [
        synthetic_trial(loss, batch, seed, test_acc=accuracy(loss, batch, seed), eval_modes=KNN_TOO.get(batch, LINEAR))
        for loss in ("infonce", "flatnce", "dcl")
        for batch in (32, 64, 256)
        for seed in range(3)
    ]
    # Two seeds only: too few for the paired test.
    specs += [
        synthetic_trial(loss, 512, seed, test_acc=accuracy(loss, 512, seed))
        for loss in ("infonce", "flatnce")
        for seed in range(2)
    ]
    # An lr sweep at B=64: InfoNCE validates best at lr 1.0, FlatNCE at its lr 0.3 runs above.
    lr_sweep = (("infonce", 0.1, -0.02), ("infonce", 1.0, 0.05), ("flatnce", 0.1, -0.03), ("flatnce", 1.0, -0.01))
    for loss, lr, val_shift in lr_sweep:
        for seed in range(3):
            test = accuracy(loss, 64, seed) + val_shift / 2
            specs.append(synthetic_trial(loss, 64, seed, lr=lr, test_acc=test, val_acc=test + 0.01 + val_shift))
    # Debiased CL at B=128 swept over its own tau+: the better-validating 0.1 fills the cell.
    specs += [
        synthetic_trial(
            "dcl", 128, seed, test_acc=accuracy("dcl", 128, seed) + shift, extra_params={"tau_plus": tau_plus}
        )
        for tau_plus, shift in ((0.05, -0.01), (0.1, 0.0))
        for seed in range(3)
    ]
    specs += [
        synthetic_trial("attentionnce", 64, seed, views=views, test_acc=accuracy("attentionnce", 64, seed, views))
        for views in (1, 4)
        for seed in range(3)
    ]
    failed = synthetic_trial("flatnce", 256, 3, test_acc=0.9, status=rs.STATUS_FAILED, failure_reason=OOM)
    early = synthetic_trial("dcl", 32, 3, test_acc=EARLY_STOPPED_ACC, status=rs.STATUS_EARLY_STOPPED, epochs_done=4)
    specs += [failed, early]
    specs.append(synthetic_trial("dcl", 256, 3, test_acc=accuracy("dcl", 256, 3), eval_modes=("knn",)))
    # InfoNCE B=32 seed 0 was evaluated twice; the later evaluation is the one that counts.
    stale = synthetic_trial("infonce", 32, 0, test_acc=STALE_EVAL_ACC)["evals"][0]
    specs[0]["evals"].insert(0, stale)
    return specs


def truth_frame(specs: list[dict[str, Any]]) -> pd.DataFrame:
    """One row per trial straight from the specs, with the last evaluation of each mode."""
    rows = []
    for spec in specs:
        params = spec["params"]
        row = {key: params[key] for key in ("loss", "batch_size", "views", "views_per_image", "lr", "seed", "epochs")}
        row["tau_plus"] = params.get("tau_plus", math.nan)
        row["status"] = spec["status"]
        for mode in ("linear", "knn"):
            evals = [e for e in spec["evals"] if e["params"]["eval_mode"] == mode]
            row[f"{mode}_test"] = evals[-1]["metrics"]["test_acc_at_best_val"] if evals else math.nan
            row[f"{mode}_val"] = evals[-1]["metrics"]["best_val_acc"] if evals else math.nan
            row[f"{mode}_max"] = evals[-1]["metrics"].get("max_test_acc_over_epochs", math.nan) if evals else math.nan
        rows.append(row)
    truth = pd.DataFrame(rows)
    truth["passes"] = truth["views_per_image"] * truth["epochs"]
    return truth


def expected(truth: pd.DataFrame, cell: list[str], mode: str = "linear", value: str = "test") -> dict[tuple, tuple]:
    """(mean, std, n) per cell over the seeds of the configuration with the best mean validation."""
    config = [c for c in ("loss", "batch_size", "views", "lr", "epochs", "tau_plus") if c not in cell]
    usable = truth[(truth["status"] == "completed") & truth[f"{mode}_{value}"].notna()]
    result = {}
    for key, members in usable.groupby(cell):
        candidates = [group for _, group in members.groupby(config, dropna=False)]
        best = max(candidates, key=lambda group: (group[f"{mode}_val"].mean(), len(group)))
        values = best[f"{mode}_{value}"]
        result[key] = (values.mean(), values.std(), len(values))
    return result


def assert_cells(grid: pd.DataFrame, wanted: dict[tuple, tuple], row_key) -> None:
    for key, (mean, std, n) in wanted.items():
        cell = grid.at[row_key(key), key[-1]]
        assert isinstance(cell, Stat), key
        assert cell.n == n, key
        assert cell.mean == pytest.approx(mean, abs=1e-12), key
        assert (math.isnan(cell.std) and math.isnan(std)) or cell.std == pytest.approx(std, abs=1e-12), key


@pytest.fixture(scope="module")
def study(tmp_path_factory: pytest.TempPathFactory) -> Study:
    folder = tmp_path_factory.mktemp("mlflow")
    uri = f"sqlite:///{folder}/mlflow.db"
    specs = study_specs()
    baselines = [synthetic_baseline(seed, test_acc=value) for seed, value in RANDOM_INIT.items()]
    baselines.append(synthetic_baseline(0, test_acc=0.2, eval_mode="knn"))  # another mode's: never read here
    run_id = make_synthetic_study(uri, NAME, specs, baselines=baselines)
    return Study(uri, run_id, specs, truth_frame(specs))


@pytest.fixture(scope="module")
def trials(study: Study) -> pd.DataFrame:
    return load_study(NAME, study.uri)


@pytest.fixture(scope="module")
def baselines(study: Study) -> pd.DataFrame:
    return load_baselines(NAME, study.uri)


def seeds_of(truth: pd.DataFrame, loss: str, batch_size: int, lr: float = 0.3) -> pd.Series:
    """The linear test accuracy per seed of one completed M = 1 cell, straight from the specs."""
    query = f"loss == '{loss}' and batch_size == {batch_size} and status == 'completed' and views == 1 and lr == {lr}"
    return truth.query(query).set_index("seed")["linear_test"].dropna()


# --- loading ---------------------------------------------------------------------------------


def test_load_study_has_one_typed_row_per_trial(study: Study, trials: pd.DataFrame) -> None:
    assert len(trials) == len(study.specs)
    assert trials["run_id"].is_unique
    assert trials["study_run_id"].eq(study.run_id).all()
    statuses = {"completed": len(study.specs) - 2, "failed": 1, "early_stopped": 1}
    assert trials["status"].value_counts().to_dict() == statuses
    assert trials.loc[trials["status"] == "failed", "failure_reason"].tolist() == [OOM]
    assert str(trials["batch_size"].dtype) == "Int64" and trials["lr"].dtype == "float64"
    assert (trials["encoder_passes"] == trials["views_per_image"] * trials["epochs"]).all()
    assert trials["param.num_workers"].eq("2").all()
    assert trials["device_hours"].notna().sum() == len(study.specs) - 1


def test_load_study_by_run_id_equals_by_name(study: Study, trials: pd.DataFrame) -> None:
    by_id = load_study(study.run_id, study.uri)
    pd.testing.assert_frame_equal(by_id, trials)


def test_load_study_takes_the_latest_eval_and_never_fills_from_another_mode(
    study: Study, trials: pd.DataFrame
) -> None:
    twice = trials[(trials["loss"] == "infonce") & (trials["batch_size"] == 32) & (trials["seed"] == 0)].iloc[0]
    assert twice["n_evals"] == 2
    assert twice["test_acc_at_best_val"] == pytest.approx(study.truth.loc[0, "linear_test"])
    assert twice["test_acc_at_best_val"] != pytest.approx(STALE_EVAL_ACC)
    knn_only = trials[(trials["loss"] == "dcl") & (trials["batch_size"] == 256) & (trials["seed"] == 3)].iloc[0]
    assert knn_only["n_evals"] == 0 and math.isnan(knn_only["test_acc_at_best_val"])
    knn = load_study(NAME, study.uri, eval_mode="knn")
    knn_row = knn[knn["run_id"] == knn_only["run_id"]].iloc[0]
    assert knn_row["test_acc_at_best_val"] == pytest.approx(accuracy("dcl", 256, 3) - 0.05)


def test_unknown_study_says_which_tracking_uri_was_searched(study: Study) -> None:
    with pytest.raises(StudyNotFoundError, match="no-such-study.*" + re.escape(study.uri)):
        load_study("no-such-study", study.uri)


# --- tables ----------------------------------------------------------------------------------


def test_batch_size_table_matches_pandas(study: Study, trials: pd.DataFrame) -> None:
    table = batch_size_table(trials)
    wanted = expected(study.truth, ["loss", "batch_size"])
    assert_cells(table.grid, wanted, lambda key: LABELS[key[0]])
    # lr 1.0 validates best for InfoNCE at B=64, so its seeds fill that cell.
    assert wanted[("infonce", 64)][0] == pytest.approx(
        study.truth.query("loss == 'infonce' and batch_size == 64 and lr == 1.0")["linear_test"].mean()
    )
    assert "Debiased CL, B=128: τ⁺=0.1 (of 2)" in " ".join(table.footnotes)


def test_bold_only_where_the_best_is_resolved_above_every_other(study: Study, trials: pd.DataFrame) -> None:
    # Holm's adjusted p-value is never below the raw one, so a bold cell is its column's best mean and beats every
    # other cell of the column by a paired t-test (scipy's, on the common seeds) at 5 % before any correction.
    grid = batch_size_table(trials).grid
    by_seed = {key: values for key, values in _cells(study.truth).items() if len(values)}
    bold = 0
    for batch_size in grid.columns:
        cells = {label: by_seed[(loss, batch_size)] for loss, label in LABELS.items() if (loss, batch_size) in by_seed}
        best = max(cells, key=lambda label: cells[label].mean())
        for label, mine in cells.items():
            if not grid.at[label, batch_size].best:
                continue
            bold += 1
            assert label == best
            for other, values in cells.items():
                if other != label:
                    common = mine.index.intersection(values.index)
                    test = stats.ttest_rel(mine[common], values[common])
                    assert test.statistic > 0 and test.pvalue <= 0.05, (label, other, batch_size)
    # Three seeds in a family of dozens: FlatNCE's 5-point lead at B=32 is not enough.
    assert bold == 0 and not grid.at["FlatNCE", 32].best


def _cells(truth: pd.DataFrame) -> dict[tuple, pd.Series]:
    """Per (loss, batch size), the seeds of the configuration the table should pick, from the specs."""
    chosen = {("infonce", 64): 1.0}
    cells = {
        (loss, batch): seeds_of(truth, loss, batch, chosen.get((loss, batch), 0.3))
        for loss in ("infonce", "flatnce", "dcl")
        for batch in (32, 64, 256, 512)
    }
    picked = {("dcl", 128): "loss == 'dcl' and tau_plus == 0.1", ("attentionnce", 64): "loss == 'attentionnce' and views == 4"}
    for key, query in picked.items():
        cells[key] = truth.query(query).set_index("seed")["linear_test"]
    return cells


def test_difference_rows_pair_seeds_with_simultaneous_t_intervals(study: Study, trials: pd.DataFrame) -> None:
    table = batch_size_table(trials)
    grid = table.grid
    family = int(re.search(r"table's (\d+) distinct paired t-tests", " ".join(table.footnotes)).group(1))
    for batch_size in (32, 64, 256):
        flat = seeds_of(study.truth, "flatnce", batch_size)
        info = seeds_of(study.truth, "infonce", batch_size, 1.0 if batch_size == 64 else 0.3)
        differences = flat - info
        cell = grid.at["FlatNCE − InfoNCE", batch_size]
        assert cell.n_pairs == 3 and cell.value == pytest.approx(differences.mean())
        # A Bonferroni-simultaneous paired-t interval: mean ± t_{2, 1 - 0.05 / (2 m)} · s / √3.
        half = stats.t.ppf(1 - 0.05 / (2 * family), 2) * differences.std() / math.sqrt(3)
        assert (cell.interval.low, cell.interval.high) == pytest.approx((differences.mean() - half, differences.mean() + half))
        assert cell.verdict.p_value == pytest.approx(stats.ttest_rel(flat, info).pvalue)
        assert cell.verdict.p_adjusted >= cell.verdict.p_value and cell.resolved == (cell.verdict.p_adjusted <= 0.05)
        assert "over 3 seeds" in cell.interval.label and "simultaneous" in cell.interval.label
        assert [seed for seed, _ in cell.values] == [0, 1, 2]
    two_seeds = grid.at["FlatNCE − InfoNCE", 512]
    assert two_seeds.n_pairs == 2 and two_seeds.interval.exists and not two_seeds.resolved
    means = study.truth.query("batch_size == 512").groupby("loss")["linear_test"].mean()
    assert two_seeds.value == pytest.approx(means["flatnce"] - means["infonce"])
    text = render.to_markdown(table)
    assert "not resolved: resolvable from" in text and "Holm" in text and "P=" not in text


def test_random_init_row_and_learning_over_it(study: Study, trials: pd.DataFrame, baselines: pd.DataFrame) -> None:
    assert sorted(baselines["seed"].tolist()) == [0, 1, 2]
    base = pd.Series(RANDOM_INIT)
    for build in (batch_size_table, views_table, equal_compute_table, lr_table):
        table = build(trials, baselines=baselines)
        row = table.grid.loc["random init"]
        cells = list(row) if isinstance(row, pd.Series) else list(row.iloc[0])
        span, *rest = cells
        # The untrained encoder has no batch size, M or lr: its one number spans the axis's columns, once.
        axis_columns = [column for column in table.grid.columns if column != "spread (pp)"]
        assert isinstance(span, Span) and span.columns == len(axis_columns) and set(rest) == {None}
        cell = span.cell
        assert isinstance(cell, Stat) and cell.n == 3 and cell.mean == pytest.approx(base.mean())
        half = stats.t.ppf(0.975, 2) * base.std() / math.sqrt(3)
        assert (cell.interval.low, cell.interval.high) == pytest.approx((base.mean() - half, base.mean() + half))
    grid = batch_size_table(trials, baselines=baselines).grid
    flat = seeds_of(study.truth, "flatnce", 256)  # seeds 0-2 completed; seed 3 failed
    learned = grid.at["FlatNCE − random init", 256]
    assert learned.n_pairs == 3 and learned.value == pytest.approx((flat - base).mean()) and learned.resolved
    assert learned.verdict.p_value == pytest.approx(stats.ttest_rel(flat, base[flat.index]).pvalue)
    without = batch_size_table(trials).grid
    assert without.loc["random init"].iloc[0].cell == "not recorded" and set(without.loc["random init"].iloc[1:]) == {None}
    assert "FlatNCE − random init" not in without.index


def test_views_and_equal_compute_tables_match_pandas(study: Study, trials: pd.DataFrame) -> None:
    views = views_table(trials)
    assert_cells(views.grid, expected(study.truth, ["loss", "views"]), lambda key: LABELS[key[0]])
    compute = equal_compute_table(trials)
    assert_cells(compute.grid, expected(study.truth, ["loss", "passes"]), lambda key: LABELS[key[0]])
    assert list(compute.grid.columns) == [20, 30, 60]
    assert "AttentionNCE, V·epochs=60: M=4" in " ".join(compute.footnotes)
    # InfoNCE ran at V·epochs 20 only, AttentionNCE at 30 and 60: the table must not suggest they were compared.
    assert "Not compared: AttentionNCE never ran at the same V·epochs as InfoNCE" in " ".join(compute.footnotes)
    assert "Not compared" not in " ".join(views.footnotes)


def test_lr_table_matches_pandas_with_spread(study: Study, trials: pd.DataFrame) -> None:
    table = lr_table(trials)
    # A sensitivity table: only (loss, batch size) rows that ran more than one lr.
    swept = study.truth.groupby(["loss", "batch_size"])["lr"].nunique().loc[lambda counts: counts > 1].index
    assert swept.tolist() == [("flatnce", 64), ("infonce", 64)]
    wanted = {key: cell for key, cell in expected(study.truth, ["loss", "batch_size", "lr"]).items() if key[:2] in swept}
    assert_cells(table.grid, wanted, lambda key: (LABELS[key[0]], key[1]))
    assert [row for row in table.grid.index if row[0] in LABELS.values()] == [("InfoNCE", 64), ("FlatNCE", 64)]
    infonce_64 = [wanted[("infonce", 64, lr)][0] for lr in (0.1, 0.3, 1.0)]
    spread = table.grid.at[("InfoNCE", 64), "spread (pp)"]
    assert isinstance(spread, Diff) and spread.value == pytest.approx(max(infonce_64) - min(infonce_64))
    assert table.grid.at[("random init", ""), "spread (pp)"] is None


def test_failed_and_early_stopped_trials_are_excluded_and_counted(trials: pd.DataFrame) -> None:
    for build in (batch_size_table, views_table, equal_compute_table, lr_table):
        notes = " ".join(build(trials).footnotes)
        assert "Excluded from means: 1 failed (reason: CUDA out of memory), 1 early-stopped." in notes
        assert "1 completed trial(s) have no test_acc_at_best_val from a linear evaluation" in notes
    grid = batch_size_table(trials).grid
    assert grid.at["Debiased CL", 32].n == 3
    assert grid.at["FlatNCE", 256].n == 3


def test_knn_mode_reports_knn_evals_and_says_so(study: Study) -> None:
    table = batch_size_table(load_study(NAME, study.uri, eval_mode="knn"))
    assert "evaluation: kNN classifier" in table.caption
    assert_cells(table.grid, expected(study.truth, ["loss", "batch_size"], mode="knn"), lambda key: LABELS[key[0]])
    assert table.grid.at["Debiased CL", 256].n == 4


def test_test_set_selected_metric_is_labelled(study: Study, trials: pd.DataFrame) -> None:
    table = batch_size_table(trials, metric=rs.M_MAX_TEST_OVER_EPOCHS)
    assert "test-set-selected" in table.caption
    assert_cells(table.grid, expected(study.truth, ["loss", "batch_size"], value="max"), lambda key: LABELS[key[0]])


def test_reported_table_keeps_provenance_and_differences(trials: pd.DataFrame) -> None:
    table = reported_table(trials)
    rows = table.grid.reset_index()
    assert set(rows["dataset"]) == {"cifar10"} and set(rows["loss"]) <= set(LABELS.values())
    ours = rows[(rows["method (as reported)"] == "SimCLR (cross entropy)") & (rows["B"] == "32")].iloc[0]
    assert ours["reported (%)"] == "78.3" and ours["tag"] == "T"
    measured = batch_size_table(trials).grid.at["InfoNCE", 32]
    assert ours["measured here (%)"].mean == pytest.approx(measured.mean)
    # 10 epochs against the source's 100: the absolute numbers are set side by side, not subtracted.
    assert ours["conditions"] == "differ: 10 epochs against 100" and ours["measured − reported (pp)"] is None
    assert set(rows["tag"]) >= {"T", "F"}
    notes = " ".join(table.footnotes)
    assert "not measured here" in notes and "raminnakhli/Decoupled-Contrastive-Learning README" in notes


def test_reported_numbers_are_well_formed() -> None:
    for entry in REPORTED:
        assert entry.tag in PROVENANCE_TAGS
        assert 0 < entry.percent < 100
        assert entry.source and entry.setting
        for text in (entry.source, entry.setting, entry.note):  # a report's reader has the papers, not the project's notes
            assert ".md" not in text and "§" not in text, text


# --- output formats --------------------------------------------------------------------------


def test_markdown_has_caption_bold_best_and_footnotes(trials: pd.DataFrame) -> None:
    text = render.to_markdown(batch_size_table(trials))
    assert "Study synthetic-cifar" in text and "dataset cifar10" in text and "backbone resnet18" in text
    assert "10 pretraining epochs" in text and "linear probe" in text and "code 0123456789ab" in text
    assert "| loss | B=32 | B=64 | B=128 | B=256 | B=512 |" in text
    assert "**" not in text  # three seeds resolve no best cell (see the bold test)
    assert "- Excluded from means" in text
    assert "(n=3)" in text and "nan" not in text


def test_csv_round_trips_the_numbers(tmp_path: Path, trials: pd.DataFrame) -> None:
    table = batch_size_table(trials)
    path = tmp_path / "batch.csv"
    path.write_text(render.to_csv(table))
    frame = pd.read_csv(path, comment="#")
    stat = frame[(frame["loss"] == "FlatNCE") & (frame["batch size"] == 64)].iloc[0]
    cell = table.grid.at["FlatNCE", 64]
    assert stat["mean_pct"] == pytest.approx(100 * cell.mean, abs=1e-4) and stat["n"] == cell.n
    diff = frame[(frame["loss"] == "FlatNCE − InfoNCE") & (frame["batch size"] == 32)].iloc[0]
    cell = table.grid.at["FlatNCE − InfoNCE", 32]
    assert diff["low_pct"] == pytest.approx(100 * cell.interval.low, abs=1e-4)
    assert diff["p_adjusted"] == pytest.approx(cell.verdict.p_adjusted, rel=1e-5) and diff["resolved"] == cell.resolved
    diff = frame[(frame["loss"] == "FlatNCE − InfoNCE") & (frame["batch size"] == 256)].iloc[0]
    cell = table.grid.at["FlatNCE − InfoNCE", 256]
    assert not diff["resolved"] and diff["smallest_resolvable_pp"] == pytest.approx(100 * cell.verdict.smallest_resolvable, abs=1e-4)
    per_seed = dict(pair.split(":") for pair in diff["values"].split())
    assert {int(seed): float(value) for seed, value in per_seed.items()} == pytest.approx(
        {seed: 100 * value for seed, value in cell.values}, abs=1e-4
    )
    assert "paired-t interval over 3 seeds" in diff["interval"]
    assert path.read_text().startswith("# Accuracy vs batch size\n# Study synthetic-cifar")


def test_the_random_init_number_is_shown_once_in_every_format(
    tmp_path: Path, trials: pd.DataFrame, baselines: pd.DataFrame
) -> None:
    table = batch_size_table(trials, baselines=baselines)
    base = pd.Series(RANDOM_INIT)
    mean = f"{100 * base.mean():.2f}"
    columns = len(table.grid.columns)
    row = next(line for line in render.to_markdown(table).splitlines() if line.startswith("| random init |"))
    assert row.count(mean) == 1 and "every B" in row and row.count("|") == columns + 2  # the other columns empty
    page = render.to_html(table)
    assert page.count(f'colspan="{columns}">{mean}') == 1
    latex = render.to_latex(table)
    assert latex.count(rf"\multicolumn{{{columns}}}{{c}}{{{mean}") == 1
    path = tmp_path / "batch.csv"
    path.write_text(render.to_csv(table))
    frame = pd.read_csv(path, comment="#")
    [line] = frame[frame["loss"] == "random init"].to_dict("records")  # one machine-readable line, not one per B
    assert math.isnan(line["batch size"]) and line["mean_pct"] == pytest.approx(100 * base.mean(), abs=1e-4) and line["n"] == 3
    assert "column field is empty holds one value for every column" in path.read_text()


def test_latex_is_booktabs_and_escaped(trials: pd.DataFrame) -> None:
    text = render.to_latex(reported_table(trials))
    assert r"\toprule" in text and r"\midrule" in text and r"\bottomrule" in text
    assert r"\caption{" in text and r"\%" in text
    bold = render.to_latex(batch_size_table(trials))
    assert r"$-$" in bold and "Holm" in bold and "(n=3)" in bold
    for latex in (text, bold):
        assert not {"±", "−", "§", "—"} & set(latex)
        assert re.search(r"(?<!\\)[_%#]", latex) is None  # & separates columns, so it is not checked


# --- report and command line -----------------------------------------------------------------


def test_write_report_writes_everything_and_logs_it(tmp_path: Path, study: Study) -> None:
    report = write_report(NAME, study.uri, tmp_path)
    assert {path.suffix for path in report.tables["batch_size"]} == {".md", ".csv", ".tex"}
    # Compute differs across its cells (batch size, M): the report reads accuracy against it.
    assert set(report.tables) == {"batch_size", "views", "equal_compute", "lr", "reported_effects", "accuracy_vs_compute", "reported"}
    assert set(report.plots) == {"accuracy_vs_compute", "accuracy_vs_batch_size", "accuracy_vs_views", "training_curves"}
    for png, svg in report.plots.values():
        assert png.read_bytes().startswith(b"\x89PNG") and png.stat().st_size > 10_000
        assert "<svg" in svg.read_text()[:2000]
    page = report.html.read_text()
    assert page.count("<table>") == 7 and page.count("data:image/png;base64,") == 4
    headings = re.findall(r"<h2>(.*?)</h2>", page)
    assert len(headings) == len(set(headings)), headings  # a table and its plot are told apart
    style = re.search(r"<style>(.*?)</style>", page, re.DOTALL).group(1)  # report.css, on one line
    assert "\n" not in style and style.startswith("body { font-family") and style.endswith("color: #444; }")
    assert report.batch_size_markdown == (tmp_path / "tables" / "batch_size.md").read_text()
    client = MlflowClient(study.uri)
    logged = {item.path for folder in ("report", "report/tables", "report/plots")
              for item in client.list_artifacts(study.run_id, folder)}
    assert {"report/report.html", "report/tables/lr.tex", "report/plots/training_curves.svg"} <= logged


def test_cli_prints_tables_and_writes_plots(tmp_path: Path, study: Study, capsys: pytest.CaptureFixture) -> None:
    assert main(["tables", "--study", NAME, "--tracking-uri", study.uri]) == 0
    assert "### Accuracy vs batch size" in capsys.readouterr().out
    run = load_study(NAME, study.uri)["run_id"].iloc[0]
    assert main(["plots", "--study", NAME, "--tracking-uri", study.uri, "--out", str(tmp_path), "--runs", run]) == 0
    assert (tmp_path / "training_curves.png").is_file()


def test_cli_reports_unknown_study_and_has_help(study: Study, capsys: pytest.CaptureFixture) -> None:
    assert main(["tables", "--study", "nope", "--tracking-uri", study.uri]) == 2
    assert "no study named 'nope'" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["tables", "--help"])
    assert "--eval" in capsys.readouterr().out


def test_a_study_where_nothing_completed_still_reports(tmp_path: Path, study: Study) -> None:
    failed = [
        synthetic_trial(loss, 64, 0, test_acc=0.5, status=rs.STATUS_FAILED, failure_reason=reason)
        for loss, reason in (("infonce", OOM), ("flatnce", "NaN loss"))
    ]
    make_synthetic_study(study.uri, "all-failed", failed)
    report = write_report("all-failed", study.uri, tmp_path, log_to_mlflow=False)
    assert "| InfoNCE | — |" in report.batch_size_markdown
    assert f"2 failed (reasons: {OOM} ×1; NaN loss ×1)" in report.batch_size_markdown
    assert all(path.is_file() for path in report.paths)


# --- what the report shows around the tables ---------------------------------------------------

COMMIT = "0123456789abcdef0123456789abcdef01234567+dirty"


@pytest.fixture(scope="module")
def small_study(study: Study) -> str:
    """A quickstart-like study in the same store: M = 1 and one lr only, a flatclr probe, bf16, a 40-char commit."""
    specs = []
    for loss, batch_size, seed in itertools.product(("infonce", "flatnce"), (32, 64), range(3)):
        spec = synthetic_trial(
            loss, batch_size, seed, test_acc=0.40 + 0.01 * seed + 0.02 * (loss == "flatnce"), epochs=3,
            device_type="cuda", extra_params={"precision": "auto", "blur_prob": 0.5, "val_fraction": 0.1},
        )
        # As evaluation runs log them: the probe's settings under probe_ names, the encoder's under the trials' names.
        probe = {"recipe": "flatclr", "probe_batch_size": 512, "probe_epochs": 100, "batch_size": batch_size}
        spec["evals"][0]["params"] |= probe
        specs.append(spec)
    baselines = [synthetic_baseline(seed, test_acc=0.30 + 0.005 * seed) for seed in range(3)]
    make_synthetic_study(study.uri, "small", specs, preset="quickstart", code_version=COMMIT, baselines=baselines)
    return "small"


def test_sections_and_plots_only_for_axes_that_vary(tmp_path: Path, study: Study, small_study: str) -> None:
    report = write_report(small_study, study.uri, tmp_path, log_to_mlflow=False)
    # Batch sizes 32 and 64 differ in compute by 7 %: the report reads accuracy against it.
    assert set(report.tables) == {"batch_size", "reported_effects", "accuracy_vs_compute", "reported"}
    assert set(report.plots) == {"accuracy_vs_batch_size", "accuracy_vs_compute", "training_curves"}
    page = report.html.read_text()
    assert "positive views" not in page and "equal compute" not in page.lower()
    reported = (tmp_path / "tables" / "reported.md").read_text()
    assert "not run" not in reported and "Not listed:" in reported


def test_report_header_names_trials_wall_clock_run_and_short_commit(
    tmp_path: Path, study: Study, small_study: str
) -> None:
    report = write_report(small_study, study.uri, tmp_path, log_to_mlflow=False)
    summary = report.summary.read_text()
    run_id = load_study(small_study, study.uri)["study_run_id"].iloc[0]
    assert "- **Trials:** 12 (12 completed)" in summary
    assert "- **Random-init baseline:** 3 runs recorded" in summary
    assert f"run {run_id}" in summary and "- **Wall-clock:** " in summary
    short = "0123456789ab+dirty"
    assert f"- **Code:** {short}" in summary
    for path in [*report.tables["batch_size"], report.html]:
        text = path.read_text()
        assert COMMIT.split("+")[0] not in text and f"code {short}" in text
    assert '<section id="conditions"><h2>Conditions</h2>' in report.html.read_text()


def test_conditions_list_what_departs_from_the_papers_recipe(study: Study, small_study: str) -> None:
    lines = conditions(load_study(small_study, study.uri))
    text = "\n".join(lines)
    assert lines[0].startswith("Compared with the recipe of FlatCLR (Chen et al. 2021): arXiv 2107.01152")
    assert "Backbone: resnet18 (the paper: resnet50)." in text
    assert "Pretraining epochs: 3 (the paper: 100)." in text
    assert "Precision: bf16 autocast" in text  # precision auto on cuda
    assert "blur with probability 0.5 (the paper: no blur" in text
    assert "validation split of 0.1" in text
    assert "Linear probe: batch 512, lr 1.6 (the recipe's), 100 epochs" in text and "8× the step per example" in text
    assert "Backbone BatchNorm during evaluation: eval mode" in text
    # FlatCLR's probe trains on unaugmented images, as this one does: no line about the probe's input.
    assert "Evaluation:" not in text
    # The batch size is the study's question, not a departure from the paper's 512.
    assert "Pretraining batch size: 32, 64, the axis this study sweeps." in text and "(the paper: 512)" not in text
    # The synthetic study runs the AttentionNCE lineage's recipe at τ 0.5 and its blur (0.0 on CIFAR by default).
    lineage = "\n".join(conditions(load_study(NAME, study.uri)))
    assert "τ" not in lineage and "Precision" not in lineage and "Linear probe" not in lineage
    assert "Optimiser and lr: sgd, scaling linear, lr 0.1, 0.3, 1 (the axis this study sweeps) (the paper: adam, lr 0.001)." in lineage
    assert "Augmentation: Gaussian blur with probability 0 (the paper: Gaussian blur with p = 0.5" in lineage
    assert "Evaluation: a linear probe on frozen features" in lineage  # the lineage's probe trains on augmented images


def test_conditions_hold_only_departures_and_cite_no_project_file(study: Study, small_study: str) -> None:
    """A setting equal to the paper's gets no line, whether given or the dataset's default; no line names a
    file of this project, which a reader of the report has not."""
    trials = load_study(small_study, study.uri)
    for given in ("0.0", None):  # FlatCLR's CIFAR recipe has no blur; CIFAR-10's default has none either
        same = trials.copy()
        same["param.blur_prob"] = given
        text = "\n".join(conditions(same))
        assert "Augmentation" not in text and "blur" not in text.split("\n", 1)[1]
    text = "\n".join(conditions(trials) + conditions(load_study(NAME, study.uri)))
    assert "exact arithmetic" not in text and "InfoNCE" not in text  # the same loss, computed another way, is none
    assert not re.search(r"\.md\b|§|shared/docs|\b(trainables|analysis|study|search_spaces|benchmarks)/", text), text


def test_conditions_name_statistics_given_in_the_config(study: Study, small_study: str) -> None:
    trials = load_study(small_study, study.uri)
    assert not any(line.startswith("Normalisation") for line in conditions(trials))
    given = trials.copy()
    given.loc[given.index[:1], ["param.data.stats_source", "param.data.mean", "param.data.std"]] = ["config", "0.5,0.5,0.5", "0.2,0.2,0.2"]
    line = next(line for line in conditions(given) if line.startswith("Normalisation"))
    assert line == (
        f"Normalisation: per-channel mean 0.5,0.5,0.5 and std 0.2,0.2,0.2 given in the config of 1 of {len(trials)} trials "
        "(the paper: the dataset's own statistics)."
    )


def test_cli_html_needs_out_and_unknown_studies_are_listed(
    tmp_path: Path, study: Study, small_study: str, capsys: pytest.CaptureFixture
) -> None:
    with pytest.raises(SystemExit) as refused:
        main(["tables", "--study", small_study, "--tracking-uri", study.uri, "--format", "html"])
    assert refused.value.code == 2 and "--format html needs --out" in capsys.readouterr().err
    assert main(["tables", "--study", small_study, "--tracking-uri", study.uri, "--format", "html", "--out", str(tmp_path)]) == 0
    assert capsys.readouterr().out.strip() == str(tmp_path / "tables.html")
    assert (tmp_path / "tables.html").read_text().startswith("<!doctype html>")
    assert main(["report", "--study", "nope", "--tracking-uri", study.uri, "--out", str(tmp_path)]) == 2
    error = capsys.readouterr().err
    assert "no study named 'nope'" in error and "studies there:" in error
    assert f" {NAME}" in error and f" {small_study}" in error


def test_counts_read_as_english() -> None:
    assert counted(1, "common seed") == "1 common seed" and counted(2, "common seed") == "2 common seeds"
    assert counted(0, "run") == "0 runs"


@pytest.mark.parametrize(
    ("uri", "expected"),
    [
        ("https://alice:s3cret@mlflow.lab:5000/", "https://mlflow.lab:5000/#/experiments/7/runs/abc?workflowType=machine_learning"),
        ("postgresql://alice:s3cret@db.lab/mlflow", "run abc (experiment 7) in postgresql://db.lab/mlflow"),
    ],
)
def test_the_reports_study_run_link_opens_the_training_layout_and_holds_no_password(uri: str, expected: str) -> None:
    from analysis.load import EXPERIMENT_ID, STUDY_RUN_ID
    from analysis.report import study_run_link

    trials = pd.DataFrame({STUDY_RUN_ID: ["abc"], EXPERIMENT_ID: ["7"]})
    assert study_run_link(trials, uri) == expected  # a report is shared: the store's password stays out
