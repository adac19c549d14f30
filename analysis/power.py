"""How many seeds a paired comparison needs: power of the paired t-test over seeds.

The tables resolve a difference with Holm's step-down over m comparisons; its first, strictest
step tests at alpha / m, and any comparison may be the one tested there, so planning at the
Bonferroni level alpha / m guarantees the power whatever the other comparisons do (Holm can
only do better). The power of a two-sided paired t-test with n seeds, true mean difference
delta and standard deviation sd of the per-seed differences is

    P(|T| > t_{n-1, 1 - a/2}),   T ~ noncentral t(df = n - 1, nc = delta · √n / sd),

as in Colas, Sigaud and Oudeyer (2018), "How many random seeds?". The sd is the measured one,
so a planning figure is as uncertain as that estimate: read it as an order of magnitude.
"""

from __future__ import annotations

import math

from scipy import optimize, stats

ALPHA = 0.05
POWER = 0.8
MAX_SEEDS = 100


def paired_t_power(effect: float, sd: float, n: int, level: float) -> float:
    """Power of the two-sided paired t-test at per-test ``level`` (e.g. 0.05 / m) with n seeds."""
    _check(sd=sd, n=n)
    if n < 2:
        return 0.0
    critical = stats.t.ppf(1 - level / 2, n - 1)
    centre = abs(effect) * math.sqrt(n) / sd
    upper = stats.nct.sf(critical, n - 1, centre)
    # The wrong-sign tail P(T < -c); scipy's noncentral t returns NaN where it underflows (below 1e-12).
    lower = stats.nct.cdf(-critical, n - 1, centre)
    return float(upper + (0.0 if math.isnan(lower) else lower))


def smallest_resolvable(sd: float, n: int, comparisons: int, alpha: float = ALPHA, power: float = POWER) -> float:
    """The smallest true difference n seeds resolve with ``power`` at the family's level.

    Args:
        sd: Standard deviation of the per-seed differences (the measured one).
        n: Seeds.
        comparisons: Size of the family (the test runs at alpha / comparisons).
        alpha: Family-wise error rate.
        power: Wanted probability of resolving.

    Returns:
        The difference, in the units of ``sd``; infinity under 2 seeds.
    """
    _check(sd=sd, n=n, comparisons=comparisons, alpha=alpha, power=power)
    if n < 2:
        return math.inf
    if sd == 0:
        return 0.0
    level = alpha / comparisons
    # Power rises with the effect: double until it is reached, then bisect.
    upper = sd
    while paired_t_power(upper, sd, n, level) < power:
        upper *= 2
    return float(optimize.brentq(lambda effect: paired_t_power(effect, sd, n, level) - power, 0.0, upper, xtol=sd * 1e-9))


def seeds_needed(
    sd: float, effect: float, comparisons: int, alpha: float = ALPHA, power: float = POWER, max_seeds: int = MAX_SEEDS
) -> int | None:
    """The fewest seeds that resolve a true difference ``effect`` with ``power`` at the family's level.

    Args:
        sd: Standard deviation of the per-seed differences.
        effect: The true difference (its sign does not matter), e.g. the observed mean difference.
        comparisons: Size of the family.
        alpha: Family-wise error rate.
        power: Wanted probability of resolving.
        max_seeds: Largest number of seeds considered.

    Returns:
        The number of seeds (at least 2), or None where even ``max_seeds`` fall short ("more than N").
    """
    _check(sd=sd, n=max_seeds, comparisons=comparisons, alpha=alpha, power=power)
    if effect == 0 or math.isnan(effect):
        return None
    if sd == 0:
        return 2
    level = alpha / comparisons
    # Power rises with n: bisect on [2, max_seeds].
    if paired_t_power(effect, sd, max_seeds, level) < power:
        return None
    low, high = 1, max_seeds  # power(low) < power <= power(high)
    while high - low > 1:
        middle = (low + high) // 2
        if paired_t_power(effect, sd, middle, level) >= power:
            high = middle
        else:
            low = middle
    return high


def _check(**fields: float) -> None:
    """Refuse values outside what the functions mean, naming the field."""
    limits = {
        "sd": (lambda v: v >= 0, "a standard deviation >= 0"),
        "n": (lambda v: v >= 0 and v == int(v), "a whole number of seeds >= 0"),
        "comparisons": (lambda v: v >= 1 and v == int(v), "a whole number >= 1"),
        "alpha": (lambda v: 0 < v < 1, "strictly between 0 and 1"),
        "power": (lambda v: 0 < v < 1, "strictly between 0 and 1"),
    }
    for name, value in fields.items():
        allowed, wanted = limits[name]
        if math.isnan(value) or not allowed(value):
            raise ValueError(f"{name}={value!r}: must be {wanted}")
