"""Shared fixtures: the repository root, the real Fashion-MNIST files, and a fresh MLflow store per test."""

import os
import shutil
import socket
import subprocess
import tempfile
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent

if os.environ.get("PYTEST_XDIST_WORKER"):
    # `make test` runs one worker per core (pytest-xdist): one thread each, for the worker and the scripts it starts,
    # so that two workers and their subprocesses do not oversubscribe the cores.
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    import torch

    torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


@pytest.fixture(scope="session")
def repo_root() -> Path:
    return REPO_ROOT


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The real Fashion-MNIST, prepared where `make test` put it (data/ or $GANLAB_DATA_DIR)."""
    from ganlab.data import prepare_fashion_mnist, resolve_data_dir

    root = resolve_data_dir(None).resolve()
    prepare_fashion_mnist(root)
    return root


@pytest.fixture(scope="session", autouse=True)
def isolated_cache(tmp_path_factory):
    """Reference features are cached per test session, not in the user's ~/.cache (subprocesses inherit it).

    The Inception weights that `make inception` set up stay where they are: they are installed, not cached by tests.
    """
    from ganlab.metrics.inception import inception_dir

    previous = {name: os.environ.get(name) for name in ("GANLAB_CACHE_DIR", "GANLAB_INCEPTION_DIR")}
    os.environ["GANLAB_INCEPTION_DIR"] = str(inception_dir())
    os.environ["GANLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("ganlab-cache"))
    yield
    for name, value in previous.items():
        if value is None:
            os.environ.pop(name)
        else:
            os.environ[name] = value


@pytest.fixture(scope="session")
def postgres_url():
    """A throwaway PostgreSQL server from Debian's packages on 127.0.0.1, for the shared-study test.

    Skipped where the server is not installed, unless GANLAB_REQUIRE_POSTGRES=1 (set by .ci/run), where that fails.
    """
    binaries = sorted(Path("/usr/lib/postgresql").glob("*/bin"))
    if not binaries:
        message = "PostgreSQL server not installed (apt-get install postgresql)"
        if os.environ.get("GANLAB_REQUIRE_POSTGRES") == "1":
            pytest.fail(message)
        pytest.skip(message)
    bin_dir = binaries[-1]
    # PostgreSQL refuses to run as root: as root, run it as the `postgres` user in a folder that user owns.
    as_user = ["runuser", "-u", "postgres", "--"] if os.geteuid() == 0 else []
    server_dir = Path(tempfile.mkdtemp(prefix="ganlab-pg-"))
    server_dir.chmod(0o755)
    if as_user:
        shutil.chown(server_dir, "postgres", "postgres")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    data = server_dir / "data"

    def run(*command: str) -> None:
        subprocess.run([*as_user, *command], check=True, capture_output=True, timeout=120)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "ganlab", "--auth=trust")
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-l", str(server_dir / "log"), "-w", "-o",
        f"-p {port} -h 127.0.0.1 -k {server_dir}", "start")
    try:
        run(str(bin_dir / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "ganlab", "optuna")
        yield f"postgresql://ganlab@127.0.0.1:{port}/optuna"
    finally:
        run(str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "-w", "stop")
        shutil.rmtree(server_dir, ignore_errors=True)


# The files that take longest go to the pytest-xdist workers first, so no long file starts near the end and the
# workers finish together (measured with `pytest --durations`; the rest keep their order). `make test` passes
# --no-loadscope-reorder: by default xdist orders the files by their number of tests instead.
LONGEST_FILES_FIRST = ("test_tune.py", "test_fault_injection.py", "test_bad_input.py", "test_report.py",
                       "test_health.py", "test_train.py", "test_latent.py", "test_distributed.py", "test_balance.py",
                       "test_claims.py", "test_model_registry.py", "test_metrics.py", "test_evaluate.py",
                       "test_explorer.py", "test_papercuts.py", "test_benchmark.py", "test_precision.py",
                       "test_inception_table.py", "test_inception.py")


def pytest_collection_modifyitems(items):
    rank = {name: index for index, name in enumerate(LONGEST_FILES_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))
