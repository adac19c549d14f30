"""The MLflow tracking server of a study's head: MLflow's own app, with run searches answered while
Python's cyclic garbage collector is paused.

Started as ``mlflow server --app-name nce-study ...`` (MLflow's ``mlflow.app`` entry point, the
mechanism of its own ``basic-auth`` app; uvicorn, MLflow's default server). Nothing else changes:
every route, store and option is MLflow's.

Why: a run search builds an ORM object for every param, tag and metric of every run it returns,
~350,000 for a 5,000-run study, and each collection while they accumulate rescans all of them
together with the server's own heap. Those objects hold no cycles to free. Paused, the tables of
such a study read through the server take about half as long (benchmarks/scale_analysis.py,
``--server-app`` mlflow against nce-study). The pause is :func:`trainables.mlflow_search.paused_gc`,
the one the analysis client uses; concurrent searches leave the collector on once the last ends.
"""

from __future__ import annotations

import functools
from collections.abc import Callable

from mlflow.server import app as flask_app  # the Flask app that serves MLflow's REST API
from mlflow.server.fastapi_app import app  # what uvicorn serves: MLflow's FastAPI app around flask_app

from trainables.mlflow_search import paused_gc

SEARCH_SUFFIX = "/runs/search"  # /api/2.0/mlflow/runs/search and the UI's /ajax-api/... twin


def _without_gc(view: Callable[..., object]) -> Callable[..., object]:
    @functools.wraps(view)
    def searched(*args: object, **kwargs: object) -> object:
        with paused_gc():
            return view(*args, **kwargs)

    return searched


def pause_gc_during_searches() -> list[str]:
    """Wrap the view of every run-search route of MLflow's Flask app; the endpoints wrapped."""
    endpoints = sorted({rule.endpoint for rule in flask_app.url_map.iter_rules() if rule.rule.endswith(SEARCH_SUFFIX)})
    if not endpoints:
        raise RuntimeError(f"MLflow's server has no route ending in {SEARCH_SUFFIX!r}; this MLflow is not one study.tracking_server knows")
    for endpoint in endpoints:
        flask_app.view_functions[endpoint] = _without_gc(flask_app.view_functions[endpoint])
    return endpoints


PAUSED = pause_gc_during_searches()
__all__ = ["app", "PAUSED"]
