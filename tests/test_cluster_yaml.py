"""cluster.yaml against Ray's own launcher validation, offline, plus the project's own rules.

`ray up` runs ``prepare_config`` (merge with the provider's defaults.yaml) and then
``validate_config`` (ray-schema.json through jsonschema) before it first talks to AWS; the
test runs exactly those two. The AWS steps after them (resource auto-detection, bootstrap)
need credentials and the network, so they are left out.
"""

from __future__ import annotations

import copy
import re
import shlex
from pathlib import Path

import jsonschema
import pytest
import ray
import yaml
from packaging.requirements import Requirement
from ray.autoscaler._private.util import prepare_config, validate_config

REPO = Path(__file__).resolve().parents[1]
SHARED = "/mnt/shared"
MLFLOW_PORT = 5000


@pytest.fixture(scope="module")
def raw() -> dict:
    return yaml.safe_load((REPO / "cluster.yaml").read_text())


@pytest.fixture(scope="module")
def docs() -> str:
    return (REPO / "docs" / "cluster.md").read_text()


def launcher_check(config: dict) -> dict:
    """What `ray up` does to the file before contacting the cloud; raises on an invalid file."""
    prepared = prepare_config(copy.deepcopy(config))
    validate_config(prepared)
    return prepared


def head(config: dict) -> dict:
    return config["available_node_types"][config["head_node_type"]]


def mlflow_command(config: dict) -> str:
    found = [c for c in config["head_start_ray_commands"] if "mlflow server" in c]
    assert len(found) == 1, "exactly one MLflow server command in head_start_ray_commands"
    return found[0]


def test_passes_rays_launcher_validation(raw):
    prepared = launcher_check(raw)
    # The AWS defaults are merged key by key at the top level only: had a list been left out,
    # defaults.yaml's would leak in (its setup_commands pip-install a Ray nightly wheel).
    assert prepared["head_setup_commands"] == raw["setup_commands"] + raw["head_setup_commands"]
    assert prepared["worker_setup_commands"] == raw["setup_commands"] + raw["worker_setup_commands"]
    assert set(prepared["available_node_types"]) == set(raw["available_node_types"])
    assert all("nightly" not in c and "ray-wheels" not in c for c in prepared["head_setup_commands"])
    assert prepared["available_node_types"][raw["head_node_type"]]["max_workers"] == 0


def _set(config: dict, path: str, value) -> dict:
    broken = copy.deepcopy(config)
    *parents, leaf = path.split(".")
    node = broken
    for key in parents:
        node = node[key]
    node[leaf] = value
    return broken


@pytest.mark.parametrize(
    "path, value",
    [
        ("available_node_types.head.resources.CPU", "8"),  # a string count
        ("available_node_types.head.resources.TRAIN_DRIVER", 0.5),  # pitfall 2: integers only
        ("available_node_types.gpu_worker.min_worker", 0),  # misspelt node-type key
        ("docker.shm_size", "16g"),  # not a launcher docker option
        ("head_start_commands", ["ray start --head"]),  # misspelt top-level key
    ],
)
def test_rays_validation_rejects_a_broken_copy(raw, path, value):
    """The check above can fail: the same function rejects small, plausible mistakes."""
    with pytest.raises(jsonschema.ValidationError):
        launcher_check(_set(raw, path, value))


def test_node_resources_are_integers_and_head_pins_trial_drivers(raw):
    for name, node_type in raw["available_node_types"].items():
        for key, amount in node_type["resources"].items():
            assert type(amount) is int and amount >= 0, f"{name}.resources.{key} = {amount!r}"
    resources = head(raw)["resources"]
    # Drivers ask {"TRAIN_DRIVER": 0.01}; only the head offers it, and no GPU work lands there.
    assert resources.get("TRAIN_DRIVER", 0) >= 1 and resources.get("GPU") == 0
    workers = {n: t for n, t in raw["available_node_types"].items() if n != raw["head_node_type"]}
    assert workers and all("TRAIN_DRIVER" not in t["resources"] for t in workers.values())
    assert all(t.get("min_workers", 0) == 0 for t in workers.values()), "GPU nodes scale from zero"


def test_docker_image_matches_installed_ray_and_project_pin(raw):
    image = raw["docker"]["image"]
    assert "ray-ml" not in image  # pitfall 10
    repo, tag = image.split(":")
    assert repo == "rayproject/ray" and tag.endswith("-gpu")
    assert tag.split("-")[0] == ray.__version__
    # The editable install must keep the image's Ray, so the project's pin has to admit it.
    pin = re.search(r'"(ray\[[^"]*)"', (REPO / "pyproject.toml").read_text())
    assert pin, "pyproject.toml lists ray[...]"
    ray_req = Requirement(pin.group(1))
    assert ray_req.specifier.contains(ray.__version__)


def test_setup_installs_this_project_from_the_synced_source(raw):
    assert raw["file_mounts"].get("~/nce-study") == "."
    installs = [shlex.split(c) for c in raw["setup_commands"] if c.startswith("pip install")]
    assert any("-e" in argv and "~/nce-study" in argv for argv in installs)
    every = " ".join(raw["setup_commands"] + raw["head_setup_commands"] + raw["worker_setup_commands"])
    assert not re.search(r"\btorch(vision)?==", every), "torch stays unpinned above the pyproject floor"


def test_shared_storage_is_mounted_on_hosts_and_passed_into_containers(raw):
    init = " ".join(raw["initialization_commands"])
    assert re.search(rf"mount -t nfs4 .*:/ {SHARED}\b", init)
    assert "mountpoint -q " + SHARED in init, "re-running `ray up` must not mount twice"
    assert "EDIT-ME" in init and "exit 1" in init, "an unedited placeholder stops `ray up`"
    run_options = raw["docker"].get("run_options", [])
    assert f"--volume={SHARED}:{SHARED}" in run_options or f"-v {SHARED}:{SHARED}" in run_options


def test_mlflow_server_starts_on_head_on_the_private_address(raw):
    starts = raw["head_start_ray_commands"]
    ray_start = next(i for i, c in enumerate(starts) if "ray start --head" in c)
    command = mlflow_command(raw)
    assert starts.index(command) > ray_start, "started after `ray start` (`ray stop` runs first)"
    argv = shlex.split(command.split("mlflow server", 1)[1].split(">", 1)[0])
    flags = dict(zip(argv[::2], argv[1::2]))
    # Workers log to it, so not 127.0.0.1; it has no auth, so not every interface.
    assert flags["--host"] == "$HEAD_IP" and "HEAD_IP=$(hostname -I" in command
    assert flags["--port"] == str(MLFLOW_PORT)
    assert flags["--app-name"] == "nce-study"  # study/tracking_server.py, registered in pyproject.toml
    assert flags["--backend-store-uri"] == f"sqlite:///{SHARED}/mlflow/mlflow.db"
    assert flags["--artifacts-destination"] == f"{SHARED}/mlflow/artifacts"
    assert "$HEAD_IP:5000" in flags["--allowed-hosts"]
    assert "setsid nohup mlflow server" in command and "/health" in command.split("mlflow server")[0]
    assert "0.0.0.0" not in command


def test_every_process_gets_the_same_tracking_uri(raw):
    head_env = " ".join(raw["head_setup_commands"])
    assert f"MLFLOW_TRACKING_URI=http://$(hostname -I | awk '{{print $1}}'):{MLFLOW_PORT}" in head_env
    worker_start = " ".join(raw["worker_start_ray_commands"])
    assert re.search(rf"export MLFLOW_TRACKING_URI=http://\$RAY_HEAD_IP:{MLFLOW_PORT};.*ray start", worker_start)


def test_head_keeps_the_dashboard_and_a_start_timeout_for_autoscaling(raw):
    start = next(c for c in raw["head_start_ray_commands"] if "ray start --head" in c)
    assert "--include-dashboard" not in start  # pitfall 1: the PG cleaner needs the State API
    timeout = re.search(r"RAY_TRAIN_WORKER_GROUP_START_TIMEOUT_S=(\d+);.*ray start", start)
    assert timeout and int(timeout.group(1)) >= 600, "a GPU node takes minutes to boot"


def test_docs_give_the_steps_the_placeholders_and_the_mlflow_exposure(docs, raw):
    for step in ("ray up cluster.yaml", "ray dashboard cluster.yaml", "ray down cluster.yaml"):
        assert step in docs
    assert f"-L {MLFLOW_PORT}:" in docs  # the MLflow UI tunnel
    for needle in ("no authentication", "--app-name basic-auth", "MLFLOW_TRACKING_USERNAME", "RAY_AUTH_MODE"):
        assert needle in docs, needle
    for placeholder in ("EFS_DNS", "ImageId"):
        assert placeholder in docs


def test_documented_submit_lines_parse_as_ray_submit_does(docs):
    """Every `ray submit` line in the docs, parsed by Ray's own click command."""
    from ray.scripts.scripts import submit

    lines = [ln.strip() for ln in docs.splitlines() if ln.strip().startswith("ray submit ")]
    assert lines
    for line in lines:
        params = submit.make_context("submit", shlex.split(line)[2:]).params
        assert params["cluster_config_file"] == "cluster.yaml", line
        assert params["script"] == "study/run_sweep.py", line
        assert params["script_args"][:1] == ("--preset",), line
        args = list(params["script_args"])
        assert args[args.index("--storage-path") + 1] == f"{SHARED}/ray_results", line
