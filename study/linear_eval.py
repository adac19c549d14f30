"""Evaluate pretrained checkpoints (linear probe, fine-tuning or kNN), each as a child MLflow run.

    python study/linear_eval.py --model_path checkpoints/RUN/epoch_00003
    python study/linear_eval.py --checkpoint_dir checkpoints/RUN --mode knn
    python study/linear_eval.py --model_path ... --recipe flatclr --epochs 100 --batch_size 512
    python study/linear_eval.py --study NAME --trial infonce-b32-m1-lr0.002-s0 --mode knn   # a sweep trial, by its MLflow run name

The epoch is chosen on the validation split held out of the training set; the test accuracy
at that epoch is the reported number (test_acc_at_best_val). The run is a child of the
checkpoint's pretraining run in the MLflow UI.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from study.cli import (
    add_config_flags,
    given_fields,
    reachable_tracking_uri,
    text_arg,
    usage_error,
)
from trainables.spec.eval_config import EvalConfig, eval_from_dict
from trainables.spec.validation import ConfigError, problem

STATE_FILE = "state.pt"  # trainables.run.checkpoint's, named here so that a bad path is refused without torch


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="study/linear_eval.py", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter, allow_abbrev=False
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--model_path", "--model-path", type=text_arg("model_path"), help="a checkpoint directory (epoch_NNNNN) or its state.pt"
    )
    where.add_argument(
        "--checkpoint_dir", "--checkpoint-dir", type=text_arg("checkpoint_dir"), help="a run's folder: evaluate every checkpoint in it"
    )
    where.add_argument(
        "--trial",
        metavar="RUN_NAME",
        type=text_arg("trial"),
        help="a trial of --study, by its MLflow run name: evaluate its last checkpoint",
    )
    parser.add_argument(
        "--study", type=text_arg("study"), help="the study whose --trial is evaluated (its name, as given to run_sweep.py --name)"
    )
    parser.add_argument(
        "--log_dir",
        "--log-dir",
        type=text_arg("log_dir"),
        default="logs",
        help="where a JSON summary per evaluation is written (default: logs)",
    )
    parser.add_argument(
        "--tracking_uri",
        "--tracking-uri",
        type=text_arg("tracking_uri"),
        help="MLflow tracking URI (default: MLFLOW_TRACKING_URI, else sqlite:///./mlflow.db)",
    )
    add_config_flags(parser, EvalConfig)
    return parser


def checkpoints_to_evaluate(args: argparse.Namespace) -> list[Path]:
    """The checkpoint folders the flags name; none yet for --trial, which the tracking store resolves."""
    if args.trial is not None:
        if not args.study:
            raise ConfigError(problem("study", args.study, "--trial names a trial of a study: give --study NAME"))
        return []
    if args.model_path is not None:
        path = Path(args.model_path)
        path = path.parent if path.name == STATE_FILE else path
        if not (path / STATE_FILE).is_file():
            raise ConfigError(problem("model_path", args.model_path, f"it must be a checkpoint folder holding {STATE_FILE}"))
        return [path]
    folder = Path(args.checkpoint_dir)
    found = sorted(p for p in folder.glob("epoch_*") if p.is_dir()) if folder.is_dir() else []
    if not found:
        raise ConfigError(problem("checkpoint_dir", args.checkpoint_dir, "it must be a run's folder holding epoch_* checkpoint folders"))
    return found


def evaluate_one(checkpoint: Path, eval_cfg: EvalConfig, tracking_uri: str, log_dir: Path) -> dict[str, float]:
    import torch

    from trainables.run.evaluation import evaluate_and_record, load_pretrained
    from trainables.spec.files import write_atomically

    device = torch.device("cuda" if eval_cfg.gpu else "cpu")
    p = load_pretrained(checkpoint, eval_cfg, device)
    result = evaluate_and_record(p, eval_cfg, device, tracking_uri=tracking_uri, checkpoint=str(checkpoint))
    log_dir.mkdir(parents=True, exist_ok=True)
    summary = log_dir / f"{eval_cfg.mode}-{checkpoint.parent.name}-{checkpoint.name}.json"
    write_atomically(summary, json.dumps({"checkpoint": str(checkpoint)} | result, indent=2))
    return result


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        eval_cfg = eval_from_dict(given_fields(args, EvalConfig))
        checkpoints = checkpoints_to_evaluate(args)
        tracking_uri = reachable_tracking_uri(args.tracking_uri)
        if args.trial is not None:
            from study.study_run import trial_checkpoint

            checkpoints = [trial_checkpoint(tracking_uri, args.study, args.trial)]
    except ConfigError as err:
        return usage_error(err)
    from tqdm import tqdm

    from study.stopping import stop_on_signals
    from trainables.run.checkpoint import CorruptCheckpointError
    from trainables.spec import run_schema as rs
    from trainables.spec.dataset_errors import DatasetNotFoundError, UnreadableImageError

    for checkpoint in tqdm(checkpoints, desc="checkpoints", disable=len(checkpoints) == 1):
        with stop_on_signals() as stop:  # SIGINT or SIGTERM: the evaluation's run ends KILLED, the signal its reason
            try:
                result = evaluate_one(checkpoint, eval_cfg, tracking_uri, Path(args.log_dir))
            except (CorruptCheckpointError, DatasetNotFoundError, UnreadableImageError, ConfigError) as err:
                return usage_error(err)
            except KeyboardInterrupt:
                if stop.signum is None:
                    raise
                print(f"\nevaluation of {checkpoint} {stop.reason}; run the same command again to evaluate it", file=sys.stderr)
                return stop.exit_code
        print(
            f"{checkpoint}: {eval_cfg.mode} test accuracy {result[rs.M_TEST_AT_BEST_VAL]:.4f} at the validation-selected epoch "
            f"(validation {result[rs.M_BEST_VAL_ACC]:.4f}); MLflow run {result['eval_run_id']} (mlflow ui --backend-store-uri {tracking_uri})"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
