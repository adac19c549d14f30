"""Install the wheelhouse offline into a fresh environment that has only the image's packages, and run a study.

    python -m tools.offline_check --wheelhouse wheelhouse/        # make offline-check

The "image" is simulated: a fresh venv whose site-packages reaches this environment's copies of
the image's packages (and what they require) through a .pth file, so pip sees them installed
and torch is not copied. Then ``pip install --no-index --find-links=WHEELHOUSE -r
WHEELHOUSE/requirements.txt``, the docs' one line, and a two-trial study with two Ray Train workers
per trial (Ray Core, Tune, Train, the dashboard, MLflow and Optuna's journal all load) from a
folder outside the repository (``python -m study.run_sweep``), so the installed project runs, not the checkout. Every Python
process of the run lists the modules it imported (an audit hook), and the report says which of
Ray's parts were loaded: the dropped parts of tools/trim_ray_wheel.py must not be among them.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from tools.trim_ray_wheel import DROPPED

# tools.wheelhouse (and packaging) are imported where they are used: benchmarks/gpu_study.py
# calls install_offline on a machine that has torch and little else.

AUDIT_HOOK = '''
import os, sys
_seen, _file = set(), None
def _record(event, args):
    global _file
    if event != "import":
        return
    name = ".".join(args[0].split(".")[:2])
    if name in _seen or not name.startswith(("ray", "mlflow", "optuna")):
        return
    _seen.add(name)
    if _file is None:
        _file = open(os.path.join(os.environ["NCE_IMPORT_LOG"], f"{os.getpid()}.txt"), "a", buffering=1)
    _file.write(name + "\\n")
sys.addaudithook(_record)
'''


def image_site(image_has: list[str], folder: Path) -> None:
    """Links to this environment's files of the image's packages (and their requirements), dist-info included."""
    import importlib.metadata as md

    from packaging.requirements import Requirement

    from tools.wheelhouse import closure

    folder.mkdir(parents=True)
    for name in sorted(closure([Requirement(n) for n in image_has])):
        dist = md.distribution(name)
        root = Path(dist.locate_file(""))
        for top in sorted({Path(f).parts[0] for f in dist.files or [] if not Path(f).parts[0].startswith("..")}):
            if (root / top).exists() and not (folder / top).exists() and top != "bin":
                (folder / top).symlink_to(root / top)


def install_offline(python: Path, wheelhouse: Path, env: dict[str, str] | None = None) -> None:
    """The docs' one line: the wheelhouse's requirements.txt into ``python``'s environment, from its wheels alone."""
    requirements = str(wheelhouse / "requirements.txt")
    command = [str(python), "-m", "pip", "install", "--quiet", "--no-index", f"--find-links={wheelhouse}", "-r", requirements]
    subprocess.run(command, check=True, env=env)


def main(argv: list[str] | None = None) -> int:
    from tools.wheelhouse import IMAGE_DEFAULT, REPO

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--wheelhouse", type=Path, default=REPO / "wheelhouse")
    parser.add_argument("--image-has", nargs="+", default=list(IMAGE_DEFAULT), metavar="PACKAGE")
    args = parser.parse_args(argv)
    work = Path(tempfile.mkdtemp(prefix="nce-offline-"))
    try:
        venv = work / "venv"
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        site = next((venv / "lib").glob("python3*/site-packages"))
        image_site(args.image_has, work / "image")
        (site / "image.pth").write_text(str(work / "image") + "\n")
        python = venv / "bin" / "python"
        # No pip configuration of this machine (an index or find-links there would not be offline),
        # no PYTHONPATH (a checkout's nce_study.egg-info there reads as the project installed), and
        # the image's setuptools (torch requires it), not the older one venv bundles.
        quiet = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"} | {"PIP_CONFIG_FILE": os.devnull}
        subprocess.run([str(python), "-m", "pip", "uninstall", "--quiet", "--yes", "setuptools"], check=True, env=quiet)
        wheelhouse = args.wheelhouse.resolve()
        started = time.monotonic()
        install_offline(python, wheelhouse, quiet)
        print(f"offline install: {time.monotonic() - started:.0f} s")
        logs, run_dir = work / "imports", work / "run"
        logs.mkdir(), run_dir.mkdir()
        (work / "hook").mkdir()
        (work / "hook" / "sitecustomize.py").write_text(AUDIT_HOOK)
        env = {
            "PATH": f"{venv / 'bin'}:/usr/bin:/bin",
            "HOME": str(work),
            "PYTHONPATH": str(work / "hook"),
            "NCE_IMPORT_LOG": str(logs),
            "RAY_TMPDIR": str(work / "ray"),
            "RAY_USAGE_STATS_ENABLED": "0",
        }
        # Two trials of two Ray Train workers each, one after the other, on 256 digits images evaluated by kNN.
        settings = ["loss=[infonce,flatnce]", "batch_size=[64]", "workers=2", "cpus_per_worker=0.5", "epochs=2"]
        settings += ["seeds=1", "limit_train=256", "knn_k=10", "eval.mode=knn"]
        study = [str(python), "-m", "study.run_sweep", "--preset", "quickstart", "--name", "offline", "--max-concurrent", "1"]
        study += [f"--set={setting}" for setting in settings]
        started = time.monotonic()
        done = subprocess.run(study, cwd=run_dir, env=env, capture_output=True, text=True)
        print(f"study: rc {done.returncode} in {time.monotonic() - started:.0f} s")
        if done.returncode != 0:
            print(done.stdout[-3000:], done.stderr[-5000:], sep="\n")
            return 1
        loaded = sorted({line for f in logs.glob("*.txt") for line in f.read_text().split()})
        ray_parts = sorted({m for m in loaded if m.startswith("ray.")})
        print(f"{len(list(logs.glob('*.txt')))} processes imported these parts of ray: {' '.join(ray_parts)}")
        dropped = [m for m in ray_parts if any(m == part.rstrip("/").replace("/", ".") for part in DROPPED)]
        print("dropped parts imported: " + (", ".join(dropped) if dropped else "none"))
        return 1 if dropped else 0
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
