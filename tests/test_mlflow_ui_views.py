"""The MLflow UI on a planted study, as someone opening ``mlflow server --app-name nce-study`` sees it.

The plain experiment link (``/#/experiments/ID``, what the experiment list and a colleague's link
open) must land on the runs table in the model-training layout, in the project's results view:
the headline metric the first column, on trial, evaluation and baseline rows alike, so that the
random-init baseline's accuracy is in the table and sorting puts every run kind in its place.
"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from mlflow import MlflowClient
from mlflow_fixtures import make_synthetic_study, synthetic_baseline, synthetic_trial
from mlflow_server import Server
from test_mlflow_ui import GridCells, render

from study.tracking_server import UI_DEFAULTS_SCRIPT, create_app
from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import VIEW_COLUMNS, ensure_experiment, view_tags
from trainables.spec import run_schema as rs

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
STUDY = "planted-ui"
HEADLINE = f"metrics.`{rs.M_HEADLINE}`"


def planted(root: Path) -> str:
    """A study of two trials (as a sweep writes them: the evaluation's headline copied onto the trial)
    and a random-init baseline; the experiment's id."""
    uri = f"sqlite:///{root / 'mlflow.db'}"
    experiment = ensure_experiment(MlflowClient(uri), STUDY)
    trials = [synthetic_trial(loss, 64, 0, test_acc=acc) for loss, acc in (("infonce", 0.5), ("flatnce", 0.6))]
    for trial in trials:
        evaluation = trial["evals"][0]["metrics"]
        trial["metrics"] |= {rs.M_HEADLINE: evaluation[rs.M_TEST_AT_BEST_VAL], rs.M_HEADLINE_VAL: evaluation[rs.M_BEST_VAL_ACC]}
    make_synthetic_study(uri, STUDY, trials, baselines=[synthetic_baseline(0, test_acc=0.2)])
    return experiment


def test_every_experiment_carries_the_views_menu_lists(tmp_path: Path) -> None:
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    tags = client.get_experiment(ensure_experiment(client, "x")).tags
    for view in (rs.RESULTS_VIEW, rs.TREE_VIEW, rs.TRIALS_VIEW):
        envelope = json.loads(tags[rs.VIEW_TAG_PREFIX + view])  # MLflow's saved-view envelope: name, times, state as a string
        assert envelope["name"] == view and isinstance(envelope["createdAt"], int)
        state = json.loads(envelope["state"])
        assert state["columnOrder"][0] == HEADLINE == state["selectedColumns"][0]
    trials = json.loads(json.loads(tags[rs.VIEW_TAG_PREFIX + rs.TRIALS_VIEW])["state"])
    assert trials["searchFilter"] == rs.TRIALS_FILTER == "tags.`nce.kind` = 'pretrain'"
    tree = json.loads(json.loads(tags[rs.VIEW_TAG_PREFIX + rs.TREE_VIEW])["state"])
    assert tree["orderByKey"] == "attributes.start_time"  # the only order under which MLflow nests child runs
    assert not any(rs.M_MAX_TEST_OVER_EPOCHS in column for column in VIEW_COLUMNS)  # test-set-selected: never a default column
    client.set_experiment_tag(client.get_experiment_by_name("x").experiment_id, rs.RESULTS_VIEW_TAG, "{}")
    ensure_experiment(client, "x")  # an experiment of an older version gets today's views
    assert client.get_experiment_by_name("x").tags == tags | view_tags()


def test_the_ui_page_carries_the_layout_default(tmp_path: Path) -> None:
    from mlflow.server import app

    create_app()
    page = app.test_client().get("/")
    html = page.get_data(as_text=True)
    assert page.status_code == 200 and html.count(UI_DEFAULTS_SCRIPT) == 1
    assert html.index(UI_DEFAULTS_SCRIPT) < html.index("<script defer")  # before MLflow's bundle reads the setting
    create_app()  # wrapping twice would add the script twice
    assert app.test_client().get("/").get_data(as_text=True).count(UI_DEFAULTS_SCRIPT) == 1


@pytest.mark.skipif(CHROMIUM is None, reason="chromium is not installed (.ci/run installs Debian's chromium)")
def test_the_plain_experiment_link_opens_the_runs_table_with_the_headline_first(tmp_path: Path) -> None:
    experiment = planted(tmp_path)
    client = MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")
    kinds = {kind: search_runs(client, {rs.STUDY: STUDY, rs.KIND: kind}) for kind in (rs.KIND_PRETRAIN, rs.KIND_EVAL, rs.KIND_BASELINE)}
    server = Server(tmp_path)
    try:
        server.start()
        dom = render(f"{server.plain_uri}/#/experiments/{experiment}", tmp_path / "plain")
    finally:
        server.stop()
    assert "Traces 0" not in dom and "No data" not in dom  # not MLflow's GenAI overview
    headers = [cell for cell in _header_ids(dom) if cell.startswith(("metrics.", "params.", "tags."))]
    assert headers[: len(rs.HEADLINE_METRICS)] == [f"metrics.`{key}`" for key in rs.HEADLINE_METRICS]
    grid = GridCells()
    grid.feed(dom)
    shown = {row["run_id"]: row for row in grid.rows.values() if "run_id" in row}
    for kind, found in kinds.items():
        assert found, kind
        for run in found:
            assert float(shown[run.info.run_id][HEADLINE]) == pytest.approx(run.data.metrics[rs.M_HEADLINE], abs=1e-6), kind
    [baseline] = kinds[rs.KIND_BASELINE]
    order = [row["run_id"] for _, row in sorted(grid.rows.items(), key=lambda kv: int(kv[0])) if "run_id" in row]
    scored = [run_id for run_id in order if shown[run_id][HEADLINE] != "-"]
    assert scored[-1] == baseline.info.run_id  # best first: the untrained encoder below every trained one
    assert [float(shown[r][HEADLINE]) for r in scored] == sorted((float(shown[r][HEADLINE]) for r in scored), reverse=True)


def _header_ids(dom: str) -> list[str]:
    """The table's column ids left to right (AG Grid's DOM order is not its display order; aria-colindex is)."""
    found = re.findall(r'role="columnheader"[^>]*aria-colindex="([0-9]+)"[^>]*col-id="([^"]+)"', dom)
    return [column for _, column in sorted(found, key=lambda pair: int(pair[0]))]
