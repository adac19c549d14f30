"""The wheelhouse's size: what `make wheelhouse` puts on an air-gapped node, by wheel.

    python benchmarks/wheelhouse_size.py [--out DIR] [--image-has PACKAGE ...]

Builds the wheelhouse with ``tools.wheelhouse`` (the same build `make wheelhouse` runs) and records
the sizes in ``RESULTS.md`` (``results/wheelhouse.json``).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, like every benchmark

from benchmarks.common import record, report_header  # noqa: E402
from tools.wheelhouse import IMAGE_DEFAULT, REPO, build, sizes, summary  # noqa: E402


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--image-has", nargs="+", default=list(IMAGE_DEFAULT), metavar="PACKAGE", help="packages the target image already has")
    parser.add_argument("--out", type=Path, default=REPO / "wheelhouse", help="wheelhouse folder, replaced whole (default: wheelhouse/)")
    args = parser.parse_args(argv)
    build(args.out.resolve(), args.image_has)
    wheels = sizes(args.out)
    command = "python benchmarks/wheelhouse_size.py " + " ".join(sys.argv[1:] if argv is None else argv)
    report = report_header("wheelhouse", __file__, argv, packages=("pip",)) | {"command": command, "image_has": args.image_has, "wheels": wheels}
    largest = ", ".join(f"{name.split('-')[0]} {size / 2**20:.1f}" for name, size in list(wheels.items())[:5])
    record("wheelhouse", report, f"`{command}`; image has {' '.join(args.image_has)}; requirements.lock", f"{summary(wheels)}; largest (MiB): {largest}")
    print(summary(wheels))
    return 0


if __name__ == "__main__":
    sys.exit(main())
