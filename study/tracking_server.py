"""The MLflow tracking server of a study's head: MLflow's own app, with run searches answered while
Python's cyclic garbage collector is paused.

Started as ``mlflow server --app-name nce-study ...`` (MLflow's ``mlflow.app`` plugin entry point,
the mechanism of its own ``basic-auth`` app), under any of the servers MLflow runs. Nothing else
changes: every route, store and option is MLflow's.

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

from mlflow.environment_variables import _MLFLOW_SGI_NAME  # which server MLflow's CLI started: uvicorn, gunicorn or waitress
from mlflow.server import app as flask_app  # the Flask app that serves MLflow's REST API

from trainables.integration.mlflow_search import paused_gc

SEARCH_SUFFIX = "/runs/search"  # /api/2.0/mlflow/runs/search and the UI's /ajax-api/... twin


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


def create_app() -> object:
    """The app ``mlflow server --app-name nce-study`` serves: as MLflow's own ``basic-auth`` app does,
    its FastAPI app under uvicorn (MLflow's default) and its Flask app under gunicorn or waitress."""
    pause_gc_during_searches()
    if _MLFLOW_SGI_NAME.get() == "uvicorn":
        from mlflow.server.fastapi_app import app  # MLflow's FastAPI app around flask_app

        return app
    return flask_app
