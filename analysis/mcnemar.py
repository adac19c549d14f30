"""Two trials compared image by image on the test set: an exact McNemar test and a test-set bootstrap.

The tables compare losses over seeds, conditional on the one fixed test set. Where two trained
encoders differ by about the test set's own noise (±0.5 points on CIFAR-10's 10,000 images),
the question "can this test set tell these two encoders apart?" is answered by pairing them
image by image: only the discordant images (one right, the other wrong) carry information, and
under no difference each is equally likely to favour either, so their split is Binomial(b + c, ½)
(the exact McNemar test, ``scipy.stats.binomtest``). The interval of the accuracy difference
resamples the test images (a percentile bootstrap; the per-image differences take three values,
so a resample is a multinomial draw of their counts). Both are about these two encoders and
this test set, not about the losses: that is the seeds' question.
"""

from __future__ import annotations

import tempfile
from dataclasses import dataclass

import mlflow
import numpy as np
import pandas as pd
from mlflow import MlflowClient
from scipy import stats

from analysis import load
from analysis.claims import points_text
from analysis.labels import format_value
from trainables.integration.mlflow_search import search_runs
from trainables.spec import run_schema as rs

LEVEL = 0.95
RESAMPLES = 10_000
RNG_SEED = 0  # a fixed stream: a report reproduces to the digit


class PredictionsMissingError(LookupError):
    """A trial, or the predictions of its evaluation, is not in the store."""


@dataclass(frozen=True)
class Predictions:
    """One trial's test predictions at the reported epoch.

    Attributes:
        trial: The trial's MLflow run name.
        eval_run_id: The evaluation run they come from.
        predicted: [test images] predicted classes.
        labels: [test images] true classes.
    """

    trial: str
    eval_run_id: str
    predicted: np.ndarray
    labels: np.ndarray

    @property
    def correct(self) -> np.ndarray:
        """[test images] whether each image was classified right."""
        return self.predicted == self.labels


@dataclass(frozen=True)
class McNemar:
    """A − B on one test set, image by image.

    Attributes:
        a, b: The two trials' names.
        images: Test images.
        accuracy_a, accuracy_b: Their test accuracies, as fractions.
        only_a: Images A got right and B wrong.
        only_b: Images B got right and A wrong.
        p_value: Exact two-sided McNemar p-value (binomial on the discordant images).
        low, high: Percentile-bootstrap interval of accuracy A − B over the test images.
        level: The interval's level.
    """

    a: str
    b: str
    images: int
    accuracy_a: float
    accuracy_b: float
    only_a: int
    only_b: int
    p_value: float
    low: float
    high: float
    level: float = LEVEL

    @property
    def difference(self) -> float:
        return self.accuracy_a - self.accuracy_b


def mcnemar(a: Predictions, b: Predictions, resamples: int = RESAMPLES, level: float = LEVEL) -> McNemar:
    """The exact McNemar test and the test-set bootstrap interval of A − B.

    Raises:
        ValueError: The two were not evaluated on the same test images (their labels differ).
    """
    if a.labels.shape != b.labels.shape or not np.array_equal(a.labels, b.labels):
        raise ValueError(
            f"trials {a.trial!r} and {b.trial!r} were not evaluated on the same test images "
            f"({a.labels.size} and {b.labels.size} labels, not equal): a per-image comparison needs one test set"
        )
    right_a, right_b = a.correct, b.correct
    only_a, only_b = int(np.sum(right_a & ~right_b)), int(np.sum(~right_a & right_b))
    discordant = only_a + only_b
    p_value = 1.0 if discordant == 0 else float(stats.binomtest(only_a, discordant, 0.5).pvalue)
    low, high = bootstrap_interval(only_a, only_b, a.labels.size, resamples, level)
    return McNemar(a.trial, b.trial, int(a.labels.size), float(right_a.mean()), float(right_b.mean()), only_a, only_b, p_value, low, high, level)


def bootstrap_interval(only_a: int, only_b: int, images: int, resamples: int = RESAMPLES, level: float = LEVEL) -> tuple[float, float]:
    """Percentile interval of the accuracy difference over resampled test images.

    Each image's difference is +1 (only A right), −1 (only B right) or 0; resampling n images with
    replacement draws those three counts from a multinomial, which is the image bootstrap exactly.
    """
    rng = np.random.default_rng(RNG_SEED)
    shares = np.array([only_a, only_b, images - only_a - only_b]) / images
    counts = rng.multinomial(images, shares, size=resamples)
    differences = (counts[:, 0] - counts[:, 1]) / images
    tail = 100 * (1 - level) / 2
    low, high = np.percentile(differences, [tail, 100 - tail])
    return float(low), float(high)


def trial_predictions(study: str, trial: str, tracking_uri: str | None, eval_mode: str = "linear") -> Predictions:
    """A study trial's test predictions, from the latest evaluation of ``eval_mode`` (as the tables use).

    Args:
        study: The study's name or study run id.
        trial: The trial's MLflow run name (``infonce-b32-m1-lr0.075-s0``) or run id.

    Raises:
        StudyNotFoundError: No such study.
        PredictionsMissingError: No such trial, no evaluation, or no predictions recorded.
    """
    uri = tracking_uri or mlflow.get_tracking_uri()
    trials = load.load_study(study, uri, eval_mode=eval_mode)
    client = MlflowClient(uri)
    names = {run.info.run_id: run.info.run_name for run in search_runs(client, {rs.STUDY: str(trials[load.STUDY].iloc[0]), rs.KIND: rs.KIND_PRETRAIN})}
    chosen = trials[[trial in (run_id, names.get(run_id)) for run_id in trials[load.RUN_ID]]]
    if chosen.empty:
        known = ", ".join(sorted(str(name) for name in names.values())[:8])
        raise PredictionsMissingError(f"--trial {trial!r}: no trial of study {study!r} has that run name or id; some there: {known}")
    row = chosen.iloc[0]
    name = str(names.get(row[load.RUN_ID], trial))
    if pd.isna(row[load.EVAL_RUN_ID]):
        raise PredictionsMissingError(f"trial {name!r} has no {eval_mode} evaluation run")
    eval_run_id = str(row[load.EVAL_RUN_ID])
    if rs.TEST_PREDICTIONS not in {item.path for item in client.list_artifacts(eval_run_id)}:
        raise PredictionsMissingError(
            f"trial {name!r}: its evaluation run {eval_run_id} has no {rs.TEST_PREDICTIONS} (it was evaluated before "
            f"evaluations recorded their predictions); re-evaluate it with: python study/linear_eval.py --study {study} --trial {name}"
        )
    with tempfile.TemporaryDirectory() as folder:
        with np.load(client.download_artifacts(eval_run_id, rs.TEST_PREDICTIONS, folder)) as arrays:
            return Predictions(name, eval_run_id, arrays["predictions"].astype(np.int64), arrays["labels"].astype(np.int64))


def to_markdown(result: McNemar, study: str) -> str:
    """The test's result, with what it does and does not say."""
    discordant = result.only_a + result.only_b
    verdict = "resolved" if result.p_value <= 1 - result.level else "not resolved"
    return "\n".join([
        f"## {result.a} − {result.b}, image by image (study {study}, {result.images:,} test images)",
        "",
        f"- Test accuracy: {result.a} {100 * result.accuracy_a:.2f} %, {result.b} {100 * result.accuracy_b:.2f} %",
        f"- Discordant images: {result.only_a} right only in {result.a}, {result.only_b} right only in {result.b} ({discordant} in all)",
        f"- Exact McNemar test (two-sided binomial on the discordant images): p = {result.p_value:.3g}, {verdict} at "
        f"{format_value(round(100 * (1 - result.level), 6))} %",
        f"- Accuracy difference: {points_text(result.difference)} points, {100 * result.level:g} % test-set bootstrap interval "
        f"[{points_text(result.low)}, {points_text(result.high)}] ({RESAMPLES:,} resamples of the test images)",
        "- Conditional on these two trained encoders: whether this test set tells them apart, not whether their losses "
        "differ (that is the seeds' question, the tables').",
        "",
    ])
