"""Pretrain one contrastive model under Ray Train, recorded as one MLflow run.

    python study/train.py --dataset digits --backbone small --epochs 3 --workers 2
    python study/train.py --dataset cifar10 --data-dir ../shared/data/cifar10 --limit-train 2000 --epochs 2
    python study/train.py --resume RUN_NAME          # continue a run from its last checkpoint

Flags and defaults follow the AttentionNCE seed (``--epochs 400 --batch_size 256 --lr 1e-3
--save_dir checkpoints --n_eval_epochs 5 --n_save_epochs 20``); FlatCLR's ``--clr
simclr|flatclr`` is an alias of ``--loss infonce|flatnce``. Every value is checked before Ray
starts or an MLflow run is created.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path
from typing import Any

from study.cli import add_config_flags, given_fields
from trainables import run_schema as rs
from trainables.checkpoint import load_latest_valid
from trainables.config import ConfigError, PretrainConfig, from_dict, from_yaml
from trainables.data import DatasetNotFoundError, load_for
from trainables.losses.catalog import CATALOG
from trainables.session import checkpoint_dir_name
from trainables.tracking import TrackingUnavailableError, check_reachable, create_run, end_run, pretrain_params, resolve_tracking_uri

CLR_ALIASES = {entry.clr: name for name, entry in CATALOG.items() if entry.clr}  # FlatCLR's --clr names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="study/train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False)
    parser.add_argument("--config", type=Path, help="YAML file of config fields; flags override it")
    parser.add_argument("--clr", choices=sorted(CLR_ALIASES), help="FlatCLR's flag: " + ", ".join(f"{clr} = --loss {loss}" for clr, loss in CLR_ALIASES.items()))
    parser.add_argument("--resume", metavar="RUN_NAME", help="continue the run RUN_NAME (under --save_dir) from its last valid checkpoint")
    parser.add_argument("--max-failures", type=int, default=0, help="Ray Train restarts after a worker failure, from the last checkpoint")
    add_config_flags(parser, PretrainConfig)
    return parser


def config_from_args(args: argparse.Namespace) -> PretrainConfig:
    """YAML (or the resumed run's own config) under the flags the user gave."""
    given = given_fields(args, PretrainConfig)
    if args.clr:
        if "loss" in given and given["loss"] != CLR_ALIASES[args.clr]:
            raise ConfigError(f"--clr {args.clr} means loss={CLR_ALIASES[args.clr]!r} but --loss {given['loss']} was also given")
        given["loss"] = CLR_ALIASES[args.clr]
    if args.resume:
        return from_dict(resumed_config(args, given) | given | {"run_name": args.resume})
    return from_yaml(args.config, given) if args.config else from_dict(given)


def resumed_config(args: argparse.Namespace, given: dict[str, Any]) -> dict[str, Any]:
    folder = Path(given.get("save_dir", PretrainConfig.save_dir)) / args.resume
    found = load_latest_valid(sorted(folder.glob("epoch_*")))
    if found is None:
        raise ConfigError(f"resume={args.resume!r}: no valid checkpoint under {folder}")
    return found[0]["config"]


def check_before_start(cfg: PretrainConfig, tracking_uri: str) -> None:
    """Everything that can be wrong without starting Ray: data and tracking server."""
    check_reachable(tracking_uri)
    if cfg.dataset != "digits":
        load_for(cfg)


def mlflow_run(cfg: PretrainConfig, tracking_uri: str, name: str, resume: bool) -> str:
    """The run's MLflow id: the resumed run's own, else a new run."""
    from mlflow.tracking import MlflowClient

    from trainables.mlflow_search import find_run

    client = MlflowClient(tracking_uri)
    if resume:
        found = find_run(client, {rs.TRAIN_RUN: name})
        if found:
            client.update_run(found.info.run_id, status="RUNNING")
            return found.info.run_id
    tags = cfg.tags | {rs.KIND: rs.KIND_PRETRAIN, rs.TRAIN_RUN: name}
    return create_run(tracking_uri, cfg.experiment, run_name=name, params=pretrain_params(cfg), tags=tags)


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        cfg = config_from_args(args)
        tracking_uri = resolve_tracking_uri(cfg.tracking_uri)
        check_before_start(cfg, tracking_uri)
    except (ConfigError, DatasetNotFoundError, TrackingUnavailableError, ValueError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    name = cfg.run_name or f"{cfg.loss}-m{cfg.views}-b{cfg.batch_size}-{time.strftime('%Y%m%d-%H%M%S')}"
    import ray

    from trainables.ray_train import build_trainer

    ray.init(logging_level="WARNING", log_to_driver=True)
    run_id = mlflow_run(cfg, tracking_uri, name, resume=bool(args.resume))
    trainer = build_trainer(cfg, name=name, storage_path=cfg.save_dir, run_id=run_id, tracking_uri=tracking_uri, max_failures=args.max_failures)
    try:
        result = trainer.fit()
    except BaseException as err:  # any failure, Ctrl-C included, ends the MLflow run FAILED with its reason
        end_run(tracking_uri, run_id, failed_reason=f"{type(err).__name__}: {err}")
        raise
    end_run(tracking_uri, run_id)
    metrics = result.metrics or {}
    print(
        f"\nrun {name}: {metrics.get('epoch', '?')} epochs, validation kNN accuracy {metrics.get(rs.M_VAL_KNN, float('nan')):.4f}\n"
        f"  checkpoint: {Path(cfg.save_dir) / name / checkpoint_dir_name(int(metrics.get('epoch', 0)))}\n"
        f"  MLflow run {run_id} in experiment {cfg.experiment!r}: mlflow ui --backend-store-uri {tracking_uri}\n"
        f"  resume with: python study/train.py --resume {name} --save_dir {cfg.save_dir}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
