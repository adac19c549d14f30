"""study/run_sweep.py: dry runs, the presets' conditions, an Optuna search, the fair tuning protocol,
the study's console, and a study resumed after its driver is killed."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
from mlflow.tracking import MlflowClient
from scripts import REPO, overrides, run_script  # tests/ helpers, via conftest

from search_spaces import PRESETS
from search_spaces.preset import Preset, Tuning
from study import run_sweep
from study.console import StudyConsole
from study.plan import make_plan
from study.sweep import TUNING_SUFFIX
from trainables.integration.mlflow_search import search_runs
from trainables.spec import run_schema as rs

SWEEP = str(REPO / "study" / "run_sweep.py")
SMALL = overrides("seeds=1", "epochs=2", "limit_train=256", "batch_size=[64]", "knn_k=10", "eval.mode=knn")


def sweep(args: list[str], cwd: Path, timeout: int = 420) -> subprocess.CompletedProcess:
    return run_script("study/run_sweep.py", args, cwd, timeout)


def trial_runs(cwd: Path, study: str) -> list:
    return search_runs(MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}"), {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN})


def test_dry_run_of_the_flatnce_grid_prints_36_trials(capsys: pytest.CaptureFixture, cifar10_root: Path) -> None:
    assert run_sweep.main(["--preset", "flatnce-batch-size", "--dry-run", "--data-dir", str(cifar10_root)]) == 0
    out = capsys.readouterr().out
    assert "36 trials" in out
    rows = [line for line in out.splitlines() if line.strip()[:1].isdigit() and ("infonce" in line or "flatnce" in line)]
    assert len(rows) == 36
    assert sum("flatnce" in r for r in rows) == 18 and sum(" 512 " in r for r in rows) == 6


def test_bad_input_is_rejected_before_any_trial(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    cases = [
        (["--preset", "nope"], "preset='nope'"),
        (["--preset", "quickstart", "--set", "lossx=[infonce]"], "--set lossx"),
        (["--preset", "quickstart", "--set", "batch_size=[30]", "--set", "workers=4"], "batch_size=30 is not divisible by workers=4"),
        (["--preset", "quickstart", "--set", "loss=[simclr]"], "loss='simclr'"),
        (["--preset", "cifar10-cpu", "--set", f"data_dir={tmp_path / 'none'}"], "--download"),
        (["--resume", "never-ran"], "resume='never-ran'"),
    ]
    for args, message in cases:
        assert run_sweep.main(args) == 2, args
        assert message in capsys.readouterr().err, args
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "nce_runs").exists()


def test_tpe_proposes_conditional_parameters_only_for_their_losses(tmp_path: Path) -> None:
    settings = overrides(
        "num_samples=4", "dataset=digits", "backbone=small", "gpu=false", "epochs=1", "limit_train=256", "knn_k=10", "eval.mode=knn"
    )
    sweep(["--preset", "tpe-lr", "--name", "tpe", *settings], tmp_path)
    journal = optuna.storages.JournalStorage(
        optuna.storages.journal.JournalFileBackend(str(tmp_path / "nce_runs" / "tpe" / "optuna.journal"))
    )
    trials = optuna.load_study(study_name="tpe", storage=journal).trials
    assert len(trials) == 4
    own = {"d_pos": {"attentionnce"}, "d_neg": {"attentionnce"}, "tau_plus": {"dcl", "hcl"}, "beta": {"hcl"}}
    for trial in trials:
        for name, losses in own.items():
            assert (name in trial.params) == (trial.params["loss"] in losses), trial.params
        assert {"loss", "batch_size", "lr", "temperature"} <= set(trial.params)
    runs = trial_runs(tmp_path, "tpe")
    assert len(runs) == 4
    by_lr = sorted(float(r.data.params["lr"]) for r in runs)
    assert by_lr == pytest.approx(sorted(t.params["lr"] for t in trials))  # the trials ran what Optuna proposed


def wait_for(condition, timeout: float, what: str) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if condition():
            return
        time.sleep(1)
    raise AssertionError(f"timed out waiting for {what}")


@pytest.mark.slow
def test_killed_driver_resumes_with_each_trial_once(tmp_path: Path) -> None:
    args = ["--preset", "quickstart", "--name", "killed", "--set", "loss=[infonce,flatnce,dcl]", "--max-concurrent", "1", *SMALL]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    driver = subprocess.Popen(
        [sys.executable, SWEEP, *args], cwd=tmp_path, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True
    )
    try:
        # study.json is written once the MLflow store exists: polling earlier would race its creation.
        started = tmp_path / "nce_runs" / "killed" / "study.json"
        wait_for(
            lambda: started.exists() and any(r.info.status == "FINISHED" for r in trial_runs(tmp_path, "killed")),
            300,
            "a first finished trial",
        )
    finally:
        os.killpg(driver.pid, signal.SIGKILL)  # the driver and the Ray processes it started
        driver.wait()
    before = {r.data.tags[rs.TRIAL_ID] for r in trial_runs(tmp_path, "killed") if r.info.status == "FINISHED"}
    assert 1 <= len(before) < 3
    done = sweep(["--resume", "killed"], tmp_path)
    runs = trial_runs(tmp_path, "killed")
    assert len(runs) == 3 and len({r.data.tags[rs.TRIAL_ID] for r in runs}) == 3  # each trial exactly once
    assert all(r.info.status == "FINISHED" and r.data.tags[rs.STATUS] == rs.STATUS_COMPLETED for r in runs)
    assert before <= {r.data.tags[rs.TRIAL_ID] for r in runs}
    for r in runs:  # no epoch logged twice, none missing
        steps = [m.step for m in MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").get_metric_history(r.info.run_id, rs.M_TRAIN_LOSS)]
        assert sorted(steps) == [1, 2], (r.data.tags[rs.TRIAL_ID], steps)
    assert "Accuracy vs batch size" in done.stdout
    # The resumed study's numbers are an uninterrupted study's: training is deterministic on CPU.
    fresh = tmp_path / "fresh"
    fresh.mkdir()
    sweep(["--preset", "quickstart", "--name", "killed", "--set", "loss=[infonce,flatnce,dcl]", *SMALL], fresh)
    table = lambda cwd: {r.data.params["loss"]: r.data.metrics[rs.M_FINAL_VAL_KNN] for r in trial_runs(cwd, "killed")}  # noqa: E731
    assert table(tmp_path) == table(fresh)


# --- presets: their papers' conditions --------------------------------------------------------
def test_every_grid_preset_runs_enough_seeds_for_a_paired_test() -> None:
    for preset in PRESETS.values():
        if preset.search is None:
            assert len(preset.seeds) >= 3, preset.name


def test_lineage_presets_blur_as_the_attentionnce_code_does() -> None:
    for name in ("attentionnce-views", "lineage-baselines"):
        cfg = make_plan(name, {}).configs[0]
        assert cfg.blur_prob == 0.5, name  # kernel 3 at 32 px: the augmentation's 10 % rule


def test_flatclr_probe_runs_at_flatclrs_batch() -> None:
    evaluation = PRESETS["flatnce-batch-size"].evaluation
    assert (evaluation["recipe"], evaluation["batch_size"]) == ("flatclr", 4096)


def test_both_losses_of_the_views_study_meet_at_every_attentionnce_compute() -> None:
    configs = make_plan("attentionnce-views", {}).configs
    v = {
        loss: {(c.views + (2 if loss == "attentionnce" else 1), c.batch_size) for c in configs if c.loss == loss}
        for loss in ("infonce", "attentionnce")
    }
    assert v["attentionnce"] <= v["infonce"]  # every AttentionNCE (V, batch) has its InfoNCE peer
    m = {loss: {(c.views, c.batch_size) for c in configs if c.loss == loss} for loss in ("infonce", "attentionnce")}
    assert m["attentionnce"] <= m["infonce"]  # and the views table compares them at the same M
    assert len(configs) == (7 + 4) * 3 * 3


def test_a_loss_own_axis_values_replace_the_grids_only_for_that_loss() -> None:
    preset = Preset("p", "d", {}, grid={"loss": ("a", "b"), "views": (1, 2)}, per_loss_axes={"b": {"views": (3,)}}, seeds=(0, 1))
    assert preset.cells() == [{"loss": "a", "views": 1}, {"loss": "a", "views": 2}, {"loss": "b", "views": 3}]
    assert len(preset.grid_trials()) == 6


def test_tuning_settings_are_checked() -> None:
    for kwargs, field in (
        ({"samples": 0}, "tuning.samples"),
        ({"lr": (0.1, 0.01)}, "tuning.lr"),
        ({"metric": "test_acc"}, "tuning.metric"),
        ({"hyperparameters": ("tau",)}, "tuning.hyperparameters"),
        ({"sampler": "grid"}, "tuning.sampler"),
    ):
        with pytest.raises(ValueError, match=field):
            Tuning(**kwargs)


# --- the console ------------------------------------------------------------------------------
class FakeTrial:
    """What the reporter reads of a Tune trial."""

    def __init__(self, trial_id: str, point: dict, status: str, result: dict | None = None) -> None:
        self.trial_id, self.config, self.status, self.last_result, self.error_file = trial_id, {"point": point}, status, result or {}, None


def test_console_starts_with_the_plan_and_a_wall_clock_from_measured_throughput(tmp_path: Path) -> None:
    import io

    from study.cost import CPU_THROUGHPUT, TRIAL_OVERHEAD_S

    out = io.StringIO()
    plan = make_plan("cifar10-cpu", {})
    StudyConsole("s", plan, tmp_path, out=out).start({"CPU": 2.0}, 2)
    cfg = plan.configs[0]
    images = 5000  # limit_train: the pretraining images of an epoch
    per_trial = [
        cfg.epochs * (images // c.batch_size) * c.batch_size * 2 / CPU_THROUGHPUT[("small", 32)] + TRIAL_OVERHEAD_S for c in plan.configs
    ]
    text = out.getvalue()
    assert "plan: 40 trials, plus a random-init baseline per seed [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]" in text
    assert f"estimated wall-clock: {sum(per_trial) / 2 / 60:.0f} min" in text


def test_console_prints_each_finished_trial_once_with_its_mlflow_name_and_a_final_table(tmp_path: Path) -> None:
    import io

    out = io.StringIO()
    plan = make_plan("cifar10-cpu", {})
    console = StudyConsole("s", plan, tmp_path, out=out)
    console.concurrency = 2
    reporter = console.reporter("trials")
    reporter.setup(total_samples=4)
    point = {"loss": "flatnce", "batch_size": 64, "seed": 2}
    done = FakeTrial("t1", point, "TERMINATED", {"epoch": 8, rs.M_VAL_KNN: 0.375, rs.M_HEADLINE: 0.4125, "time_total_s": 100.0})
    running = FakeTrial("t2", point | {"seed": 0}, "RUNNING", {"epoch": 3})
    pending = [FakeTrial(f"t{i}", point | {"seed": 1}, "PENDING") for i in (3, 4)]
    assert reporter.should_report([done, running, *pending])
    reporter.report([done, running, *pending], False)
    assert not reporter.should_report([done, running, *pending])  # nothing new since
    reporter.report([done, running, *pending], True)
    lines = out.getvalue().splitlines()
    first_row = next(i for i, line in enumerate(lines) if line.startswith("flatnce"))
    assert lines.count(reporter.header()) == 2 and lines.index(reporter.header()) < first_row  # above the first row, and the table's
    rows = [line for line in lines if line.startswith("flatnce-b64-m1-lr0.075-s2")]
    assert len(rows) == 2  # once when it finished, once in the final table
    assert "37.50%" in rows[0] and "41.25%" in rows[0] and rows[0].rstrip().endswith("done")
    assert any("1/4 done (0 failed), 1 running; ETA 2 min" in line for line in lines)  # 3 left x 100 s / 2 at once
    assert lines[-1].startswith("flatnce-b64-m1-lr0.075-s1") and "pending" in lines[-1]  # the table is the last thing printed


# --- the fair tuning protocol -----------------------------------------------------------------
@pytest.mark.slow
def test_every_cell_gets_the_same_tuning_budget_and_only_its_reruns_enter_the_table(tmp_path: Path) -> None:
    from analysis.load import load_study

    tiny = overrides(
        "dataset=digits", "limit_train=256", "epochs=1", "warmup_epochs=0", "batch_size=[64]", "loss=[infonce,flatnce]", "seeds=2",
        "knn_k=10", "eval.mode=knn",
    )
    tiny += ["--max-concurrent", "2"]
    sweep(["--preset", "cifar10-cpu-tuned", "--name", "fair", *tiny], tmp_path, timeout=1200)
    tuning = PRESETS["cifar10-cpu-tuned"].tuning
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tuned = search_runs(client, {rs.STUDY: "fair" + TUNING_SUFFIX, rs.KIND: rs.KIND_PRETRAIN})
    cells = {(loss, "64") for loss in ("infonce", "flatnce")}
    budget = {cell: [r for r in tuned if (r.data.params["loss"], r.data.params["batch_size"]) == cell] for cell in cells}
    assert {cell: len(runs) for cell, runs in budget.items()} == {cell: tuning.samples for cell in cells}  # the same budget everywhere
    assert all(r.data.params["seed"] == str(tuning.seed) for r in tuned)  # tuned apart from the study's seeds
    finals = search_runs(client, {rs.STUDY: "fair", rs.KIND: rs.KIND_PRETRAIN})
    assert len(finals) == len(cells) * 2 and {r.data.params["seed"] for r in finals} == {"0", "1"}
    for run in finals:  # each re-run carries its cell's best configuration on validation
        cell = budget[(run.data.params["loss"], run.data.params["batch_size"])]
        best = max(r.data.metrics[rs.M_FINAL_VAL_KNN] for r in cell)
        chosen = [
            r
            for r in cell
            if (r.data.params["lr"], r.data.params["temperature"]) == (run.data.params["lr"], run.data.params["temperature"])
        ]
        assert chosen and chosen[0].data.metrics[rs.M_FINAL_VAL_KNN] == best
    trials = load_study("fair", f"sqlite:///{tmp_path / 'mlflow.db'}", eval_mode="knn")
    assert sorted(trials["run_id"]) == sorted(r.info.run_id for r in finals)  # the table reads the re-runs only


# --- the random-init baseline -----------------------------------------------------------------
def test_a_random_init_baseline_run_evaluates_the_encoder_a_trial_of_its_seed_starts_from(tmp_path: Path) -> None:
    import torch

    from study.sweep import random_init_run
    from trainables.core.components import build_components
    from trainables.integration.tracking import create_run
    from trainables.run.evaluation import EvalConfig, Pretrained, evaluate
    from trainables.spec.pretrain_config import from_dict
    from trainables.spec.study_context import StudyContext

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study_run = create_run(uri, "e", run_name="s", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "s"})
    fields = {"dataset": "digits", "backbone": "small", "limit_train": 256, "seed": 3}
    evaluation = {"mode": "knn", "knn_k": 10}
    context = StudyContext("s", study_run, uri, "e", str(tmp_path), fields, {}, evaluation)
    run_id = random_init_run(from_dict(fields).to_dict(), context)
    run = MlflowClient(uri).get_run(run_id)
    assert run.info.status == "FINISHED" and run.data.tags[rs.PARENT] == study_run
    assert (run.data.tags[rs.KIND], run.data.tags[rs.BASELINE], run.data.tags[rs.STUDY]) == (rs.KIND_BASELINE, rs.BASELINE_RANDOM_INIT, "s")
    assert (run.data.params[rs.P_SEED], run.data.params[rs.P_EVAL_MODE], run.data.params[rs.P_BACKBONE]) == ("3", "knn", "small")
    cfg = from_dict(fields)
    components = build_components(cfg)  # seeded by the config: the weights a seed-3 trial starts from
    expected, _ = evaluate(Pretrained(components, cfg, 0, ""), EvalConfig(**evaluation), torch.device("cpu"))
    assert run.data.metrics[rs.M_TEST_AT_BEST_VAL] == pytest.approx(expected[rs.M_TEST_AT_BEST_VAL])


def test_trials_are_handed_the_data_folder_the_command_meant(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import argparse

    from study.sweep import study_context

    monkeypatch.chdir(tmp_path)
    args = argparse.Namespace(storage_path=Path("runs"), experiment="e", max_failures=0)
    context = study_context(args, "s", "cifar10-cpu", make_plan("cifar10-cpu", {}), f"sqlite:///{tmp_path / 'mlflow.db'}")
    # Tune runs a trial in its own folder: a relative path would be read from there.
    assert context.fixed["data_dir"] == str((tmp_path / ".." / "shared" / "data" / "cifar10").resolve())
