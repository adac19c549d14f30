"""A wheelhouse for air-gapped nodes: the locked wheels of what the project needs beyond an image.

    python -m tools.wheelhouse                                   # -> wheelhouse/ (make wheelhouse)
    python -m tools.wheelhouse --image-has torch torchvision numpy --out /mnt/shared/wheelhouse
    pip install --no-index --find-links=wheelhouse -r wheelhouse/requirements.txt   # on the node

The image's packages are given by name (default: torch, torchvision, numpy, pandas, pyarrow);
everything they require counts as present too. The rest of the project's dependency closure
(``[project.dependencies]``, Ray's extras included, not the test extra) is taken at the versions
in requirements.lock, as wheels (built here where the registry has only a source archive), and
Ray's wheel is swapped for the trimmed one of tools/trim_ray_wheel.py. The project itself goes
in as a wheel too, so the one install line above installs everything.

The closure is read from the installed packages' metadata, so run this with the environment
the lock was frozen from (``make install``); a package missing from the lock stops it, naming it.
"""

from __future__ import annotations

import argparse
import importlib.metadata as md
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import tomllib
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

REPO = Path(__file__).resolve().parents[1]
LOCK = REPO / "requirements.lock"
IMAGE_DEFAULT = ("torch", "torchvision", "numpy", "pandas", "pyarrow")
# The parts the 64 MiB travel budget is about: the cluster runtime, the tracking client and server, the search.
CORE = ("ray", "mlflow", "mlflow-skinny", "mlflow-tracing", "optuna")


def read_lock(path: Path) -> dict[str, str]:
    """Canonical name -> exact version, from ``name==version`` lines."""
    pins = {}
    for line in path.read_text().splitlines():
        line = line.split("#", 1)[0].strip()
        if line:
            name, sep, version = line.partition("==")
            if not sep:
                raise SystemExit(f"{path}: {line!r} is not name==version (regenerate it with `make lock`)")
            pins[canonicalize_name(name)] = version.strip()
    return pins


def closure(roots: list[Requirement]) -> set[str]:
    """Canonical names of ``roots`` and all they require (with the extras asked for), as installed here."""
    seen: set[str] = set()
    todo = [(r, frozenset(r.extras)) for r in roots]
    done_extras: dict[str, set[frozenset[str]]] = {}
    while todo:
        req, extras = todo.pop()
        name = canonicalize_name(req.name)
        if extras in done_extras.setdefault(name, set()):
            continue
        done_extras[name].add(extras)
        seen.add(name)
        try:
            requires = md.distribution(req.name).requires or []
        except md.PackageNotFoundError:
            raise SystemExit(
                f"{req.name} is required but not installed here; run this from the project's environment (make install)"
            ) from None
        for text in requires:
            sub = Requirement(text)
            if sub.marker is None or any(sub.marker.evaluate({"extra": e}) for e in (extras or {""})):
                todo.append((sub, frozenset(sub.extras)))
    return seen


def project_requirements() -> list[Requirement]:
    return [Requirement(r) for r in tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["dependencies"]]


def needed(image_has: list[str], pins: dict[str, str]) -> dict[str, str]:
    """Name -> locked version of what the project needs that the image does not bring."""
    present = closure([Requirement(n) for n in image_has])
    wanted = sorted(closure(project_requirements()) - present)
    missing = [n for n in wanted if n not in pins]
    if missing:
        raise SystemExit(f"requirements.lock has no pin for {', '.join(missing)}; regenerate it with `make lock`")
    return {n: pins[n] for n in wanted}


def pip(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "pip", *args], check=True)


def build(out: Path, image_has: list[str]) -> dict[str, str]:
    """Fill ``out`` (replaced whole, so no stale wheel survives) and write its requirements.txt."""
    from tools.trim_ray_wheel import trim

    versions = needed(image_has, read_lock(LOCK))
    staging = Path(tempfile.mkdtemp(prefix=".wheelhouse-", dir=out.parent))
    try:
        reqs = staging / "locked.txt"
        reqs.write_text("".join(f"{n}=={v}\n" for n, v in versions.items()))
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(staging), "-r", str(reqs))
        pip("wheel", "--quiet", "--no-deps", "--wheel-dir", str(staging), str(REPO))
        for full in staging.glob("ray-*.whl"):
            trim(full, staging)
            full.unlink()
        reqs.unlink()
        project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]["version"]
        (staging / "requirements.txt").write_text("".join(f"{n}=={v}\n" for n, v in versions.items()) + f"nce-study=={project}\n")
        shutil.rmtree(out, ignore_errors=True)
        staging.replace(out)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return versions


def sizes(out: Path) -> dict[str, int]:
    """Wheel file name -> bytes, largest first."""
    return dict(sorted(((p.name, p.stat().st_size) for p in out.glob("*.whl")), key=lambda kv: -kv[1]))


def summary(wheels: dict[str, int]) -> str:
    total = sum(wheels.values())
    core = sum(size for name, size in wheels.items() if canonicalize_name(name.split("-")[0]) in CORE)
    return f"{len(wheels)} wheels, {total / 2**20:.1f} MiB in all; Ray + MLflow + Optuna: {core / 2**20:.1f} MiB"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--image-has", nargs="+", default=list(IMAGE_DEFAULT), metavar="PACKAGE", help="packages the target image already has"
    )
    parser.add_argument("--out", type=Path, default=REPO / "wheelhouse", help="wheelhouse folder, replaced whole (default: wheelhouse/)")
    args = parser.parse_args(argv)
    build(args.out.resolve(), args.image_has)
    wheels = sizes(args.out)
    for name, size in list(wheels.items())[:15]:
        print(f"{size / 2**20:7.2f} MiB  {name}")
    print(summary(wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
