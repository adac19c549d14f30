"""What ``make demo`` runs: the quickstart study, then learned features against random ones.

    python study/demo.py

Runs ``study/run_sweep.py --preset quickstart`` (offline, on the bundled digits), which prints
the study's table and report, then prints the validation kNN accuracy of the trained
encoders beside that of randomly initialised encoders of the same architecture, measured
the same way (same split, k and temperature), so the learning is visible in one line.
"""

from __future__ import annotations

import statistics
import sys
import time

import torch
from mlflow.tracking import MlflowClient

from search_spaces import PRESETS
from study import run_sweep
from trainables import run_schema as rs
from trainables.components import build_components, validation_knn
from trainables.config import from_dict
from trainables.mlflow_search import search_runs
from trainables.tracking import resolve_tracking_uri

RANDOM_SEEDS = (0, 1, 2)


@torch.no_grad()
def random_init_knn(seed: int) -> float:
    """Validation kNN accuracy of an untrained encoder, configured as the quickstart trials."""
    cfg = from_dict(PRESETS["quickstart"].fixed | {"seed": seed})
    return validation_knn(build_components(cfg), cfg, torch.device("cpu"))


def learned_knn(study: str) -> list[float]:
    """Final validation kNN accuracy of every completed trial of the study."""
    client = MlflowClient(resolve_tracking_uri(None))
    found = search_runs(client, {rs.STUDY: study, rs.KIND: rs.KIND_PRETRAIN, rs.STATUS: rs.STATUS_COMPLETED})
    return [r.data.metrics[rs.M_FINAL_VAL_KNN] for r in found]


def main() -> int:
    study = f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    code = run_sweep.main(["--preset", "quickstart", "--name", study])
    if code != 0:
        return code
    learned, random = learned_knn(study), [random_init_knn(s) for s in RANDOM_SEEDS]
    print(
        f"\nvalidation kNN accuracy on digits (k={from_dict(PRESETS['quickstart'].fixed).knn_k}):"
        f"\n  learned encoders ({len(learned)} trials): mean {statistics.mean(learned):.3f}, range {min(learned):.3f}-{max(learned):.3f}"
        f"\n  randomly initialised encoders ({len(random)} seeds): mean {statistics.mean(random):.3f}, range {min(random):.3f}-{max(random):.3f}"
        f"\ndemo finished in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
