"""Accuracy against compute: per-epoch cost recorded by the epoch end, read back per cell with
intervals over seeds, and in the report wherever compute differs across cells."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow_fixtures import make_synthetic_study, synthetic_baseline, synthetic_trial

from analysis.compute import (
    DEVICE_HOURS_AT,
    MINUTES_AT,
    compute_table,
    compute_varies,
    load_compute,
    reached,
)
from analysis.load import load_study
from analysis.render import to_markdown
from analysis.report import write_report
from trainables.spec import run_schema as rs

# Per-epoch validation kNN and elapsed seconds of each planted trial: (loss, batch, seed) -> curves.
KNN = {1: 0.30, 2: 0.42, 3: 0.50, 4: 0.55}
PER_EPOCH_S = {32: 60.0, 256: 30.0}  # the small batch costs twice as much per epoch


def planted(root: Path, *, elapsed: bool = True, batches: tuple[int, ...] = (32, 256)) -> tuple[str, pd.DataFrame]:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trials = []
    for loss, lift in (("infonce", 0.0), ("flatnce", 0.02)):
        for batch in batches:
            for seed in (0, 1, 2):
                trial = synthetic_trial(loss, batch, seed, test_acc=0.5 + lift + 0.01 * seed, epochs=4)
                history = trial["history"]
                history[rs.M_VAL_KNN] = {e: v + lift + 0.001 * seed for e, v in KNN.items()}
                history[rs.M_EPOCH_TIME] = [PER_EPOCH_S[batch] - 5] * 4  # training alone: less than the epoch's wall clock
                if elapsed:
                    history[rs.M_ELAPSED] = {e: e * PER_EPOCH_S[batch] * (1 + 0.1 * seed) for e in KNN}
                trial["metrics"] |= {rs.M_WALL_CLOCK: 4 * PER_EPOCH_S[batch], rs.M_DEVICE_HOURS: 2 * 4 * PER_EPOCH_S[batch] / 3600,
                                     rs.M_BEST_VAL_KNN: 0.55 + lift}
                trials.append(trial)
    make_synthetic_study(uri, "compute", trials, baselines=[synthetic_baseline(s, test_acc=0.2) for s in (0, 1, 2)])
    return uri, load_study("compute", uri)


def test_the_cost_to_a_level_is_that_of_the_first_epoch_reaching_it_in_device_hours_and_minutes(tmp_path: Path) -> None:
    uri, trials = planted(tmp_path)
    found = load_compute(trials, uri, thresholds=[0.5])
    first = reached(found, 0.5).set_index([rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_SEED])
    # InfoNCE reaches 0.50 (+0.001 x seed) at epoch 3; its seed s ran 60 x (1 + 0.1 s) s an epoch at B=32, on 2 workers.
    assert first.loc[("infonce", 32, 1), MINUTES_AT] == pytest.approx(3 * 60 * 1.1 / 60)
    assert first.loc[("infonce", 32, 1), DEVICE_HOURS_AT] == pytest.approx(2 * 3 * 60 * 1.1 / 3600)
    assert first.loc[("flatnce", 256, 0), MINUTES_AT] == pytest.approx(3 * 30 / 60)  # 0.52 at epoch 3, 0.44 at 2
    assert not found.summed_epochs
    table = compute_table(found, trials)
    cell = table.grid.loc[("InfoNCE", 32), "min to kNN ≥ 50 %"]
    assert cell.startswith("3.3 [") and cell.endswith("(n=3)")  # mean of 3.0, 3.3, 3.6 minutes, with its t interval
    assert table.grid.loc[("FlatNCE", 256), "test accuracy (%)"].mean == pytest.approx(0.53)


def test_a_level_some_seeds_never_reach_says_how_many_did(tmp_path: Path) -> None:
    uri, trials = planted(tmp_path)
    table = compute_table(load_compute(trials, uri, thresholds=[0.5505]), trials)
    assert table.grid.loc[("InfoNCE", 32), "min to kNN ≥ 55 %"].endswith("(2 of 3 seeds)")  # seeds 1 and 2 (0.551, 0.552); seed 0 ends at 0.550
    assert table.grid.loc[("FlatNCE", 32), "min to kNN ≥ 55 %"].endswith("(n=3)")


def test_an_old_store_without_per_epoch_elapsed_sums_epoch_times_and_says_so(tmp_path: Path) -> None:
    uri, trials = planted(tmp_path, elapsed=False)
    found = load_compute(trials, uri, thresholds=[0.5])
    assert reached(found, 0.5).set_index([rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_SEED]).loc[("infonce", 32, 0), MINUTES_AT] == pytest.approx(3 * 55 / 60)
    assert len(found.summed_epochs) == 12
    assert any("logged no per-epoch elapsed time" in note for note in compute_table(found, trials).footnotes)


def test_default_levels_are_reached_by_every_cell_on_average(tmp_path: Path) -> None:
    uri, trials = planted(tmp_path)
    assert load_compute(trials, uri).thresholds == (0.49, 0.55)  # lowest mean best kNN 0.55, and 90 % of it


def test_the_report_has_the_compute_table_and_plot_where_compute_varies_and_is_readable_by_others(tmp_path: Path) -> None:
    uri, trials = planted(tmp_path)
    assert compute_varies(trials)
    previous = os.umask(0o022)
    try:
        report = write_report("compute", uri, tmp_path / "report", log_to_mlflow=False)
    finally:
        os.umask(previous)
    assert "accuracy_vs_compute" in report.tables and "accuracy_vs_compute" in report.plots
    html = report.html.read_text()
    assert "Accuracy against compute" in html and "min to kNN ≥" in html
    for path in report.paths:
        assert stat.S_IMODE(path.stat().st_mode) == 0o644, path  # group and world may read, as the umask allows
    assert "CPU-h to kNN" in to_markdown(compute_table(load_compute(trials, uri), trials))


def test_a_batch_size_sweep_varies_compute_even_where_the_timings_are_equal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(PER_EPOCH_S, 32, PER_EPOCH_S[256])  # one machine's timings that do not tell the batches apart
    uri, trials = planted(tmp_path)
    assert trials.groupby(rs.P_BATCH_SIZE)[rs.M_DEVICE_HOURS].mean().nunique() == 1
    assert compute_varies(trials)


def test_a_study_of_one_cost_has_no_compute_section(tmp_path: Path) -> None:
    uri, trials = planted(tmp_path, batches=(32,))
    assert not compute_varies(trials)
    report = write_report("compute", uri, tmp_path / "report", log_to_mlflow=False)
    assert "accuracy_vs_compute" not in report.tables


def test_the_epoch_end_records_the_cost_so_far_across_a_restart(tmp_path: Path) -> None:
    from trainables.integration.session import LocalSession
    from trainables.integration.tracking import create_run
    from trainables.run.epoch_end import EpochEnd
    from trainables.spec.pretrain_config import from_dict

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "e", run_name="r", params={}, tags={})
    cfg = from_dict({"dataset": "digits", "backbone": "small", "epochs": 3, "workers": 2, "cpus_per_worker": 0.5, "n_save_epochs": 3})
    metrics = {rs.M_TRAIN_LOSS: 1.0, rs.M_POS_PROB: 0.5, rs.M_GRAD_SCALE: 0.5}
    first = EpochEnd(cfg, LocalSession(tmp_path / "a"), run_id=run_id, tracking_uri=uri)
    first.start(0)
    first.clock -= 100.0  # as if epoch 1 took 100 s
    first(1, metrics, dict)
    again = EpochEnd(cfg, LocalSession(tmp_path / "b"), run_id=run_id, tracking_uri=uri)
    again.start(1)  # restarted from epoch 1's checkpoint
    again(2, metrics, dict)
    client = MlflowClient(uri)
    elapsed = {m.step: m.value for m in client.get_metric_history(run_id, rs.M_ELAPSED)}
    hours = {m.step: m.value for m in client.get_metric_history(run_id, rs.M_DEVICE_HOURS_ELAPSED)}
    assert elapsed[1] >= 100.0 and elapsed[2] >= elapsed[1]  # the clock goes on from the checkpoint's epoch
    assert hours[2] == pytest.approx(2 * elapsed[2] / 3600)
