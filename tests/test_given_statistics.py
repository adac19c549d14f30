"""Statistics given in the config (data_mean, data_std) are what every run of that config normalises with.

The images are grey (R = G = B), so a normalised tensor that is denormalised with the given per-channel
statistics, which differ between channels, has three equal channels only if it was normalised with them:
normalised with the folder's computed statistics (equal between channels, as the images are grey) or
the dataset's constants, its channels would differ. Uniform images stay uniform under every augmentation
of a 16-px folder with jitter_strength 0 (crops, flips, grayscale), so the check holds for pretraining's
views as well as for evaluation's.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from mlflow.tracking import MlflowClient
from PIL import Image

from study import train
from study.plan import make_plan, parse_overrides
from trainables.core.augment import eval_transform
from trainables.core.components import build_components
from trainables.core.data import load_for
from trainables.core.models import ContrastiveModel
from trainables.integration.session import LocalSession
from trainables.integration.tracking import create_run, pretrain_params
from trainables.run.baseline import random_init_baseline
from trainables.run.checkpoint import load_checkpoint
from trainables.run.epoch_end import EpochEnd
from trainables.run.evaluation import knn_evaluation, load_pretrained
from trainables.run.pretrain import pretrain
from trainables.spec import run_schema as rs
from trainables.spec.eval_config import EvalConfig
from trainables.spec.pretrain_config import from_dict
from trainables.spec.validation import ConfigError
from trainables.spec.yaml_config import from_yaml

MEAN, STD = (0.2, 0.4, 0.6), (0.5, 0.25, 0.125)
GIVEN = {"data_mean": list(MEAN), "data_std": list(STD)}


@pytest.fixture
def grey_folder(tmp_path: Path) -> Path:
    """2 classes x 12 training and 3 test images, 16 px, each one uniform grey level."""
    root = tmp_path / "grey"
    for part, count in (("train", 12), ("val", 3)):
        for label, name in enumerate(("dark", "light")):
            (root / part / name).mkdir(parents=True)
            for i in range(count):
                level = 20 + 100 * label + 7 * i
                Image.new("RGB", (16, 16), (level, level, level)).save(root / part / name / f"{i}.png")
    return root


def folder_config(root: Path, **changes: Any) -> dict[str, Any]:
    return {
        "dataset": "imagefolder", "data_dir": str(root), "backbone": "small", "head": "mlp", "epochs": 1, "batch_size": 8,
        "knn_k": 5, "jitter_strength": 0.0, "n_eval_epochs": 1, "n_save_epochs": 1, "seed": 1,
    } | changes


def spread_between_channels(normalised: torch.Tensor) -> float:
    """How far apart the channels of ``normalised`` ([..., 3, H, W]) are once denormalised with MEAN and STD."""
    images = normalised.reshape(-1, 3, *normalised.shape[-2:]).float()
    pixels = images * torch.tensor(STD).view(1, 3, 1, 1) + torch.tensor(MEAN).view(1, 3, 1, 1)
    return float((pixels - pixels[:, :1]).abs().max())


@pytest.fixture
def fed(monkeypatch: pytest.MonkeyPatch) -> list[torch.Tensor]:
    """Every tensor the model is given, as pretraining's views or evaluation's images."""
    inputs: list[torch.Tensor] = []
    forward, features = ContrastiveModel.forward, ContrastiveModel.features

    def record(method: Any) -> Any:
        def recorded(self: ContrastiveModel, x: torch.Tensor) -> torch.Tensor:
            inputs.append(x.detach().clone())
            return method(self, x)

        return recorded

    monkeypatch.setattr(ContrastiveModel, "forward", record(forward))
    monkeypatch.setattr(ContrastiveModel, "features", record(features))
    return inputs


def test_the_folder_computes_statistics_that_the_check_tells_apart(grey_folder: Path) -> None:
    computed = load_for(from_dict(folder_config(grey_folder)))
    assert computed.spec.stats_source == "computed" and len(set(computed.spec.mean)) == 1  # grey: equal channels
    images = torch.cat(list(computed.train.batches(64)))
    assert spread_between_channels(eval_transform(images, build_components(from_dict(folder_config(grey_folder))).aug_cfg)) > 0.1


def test_given_statistics_are_what_pretraining_feeds_the_model_records_and_checkpoints(
    grey_folder: Path, tmp_path: Path, fed: list[torch.Tensor]
) -> None:
    torch.set_num_threads(1)
    load_for(from_dict(folder_config(grey_folder)))  # computes and caches the folder's own statistics: they must lose
    cfg = from_dict(folder_config(grey_folder, **GIVEN))
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    run_id = create_run(uri, "stats", run_name="given", params=pretrain_params(cfg), tags={})
    session = LocalSession(tmp_path / "run")
    pretrain(cfg, session, EpochEnd(cfg, session, run_id=run_id, tracking_uri=uri))
    views = [x for x in fed if x.dim() == 5]
    assert views and len(views) < len(fed)  # pretraining's views and the validation kNN's images
    assert max(spread_between_channels(x) for x in fed) < 1e-5
    params = MlflowClient(uri).get_run(run_id).data.params
    assert (params["data.mean"], params["data.std"], params["data.stats_source"]) == ("0.2,0.4,0.6", "0.5,0.25,0.125", "config")
    assert (params["data_mean"], params["data_std"]) == (str(MEAN), str(STD))
    state = load_checkpoint(session.checkpoints()[-1])
    assert from_dict(state["config"]) == cfg  # a resume (study/train.py --resume) takes the checkpoint's config


def test_evaluation_of_the_checkpoint_normalises_exactly_as_its_pretraining(grey_folder: Path, tmp_path: Path) -> None:
    torch.set_num_threads(1)
    cfg = from_dict(folder_config(grey_folder, **GIVEN))
    session = LocalSession(tmp_path / "run")
    pretrain(cfg, session)
    p = load_pretrained(session.checkpoints()[-1], EvalConfig(mode="knn", knn_k=5), torch.device("cpu"))
    assert (p.config, p.data.spec.stats_source, p.aug_cfg.mean, p.aug_cfg.std) == (cfg, "config", MEAN, STD)
    inputs: list[torch.Tensor] = []
    features = p.model.features
    p.model.features = lambda x: inputs.append(x) or features(x)  # type: ignore[method-assign]
    knn_evaluation(p, EvalConfig(mode="knn", knn_k=5), torch.device("cpu"))
    images = torch.cat(list(p.data.train.batches(512)))
    expected = (images.float() / 255 - torch.tensor(MEAN).view(1, 3, 1, 1)) / torch.tensor(STD).view(1, 3, 1, 1)
    torch.testing.assert_close(inputs[0], expected)


def test_a_builtin_dataset_takes_the_given_statistics_over_its_constants(fed: list[torch.Tensor], tmp_path: Path) -> None:
    digits = {"dataset": "digits", "backbone": "small", "head": "mlp", "limit_train": 64, "knn_k": 5}
    own = load_for(from_dict(digits))
    assert (own.describe()["stats_source"], own.spec.mean) == ("constants", (0.3057, 0.3057, 0.3057))
    given = build_components(from_dict(digits | GIVEN))
    assert given.data.describe().items() >= {"mean": "0.2,0.4,0.6", "std": "0.5,0.25,0.125", "stats_source": "config"}.items()
    assert (given.aug_cfg.mean, given.aug_cfg.std) == (MEAN, STD)
    # The random-init baseline of the config: its evaluation feeds the model images normalised the same way.
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    study = create_run(uri, "nce-study", run_name="s", params={}, tags={rs.KIND: rs.KIND_STUDY, rs.STUDY: "s"})
    run_id = random_init_baseline(from_dict(digits | GIVEN), EvalConfig(mode="knn", knn_k=5), tracking_uri=uri, study_run_id=study)
    assert fed and max(spread_between_channels(x) for x in fed) < 1e-5  # digits are grey too
    params = MlflowClient(uri).get_run(run_id).data.params
    assert (params["data.mean"], params["data.std"], params["data.stats_source"]) == ("0.2,0.4,0.6", "0.5,0.25,0.125", "config")


@pytest.mark.parametrize(
    ("values", "named"),
    [
        ({"data_mean": [0.5, 0.5]}, "data_mean=[0.5, 0.5] is not allowed; allowed: None (the dataset's own) or a list of 3 finite"),
        ({"data_std": [0.2, 0.0, 0.2]}, "data_std=[0.2, 0.0, 0.2] is not allowed; allowed: None (the dataset's own) or a list of 3 finite numbers > 0"),
        ({"data_std": [0.2, -1, 0.2]}, "data_std=[0.2, -1.0, 0.2]"),
        ({"data_mean": [0.5, float("nan"), 0.5]}, "data_mean=[0.5, nan, 0.5] is not allowed; it must be a list of finite numbers"),
        ({"data_mean": ["a", 0.5, 0.5]}, "data_mean=['a', 0.5, 0.5] is not allowed; it must be a list of finite numbers"),
        ({"data_mean": 0.5}, "data_mean=0.5 has type float; expected list of numbers or None"),
        ({"data_mean": [True, 0.5, 0.5]}, "data_mean=[True, 0.5, 0.5]"),
    ],
)
def test_bad_statistics_are_refused_naming_the_field_the_value_and_what_is_allowed(values: dict[str, Any], named: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict(GIVEN | values)
    assert named in str(err.value)


@pytest.mark.parametrize("alone", ["data_mean", "data_std"])
def test_one_statistic_without_the_other_is_refused(alone: str) -> None:
    with pytest.raises(ConfigError) as err:
        from_dict({alone: GIVEN[alone]})
    assert err.value.fields == {"data_mean", "data_std"}
    assert f"{alone}={GIVEN[alone]} was given but" in str(err.value) and "allowed: both" in str(err.value)


def test_statistics_are_read_from_set_yaml_and_flags(tmp_path: Path) -> None:
    items = ["data_mean=[0.2,", "0.4,", "0.6]", "data_std=[0.5, 0.25, 0.125]"]  # as a shell splits --set data_mean=[0.2, 0.4, 0.6]
    plan = make_plan("quickstart", parse_overrides(items))
    assert {(c.data_mean, c.data_std) for c in plan.configs} == {(MEAN, STD)}
    assert len(plan.configs) == len(make_plan("quickstart", {}).configs)  # the list is the value, not a grid axis
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(GIVEN))
    assert (from_yaml(path).data_mean, from_yaml(path).data_std) == (MEAN, STD)
    args = train.build_parser().parse_args(["--data-mean", "0.2,0.4,0.6", "--data_std", "[0.5, 0.25, 0.125]"])
    assert (train.config_from_args(args).data_mean, train.config_from_args(args).data_std) == (MEAN, STD)
