"""Bad input across the four command lines: each refused with exit status 2, no traceback, the offending
field or file named, no MLflow run and nothing written anywhere, before Ray starts.

Each case is (command, arguments, what the message must name). ``{tmp}`` in an argument is the
test's folder, where ``world`` has laid out bad files: YAML that is an alias bomb, too big, not UTF-8,
not a mapping, or holds a typo; study folders whose study.json is a list, lacks its preset or is not
JSON; a symlink out of the storage folder. The cases run in-process through each command's
``main(argv)``, with ``ray.init`` and MLflow's run creation replaced by a failure, so that an input
that slips through fails its case at once instead of starting a study.
"""

from __future__ import annotations

import contextlib
import io
import os
from collections.abc import Callable
from pathlib import Path

import pytest

import analysis.__main__ as analysis_cli
from study import linear_eval, run_sweep, train

COMMANDS: dict[str, Callable[[list[str]], int]] = {
    "train": train.main,
    "linear_eval": linear_eval.main,
    "run_sweep": run_sweep.main,
    "analysis": analysis_cli.main,
}
# A 330-byte YAML document that expands to 9^8 (43 million) values through aliases.
BOMB = "a: &a [x, x, x, x, x, x, x, x, x]\n" + "".join(
    f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join([f'*{chr(97 + i)}'] * 9)}]\n" for i in range(7)
)
NAME = "a name is made of"

TRAIN = [
    (["--batch_size", "1"], "batch_size=1"),
    (["--batch_size", "1000000000"], "batch_size=1000000000"),
    (["--views", "0"], "views=0"),
    (["--views", "100"], "views=100"),
    (["--epochs", "0"], "epochs=0"),
    (["--epochs", "10000000"], "epochs=10000000"),
    (["--lr", "0"], "lr=0"),
    (["--lr", "-1"], "lr=-1"),
    (["--lr", "inf"], "lr=inf"),
    (["--lr", "nan"], "lr=nan"),
    (["--lr", "abc"], "lr='abc'"),
    (["--lr", "1e400"], "lr=inf"),
    (["--temperature", "0"], "temperature=0"),
    (["--temperature=-inf"], "temperature=-inf"),
    (["--loss", "simclr"], "loss='simclr'"),
    (["--loss", "infonc"], "did you mean 'infonce'"),
    (["--dataset", "mnist"], "dataset='mnist'"),
    (["--backbone", "resnet101"], "backbone='resnet101'"),
    (["--head", "linear"], "head='linear'"),
    (["--optimizer", "adamw"], "optimizer='adamw'"),
    (["--lr_scaling", "log"], "lr_scaling='log'"),
    (["--schedule", "step"], "schedule='step'"),
    (["--precision", "fp16"], "precision='fp16'"),
    (["--d_neg", "1"], "d_neg=1.0 does not apply"),
    (["--loss", "dcl", "--tau_plus", "1"], "tau_plus=1.0"),
    (["--loss", "hcl", "--beta", "-1"], "beta=-1.0"),
    (["--loss", "attentionnce", "--published_hyperparameters", "imagenet"], "published_hyperparameters='imagenet'"),
    (["--published_hyperparameters", "cifar10"], "published_hyperparameters='cifar10' does not apply"),
    (["--workers", "3"], "batch_size=256 is not divisible by workers=3"),
    (["--workers", "0"], "workers=0"),
    (["--workers", "8"], "workers"),
    (["--gpu"], "GPU"),
    (["--cpus_per_worker", "64"], "CPU"),
    (["--cpus_per_worker", "0"], "cpus_per_worker=0"),
    (["--val_fraction", "1"], "val_fraction=1"),
    (["--val_fraction", "0"], "val_fraction=0"),
    (["--seed", "-1"], "seed=-1"),
    (["--seed", "4294967296"], "seed=4294967296"),
    (["--split_seed", "-3"], "split_seed=-3"),
    (["--data_mean", "0.5,0.5", "--data_std", "0.2,0.2,0.2"], "data_mean=[0.5, 0.5]"),
    (["--data-mean", "0.5,0.5,0.5", "--data-std", "0.2,0,0.2"], "data_std=[0.2, 0.0, 0.2]"),
    (["--data_mean", "0.5,nan,0.5", "--data_std", "0.2,0.2,0.2"], "data_mean=[0.5, nan, 0.5]"),
    (["--data_mean", "0.5,0.5,0.5"], "data_std=None"),
    (["--data_std", "red,green,blue"], "data_std='red,green,blue'"),
    (["--config", "{tmp}/stats.yaml"], "stats.yaml"),
    (["--jitter_strength", "3"], "jitter_strength=3"),
    (["--blur_prob", "2"], "blur_prob=2"),
    (["--momentum", "1"], "momentum=1"),
    (["--weight_decay", "-1"], "weight_decay=-1"),
    (["--schedule", "cosine", "--warmup_epochs", "400"], "warmup_epochs=400"),
    (["--knn_k", "0"], "knn_k=0"),
    (["--proj_dim", "0"], "proj_dim=0"),
    (["--limit_train", "0"], "limit_train=0"),
    (["--n_eval_epochs", "0"], "n_eval_epochs=0"),
    (["--run_name", "../../../x"], "run_name='../../../x'"),
    (["--run_name", "a'b"], 'run_name="a\'b"'),
    (["--run_name", "grüße"], "run_name='grüße'"),
    (["--run_name", "/abs/x"], "run_name='/abs/x'"),
    (["--run_name", ".."], "run_name='..'"),
    (["--run_name", "x" * 101], "run_name="),
    (["--experiment", ""], "experiment=''"),
    (["--experiment", "it's"], "experiment="),
    (["--save_dir", ""], "save_dir=''"),
    (["--data_dir", "a\0b"], "data_dir"),
    (["--resume", "../elsewhere/x"], "resume='../elsewhere/x'"),
    (["--resume", "never-ran"], "resume='never-ran'"),
    (["--config", "{tmp}/missing.yaml"], "missing.yaml"),
    (["--config", "{tmp}/bomb.yaml"], "bomb.yaml"),
    (["--config", "{tmp}/list.yaml"], "list.yaml"),
    (["--config", "{tmp}/typo.yaml"], "typo.yaml"),
    (["--config", "{tmp}/big.yaml"], "big.yaml"),
    (["--config", "{tmp}/latin1.yaml"], "latin1.yaml"),
    (["--config", "{tmp}/broken.yaml"], "broken.yaml"),
    (["--config", "{tmp}/object.yaml"], "object.yaml"),
    (["--config", "{tmp}/range.yaml"], "range.yaml"),
    (["--clr", "simclr", "--loss", "flatnce"], "--clr simclr"),
    (["--clr", "mocov3"], "--clr"),
    (["--dataset", "cifar10", "--data-dir", "{tmp}/nowhere"], "nowhere"),
    (["--no-such-flag"], "--no-such-flag"),
    (["--gpu", "maybe"], "maybe"),
    (["--max-failures", "-1"], "max_failures=-1"),
]
LINEAR_EVAL = [
    (["--model_path", "{tmp}/nowhere"], "model_path="),
    (["--model_path", "{tmp}/empty"], "model_path="),
    (["--checkpoint_dir", "{tmp}/empty"], "checkpoint_dir="),
    (["--checkpoint_dir", "{tmp}/nowhere"], "checkpoint_dir="),
    (["--model_path", "{tmp}/empty", "--mode", "svm"], "mode='svm'"),
    (["--model_path", "{tmp}/empty", "--recipe", "simclr"], "recipe='simclr'"),
    (["--model_path", "{tmp}/empty", "--lr", "inf"], "lr=inf"),
    (["--model_path", "{tmp}/empty", "--lr", "0"], "lr=0"),
    (["--model_path", "{tmp}/empty", "--lr", "nan"], "lr=nan"),
    (["--model_path", "{tmp}/empty", "--epochs", "0"], "epochs=0"),
    (["--model_path", "{tmp}/empty", "--epochs", "ten"], "epochs='ten'"),
    (["--model_path", "{tmp}/empty", "--batch_size", "0"], "batch_size=0"),
    (["--model_path", "{tmp}/empty", "--knn_k", "0"], "knn_k=0"),
    (["--model_path", "{tmp}/empty", "--knn_temperature", "0"], "knn_temperature=0"),
    (["--model_path", "{tmp}/empty", "--seed", "-1"], "seed=-1"),
    (["--model_path", "{tmp}/empty", "--data_dir", ""], "data_dir"),
    ([], "--model_path"),
    (["--model_path", "{tmp}/empty", "--checkpoint_dir", "{tmp}/empty"], "--checkpoint_dir"),
    (["--model_path", ""], "model_path"),
]
QUICK = ["--preset", "quickstart", "--dry-run"]
RUN_SWEEP = [
    (["--preset", "nope"], "preset='nope'"),
    (["--preset", "quickstrat"], "did you mean 'quickstart'"),
    ([*QUICK, "--set", "batchsize=64"], "did you mean 'batch_size'"),
    ([*QUICK, "--set", "jitter_strength=3"], "jitter_strength=3"),
    ([*QUICK, "--set", "batch_size=[1000000000]"], "batch_size=1000000000"),
    ([*QUICK, "--set", "views=100"], "views=100"),
    ([*QUICK, "--set", "seeds=100000000"], "seeds=100000000"),
    ([*QUICK, "--set", "seeds=true"], "seeds=True"),
    ([*QUICK, "--set", "seeds=0"], "seeds=0"),
    ([*QUICK, "--set", "seeds=[-1]"], "seeds=[-1]"),
    ([*QUICK, "--set", "seeds=[1, 1]"], "seeds=[1, 1]"),
    ([*QUICK, "--set", "seeds=abc"], "seeds='abc'"),
    ([*QUICK, "--set", "num_samples=abc"], "num_samples='abc'"),
    (["--preset", "tpe-lr", "--dry-run", "--set", "num_samples=0"], "num_samples=0"),
    (["--preset", "tpe-lr", "--dry-run", "--set", "num_samples=100000000"], "num_samples=100000000"),
    ([*QUICK, "--set", "scheduler=hyperband"], "scheduler='hyperband'"),
    ([*QUICK, "--set", "seed=3"], "--set seed"),
    ([*QUICK, "--set", "loss=[]"], "loss=[]"),
    ([*QUICK, "--set", "loss=[simclr]"], "loss='simclr'"),
    ([*QUICK, "--set", "eval.epochs=ten"], "epochs='ten'"),
    ([*QUICK, "--set", "eval.mode=svm"], "mode='svm'"),
    ([*QUICK, "--set", "eval.lrr=1"], "did you mean 'eval.lr'"),
    ([*QUICK, "--set", "eval.lr=.inf"], "lr=inf"),
    ([*QUICK, "--set", "lr=.inf"], "lr=inf"),
    ([*QUICK, "--set", "lr=.nan"], "lr=nan"),
    ([*QUICK, "--set", "epochs=-1"], "epochs=-1"),
    ([*QUICK, "--set", "data_mean=[0.5, 0.5]", "--set", "data_std=[1, 1, 1]"], "data_mean=[0.5, 0.5]"),
    ([*QUICK, "--set", "data_mean=[0.5, 0.5, 0.5]", "--set", "data_std=[1, -1, 1]"], "data_std=[1.0, -1.0, 1.0]"),
    ([*QUICK, "--set", "data_mean=[0.5, .inf, 0.5]", "--set", "data_std=[1, 1, 1]"], "data_mean=[0.5, inf, 0.5]"),
    ([*QUICK, "--set", "data_std=[1, 1, 1]"], "data_mean=None"),
    ([*QUICK, "--set", "data_mean=0.5", "--set", "data_std=[1, 1, 1]"], "data_mean=0.5 has type float"),
    ([*QUICK, "--set", "tags={a: ["], "tags"),
    ([*QUICK, "--set", "lr=" + BOMB.replace("\n", ", ").join("{}")], "lr"),
    ([*QUICK, "--set", "=3"], "'=3'"),
    ([*QUICK, "--set", "novalue"], "'novalue'"),
    ([*QUICK, "--set", "batch_size=[30]", "--set", "workers=4"], "batch_size=30 is not divisible by workers=4"),
    (["--preset", "quickstart", "--set", "workers=8"], "workers"),
    (["--preset", "quickstart", "--set", "gpu=true"], "GPU"),
    ([*QUICK, "--name", "../../x"], "name='../../x'"),
    ([*QUICK, "--name", "a'b"], 'name="a\'b"'),
    ([*QUICK, "--name", ""], "name=''"),
    ([*QUICK, "--experiment", "it's"], "experiment="),
    (["--resume", "../elsewhere/x", "--storage-path", "{tmp}/nce_runs"], "resume='../elsewhere/x'"),
    (["--resume", "never-ran", "--storage-path", "{tmp}/nce_runs"], "resume='never-ran'"),
    (["--resume", "listy", "--storage-path", "{tmp}/nce_runs"], "listy"),
    (["--resume", "nopreset", "--storage-path", "{tmp}/nce_runs"], "nopreset"),
    (["--resume", "garbled", "--storage-path", "{tmp}/nce_runs"], "garbled"),
    (["--resume", "link", "--storage-path", "{tmp}/nce_runs"], "resume='link'"),
    (["--resume", "badpreset", "--storage-path", "{tmp}/nce_runs"], "badpreset"),
    ([*QUICK, "--config", "{tmp}/bomb.yaml"], "bomb.yaml"),
    ([*QUICK, "--config", "{tmp}/typo.yaml"], "typo.yaml"),
    ([*QUICK, "--config", "{tmp}/list.yaml"], "list.yaml"),
    ([*QUICK, "--config", "{tmp}/range.yaml"], "range.yaml"),
    ([*QUICK, "--config", "{tmp}/missing.yaml"], "missing.yaml"),
    ([*QUICK, "--max-concurrent", "0"], "max_concurrent=0"),
    ([*QUICK, "--reduction-factor", "1"], "reduction_factor=1"),
    ([*QUICK, "--grace-period", "-1"], "grace_period=-1"),
    ([*QUICK, "--storage-path", ""], "storage_path"),
    (["--preset", "cifar10-cpu", "--dry-run", "--data-dir", "{tmp}/nowhere"], "nowhere"),
    (["--preset", "quickstart", "--resume", "x"], "--resume"),
    ([], "--preset"),
]
ANALYSIS = [
    ([], "COMMAND"),
    (["bogus"], "bogus"),
    (["tables"], "--study"),
    (["tables", "--study", "x", "--format", "pdf", "--tracking-uri", "{store}"], "--format"),
    (["tables", "--study", "x", "--eval", "svm", "--tracking-uri", "{store}"], "--eval"),
    (["tables", "--study", "x", "--metric", "bogus", "--tracking-uri", "{store}"], "--metric"),
    (["tables", "--study", "nope", "--tracking-uri", "{store}"], "'nope'"),
    (["tables", "--study", "it's", "--tracking-uri", "{store}"], "it's"),
    (["plots", "--study", "nope", "--tracking-uri", "{store}"], "--out"),
    (["report", "--study", "nope", "--out", "{tmp}/report", "--tracking-uri", "{store}"], "'nope'"),
    (["tables", "--study", "nope", "--tracking-uri", "sqlite:///{tmp}/missing.db"], "missing.db"),
    (["tables", "--study", "nope", "--tracking-uri", "http://127.0.0.1:9"], "127.0.0.1:9"),
]
CASES = [
    (command, args, named)
    for command, table in (("train", TRAIN), ("linear_eval", LINEAR_EVAL), ("run_sweep", RUN_SWEEP), ("analysis", ANALYSIS))
    for args, named in table
]


def test_the_suite_holds_at_least_100_bad_inputs_on_each_command_line() -> None:
    counts = {command: sum(c == command for c, _, _ in CASES) for command in COMMANDS}
    assert sum(counts.values()) >= 100 and all(n >= 10 for n in counts.values()), counts


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The bad files and folders the cases point at, and an empty MLflow store for analysis."""
    root = tmp_path_factory.mktemp("world")
    files = {
        "bomb.yaml": BOMB,
        "list.yaml": "- lr: 0.1\n",
        "typo.yaml": "loss: flatnce\nlearning_rate: 0.1\n",
        "big.yaml": "lr: 0.1\n" + "#" * (2 << 20) + "\n",
        "broken.yaml": "lr: [0.1\n",
        "object.yaml": "lr: !!python/object/apply:os.system [echo pwned]\n",
        "range.yaml": "views: 100\n",
        "stats.yaml": "data_mean: [0.5, 0.5, 0.5]\ndata_std: [0.2, 0.2]\n",
    }
    for name, text in files.items():
        (root / name).write_text(text, encoding="utf-8")
    (root / "latin1.yaml").write_bytes("lr: 0.1 # é\n".encode("latin-1"))
    (root / "empty").mkdir()
    storage = root / "nce_runs"
    for name, text in {
        "listy": "[1, 2]",
        "nopreset": '{"overrides": {}}',
        "garbled": "{not json",
        "badpreset": '{"preset": "gone", "overrides": {}, "mlflow_run_id": "x"}',
    }.items():
        (storage / name).mkdir(parents=True)
        (storage / name / "study.json").write_text(text)
    (root / "elsewhere" / "x").mkdir(parents=True)
    (root / "elsewhere" / "x" / "study.json").write_text('{"preset": "quickstart", "overrides": {}, "mlflow_run_id": "x"}')
    (storage / "link").symlink_to(root / "elsewhere" / "x")
    from mlflow.tracking import MlflowClient

    MlflowClient(f"sqlite:///{root / 'store.db'}").search_experiments()  # creates the empty store
    return root


def snapshot(root: Path) -> dict[str, float]:
    return {str(p): p.stat().st_mtime for p in root.rglob("*") if not p.is_symlink()}


@pytest.fixture
def no_start(monkeypatch: pytest.MonkeyPatch) -> None:
    """Starting Ray or creating an MLflow run fails the case: bad input must be refused before either."""
    import ray
    from mlflow.tracking import MlflowClient

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("bad input reached Ray or MLflow")

    monkeypatch.setattr(ray, "init", refuse)
    monkeypatch.setattr(MlflowClient, "create_run", refuse)
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    monkeypatch.delenv("RAY_ADDRESS", raising=False)


def run(command: str, args: list[str]) -> tuple[int, str]:
    """(exit status, stdout + stderr) of ``command``'s main, as the shell would see them."""
    out = io.StringIO()
    with contextlib.redirect_stderr(out), contextlib.redirect_stdout(out):
        try:
            code = COMMANDS[command](args)
        except SystemExit as exit:  # argparse refuses a flag by exiting
            code = exit.code if isinstance(exit.code, int) else 1
    return code, out.getvalue()


@pytest.mark.parametrize(("command", "args", "named"), CASES, ids=[f"{c}:{' '.join(a)[:60]}" for c, a, _ in CASES])
def test_bad_input_is_refused_naming_it_before_anything_starts(
    command: str, args: list[str], named: str, world: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, no_start: None
) -> None:
    monkeypatch.chdir(tmp_path)
    argv = [a.replace("{tmp}", str(world)).replace("{store}", f"sqlite:///{world / 'store.db'}") for a in args]
    before = snapshot(world)
    code, output = run(command, argv)
    assert code == 2, (argv, output[-2000:])
    assert "Traceback" not in output, output[-2000:]
    assert named.replace("{tmp}", str(world)) in output, (argv, output[-2000:])
    assert len(output) < 20_000  # a bounded message, whatever the input
    assert list(tmp_path.iterdir()) == [], "a refused command wrote into its working folder"
    assert snapshot(world) == before, "a refused command wrote beside its inputs"
    assert not (world / "elsewhere" / "x" / "checkpoints").exists() and not Path(os.path.commonpath([world, tmp_path]), "x").exists()
