"""``--resume`` runs the plan a study started with: a plan edited since (study.json, a --set given
with --resume) is refused naming what changed, before Ray starts, and study.json is left as it was."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from study import run_sweep
from study.plan import make_plan
from study.plan_digest import PLAN_DIGEST_TAG, plan_changes, plan_digest, plan_record
from study.study_file import PLAN_FILE, write_plan_file
from trainables.integration.tracking import create_run
from trainables.spec import run_schema as rs


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    import ray

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("a refused resume reached Ray")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


@pytest.fixture
def study(tmp_path: Path) -> tuple[Path, str]:
    """A study of quickstart at 1 epoch, as the driver records it: study.json and its study run."""
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    record = plan_record(make_plan("quickstart", {"epochs": 1}))
    run_id = create_run(uri, "nce-study", run_name="s", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "s", PLAN_DIGEST_TAG: plan_digest(record)})
    write_plan_file(tmp_path / "nce_runs" / "s", "quickstart", {"epochs": 1}, run_id, record)
    return tmp_path / "nce_runs", uri


def resume(storage: Path, uri: str, *extra: str) -> tuple[int, str]:
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        code = run_sweep.main(["--resume", "s", "--storage-path", str(storage), "--tracking-uri", uri, *extra])
    return code, out.getvalue()


def test_an_unchanged_plan_passes_the_check(study: tuple[Path, str]) -> None:
    storage, uri = study
    args = run_sweep.build_parser().parse_args(["--resume", "s", "--storage-path", str(storage)])
    _, _, plan = run_sweep.study_plan(args)
    assert run_sweep.check_resumed_plan(args, "s", plan, uri) is None


def test_resume_after_study_json_was_edited_names_the_change_and_refuses(study: tuple[Path, str], no_start: None) -> None:
    storage, uri = study
    saved = json.loads((storage / "s" / PLAN_FILE).read_text())
    saved["overrides"]["epochs"] = 2
    edited = json.dumps(saved)
    (storage / "s" / PLAN_FILE).write_text(edited)
    code, output = resume(storage, uri)
    assert code == 2 and "Traceback" not in output, output
    assert "the study's plan changed since it started" in output and "epochs: 1 -> 2" in output
    assert (storage / "s" / PLAN_FILE).read_text() == edited


def test_a_set_given_with_resume_names_the_change_and_refuses(study: tuple[Path, str], no_start: None) -> None:
    storage, uri = study
    code, output = resume(storage, uri, "--set", "epochs=3", "--set", "lr=0.5")
    assert code == 2 and "epochs: 1 -> 3" in output and "lr: " in output and "-> 0.5" in output, output


def test_study_json_rewritten_with_its_digest_is_caught_by_the_study_run(study: tuple[Path, str], no_start: None) -> None:
    storage, uri = study
    saved = json.loads((storage / "s" / PLAN_FILE).read_text())
    write_plan_file(storage / "s", "quickstart", {"epochs": 2}, saved["mlflow_run_id"], plan_record(make_plan("quickstart", {"epochs": 2})))
    code, output = resume(storage, uri)
    assert code == 2 and "was edited" in output and saved["mlflow_run_id"] in output, output


def test_changes_are_named_per_setting() -> None:
    one, two = plan_record(make_plan("quickstart", {"epochs": 1})), plan_record(make_plan("quickstart", {"epochs": 1, "seeds": 2}))
    changes = plan_changes(one, two)
    assert any(c == "seeds: [0, 1, 2] -> [0, 1]" for c in changes) and any(c.startswith("trials: ") for c in changes), changes
    assert plan_changes(one, json.loads(json.dumps(one))) == []
