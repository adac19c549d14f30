"""The random-init baseline: the encoder a trial starts from, evaluated like a trial, one run per seed."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from mlflow.tracking import MlflowClient

from analysis import load_baselines
from trainables.core.augment import augment_config_for, eval_transform
from trainables.core.data import load_dataset
from trainables.core.models import build_model
from trainables.integration.mlflow_search import search_runs
from trainables.integration.tracking import create_run
from trainables.run.baseline import random_init_baseline
from trainables.run.evaluation import EvalConfig
from trainables.spec import run_schema as rs
from trainables.spec.pretrain_config import from_dict

CFG = {"dataset": "digits", "backbone": "small", "head": "mlp", "limit_train": 256, "knn_k": 10}
KNN = EvalConfig(mode="knn", knn_k=10)


def reference_knn_test_accuracy(seed: int) -> float:
    """Weighted cosine kNN of the untrained encoder, written out here independently of trainables.core.knn."""
    cfg = from_dict(CFG | {"seed": seed})
    data = load_dataset("digits", cfg.data_dir, val_fraction=cfg.val_fraction, split_seed=cfg.split_seed, limit_train=256)
    aug = augment_config_for(data.spec)
    torch.manual_seed(seed)
    model = build_model("small", "mlp", data.spec.image_size, cfg.proj_dim).eval()
    with torch.no_grad():
        bank = F.normalize(model.features(eval_transform(data.train.images, aug)).float(), dim=1)
        queries = F.normalize(model.features(eval_transform(data.test.images, aug)).float(), dim=1)
    correct = 0
    for q, label in zip(queries, data.test.labels):
        sim = bank @ q
        top = sim.topk(KNN.knn_k)
        votes = torch.zeros(data.spec.num_classes)
        for s, i in zip(top.values, top.indices):
            votes[data.train.labels[i]] += torch.exp(s / KNN.knn_temperature)
        correct += int(votes.argmax() == label)
    return correct / len(queries)


def baseline(seed: int, evaluation: EvalConfig, study: tuple[str, str]) -> dict[str, float]:
    """The metrics of the baseline run the call made (or found)."""
    run_id = random_init_baseline(from_dict(CFG | {"seed": seed}), evaluation, tracking_uri=study[0], study_run_id=study[1])
    return MlflowClient(study[0]).get_run(run_id).data.metrics


@pytest.fixture()
def study(tmp_path: Path) -> tuple[str, str]:
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "nce-study", run_name="s", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "it's a study"})
    return uri, run_id


def test_one_run_per_seed_under_the_study_with_an_independent_accuracy(study: tuple[str, str]) -> None:
    uri, study_run_id = study
    torch.set_num_threads(1)
    results = {seed: baseline(seed, KNN, study) for seed in (0, 1)}
    for seed, result in results.items():
        assert result[rs.M_TEST_AT_BEST_VAL] == pytest.approx(reference_knn_test_accuracy(seed), abs=1e-6)
    assert results[0][rs.M_TEST_AT_BEST_VAL] != results[1][rs.M_TEST_AT_BEST_VAL]  # the seed sets the weights
    runs = search_runs(MlflowClient(uri), {rs.KIND: rs.KIND_BASELINE})
    assert len(runs) == 2
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags[rs.PARENT] == study_run_id
        assert run.data.tags[rs.BASELINE] == rs.BASELINE_RANDOM_INIT and run.data.tags[rs.STUDY] == "it's a study"
        assert run.data.params[rs.P_DATASET] == "digits" and run.data.params[rs.P_BACKBONE] == "small"
        assert rs.P_LOSS not in run.data.params  # nothing was trained with a loss
    frame = load_baselines("it's a study", uri, eval_mode="knn")
    assert sorted(frame[rs.P_SEED].tolist()) == [0, 1]
    assert sorted(frame[rs.M_TEST_AT_BEST_VAL]) == sorted(r[rs.M_TEST_AT_BEST_VAL] for r in results.values())


def test_a_resumed_study_reuses_the_finished_baseline(study: tuple[str, str]) -> None:
    uri, study_run_id = study
    first, again = baseline(0, KNN, study), baseline(0, KNN, study)
    assert again[rs.M_TEST_AT_BEST_VAL] == first[rs.M_TEST_AT_BEST_VAL]
    assert len(search_runs(MlflowClient(uri), {rs.KIND: rs.KIND_BASELINE})) == 1
    linear = baseline(0, EvalConfig(epochs=2, batch_size=64), study)
    assert 0.0 <= linear[rs.M_TEST_AT_BEST_VAL] <= 1.0
    assert len(search_runs(MlflowClient(uri), {rs.KIND: rs.KIND_BASELINE})) == 2  # another mode is another row


def test_the_baseline_records_the_trials_validation_knn_of_its_encoder(study: tuple[str, str]) -> None:
    """The number a learned encoder's validation kNN is compared with (the demo prints both) has one home: this run."""
    from trainables.core.components import build_components, validation_knn

    torch.set_num_threads(1)
    cfg = from_dict(CFG | {"seed": 0})
    expected = validation_knn(build_components(cfg), cfg, torch.device("cpu"))
    assert baseline(0, KNN, study)[rs.M_FINAL_VAL_KNN] == pytest.approx(expected, abs=1e-6)
