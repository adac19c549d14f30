"""A three-node Ray cluster on this machine, started and used as docs/cluster.md's laptop section says.

The head holds no CPUs and the TRAIN_DRIVER resource, as cluster.yaml's head does, so Tune trials
(and their Train controllers) run there while each trial's two Ray Train workers (0.5 CPU each)
fill one of the two 1-CPU worker nodes. A real ``mlflow server`` is the tracking URI and one folder
is the shared storage. Studies are Ray Jobs: ``ray job submit ... -- python study/run_sweep.py``.
Then a worker node is SIGKILLed mid-trial (its raylet, workers and agents), and a driver job is
stopped with ``ray job stop`` and the study resumed: each time every trial is in MLflow once, each
epoch once, the interrupted trial goes on from its last checkpoint, and the table is the
uninterrupted study's.

The commands are built here once; ``test_the_laptop_section_shows_the_commands_the_tests_run``
checks that docs/cluster.md shows them as they are run (with the section's ports and folder).
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient
from scripts import REPO, overrides  # tests/ helpers, via conftest

from trainables.spec import run_schema as rs

BIN = Path(sys.executable).parent  # ray, mlflow and python of the project's environment
DOCS = REPO / "docs" / "cluster.md"
EPOCHS = 3
STALL = "stall:epoch=2:step=0:batch=128:seconds=900"  # holds the batch-128 trial after its epoch-1 checkpoint
# Trials' Train controllers run on the head; a worker group that waits for a replacement node must
# not hit Train's default 60 s start timeout (cluster.yaml sets the same on its head).
HEAD_ENV = {"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S": "600"}


@dataclass(frozen=True)
class Layout:
    """Ports and folders of the cluster; the defaults are the ones docs/cluster.md shows."""

    root: str = "/tmp/nce-cluster"  # storage/ (Tune + Train) and mlflow/ (store + artifacts)
    gcs: int = 6379
    dashboard: int = 8265
    client: int = 10001
    mlflow: int = 5000
    # Each node's dashboard agent needs a port of its own (Ray's default, 52365, is the head's); the
    # other ports Ray picks by itself.
    agents: tuple[int, ...] = (52365, 52366, 52367)  # head, worker-1, worker-2 (then replacements)

    @property
    def tracking_uri(self) -> str:
        return f"http://127.0.0.1:{self.mlflow}"

    @property
    def jobs(self) -> str:
        return f"http://127.0.0.1:{self.dashboard}"


def mlflow_command(lay: Layout) -> list[str]:
    return [
        "mlflow",
        "server",
        "--app-name",
        "nce-study",
        "--host",
        "127.0.0.1",
        "--port",
        str(lay.mlflow),
        "--workers",
        "1",
        "--backend-store-uri",
        f"sqlite:///{lay.root}/mlflow/mlflow.db",
        "--artifacts-destination",
        f"{lay.root}/mlflow/artifacts",
    ]


def ray_start(lay: Layout, node: int, *flags: str) -> list[str]:
    """``ray start`` for node ``node`` of the layout (0: the head): its dashboard agent's port, a 100 MB object store."""
    common = ["--object-store-memory=100000000", f"--dashboard-agent-listen-port={lay.agents[node]}", "--disable-usage-stats"]
    return ["ray", "start", *flags, *common]


def head_command(lay: Layout) -> list[str]:
    ports = [f"--port={lay.gcs}", f"--dashboard-port={lay.dashboard}", f"--ray-client-server-port={lay.client}"]
    return ray_start(lay, 0, "--head", *ports, "--num-cpus=0", '--resources={"TRAIN_DRIVER": 8}')


def worker_command(lay: Layout, index: int) -> list[str]:
    return ray_start(lay, index, f"--address=127.0.0.1:{lay.gcs}", f"--node-name=worker-{index}", "--num-cpus=1")


def study_args(lay: Layout, name: str) -> list[str]:
    """infonce at batch 64 and 128 on digits, one seed, 3 epochs, two DDP workers per trial, a checkpoint every epoch."""
    settings = overrides(
        "loss=infonce", "batch_size=[64,128]", "seeds=1", "workers=2", "cpus_per_worker=0.5", f"epochs={EPOCHS}", "n_save_epochs=1",
        "limit_train=512", "knn_k=10", "eval.mode=knn",
    )
    return [
        "--preset", "quickstart", "--name", name, *settings, "--max-concurrent", "2", "--max-failures", "1",
        "--storage-path", f"{lay.root}/storage", "--tracking-uri", lay.tracking_uri,
    ]  # fmt: skip


def resume_args(lay: Layout, name: str) -> list[str]:
    return [
        "--resume",
        name,
        "--max-concurrent",
        "2",
        "--max-failures",
        "1",
        "--storage-path",
        f"{lay.root}/storage",
        "--tracking-uri",
        lay.tracking_uri,
    ]


# `ray job stop` sends SIGTERM, then SIGKILL after RAY_JOB_STOP_WAIT_TIME_S (3 s by default): too short for the
# driver to end its MLflow runs KILLED with the reason (the test asserts that reason).
STOP_GRACE = {"RAY_JOB_STOP_WAIT_TIME_S": "60"}


def submit_command(lay: Layout, sweep_args: list[str], *job_options: str, env: dict[str, str] | None = None) -> list[str]:
    """No ``--working-dir`` here, unlike on a real cluster: nodes on one machine share Ray's runtime-env
    folder, and an uploaded working directory was replaced under the running driver. The job runs
    in the folder ``ray start`` ran in, this checkout, from which the project is installed."""
    runtime_env = f"--runtime-env-json={json.dumps({'env_vars': STOP_GRACE | (env or {})})}"
    return ["ray", "job", "submit", f"--address={lay.jobs}", runtime_env, *job_options, "--", "python", "study/run_sweep.py", *sweep_args]


def stop_command(lay: Layout, job: str) -> list[str]:
    return ["ray", "job", "stop", f"--address={lay.jobs}", job]


def test_the_laptop_section_shows_the_commands_the_tests_run() -> None:
    section = DOCS.read_text().split("Try the cluster flow on your laptop\n", 1)[1].split("\n## ", 1)[0]
    lay = Layout()
    shown = [
        mlflow_command(lay),
        head_command(lay),
        worker_command(lay, 1),
        worker_command(lay, 2),
        submit_command(lay, study_args(lay, "laptop"), "--submission-id=laptop-1"),
        stop_command(lay, "laptop-1"),
        submit_command(lay, resume_args(lay, "laptop")),
    ]
    lines = section.replace("\\\n", " ").splitlines()
    for command in shown:
        line = shlex.join(command)
        assert any(line in " ".join(x.split()) for x in lines), f"docs/cluster.md does not show: {line}"
    assert f"{' '.join(f'{k}={v}' for k, v in HEAD_ENV.items())} {shlex.join(head_command(lay))}" in " ".join(section.split())


def test_documented_job_submissions_parse_as_ray_job_submit_and_the_sweep_do() -> None:
    from ray.dashboard.modules.job.cli import submit

    from study.run_sweep import build_parser

    lines = [" ".join(x.split()) for x in DOCS.read_text().splitlines() if x.strip().startswith("ray job submit ")]
    assert len(lines) >= 4
    for line in lines:
        params = submit.make_context("submit", shlex.split(line)[3:]).params
        assert params["address"].startswith("http://"), line
        entrypoint = list(params["entrypoint"])
        assert entrypoint[:2] == ["python", "study/run_sweep.py"], line
        build_parser().parse_args(entrypoint[2:])  # exits on an argument the sweep does not take


def test_fractional_gpus_let_trials_share_one_gpu() -> None:
    from study.plan import make_plan, max_concurrent, trial_resources
    from trainables.spec.validation import ConfigError

    shared = {"loss": ["infonce", "flatnce"], "batch_size": [512], "seeds": 1, "workers": 1, "gpus_per_worker": 0.25}
    plan = make_plan("flatnce-batch-size", shared)
    assert trial_resources(plan.configs[0])[1]["GPU"] == 0.25
    assert max_concurrent(plan.configs, {"CPU": 64.0, "GPU": 1.0}) == 4
    with pytest.raises(ConfigError, match=r"gpus_per_worker=1.5 is not allowed"):
        make_plan("flatnce-batch-size", shared | {"gpus_per_worker": 1.5})


# --- the cluster ------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_tree(root: int) -> list[int]:
    """``root`` and every process below it, found through /proc (Ray's workers start sessions of their own)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        children.setdefault(ppid, []).append(int(stat.parent.name))
    tree, todo = [], [root]
    while todo:
        pid = todo.pop()
        tree.append(pid)
        todo += children.get(pid, [])
    return tree


def kill_tree(process: subprocess.Popen) -> None:
    """SIGKILL, as a lost machine would: the launcher, its raylet, agents and every worker process.

    The launcher's session catches what a dead parent left behind; the walk down /proc catches
    the workers, which run in sessions of their own.
    """
    tree = process_tree(process.pid)
    with contextlib.suppress(ProcessLookupError):
        os.killpg(process.pid, signal.SIGKILL)
    for pid in tree:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    process.wait(timeout=60)


def get_json(url: str) -> dict:
    """A dashboard or job API answer, with the cluster's token as Ray's own clients send it."""
    headers = {"Authorization": f"Bearer {os.environ['RAY_AUTH_TOKEN']}"} if "RAY_AUTH_TOKEN" in os.environ else {}
    with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=10) as answer:
        return json.load(answer)


def wait_for(condition: Callable[[], object], timeout: float, what: str, every: float = 1.0) -> object:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            found = condition()
        except OSError:  # a server still starting
            found = None
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout:.0f} s waiting for {what}")


@dataclass
class Cluster:
    lay: Layout
    env: dict[str, str]
    logs: Path
    processes: dict[str, subprocess.Popen] = field(default_factory=dict)

    def start(self, name: str, command: list[str], env: dict[str, str] | None = None) -> None:
        """``command`` in a session of its own, ``--block``ed so that its process is the node's."""
        argv = [str(BIN / command[0]), *command[1:]] + (["--block"] if command[:2] == ["ray", "start"] else [])
        with (self.logs / f"{name}.log").open("ab") as log:
            self.processes[name] = subprocess.Popen(
                argv, env=self.env | (env or {}), stdout=log, stderr=subprocess.STDOUT, start_new_session=True, cwd=REPO
            )

    def run(self, command: list[str], timeout: float) -> subprocess.CompletedProcess:
        argv = [str(BIN / command[0]), *command[1:]]
        return subprocess.run(argv, env=self.env, cwd=REPO, capture_output=True, text=True, timeout=timeout)

    def nodes(self) -> dict[str, str]:
        """Node name -> node id of the alive nodes."""
        listed = get_json(f"{self.lay.jobs}/api/v0/nodes?detail=1&limit=100")["data"]["result"]["result"]
        return {n["node_name"]: n["node_id"] for n in listed if n["state"] == "ALIVE"}

    def add_worker(self, index: int) -> None:
        """Nodes join one at a time: two raylets starting at once on one machine race for a socket name."""
        name = f"worker-{index}"
        self.start(name, worker_command(self.lay, index))
        wait_for(lambda: name in self.nodes(), 240, f"{name} to join")

    def kill(self, name: str) -> None:
        kill_tree(self.processes.pop(name))

    def job_status(self, job: str) -> str:
        return get_json(f"{self.lay.jobs}/api/jobs/{job}")["status"]

    def job_logs(self, job: str) -> str:
        return get_json(f"{self.lay.jobs}/api/jobs/{job}/logs").get("logs", "")[-6000:]

    def server_logs(self) -> str:
        return "\n".join(f"--- {p.name}\n{p.read_text(errors='replace')[-3000:]}" for p in sorted(self.logs.glob("*.log")))


@pytest.fixture(scope="module")
def cluster() -> Iterator[Cluster]:
    root = Path(tempfile.mkdtemp(prefix="nce-cl-", dir="/tmp"))  # short: Ray's socket paths live under it
    lay = Layout(str(root), free_port(), free_port(), free_port(), free_port(), tuple(free_port() for _ in range(5)))
    logs = root / "logs"
    for folder in ("storage", "mlflow/artifacts", "logs", "ray"):
        (root / folder).mkdir(parents=True)
    # The project's bin first: the job's `python` and Ray's own processes are this environment's.
    # Token auth on, as Ray 2.61 makes it for every cluster, with a token of the test's own (the
    # docs' users generate ~/.ray/auth_token instead, which every Ray command reads the same way).
    auth = {"RAY_AUTH_MODE": "token", "RAY_AUTH_TOKEN": secrets.token_hex(32)}
    env = (
        os.environ
        | auth
        | {"PATH": f"{BIN}{os.pathsep}{os.environ['PATH']}", "RAY_TMPDIR": str(root / "ray"), "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    )
    env.pop("RAY_ADDRESS", None)
    # Train's placement-group cleaner finds the dashboard by scanning local processes for a Ray
    # cluster and takes the newest; this machine may run other Ray clusters, so name ours.
    env["RAY_API_SERVER_ADDRESS"] = lay.jobs
    c = Cluster(lay, env, logs)
    os.environ.update(auth)  # for this process's own requests to the dashboard
    try:
        c.start("mlflow", mlflow_command(lay))
        c.start("head", head_command(lay), HEAD_ENV)
        wait_for(lambda: get_json(f"{lay.jobs}/api/version"), 240, "the head's dashboard")
        for index in (1, 2):
            c.add_worker(index)
        wait_for(lambda: urllib.request.urlopen(f"{lay.tracking_uri}/health", timeout=5).status == 200, 240, "the MLflow server")
        yield c
    finally:
        for name in [n for n in c.processes if n != "head"] + (["head"] if "head" in c.processes else []):
            kill_tree(c.processes[name])
        for key in auth:
            os.environ.pop(key, None)
        shutil.rmtree(root, ignore_errors=True)


def submit(c: Cluster, job: str, sweep_args: list[str], fault: str | None = None) -> None:
    options = [f"--submission-id={job}", "--no-wait"]
    done = c.run(submit_command(c.lay, sweep_args, *options, env={"NCE_FAULT": fault} if fault else None), timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]


def wait_job(c: Cluster, job: str, timeout: float = 600) -> None:
    status = wait_for(lambda: (s := c.job_status(job)) in ("SUCCEEDED", "FAILED", "STOPPED") and s, timeout, f"job {job}", every=2)
    assert status == "SUCCEEDED", f"{job}: {status}\n{c.job_logs(job)}\n{c.server_logs()}"


def trial_runs(c: Cluster, study: str) -> list:
    client = MlflowClient(c.lay.tracking_uri)
    ids = [e.experiment_id for e in client.search_experiments()]
    return client.search_runs(ids, filter_string=f"tags.`{rs.STUDY}` = '{study}' and tags.`{rs.KIND}` = '{rs.KIND_PRETRAIN}'")


def by_batch(c: Cluster, study: str) -> dict[str, object]:
    return {r.data.params[rs.P_BATCH_SIZE]: r for r in trial_runs(c, study)}


def losses(c: Cluster, run) -> list[tuple[int, float]]:
    return sorted((m.step, m.value) for m in MlflowClient(c.lay.tracking_uri).get_metric_history(run.info.run_id, rs.M_TRAIN_LOSS))


def table(c: Cluster, study: str) -> dict[str, float]:
    return {batch: run.data.metrics[rs.M_FINAL_VAL_KNN] for batch, run in by_batch(c, study).items()}


def checkpoint_state_file(c: Cluster, study: str, run, epoch: int) -> Path:
    return Path(c.lay.root) / "storage" / study / "train" / run.data.tags[rs.TRAIN_RUN] / f"epoch_{epoch:05d}" / "state.pt"


def wait_registered(c: Cluster, study: str, epoch: int) -> None:
    """Until Ray Train's controller has registered the batch-128 trial's checkpoint of ``epoch``.

    A worker's ``ray.train.report`` returns once the checkpoint is on storage; the controller takes
    it up at its next poll (RAY_TRAIN_HEALTH_CHECK_INTERVAL_S, 2 s) and only then records it in the
    run's checkpoint_manager_snapshot.json. A node lost inside that window restarts the trial from
    the checkpoint before, as Ray Train does; the tests below are about what happens after it.
    """
    run = by_batch(c, study)["128"]
    snapshot = checkpoint_state_file(c, study, run, epoch).parent.parent / "checkpoint_manager_snapshot.json"

    def latest() -> str | None:
        with contextlib.suppress(FileNotFoundError, json.JSONDecodeError):
            return (json.loads(snapshot.read_text()).get("latest_checkpoint_result") or {}).get("checkpoint_dir_name")
        return None

    wait_for(lambda: latest() == f"epoch_{epoch:05d}", 120, f"Ray Train to register the epoch-{epoch} checkpoint of {study}")


def assert_each_trial_once_each_epoch_once(c: Cluster, study: str, reference: dict[str, list[tuple[int, float]]]) -> None:
    runs = trial_runs(c, study)
    assert len(runs) == 2 and len({r.data.tags[rs.TRIAL_ID] for r in runs}) == 2, [r.data.tags for r in runs]
    for run in runs:
        assert run.info.status == "FINISHED" and run.data.tags[rs.STATUS] == rs.STATUS_COMPLETED, run.data.tags
        got = losses(c, run)
        assert [step for step, _ in got] == list(range(1, EPOCHS + 1))  # no epoch lost or logged twice
        # The same losses as the uninterrupted study, epoch by epoch: training is deterministic on CPU.
        assert [value for _, value in got] == pytest.approx([value for _, value in reference[run.data.params[rs.P_BATCH_SIZE]]], rel=1e-5)


@pytest.fixture(scope="module")
def uninterrupted(cluster: Cluster) -> dict[str, list[tuple[int, float]]]:
    """The study as a user submits it (waiting for it, as the docs' command does), run once."""
    done = cluster.run(submit_command(cluster.lay, study_args(cluster.lay, "whole"), "--submission-id=whole"), timeout=900)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-2000:] + cluster.server_logs()
    assert "Accuracy vs batch size" in done.stdout  # the study's table, in the job's log
    return {batch: losses(cluster, run) for batch, run in by_batch(cluster, "whole").items()}


@pytest.mark.slow
def test_a_submitted_study_places_trials_on_both_worker_nodes_in_one_mlflow_tree(cluster: Cluster, uninterrupted: dict) -> None:
    runs = trial_runs(cluster, "whole")
    assert_each_trial_once_each_epoch_once(cluster, "whole", uninterrupted)
    workers = {cluster.nodes()[name] for name in ("worker-1", "worker-2")}
    assert {r.data.tags[rs.NODE_ID] for r in runs} == workers  # one trial on each worker node, none on the head
    client = MlflowClient(cluster.lay.tracking_uri)
    [study_run] = client.search_runs(
        [runs[0].info.experiment_id], filter_string=f"tags.`{rs.STUDY}` = 'whole' and tags.`{rs.KIND}` = '{rs.KIND_STUDY}'"
    )
    assert study_run.info.status == "FINISHED"
    assert all(r.data.tags[rs.PARENT] == study_run.info.run_id for r in runs)  # one tree


def stalled_in_epoch_two(cluster: Cluster, submission: str, study: str) -> None:
    """Submit ``study``, whose batch-128 trial stalls once in epoch 2, and wait until it does and
    Ray Train has registered its epoch-1 checkpoint: the moment the fault tests strike."""
    marker = Path(cluster.lay.root) / f"stalled-{study}"
    submit(cluster, submission, study_args(cluster.lay, study), fault=f"{STALL}:once={marker}")
    wait_for(marker.exists, 600, "the batch-128 trial to reach epoch 2")
    wait_registered(cluster, study, 1)


@pytest.mark.slow
def test_a_worker_node_killed_mid_trial_costs_no_epoch(cluster: Cluster, uninterrupted: dict) -> None:
    stalled_in_epoch_two(cluster, "node-kill", "node-kill")
    run = by_batch(cluster, "node-kill")["128"]
    node = run.data.tags[rs.NODE_ID]
    name = {v: k for k, v in cluster.nodes().items()}[node]
    assert name.startswith("worker-")
    assert checkpoint_state_file(cluster, "node-kill", run, 1).is_file()
    killed_at = time.time()
    cluster.kill(name)
    cluster.add_worker(3)  # a replacement node, as the autoscaler would start one
    wait_job(cluster, "node-kill")
    assert_each_trial_once_each_epoch_once(cluster, "node-kill", uninterrupted)
    after = by_batch(cluster, "node-kill")["128"]
    assert after.data.tags[rs.NODE_ID] != node  # it went on elsewhere ...
    assert checkpoint_state_file(cluster, "node-kill", after, 1).stat().st_mtime < killed_at  # ... from its epoch-1 checkpoint
    assert checkpoint_state_file(cluster, "node-kill", after, EPOCHS).stat().st_mtime > killed_at
    assert table(cluster, "node-kill") == table(cluster, "whole")


@pytest.mark.slow
def test_a_stopped_driver_job_resumes_with_each_trial_once(cluster: Cluster, uninterrupted: dict) -> None:
    stalled_in_epoch_two(cluster, "job-stop-1", "job-stop")
    stopped_at = time.time()
    done = cluster.run(stop_command(cluster.lay, "job-stop-1"), timeout=120)
    assert done.returncode == 0 and cluster.job_status("job-stop-1") == "STOPPED", done.stdout + done.stderr
    stopped = by_batch(cluster, "job-stop")["128"]  # the driver ends its running runs before it exits
    assert stopped.info.status == "KILLED" and "SIGTERM" in stopped.data.tags[rs.FAILURE_REASON], stopped.data.tags
    submit(cluster, "job-stop-2", resume_args(cluster.lay, "job-stop"))
    wait_job(cluster, "job-stop-2")
    assert_each_trial_once_each_epoch_once(cluster, "job-stop", uninterrupted)
    run = by_batch(cluster, "job-stop")["128"]
    assert checkpoint_state_file(cluster, "job-stop", run, 1).stat().st_mtime < stopped_at
    assert checkpoint_state_file(cluster, "job-stop", run, EPOCHS).stat().st_mtime > stopped_at
    assert table(cluster, "job-stop") == table(cluster, "whole")
