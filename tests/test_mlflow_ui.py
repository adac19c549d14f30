"""A finished study as a researcher browses it: its MLflow runs, and the MLflow UI in headless Chromium.

A two-trial quickstart runs once for the module. The runs must say what won (headline numbers on
trial runs, evaluation runs named after their trial, a described study run holding its best
trial), and the UI's results view (``trainables.integration.tracking.results_url``), rendered by Chromium
from a real ``mlflow server``, must show the headline number on every trial, evaluation and baseline row.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from html.parser import HTMLParser
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from mlflow_server import Server

from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import results_url, run_url
from trainables.spec import run_schema as rs

pytestmark = pytest.mark.slow
REPO = Path(__file__).resolve().parents[1]
STUDY = "ui-study"  # study names are letters, digits, '.', '_', '-' (quotes in lookups: tests/test_mlflow_search.py)
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}


@pytest.fixture(scope="module")
def finished(tmp_path_factory: pytest.TempPathFactory) -> Path:
    cwd = tmp_path_factory.mktemp("ui-study")
    axes = ["loss=[infonce,flatnce]", "batch_size=[128]", "seeds=1", "epochs=2", "eval.epochs=3"]
    args = ["--preset", "quickstart", "--name", STUDY, *(arg for axis in axes for arg in ("--set", axis))]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "study/run_sweep.py"), *args]
    done = subprocess.run(command, cwd=cwd, env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert "viewStateShareKey=" in done.stdout  # the summary says where to look
    return cwd


def runs(cwd: Path, kind: str) -> list:
    return search_runs(MlflowClient(f"sqlite:///{cwd / 'mlflow.db'}"), {rs.STUDY: STUDY, rs.KIND: kind})


def test_trial_evaluation_and_study_runs_carry_the_results(finished: Path) -> None:
    trials, evals, [study] = runs(finished, rs.KIND_PRETRAIN), runs(finished, rs.KIND_EVAL), runs(finished, rs.KIND_STUDY)
    assert len(trials) == 2 and len(evals) == 2
    for trial in trials:
        [ev] = [e for e in evals if e.data.tags[rs.PARENT] == trial.info.run_id]
        assert ev.info.run_name.startswith(trial.info.run_name)  # named after its trial
        for key in (rs.P_LOSS, rs.P_BATCH_SIZE, rs.P_VIEWS, rs.P_SEED):
            assert ev.data.params[key] == trial.data.params[key], key
        assert ev.data.params[rs.PROBE_PREFIX + "batch_size"] == "64" != ev.data.params[rs.P_BATCH_SIZE]
        assert trial.data.metrics[rs.M_HEADLINE] == ev.data.metrics[rs.M_TEST_AT_BEST_VAL]
        assert trial.data.metrics[rs.M_HEADLINE_VAL] == ev.data.metrics[rs.M_BEST_VAL_ACC]
    best = max(trials, key=lambda t: t.data.metrics[rs.M_HEADLINE_VAL])  # selected on validation, never on test
    assert study.data.tags[rs.BEST_TRIAL] == best.info.run_name
    assert study.data.metrics[rs.BEST_TRIAL_PREFIX + rs.M_HEADLINE] == best.data.metrics[rs.M_HEADLINE]
    note = study.data.tags[rs.NOTE]
    assert "preset `quickstart`" in note and "- loss: infonce, flatnce" in note and "- batch_size: 128" in note
    assert "run_sweep.py --preset quickstart" in note and best.info.run_name in note
    assert f"({run_url('', study.info.experiment_id, best.info.run_id).lstrip('/')})" in note  # in the training layout
    experiment = MlflowClient(f"sqlite:///{finished / 'mlflow.db'}").get_experiment(study.info.experiment_id)
    assert experiment.tags[rs.EXPERIMENT_KIND] == rs.EXPERIMENT_KIND_TRAINING and rs.RESULTS_VIEW_TAG in experiment.tags


def test_a_trial_is_found_and_re_evaluated_by_its_run_name(finished: Path) -> None:
    trials = runs(finished, rs.KIND_PRETRAIN)
    table = (finished / "nce_runs" / STUDY / "checkpoints.tsv").read_text().splitlines()
    for trial in trials:
        folder = Path(trial.data.tags[rs.CHECKPOINTS])
        assert folder.name.startswith(trial.info.run_name)  # the folder is named like the run
        assert list(folder.glob("checkpoint_*/state.pt"))
        assert f"{trial.info.run_name}\t{folder}" in table
    trial = trials[0]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    command = [sys.executable, str(REPO / "study/linear_eval.py"), "--study", STUDY, "--trial", trial.info.run_name, "--mode", "knn"]
    done = subprocess.run(command, cwd=finished, env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    evals = [e for e in runs(finished, rs.KIND_EVAL) if e.data.tags[rs.PARENT] == trial.info.run_id]
    knn = [e for e in evals if e.data.params[rs.P_EVAL_MODE] == "knn"]
    assert len(knn) == 1 and knn[0].info.status == "FINISHED"
    wrong = subprocess.run([*command[:5], trial.info.run_name + "x"], cwd=finished, env=env, capture_output=True, text=True, timeout=600)
    assert wrong.returncode == 2 and f"did you mean {trial.info.run_name}" in wrong.stderr


class GridCells(HTMLParser):
    """The runs table's cells as rendered (AG Grid): row index -> {column id: text, "run_id": id}."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: dict[str, dict[str, str]] = {}
        self.row: str | None = None
        self.cell: tuple[str, list[str], list[int]] | None = None  # column id, text, open-element depth

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        found = dict(attrs)
        if found.get("role") == "row" and found.get("row-index") is not None:
            self.row = found["row-index"]
        if found.get("role") == "gridcell" and found.get("col-id") and self.row is not None:
            self.cell = (str(found["col-id"]), [], [0])
        if self.cell is None or tag in VOID:
            return
        self.cell[2][0] += 1
        link = re.search(r"/runs/([0-9a-f]{32})", found.get("href") or "")
        if link and self.row is not None:
            self.rows.setdefault(self.row, {})["run_id"] = link.group(1)

    def handle_endtag(self, tag: str) -> None:
        if self.cell is None or tag in VOID or self.row is None:
            return
        self.cell[2][0] -= 1
        if self.cell[2][0] == 0:
            self.rows.setdefault(self.row, {})[self.cell[0]] = "".join(self.cell[1]).strip()
            self.cell = None

    def handle_data(self, data: str) -> None:
        if self.cell is not None:
            self.cell[1].append(data)


def render(url: str, out: Path) -> str:
    """The page's DOM after its scripts ran, and a screenshot of it beside ``out``."""
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--window-size=2400,1400", "--virtual-time-budget=30000"]
    subprocess.run([CHROMIUM, *flags, f"--screenshot={out.with_suffix('.png')}", url], capture_output=True, timeout=300, check=True)
    return subprocess.run([CHROMIUM, *flags, "--dump-dom", url], capture_output=True, text=True, timeout=300, check=True).stdout


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_runs_table_shows_the_headline_metric_on_every_run_kind(finished: Path, tmp_path: Path) -> None:
    scored = {r.info.run_id: r for kind in (rs.KIND_PRETRAIN, rs.KIND_EVAL, rs.KIND_BASELINE) for r in runs(finished, kind)}
    studies = {r.info.run_id for r in runs(finished, rs.KIND_STUDY)}
    server = Server(finished)
    try:
        server.start()
        experiment = next(iter(scored.values())).info.experiment_id
        dom = render(results_url(server.plain_uri, experiment), tmp_path / "results")
    finally:
        server.stop()
    grid = GridCells()
    grid.feed(dom)
    shown = {row["run_id"]: row for row in grid.rows.values() if "run_id" in row}
    column = f"metrics.`{rs.M_HEADLINE}`"
    assert set(scored) <= set(shown), f"rows missing from the table: {sorted(set(scored) - set(shown))}"
    for run_id, run in scored.items():  # one key on trial, evaluation and baseline rows
        assert float(shown[run_id][column]) == pytest.approx(run.data.metrics[rs.M_HEADLINE], abs=1e-6), run.info.run_name
    for run_id in studies & set(shown):
        assert shown[run_id][column] == "-"
    order = [row["run_id"] for _, row in sorted(grid.rows.items(), key=lambda kv: int(kv[0])) if "run_id" in row]
    # The view sorts by the headline, best first. The best run need not be a trial: the module's
    # re-evaluation test adds a kNN evaluation, which may score above every linear probe.
    best = max(run.data.metrics[rs.M_HEADLINE] for run in scored.values())
    assert float(shown[order[0]][column]) == pytest.approx(best, abs=1e-6), scored[order[0]].info.run_name
