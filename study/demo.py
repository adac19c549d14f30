"""What ``make demo`` runs: the quickstart study, then learned features against random ones.

    python study/demo.py

Runs ``study/run_sweep.py --preset quickstart`` (offline, on the bundled digits), which prints
the study's table and report, then prints the validation kNN accuracy of the trained encoders
beside that of the study's random-init baseline runs (``trainables/run/baseline.py``: the untrained
encoders its trials start from, measured the same way), so the learning is visible in one line.
"""

from __future__ import annotations

import statistics
import sys
import time

from mlflow.tracking import MlflowClient

from search_spaces import PRESETS
from study import run_sweep
from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import resolve_tracking_uri
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import from_dict

# The runs whose final validation kNN accuracy is compared: the trials, and the baselines of their seeds.
COMPARED = {
    "learned encoders": {rs.KIND: rs.KIND_PRETRAIN, rs.STATUS: rs.STATUS_COMPLETED},
    "randomly initialised encoders": {rs.KIND: rs.KIND_BASELINE, rs.BASELINE: rs.BASELINE_RANDOM_INIT},
}


def final_knn(study: str, tags: dict[str, str]) -> list[float]:
    """Final validation kNN accuracy of the study's runs with ``tags`` (those that recorded it)."""
    client = MlflowClient(resolve_tracking_uri(None))
    found = search_runs(client, {rs.STUDY: study} | tags)
    return [r.data.metrics[rs.M_FINAL_VAL_KNN] for r in found if rs.M_FINAL_VAL_KNN in r.data.metrics]


def summary(what: str, values: list[float]) -> str:
    if not values:
        return f"\n  {what}: none recorded"
    return f"\n  {what} ({len(values)} runs): mean {statistics.mean(values):.3f}, range {min(values):.3f}-{max(values):.3f}"


def main() -> int:
    study = f"quickstart-{time.strftime('%Y%m%d-%H%M%S')}"
    started = time.perf_counter()
    code = run_sweep.main(["--preset", "quickstart", "--name", study])
    if code != 0:
        return code
    print(
        f"\nvalidation kNN accuracy on digits (k={from_dict(PRESETS['quickstart'].fixed).knn_k}):"
        + "".join(summary(what, final_knn(study, tags)) for what, tags in COMPARED.items())
        + f"\ndemo finished in {time.perf_counter() - started:.0f} s"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
