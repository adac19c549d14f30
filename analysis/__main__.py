"""Command line for a study's tables, plots and report.

    python -m analysis tables --study NAME [--format md|csv|latex] [--out DIR] [--tracking-uri URI]
    python -m analysis tables --study NAME --format html --out DIR
    python -m analysis plots  --study NAME --out DIR [--runs RUN_ID ...]
    python -m analysis report --study NAME --out DIR [--no-log]
    python -m analysis compare STUDY STUDY... [--pool | --no-pool] [--out DIR]
    python -m analysis mcnemar --study NAME --trial RUN_NAME --trial RUN_NAME
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path

from analysis.labels import METRIC_LABELS
from trainables.spec import run_schema as rs
from trainables.spec.eval_config import EVAL_MODES

# The names of analysis/render.py's FORMATS, kept here so that --help and argument errors answer
# without importing pandas, MLflow or matplotlib; tests/test_cli_ux.py checks they are the same.
TABLE_FORMATS = ("md", "csv", "latex")

_EPILOG = """examples (on studies started as python study/run_sweep.py --preset PRESET --name PRESET):
  python -m analysis tables --study cifar10-cpu --tracking-uri sqlite:///mlflow.db
  python -m analysis tables --study cifar10-cpu --format latex --out paper/tables
  python -m analysis tables --study quickstart --format html --out reports/quickstart
  python -m analysis plots --study cifar10-cpu --out plots/
  python -m analysis report --study cifar10-cpu --out reports/cifar10-cpu
  python -m analysis compare cifar10-cpu cifar10-cpu-tuned --out reports/compare
  python -m analysis mcnemar --study cifar10-cpu --trial flatnce-b32-m1-lr0.075-s0 --trial infonce-b32-m1-lr0.075-s0
"""


def main(argv: list[str] | None = None) -> int:
    """Run the command line; returns the exit status."""
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "tables" and args.format == "html" and args.out is None:
        # The page embeds its plots (hundreds of kB): it belongs in a file, not on a terminal.
        parser.error("tables --format html needs --out DIR to write tables.html into")
    _check_names(parser, args)
    from analysis.load import (
        StudyNotFoundError,  # pandas and MLflow: only once the arguments are good
    )
    from analysis.mcnemar import PredictionsMissingError
    from trainables.integration.tracking import TrackingUnavailableError

    try:
        _check_store(args.tracking_uri)
        if getattr(args, "study", None) and args.eval is None:
            from analysis.load import study_eval_mode

            args.eval = study_eval_mode(args.study, args.tracking_uri)  # the tables follow the study's own evaluation
        return _COMMANDS[args.command](args)
    except (StudyNotFoundError, PredictionsMissingError, TrackingUnavailableError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 2


def _check_names(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """compare needs two studies or more, each once; mcnemar two different trials."""
    if args.command == "compare":
        if len(args.studies) < 2:
            parser.error(f"compare needs two studies or more; got {len(args.studies)}: {' '.join(args.studies)}")
        repeated = sorted({name for name in args.studies if args.studies.count(name) > 1})
        if repeated:
            parser.error(f"compare: each study once; repeated: {', '.join(repeated)}")
    if args.command == "mcnemar" and (len(args.trial) != 2 or args.trial[0] == args.trial[1]):
        parser.error(f"mcnemar needs --trial twice, two different trials; got {args.trial}")


def _check_store(uri: str | None) -> None:
    """A store that is not there is named, not created (reading must write nothing) or retried for minutes."""
    from trainables.integration.tracking import (
        TrackingUnavailableError,
        check_reachable,
    )

    if uri and uri.startswith("sqlite:///") and not Path(uri.removeprefix("sqlite:///")).is_file():
        raise TrackingUnavailableError(f"tracking_uri={uri!r}: no MLflow store at {uri.removeprefix('sqlite:///')}")
    if uri:
        check_reachable(uri)


def _tables(args: argparse.Namespace) -> int:
    import mlflow

    from analysis import plots, render
    from analysis.conditions import conditions
    from analysis.load import load_baselines, load_study
    from analysis.report import (
        judged_claims,
        page,
        summary_items,
        write_table,
        write_text,
    )
    from analysis.tables import all_tables

    trials = load_study(args.study, args.tracking_uri, eval_mode=args.eval)
    baselines = load_baselines(args.study, args.tracking_uri, eval_mode=args.eval)
    tables = all_tables(trials, args.metric, baselines)
    if args.format == "html":
        figures = plots.study_figures(trials, args.tracking_uri, args.metric, baselines=baselines)
        uri = args.tracking_uri or mlflow.get_tracking_uri()
        claims, notes = judged_claims(trials, baselines, uri, args.metric)
        text = page(trials, tables, figures, summary_items(trials, baselines, uri), conditions(trials, args.metric), claims, notes)
        print(write_text(args.out / TABLES_HTML, text))
        return 0
    if args.out is None:
        print("\n".join(render.FORMATS[args.format](table) for table in tables.values()))
        return 0
    for table in tables.values():
        for path in write_table(table, args.out, (args.format,)):
            print(path)
    return 0


def _plots(args: argparse.Namespace) -> int:
    from analysis import plots
    from analysis.load import load_baselines, load_study

    trials = load_study(args.study, args.tracking_uri, eval_mode=args.eval)
    baselines = load_baselines(args.study, args.tracking_uri, eval_mode=args.eval)
    figures = plots.study_figures(trials, args.tracking_uri, args.metric, curve_runs=args.runs, baselines=baselines)
    for stem, figure in figures.items():
        for path in plots.save(figure, args.out, stem):
            print(path)
    return 0


def _report(args: argparse.Namespace) -> int:
    from analysis.report import write_report

    report = write_report(
        args.study, args.tracking_uri, args.out, log_to_mlflow=args.log, eval_mode=args.eval, metric=args.metric
    )
    print(report.claims_markdown)
    print(report.batch_size_markdown)
    print(f"wrote {len(report.paths)} files; open {report.html}")
    if report.artifact_uri:
        print(f"logged to {report.artifact_uri}")
    return 0


def _compare(args: argparse.Namespace) -> int:
    from analysis import compare
    from analysis.report import write_text

    stores = dict(args.store or [])
    unknown = sorted(set(stores) - set(args.studies))
    if unknown:
        print(f"--store {unknown[0]}=...: {unknown[0]!r} is not among the studies compared ({', '.join(args.studies)})", file=sys.stderr)
        return 2
    uris = [stores.get(name, args.tracking_uri) for name in args.studies]
    for uri in set(uris):
        _check_store(uri)
    if args.eval is None:
        from analysis.load import study_eval_mode

        modes = {name: study_eval_mode(name, uri) for name, uri in zip(args.studies, uris)}
        if len(set(modes.values())) > 1:
            print(f"--eval: the studies were evaluated in different modes ({modes}); name the one to compare", file=sys.stderr)
            return 2
        args.eval = modes[args.studies[0]]
    studies = compare.load_studies(args.studies, uris, eval_mode=args.eval)
    result = compare.compare(studies, args.metric, pool=args.pool)
    print(compare.to_markdown(result))
    for extension, render in compare.FORMATS.items() if args.out else ():
        print(write_text(args.out / f"{COMPARE_STEM}.{extension}", render(result)))
    return 0


def _mcnemar(args: argparse.Namespace) -> int:
    from analysis.mcnemar import mcnemar, to_markdown, trial_predictions

    a, b = (trial_predictions(args.study, trial, args.tracking_uri, eval_mode=args.eval) for trial in args.trial)
    print(to_markdown(mcnemar(a, b), args.study))
    return 0


TABLES_HTML = "tables.html"
COMPARE_STEM = "compare"
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {
    "tables": _tables, "plots": _plots, "report": _report, "compare": _compare, "mcnemar": _mcnemar,
}


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m analysis",
        description="Comparison tables and plots of an NCE study, read from its MLflow runs.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    tables = _command(
        commands,
        "tables",
        "accuracy vs batch size, views, compute and lr; reported numbers beside ours",
        "Cells are the test accuracy at the validation-selected epoch, mean and 95 % bootstrap interval over "
        "seeds, with a random-init row and paired differences; failed and early-stopped trials are left out "
        "of the means and counted under each table.",
    )
    _common(tables)
    tables.add_argument(
        "--format", choices=[*TABLE_FORMATS, "html"], default="md",
        help="md (default), csv, latex (booktabs) or html (one page with the tables and plots; needs --out)",
    )
    tables.add_argument(
        "--out", type=Path, help="folder to write one file per table into (html: tables.html); default: print"
    )
    plot = _command(
        commands,
        "plots",
        "accuracy vs batch size, vs views and compute; training curves",
        "Writes each plot as PNG and SVG.",
    )
    _common(plot)
    plot.add_argument("--out", type=Path, required=True, help="folder for the PNG and SVG files")
    plot.add_argument(
        "--runs", nargs="+", metavar="RUN_ID",
        help="trial run ids for the training curves; default: per loss, the best trial at the "
        "smallest and largest batch size",
    )
    report = _command(
        commands,
        "report",
        "everything: tables (md, csv, tex), plots (png, svg) and report.html, logged to MLflow",
        "What the sweep runs at the end of a study; the files are also logged under report/ in the study's "
        "parent MLflow run.",
    )
    _common(report)
    report.add_argument("--out", type=Path, required=True, help="folder to write the report into")
    report.add_argument(
        "--no-log", dest="log", action="store_false", help="do not log the files to the study's MLflow run"
    )
    compare = _command(
        commands,
        "compare",
        "several studies side by side: cell by cell, claim by claim, pooled where they are replicates",
        "Replicates (the same preset, evaluation and trial configurations, no seed in common) are also pooled and "
        "analysed as one study; claims or differences whose verdicts point in opposite directions are flagged first.",
    )
    compare.add_argument("studies", nargs="+", metavar="STUDY", help="two studies or more, by name or study run id")
    _common(compare, study=False)
    pooling = compare.add_mutually_exclusive_group()
    pooling.add_argument(
        "--pool", dest="pool", action="store_const", const=True, default=None,
        help="pool the studies (refused unless they are replicates); default: pool where they are",
    )
    pooling.add_argument("--no-pool", dest="pool", action="store_const", const=False, help="never pool")
    compare.add_argument("--out", type=Path, help="folder to write compare.md, compare.csv and compare.html into")
    compare.add_argument(
        "--store", action="append", type=_study_store, metavar="STUDY=URI",
        help="the tracking store of one study, where the studies were run into separate stores (repeatable; "
        "the others use --tracking-uri)",
    )
    per_image = _command(
        commands,
        "mcnemar",
        "two trials of a study compared image by image on the test set",
        "An exact McNemar test on the discordant test images and a test-set bootstrap interval of the accuracy "
        "difference, from the test predictions each evaluation records at its validation-selected epoch.",
    )
    _common(per_image, metric=False)
    per_image.add_argument(
        "--trial", action="append", required=True, metavar="RUN_NAME",
        help="a trial's MLflow run name (or run id); give it twice",
    )
    return parser


def _command(
    commands: argparse._SubParsersAction, name: str, summary: str, details: str
) -> argparse.ArgumentParser:
    return commands.add_parser(name, help=summary, description=f"{summary[0].upper()}{summary[1:]}. {details}")


def _study_store(text: str) -> tuple[str, str]:
    """``STUDY=URI`` of --store."""
    name, sep, uri = text.partition("=")
    if not (sep and name and uri):
        raise argparse.ArgumentTypeError(f"--store={text!r} is not allowed; it must be STUDY=URI, e.g. my-study=sqlite:///other.db")
    return name, uri


def _common(parser: argparse.ArgumentParser, study: bool = True, metric: bool = True) -> None:
    if study:
        parser.add_argument("--study", required=True, help="the study's name (nce.study tag) or its study run id")
    parser.add_argument("--tracking-uri", help="MLflow tracking URI; default: MLflow's own (MLFLOW_TRACKING_URI)")
    parser.add_argument(
        "--eval", choices=EVAL_MODES,
        help="which evaluation runs fill the cells (default: the mode the study's evaluations ran in; "
        "a study evaluated in several modes needs one named)",
    )
    if not metric:  # a per-image comparison reads predictions, not an accuracy metric
        return
    parser.add_argument(
        "--metric", choices=list(METRIC_LABELS), default=rs.M_TEST_AT_BEST_VAL,
        help=f"accuracy to report (default {rs.M_TEST_AT_BEST_VAL}; "
        f"{rs.M_MAX_TEST_OVER_EPOCHS} is test-set-selected and labelled so)",
    )


if __name__ == "__main__":
    sys.exit(main())
