"""``logger.wandb.offline=false`` that cannot work: logged offline and said in one line where W&B's server cannot be
reached; a run that a server refuses stops the command within seconds with one line, leaving no run folder.

No network: the "server" is a closed port, or a local HTTP server that refuses every request (HTTP 401).
"""

from __future__ import annotations

import http.server
import logging
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from darnet_pl.training.wandb_logger import quiet_wandb_logger
from darnet_pl.training.wandb_results import finish_wandb_runs
from tests.helpers.forked import run_forked
from tests.helpers.user import explain, user_env


def _closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class _Refuses(http.server.BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        self.send_response(401)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_POST

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def refusing_server() -> Iterator[str]:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Refuses)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


@pytest.fixture
def wandb_afresh() -> Iterator[Any]:
    """W&B's module; its process-wide state is torn down after the test, so later tests read their own
    environment."""
    import wandb

    yield wandb
    wandb.teardown()


def test_online_without_a_reachable_server_logs_offline_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, wandb_afresh: Any
) -> None:
    monkeypatch.delenv("WANDB_MODE", raising=False)  # conftest's offline setting would skip the check
    monkeypatch.setenv("WANDB_BASE_URL", f"http://127.0.0.1:{_closed_port()}")
    wandb_afresh.teardown()  # W&B reads the environment once per process: start afresh, as a new command would
    caplog.set_level(logging.INFO, logger="darnet_pl")
    started = time.monotonic()
    logger = quiet_wandb_logger(offline=False, save_dir=str(tmp_path), project="p", name="job", id="abcd1234")
    assert time.monotonic() - started < 5
    assert logger.experiment.offline
    finish_wandb_runs([logger])
    lines = [r.getMessage() for r in caplog.records if "W&B" in r.getMessage()]
    [offline_run] = (tmp_path / "wandb").glob("*run-*")
    assert offline_run.name.startswith("offline-run-") and offline_run.name.endswith("-abcd1234")
    assert lines == [
        "W&B cannot go online (127.0.0.1: Connection refused): logging offline instead; upload later with wandb sync",
        f"W&B offline run: {offline_run}; upload with: wandb sync {offline_run}",
    ]


@pytest.mark.slow
def test_a_run_the_server_refuses_stops_with_one_line_and_leaves_no_run_folder(
    tmp_path: Path, refusing_server: str
) -> None:
    env = user_env(WANDB_BASE_URL=refusing_server, WANDB_API_KEY="0" * 40)
    command = ("+experiment=smoke", "debug=tiny", "logger=wandb", "logger.wandb.offline=false")
    started = time.monotonic()
    result = run_forked("darnet_pl", *command, cwd=tmp_path, env=env)
    elapsed = time.monotonic() - started
    assert result.returncode == 2, explain(result)
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert "Traceback" not in result.stderr and "Exception in thread" not in result.stderr, explain(result)
    assert line.startswith("error: logger.wandb.offline=false: W&B could not start the run online (")
    assert line.endswith("logger.wandb.offline=true (the default) logs offline, to upload later with wandb sync")
    assert not (tmp_path / "outputs").exists()  # no run folder, no W&B stub in one
    assert elapsed < 90, elapsed  # start-up and the synthetic data; W&B gives up at once
