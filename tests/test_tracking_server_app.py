"""``mlflow server --app-name nce-study`` (study/tracking_server.py): MLflow's app, run searches
answered with the cyclic garbage collector paused and every other request left as it was.

The app is exercised through Flask's test client in a fresh interpreter (it wraps views of MLflow's
process-wide Flask app, and MLflow's handlers keep their store once made); the store method behind
each request records whether the collector was on when it ran. tests/mlflow_server.py starts
every test server of the suite with this app, so the other server tests run through it too.
"""

from __future__ import annotations

import json
import subprocess
import sys
from importlib.metadata import entry_points
from pathlib import Path

from scripts import REPO

PROBE = r"""
import gc, json, os, sys
from mlflow.server.constants import ARTIFACT_ROOT_ENV_VAR, BACKEND_STORE_URI_ENV_VAR
os.environ[BACKEND_STORE_URI_ENV_VAR] = sys.argv[1]
os.environ[ARTIFACT_ROOT_ENV_VAR] = sys.argv[2]
from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore
from mlflow.tracking import MlflowClient

client = MlflowClient(sys.argv[1])
experiment = client.create_experiment("e", artifact_location=sys.argv[2])
for i in range(3):
    client.log_param(client.create_run(experiment).info.run_id, "i", str(i))

seen = {}
def recording(name):
    original = getattr(SqlAlchemyStore, name)
    def method(self, *args, **kwargs):
        seen.setdefault(name, []).append(gc.isenabled())
        return original(self, *args, **kwargs)
    setattr(SqlAlchemyStore, name, method)
for name in ("_search_runs", "get_experiment_by_name", "search_experiments"):
    recording(name)

import study.tracking_server as server
from mlflow.environment_variables import _MLFLOW_SGI_NAME
apps = {}
for name in ("uvicorn", "gunicorn", "waitress", "uvicorn"):  # twice: a second call wraps nothing again
    os.environ[_MLFLOW_SGI_NAME.name] = name
    apps[name] = type(server.create_app()).__name__
flask = server.flask_app.test_client()
out = {"paused": server.pause_gc_during_searches(), "apps": apps}
out["wrapped_once"] = not hasattr(server.flask_app.view_functions["_search_runs"].__wrapped__, "pauses_gc")
for path in ("/api/2.0/mlflow/runs/search", "/ajax-api/2.0/mlflow/runs/search"):
    answer = flask.post(path, json={"experiment_ids": [experiment], "filter": "params.i != '1'"})
    out[path] = [answer.status_code, sorted(r["data"]["params"][0]["value"] for r in answer.get_json()["runs"]), gc.isenabled()]
bad = flask.post("/api/2.0/mlflow/runs/search", json={"experiment_ids": [experiment], "filter": "nonsense ==="})
out["bad"] = [bad.status_code, gc.isenabled()]
other = flask.get("/api/2.0/mlflow/experiments/get-by-name", query_string={"experiment_name": "e"})
experiments = flask.post("/api/2.0/mlflow/experiments/search", json={"max_results": 10})
out["other"] = [other.status_code, experiments.status_code]
out["seen"] = seen
print(json.dumps(out))
"""


def probe(tmp_path: Path) -> dict:
    command = [sys.executable, "-c", PROBE, f"sqlite:///{tmp_path / 'mlflow.db'}", str(tmp_path / "artifacts")]
    done = subprocess.run(command, cwd=tmp_path, env={"PYTHONPATH": str(REPO), "PATH": ""}, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_app_is_registered_with_mlflow_under_its_name() -> None:
    [app] = [e for e in entry_points(group="mlflow.app") if e.name == "nce-study"]
    assert app.value == "study.tracking_server:create_app"


def test_run_searches_run_with_the_collector_paused_and_nothing_else_does(tmp_path: Path) -> None:
    out = probe(tmp_path)
    assert out["apps"] == {"uvicorn": "FastAPI", "gunicorn": "Flask", "waitress": "Flask"}  # as MLflow's basic-auth app
    assert out["paused"] == ["_search_runs"] and out["wrapped_once"]
    for path in ("/api/2.0/mlflow/runs/search", "/ajax-api/2.0/mlflow/runs/search"):
        assert out[path] == [200, ["0", "2"], True], path  # the same answer; the collector back on after
    assert out["bad"][0] == 400 and out["bad"][1] is True  # back on after a refused search too
    assert out["other"] == [200, 200]
    seen = out["seen"]
    assert seen["_search_runs"] == [False, False, False]  # the refused filter fails inside the store's search
    assert seen["get_experiment_by_name"] == [True] and seen["search_experiments"] == [True]
