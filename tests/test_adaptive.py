"""Adaptive seeds (study/adaptive.py, the rounds in study/sweep.py) and seed planning (--seeds-for):
the family, which cells a look extends, the stop rule, the MLflow tree of a study resumed between
rounds, and the planned seeds against a noncentral-t computation of the test's own."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow.tracking import MlflowClient
from scipy import stats
from scripts import REPO, overrides

from search_spaces.preset import SPENDING_RULES, Adaptive
from study import adaptive, run_sweep
from study.plan import make_plan
from trainables.integration.mlflow_search import search_runs
from trainables.spec import run_schema as rs

TWO_BY_TWO = {"loss": ["infonce", "flatnce"], "batch_size": [32, 128], "adaptive": {"initial": 4, "step": 2, "max_seeds": 8}}


def test_the_schedule_and_the_constants_are_analysis_own() -> None:
    from analysis import power, sequential, statistics

    assert SPENDING_RULES == tuple(sequential.SPENDING)
    assert (adaptive.ALPHA, adaptive.POWER) == (statistics.ALPHA, power.POWER)
    for initial, step, most in ((6, 2, 12), (3, 2, 8), (2, 5, 3), (4, 4, 4)):
        assert Adaptive(initial, step, most).looks() == sequential.Schedule(initial, step, most).looks()


def test_the_family_is_each_loss_against_infonce_per_column_and_each_cell_against_random_init() -> None:
    preset = make_plan("quickstart", {"adaptive": {"initial": 3, "step": 1, "max_seeds": 4}}).preset
    labels = [c.label for c in adaptive.family(preset)]
    against_infonce = [f"{loss} - infonce at batch_size={b}" for loss in ("flatnce", "dcl") for b in (32, 128)]
    against_random = [f"{loss} at batch_size={b} - random init" for loss in ("infonce", "flatnce", "dcl") for b in (32, 128)]
    assert labels == against_infonce + against_random
    assert preset.seeds == (0, 1, 2, 3) and preset.first_seeds == (0, 1, 2)


def synthetic_runs(cells: dict[tuple[str, int], list[int]]) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(trials, baselines) frames as ``analysis.load`` gives them: FlatNCE 10 pp above InfoNCE at batch 32,
    level with it at 128 (+-0.3 pp by seed, mean 0 over every even count of seeds), every cell about
    30 pp above the random init; a seed's result is the same whichever look reads it."""
    base = {seed: 0.2 + 0.01 * seed for seed in range(20)}  # a seed's own level, shared by its cells: pairing removes it
    own = {
        ("infonce", 32): lambda s: 0.3,
        ("flatnce", 32): lambda s: 0.4 + 0.002 * (s % 3),
        ("infonce", 128): lambda s: 0.3,
        ("flatnce", 128): lambda s: 0.3 + (0.003 if s % 2 else -0.003),
    }
    rows = [
        {"loss": loss, "batch_size": b, "seed": s, "status": rs.STATUS_COMPLETED, adaptive.METRIC: base[s] + own[(loss, b)](s)}
        for (loss, b), seeds in cells.items()
        for s in seeds
    ]
    seeds = sorted({s for seeds in cells.values() for s in seeds})
    floor = [base[s] + 0.004 * (s % 2) for s in seeds]
    return pd.DataFrame(rows), pd.DataFrame({"seed": seeds, adaptive.METRIC: floor, "dataset": "digits", "backbone": "small"})


def holm_resolved(differences: dict[str, np.ndarray], alpha: float) -> set[str]:
    """Holm's step-down over paired t p-values, written out."""
    p = sorted((stats.ttest_1samp(d, 0.0).pvalue, key) for key, d in differences.items())
    resolved = set()
    for rank, (value, key) in enumerate(p):
        if value > alpha / (len(p) - rank):
            break
        resolved.add(key)
    return resolved


def test_a_look_extends_only_the_cells_of_the_comparisons_still_open_and_the_last_look_stops() -> None:
    preset = make_plan("quickstart", TWO_BY_TWO).preset
    first = range(4)
    trials, baselines = synthetic_runs({cell: list(first) for cell in (("infonce", 32), ("flatnce", 32), ("infonce", 128), ("flatnce", 128))})
    look = adaptive.look_at(preset, 4, trials, baselines)
    flat128 = "flatnce - infonce at batch_size=128"
    assert look.open == (flat128,)
    assert look.cells == ("flatnce-128", "infonce-128")  # not batch 32's cells, nor the random init
    # Independently: Holm over the 6 comparisons at the first look's share (Pocock: 0.05 / 3 looks).
    value = {(r["loss"], r["batch_size"], r["seed"]): r[adaptive.METRIC] for _, r in trials.iterrows()}
    floor = dict(zip(baselines["seed"], baselines[adaptive.METRIC]))

    def side(cell: dict | None, seed: int) -> float:
        return floor[seed] if cell is None else value[(cell["loss"], cell["batch_size"], seed)]

    diffs = {c.label: np.array([side(c.x, s) - side(c.y, s) for s in first]) for c in adaptive.family(preset)}
    assert set(look.resolved) == holm_resolved(diffs, 0.05 / 3) == set(diffs) - {flat128}
    # The next seeds go to batch 128 only; the look at 6 seeds keeps batch 32's verdicts and extends the same cells.
    more = {("infonce", 32): list(first), ("flatnce", 32): list(first), ("infonce", 128): list(range(6)), ("flatnce", 128): list(range(6))}
    trials, baselines = synthetic_runs(more)
    assert adaptive.look_at(preset, 6, trials, baselines).cells == ("flatnce-128", "infonce-128")
    # At max_seeds nothing is open any more, resolved or not: the study stops.
    trials, baselines = synthetic_runs(more | {("infonce", 128): list(range(8)), ("flatnce", 128): list(range(8))})
    last = adaptive.look_at(preset, 8, trials, baselines)
    assert (last.open, last.cells) == ((), ()) and flat128 not in last.resolved


def test_a_round_cut_short_runs_its_interrupted_points_again_and_sets_their_runs_aside(tmp_path: Path) -> None:
    from study.sweep import INTERRUPTED_SUFFIX, points_to_run
    from trainables.integration.tracking import create_run, end_run
    from trainables.spec.study_context import StudyContext

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study_run = create_run(uri, "e", run_name="s", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "s"})
    context = StudyContext("s", study_run, uri, "e", str(tmp_path), make_plan("quickstart", {}).preset.fixed, {}, {"mode": "knn"})
    points = [{"loss": "infonce", "batch_size": 32, "seed": seed} for seed in (4, 5, 6, 7)]

    def trial(seed: int, status: str | None) -> str:
        run = create_run(uri, "e", run_name=f"t{seed}", params=points[0] | {"seed": seed}, tags={rs.KIND: rs.KIND_PRETRAIN, rs.STUDY: "s"}, parent_run_id=study_run)
        if status == "FAILED":
            end_run(uri, run, failed_reason="boom")
        elif status:
            MlflowClient(uri).set_terminated(run, status=status)
        return run

    trial(4, "FINISHED")
    killed, left_running = trial(5, "KILLED"), trial(6, None)
    trial(7, "FAILED")
    evaluation = create_run(uri, "e", run_name="t5-knn", params={}, tags={rs.KIND: rs.KIND_EVAL, rs.STUDY: "s"}, parent_run_id=killed)
    assert [p["seed"] for p in points_to_run(context, points)] == [5, 6]  # ended ones (completed or failed) are not rerun
    client = MlflowClient(uri)
    for run_id in (killed, left_running, evaluation):
        assert client.get_run(run_id).data.tags[rs.STUDY] == "s" + INTERRUPTED_SUFFIX
    assert {r.data.params["seed"] for r in search_runs(client, {rs.STUDY: "s", rs.KIND: rs.KIND_PRETRAIN})} == {"4", "7"}


# --- a real adaptive study, stopped between two rounds and resumed ---------------------------------
SCRIPTED = """
import dataclasses, os, signal, sys
from study import adaptive, run_sweep

real = adaptive.look_at

def scripted(preset, seeds, trials, baselines):
    # The verdicts are the test's: FlatNCE's comparisons resolve at the first look, the rest stay open.
    look = real(preset, seeds, trials, baselines)
    still = tuple(label for label in look.verdicts if "flatnce" not in label)
    if os.environ.get("STOP_AFTER_LOOK") == str(seeds):
        os.kill(os.getpid(), signal.SIGTERM)
    cells = ("infonce-64", adaptive.RANDOM_INIT_CELL) if seeds < preset.adaptive.max_seeds else ()
    return dataclasses.replace(look, resolved=tuple(l for l in look.verdicts if l not in still), open=still, cells=cells)

adaptive.look_at = scripted
sys.exit(run_sweep.main(sys.argv[1:]))
"""


@pytest.mark.slow  # two driver starts and 6 trials: about 3 min on 2 cores
def test_added_seeds_go_to_the_open_cells_in_the_same_study_and_a_resumed_study_does_not_rerun_a_round(tmp_path: Path) -> None:
    small = overrides("loss=[infonce,flatnce]", "batch_size=[64]", "epochs=1", "limit_train=256", "knn_k=10", "eval.mode=knn")
    args = ["--preset", "quickstart", "--name", "adaptive", "--adaptive-seeds", "2:1:4", "--max-concurrent", "2", *small]
    env = os.environ | {"PYTHONPATH": str(REPO)}

    def driver(argv: list[str], **extra: str) -> subprocess.CompletedProcess:
        return subprocess.run([sys.executable, "-c", SCRIPTED, *argv], cwd=tmp_path, env=env | extra, capture_output=True, text=True, timeout=600)

    stopped = driver(args, STOP_AFTER_LOOK="3")  # after the first round (seed 2), before the second (seed 3)
    assert stopped.returncode == 128 + 15, stopped.stdout[-3000:] + stopped.stderr[-3000:]
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    client = MlflowClient(uri)

    def seeds_of() -> dict[str, list[str]]:
        trials = search_runs(client, {rs.STUDY: "adaptive", rs.KIND: rs.KIND_PRETRAIN})
        found: dict[str, list[str]] = {}
        for r in trials:
            found.setdefault(r.data.params["loss"], []).append(r.data.params["seed"])
        baselines = search_runs(client, {rs.STUDY: "adaptive", rs.KIND: rs.KIND_BASELINE})
        found["random init"] = [r.data.params["seed"] for r in baselines]
        return {k: sorted(v) for k, v in found.items()}

    assert seeds_of() == {"infonce": ["0", "1", "2"], "flatnce": ["0", "1"], "random init": ["0", "1", "2"]}
    done = driver(["--resume", "adaptive"])
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # The seeds went to InfoNCE's cell and the random init only, up to max_seeds, each (cell, seed) once.
    assert seeds_of() == {"infonce": ["0", "1", "2", "3"], "flatnce": ["0", "1"], "random init": ["0", "1", "2", "3"]}
    study_runs = search_runs(client, {rs.STUDY: "adaptive", rs.KIND: rs.KIND_STUDY})
    assert len(study_runs) == 1
    study_run = study_runs[0]
    trials = search_runs(client, {rs.STUDY: "adaptive", rs.KIND: rs.KIND_PRETRAIN})
    assert {r.data.tags[rs.PARENT] for r in trials} == {study_run.info.run_id}
    assert all(r.data.tags[rs.STATUS] == rs.STATUS_COMPLETED for r in trials)
    # Each look recorded once: 2, 3 and 4 seeds; the cells each look extended.
    from study.study_run import M_ADAPTIVE_SEEDS, recorded_looks

    history = [(m.step, m.value) for m in client.get_metric_history(study_run.info.run_id, M_ADAPTIVE_SEEDS)]
    assert sorted(history) == [(1, 2.0), (2, 3.0), (3, 4.0)]
    looks = recorded_looks(uri, study_run.info.run_id)
    assert [looks[i]["next_cells"] for i in (1, 2, 3)] == [["infonce-64", "random-init"], ["infonce-64", "random-init"], []]
    assert all("flatnce - infonce at batch_size=64" in looks[i]["resolved"] for i in (1, 2, 3))
    assert "look at 4 seeds" in done.stdout and "Accuracy vs batch size" in done.stdout


# --- seed planning ---------------------------------------------------------------------------------
def noncentral_t_seeds(sd: float, effect: float, level: float, power: float = 0.8) -> int:
    """The fewest n whose two-sided paired t-test at ``level`` has ``power``, by counting up."""
    for n in range(2, 101):
        critical = stats.t.ppf(1 - level / 2, n - 1)
        centre = effect * np.sqrt(n) / sd
        if stats.nct.sf(critical, n - 1, centre) + stats.nct.cdf(-critical, n - 1, centre) >= power:
            return n
    raise AssertionError("more than 100 seeds")


def record_study(uri: str, name: str, values: dict[tuple[str, int], list[float]], baseline: list[float]) -> None:
    """A recorded study as the sweep writes it: a study run, completed trial runs with their evaluation, baselines."""
    from trainables.integration.tracking import create_run, end_run

    study_run = create_run(uri, "nce-study", run_name=name, params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: name})
    client = MlflowClient(uri)
    for (loss, batch), accuracies in values.items():
        for seed, accuracy in enumerate(accuracies):
            params = {"loss": loss, "batch_size": batch, "seed": seed, "views": 1, "views_per_image": 2, "epochs": 5}
            run = create_run(uri, "nce-study", run_name=f"{loss}-{batch}-{seed}", params=params, tags={rs.KIND: rs.KIND_PRETRAIN, rs.STUDY: name}, parent_run_id=study_run)
            evaluation = create_run(uri, "nce-study", run_name="eval", params={rs.P_EVAL_MODE: "linear"}, tags={rs.KIND: rs.KIND_EVAL, rs.STUDY: name}, parent_run_id=run)
            client.log_metric(evaluation, rs.M_TEST_AT_BEST_VAL, accuracy)
            end_run(uri, evaluation)
            end_run(uri, run, tags={rs.STATUS: rs.STATUS_COMPLETED})
    for seed, accuracy in enumerate(baseline):
        params = {"seed": seed, "dataset": "digits", "backbone": "small", rs.P_EVAL_MODE: "linear"}
        tags = {rs.KIND: rs.KIND_BASELINE, rs.STUDY: name, rs.BASELINE: rs.BASELINE_RANDOM_INIT}
        run = create_run(uri, "nce-study", run_name=f"random-init-{seed}", params=params, tags=tags, parent_run_id=study_run)
        client.log_metric(run, rs.M_TEST_AT_BEST_VAL, accuracy)
        end_run(uri, run)


def test_seeds_for_plans_each_comparison_from_the_recorded_spread(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    infonce = [0.50, 0.52, 0.49, 0.53]
    flatnce = [0.51, 0.55, 0.49, 0.56]  # differences 1, 3, 0, 3 pp
    record_study(uri, "pilot", {("infonce", 32): infonce, ("flatnce", 32): flatnce}, [0.20, 0.21, 0.19, 0.22])
    argv = ["--preset", "quickstart", "--set", "loss=[infonce,flatnce]", "batch_size=[32]", "--dry-run", "--seeds-for", "1", "--from-study", "pilot", "--tracking-uri", uri]
    assert run_sweep.main(argv) == 0
    rows = {line.split("  ")[1].strip(): line.split() for line in capsys.readouterr().out.splitlines() if line.startswith("  ") and " - " in line}
    sd = float(np.std(np.subtract(flatnce, infonce), ddof=1))
    expected = noncentral_t_seeds(sd, 0.01, 0.05 / 3)  # 3 comparisons: flatnce - infonce, each against random init
    assert rows["flatnce - infonce at batch_size=32"][-1] == str(expected)
    assert rows["flatnce - infonce at batch_size=32"][-2] == f"{sd * 100:.2f}"
    sd_random = float(np.std(np.subtract(infonce, [0.20, 0.21, 0.19, 0.22]), ddof=1))
    assert rows["infonce at batch_size=32 - random init"][-1] == str(noncentral_t_seeds(sd_random, 0.01, 0.05 / 3))


def test_seeds_for_without_a_recorded_study_says_what_to_run_first(capsys: pytest.CaptureFixture) -> None:
    assert run_sweep.main(["--preset", "quickstart", "--dry-run", "--seeds-for", "0.5"]) == 0
    assert "--dry-run --seeds-for 0.5 --from-study quickstart-pilot" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--preset", "quickstart", "--seeds-for", "0.5"], "seeds_for=0.5 is not allowed; it plans seeds without running anything; add --dry-run"),
        (["--preset", "quickstart", "--dry-run", "--seeds-for", "-1"], "seeds_for='-1' is not allowed; it must be a difference in percentage points"),
        (["--preset", "quickstart", "--dry-run", "--from-study", "x"], "from_study='x' is not allowed; it is where --seeds-for reads"),
        (["--preset", "quickstart", "--dry-run", "--adaptive-seeds", "6:2"], "adaptive_seeds='6:2' is not allowed; it must be INITIAL:STEP:MAX"),
        (["--preset", "quickstart", "--dry-run", "--adaptive-seeds", "6:2:4"], "adaptive.max_seeds=4 is not allowed; it must be an integer >= initial (6)"),
        (["--preset", "quickstart", "--dry-run", "--set", "adaptive={initial: 3, steps: 1}"], "steps not allowed; allowed: initial, step, max_seeds, spending"),
        (["--preset", "tpe-lr", "--dry-run", "--adaptive-seeds", "3:1:5"], "adaptive seeds compare a grid's cells; this preset is an Optuna search"),
        (["--replicate-of", "never-ran"], "replicate_of='never-ran' is not allowed; it must name a study under --storage-path"),
    ],
)
def test_bad_planning_flags_exit_2_naming_the_flag_and_what_is_allowed(
    argv: list[str], message: str, capsys: pytest.CaptureFixture, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        status = run_sweep.main(argv)
    except SystemExit as exit:  # what argparse itself refuses (a flag's type)
        status = exit.code
    assert status == 2
    assert message in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists() and not (tmp_path / "nce_runs").exists()


# --- replicating a study ---------------------------------------------------------------------------
def test_replicate_of_runs_the_study_again_on_the_next_disjoint_seeds(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from study.study_file import write_plan_file

    saved = {"seeds": [0, 1, 2], "epochs": 2, "loss": ["infonce", "flatnce"]}
    write_plan_file(tmp_path / "runs" / "first", "quickstart", saved, "0" * 32)
    argv = ["--replicate-of", "first", "--storage-path", str(tmp_path / "runs")]
    name, preset, plan = run_sweep.validated(run_sweep.build_parser().parse_args([*argv, "--dry-run"]))
    assert (name, preset) == ("first-replicate", "quickstart")
    assert plan.preset.seeds == (3, 4, 5) and plan.overrides == saved | {"seeds": [3, 4, 5]}
    assert {c.epochs for c in plan.configs} == {2} and {c.loss for c in plan.configs} == {"infonce", "flatnce"}
    named = run_sweep.build_parser().parse_args([*argv, "--name", "again", "--set", "epochs=3", "--dry-run"])
    name, _, plan = run_sweep.validated(named)
    assert name == "again" and {c.epochs for c in plan.configs} == {3}
    # An adaptive study's replicate takes its whole seed budget's count, past all of it.
    write_plan_file(tmp_path / "runs" / "grown", "quickstart", {"adaptive": {"initial": 3, "step": 1, "max_seeds": 5}}, "0" * 32)
    _, _, plan = run_sweep.validated(run_sweep.build_parser().parse_args(["--replicate-of", "grown", "--storage-path", str(tmp_path / "runs"), "--dry-run"]))
    assert plan.preset.seeds == (5, 6, 7, 8, 9) and plan.preset.first_seeds == (5, 6, 7)
    capsys.readouterr()
    assert run_sweep.main([*argv, "--set", "seeds=4", "--dry-run"]) == 2
    assert "--replicate-of picks the seeds" in capsys.readouterr().err
