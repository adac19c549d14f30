"""A study's own file, study.json: its preset, overrides, MLflow run and plan (with its digest), beside Tune's state, for --resume."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from trainables.spec.files import write_atomically
from trainables.spec.validation import ConfigError

PLAN_FILE = "study.json"
PLAN_KEYS = {"preset": str, "overrides": dict, "mlflow_run_id": str}


def read_plan_file(path: Path) -> dict[str, Any]:
    """study.json, checked for the shape this module writes, or a ConfigError naming the file."""
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not a readable study file ({type(err).__name__}: {str(err)[:200]})") from None
    if not isinstance(saved, dict):
        raise ConfigError(f"{path} must hold a JSON object with {', '.join(PLAN_KEYS)}, not a {type(saved).__name__}")
    wrong = [k for k, kind in PLAN_KEYS.items() if not isinstance(saved.get(k), kind)]
    if wrong:
        raise ConfigError(f"{path} is not a study file of this program: {', '.join(wrong)} missing or of the wrong type")
    return saved


def write_plan_file(folder: Path, preset: str, overrides: dict[str, Any], run_id: str, plan: dict[str, Any] | None = None) -> None:
    """study.json; ``plan``: the plan's record (study/plan_digest.py), kept with its digest for --resume to check."""
    from study.plan_digest import plan_digest

    saved = {"preset": preset, "overrides": overrides, "mlflow_run_id": run_id}
    if plan is not None:
        saved |= {"plan_digest": plan_digest(plan), "plan": plan}
    folder.mkdir(parents=True, exist_ok=True)
    write_atomically(folder / PLAN_FILE, json.dumps(saved, indent=2))
