"""A renamed config field is still read under its old name, wherever a config comes from, with a note.

``attention_preset`` is now ``published_hyperparameters`` (the hyperparameters a loss's paper
published for a dataset). Configs, ``--set``, YAML files and flags written with the old name give
the same config as the new name, say so once on stderr, and a run recorded in MLflow under the
old param name reads back under the new one.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from analysis.load import old_params_renamed
from study import train
from study.plan import make_plan, parse_overrides
from trainables.spec.pretrain_config import from_dict
from trainables.spec.validation import RENAMED_FIELDS, ConfigError, note_renamed
from trainables.spec.yaml_config import from_yaml

OLD, NEW = "attention_preset", "published_hyperparameters"
ATTENTION = {"loss": "attentionnce", "views": 2}


@pytest.fixture(autouse=True)
def _fresh_note() -> None:
    note_renamed.cache_clear()  # the note is said once per process; each test sees it said


def test_the_old_name_gives_the_same_config_as_the_new_and_says_so(capsys: pytest.CaptureFixture) -> None:
    old = from_dict(ATTENTION | {OLD: "stl10"})
    assert old == from_dict(ATTENTION | {NEW: "stl10"})
    assert (old.published_hyperparameters, old.loss_hyperparameters()) == ("stl10", {"d_pos": 2.0, "d_neg": 0.5})
    assert f"note: {OLD} is now called {NEW}" in capsys.readouterr().err
    from_dict(ATTENTION | {OLD: "stl10"})
    assert capsys.readouterr().err == ""  # once per process, not once per trial


def test_both_names_at_once_are_refused_naming_both() -> None:
    with pytest.raises(ConfigError, match=f"{OLD} and {NEW} were both given") as err:
        from_dict(ATTENTION | {OLD: "stl10", NEW: "cifar10"})
    assert err.value.fields == {OLD, NEW}


def test_a_bad_value_under_the_old_name_is_named_under_the_new() -> None:
    with pytest.raises(ConfigError, match=f"{NEW}='imagenet' is not allowed"):
        from_dict(ATTENTION | {OLD: "imagenet"})


def test_a_yaml_file_with_the_old_name_loads(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text(f"loss: attentionnce\nviews: 2\n{OLD}: dataset\ndataset: tinyimagenet\n")
    assert from_yaml(path).loss_hyperparameters() == {"d_pos": 4.0, "d_neg": 1.0}


def test_a_set_override_with_the_old_name_replaces_the_presets_setting(capsys: pytest.CaptureFixture) -> None:
    plan = make_plan("attentionnce-views", parse_overrides([f"{OLD}=stl10"]))
    attention = next(c for c in plan.configs if c.loss == "attentionnce")
    assert attention.published_hyperparameters == "stl10"
    assert any(f"{NEW}='stl10'" in note for note in plan.notes), plan.notes
    assert f"note: {OLD} is now called {NEW}" in capsys.readouterr().err


@pytest.mark.parametrize("flag", [f"--{OLD}", f"--{OLD.replace('_', '-')}"])
def test_the_old_flag_parses_unlisted(flag: str) -> None:
    parser = train.build_parser()
    cfg = train.config_from_args(parser.parse_args(["--loss", "attentionnce", flag, "cifar10"]))
    assert cfg.published_hyperparameters == "cifar10"
    assert OLD not in parser.format_help() and f"--{NEW}" in parser.format_help()


def test_an_old_runs_param_reads_back_under_the_new_name(tmp_path: Path) -> None:
    from mlflow_fixtures import make_synthetic_study, synthetic_trial

    from analysis.load import EXTRA_PARAM_PREFIX, load_study

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    old_run = synthetic_trial("attentionnce", 256, 0, test_acc=0.8, extra_params={OLD: "dataset"})
    make_synthetic_study(uri, "old-study", [old_run])
    trials = load_study("old-study", uri)
    assert list(trials[EXTRA_PARAM_PREFIX + NEW]) == ["dataset"] and EXTRA_PARAM_PREFIX + OLD not in trials.columns
    assert old_params_renamed({OLD: "dataset", "loss": "attentionnce"}) == {NEW: "dataset", "loss": "attentionnce"}
    assert set(RENAMED_FIELDS.values()) <= set(from_dict({}).to_dict())  # every new name is a field
