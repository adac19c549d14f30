"""Which inference over seeds keeps a table's error rates: candidates compared by simulation.

A table compares cells paired by seed. Each simulated seed has an effect shared by both cells of
a comparison (the pairing) and independent noise per cell:

    x_i = mu_x + s_i + a e_xi,   y_i = mu_y + s_i + b e_yi,   s_i ~ N(0, 1),

with e of unit variance from one of three shapes: normal, Student t with 3 df (heavy tails) and
a centred lognormal (sigma 1, skewness 6). In the three main scenarios the cells are
exchangeable (a = b = 1: the same noise for both losses), so the paired differences are
symmetric whatever the shape; the stress scenario gives one loss twice the other's noise
(a = 1, b = 0.5) under the lognormal, so that the differences themselves are skewed. Shifts are
in units of sd(x - y).

Measured for n = 2 ... 12 seeds: for one comparison at alpha 0.05, the false-resolution rate
(a true null resolved), the coverage of the 95 % interval of the difference and of a cell's
mean, and the power at shifts of 1 and 2 sd; for a table's family of m = 4, 8, 16 comparisons,
half true nulls and half shifted by 1.5 sd, the family-wise error (any null resolved, or any
shift resolved with the wrong sign), the simultaneous coverage and the power per shift. Then the
adaptive schedules of ``analysis.sequential``: their family-wise error, and the seeds they save
against the fixed design of the same power. Every rate carries its Monte-Carlo standard error.

Candidates (``METHODS``): today's percentile bootstrap with Bonferroni intervals, the paired t
with Holm (Bonferroni-simultaneous intervals), the exact sign-flip permutation test with Holm,
the exact Wilcoxon signed-rank test with Holm (checked against scipy.stats.wilcoxon), and the
studentised bootstrap (bootstrap-t) with Holm from 5 seeds.
"""

from __future__ import annotations

import argparse
import itertools
import math
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a script, like every benchmark

from analysis import sequential
from benchmarks.common import record, report_header

ALPHA = 0.05
SEEDS = tuple(range(2, 13))
FAMILIES = (4, 8, 16)
SHIFTS = (1.0, 2.0)  # single-comparison power, in sd of the differences
FAMILY_SHIFT = 1.5
RESAMPLES = 999
BOOTSTRAP_MIN_SEEDS = 5  # the studentised bootstrap is a large-n method: at 2-4 seeds a resample often has no spread
CHUNK = 20_000  # rows of differences per vectorised step, to bound memory


def _lognormal(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    sigma = 1.0
    draws = rng.lognormal(0.0, sigma, shape)
    mean, var = math.exp(sigma**2 / 2), (math.exp(sigma**2) - 1) * math.exp(sigma**2)
    return (draws - mean) / math.sqrt(var)


NOISE: dict[str, Callable[[np.random.Generator, tuple[int, ...]], np.ndarray]] = {
    "normal": lambda rng, shape: rng.standard_normal(shape),
    "t3": lambda rng, shape: rng.standard_t(3, shape) / math.sqrt(3.0),
    "lognormal": _lognormal,
}


@dataclass(frozen=True)
class Scenario:
    """Seed noise: its shape and the per-cell noise scales of x and y (a and b above)."""

    noise: str
    scale_x: float = 1.0
    scale_y: float = 1.0
    stress: bool = False  # outside the criterion: the paired differences are skewed

    @property
    def sd_difference(self) -> float:
        return math.sqrt(self.scale_x**2 + self.scale_y**2)


SCENARIOS: dict[str, Scenario] = {
    "normal": Scenario("normal"),
    "t3": Scenario("t3"),
    "lognormal": Scenario("lognormal"),
    "lognormal, unequal (stress)": Scenario("lognormal", 1.0, 0.5, stress=True),
}


def cells(
    rng: np.random.Generator, scenario: Scenario, shape: tuple[int, ...], shift: np.ndarray | float
) -> tuple[np.ndarray, np.ndarray]:
    """x and y per seed, x shifted by ``shift`` sd of the differences.

    Shape:
        shape: [..., seeds]; shift broadcasts against shape[:-1].
    """
    seed_effect = rng.standard_normal(shape)
    noise = NOISE[scenario.noise]
    x = np.asarray(shift)[..., None] * scenario.sd_difference + seed_effect + scenario.scale_x * noise(rng, shape)
    y = seed_effect + scenario.scale_y * noise(rng, shape)
    return x, y


# --- the candidates: per row of differences, a p-value and an interval at a level ------------------


@dataclass(frozen=True)
class Method:
    """One candidate: a two-sided p-value per row, and (where it has one) an interval.

    Attributes:
        name: Label in the results.
        p_values: [rows, n] differences -> [rows] p-values.
        covers: ([rows, n] differences, truth, level) -> [rows] whether the interval holds the truth;
            None for a test without an interval.
        min_seeds: Fewest seeds it is run at.
        correction: Multiplicity correction of its resolutions in a family.
        cost: Which replication count it runs: ``reps`` (closed form), ``flip_reps`` (enumerates
            2^n sign flips per row) or ``boot_reps`` (resamples).
    """

    name: str
    p_values: Callable[[np.ndarray, np.random.Generator], np.ndarray]
    covers: Callable[[np.ndarray, float, float, np.random.Generator], np.ndarray] | None
    min_seeds: int = 2
    correction: str = "holm"
    cost: str = "reps"


def t_p(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    n = d.shape[-1]
    t = d.mean(-1) / (d.std(-1, ddof=1) / math.sqrt(n))
    return 2 * stats.t.sf(np.abs(t), n - 1)


def t_covers(d: np.ndarray, truth: float, level: float, rng: np.random.Generator) -> np.ndarray:
    n = d.shape[-1]
    half = stats.t.ppf((1 + level) / 2, n - 1) * d.std(-1, ddof=1) / math.sqrt(n)
    return np.abs(d.mean(-1) - truth) <= half


def _flips(n: int) -> np.ndarray:
    """Every sign vector of length n. Shape: [2^n, n]."""
    return np.array(list(itertools.product((1.0, -1.0), repeat=n)))


def sign_flip_p(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact two-sided sign-flip p-value of the mean: share of the 2^n flips at least as extreme."""
    flips = _flips(d.shape[-1])
    observed = np.abs(d.reshape(-1, d.shape[-1]).sum(-1, keepdims=True))
    return np.concatenate([
        (np.abs(block @ flips.T) >= observed[start : start + len(block)] - 1e-12).mean(-1)
        for start, block in _blocks(d, max(1, 8_000_000 // len(flips)))
    ])


def wilcoxon_p(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Exact two-sided Wilcoxon signed-rank p-value (no ties: continuous noise), by enumeration."""
    n = d.shape[-1]
    ranks = np.argsort(np.argsort(np.abs(d), -1), -1) + 1.0
    signed = ranks * np.sign(d)
    flips = _flips(n) * np.arange(1, n + 1)  # every signed rank sum of ranks 1..n
    null = flips.sum(-1)
    observed = np.abs(signed.sum(-1))
    counts = np.searchsorted(np.sort(np.abs(null)), observed - 1e-9)
    return 1 - counts / len(null)


def _weights(rng: np.random.Generator, n: int) -> np.ndarray:
    """Bootstrap resamples of n seeds as count weights. Shape: [n, RESAMPLES]."""
    return rng.multinomial(n, np.full(n, 1 / n), RESAMPLES).T / n


def _boot_means(d: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Means and second moments of bootstrap resamples, one set of resamples per block of rows."""
    weights = _weights(rng, d.shape[-1])
    return d @ weights, (d**2) @ weights


def percentile_p(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The percentile bootstrap's p-value: twice the share of resampled means beyond zero (its
    interval at level 1 - p has zero at an end)."""
    out = []
    for _, block in _blocks(d, CHUNK):
        means, _ = _boot_means(block, rng)
        above = (means > 0).mean(-1)
        out.append(np.minimum(1.0, 2 * np.minimum(above, 1 - above)))
    return np.concatenate(out)


def percentile_covers(d: np.ndarray, truth: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """Whether the percentile interval holds the truth: the share of resampled means below it is
    inside the two tails (read off the shares, so that no quantile needs sorting)."""
    out = []
    tail = (1 - level) / 2
    for _, block in _blocks(d, CHUNK):
        means, _ = _boot_means(block, rng)
        below = (means < truth).mean(-1)
        out.append((below <= 1 - tail) & (below >= tail))
    return np.concatenate(out)


def bootstrap_t_p(d: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Studentised bootstrap p-value: share of resampled |t*| = |mean* - mean| / se* at least |t|."""
    n = d.shape[-1]
    out = []
    for _, block in _blocks(d, CHUNK):
        means, squares = _boot_means(block, rng)
        se = np.sqrt(np.maximum(squares - means**2, 0) * n / (n - 1) / n)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = np.abs(means - block.mean(-1, keepdims=True)) / se
        t_star = np.where(se > 0, t_star, np.inf)  # a resample of one repeated seed has no spread
        observed = np.abs(block.mean(-1)) / (block.std(-1, ddof=1) / math.sqrt(n))
        out.append((1 + (t_star >= observed[:, None]).sum(-1)) / (RESAMPLES + 1))
    return np.concatenate(out)


def bootstrap_t_covers(d: np.ndarray, truth: float, level: float, rng: np.random.Generator) -> np.ndarray:
    """Whether the symmetric bootstrap-t interval holds the truth: |mean - truth| / se is under the
    level's quantile of |t*|, read as the share of |t*| at least that large."""
    n = d.shape[-1]
    out = []
    for _, block in _blocks(d, CHUNK):
        means, squares = _boot_means(block, rng)
        se = np.sqrt(np.maximum(squares - means**2, 0) * n / (n - 1) / n)
        with np.errstate(divide="ignore", invalid="ignore"):
            t_star = np.where(se > 0, np.abs(means - block.mean(-1, keepdims=True)) / se, np.inf)
        distance = np.abs(block.mean(-1) - truth) / (block.std(-1, ddof=1) / math.sqrt(n))
        out.append((t_star >= distance[:, None]).mean(-1) > 1 - level)
    return np.concatenate(out)


def _blocks(d: np.ndarray, size: int) -> list[tuple[int, np.ndarray]]:
    flat = d.reshape(-1, d.shape[-1])
    return [(start, flat[start : start + size]) for start in range(0, len(flat), size)]


METHODS: dict[str, Method] = {
    "percentile bootstrap + Bonferroni (before)": Method(
        "percentile bootstrap + Bonferroni (before)", percentile_p, percentile_covers, 3, "bonferroni", "boot_reps"
    ),
    "paired t + Holm": Method("paired t + Holm", t_p, t_covers),
    "sign-flip exact + Holm": Method("sign-flip exact + Holm", sign_flip_p, None, cost="flip_reps"),
    "Wilcoxon exact + Holm": Method("Wilcoxon exact + Holm", wilcoxon_p, None),
    "bootstrap-t + Holm": Method("bootstrap-t + Holm", bootstrap_t_p, bootstrap_t_covers, BOOTSTRAP_MIN_SEEDS, cost="boot_reps"),
}


def holm_rejects(p: np.ndarray, alpha: float) -> np.ndarray:
    """Holm's step-down per row of a family.

    Shape:
        p: [reps, m] -> [reps, m] booleans.
    """
    m = p.shape[-1]
    order = np.argsort(p, -1)
    sorted_p = np.take_along_axis(p, order, -1)
    passes = sorted_p <= alpha / (m - np.arange(m))
    accepted = np.cumprod(passes, -1).astype(bool)  # reject up to the first failure
    rejects = np.empty_like(accepted)
    np.put_along_axis(rejects, order, accepted, -1)
    return rejects


def rate(hits: np.ndarray) -> dict[str, float]:
    """A share and its Monte-Carlo standard error."""
    share = float(np.mean(hits))
    return {"rate": round(share, 4), "mcse": round(math.sqrt(share * (1 - share) / hits.size), 4)}


# --- the experiments -----------------------------------------------------------------------------


def single(method: Method, noise: Scenario, n: int, reps: int, rng: np.random.Generator) -> dict[str, object]:
    """One comparison: false resolutions, coverage of the difference and of a cell, power."""
    x, y = cells(rng, noise, (reps, n), 0.0)
    d = x - y
    result = {"false_resolution": rate(method.p_values(d, rng) <= ALPHA)}
    if method.covers is not None:
        result["coverage_difference"] = rate(method.covers(d, 0.0, 1 - ALPHA, rng))
        result["coverage_cell"] = rate(method.covers(x, 0.0, 1 - ALPHA, rng))
    for shift in SHIFTS:
        x, y = cells(rng, noise, (reps, n), shift)
        result[f"power_{shift:g}sd"] = rate(method.p_values(x - y, rng) <= ALPHA)
    return result


def family(method: Method, noise: Scenario, n: int, m: int, reps: int, rng: np.random.Generator) -> dict[str, object]:
    """m comparisons, the first half true nulls, the rest shifted by FAMILY_SHIFT sd."""
    shifts = np.where(np.arange(m) < m // 2, 0.0, FAMILY_SHIFT)
    x, y = cells(rng, noise, (reps, m, n), np.broadcast_to(shifts, (reps, m)))
    d = x - y
    p = method.p_values(d, rng).reshape(reps, m)
    if method.correction == "holm":
        rejects = holm_rejects(p, ALPHA)
    else:
        rejects = p <= ALPHA / m
    wrong = rejects & ((shifts == 0) | (np.sign(d.mean(-1)) < 0))
    result = {"fwer": rate(wrong.any(-1)), "power": rate(rejects[:, m // 2 :] & (d.mean(-1)[:, m // 2 :] > 0))}
    if method.covers is not None:
        truth = np.broadcast_to(shifts * noise.sd_difference, (reps, m))
        level = 1 - ALPHA / m
        covered = np.stack([method.covers(d[:, j], float(truth[0, j]), level, rng) for j in range(m)], -1)
        result["simultaneous_coverage"] = rate(covered.all(-1))
    return result


def adaptive(noise: Scenario, schedule: sequential.Schedule, m: int, reps: int, rng: np.random.Generator) -> dict[str, object]:
    """The schedule's family-wise error, power and seeds per comparison, replayed look by look."""
    shifts = np.where(np.arange(m) < m // 2, 0.0, FAMILY_SHIFT)
    x, y = cells(rng, noise, (reps, m, schedule.max_seeds), np.broadcast_to(shifts, (reps, m)))
    d = x - y
    decided = np.zeros((reps, m), bool)
    wrong = np.zeros((reps, m), bool)
    stopped = np.full((reps, m), schedule.max_seeds)
    for look in schedule.looks():
        p = np.where(decided, np.inf, t_p(d[..., :look], rng))
        live = (~decided).sum(-1, keepdims=True)
        rejects = _holm_live(p, live, schedule.alpha_at(look)) & ~decided
        wrong |= rejects & ((shifts == 0) | (d[..., :look].mean(-1) < 0))
        stopped = np.where(rejects, look, stopped)
        decided |= rejects
    _check_against_library(d[:10], schedule)
    return {
        "fwer": rate(wrong.any(-1)),
        "power": rate(decided[:, m // 2 :] & ~wrong[:, m // 2 :]),
        "seeds_per_comparison": round(float(stopped.mean()), 3),
        "seeds_per_null": round(float(stopped[:, : m // 2].mean()), 3),
        "seeds_per_shift": round(float(stopped[:, m // 2 :].mean()), 3),
    }


def _holm_live(p: np.ndarray, live: np.ndarray, alpha: float) -> np.ndarray:
    """Holm over each row's live comparisons (the decided ones carry p = inf, sorted last)."""
    order = np.argsort(p, -1)
    sorted_p = np.take_along_axis(p, order, -1)
    thresholds = alpha / np.maximum(live - np.arange(p.shape[-1]), 1)
    accepted = np.cumprod(sorted_p <= thresholds, -1).astype(bool)
    rejects = np.empty_like(accepted)
    np.put_along_axis(rejects, order, accepted, -1)
    return rejects


def _check_against_library(d: np.ndarray, schedule: sequential.Schedule) -> None:
    """The replay above resolves what ``sequential.sequential_verdicts`` resolves, stopping as it would."""
    for rep in d:
        observed = {j: rep[j] for j in range(len(rep))}
        full = sequential.sequential_verdicts(observed, schedule)
        stopped = {j: rep[j][: verdict.n] for j, verdict in full.items()}
        assert {j for j, v in full.items() if v.resolved} == {
            j for j, v in sequential.sequential_verdicts(stopped, schedule).items() if v.resolved
        }


def fixed_power(noise: Scenario, m: int, n: int, reps: int, rng: np.random.Generator) -> float:
    """Power per shift of the fixed design: paired t with Holm at n seeds."""
    return family(METHODS["paired t + Holm"], noise, n, m, reps, rng)["power"]["rate"]


def check_wilcoxon(rng: np.random.Generator) -> None:
    """The enumerated Wilcoxon p-values are scipy's exact ones."""
    for n in (4, 7, 10):
        d = rng.standard_normal((50, n))
        ours = wilcoxon_p(d, rng)
        theirs = np.array([stats.wilcoxon(row, method="exact").pvalue for row in d])
        assert np.allclose(ours, theirs), (n, ours[:5], theirs[:5])


def run(reps: dict[str, int], adaptive_reps: int, seed: int) -> dict[str, object]:
    """Every experiment; ``reps`` maps a method's ``cost`` to its replications per cell."""
    rng = np.random.default_rng(seed)
    check_wilcoxon(rng)
    results: dict[str, object] = {"single": {}, "family": {}, "adaptive": {}}
    for name, method in METHODS.items():
        for label, scenario in SCENARIOS.items():
            for n in SEEDS:
                if n < method.min_seeds:
                    continue
                key = f"{name} | {label} | n={n}"
                count = reps[method.cost]
                results["single"][key] = single(method, scenario, n, count, rng)
                for m in FAMILIES:
                    results["family"][f"{key} | m={m}"] = family(method, scenario, n, m, count, rng)
    m = 8
    for spending in sequential.SPENDING:
        schedule = sequential.Schedule(3, 3, 12, ALPHA, spending)
        for label, scenario in SCENARIOS.items():
            outcome = adaptive(scenario, schedule, m, adaptive_reps, rng)
            powers = {n: fixed_power(scenario, m, n, adaptive_reps, rng) for n in range(2, 16)}
            matched = next((n for n, value in powers.items() if value >= outcome["power"]["rate"]), None)
            outcome |= {"fixed_power_by_seeds": powers, "fixed_seeds_same_power": matched}
            results["adaptive"][f"{spending} {schedule.looks()} | {label} | m={m}"] = outcome
    return results


def _worst(entries: dict[str, dict], name: str, field: str, stress: bool) -> tuple[float, float, str]:
    """The largest ``field`` rate of a method, over the criterion scenarios (or the stress one)."""
    chosen = [
        (value[field]["rate"], value[field]["mcse"], key.split(" | ", 1)[1])
        for key, value in entries.items()
        if key.split(" | ")[0] == name and SCENARIOS[key.split(" | ")[1]].stress == stress
    ]
    return max(chosen)


def summary(results: dict[str, object]) -> str:
    """The RESULTS.md result cell: worst FWER and single false-resolution rate per method."""
    parts = []
    for name in METHODS:
        fwer, mcse, where = _worst(results["family"], name, "fwer", False)
        single_rate, _, single_where = _worst(results["single"], name, "false_resolution", False)
        stress, _, stress_where = _worst(results["family"], name, "fwer", True)
        parts.append(
            f"{name}: worst FWER {fwer:.3f} ± {2 * mcse:.3f} ({where}), worst single false resolution "
            f"{single_rate:.3f} ({single_where}); stress worst FWER {stress:.3f} ({stress_where.split(' | ', 1)[1]})"
        )
    for key, value in results["adaptive"].items():
        parts.append(
            f"adaptive {key}: FWER {value['fwer']['rate']:.3f} ± {2 * value['fwer']['mcse']:.3f}, power "
            f"{value['power']['rate']:.3f}, {value['seeds_per_comparison']:.2f} seeds per comparison; fixed design "
            f"of that power: {value['fixed_seeds_same_power']} seeds"
        )
    return "<br>".join(parts)


def main(argv: Sequence[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--reps", type=int, default=10_000, help="replications per cell (10,000: 2 MCSE at 0.05 is ±0.0044)")
    parser.add_argument("--flip-reps", type=int, default=2_000, help="replications per cell of the sign-flip test")
    parser.add_argument("--boot-reps", type=int, default=1_000, help="replications per cell of the bootstraps")
    parser.add_argument("--adaptive-reps", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=2018)
    parser.add_argument("--no-record", action="store_true", help="print only; write no JSON or RESULTS.md line")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    reps = {"reps": args.reps, "flip_reps": args.flip_reps, "boot_reps": args.boot_reps}
    results = run(reps, args.adaptive_reps, args.seed)
    seconds = time.perf_counter() - started
    report = report_header("inference", __file__, argv, packages=("numpy", "scipy")) | {
        "reps": reps, "adaptive_reps": args.adaptive_reps, "seed": args.seed, "resamples": RESAMPLES,
        "seconds": round(seconds, 1), **results,
    }
    text = summary(results)
    print(text.replace("<br>", "\n"), f"\n{seconds:.0f} s")
    if not args.no_record:
        settings = (
            f"`{report['command']}`; n = 2..12 seeds, normal / t3 / lognormal seed noise (+ lognormal with unequal cell noise as a stress case), families m = 4, 8, 16 "
            f"(half nulls, half {FAMILY_SHIFT:g} sd shifts), {args.reps} reps per cell ({args.flip_reps} sign-flip, {args.boot_reps} bootstrap with {RESAMPLES} resamples), {args.adaptive_reps} adaptive; {seconds:.0f} s"
        )
        record("inference", report, settings, text)


if __name__ == "__main__":
    main()
