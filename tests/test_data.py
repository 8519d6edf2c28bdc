"""Finding, verifying and loading Fashion-MNIST: tiny synthetic IDX files for the edge cases, the real files for the rest."""

import functools
import gzip
import hashlib
import http.server
import os
import shutil
import socket
import struct
import subprocess
import sys
import threading

import pytest
import torch

from ganlab import data
from ganlab.errors import GanlabError

NAMES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def idx_bytes(name: str, count: int = 5) -> bytes:
    """A valid IDX file: uint8 images [count, 28, 28] or labels [count]."""
    if "images" in name:
        pixels = bytes((index * 7) % 256 for index in range(count * 28 * 28))
        return struct.pack(">IIII", 0x00000803, count, 28, 28) + pixels
    return struct.pack(">II", 0x00000801, count) + bytes(index % 10 for index in range(count))


@pytest.fixture
def synthetic_system_dir(tmp_path):
    """A Debian-layout folder of four gzipped synthetic IDX files, and the MD5s of their content."""
    system_dir = tmp_path / "system"
    system_dir.mkdir()
    raw_md5 = {}
    for name in NAMES:
        content = idx_bytes(name)
        (system_dir / f"{name}.gz").write_bytes(gzip.compress(content, mtime=0))
        raw_md5[name] = hashlib.md5(content).hexdigest()
    return system_dir, raw_md5


def test_the_real_files_load_exactly_as_torchvision_reads_them(data_dir):
    from torchvision.datasets import FashionMNIST  # the reference reader; ganlab reads the IDX files itself

    for train in (True, False):
        images, labels = data.load_images(data_dir, train=train)
        reference = FashionMNIST(str(data_dir), train=train, download=False)
        assert torch.equal(images, reference.data.unsqueeze(1)) and torch.equal(labels, reference.targets.long())


def test_a_file_that_is_not_idx_is_a_one_line_error(tmp_path, synthetic_system_dir):
    system_dir, raw_md5 = synthetic_system_dir
    root = tmp_path / "data"
    data.prepare_fashion_mnist(root, system_dir=system_dir, allow_download=False, raw_md5=raw_md5)
    images_file = data.raw_dir(root) / "train-images-idx3-ubyte"
    images_file.write_bytes(b"PK\x03\x04 a zip, not IDX")
    with pytest.raises(GanlabError, match="Fashion-MNIST is not in"):
        data.load_images(root, train=True)
    images_file.write_bytes(idx_bytes("train-images-idx3-ubyte")[:-1])  # one byte short of what its header says
    with pytest.raises(GanlabError, match="Fashion-MNIST is not in"):
        data.load_images(root, train=True)


def test_imports_from_the_system_folder_and_loads_the_idx_files(tmp_path, synthetic_system_dir):
    system_dir, raw_md5 = synthetic_system_dir
    root = tmp_path / "data"
    assert data.prepare_fashion_mnist(root, system_dir=system_dir, allow_download=False, raw_md5=raw_md5) == raw_md5
    images, labels = data.load_images(root, train=True)
    assert images.shape == (5, 1, 28, 28) and images.dtype == torch.uint8
    assert images.flatten()[:3].tolist() == [0, 7, 14]
    assert labels.tolist() == [0, 1, 2, 3, 4] and labels.dtype == torch.int64
    assert not list(data.raw_dir(root).glob("*.partial"))


def test_a_recompressed_gz_with_the_right_content_is_accepted(tmp_path, synthetic_system_dir):
    # Debian's case: another gzip header (time stamp, no name), so another .gz MD5, same content.
    system_dir, raw_md5 = synthetic_system_dir
    for name in NAMES:
        (system_dir / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(name), mtime=1591347949))
    data.prepare_fashion_mnist(tmp_path / "data", system_dir=system_dir, allow_download=False, raw_md5=raw_md5)
    assert (data.raw_dir(tmp_path / "data") / NAMES[0]).read_bytes() == idx_bytes(NAMES[0])


def test_a_corrupt_system_gz_names_the_file_and_the_fixes_and_leaves_no_partial_file(tmp_path, synthetic_system_dir):
    system_dir, raw_md5 = synthetic_system_dir
    corrupt = system_dir / "train-images-idx3-ubyte.gz"
    corrupt.write_bytes(gzip.compress(idx_bytes("train-images-idx3-ubyte")[:-1] + b"\xff"))
    with pytest.raises(GanlabError) as raised:
        data.prepare_fashion_mnist(tmp_path / "data", system_dir=system_dir, allow_download=False, raw_md5=raw_md5)
    message = str(raised.value)
    assert str(corrupt) in message and raw_md5["train-images-idx3-ubyte"] in message
    assert "apt-get install dataset-fashion-mnist" in message and "download" in message and "FashionMNIST/raw" in message
    assert "\n" not in message
    assert not (data.raw_dir(tmp_path / "data") / "train-images-idx3-ubyte").exists()
    assert not list(data.raw_dir(tmp_path / "data").glob("*.partial"))


def test_a_truncated_gz_is_a_clear_error(tmp_path, synthetic_system_dir):
    system_dir, raw_md5 = synthetic_system_dir
    truncated = system_dir / "t10k-labels-idx1-ubyte.gz"
    truncated.write_bytes(truncated.read_bytes()[:12])
    with pytest.raises(GanlabError, match="t10k-labels-idx1-ubyte.gz is corrupt"):
        data.prepare_fashion_mnist(tmp_path / "data", system_dir=system_dir, allow_download=False, raw_md5=raw_md5)


def test_a_corrupt_raw_file_is_reported_and_never_overwritten(tmp_path, synthetic_system_dir):
    system_dir, raw_md5 = synthetic_system_dir
    root = tmp_path / "data"
    data.prepare_fashion_mnist(root, system_dir=system_dir, allow_download=False, raw_md5=raw_md5)
    damaged = data.raw_dir(root) / "train-labels-idx1-ubyte"
    damaged.write_bytes(b"damaged")
    with pytest.raises(GanlabError, match="train-labels-idx1-ubyte is corrupt.*delete it"):
        data.prepare_fashion_mnist(root, system_dir=system_dir, allow_download=False, raw_md5=raw_md5)
    assert damaged.read_bytes() == b"damaged"


def test_gz_files_put_in_the_raw_folder_by_hand_are_used(tmp_path, synthetic_system_dir):
    system_dir, raw_md5 = synthetic_system_dir
    root = tmp_path / "data"
    data.raw_dir(root).mkdir(parents=True)
    for name in NAMES:
        (data.raw_dir(root) / f"{name}.gz").write_bytes((system_dir / f"{name}.gz").read_bytes())
    data.prepare_fashion_mnist(root, system_dir=tmp_path / "nowhere", allow_download=False, raw_md5=raw_md5)
    assert data.load_images(root, train=False)[0].shape == (5, 1, 28, 28)


def test_nothing_anywhere_without_download_names_the_three_fixes(tmp_path):
    with pytest.raises(GanlabError) as raised:
        data.prepare_fashion_mnist(tmp_path / "data", system_dir=tmp_path / "nowhere", allow_download=False)
    message = str(raised.value)
    assert "apt-get install dataset-fashion-mnist" in message
    assert "torchvision download" in message
    assert "FashionMNIST/raw" in message


def test_load_images_without_prepared_files_is_a_clear_error(tmp_path):
    with pytest.raises(GanlabError, match="not in"):
        data.load_images(tmp_path / "empty")


def test_data_dir_precedence(monkeypatch, tmp_path):
    monkeypatch.delenv("GANLAB_DATA_DIR", raising=False)
    assert str(data.resolve_data_dir(None)) == "data"
    monkeypatch.setenv("GANLAB_DATA_DIR", str(tmp_path / "env"))
    assert data.resolve_data_dir(None) == tmp_path / "env"
    assert data.resolve_data_dir(tmp_path / "flag") == tmp_path / "flag"


@pytest.mark.skipif(not data.SYSTEM_DATA_DIR.exists(), reason="Debian's dataset-fashion-mnist is not installed")
def test_the_real_debian_files_import_with_the_published_checksums(tmp_path):
    root = tmp_path / "data"
    assert data.prepare_fashion_mnist(root, allow_download=False) == data.RAW_MD5
    train_images, train_labels = data.load_images(root, train=True)
    test_images, test_labels = data.load_images(root, train=False)
    assert train_images.shape == (60000, 1, 28, 28) and train_images.dtype == torch.uint8
    assert test_images.shape == (10000, 1, 28, 28)
    assert torch.bincount(train_labels).tolist() == [6000] * 10
    assert torch.bincount(test_labels).tolist() == [1000] * 10
    scaled = data.to_training_tensor(train_images[:1000], "cpu")
    assert scaled.dtype == torch.float32 and scaled.min() == -1 and scaled.max() == 1


def test_the_module_command_fails_with_one_line_on_a_corrupt_file(tmp_path, repo_root):
    raw = data.raw_dir(tmp_path / "data")
    raw.mkdir(parents=True)
    (raw / "train-images-idx3-ubyte").write_bytes(b"junk")
    result = subprocess.run([sys.executable, "-m", "ganlab.data", "--data-dir", str(tmp_path / "data")],
                            cwd=repo_root, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith("error: ") and "Traceback" not in result.stderr


@pytest.fixture
def mirror(synthetic_system_dir):
    """A real HTTP server on 127.0.0.1 serving the synthetic .gz files, as torchvision's mirrors do."""
    system_dir, _ = synthetic_system_dir
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(system_dir))
    handler.log_message = lambda *arguments: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()


def closed_port_url() -> str:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{probe.getsockname()[1]}/"


def test_files_nowhere_on_disk_are_downloaded_through_torchvision(tmp_path, synthetic_system_dir, mirror):
    _, raw_md5 = synthetic_system_dir
    root = tmp_path / "data"
    assert data.prepare_fashion_mnist(root, system_dir=tmp_path / "nowhere", raw_md5=raw_md5,
                                      mirrors=[mirror]) == raw_md5
    assert sorted(path.name for path in data.raw_dir(root).iterdir() if not path.name.endswith(".gz")) == sorted(NAMES)


def test_not_downloadable_runs_the_installer_once_and_uses_what_it_installed(tmp_path, synthetic_system_dir):
    packaged, raw_md5 = synthetic_system_dir
    system_dir = tmp_path / "installed-by-apt"
    installs = []

    def install() -> None:  # what apt-get does for dataset-fashion-mnist: the four .gz files in the system folder
        installs.append(1)
        shutil.copytree(packaged, system_dir)

    root = tmp_path / "data"
    assert data.prepare_fashion_mnist(root, system_dir=system_dir, raw_md5=raw_md5, install=install,
                                      mirrors=[closed_port_url()]) == raw_md5
    assert installs == [1]
    assert data.prepare_fashion_mnist(root, system_dir=system_dir, raw_md5=raw_md5, install=install) == raw_md5
    assert installs == [1]  # present now: nothing is installed again


def test_not_downloadable_and_no_installer_is_one_error_with_the_fixes(tmp_path):
    with pytest.raises(GanlabError) as raised:
        data.prepare_fashion_mnist(tmp_path / "data", system_dir=tmp_path / "nowhere", mirrors=[closed_port_url()])
    assert "could not download" in str(raised.value) and "apt-get install dataset-fashion-mnist" in str(raised.value)


def test_packages_can_be_installed_only_with_apt_get_and_the_right_to_use_it(monkeypatch, tmp_path):
    has_apt = shutil.which("apt-get") is not None
    if os.geteuid() == 0:
        assert data.can_install_debian_packages() == has_apt
        assert (data.debian_installer() is not None) == has_apt
    monkeypatch.setenv("PATH", str(tmp_path))  # no apt-get on the PATH: nothing to install with
    assert not data.can_install_debian_packages() and data.debian_installer() is None
