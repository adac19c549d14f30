"""How `analysis` load and table time grow with the study: a study of 5,000 runs in real MLflow stores.

The study is written straight into MLflow's own SQL schema (MLflow's SqlAlchemyStore creates the
schema and the experiment, then one multi-row insert per table), shaped as run_sweep writes it:
a study run, N trial runs (the params of a real quickstart config, tags, --epochs values of each
per-epoch metric, the final metrics) and one kNN evaluation run under each trial. Then, for each
store, ``analysis.load.load_study`` and ``python -m analysis tables`` (output discarded) are timed
in a fresh process each time, as a user runs them, imports not counted, --repeats times each:

    sqlite           the tracking URI is the SQLite file itself (a local study's default)
    postgres         the tracking URI is the PostgreSQL database itself (Debian's postgresql,
                     started here in a temporary folder on a free port and stopped at the end):
                     how docs/cluster.md has large studies analysed
    server-sqlite    ``mlflow server`` on that SQLite file, over HTTP (docs/cluster.md's head)
    server-postgres  ``mlflow server`` on PostgreSQL, over HTTP (what the trials write through)

A server store is measured once per ``--server-apps``: ``nce-study`` (``--app-name nce-study``,
study/tracking_server.py, what docs/cluster.md starts) and ``mlflow`` (MLflow's app as it comes),
both on the same database at once, their table runs alternating.

    python benchmarks/scale_analysis.py                      # 2,500 trials (5,001 runs), every store
    python benchmarks/scale_analysis.py --trials 5000 --stores sqlite postgres

Goal: the tables of a study of 5,000 runs (2,500 trials, each with its evaluation run) in under
10 s; ``--trials 5000`` doubles the study to show how time grows. Where a store misses it, --profile
writes the cProfile of one table run (top functions by cumulative time) into the result.
PostgreSQL needs ``pip install -e .[postgres]`` (psycopg2).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from benchmarks.common import median, record, report_header  # noqa: E402
from trainables.spec.losses import CATALOG  # noqa: E402

STUDY = "scale"
EXPERIMENT = "nce-study"
STORES = ("sqlite", "postgres", "server-sqlite", "server-postgres")
SERVER_APPS = ("nce-study", "mlflow")
PG_BIN = Path("/usr/lib/postgresql/15/bin")
EPOCH_METRICS = ("train_loss", "pos_prob", "grad_scale", "lr_now", "images_per_s", "val_knn_acc")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def study_rows(trials: int, epochs: int, experiment_id: int) -> dict[str, list[dict[str, Any]]]:
    """Rows of MLflow's runs, tags, params, metrics and latest_metrics tables for the whole study."""
    from search_spaces import PRESETS
    from trainables.integration.tracking import pretrain_params
    from trainables.spec import run_schema as rs
    from trainables.spec.pretrain_config import from_dict
    from trainables.spec.study_context import trial_config

    preset = PRESETS["quickstart"]
    rows: dict[str, list[dict[str, Any]]] = {k: [] for k in ("runs", "tags", "params", "metrics", "latest_metrics")}
    now = int(time.time() * 1000)

    def run(name: str, tags: dict[str, str], params: dict[str, Any], metrics: list[tuple[str, float, int]], start: int) -> str:
        run_id = uuid.uuid4().hex
        rows["runs"].append(
            {
                "run_uuid": run_id,
                "name": name,
                "source_type": "LOCAL",
                "source_name": "",
                "entry_point_name": "",
                "user_id": "bench",
                "status": "FINISHED",
                "start_time": start,
                "end_time": start + 1000,
                "source_version": "",
                "lifecycle_stage": "active",
                "artifact_uri": f"mlflow-artifacts:/{experiment_id}/{run_id}/artifacts",
                "experiment_id": experiment_id,
            }
        )
        rows["tags"] += [{"key": k, "value": v, "run_uuid": run_id} for k, v in tags.items()]
        rows["params"] += [{"key": k, "value": str(v), "run_uuid": run_id} for k, v in params.items() if v is not None]
        latest: dict[str, tuple[float, int]] = {}
        for key, value, step in metrics:
            rows["metrics"].append(
                {"key": key, "value": value, "timestamp": start + step, "step": step, "is_nan": False, "run_uuid": run_id}
            )
            latest[key] = (value, step)
        rows["latest_metrics"] += [
            {"key": k, "value": v, "timestamp": start + s, "step": s, "is_nan": False, "run_uuid": run_id} for k, (v, s) in latest.items()
        ]
        return run_id

    study = run(STUDY, {rs.KIND: rs.KIND_STUDY, rs.STUDY: STUDY, rs.PRESET: "quickstart"}, {"preset": "quickstart"}, [], now)
    losses, batches = tuple(CATALOG), (32, 64, 128, 256, 512)
    configs: dict[tuple[str, int], dict[str, Any]] = {}  # validating a config costs ms: once per grid cell
    for i in range(trials):
        loss, batch = losses[i % 5], batches[(i // 5) % 5]
        if (loss, batch) not in configs:
            configs[loss, batch] = pretrain_params(
                from_dict(trial_config(preset.fixed | {"epochs": epochs}, preset.per_loss, {"loss": loss, "batch_size": batch}))
            )
        acc = 0.5 + 0.4 * ((i * 7919) % 1000) / 1000
        per_epoch = [(m, acc * e / epochs, e) for e in range(1, epochs + 1) for m in EPOCH_METRICS]
        final = [
            (rs.M_FINAL_VAL_KNN, acc, 0),
            (rs.M_BEST_VAL_KNN, acc, 0),
            (rs.M_WALL_CLOCK, 60.0, 0),
            (rs.M_DEVICE_HOURS, 0.02, 0),
            (rs.M_EPOCHS_DONE, epochs, 0),
        ]
        tags = {
            rs.KIND: rs.KIND_PRETRAIN,
            rs.STUDY: STUDY,
            rs.TRIAL_ID: f"t{i:05d}",
            rs.PARENT: study,
            rs.STATUS: rs.STATUS_COMPLETED,
            rs.CODE_VERSION: "bench",
        }
        trial = run(f"trial-{i}", tags, configs[loss, batch] | {rs.P_SEED: i // 25}, per_epoch + final, now + 10 * i)
        eval_tags = {rs.KIND: rs.KIND_EVAL, rs.STUDY: STUDY, rs.PARENT: trial}
        eval_params = {rs.P_EVAL_MODE: "knn", rs.P_PRETRAIN_RUN_ID: trial, rs.P_CHECKPOINT_EPOCH: epochs}
        eval_metrics = [
            (rs.M_TEST_AT_BEST_VAL, acc, 0),
            (rs.M_BEST_VAL_ACC, acc, 0),
            (rs.M_BEST_EPOCH, epochs, 0),
            (rs.M_MAX_TEST_OVER_EPOCHS, acc, 0),
        ]
        run(f"eval-{i}", eval_tags, eval_params, eval_metrics, now + 10 * i + 5)
    return rows


def populate(db_uri: str, artifacts: Path, trials: int, epochs: int) -> tuple[int, float]:
    """MLflow's schema (through its own store), then the study's rows; (runs written, seconds)."""
    from mlflow.store.tracking.dbmodels.models import (
        SqlLatestMetric,
        SqlMetric,
        SqlParam,
        SqlRun,
        SqlTag,
    )
    from mlflow.store.tracking.sqlalchemy_store import SqlAlchemyStore

    started = time.perf_counter()
    store = SqlAlchemyStore(db_uri, str(artifacts))
    experiment_id = int(store.create_experiment(EXPERIMENT, artifact_location=str(artifacts)))
    rows = study_rows(trials, epochs, experiment_id)
    tables = {"runs": SqlRun, "tags": SqlTag, "params": SqlParam, "metrics": SqlMetric, "latest_metrics": SqlLatestMetric}
    with store.engine.begin() as conn:
        for name, model in tables.items():
            for start in range(0, len(rows[name]), 5000):
                conn.execute(model.__table__.insert(), rows[name][start : start + 5000])
    store.engine.dispose()
    return len(rows["runs"]), time.perf_counter() - started


@contextlib.contextmanager
def mlflow_server(backend: str, root: Path, app: str) -> Iterator[str]:
    port = free_port()
    root.mkdir(exist_ok=True)
    command = [
        str(Path(sys.executable).with_name("mlflow")),
        "server",
        *(["--app-name", app] if app != "mlflow" else []),
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--workers",
        "1",
        "--backend-store-uri",
        backend,
        "--artifacts-destination",
        str(root / "artifacts"),
    ]
    env = os.environ | {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    with (root / "server.log").open("ab") as log:
        process = subprocess.Popen(command, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while True:
            with contextlib.suppress(OSError):
                urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=5).close()
                break
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"mlflow server on {backend} did not start:\n{(root / 'server.log').read_text()[-3000:]}")
            time.sleep(0.5)
        yield f"http://127.0.0.1:{port}"
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        process.wait(timeout=60)


def as_postgres(argv: list[str]) -> list[str]:
    """PostgreSQL refuses to run as root: its commands run as the ``postgres`` user then."""
    return ["runuser", "-u", "postgres", "--", *argv] if os.geteuid() == 0 else argv


@contextlib.contextmanager
def postgres(root: Path) -> Iterator[str]:
    """A throwaway PostgreSQL cluster with an ``mlflow`` database; its URI."""
    data, port = root / "pgdata", free_port()
    data.mkdir()
    if os.geteuid() == 0:
        shutil.chown(data, "postgres", "postgres")
    subprocess.run(as_postgres([str(PG_BIN / "initdb"), "-D", str(data), "-A", "trust", "-U", "postgres"]), check=True, capture_output=True)
    subprocess.run(
        as_postgres(
            [
                str(PG_BIN / "pg_ctl"),
                "-D",
                str(data),
                "-w",
                "-l",
                str(data / "log"),
                "-o",
                f"-p {port} -k {data} -c listen_addresses=127.0.0.1",
                "start",
            ]
        ),
        check=True,
        capture_output=True,
    )
    try:
        subprocess.run(as_postgres([str(PG_BIN / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres", "mlflow"]), check=True)
        yield f"postgresql+psycopg2://postgres@127.0.0.1:{port}/mlflow"  # SQLAlchemy 2.1 defaults to psycopg 3
    finally:
        subprocess.run(as_postgres([str(PG_BIN / "pg_ctl"), "-D", str(data), "-m", "fast", "stop"]), capture_output=True)


TIMED = """
import contextlib, cProfile, io, json, pstats, sys, time
from analysis.__main__ import main
from analysis.load import load_study
from analysis import plots, render, report  # what `tables` imports, loaded before the clock starts

study, uri, mode = sys.argv[1:]
tables = ["tables", "--study", study, "--tracking-uri", uri, "--eval", "knn"]
if mode == "profile":
    profiler = cProfile.Profile()
    with contextlib.redirect_stdout(io.StringIO()):
        profiler.runcall(main, tables)
    pstats.Stats(profiler).sort_stats("cumulative").print_stats(25)
    sys.exit(0)
started = time.perf_counter()
rows = len(load_study(study, uri, eval_mode="knn"))
loaded = time.perf_counter() - started
started = time.perf_counter()
with contextlib.redirect_stdout(io.StringIO()):
    assert main(tables) == 0
print(json.dumps([loaded, time.perf_counter() - started, rows]))
"""


def fresh_process(uri: str, mode: str) -> str:
    """The stdout of TIMED (``mode``: time or profile) in a fresh process, as a user runs `analysis`,
    so that nothing this process holds weighs on what is measured."""
    done = subprocess.run(
        [sys.executable, "-c", TIMED, STUDY, uri, mode], cwd=REPO, env=os.environ | {"PYTHONPATH": str(REPO)}, capture_output=True, text=True, check=False
    )
    if done.returncode != 0:
        raise RuntimeError(f"{mode} of `analysis tables` on {uri} failed:\n{done.stderr[-3000:]}")
    return done.stdout


def tables_once(uri: str) -> tuple[float, float, int]:
    """(load_study seconds, `python -m analysis tables` seconds, rows loaded); imports not timed."""
    loaded, tabled, rows = json.loads(fresh_process(uri, "time").strip().splitlines()[-1])
    return loaded, tabled, rows


def profile_tables(uri: str) -> str:
    """The cProfile of one `tables` run (top functions by cumulative time)."""
    return fresh_process(uri, "profile")


def measure(store: str, root: Path, args: argparse.Namespace) -> list[dict[str, Any]]:
    """One result per URI the store is read through: the database itself, or each server app."""
    folder = root / store
    folder.mkdir()
    with contextlib.ExitStack() as stack:
        db = stack.enter_context(postgres(folder)) if store.endswith("postgres") else f"sqlite:///{folder / 'mlflow.db'}"
        runs, fill_s = populate(db, folder / "artifacts", args.trials, args.epochs)
        if store.startswith("server-"):
            uris = {f"{store} ({app} app)": stack.enter_context(mlflow_server(db, folder / app, app)) for app in args.server_apps}
        else:
            uris = {store: db}
        if args.warm_up:
            for uri in uris.values():
                tables_once(uri)  # imports, the server's first queries
        timings: dict[str, list[tuple[float, float, int]]] = {label: [] for label in uris}
        for _ in range(args.repeats):  # alternating, so that a change in the machine's load falls on each alike
            for label, uri in uris.items():
                timings[label].append(tables_once(uri))
        results = []
        for label, uri in uris.items():
            result = {
                "store": label,
                "runs": runs,
                "populate_s": round(fill_s, 1),
                "rows": timings[label][0][2],
                "load_s": [round(t[0], 2) for t in timings[label]],
                "tables_s": [round(t[1], 2) for t in timings[label]],
            }
            if args.profile:
                result["profile"] = profile_tables(uri)
            print(
                f"{label:30s} {runs} runs ({result['rows']} trials), filled in {result['populate_s']} s; "
                f"load_study {median(result['load_s']):.2f} s, tables {median(result['tables_s']):.2f} s (medians of {args.repeats})",
                flush=True,
            )
            if args.profile:
                print(result["profile"], flush=True)
            results.append(result)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--trials", type=int, default=2500, help="trials, each with one kNN evaluation run")
    parser.add_argument("--epochs", type=int, default=10, help="values of each per-epoch metric per trial")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--stores", nargs="+", choices=STORES, default=list(STORES))
    parser.add_argument("--server-apps", nargs="+", choices=SERVER_APPS, default=list(SERVER_APPS), help="the server stores' --app-name")
    parser.add_argument("--profile", action="store_true", help="add a cProfile of one table run per store")
    parser.add_argument("--no-warm-up", dest="warm_up", action="store_false", help="time the first load too (imports included)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a stopped run still stops its PostgreSQL and server
    report = report_header("scale_analysis", __file__, argv, packages=("mlflow", "pandas", "sqlalchemy", "psycopg2-binary"))
    report["load_average"] = os.getloadavg()
    root = Path(tempfile.mkdtemp(prefix="nce-scale-"))
    if os.geteuid() == 0:
        os.chmod(root, 0o755)  # the postgres user reaches its data folder inside
    try:
        report["stores"] = [result for store in args.stores for result in measure(store, root, args)]
    finally:
        shutil.rmtree(root, ignore_errors=True)
    cells = [f"{r['store']}: load {median(r['load_s']):.1f} s, tables {median(r['tables_s']):.1f} s" for r in report["stores"]]
    settings = (
        f"{args.trials} trials + {args.trials} kNN eval runs, {args.epochs} epochs x {len(EPOCH_METRICS)} metrics; "
        f"each timing in a fresh process; median of {args.repeats}"
    )
    record("scale_analysis", report, settings, "; ".join(cells) + f" (load avg {report['load_average'][0]:.1f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
