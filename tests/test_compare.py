"""Studies side by side (python -m analysis compare), pooled replicates, and two trials image by image (mcnemar)."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pytest
import torch
from mlflow import MlflowClient
from mlflow_fixtures import (  # tests/ helpers, via conftest
    make_synthetic_study,
    synthetic_baseline,
    synthetic_trial,
)

from analysis import compare as cmp
from analysis.__main__ import main
from analysis.claims import evaluate_claims
from analysis.mcnemar import Predictions, bootstrap_interval, mcnemar
from search_spaces import PRESETS
from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import create_run
from trainables.run.baseline import random_init_baseline
from trainables.run.evaluation import EvalConfig
from trainables.spec import run_schema as rs
from trainables.spec.claims import CLAIMS_ARTIFACT, claims_json
from trainables.spec.pretrain_config import from_dict

CLAIMS = PRESETS["cifar10-cpu"].claims


def write_study(uri: str, name: str, seeds: range, flat_gap: float, lr: float = 0.3, preset: str = "cifar10-cpu") -> str:
    """FlatNCE − InfoNCE of ``flat_gap`` at both batch sizes, with a seed-to-seed wobble of a tenth of a point."""
    specs = [
        synthetic_trial(loss, batch, seed, lr=lr, test_acc=0.60 + gap + 0.002 * seed + 0.001 * math.sin(3 * seed + batch + 2 * (loss == "flatnce")))
        for loss, gap in (("infonce", 0.0), ("flatnce", flat_gap))
        for batch in (32, 256)
        for seed in seeds
    ]
    run_id = make_synthetic_study(uri, name, specs, preset=preset, baselines=[synthetic_baseline(s, test_acc=0.3) for s in seeds])
    MlflowClient(uri).log_text(run_id, claims_json(CLAIMS), CLAIMS_ARTIFACT)
    return run_id


@pytest.fixture()
def uri(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'mlflow.db'}"


def test_replicates_on_disjoint_seeds_are_pooled_as_one_study(uri: str, tmp_path: Path) -> None:
    write_study(uri, "first", range(0, 3), 0.01)
    write_study(uri, "second", range(3, 6), 0.01)
    studies = cmp.load_studies(["first", "second"], [uri, uri])
    result = cmp.compare(studies)
    assert result.pooled and result.names == ("first", "second", cmp.POOLED) and not result.disagreements
    # The pooled column is the claims judged on the concatenated per-seed data, with its 6 seeds.
    together = cmp.pooled(studies)
    assert sorted(together.trials[rs.P_SEED].unique()) == list(range(6))
    expected = evaluate_claims(CLAIMS, together.trials, together.baselines)
    assert [row[3] for row in result.claims.rows] == [cmp._claim_cell(item) for item in expected]
    assert expected[0].tests[0].n == 6
    code = main(["compare", "first", "second", "--tracking-uri", uri, "--out", str(tmp_path / "cmp")])
    assert code == 0
    assert {p.name for p in (tmp_path / "cmp").iterdir()} == {"compare.md", "compare.csv", "compare.html"}
    markdown = (tmp_path / "cmp" / "compare.md").read_text()
    assert "| claim | first | second | pooled |" in markdown and "## Accuracy vs batch size" in markdown


def test_studies_in_separate_stores_are_compared_through_store(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    """A replicate run into its own store is read from there: --store NAME=URI, the others from --tracking-uri."""
    first, second = (f"sqlite:///{tmp_path / name}.db" for name in ("first", "second"))
    write_study(first, "first", range(0, 3), 0.01)
    write_study(second, "second", range(3, 6), 0.01)
    assert main(["compare", "first", "second", "--tracking-uri", first, "--store", f"second={second}"]) == 0
    assert "| claim | first | second | pooled |" in capsys.readouterr().out
    assert main(["compare", "first", "second", "--tracking-uri", first]) == 2  # second is not in first's store
    assert "second" in capsys.readouterr().err
    assert main(["compare", "first", "second", "--tracking-uri", first, "--store", f"third={second}"]) == 2
    assert "'third' is not among the studies compared" in capsys.readouterr().err


def test_opposite_verdicts_are_flagged_first(uri: str) -> None:
    write_study(uri, "up", range(0, 4), 0.02)
    write_study(uri, "down", range(4, 8), -0.02)
    result = cmp.compare(cmp.load_studies(["up", "down"], [uri, uri]), pool=False)
    text = cmp.to_markdown(result)
    assert "claim 'flatnce-at-least-infonce'" in result.disagreements[0]
    assert "supported in up, contradicted in down" in result.disagreements[0]
    assert any("FlatNCE − InfoNCE, B=32" in flag and "above 0 in up" in flag and "below 0 in down" in flag for flag in result.disagreements)
    assert text.splitlines()[2].startswith("- **DISAGREEMENT: claim")
    assert cmp.POOLED not in result.names


def test_a_study_and_its_tuned_variant_are_compared_cell_by_cell_only(uri: str, capsys: pytest.CaptureFixture) -> None:
    write_study(uri, "plain", range(0, 3), 0.01)
    write_study(uri, "tuned", range(3, 6), 0.01, lr=0.1, preset="cifar10-cpu-tuned")
    assert main(["compare", "plain", "tuned", "--tracking-uri", uri]) == 0
    out = capsys.readouterr().out
    assert "Not replicates, so not pooled: plain and tuned differ in their preset" in out and "| pooled |" not in out
    assert main(["compare", "plain", "tuned", "--tracking-uri", uri, "--pool"]) == 2
    assert "cannot pool: plain and tuned differ in their preset" in capsys.readouterr().err


def test_pooling_is_refused_on_overlapping_seeds(uri: str, capsys: pytest.CaptureFixture) -> None:
    write_study(uri, "a", range(0, 3), 0.01)
    write_study(uri, "b", range(2, 5), 0.01)
    assert main(["compare", "a", "b", "--tracking-uri", uri, "--pool"]) == 2
    assert "cannot pool: a and b both ran seed 2" in capsys.readouterr().err
    assert main(["compare", "a", "b", "--tracking-uri", uri]) == 0  # side by side still
    assert "Not replicates, so not pooled: a and b both ran seed 2" in capsys.readouterr().out


def test_bad_input_is_refused_with_exit_2_and_a_clear_message(uri: str, capsys: pytest.CaptureFixture) -> None:
    write_study(uri, "real", range(3), 0.01)
    assert main(["compare", "real", "nosuch", "--tracking-uri", uri]) == 2
    assert "no study named 'nosuch'" in (err := capsys.readouterr().err) and "studies there: real" in err
    with pytest.raises(SystemExit) as one:
        main(["compare", "real", "--tracking-uri", uri])
    assert one.value.code == 2 and "compare needs two studies or more" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["compare", "real", "real", "--tracking-uri", uri])
    assert "repeated: real" in capsys.readouterr().err


def exact_two_sided(k: int, n: int) -> float:
    """Exact binomial test of p = ½ by enumeration: the probability of every split no likelier than k's."""
    probabilities = [math.comb(n, j) / 2**n for j in range(n + 1)]
    return min(1.0, sum(p for p in probabilities if p <= probabilities[k] * (1 + 1e-7)))


def predictions(name: str, right: np.ndarray, labels: np.ndarray) -> Predictions:
    return Predictions(name, name, np.where(right, labels, (labels + 1) % 10), labels)


def test_mcnemar_matches_the_exact_binomial_by_enumeration() -> None:
    labels = np.arange(1000) % 10
    right_a = np.zeros(1000, bool)
    right_b = np.zeros(1000, bool)
    right_a[:700], right_b[:680] = True, True  # both right on 680 images, A alone on 20 ...
    right_b[900:915] = True  # ... and B alone on 15
    result = mcnemar(predictions("A", right_a, labels), predictions("B", right_b, labels))
    assert (result.only_a, result.only_b) == (20, 15)
    assert result.p_value == pytest.approx(exact_two_sided(20, 35), rel=1e-9)
    assert result.difference == pytest.approx(0.005)
    # The image bootstrap by indices, written out: its interval matches the multinomial one to resampling error.
    rng = np.random.default_rng(1)
    d = right_a.astype(int) - right_b.astype(int)
    means = np.array([d[rng.integers(0, 1000, 1000)].mean() for _ in range(4000)])
    assert result.low == pytest.approx(np.percentile(means, 2.5), abs=0.0015)
    assert result.high == pytest.approx(np.percentile(means, 97.5), abs=0.0015)
    assert bootstrap_interval(0, 0, 1000) == (0.0, 0.0)
    with pytest.raises(ValueError, match="not evaluated on the same test images"):
        mcnemar(predictions("A", right_a, labels), predictions("B", right_b, (labels + 3) % 10))


def test_an_evaluation_records_its_test_predictions_at_the_reported_epoch_without_changing_its_accuracy(
    uri: str, capsys: pytest.CaptureFixture
) -> None:
    torch.set_num_threads(1)
    study_run = create_run(uri, "nce-study", run_name="s", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "s"})
    cfg = {"dataset": "digits", "backbone": "small", "head": "mlp", "limit_train": 256}
    for seed in (0, 1):
        random_init_baseline(from_dict(cfg | {"seed": seed}), EvalConfig(epochs=3, batch_size=64), tracking_uri=uri, study_run_id=study_run)
    client = MlflowClient(uri)
    loaded = []
    for run in sorted(search_runs(client, {rs.KIND: rs.KIND_BASELINE}), key=lambda r: int(r.data.params[rs.P_SEED])):
        path = client.download_artifacts(run.info.run_id, rs.TEST_PREDICTIONS, str(Path(uri.removeprefix("sqlite:///")).parent))
        with np.load(path) as arrays:
            assert arrays["predictions"].dtype == np.int16 and arrays["labels"].dtype == np.int16
            right = arrays["predictions"] == arrays["labels"]
            loaded.append(Predictions(run.info.run_name, run.info.run_id, arrays["predictions"], arrays["labels"]))
        # The artifact is the reported epoch's: its accuracy is the run's metric to the last image.
        assert right.mean() == pytest.approx(run.data.metrics[rs.M_TEST_AT_BEST_VAL], abs=1e-6)
    result = mcnemar(*loaded)
    assert result.accuracy_a - result.accuracy_b == pytest.approx((result.only_a - result.only_b) / result.images)
