"""Ray's wheel without the parts a study never loads, so that an offline wheelhouse travels light.

    python tools/trim_ray_wheel.py ray-2.60.0-cp311-cp311-manylinux2014_x86_64.whl --out wheelhouse/

Ray's wheel (79 MB) carries the Java workers' jars (32 MB), RLlib, Serve and Ray LLM. A study
runs Ray Core, Tune, Train (which imports Ray Data) and the dashboard (whose State API cleans up
stopped trials' placement groups, and whose job API runs ``ray job submit``); none of them
imports the dropped parts. What a study imports was measured, not assumed: docs/cluster.md (section 11) says
how, and a study runs from the trimmed wheel in a fresh environment there.

The repacked wheel is version ``2.60.0+trim``: a local version label, so ``ray==2.60.0`` pins and
the project's ``ray>=2.60,<2.61`` still accept it, while ``pip show ray`` says it is not the
original. ``ray.__version__`` stays 2.60.0, so it joins clusters of untrimmed nodes.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import re
import sys
import zipfile
from pathlib import Path

# Top-level parts of the ray package that no study process imports (Java jars, RLlib, Serve, LLM).
DROPPED = ("ray/jars/", "ray/rllib/", "ray/serve/", "ray/llm/")
LOCAL_LABEL = "trim"


def dropped_target(entry_point: bytes) -> bool:
    """Whether a console-script line (``name = module:function``) points into a dropped part."""
    target = entry_point.partition(b"=")[2].strip().decode()
    return any(target.startswith(part.rstrip("/").replace("/", ".") + ".") for part in DROPPED)


def record_line(name: str, data: bytes) -> str:
    digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()
    return f"{name},sha256={digest},{len(data)}"


def trimmed_name(wheel: Path) -> tuple[str, str, str]:
    """(new file name, old dist-info dir, new dist-info dir) for a ``ray-VERSION-tags.whl``."""
    match = re.fullmatch(r"ray-([^-]+)-(.+)\.whl", wheel.name)
    if match is None or "+" in match.group(1):
        raise SystemExit(f"wheel={wheel.name!r} is not an untrimmed ray wheel (ray-VERSION-TAGS.whl)")
    version = match.group(1)
    return f"ray-{version}+{LOCAL_LABEL}-{match.group(2)}.whl", f"ray-{version}.dist-info/", f"ray-{version}+{LOCAL_LABEL}.dist-info/"


def trim(wheel: Path, out_dir: Path) -> Path:
    """Write the trimmed wheel into ``out_dir`` (atomically) and return its path."""
    new_name, old_info, new_info = trimmed_name(wheel)
    target = out_dir / new_name
    partial = out_dir / f".{new_name}.partial"
    records = []
    with zipfile.ZipFile(wheel) as src, zipfile.ZipFile(partial, "w", zipfile.ZIP_DEFLATED, compresslevel=9) as dst:
        for info in src.infolist():
            if info.filename.startswith(DROPPED) or info.filename == f"{old_info}RECORD":
                continue
            data = src.read(info)
            name = new_info + info.filename[len(old_info) :] if info.filename.startswith(old_info) else info.filename
            if name == f"{new_info}METADATA":
                data = re.sub(
                    rb"^Version: (.+)$", lambda m: b"Version: " + m.group(1) + f"+{LOCAL_LABEL}".encode(), data, count=1, flags=re.M
                )
            if name == f"{new_info}entry_points.txt":  # no `serve` command pointing at a dropped package
                data = b"".join(line for line in data.splitlines(keepends=True) if not dropped_target(line))
            copy = zipfile.ZipInfo(name, info.date_time)
            copy.external_attr, copy.compress_type = info.external_attr, zipfile.ZIP_DEFLATED  # keeps the binaries executable
            dst.writestr(copy, data, compresslevel=9)
            records.append(record_line(name, data))
        records.append(f"{new_info}RECORD,,")
        dst.writestr(zipfile.ZipInfo(f"{new_info}RECORD", (2020, 1, 1, 0, 0, 0)), "\n".join(records) + "\n")
    partial.replace(target)
    return target


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("wheel", type=Path)
    parser.add_argument("--out", type=Path, required=True, help="folder for the trimmed wheel")
    args = parser.parse_args(argv)
    args.out.mkdir(parents=True, exist_ok=True)
    target = trim(args.wheel, args.out)
    print(f"{target}: {target.stat().st_size / 2**20:.1f} MiB (from {args.wheel.stat().st_size / 2**20:.1f} MiB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
