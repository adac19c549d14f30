"""MLflow lookups: exact tag matches whatever the values hold, across pages and experiments."""

from __future__ import annotations

from pathlib import Path

import pytest
from mlflow.tracking import MlflowClient

from trainables.integration import mlflow_search
from trainables.integration.mlflow_search import find_run, search_runs, tag_clause

AWKWARD = ["it's", 'say "hi"', "back\\slash", "trailing\\", "ünïcødé-β", "mix'\"\\", "50%_off", "a\\'b", "IT'S", "it_s", "plain"]


@pytest.fixture()
def client(tmp_path: Path) -> MlflowClient:
    return MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}")


def test_every_value_finds_exactly_its_own_runs(client: MlflowClient) -> None:
    first, second = client.create_experiment("first"), client.create_experiment("second")
    made = {}
    for i, value in enumerate(AWKWARD):
        made[value] = client.create_run(first if i % 2 else second, tags={"nce.study": value, "kind": "t"}).info.run_id
    for value, run_id in made.items():
        found = search_runs(client, {"nce.study": value, "kind": "t"})
        assert [r.info.run_id for r in found] == [run_id], value
    assert search_runs(client, {"nce.study": "it's", "kind": "other"}) == []


def test_wildcards_in_a_pattern_never_leak_other_runs(client: MlflowClient) -> None:
    # "it_s" written as a LIKE pattern would also match "its" and "itXs"; those must not come back.
    experiment = client.create_experiment("e")
    for value in ("it's", "itXs", "it\\s", "IT'S"):
        client.create_run(experiment, tags={"name": value})
    assert tag_clause("name", "it's") == "tags.`name` LIKE 'it_s'"
    assert [r.data.tags["name"] for r in search_runs(client, {"name": "it's"})] == ["it's"]
    assert [r.data.tags["name"] for r in search_runs(client, {"name": "it\\s"})] == ["it\\s"]


def test_search_reads_every_page(client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(mlflow_search, "PAGE_SIZE", 2)
    experiments = [client.create_experiment(f"e{i}") for i in range(3)]  # experiments are paged too
    ids = {client.create_run(experiments[i % 3], tags={"s": "x"}).info.run_id for i in range(7)}
    client.create_run(experiments[0], tags={"s": "y"})
    assert {r.info.run_id for r in search_runs(client, {"s": "x"})} == ids
    assert find_run(client, {"s": "y"}) is not None and find_run(client, {"s": "z"}) is None


def test_a_backtick_in_a_key_is_refused() -> None:
    with pytest.raises(ValueError, match="backtick"):
        tag_clause("a`b", "v")


def test_params_filter_in_the_store_and_exactly(client: MlflowClient) -> None:
    experiment = client.create_experiment("e")
    wanted = set()
    for mode in ("knn", "linear", "it's", "knn"):
        run = client.create_run(experiment, tags={"s": "x"})
        client.log_param(run.info.run_id, "eval_mode", mode)
        if mode == "knn":
            wanted.add(run.info.run_id)
    client.create_run(experiment, tags={"s": "x"})  # no param at all
    assert {r.info.run_id for r in search_runs(client, {"s": "x"}, params={"eval_mode": "knn"})} == wanted
    assert [r.data.params["eval_mode"] for r in search_runs(client, {"s": "x"}, params={"eval_mode": "it's"})] == ["it's"]
    assert search_runs(client, {"s": "y"}, params={"eval_mode": "knn"}) == []
    assert tag_clause("eval_mode", "knn", "params") == "params.`eval_mode` = 'knn'"


def test_the_collector_is_back_as_it_was_after_a_search(client: MlflowClient, monkeypatch: pytest.MonkeyPatch) -> None:
    import gc

    client.create_run(client.create_experiment("e"), tags={"s": "x"})
    seen = []
    real = MlflowClient.search_runs

    def spy(self, *args, **kwargs):
        seen.append(gc.isenabled())
        return real(self, *args, **kwargs)

    monkeypatch.setattr(MlflowClient, "search_runs", spy)
    assert gc.isenabled()
    assert len(search_runs(client, {"s": "x"})) == 1
    assert seen == [False] and gc.isenabled()
    gc.disable()
    try:
        search_runs(client, {"s": "x"})
        assert not gc.isenabled()  # a caller's own choice is kept
    finally:
        gc.enable()

    def failing(self, *args, **kwargs):
        raise RuntimeError("store down")

    monkeypatch.setattr(MlflowClient, "search_runs", failing)
    with pytest.raises(RuntimeError, match="store down"):
        search_runs(client, {"s": "x"})
    assert gc.isenabled()
