"""Helpers shared by the tests that run ganlab's scripts as real subprocesses against a real MLflow store."""

import contextlib
import json
import os
import select
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest
import torch
from mlflow import MlflowClient
from safetensors.torch import load_file

# A latent study small enough for tests: few samples for the statistics, few random and factor directions, and the
# reports' claims left to the tests that check them (they classify ~750 more changed batches).
SMALL_STUDY = ["--stats-samples", "64", "--random-directions", "4", "--factor-directions", "2", "--no-claims",
               "--no-progress"]


class ScriptLauncher:
    """The client of tests/script_launcher.py: runs `python SCRIPT ARGS…` as a forked child of a process that has
    imported torch, MLflow and ganlab already (one per test process, started on first use)."""

    def __init__(self):
        self.process: subprocess.Popen | None = None
        self.pending = b""

    def run(self, command: list[str], cwd: Path, env: dict[str, str] | None, timeout: float):
        if self.process is None or self.process.poll() is not None:
            self.process = subprocess.Popen([sys.executable, str(Path(__file__).with_name("script_launcher.py"))],
                                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, cwd=cwd)
            self.pending = b""
        with tempfile.TemporaryDirectory(prefix="ganlab-script-") as streams:
            stdout_path, stderr_path = Path(streams) / "stdout", Path(streams) / "stderr"
            request = {"script": command[1], "arguments": command[2:], "cwd": str(cwd),
                       "env": dict(os.environ if env is None else env),
                       "stdout": str(stdout_path), "stderr": str(stderr_path)}
            self.process.stdin.write(json.dumps(request).encode() + b"\n")
            self.process.stdin.flush()
            deadline = time.monotonic() + timeout
            child_pid = self._answer(deadline)["pid"]
            answer = self._answer(deadline)
            if answer is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(child_pid, signal.SIGKILL)
                self._answer(time.monotonic() + 60)
                raise subprocess.TimeoutExpired(command, timeout, stdout_path.read_text(), stderr_path.read_text())
            return subprocess.CompletedProcess(command, answer["returncode"], stdout_path.read_text(),
                                               stderr_path.read_text())

    def _answer(self, deadline: float) -> dict | None:
        """The launcher's next line, or None at the deadline."""
        while b"\n" not in self.pending:
            ready, _, _ = select.select([self.process.stdout], [], [], max(0.0, deadline - time.monotonic()))
            if not ready:
                return None
            chunk = os.read(self.process.stdout.fileno(), 65536)
            assert chunk, f"the script launcher exited ({self.process.wait()})"
            self.pending += chunk
        line, self.pending = self.pending.split(b"\n", 1)
        return json.loads(line)


_launcher = ScriptLauncher()


def run_script(command: list[str], cwd: Path, timeout: float = 300, env: dict[str, str] | None = None):
    """`subprocess.run(command, capture_output=True, text=True)` for `[sys.executable, SCRIPT, ARGS…]`, started as a
    forked child of the script launcher (5 s sooner: the imports are done); other commands run as they are."""
    if command[0] != sys.executable or not command[1].endswith(".py"):
        return subprocess.run(command, cwd=cwd, capture_output=True, text=True, timeout=timeout, env=env)
    return _launcher.run(command, cwd, env, timeout)


def train_command(store_uri: str, data_dir: Path, *arguments: str) -> list[str]:
    return [sys.executable, "experiments/train.py", "--no-progress", "--tracking-uri", store_uri,
            "--data-dir", str(data_dir), *arguments]


def run_train(repo_root: Path, store_uri: str, data_dir: Path, *arguments: str, timeout: int = 300,
              env: dict[str, str] | None = None):
    return run_script(train_command(store_uri, data_dir, *arguments), repo_root, timeout, env)


def only_run(client: MlflowClient, experiment: str = "fashion-mnist-gan"):
    experiment_id = client.get_experiment_by_name(experiment).experiment_id
    (run,) = client.search_runs([experiment_id])
    return run


def artifact_paths(client: MlflowClient, run_id: str, path: str | None = None) -> set[str]:
    found = set()
    for info in client.list_artifacts(run_id, path):
        found |= artifact_paths(client, run_id, info.path) if info.is_dir else {info.path}
    return found


def step_history(client: MlflowClient, run_id: str, name: str) -> list[tuple[int, float]]:
    return sorted((metric.step, metric.value) for metric in client.get_metric_history(run_id, name))


def final_weights(client: MlflowClient, run_id: str, download_dir: Path) -> dict[str, torch.Tensor]:
    model_dir = Path(client.download_artifacts(run_id, "model", str(download_dir)))
    return {**{f"G.{k}": v for k, v in load_file(str(model_dir / "generator.safetensors")).items()},
            **{f"D.{k}": v for k, v in load_file(str(model_dir / "discriminator.safetensors")).items()}}


def assert_one_line_error(result, *fragments: str) -> None:
    assert result.returncode == 2, (result.returncode, result.stdout, result.stderr)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    assert "Traceback" not in result.stderr
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def wait_for_checkpoint(store_dir: Path, process: subprocess.Popen, epoch: int, timeout: float = 120) -> None:
    """Poll the run's checkpoint manifest until it records `epoch` finished epochs."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for manifest in store_dir.glob("artifacts/*/artifacts/checkpoint/checkpoint.json"):
            try:
                if json.loads(manifest.read_text())["state"]["epoch"] >= epoch:
                    return
            except (OSError, json.JSONDecodeError, KeyError):
                pass
        assert process.poll() is None, f"training ended before epoch {epoch}: {process.communicate()}"
        time.sleep(0.02)
    raise AssertionError(f"no checkpoint for epoch {epoch} within {timeout} s")


def require_inception_weights() -> Path:
    """The folder `make inception` set up; skipped where it is missing, unless GANLAB_REQUIRE_INCEPTION=1 (set by
    .ci/run, whose `make test` sets it up first), where that fails."""
    from ganlab.metrics import inception

    folder = inception.inception_dir()
    if not ((folder / inception.WEIGHTS_FILE).is_file() and (folder / inception.SOURCE_FILE).is_file()):
        message = f"Inception weights not set up in {folder}: run `make inception`"
        if os.environ.get("GANLAB_REQUIRE_INCEPTION") == "1":
            pytest.fail(message)
        pytest.skip(message)
    return folder


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@contextlib.contextmanager
def serving(command: list[str], ready_url: str, log_path: Path, env: dict[str, str] | None = None,
            cwd: Path | None = None, timeout: float = 300):
    """A real server process (its own process group) that answers `ready_url`; stopped on the way out.

    The timeout is generous: MLflow's servers import a lot, and CI machines have 2 busy cores."""
    with log_path.open("w") as log:
        process = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, env=env, cwd=cwd,
                                   start_new_session=True)
    try:
        deadline = time.monotonic() + timeout
        while True:
            try:
                with urllib.request.urlopen(ready_url, timeout=5):
                    break
            except (urllib.error.URLError, OSError):
                pass
            assert process.poll() is None, f"server exited ({process.returncode}): {log_path.read_text()[-3000:]}"
            assert time.monotonic() < deadline, f"no answer at {ready_url} in {timeout} s: {log_path.read_text()[-3000:]}"
            time.sleep(0.5)
        yield process
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


def chromium_driver():
    """Debian's chromium and chromedriver through Selenium; skipped where missing unless CI requires them."""
    chromium, chromedriver = shutil.which("chromium"), shutil.which("chromedriver")
    if not (chromium and chromedriver):
        message = "chromium/chromedriver not installed (apt-get install chromium chromium-driver)"
        if os.environ.get("GANLAB_REQUIRE_BROWSER") == "1":
            pytest.fail(message)
        pytest.skip(message)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1300,3000"):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    return webdriver.Chrome(service=Service(chromedriver), options=options)
