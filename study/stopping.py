"""Stopping a driver cleanly: SIGINT or SIGTERM ends every RUNNING MLflow run of its study as KILLED.

Tune stops gracefully on its interrupt signal (SIGUSR1; SIGINT too unless disabled): it saves its
state and ends its trials, and ``fit()`` returns. Here both SIGINT and SIGTERM are turned into that
interrupt, the signal is remembered, and afterwards every run left RUNNING is ended KILLED with the
signal as its reason, so that the MLflow tree says what happened and ``--resume`` continues the study.
A second signal stops at once (KeyboardInterrupt).
"""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from types import FrameType

STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM)


@dataclass
class Stop:
    """The signal that stopped the driver, if one did."""

    signum: int | None = None

    @property
    def reason(self) -> str:
        return f"stopped by {signal.Signals(self.signum).name} to the driver" if self.signum else ""

    @property
    def exit_code(self) -> int:
        return 128 + (self.signum or 0)  # the shell's status for a process ended by that signal


@contextlib.contextmanager
def stop_on_signals(forward: int | None = None) -> Iterator[Stop]:
    """Catch SIGINT and SIGTERM while the block runs; the first is forwarded as ``forward`` (to
    let Tune stop gracefully), or raised as KeyboardInterrupt when there is nothing to forward to."""
    stop = Stop()

    def handler(signum: int, frame: FrameType | None) -> None:
        listening = forward is not None and signal.getsignal(forward) not in (signal.SIG_DFL, signal.SIG_IGN, None)
        if stop.signum is not None or not listening:  # a second signal, or before Tune listens
            stop.signum = stop.signum or signum
            raise KeyboardInterrupt(stop.reason)
        stop.signum = signum
        os.kill(os.getpid(), forward)

    previous = {s: signal.signal(s, handler) for s in STOP_SIGNALS}
    try:
        yield stop
    finally:
        for s, old in previous.items():
            signal.signal(s, old)


def end_running_as_killed(tracking_uri: str, run_ids: list[str], reason: str) -> int:
    """End each of the runs that is still RUNNING as KILLED, with ``reason``; returns how many."""
    from mlflow.tracking import MlflowClient

    from trainables.spec import run_schema as rs

    client = MlflowClient(tracking_uri)
    ended = 0
    for run_id in run_ids:
        if client.get_run(run_id).info.status == "RUNNING":
            client.set_tag(run_id, rs.FAILURE_REASON, reason)
            client.set_terminated(run_id, status="KILLED")
            ended += 1
    return ended


def mark_running(tracking_uri: str, run_id: str) -> None:
    """A resumed study's run is running again (it was ended KILLED, or left RUNNING by a killed driver)."""
    from mlflow.tracking import MlflowClient

    MlflowClient(tracking_uri).update_run(run_id, status="RUNNING")
