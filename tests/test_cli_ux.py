"""What the command lines print and import: help and argument errors without the heavy libraries, a
dry run on files without torch, a study's plan said once."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HEAVY = ("torch", "torchvision", "mlflow", "pandas", "ray", "sklearn", "optuna", "matplotlib")


def imported_heavy(code: str, cwd: Path) -> tuple[str, list[str]]:
    """(the last line ``code`` prints, before the heavy modules it left imported) of a fresh interpreter."""
    script = f"import sys\n{code}\nprint(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", script], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)
    lines = done.stdout.strip().splitlines()
    assert len(lines) >= 2, done.stdout[-2000:] + done.stderr[-2000:]
    return lines[-2], eval(lines[-1])  # noqa: S307 - the list the script itself printed


ANALYSIS = """
import runpy
sys.argv = ["analysis", *{argv!r}]
try:
    runpy.run_module("analysis", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    print(exit.code)
"""


@pytest.mark.parametrize(("argv", "code"), [(["--help"], "0"), (["tables", "--bogus"], "2"), (["tables", "--study", "s", "--format", "svg"], "2")])
def test_analysis_help_and_argument_errors_import_no_heavy_library(tmp_path: Path, argv: list[str], code: str) -> None:
    exit_code, heavy = imported_heavy(ANALYSIS.format(argv=argv), tmp_path)
    assert (exit_code, heavy) == (code, [])


def test_the_analysis_format_names_are_the_renderers() -> None:
    import analysis.__main__ as cli
    from analysis import render

    assert cli.TABLE_FORMATS == tuple(render.FORMATS)


def test_the_analysis_package_still_exports_its_functions() -> None:
    import analysis
    import analysis.reported_table  # noqa: F401 - the submodule of the same name as the function, imported first

    assert callable(analysis.load_study) and callable(analysis.write_report) and "Table" in analysis.__all__
    assert callable(analysis.reported_table)
    with pytest.raises(AttributeError, match="no attribute 'nothing'"):
        analysis.nothing  # noqa: B018


# --- a dry run on a dataset stored as files ---------------------------------------------------------

DRY_RUN = "from study import run_sweep\nprint(run_sweep.main({argv!r}))"


def write_image_folder(root: Path) -> Path:
    for part in ("train", "val"):
        for name in ("cat", "dog"):
            (root / part / name).mkdir(parents=True)
            (root / part / name / "0.png").write_bytes(b"not decoded by a dry run")
    return root


def write_tiny_imagenet(data_dir: Path) -> Path:
    root = data_dir / "tiny-imagenet-200"
    (root / "train" / "n01" / "images").mkdir(parents=True)
    (root / "train" / "n01" / "images" / "n01_0.JPEG").write_bytes(b"")
    (root / "val" / "images").mkdir(parents=True)
    (root / "val" / "images" / "val_0.JPEG").write_bytes(b"")
    (root / "val" / "val_annotations.txt").write_text("val_0.JPEG\tn01\t0\t0\t1\t1\n")
    (root / "wnids.txt").write_text("n01\n")
    return data_dir


@pytest.mark.parametrize("dataset", ["imagefolder", "tinyimagenet"])
def test_a_dry_run_on_files_checks_them_without_torch(tmp_path: Path, dataset: str) -> None:
    data = write_image_folder(tmp_path / "folder") if dataset == "imagefolder" else write_tiny_imagenet(tmp_path / "tiny")
    argv = ["--preset", "quickstart", "--dry-run", "--set", f"dataset={dataset}", "--data-dir", str(data)]
    assert imported_heavy(DRY_RUN.format(argv=argv), tmp_path) == ("0", [])


def test_a_dry_run_on_cifar10_checks_its_files_without_torch(tmp_path: Path, cifar10_root: Path) -> None:
    argv = ["--preset", "cifar10-cpu", "--dry-run", "--data-dir", str(cifar10_root)]
    assert imported_heavy(DRY_RUN.format(argv=argv), tmp_path) == ("0", [])


def test_a_dry_run_names_the_missing_file_without_torch(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from study import run_sweep

    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"")
    argv = ["--preset", "cifar10-cpu", "--dry-run", "--data-dir", str(tmp_path)]
    assert imported_heavy(DRY_RUN.format(argv=argv), tmp_path) == ("2", [])
    assert run_sweep.main(argv) == 2
    missing = "data_batch_2, data_batch_3, data_batch_4, data_batch_5, test_batch, batches.meta"
    assert f"Missing from {folder}: {missing}" in capsys.readouterr().err


def test_a_dry_run_names_an_image_folder_without_val(tmp_path: Path) -> None:
    from study import run_sweep
    from trainables.spec.validation import ConfigError

    write_image_folder(tmp_path)
    for name in ("cat", "dog"):
        (tmp_path / "val" / name / "0.png").unlink()
    args = run_sweep.build_parser().parse_args(["--preset", "quickstart", "--dry-run", "--set", "dataset=imagefolder", "--data-dir", str(tmp_path)])
    with pytest.raises(ConfigError, match=r"class folder .*val/cat holds no image files"):
        run_sweep.validated(args)


def test_the_torch_free_layout_is_torchvisions(tmp_path: Path) -> None:
    from torchvision import datasets
    from torchvision.datasets.folder import IMG_EXTENSIONS, find_classes, make_dataset

    from trainables.spec.datasets import DATASETS
    from trainables.spec.layouts import IMAGE_EXTENSIONS, scan

    assert IMAGE_EXTENSIONS == IMG_EXTENSIONS
    for name, cls, meta in (("cifar10", datasets.CIFAR10, "filename"), ("cifar100", datasets.CIFAR100, "filename"), ("stl10", datasets.STL10, None)):
        spec = DATASETS[name]
        assert spec.folder == cls.base_folder
        assert set(spec.files) == {f for f, _ in cls.train_list + cls.test_list} | ({cls.meta[meta]} if meta else set())
    root = write_image_folder(tmp_path)
    (root / "train" / "cat" / "deeper").mkdir()
    for extra in ("deeper/1.JPG", "2.txt", "3.webp"):
        (root / "train" / "cat" / extra).write_bytes(b"")
    _, index = find_classes(str(root / "train"))
    theirs = [(Path(p), label) for p, label in make_dataset(str(root / "train"), index, extensions=IMG_EXTENSIONS)]
    assert list(scan(DATASETS["imagefolder"], root).train) == theirs
    # The one difference: hidden files and folders, which torchvision takes for images and classes.
    for extra in ("dog/._0.png", "cat/.ipynb_checkpoints/4.png", ".ipynb_checkpoints/5.png"):
        (root / "train" / extra).parent.mkdir(exist_ok=True)
        (root / "train" / extra).write_bytes(b"")
    classes, index = find_classes(str(root / "train"))
    assert ".ipynb_checkpoints" in classes
    theirs = make_dataset(str(root / "train"), index, extensions=IMG_EXTENSIONS)
    shown = [(Path(p), classes[label]) for p, label in theirs if not any(part.startswith(".") for part in Path(p).relative_to(root).parts)]
    found = scan(DATASETS["imagefolder"], root)
    assert [(p, found.classes[label]) for p, label in found.train] == shown and found.classes == ("cat", "dog")


TRAIN_DRY_RUN = "from study import train\nprint(train.main({argv!r}))"


def test_a_train_dry_run_prints_the_run_as_a_plan_prints_a_trial_and_starts_nothing(tmp_path: Path) -> None:
    from study.report import trial_row
    from trainables.spec.pretrain_config import from_dict

    argv = ["--dry-run", "--dataset", "digits", "--backbone", "small", "--epochs", "3", "--run_name", "dry", "--save_dir", "runs"]
    env = os.environ | {"PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, str(REPO / "study" / "train.py"), *argv], cwd=tmp_path, env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    cfg = from_dict({"dataset": "digits", "backbone": "small", "epochs": 3, "run_name": "dry", "save_dir": "runs"})
    assert trial_row(1, cfg) in done.stdout.splitlines()  # the same line a study's plan gives this config
    assert "run 'dry'" in done.stdout and str(Path("runs") / "dry") in done.stdout
    assert list(tmp_path.iterdir()) == []  # no MLflow store, no run folder, no Ray
    assert imported_heavy(TRAIN_DRY_RUN.format(argv=argv), tmp_path) == ("0", [])


def test_a_train_dry_run_names_the_missing_files_without_torch(tmp_path: Path) -> None:
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    (folder / "data_batch_1").write_bytes(b"")
    argv = ["--dry-run", "--dataset", "cifar10", "--data-dir", str(tmp_path)]
    assert imported_heavy(TRAIN_DRY_RUN.format(argv=argv), tmp_path) == ("2", [])


# --- a study's plan, said once ---------------------------------------------------------------------


def test_a_study_that_starts_prints_its_plan_once(tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    from study import run_sweep, sweep
    from study.console import StudyConsole
    from study.plan import make_plan

    def started(args, name, preset_name, plan, tracking_uri) -> int:  # the console's account, as a study gives it
        StudyConsole(name, plan, tmp_path).start({"CPU": 2.0}, 1)
        return 0

    monkeypatch.setattr(sweep, "run_study", started)
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    assert run_sweep.main(["--preset", "quickstart", "--name", "once", "--tracking-uri", uri, "--set", "seeds=1"]) == 0
    out = capsys.readouterr().out
    assert out.count("quickstart") == 1 and "encoder passes" not in out, out
    plan = make_plan("lineage-baselines", {"views": 2})
    console = StudyConsole("s", plan, tmp_path)
    console.start({"CPU": 2.0}, 1)
    assert "note: override views=2 replaces the preset's setting for loss 'attentionnce'" in capsys.readouterr().out


# --- a preset's loss settings follow its dataset ---------------------------------------------------


@pytest.mark.parametrize(("dataset", "published"), [("cifar10", (1.0, 10.0)), ("tinyimagenet", (4.0, 1.0)), ("stl10", (2.0, 0.5))])
def test_attentionnce_views_takes_the_values_published_for_its_dataset(dataset: str, published: tuple[float, float]) -> None:
    from study.plan import make_plan
    from study.report import describe_plan
    from trainables.spec.losses import CATALOG

    plan = make_plan("attentionnce-views", {"dataset": dataset})
    attention = [c for c in plan.configs if c.loss == "attentionnce"]
    assert {(c.loss_hyperparameters()["d_pos"], c.loss_hyperparameters()["d_neg"]) for c in attention} == {published}
    assert tuple(CATALOG["attentionnce"].presets[dataset].values()) == published  # the catalog is their one home
    d_pos, d_neg = (f"{v:g}" for v in published)
    assert f"loss attentionnce: d_pos={d_pos}, d_neg={d_neg}, temperature=0.5 (published for {dataset}" in describe_plan("s", plan)
    assert "follow the dataset" in plan.preset.description and "tinyimagenet (4, 1)" in plan.preset.description


def test_a_given_value_beats_the_published_one_and_a_dataset_without_any_is_refused() -> None:
    from study.plan import make_plan
    from trainables.spec.validation import ConfigError

    plan = make_plan("attentionnce-views", {"dataset": "tinyimagenet", "d_neg": 2.0})
    assert {tuple(c.loss_hyperparameters().values())[:2] for c in plan.configs if c.loss == "attentionnce"} == {(4.0, 2.0)}
    with pytest.raises(ConfigError, match=r"published_hyperparameters='dataset' takes the values loss='attentionnce' published for dataset='digits'"):
        make_plan("attentionnce-views", {"dataset": "digits"})
    make_plan("attentionnce-views", {"dataset": "digits", "d_pos": 1.0, "d_neg": 1.0})  # both given: nothing to look up


def test_the_published_values_are_recorded_with_the_run() -> None:
    from trainables.integration.tracking import pretrain_params
    from trainables.spec.pretrain_config import from_dict

    params = pretrain_params(from_dict({"loss": "attentionnce", "published_hyperparameters": "dataset", "dataset": "tinyimagenet"}))
    assert (params["published_hyperparameters"], params["d_pos"], params["d_neg"]) == ("dataset", 4.0, 1.0)


def test_a_list_for_a_single_valued_field_is_a_new_grid_axis() -> None:
    from study.plan import make_plan
    from study.report import describe_plan
    from trainables.spec.validation import ConfigError

    plan = make_plan("quickstart", {"loss": "infonce", "batch_size": 32, "seeds": 2, "lr": [0.1, 0.0123, 0.001001]})
    assert sorted((c.lr, c.seed) for c in plan.configs) == sorted((lr, s) for lr in (0.1, 0.0123, 0.001001) for s in (0, 1))
    text = describe_plan("s", plan)
    assert "grid over lr x 2 seed(s)" in text and "0.001001" in text  # lr values told apart in the plan
    assert "changed by loss, batch_size, seeds, lr" in text.splitlines()[0]
    with pytest.raises(ConfigError, match=r"epochs=\[1, 2\].*Optuna search; give one value"):
        make_plan("tpe-lr", {"epochs": [1, 2]})
    with pytest.raises(ConfigError, match=r"lr=\[\] has type list"):  # reported with every other problem, as a wrong type
        make_plan("quickstart", {"lr": []})


def test_a_cpu_preset_plan_gives_its_time_from_the_measured_cpu_throughput() -> None:
    from study.cost import CPU_THROUGHPUT, TRIAL_OVERHEAD_S, encoder_passes
    from study.plan import make_plan
    from study.report import describe_plan

    plan = make_plan("quickstart", {})
    cfg = plan.configs[0]
    per_trial = encoder_passes(cfg) / (CPU_THROUGHPUT["small", 32] * cfg.workers * cfg.cpus_per_worker) + TRIAL_OVERHEAD_S
    total = sum(encoder_passes(c) / (CPU_THROUGHPUT["small", 32] * c.workers * c.cpus_per_worker) + TRIAL_OVERHEAD_S for c in plan.configs)
    text = describe_plan("s", plan)
    assert text.splitlines()[3].endswith(f"{per_trial:.0f} s")
    assert f"time: about {total / 60:.0f} min of trial wall-clock" in text


@pytest.mark.parametrize("first", ["published_hyperparameters", "d_pos"])
def test_values_given_with_published_hyperparameters_win_whatever_their_order(first: str) -> None:
    from study.plan import make_plan
    from trainables.spec.validation import ConfigError

    given = {"loss": ["infonce", "attentionnce"], "published_hyperparameters": None, "d_pos": 3.0, "d_neg": 2.0}
    ordered = dict(sorted(given.items(), key=lambda item: item[0] != first))
    attention = [c for c in make_plan("quickstart", ordered).configs if c.loss == "attentionnce"]
    assert attention and {(c.d_pos, c.d_neg) for c in attention} == {(3.0, 2.0)}
    with pytest.raises(ConfigError, match="d_pos=0"):
        make_plan("quickstart", dict(sorted((given | {"d_pos": 0}).items(), key=lambda item: item[0] != first)))


@pytest.mark.parametrize("dataset", ["imagefolder", "tinyimagenet"])
def test_download_true_does_not_waive_the_check_of_a_dataset_that_is_never_downloaded(
    tmp_path: Path, capsys: pytest.CaptureFixture, dataset: str
) -> None:
    from study import run_sweep

    argv = ["--preset", "quickstart", "--set", f"dataset={dataset}", "--set", "download=true", "--data-dir", str(tmp_path), "--dry-run"]
    assert run_sweep.main(argv) == 2
    assert str(tmp_path) in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "code"),
    [
        (["--preset", "quickstart", "--dry-run", "--adaptive-seeds", "3:2:8", "--seeds-for", "0.5"], "0"),
        (["--preset", "quickstart", "--dry-run", "--adaptive-seeds", "3:2:2"], "2"),
        (["--preset", "quickstart", "--dry-run", "--from-study", "pilot"], "2"),
        (["--replicate-of", "never-ran", "--dry-run"], "2"),
    ],
)
def test_an_adaptive_dry_run_and_its_planning_errors_answer_without_torch(tmp_path: Path, argv: list[str], code: str) -> None:
    assert imported_heavy(DRY_RUN.format(argv=argv), tmp_path) == (code, [])
