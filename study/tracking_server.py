"""The MLflow tracking server of a study's head: MLflow's own app, with run searches answered while
Python's cyclic garbage collector is paused, and a UI that opens an experiment on its runs table.

Started as ``mlflow server --app-name nce-study ...`` (or ``mlflow ui --app-name nce-study``;
MLflow's ``mlflow.app`` plugin entry point, the mechanism of its own ``basic-auth`` app), under
any of the servers MLflow runs. Every route, store and option is MLflow's.

Why: a run search builds an ORM object for every param, tag and metric of every run it returns,
~350,000 for a 5,000-run study, and each collection while they accumulate rescans all of them
together with the server's own heap. Those objects hold no cycles to free. Paused, the tables of
such a study read through the server take about two thirds of the time (benchmarks/scale_analysis.py,
``--server-apps nce-study mlflow``). The pause is :func:`trainables.integration.mlflow_search.paused_gc`, the
one the analysis client uses; concurrent searches leave the collector on once the last one ends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mlflow.environment_variables import (
    _MLFLOW_SGI_NAME,  # which server MLflow's CLI started: uvicorn, gunicorn or waitress
)
from mlflow.server import (
    app as flask_app,  # the Flask app that serves MLflow's REST API
)

from trainables.integration.mlflow_search import paused_gc
from trainables.spec import run_schema as rs

SEARCH_SUFFIX = "/runs/search"
UI_PAGE_ENDPOINT = "serve"  # the Flask view that sends the UI's index.html for every page
# MLflow 3.17's UI picks an experiment's layout from the browser's workflow type (the URL's
# ``workflowType``, else localStorage ``mlflow.workflowType_v1``, else GenAI), not from the
# experiment's ``mlflow.experimentKind`` tag; a new browser thus opens any experiment on the GenAI
# overview ("Traces 0"). The page sets the model-training layout where the browser has chosen none,
# and sends a plain experiment link (``#/experiments/ID``, ``.../runs``) of an experiment carrying
# the project's results view (``rs.RESULTS_VIEW_TAG``) to that view.
UI_DEFAULTS_SCRIPT = """<script>(function () {
  var key = "mlflow.workflowType_v1";
  try { if (!localStorage.getItem(key)) localStorage.setItem(key, JSON.stringify("machine_learning")); } catch (e) {}
  var plain = location.hash.match(/^#\\/experiments\\/([0-9]+)(\\/runs)?\\/?$/);
  if (!plain) return;
  var id = plain[1];
  fetch("ajax-api/2.0/mlflow/experiments/get?experiment_id=" + id).then(function (r) { return r.json(); }).then(function (got) {
    var tags = (got.experiment && got.experiment.tags) || [];
    if (!tags.some(function (t) { return t.key === "%(tag)s"; })) return;
    var now = location.hash.match(/^#\\/experiments\\/([0-9]+)(\\/[a-z-]*)?(\\?(.*))?$/);
    var query = new URLSearchParams(now && now[4] || "");
    query.delete("workflowType");
    if (!now || now[1] !== id || query.toString()) return;  /* the user has moved on */
    location.replace("#/experiments/" + id + "/runs?workflowType=machine_learning&viewStateShareKey=%(view)s");
  }).catch(function () {});
})();</script>""" % {"tag": rs.RESULTS_VIEW_TAG, "view": rs.RESULTS_VIEW}  # /api/2.0/mlflow/runs/search and the UI's /ajax-api/... twin


def _without_gc(view: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(view)
    def searched(*args: object, **kwargs: object) -> object:
        with paused_gc():
            return view(*args, **kwargs)

    searched.pauses_gc = True  # type: ignore[attr-defined]
    return searched


def pause_gc_during_searches() -> list[str]:
    """Wrap the view of every run-search route of MLflow's Flask app (once); the endpoints."""
    endpoints = sorted({rule.endpoint for rule in flask_app.url_map.iter_rules() if rule.rule.endswith(SEARCH_SUFFIX)})
    if not endpoints:
        raise RuntimeError(f"MLflow's server has no route ending in {SEARCH_SUFFIX!r}; study/tracking_server.py does not know this MLflow")
    for endpoint in endpoints:
        view = flask_app.view_functions[endpoint]
        if not getattr(view, "pauses_gc", False):
            flask_app.view_functions[endpoint] = _without_gc(view)
    return endpoints


def _with_ui_defaults(view: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(view)
    def page(*args: object, **kwargs: object) -> object:
        response = view(*args, **kwargs)
        if getattr(response, "mimetype", None) != "text/html":  # MLflow's text when the UI was not built
            return response
        response.direct_passthrough = False  # send_from_directory streams the file; read it to edit it
        html = response.get_data(as_text=True)
        response.set_data(html.replace("<head>", "<head>" + UI_DEFAULTS_SCRIPT, 1))
        return response

    page.sets_ui_defaults = True  # type: ignore[attr-defined]
    return page


def open_experiments_on_runs() -> None:
    """Wrap the view that serves the UI's page (once) so that it carries ``UI_DEFAULTS_SCRIPT``."""
    view = flask_app.view_functions.get(UI_PAGE_ENDPOINT)
    if view is None:
        raise RuntimeError(f"MLflow's server has no view {UI_PAGE_ENDPOINT!r}; study/tracking_server.py does not know this MLflow")
    if not getattr(view, "sets_ui_defaults", False):
        flask_app.view_functions[UI_PAGE_ENDPOINT] = _with_ui_defaults(view)


def create_app() -> object:
    """The app ``mlflow server --app-name nce-study`` serves: as MLflow's own ``basic-auth`` app does,
    its FastAPI app under uvicorn (MLflow's default) and its Flask app under gunicorn or waitress."""
    pause_gc_during_searches()
    open_experiments_on_runs()
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import (
            app,  # MLflow's FastAPI app around flask_app
        )

        return app
    return flask_app
