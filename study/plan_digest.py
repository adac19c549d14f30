"""A study's plan as data, its digest, and what changed between two plans: ``--resume`` refuses a
plan that is not the one the study started with.

The record is what the trials run: every trial's config (a search: the seeded suggestions the plan
validates), the evaluation, seeds, sample count, scheduler and adaptive rule, after the preset's code
and the overrides are applied. An edit of ``study.json``, a ``--set`` given with ``--resume`` or a
changed preset in ``search_spaces/`` each change it. The digest is kept in ``study.json`` and on the
study run (``PLAN_DIGEST_TAG``), so that an edit of ``study.json`` that also rewrote its digest is
caught too.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from typing import Any

from study.plan import Plan

PLAN_DIGEST_TAG = "nce.plan_digest"  # on the study run: the digest of the plan it started with
MAX_CHANGES_SHOWN = 8


def plan_record(plan: Plan) -> dict[str, Any]:
    """The plan as JSON-ready data (tuples as lists, so that a record read back equals one made)."""
    preset = plan.preset
    record = {
        "trials": [dataclasses.asdict(cfg) for cfg in plan.configs],
        "evaluation": dict(preset.evaluation),
        "seeds": list(preset.seeds),
        "num_samples": preset.num_samples,
        "scheduler": preset.scheduler,
        "adaptive": preset.adaptive.text() if preset.adaptive is not None else None,
    }
    return json.loads(json.dumps(record, sort_keys=True, default=str))


def plan_digest(record: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()


def _values(trials: list[dict[str, Any]], key: str) -> str:
    return ", ".join(sorted({json.dumps(t.get(key)) for t in trials}))


def plan_changes(old: dict[str, Any], new: dict[str, Any]) -> list[str]:
    """What differs between two records, one line per setting: ``epochs: 1 -> 2``."""
    changes = [f"{key}: {json.dumps(old.get(key))} -> {json.dumps(new.get(key))}" for key in sorted(set(old) | set(new))
               if key != "trials" and old.get(key) != new.get(key)]
    before, after = old.get("trials", []), new.get("trials", [])
    if len(before) != len(after):
        changes.append(f"trials: {len(before)} -> {len(after)}")
    fields = sorted({k for t in [*before, *after] for k in t})
    changes += [f"{key}: {_values(before, key)} -> {_values(after, key)}" for key in fields
                if [t.get(key) for t in before] != [t.get(key) for t in after]]
    return changes


def changes_text(changes: list[str]) -> str:
    shown = changes[:MAX_CHANGES_SHOWN]
    more = f"; and {len(changes) - len(shown)} more" if len(changes) > len(shown) else ""
    return "; ".join(shown) + more
