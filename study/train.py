"""Pretrain one contrastive model under Ray Train, recorded as one MLflow run.

    python study/train.py --dataset digits --backbone small --epochs 3 --workers 2
    python study/train.py --dataset cifar10 --data-dir ../shared/data/cifar10 --limit-train 2000 --epochs 2
    python study/train.py --resume RUN_NAME          # continue a run from its last checkpoint
    python study/train.py --dataset cifar10 --data-dir DIR --dry-run   # what would run, and is the data there

Flags and defaults follow the AttentionNCE seed (``--epochs 400 --batch_size 256 --lr 1e-3
--save_dir checkpoints --n_eval_epochs 5 --n_save_epochs 20``); FlatCLR's ``--clr
simclr|flatclr`` is an alias of ``--loss infonce|flatnce``. Every value is checked before Ray
starts or an MLflow run is created.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path
from typing import Any

from study.cli import add_config_flags, given_fields, int_flag, text_arg, usage_error
from study.dataset_check import check_dataset
from study.owned_names import Claim
from study.plan import machine_resources, max_concurrent
from study.preflight import absolute_paths, check_splits, checked_store, run_folders
from trainables.spec.files import under
from trainables.spec.losses import CATALOG
from trainables.spec.pretrain_config import PretrainConfig, from_dict
from trainables.spec.validation import ConfigError, problem
from trainables.spec.yaml_config import from_yaml

CLR_ALIASES = {entry.clr: name for name, entry in CATALOG.items() if entry.clr}  # FlatCLR's --clr names


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study/train.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    parser.add_argument("--config", type=text_arg("config"), help="YAML file of config fields; flags override it")
    parser.add_argument(
        "--clr",
        choices=sorted(CLR_ALIASES),
        help="FlatCLR's flag: " + ", ".join(f"{clr} = --loss {loss}" for clr, loss in CLR_ALIASES.items()),
    )
    parser.add_argument(
        "--resume", metavar="RUN_NAME", help="continue the run RUN_NAME (a folder directly under --save_dir) from its last valid checkpoint"
    )
    parser.add_argument(
        "--replace",
        action="store_true",
        help="start afresh under a run name in use: its folder is archived as NAME.replaced-<time>, and its MLflow run renamed to match",
    )
    int_flag(parser, "--max-failures", 0, 100, "Ray Train restarts after a worker failure, from the last checkpoint", default=0)
    parser.add_argument(
        "--address", type=text_arg("address"), help="Ray cluster address (default: RAY_ADDRESS, else a new Ray instance on this machine)"
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="print the run, its resources and estimated cost, check that the dataset is there; start nothing",
    )
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
    from trainables.run.checkpoint import load_latest_valid

    folder = under(given.get("save_dir", PretrainConfig.save_dir), args.resume, "resume")
    found = load_latest_valid(sorted(folder.glob("epoch_*")))
    if found is None:
        raise ConfigError(problem("resume", args.resume, f"it must name a run with a valid checkpoint; there is none under {folder}"))
    return found[0]["config"]


def ray_address(args: argparse.Namespace) -> str:
    """--address, else RAY_ADDRESS, else a Ray instance of this run's own (never another study's)."""
    return args.address or os.environ.get("RAY_ADDRESS") or "local"


def check_before_start(args: argparse.Namespace, cfg: PretrainConfig, name: str) -> None:
    """What can be wrong without touching the store or the data: the run's folder name and the
    resources it asks for. A dry run may plan for a cluster elsewhere."""
    under(cfg.save_dir, name, "run_name")
    if ray_address(args) == "local":
        try:
            max_concurrent([cfg], machine_resources(), "this machine")
        except ConfigError as err:
            if not args.dry_run:
                raise
            print(f"note: not on this machine: {err}; a cluster's --address is checked when the run starts")


def mlflow_run(cfg: PretrainConfig, tracking_uri: str, name: str, resume: bool) -> str:
    """The run's MLflow id: the resumed run's own, else a new run."""
    from mlflow.tracking import MlflowClient

    from trainables.integration.mlflow_search import find_run
    from trainables.integration.tracking import create_run, pretrain_params
    from trainables.spec import run_schema as rs

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
        name = cfg.run_name or f"{cfg.loss}-m{cfg.views}-b{cfg.batch_size}-{time.strftime('%Y%m%d-%H%M%S')}"
        if args.dry_run:
            from study.report import describe_run

            check_before_start(args, cfg, name)
            check_dataset(cfg, dry_run=True)
            print(describe_run(name, cfg))
            return 0
        cfg = absolute_paths(cfg)  # as typed here: the Ray workers run in folders of their own
        check_before_start(args, cfg, name)
        run_folders(cfg)
        tracking_uri = checked_store(cfg.tracking_uri, cfg.experiment)  # before the data is decoded
        sizes = check_dataset(cfg, dry_run=False)
        if sizes is not None:
            check_splits(cfg, sizes)
        claim = own_run(args, cfg, name, tracking_uri)
    except ConfigError as err:
        return usage_error(err)
    try:
        return train(args, cfg, name, tracking_uri)
    finally:
        claim.release()


def own_run(args: argparse.Namespace, cfg: PretrainConfig, name: str, tracking_uri: str) -> Claim:
    """The run's claim on its name and checkpoint folder (study/owned_names.py), held while it trains;
    a name in use is refused before anything is written, unless --replace archives the run that had it."""
    from study.owned_names import own_name
    from trainables.spec import run_schema as rs

    if args.resume and args.replace:
        raise ConfigError(problem("replace", True, "--resume continues the run; --replace starts a new one under a name in use"))
    field = "resume" if args.resume else "run_name"
    return own_name(
        cfg.save_dir, name, field=field, what="run", name_flag="--run_name", resume=bool(args.resume),
        replace=args.replace, tracking_uri=tracking_uri, experiment=cfg.experiment, tag=rs.TRAIN_RUN, kind=rs.KIND_PRETRAIN,
    )


def fit_in_a_thread(trainer: Any) -> Any:
    """``trainer.fit()``, run in a thread of its own while the main thread waits for it. Called from the
    main thread, Ray Train replaces the SIGINT handler with its own (abort the run, then exit 1), so
    the run would end FAILED with "SystemExit: 1" and the driver would never know of the signal; from
    another thread it leaves the handlers alone (as under Tune), and a signal reaches the driver's
    (study/stopping.py) in the main thread, interrupting the wait."""
    outcome: dict[str, Any] = {}

    def fit() -> None:
        try:
            outcome["result"] = trainer.fit()
        except BaseException as err:  # handed to the main thread, which raises it
            outcome["error"] = err

    thread = threading.Thread(target=fit, name="trainer-fit", daemon=True)  # daemon: a stopped driver does not wait for it
    thread.start()
    thread.join()
    if "error" in outcome:
        raise outcome["error"]
    return outcome["result"]


def train(args: argparse.Namespace, cfg: PretrainConfig, name: str, tracking_uri: str) -> int:
    import ray

    from study.console import quiet_ray
    from study.stopping import end_running_as_killed, stop_on_signals
    from trainables.integration.session import checkpoint_dir_name
    from trainables.integration.tracking import end_run
    from trainables.launch.ray_train import build_trainer
    from trainables.spec import run_schema as rs

    # Ray's start-up warnings (token authentication, ...) do not concern a run: with configure_logging=False ray.init
    # leaves the "ray" logger without handlers, and quiet_ray keeps them from propagating to the console meanwhile.
    with quiet_ray(Path(cfg.save_dir) / name / "ray.log"):
        ray.init(address=ray_address(args), configure_logging=False, log_to_driver=True)
    run_id = mlflow_run(cfg, tracking_uri, name, resume=bool(args.resume))
    trainer = build_trainer(
        cfg,
        name=name,
        storage_path=str(Path(cfg.save_dir).resolve()),
        run_id=run_id,
        tracking_uri=tracking_uri,
        max_failures=args.max_failures,
    )
    with stop_on_signals() as stop:
        try:
            result = fit_in_a_thread(trainer)
        except BaseException as err:  # a failure ends the run FAILED with its reason; SIGINT or SIGTERM ends it KILLED
            if stop.signum is not None:
                end_running_as_killed(tracking_uri, [run_id], stop.reason)
                print(
                    f"\nrun {name} {stop.reason}; resume it with: python study/train.py --resume {name} --save_dir {cfg.save_dir}",
                    file=sys.stderr,
                )
                return stop.exit_code
            end_run(tracking_uri, run_id, failed_reason=f"{type(err).__name__}: {err}")
            raise
    end_run(tracking_uri, run_id)
    ray.shutdown()  # the workers' last lines come before the summary, not after it
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
