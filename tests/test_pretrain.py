"""The training loop: resumed runs and 2-worker DDP runs equal uninterrupted 1-process runs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from ddp import run_ddp
from torch import nn

from trainables.core import models
from trainables.integration.session import LocalSession
from trainables.run.checkpoint import load_checkpoint
from trainables.run.pretrain import NonFiniteLossError, pretrain
from trainables.spec import backbones
from trainables.spec import run_schema as rs
from trainables.spec.choices import Choice
from trainables.spec.pretrain_config import from_dict

TINY = {
    "dataset": "digits",
    "backbone": "small",
    "head": "mlp",
    "limit_train": 192,
    "batch_size": 64,
    "epochs": 2,
    "n_eval_epochs": 1,
    "n_save_epochs": 1,
    "lr": 1e-3,
    "knn_k": 10,
    "seed": 3,
}


def final_state(folder: Path) -> dict[str, torch.Tensor]:
    return load_checkpoint(sorted(folder.glob("epoch_*"))[-1])["model"]


def test_resumed_run_equals_uninterrupted_run(tmp_path: Path) -> None:
    torch.set_num_threads(1)
    full = LocalSession(tmp_path / "full")
    pretrain(from_dict(TINY), full)
    pretrain(from_dict(TINY | {"epochs": 1}), LocalSession(tmp_path / "split"))
    resumed = LocalSession(tmp_path / "split")
    pretrain(from_dict(TINY), resumed)  # finds epoch 1's checkpoint and continues
    assert [r["epoch"] for r in resumed.reported] == [2]
    a, b = final_state(tmp_path / "full"), final_state(tmp_path / "split")
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key], rtol=0, atol=0, msg=key)
    assert full.reported[-1][rs.M_TRAIN_LOSS] == resumed.reported[-1][rs.M_TRAIN_LOSS]


def test_a_run_restored_after_its_last_report_reports_it_again_and_changes_nothing(tmp_path: Path) -> None:
    """A Ray Train run can store its last checkpoint (made after the evaluation) while the report
    never reaches Tune, whose driver stopped in between; the resumed trial must end as completed,
    with the same numbers, and leave MLflow as it was."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.tracking import create_run, pretrain_params
    from trainables.run.evaluation import EvalConfig
    from trainables.run.train_and_evaluate import train_and_evaluate

    torch.set_num_threads(1)
    uri, cfg, knn = f"sqlite:///{tmp_path / 'mlflow.db'}", from_dict(TINY), EvalConfig(mode="knn", knn_k=10)
    run_id = create_run(uri, "resume", run_name="trial", params=pretrain_params(cfg), tags={})
    first = LocalSession(tmp_path / "trial")
    train_and_evaluate(cfg, first, run_id=run_id, tracking_uri=uri, evaluation=knn)
    client = MlflowClient(uri)
    before, runs_before = client.get_run(run_id).data.metrics, len(client.search_runs([client.get_run(run_id).info.experiment_id]))
    again = LocalSession(tmp_path / "trial")
    train_and_evaluate(cfg, again, run_id=run_id, tracking_uri=uri, evaluation=knn)
    [report] = again.reported  # one report, of the last epoch, with the evaluation's numbers
    assert report["epoch"] == cfg.epochs
    assert {k: v for k, v in first.reported[-1].items() if k != "epoch"}.items() <= report.items()
    assert client.get_run(run_id).data.metrics == before  # no final metric overwritten (it was NaN, wall-clock ~0)
    assert len(client.search_runs([client.get_run(run_id).info.experiment_id])) == runs_before  # no second evaluation
    assert [m.step for m in client.get_metric_history(run_id, rs.M_TRAIN_LOSS)] == [1, 2]


def test_resume_skips_a_corrupt_latest_checkpoint(tmp_path: Path) -> None:
    pretrain(from_dict(TINY | {"epochs": 1}), LocalSession(tmp_path))
    state = tmp_path / "epoch_00001" / "state.pt"
    state.write_bytes(state.read_bytes()[:1000])  # truncated on disk
    session = LocalSession(tmp_path)
    pretrain(from_dict(TINY), session)
    assert [r["epoch"] for r in session.reported] == [1, 2]  # started over, saying so in the log


def no_bn_backbone(image_size: int) -> tuple[nn.Module, int]:
    """A backbone without BatchNorm: on CPU each DDP worker's BN would see only its shard
    (SyncBatchNorm needs CUDA), so exact equivalence needs a model free of batch statistics."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(3, 8, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Conv2d(8, 16, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
    )
    return net, 16


NO_BN_SMALL = Choice("small", f"{__name__}:no_bn_backbone", "a convnet without BatchNorm")
# SGD: Adam rescales every update to ~lr, which would amplify float noise in tiny gradients. The
# backbone registered as "small" is replaced by ``no_bn_backbone`` in every process of the test.
DDP_CFG = TINY | {"backbone": "small", "epochs": 1, "n_eval_epochs": 5, "optimizer": "sgd", "lr": 0.5, "loss": "flatnce"}


def ddp_rank(rank: int, world_size: int, folder: str) -> dict[str, torch.Tensor]:
    backbones.BACKBONES["small"] = NO_BN_SMALL
    session = LocalSession(Path(folder) / "ddp")
    pretrain(from_dict(DDP_CFG | {"workers": world_size}), session)
    model_state = final_state(Path(folder) / "ddp") if rank == 0 else {}
    return {"loss": torch.tensor(session.reported[-1][rs.M_TRAIN_LOSS])} | model_state


def test_two_worker_ddp_step_equals_one_process_on_the_full_batch(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(backbones.BACKBONES, "small", NO_BN_SMALL)
    single = LocalSession(tmp_path / "single")
    pretrain(from_dict(DDP_CFG), single)
    expected = final_state(tmp_path / "single")
    ranks = run_ddp(ddp_rank, 2, tmp_path, str(tmp_path))
    assert ranks[0]["loss"].item() == pytest.approx(single.reported[-1][rs.M_TRAIN_LOSS], rel=1e-5)
    assert ranks[0]["loss"].item() == pytest.approx(ranks[1]["loss"].item(), rel=1e-6)  # all-reduced
    for key, value in expected.items():
        torch.testing.assert_close(ranks[0][key], value, rtol=1e-4, atol=1e-6, msg=key)
    # The comparison can fail: the initial weights differ from the trained ones.
    assert any(not torch.allclose(models.build_model("small", "mlp", 32).state_dict()[k], v) for k, v in expected.items())


def test_non_finite_loss_stops_the_run_at_its_first_step(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from trainables.run import pretrain as module

    build = module.build_components

    def poisoned(*args, **kwargs):  # weights holding an infinity make the first loss NaN
        components = build(*args, **kwargs)
        with torch.no_grad():
            next(components.model.parameters()).fill_(float("inf"))
        return components

    monkeypatch.setattr(module, "build_components", poisoned)
    session = LocalSession(tmp_path)
    with pytest.raises(NonFiniteLossError, match="epoch 1, step 0"):
        pretrain(from_dict(TINY | {"epochs": 1}), session)
    assert session.reported == []
