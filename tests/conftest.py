"""Shared fixtures: the repository root, the real Fashion-MNIST files, and a fresh MLflow store per test."""

import os
from pathlib import Path

import pytest

REPO_ROOT = Path(__file__).resolve().parent.parent


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
    """Reference features are cached per test session, not in the user's ~/.cache (subprocesses inherit it)."""
    previous = os.environ.get("GANLAB_CACHE_DIR")
    os.environ["GANLAB_CACHE_DIR"] = str(tmp_path_factory.mktemp("ganlab-cache"))
    yield
    if previous is None:
        os.environ.pop("GANLAB_CACHE_DIR")
    else:
        os.environ["GANLAB_CACHE_DIR"] = previous
