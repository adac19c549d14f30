"""Claims as data, judged on study frames whose outcome is known, and the Claims section of every report.

The frames are built here, seed by seed, with effects far from any threshold (p below 1e-6, or
above 0.5), and every verdict is checked against the paired t-test and Holm's step-down written
out in this file with scipy's one-sample t-test.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from mlflow import MlflowClient
from mlflow_fixtures import (  # tests/ helpers, via conftest
    make_synthetic_study,
    synthetic_baseline,
    synthetic_trial,
)
from scipy import stats

from analysis import load
from analysis.claims import (
    CONTRADICTED,
    NOT_RESOLVED,
    NOT_TESTABLE,
    SUPPORTED,
    evaluate_claims,
    verdict_text,
)
from analysis.loss_tables import AXES as TABLE_AXES
from analysis.render import claims_markdown
from analysis.report import write_report
from search_spaces import PRESETS
from trainables.spec import run_schema as rs
from trainables.spec.claims import (
    AXES,
    CLAIMS_ARTIFACT,
    LEARNING,
    Claim,
    claims_from_json,
    claims_json,
)

SEEDS = range(8)
AT_LEAST = Claim("a", "FlatNCE at least matches InfoNCE", "at_least", "flatnce", against="infonce", margin=0.005)
GREATER = Claim("g", "FlatNCE beats InfoNCE", "greater", "flatnce", against="infonce")
WIDENS = Claim("w", "the gap widens as B shrinks", "difference_trend", "flatnce", against="infonce", direction="decreasing")


def noise(seed: int, cell: int) -> float:
    """A fixed, seed- and cell-dependent wobble of about a tenth of a point."""
    return 0.001 * np.sin(7.3 * seed + 2.1 * cell)


def frame(accuracy: dict[tuple[str, int], float], seeds=SEEDS, column: str = rs.P_BATCH_SIZE) -> pd.DataFrame:
    """A ``load_study``-shaped frame: one completed trial per (loss, axis value, seed)."""
    rows = []
    for cell, ((loss, value), mean) in enumerate(accuracy.items()):
        for seed in seeds:
            acc = mean + noise(seed, cell) + 0.002 * seed  # a shared seed effect, which pairing removes
            rows.append({
                load.RUN_ID: f"{loss}-{value}-{seed}", load.STATUS: rs.STATUS_COMPLETED, rs.P_LOSS: loss,
                rs.P_BATCH_SIZE: value if column == rs.P_BATCH_SIZE else 256, rs.P_VIEWS: value if column == rs.P_VIEWS else 1,
                rs.P_SEED: seed, rs.M_TEST_AT_BEST_VAL: acc, rs.M_BEST_VAL_ACC: acc, rs.M_DEVICE_HOURS: 0.1,
            })
    return pd.DataFrame(rows).astype({rs.P_BATCH_SIZE: "Int64", rs.P_VIEWS: "Int64", rs.P_SEED: "Int64"})


def baselines(seeds=SEEDS, level: float = 0.3) -> pd.DataFrame:
    return pd.DataFrame({rs.P_SEED: pd.array(list(seeds), dtype="Int64"), rs.M_TEST_AT_BEST_VAL: [level + 0.002 * s for s in seeds]})


def per_seed(trials: pd.DataFrame, loss: str, value: int) -> np.ndarray:
    cell = trials[(trials[rs.P_LOSS] == loss) & (trials[rs.P_BATCH_SIZE] == value)].sort_values(rs.P_SEED)
    return cell[rs.M_TEST_AT_BEST_VAL].to_numpy()


def holm(p: list[float]) -> list[float]:
    """Holm's adjusted p-values, step by step as the textbook states them."""
    order = sorted(range(len(p)), key=lambda i: p[i])
    adjusted, running = [0.0] * len(p), 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (len(p) - rank) * p[i]))
        adjusted[i] = running
    return adjusted


def test_a_claim_resolved_for_it_in_every_column_is_supported_with_the_hand_computed_holm() -> None:
    trials = frame({("infonce", 32): 0.60, ("infonce", 256): 0.62, ("flatnce", 32): 0.63, ("flatnce", 256): 0.625})
    results = evaluate_claims((AT_LEAST, WIDENS), trials, baselines())
    # The family: FlatNCE − InfoNCE + margin at B=32 and B=256, then the difference of differences.
    d32 = per_seed(trials, "flatnce", 32) - per_seed(trials, "infonce", 32)
    d256 = per_seed(trials, "flatnce", 256) - per_seed(trials, "infonce", 256)
    samples = [d32 + 0.005, d256 + 0.005, d256 - d32]
    expected = holm([stats.ttest_1samp(sample, 0).pvalue for sample in samples])
    got = [test.verdict.p_adjusted for result in results for test in result.tests]
    assert got == pytest.approx(expected, rel=1e-9)
    assert max(expected) < 1e-6
    assert [result.status for result in results] == [SUPPORTED, SUPPORTED]
    assert results[1].tests[0].verdict.difference == pytest.approx(float(np.mean(d256 - d32)))  # −2.5 points
    assert "within the 0.5-point non-inferiority margin" in verdict_text(results[0])


def test_a_loss_worse_by_less_than_the_margin_still_at_least_matches_and_by_more_is_contradicted() -> None:
    close = frame({("infonce", 32): 0.60, ("flatnce", 32): 0.598})  # 0.2 points worse, margin 0.5
    far = frame({("infonce", 32): 0.60, ("flatnce", 32): 0.585})  # 1.5 points worse
    (within,) = evaluate_claims((AT_LEAST,), close, baselines())
    (beyond,) = evaluate_claims((AT_LEAST,), far, baselines())
    assert within.status == SUPPORTED
    assert beyond.status == CONTRADICTED and "more than the 0.5-point margin" in verdict_text(beyond)
    # The same data against zero: a "greater" claim is contradicted by both.
    assert evaluate_claims((GREATER,), close, baselines())[0].status == CONTRADICTED


def test_a_claim_within_the_noise_is_not_resolved_and_says_how_many_seeds_would_resolve_it() -> None:
    rows = frame({("infonce", 32): 0.60, ("flatnce", 32): 0.60})
    # Per-seed swings of a point each way around a mean of +0.04 points: nothing 8 seeds can resolve.
    swings = [0.010, -0.010, 0.011, -0.009, 0.012, -0.011, 0.009, -0.009]
    flat = rows[rows[rs.P_LOSS] == "flatnce"].index
    rows.loc[flat, rs.M_TEST_AT_BEST_VAL] += swings
    (result,) = evaluate_claims((GREATER,), rows, baselines())
    d = per_seed(rows, "flatnce", 32) - per_seed(rows, "infonce", 32)
    assert stats.ttest_1samp(d, 0).pvalue > 0.5
    assert result.status == NOT_RESOLVED and result.seeds == len(SEEDS)
    assert verdict_text(result).startswith(f"not resolved with {len(SEEDS)} seeds")
    needed = result.tests[0].verdict.seeds_needed
    assert needed is None or needed > len(SEEDS)


def test_one_column_against_the_claim_contradicts_it_whatever_the_others_say() -> None:
    trials = frame({("infonce", 32): 0.60, ("infonce", 256): 0.60, ("flatnce", 32): 0.63, ("flatnce", 256): 0.57})
    (result,) = evaluate_claims((GREATER,), trials, baselines())
    assert result.status == CONTRADICTED
    assert result.decisive.evidence.label == "FlatNCE − InfoNCE, B=256"


def test_monotone_claims_read_the_last_minus_the_first_axis_value() -> None:
    claim = Claim("m", "improves with M", "monotone", "attentionnce", axis="views", direction="increasing")
    trials = frame({("attentionnce", 1): 0.60, ("attentionnce", 2): 0.59, ("attentionnce", 4): 0.62}, column=rs.P_VIEWS)
    (result,) = evaluate_claims((claim,), trials, baselines())
    assert result.status == SUPPORTED and result.tests[0].evidence.label == "AttentionNCE, M=4 − M=1"
    assert result.tests[0].verdict.difference == pytest.approx(0.02 + np.mean([noise(s, 2) - noise(s, 0) for s in SEEDS]))
    falling = Claim("f", "worsens with M", "monotone", "attentionnce", axis="views", direction="decreasing")
    assert evaluate_claims((falling,), trials, baselines())[0].status == CONTRADICTED


def test_learning_compares_every_loss_with_random_init_and_needs_its_runs() -> None:
    trials = frame({("infonce", 32): 0.60, ("flatnce", 32): 0.29})  # FlatNCE below the untrained encoder
    (result,) = evaluate_claims((LEARNING,), trials, baselines(level=0.3))
    assert [test.evidence.label for test in result.tests] == ["InfoNCE − random init, B=32", "FlatNCE − random init, B=32"]
    assert result.status == CONTRADICTED
    (none,) = evaluate_claims((LEARNING,), trials, baselines().iloc[:0])
    assert none.status == NOT_TESTABLE and "no random-init baseline runs" in none.reason


def test_a_claim_about_a_loss_the_study_did_not_run_is_not_testable_and_stays_out_of_the_family() -> None:
    trials = frame({("infonce", 32): 0.60, ("flatnce", 32): 0.63})
    dcl = Claim("d", "DCL beats InfoNCE", "greater", "dcl", against="infonce")
    alone = evaluate_claims((GREATER,), trials, baselines())[0].tests[0].verdict.p_adjusted
    results = evaluate_claims((dcl, GREATER), trials, baselines())
    assert results[0].status == NOT_TESTABLE and "no completed Debiased CL trials" in verdict_text(results[0])
    assert results[1].tests[0].verdict.p_adjusted == pytest.approx(alone)  # a family of one still


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"kind": "better"}, "kind='better' is not allowed"),
        ({"axis": "lr"}, "axis='lr' is not allowed"),
        ({"loss": "simclr"}, "loss='simclr' is not allowed"),
        ({"margin": -0.1, "kind": "at_least"}, "margin=-0.1 is not allowed"),
        ({"margin": 0.005}, "only kind 'at_least' takes a margin"),
        ({"kind": "difference_trend"}, "direction='' is not allowed"),
        ({"against": "flatnce"}, "is the claim's own loss"),
    ],
)
def test_a_bad_claim_names_its_field_and_what_is_allowed(fields: dict, named: str) -> None:
    with pytest.raises(ValueError, match="claim 'x'") as error:
        Claim(**({"id": "x", "text": "t", "kind": "greater", "loss": "flatnce", "against": "infonce"} | fields))
    assert named in str(error.value)


def test_every_preset_declares_claims_its_own_grid_can_test() -> None:
    assert set(AXES) <= set(TABLE_AXES)
    for preset in PRESETS.values():
        assert LEARNING in preset.claims, preset.name
        losses = set(preset.grid.get("loss", ())) or {preset.fixed.get("loss", "infonce")}
        for claim in preset.claims:
            assert claims_from_json(claims_json((claim,))) == (claim,)
            if claim.loss != "*":
                assert {claim.loss, claim.against} - {"", "random-init"} <= losses | {"infonce"} and claim.loss in losses, (preset.name, claim.id)
    assert [c.id for c in PRESETS["cifar10-cpu"].claims] == [c.id for c in PRESETS["flatnce-batch-size"].claims]
    assert PRESETS["cifar10-cpu-tuned"].claims == PRESETS["cifar10-cpu"].claims


def small_study(uri: str, name: str, claims: tuple[Claim, ...] | None) -> None:
    specs = [
        synthetic_trial(loss, batch, seed, test_acc=base + 0.002 * seed + 0.001 * (seed % 2))
        for loss, batch, base in (("infonce", 32, 0.60), ("infonce", 256, 0.62), ("flatnce", 32, 0.63), ("flatnce", 256, 0.625))
        for seed in range(4)
    ]
    run_id = make_synthetic_study(uri, name, specs, baselines=[synthetic_baseline(s, test_acc=0.3 + 0.001 * s) for s in range(4)])
    if claims is not None:
        MlflowClient(uri).log_text(run_id, claims_json(claims), CLAIMS_ARTIFACT)


def test_the_report_opens_with_the_claims_section_in_markdown_and_html(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small_study(uri, "flat", PRESETS["cifar10-cpu"].claims)
    report = write_report("flat", uri, tmp_path / "out", log_to_mlflow=False)
    summary = report.summary.read_text()
    headings = [line for line in summary.splitlines() if line.startswith("## ")]
    assert headings[0] == "## Claims" and summary.index("## Claims") < summary.index("- **Preset:**")
    assert "1. FlatNCE at least matches InfoNCE at every batch size" in summary
    assert "   - FlatNCE − InfoNCE, B=32: +3." in summary  # the evidence row, with its interval after it
    assert "(FlatNCE − InfoNCE at B=256) − (at B=32)" in summary
    assert "Holm-adjusted together" in summary and CLAIMS_ARTIFACT in summary
    assert report.claims_markdown in summary
    page = report.html.read_text()
    assert page.index('<section id="claims">') < page.index('<section id="summary">') < page.index('<section id="batch_size">')


def test_a_study_that_recorded_no_claims_is_judged_on_learning_only_and_says_so(tmp_path: Path) -> None:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    small_study(uri, "old", None)
    report = write_report("old", uri, tmp_path / "out", log_to_mlflow=False)
    assert "1. Pretraining learns" in report.claims_markdown and "2. " not in report.claims_markdown
    assert "recorded no claims" in report.claims_markdown


def test_claims_markdown_example_reads_as_documented() -> None:
    trials = frame({("infonce", 32): 0.60, ("infonce", 256): 0.62, ("flatnce", 32): 0.63, ("flatnce", 256): 0.625})
    text = claims_markdown(evaluate_claims(PRESETS["cifar10-cpu"].claims, trials, baselines()), ["a note"])
    assert text.startswith("## Claims\n\n3 claims of the study's paper judged on its runs: 3 supported, 0 contradicted, 0 not resolved.")
    assert "- a note" in text and json.loads(claims_json(PRESETS["cifar10-cpu"].claims))[0]["margin"] == 0.005
