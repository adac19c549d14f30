"""A paper's claim as data: what a study preset says its paper found, in a form a study's runs can judge.

The presets (``search_spaces/``) declare their papers' claims with :class:`Claim`; a study records
its preset's claims on its study run in MLflow (``CLAIMS_ARTIFACT``, written by ``claims_json``),
and ``analysis/claims.py`` judges them from the recorded runs. The type lives here, below both,
because ``search_spaces`` and ``analysis`` may not import each other (tests/test_layers.py) and
because a report judges what a study recorded, not what its preset says today. Pure Python: the
command lines' validation reads it without pandas.

Kinds (``KINDS``), each generic over losses and an axis of the study's tables:

- ``at_least``: loss ≥ against − margin in every column of ``axis`` (non-inferiority; the
  margin, in accuracy as a fraction, is part of the claim and of its verdict).
- ``greater``: loss > against in every column of ``axis``.
- ``difference_trend``: loss − against moves in ``direction`` along ``axis``: the difference at
  the axis's last value minus the one at its first (a difference of differences, paired by seed).
- ``monotone``: loss moves in ``direction`` along ``axis``: its last value minus its first,
  paired by seed.

``loss`` may be ``EVERY_LOSS`` (each loss of the study) and ``against`` ``RANDOM_INIT`` (the
study's random-init baseline runs): the claim every study makes, that pretraining learned, is
``LEARNING``.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

from trainables.spec.losses import CATALOG

KINDS: dict[str, str] = {
    "at_least": "at least matches (within the margin) in every column",
    "greater": "better in every column",
    "difference_trend": "the difference moves in one direction along the axis",
    "monotone": "moves in one direction along the axis",
}
AXES = ("batch_size", "views", "equal_compute")  # keys of the loss-by-axis tables (analysis/loss_tables.py)
DIRECTIONS = ("increasing", "decreasing")
EVERY_LOSS = "*"
RANDOM_INIT = "random-init"
CLAIMS_ARTIFACT = "claims.json"  # on the study run


@dataclass(frozen=True)
class Claim:
    """One claim of a paper, judged on a study's data.

    Attributes:
        id: Short stable name, e.g. ``flatnce-at-least-infonce``.
        text: The claim in words, as a reader of the paper would put it.
        kind: One of ``KINDS``.
        loss: The loss the claim is about (a loss catalog name, or ``EVERY_LOSS``).
        axis: The table axis its columns run over, one of ``AXES``.
        against: The loss it is compared with (a catalog name, or ``RANDOM_INIT``); empty for ``monotone``.
        margin: Non-inferiority margin of ``at_least``, accuracy as a fraction (0.005 is half a point).
        direction: ``increasing`` or ``decreasing`` along the axis (``difference_trend``, ``monotone``).
        source: Where the paper makes the claim.
    """

    id: str
    text: str
    kind: str
    loss: str
    axis: str = "batch_size"
    against: str = ""
    margin: float = 0.0
    direction: str = ""
    source: str = ""

    def __post_init__(self) -> None:
        problems = [problem for problem in self._problems() if problem]
        if problems:
            raise ValueError(f"claim {self.id!r}: " + "; ".join(problems))

    def _problems(self) -> list[str]:
        losses = ", ".join(CATALOG)
        trend = self.kind in ("difference_trend", "monotone")
        return [
            "" if self.kind in KINDS else f"kind={self.kind!r} is not allowed; allowed: {', '.join(KINDS)}",
            "" if self.axis in AXES else f"axis={self.axis!r} is not allowed; allowed: {', '.join(AXES)}",
            "" if self.loss in CATALOG or self.loss == EVERY_LOSS else f"loss={self.loss!r} is not allowed; allowed: {losses}, {EVERY_LOSS!r}",
            _against_problem(self),
            "" if self.margin >= 0 else f"margin={self.margin!r} is not allowed; it must be >= 0",
            "" if self.margin == 0 or self.kind == "at_least" else f"margin={self.margin!r}: only kind 'at_least' takes a margin",
            "" if (self.direction in DIRECTIONS) == trend else (
                f"direction={self.direction!r} is not allowed; kind {self.kind!r} takes "
                + (f"one of {', '.join(DIRECTIONS)}" if trend else "none")
            ),
        ]


def _against_problem(claim: Claim) -> str:
    if claim.kind == "monotone":
        return "" if not claim.against else f"against={claim.against!r}: kind 'monotone' compares a loss with itself"
    if claim.against in CATALOG or claim.against == RANDOM_INIT:
        return "" if claim.against != claim.loss else f"against={claim.against!r} is the claim's own loss"
    return f"against={claim.against!r} is not allowed; allowed: {', '.join(CATALOG)}, {RANDOM_INIT!r}"


LEARNING = Claim(
    id="learning",
    text="Pretraining learns: every loss is above the randomly initialised encoder at every batch size",
    kind="greater",
    loss=EVERY_LOSS,
    against=RANDOM_INIT,
    source="every study (the random-init row)",
)


def claims_json(claims: tuple[Claim, ...]) -> str:
    """The claims as the JSON a study run records."""
    return json.dumps([asdict(claim) for claim in claims], indent=1)


def claims_from_json(text: str) -> tuple[Claim, ...]:
    """The claims a study run recorded, each checked again as it is built."""
    return tuple(Claim(**fields) for fields in json.loads(text))
