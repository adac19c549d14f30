"""The GPU path through the whole stack, against the standalone step, in one call.

    python benchmarks/gpu_study.py --data-dir shared/data/cifar10 --wheelhouse wheelhouse
    python benchmarks/gpu_study.py --smoke                  # the same steps on the CPU, on digits

On a GPU machine with torch and torchvision but none of the rest, --wheelhouse first installs the
project offline (docs/cluster.md, section 11) into .gpu/venv, which sees the machine's own torch
(--system-site-packages), and goes on in that environment. Then, in order:

standalone   benchmarks/gpu_pretrain.py: SimCLR ResNet-18 on CIFAR-10, batch 512, bf16,
             channels_last, GPU-resident data and augmentation; once eager, once compiled.
shared       study/run_sweep.py (Ray Tune + Ray Train with CUDA + MLflow on a local SQLite store):
             infonce and flatnce at batch 512, one Train worker each at --gpu-share of the GPU,
             both at once on the one GPU, bf16 (channels_last is the model's layout on CUDA).
compiled     the same, infonce alone with compile=true and the whole GPU.

Throughput is images/s: gpu_pretrain.py's own figure, and through the stack each epoch's
images_per_s from MLflow with the first epoch left out (it holds the compilation and the
warm-up); s/epoch is 50,000 images over it. Reported: the compiled trial against the compiled
standalone step (goal >= 0.95 of its throughput), the two sharing trials' summed throughput
against the eager standalone step, and the standalone eager epoch (goal on an H200: <= 1.5 s).
One RESULTS.md line and benchmarks/results/gpu_study-<device>.json.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
VENV = REPO / ".gpu" / "venv"
CIFAR10_TRAIN = 50_000  # images per epoch in the s/epoch figures, as gpu_pretrain.py counts them


def offline_install(wheelhouse: Path) -> Path:
    """.gpu/venv with the wheelhouse installed (--no-index) over the machine's own torch; its python."""
    from tools.offline_check import install_offline

    python = VENV / "bin" / "python"
    if not python.exists():
        subprocess.run([sys.executable, "-m", "venv", "--system-site-packages", str(VENV)], check=True)
    install_offline(python, wheelhouse)
    return python


def standalone(args: argparse.Namespace, compiled: bool) -> float:
    """Images/s of benchmarks/gpu_pretrain.py (infonce, our GPU pipeline only), as it prints it."""
    command = [
        sys.executable,
        str(REPO / "benchmarks" / "gpu_pretrain.py"),
        "--data-dir",
        str(args.data_dir),
        "--losses",
        "infonce",
        "--no-baseline",
        "--batch",
        str(args.batch),
        "--epochs",
        str(args.epochs),
    ] + (["--compile"] if compiled else [])
    if args.smoke:
        command += ["--device", "cpu", "--limit", "512", "--epochs", "1", "--profile-steps", "0", "--no-record"]
    done = subprocess.run(command, check=True, cwd=REPO, capture_output=True, text=True)
    print(done.stdout, end="")
    found = re.search(r"^ours\s+infonce\s.*?([0-9,.]+) images/s", done.stdout, re.M)
    if found is None:
        raise RuntimeError(f"no 'ours infonce ... images/s' line in gpu_pretrain's output:\n{done.stdout[-2000:]}")
    return float(found.group(1).replace(",", ""))


def study(args: argparse.Namespace, work: Path, name: str, sets: list[str]) -> list[dict[str, Any]]:
    """Run one study through run_sweep.py; per trial its loss and steady-state s/epoch."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import search_runs
    from trainables.spec import run_schema as rs

    data = (
        ["dataset=digits", "backbone=small", "gpu=false", "limit_train=512"]
        if args.smoke
        else [f"data_dir={args.data_dir}", "gpu=true", "precision=bf16"]
    )
    overrides = [
        f"--set={s}"
        for s in [
            "seeds=1",
            "batch_size=[%d]" % args.batch,
            "workers=1",
            f"epochs={args.epochs + 1}",
            "eval.mode=knn",
            f"n_eval_epochs={args.epochs + 1}",
            *data,
            *sets,
        ]
    ]
    uri = f"sqlite:///{work / 'mlflow.db'}"
    command = [
        sys.executable,
        str(REPO / "study" / "run_sweep.py"),
        "--preset",
        "flatnce-batch-size",
        "--name",
        name,
        *overrides,
        "--storage-path",
        str(work / "storage"),
        "--tracking-uri",
        uri,
    ]
    subprocess.run(command, check=True, cwd=work, env=os.environ | {"PYTHONPATH": str(REPO)})
    client = MlflowClient(uri)
    trials = []
    for run in search_runs(client, {rs.STUDY: name, rs.KIND: rs.KIND_PRETRAIN}):
        rates = [v for _, v in sorted((m.step, m.value) for m in client.get_metric_history(run.info.run_id, rs.M_IMAGES_PER_S))[1:]]
        trials.append({"loss": run.data.params[rs.P_LOSS], "images_per_s_by_epoch": rates, "images_per_s": sum(rates) / len(rates)})
    return trials


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, default=REPO.parent / "shared" / "data" / "cifar10")
    parser.add_argument("--wheelhouse", type=Path, help="install this wheelhouse offline into .gpu/venv first")
    parser.add_argument("--batch", type=int, default=512)
    parser.add_argument("--epochs", type=int, default=3, help="timed epochs (the study runs one more, its first)")
    parser.add_argument("--gpu-share", type=float, default=0.5, help="gpus_per_worker of each sharing trial (default 0.5)")
    parser.add_argument("--smoke", action="store_true", help="CPU, digits, small backbone: checks the steps, measures nothing")
    args = parser.parse_args(argv)
    if args.wheelhouse and Path(sys.executable).resolve() != (VENV / "bin" / "python").resolve():
        python = offline_install(args.wheelhouse.resolve())
        rest = [a for a in (argv if argv is not None else sys.argv[1:])]
        i = rest.index("--wheelhouse")
        return subprocess.run([str(python), __file__, *rest[:i], *rest[i + 2 :]], check=False).returncode

    from benchmarks.common import record, report_header

    device = "cpu" if args.smoke else "cuda"
    report = report_header("gpu_study", __file__, argv, device=device, packages=("torch", "torchvision", "ray", "mlflow", "optuna"))
    eager = standalone(args, False)
    # On the CPU (--smoke) inductor would spend minutes compiling ResNet-18; the study's compiled trial still compiles.
    report["standalone_images_per_s"] = {"eager": eager, "compiled": eager if args.smoke else standalone(args, True)}
    with tempfile.TemporaryDirectory(prefix="nce-gpu-study-") as tmp:
        work = Path(tmp)
        report["shared"] = study(args, work, "gpu-shared", ["loss=[infonce,flatnce]", f"gpus_per_worker={args.gpu_share}", "compile=false"])
        report["compiled"] = study(args, work, "gpu-compiled", ["loss=[infonce]", "gpus_per_worker=1", "compile=true"])
    eager, compiled = report["standalone_images_per_s"]["eager"], report["standalone_images_per_s"]["compiled"]
    solo, shared = report["compiled"][0]["images_per_s"], sum(t["images_per_s"] for t in report["shared"])
    report["ratios"] = {"compiled_stack_vs_standalone": solo / compiled, "shared_total_vs_standalone_eager": shared / eager}
    print(json.dumps({k: report[k] for k in ("standalone_images_per_s", "ratios")}, indent=2))
    if args.smoke:
        return 0
    (REPO / "benchmarks" / "results").mkdir(exist_ok=True)
    epoch = lambda rate: CIFAR10_TRAIN / rate  # noqa: E731 - s per 50,000-image epoch
    result = (
        f"standalone {epoch(eager):.2f} s/epoch eager, {epoch(compiled):.2f} compiled; "
        f"through the stack compiled {epoch(solo):.2f} s/epoch "
        f"({report['ratios']['compiled_stack_vs_standalone']:.2f} of standalone throughput); two trials at {args.gpu_share} GPU together "
        f"{report['ratios']['shared_total_vs_standalone_eager']:.2f} of standalone eager throughput"
    )
    record(f"gpu_study-{device}", report, f"ResNet-18 CIFAR-10 batch {args.batch}, bf16, channels_last, {args.epochs} timed epochs", result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
