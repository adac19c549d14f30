"""The small things a new user meets first: errors that name what they can do instead, help
examples that run, the link and numbers a finished study prints, a README example that fits the
2-core machine it targets."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from mlflow_fixtures import make_synthetic_study, synthetic_baseline, synthetic_trial

REPO = Path(__file__).resolve().parents[1]
ENV = os.environ | {"PYTHONPATH": str(REPO)}


def planted(root: Path) -> str:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trials = [synthetic_trial("infonce", 64, seed, test_acc=0.5) for seed in (0, 1)]
    make_synthetic_study(uri, "linear-only", trials, baselines=[synthetic_baseline(s, test_acc=0.2 + 0.01 * s) for s in (0, 1)])
    return uri


def test_a_report_for_an_evaluation_mode_the_study_lacks_exits_2_naming_the_modes_it_has(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.__main__ import main

    uri = planted(tmp_path)
    assert main(["report", "--study", "linear-only", "--eval", "knn", "--out", str(tmp_path / "r"), "--no-log", "--tracking-uri", uri]) == 2
    error = capsys.readouterr().err
    assert "no knn evaluation runs" in error and "its evaluation modes: linear" in error and "--eval linear" in error
    assert not (tmp_path / "r").exists()  # nothing written


def test_a_resume_of_a_study_that_is_not_there_lists_those_that_are(tmp_path: Path) -> None:
    for name in ("alpha", "beta"):
        (tmp_path / "nce_runs" / name).mkdir(parents=True)
        (tmp_path / "nce_runs" / name / "study.json").write_text("{}")
    done = subprocess.run(
        [sys.executable, str(REPO / "study/run_sweep.py"), "--resume", "gamma"], cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300
    )
    assert done.returncode == 2 and "resume='gamma'" in done.stderr and "studies there: alpha, beta" in done.stderr


def test_a_bad_set_value_is_reported_against_the_set_that_gave_it() -> None:
    from study.plan import make_plan
    from trainables.spec.validation import ConfigError

    with pytest.raises(ConfigError) as caught:
        make_plan("quickstart", {"lr": "fast"})
    assert str(caught.value).startswith("--set lr=fast: ") and "lr='fast' has type str" in str(caught.value)
    with pytest.raises(ConfigError) as caught:
        make_plan("quickstart", {"lr": "fast"}, {"lr": "--config c.yaml"})
    assert str(caught.value).startswith("--config c.yaml lr=fast: ")


def test_the_analysis_help_examples_parse_and_name_studies_and_trials_a_preset_makes() -> None:
    from analysis.__main__ import _EPILOG, _parser
    from search_spaces import PRESETS
    from study.plan import make_plan
    from trainables.integration.tracking import trial_run_name

    examples = [shlex.split(line.strip())[3:] for line in _EPILOG.splitlines() if line.strip().startswith("python -m analysis")]
    assert len(examples) >= 5
    for argv in examples:
        args = _parser().parse_args(argv)  # exits on a flag that is not there
        studies = [args.study] if getattr(args, "study", None) else args.studies
        assert all(study in PRESETS for study in studies), argv  # what run_sweep.py --preset P --name P makes
        for trial in getattr(args, "trial", None) or []:
            assert trial in {trial_run_name(c) for c in make_plan(args.study, {}).configs}, trial


def test_the_printed_link_uses_the_port_of_the_printed_command_or_the_server_logged_to() -> None:
    from study.report import browse_lines

    command, link = browse_lines("sqlite:///x/mlflow.db", "3")
    port = re.search(r"--port (\d+)", command).group(1)
    assert "--app-name nce-study" in command and link.startswith(f"then open: http://127.0.0.1:{port}/#/experiments/3/runs?")
    [served] = browse_lines("http://user:secret@head:5123", "3")
    assert served.startswith("browse: http://head:5123/#/experiments/3/runs?") and "secret" not in served


def test_the_baseline_line_gives_the_untrained_encoders_accuracy_in_percent(tmp_path: Path) -> None:
    from mlflow import MlflowClient

    from study.report import baseline_line
    from trainables.integration.mlflow_search import search_runs
    from trainables.spec import run_schema as rs

    uri = planted(tmp_path)
    [study] = search_runs(MlflowClient(uri), {rs.KIND: rs.KIND_STUDY})
    assert baseline_line(uri, study.info.run_id) == (
        "random-init baseline (the untrained encoder, evaluated like the trials): linear test accuracy 20.50% (mean of 2 seeds)"
    )


def test_the_console_says_which_accuracy_its_columns_hold(tmp_path: Path) -> None:
    import io

    from study.console import StudyConsole
    from study.plan import make_plan

    out = io.StringIO()
    reporter = StudyConsole("s", make_plan("cifar10-cpu", {}), tmp_path, out=out).reporter("trials")
    reporter.setup(total_samples=1)
    assert "test acc" in reporter.header() and " eval " not in reporter.header()
    assert "test acc: the linear evaluation's test accuracy at its validation-selected epoch" in out.getvalue()


def test_the_readme_single_run_example_fits_two_cores(tmp_path: Path) -> None:
    line = next(line for line in (REPO / "README.md").read_text().splitlines() if "--dataset digits --backbone small" in line and "train.py" in line)
    argv = shlex.split(line.split("#")[0])[2:]
    assert argv[argv.index("--workers") + 1] == "2"
    command = ["taskset", "-c", "0,1", sys.executable, str(REPO / "study/train.py"), *argv, "--dry-run"]
    done = subprocess.run(command, cwd=tmp_path, env=ENV, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 workers" in done.stdout and "not on this machine" not in done.stdout + done.stderr


def _study_evaluated_in(root: Path, name: str, modes: tuple[str, ...], *, recorded: str | None = None, seeds: int = 2) -> str:
    uri = f"sqlite:///{root / 'mlflow.db'}"
    trials = [synthetic_trial("infonce", 64, seed, test_acc=0.5 + 0.01 * seed, eval_modes=modes) for seed in range(seeds)]
    make_synthetic_study(uri, name, trials, eval_mode=recorded)
    return uri


def test_without_eval_the_tables_read_the_mode_the_study_was_evaluated_in(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.__main__ import main

    uri = _study_evaluated_in(tmp_path, "knn-only", ("knn",))
    argv = ["tables", "--study", "knn-only", "--tracking-uri", uri, "--format", "csv"]
    assert main(argv) == 0
    default = capsys.readouterr().out
    assert main([*argv, "--eval", "knn"]) == 0
    assert capsys.readouterr().out == default  # the kNN evaluations fill the cells
    assert main([*argv, "--eval", "linear"]) == 2  # which the old default would have asked for


def test_without_eval_the_tables_read_the_mode_the_study_run_records_whatever_re_evaluations_add(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from analysis.__main__ import main

    uri = _study_evaluated_in(tmp_path, "recorded", ("linear", "knn"), recorded="knn")  # every trial re-evaluated in linear
    argv = ["tables", "--study", "recorded", "--tracking-uri", uri, "--format", "csv"]
    assert main(argv) == 0
    default = capsys.readouterr()
    assert main([*argv, "--eval", "knn"]) == 0
    assert capsys.readouterr().out == default.out and "note:" not in default.err
    assert main([*argv, "--eval", "linear"]) == 0
    assert capsys.readouterr().out != default.out  # the linear evaluations differ from the kNN ones


def test_without_eval_or_a_record_the_mode_of_most_trials_is_read_and_named(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.__main__ import main

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    modes = {0: ("linear",), 1: ("linear",), 2: ("linear", "knn")}  # a kNN re-evaluation of one trial of three
    make_synthetic_study(uri, "mostly", [synthetic_trial("infonce", 64, s, test_acc=0.5 + 0.01 * s, eval_modes=m) for s, m in modes.items()])
    argv = ["tables", "--study", "mostly", "--tracking-uri", uri, "--format", "csv"]
    assert main(argv) == 0
    default = capsys.readouterr()
    assert "the linear evaluations" in default.err and "linear on 3, knn on 1" in default.err
    assert main([*argv, "--eval", "linear"]) == 0
    assert capsys.readouterr().out == default.out


def test_without_eval_a_study_evaluated_in_several_modes_is_refused_naming_them(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.__main__ import main

    uri = _study_evaluated_in(tmp_path, "two-modes", ("linear", "knn"))
    assert main(["report", "--study", "two-modes", "--out", str(tmp_path / "r"), "--no-log", "--tracking-uri", uri]) == 2
    error = capsys.readouterr().err
    assert "several modes (knn, linear) covering equally many trials" in error and "--eval" in error
    assert not (tmp_path / "r").exists()
    assert main(["report", "--study", "two-modes", "--eval", "knn", "--out", str(tmp_path / "r"), "--no-log", "--tracking-uri", uri]) == 0


def test_without_eval_compare_refuses_studies_evaluated_in_different_modes(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from analysis.__main__ import main

    (tmp_path / "a").mkdir(), (tmp_path / "b").mkdir()
    uri = _study_evaluated_in(tmp_path / "a", "by-knn", ("knn",))
    other = _study_evaluated_in(tmp_path / "b", "by-linear", ("linear",))
    argv = ["compare", "by-knn", "by-linear", "--store", f"by-knn={uri}", "--store", f"by-linear={other}"]
    assert main(argv) == 2
    assert "different modes" in capsys.readouterr().err
