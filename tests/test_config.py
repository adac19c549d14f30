"""Bad configurations are rejected with the field, the value and what is allowed."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from study import train
from trainables.spec import eval_config, pretrain_config, validation
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.validation import ConfigError
from trainables.spec.yaml_config import from_yaml

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize(
    "values,field,allowed",
    [
        ({"batch_size": 1}, "batch_size=1", "[2, 131072]"),
        ({"views": 0}, "views=0", "[1, 64]"),
        ({"epochs": 0}, "epochs=0", "[1, 100000]"),
        ({"lr": 0.0}, "lr=0.0", "> 0"),
        ({"lr": -1e-3}, "lr=-0.001", "> 0"),
        ({"temperature": 0.0}, "temperature=0.0", "> 0"),
        ({"loss": "attentionnce", "d_pos": 0.0}, "d_pos=0.0", "> 0"),
        ({"loss": "attentionnce", "d_neg": -2.0}, "d_neg=-2.0", "> 0"),
        ({"loss": "dcl", "tau_plus": 1.0}, "tau_plus=1.0", "[0, 1)"),
        ({"loss": "hcl", "tau_plus": -0.1}, "tau_plus=-0.1", "[0, 1)"),
        ({"batch_size": 250, "workers": 3}, "batch_size=250 is not divisible by workers=3", "batch_size / workers"),
        ({"loss": "simclr"}, "loss='simclr'", "infonce, flatnce, dcl, hcl, attentionnce"),
        ({"dataset": "mnist"}, "dataset='mnist'", "cifar10, cifar100, stl10, imagefolder, digits, tinyimagenet, imagenet"),
        ({"loss": "infonce", "d_neg": 1.0}, "d_neg=1.0 does not apply to loss='infonce'", "temperature"),
    ],
)
def test_out_of_range_values_name_field_value_and_allowed(values: dict, field: str, allowed: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(values)
    assert field in str(err.value) and allowed in str(err.value)


def test_unknown_keys_and_wrong_types_are_rejected() -> None:
    with pytest.raises(ConfigError, match=r"unknown config key 'batchsize' \(did you mean 'batch_size'\?\)"):
        from_dict({"batchsize": 64})
    with pytest.raises(ConfigError, match="epochs='3' has type str; expected int"):
        from_dict({"epochs": "3"})
    with pytest.raises(ConfigError, match="gpu=1 has type int; expected bool"):
        from_dict({"gpu": 1})


def test_all_problems_are_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        from_dict({"batch_size": 1, "lr": 0.0, "epochs": 0})
    assert all(f in str(err.value) for f in ("batch_size=1", "lr=0.0", "epochs=0"))


def test_yaml_with_a_typo_is_rejected_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("loss: flatnce\nlearning_rate: 0.1\n")
    with pytest.raises(ConfigError, match="'learning_rate'"):
        from_yaml(path)


def test_flags_override_yaml_and_clr_is_an_alias(tmp_path: Path) -> None:
    path = tmp_path / "run.yaml"
    path.write_text("loss: infonce\nbatch_size: 64\nepochs: 7\n")
    args = train.build_parser().parse_args(["--config", str(path), "--batch-size", "128", "--clr", "flatclr"])
    cfg = train.config_from_args(args)
    assert (cfg.loss, cfg.batch_size, cfg.epochs) == ("flatnce", 128, 7)


def test_defaults_follow_the_attentionnce_seed_command_line() -> None:
    cfg = PretrainConfig()
    assert (cfg.epochs, cfg.batch_size, cfg.lr, cfg.save_dir, cfg.n_eval_epochs, cfg.n_save_epochs) == (
        400,
        256,
        1e-3,
        "checkpoints",
        5,
        20,
    )


def test_derived_values() -> None:
    cfg = from_dict({"loss": "attentionnce", "views": 4, "published_hyperparameters": "stl10", "lr": 0.075, "lr_scaling": "sqrt", "batch_size": 256})
    assert cfg.views_per_image == 6
    assert cfg.loss_hyperparameters() == {"d_pos": 2.0, "d_neg": 0.5}
    assert cfg.effective_lr == pytest.approx(1.2)


def test_cli_rejects_bad_input_before_ray_or_mlflow(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    assert train.main(["--dataset", "digits", "--batch_size", "1"]) == 2
    assert "batch_size=1" in capsys.readouterr().err
    assert train.main(["--dataset", "cifar10", "--data-dir", str(tmp_path / "nowhere")]) == 2
    assert "--download" in capsys.readouterr().err
    assert train.main(["--dataset", "digits", "--tracking-uri", "http://127.0.0.1:9"]) == 2
    assert "does not answer" in capsys.readouterr().err
    assert not (tmp_path / "mlflow.db").exists()  # no MLflow store was touched


def test_every_jitter_the_config_accepts_the_augmentation_accepts() -> None:
    from trainables.core.augment import AugmentConfig, augment_config_for
    from trainables.spec.datasets import dataset_spec

    for strength in (0.0, validation.MAX_JITTER_STRENGTH):
        assert isinstance(
            augment_config_for(dataset_spec("cifar10"), jitter_strength=from_dict({"jitter_strength": strength}).jitter_strength),
            AugmentConfig,
        )
    with pytest.raises(ConfigError, match="jitter_strength"):
        from_dict({"jitter_strength": validation.MAX_JITTER_STRENGTH + 0.01})


CHECK_WITHOUT_TORCH = """
import sys
from study import linear_eval, run_sweep, train
codes = [
    run_sweep.main(["--preset", "quickstart", "--dry-run"]),
    run_sweep.main(["--preset", "quickstrat"]),
    train.main(["--lr", "inf"]),
    linear_eval.main(["--model_path", "nowhere", "--mode", "svm"]),
]
for flag in ("--help",):
    for main in (run_sweep.main, train.main, linear_eval.main):
        try:
            main([flag])
        except SystemExit as exit:
            codes.append(exit.code)
print(codes, sorted(m for m in ("torch", "torchvision", "mlflow", "ray", "sklearn", "optuna") if m in sys.modules))
"""


def test_help_dry_run_and_validation_errors_import_no_torch(tmp_path: Path) -> None:
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", CHECK_WITHOUT_TORCH], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.stdout.strip().splitlines()[-1] == "[0, 2, 2, 2, 0, 0, 0] []", done.stdout[-2000:] + done.stderr[-2000:]


# --- study plans: overrides ------------------------------------------------------------------------


def plan_of(preset: str, items: list[str]):
    from study.plan import make_plan, parse_overrides

    return make_plan(preset, parse_overrides(items))


def test_a_set_that_conflicts_with_a_per_loss_setting_wins_and_the_plan_says_so() -> None:
    plan = plan_of("lineage-baselines", ["views=2"])
    assert {c.loss: c.views for c in plan.configs}["attentionnce"] == 2  # the preset's per-loss M = 4 is replaced
    assert any("views=2" in note and "'attentionnce'" in note and "views=4" in note for note in plan.notes), plan.notes
    plan = plan_of("attentionnce-views", ["published_hyperparameters=stl10"])
    attention = next(c for c in plan.configs if c.loss == "attentionnce")
    assert (attention.d_pos, attention.d_neg) == (None, None)
    assert {k: attention.loss_hyperparameters()[k] for k in ("d_pos", "d_neg")} == {"d_pos": 2.0, "d_neg": 0.5}
    assert any("published_hyperparameters='stl10'" in note and "published_hyperparameters='dataset'" in note for note in plan.notes), plan.notes
    assert plan_of("lineage-baselines", ["epochs=3"]).notes == []  # no per-loss setting replaced, nothing to say


def test_a_dry_run_prints_what_an_override_replaced(capsys: pytest.CaptureFixture, cifar10_root: Path) -> None:
    from study import run_sweep

    assert run_sweep.main(["--preset", "lineage-baselines", "--dry-run", "--set", "views=2", "--data-dir", str(cifar10_root)]) == 0
    assert "note: override views=2 replaces the preset's setting for loss 'attentionnce': views=4" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["batch_size=[64,", "256]"], ["batch_size=[64, 256]"], ["batch_size=[", "64,", "256", "]"]])
def test_a_list_split_by_the_shell_is_put_back(argv: list[str]) -> None:
    from study import run_sweep

    args = run_sweep.build_parser().parse_args(["--preset", "quickstart", "--set", *argv, "--set", "epochs=2"])
    overrides, _ = run_sweep.overrides_from(args)
    assert overrides == {"batch_size": [64, 256], "epochs": 2}


@pytest.mark.parametrize(
    ("argv", "hint"),
    [
        (["--preset", "quickstrat"], "did you mean 'quickstart'"),
        (["--preset", "quickstart", "--set", "batchsize=64"], "did you mean 'batch_size'"),
        (["--preset", "quickstart", "--set", "los=[infonce]"], "did you mean 'loss'"),
        (["--preset", "quickstart", "--set", "eval.epoch=3"], "did you mean 'eval.epochs'"),
        (["--preset", "quickstart", "--set", "loss=[infonc]"], "did you mean 'infonce'"),
    ],
)
def test_names_that_are_close_get_a_suggestion(argv: list[str], hint: str, capsys: pytest.CaptureFixture) -> None:
    from study import run_sweep

    assert run_sweep.main([*argv, "--dry-run"]) == 2
    assert hint in capsys.readouterr().err


def test_a_bad_key_in_a_config_file_is_named_as_that_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from study import run_sweep

    path = tmp_path / "study.yaml"
    path.write_text("epochs: 2\nlerning_rate: 0.1\n")
    assert run_sweep.main(["--preset", "quickstart", "--config", str(path), "--dry-run"]) == 2
    err = capsys.readouterr().err
    assert f"in config={str(path)!r}: lerning_rate" in err and "did you mean 'learning" not in err and "--set" not in err, err
    path.write_text("epochs: 0\n")
    assert run_sweep.main(["--preset", "quickstart", "--config", str(path), "--dry-run"]) == 2
    assert f"in config={str(path)!r}: epochs=0" in capsys.readouterr().err


def test_seeds_must_be_a_count_or_a_list_of_seeds() -> None:
    from study.plan import make_plan

    assert make_plan("quickstart", {"seeds": 2}).preset.seeds == (0, 1)
    assert make_plan("quickstart", {"seeds": [3, 7]}).preset.seeds == (3, 7)
    for bad in (True, 0, 101, [], [True], [1, 1], "2", 2.0):
        with pytest.raises(ConfigError, match="seeds="):
            make_plan("quickstart", {"seeds": bad})


def test_data_dir_is_the_shorthand_of_set_data_dir(tmp_path: Path) -> None:
    from study import run_sweep

    args = run_sweep.build_parser().parse_args(["--preset", "cifar10-cpu", "--data-dir", str(tmp_path)])
    assert run_sweep.overrides_from(args)[0] == {"data_dir": str(tmp_path)}


# --- help texts --------------------------------------------------------------------------------------


def flag_helps(parser) -> dict[str, str]:
    return {a.dest: a.help for a in parser._actions if a.help and a.dest != "help"}


@pytest.mark.parametrize("command", ["train", "linear_eval"])
def test_each_flag_help_says_its_default_once_and_what_its_rule_allows(command: str) -> None:
    import dataclasses

    from study import linear_eval

    module, config_class, checks = {
        "train": (train, PretrainConfig, pretrain_config.PRETRAIN_CHECKS),
        "linear_eval": (linear_eval, eval_config.EvalConfig, eval_config.EVAL_CHECKS),
    }[command]
    helps = flag_helps(module.build_parser())
    for f in dataclasses.fields(config_class):
        if f.name == "tags":
            continue
        text = helps[f.name]
        assert text.count("(default") <= 1, (f.name, text)
        default = f.default
        if "(default:" in text and text.rstrip().endswith(")") and "default: " + str(default) in text:
            assert text.endswith(f"(default: {default})")
        for check in checks:
            if getattr(check, "field", None) == f.name and hasattr(check, "allowed"):
                assert check.allowed() in text, (f.name, text)


def test_linear_eval_help_speaks_of_the_evaluation_only() -> None:
    from study import linear_eval

    text = " ".join(linear_eval.build_parser().format_help().split())
    for wrong in ("pretraining epochs", "GLOBAL", "--lr-scaling", "--config"):
        assert wrong not in text, wrong
    assert "one of linear, finetune, knn" in text and "one of attentionnce, flatclr" in text
