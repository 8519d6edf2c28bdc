"""Find, verify and load Fashion-MNIST.

The files live in torchvision's layout, `<root>/FashionMNIST/raw/`, uncompressed, and are read here as the IDX
files they are (torchvision's `FashionMNIST` reads the same bytes; importing torchvision costs 2.5 s a process, so it
is imported only to download). Sources, in order: raw files already there; `.gz` files a user put
in that folder; Debian's `dataset-fashion-mnist` package; torchvision's download; and, for the data step of
`make` (`python -m ganlab.data`) on a machine whose only network is the package mirrors, installing Debian's
package with apt-get when this user may (root, or sudo without a password).

Every file is checked against the published MD5 of the *uncompressed* data, not of the `.gz`:
Debian recompressed the `.gz` files (new gzip header: no file name, new time stamp), so their MD5s
differ from the list in `FashionMNIST.resources` while the content is byte-identical.
"""

import argparse
import gzip
import hashlib
import math
import os
import shutil
import subprocess
import sys
import urllib.error
import zlib
from collections.abc import Callable
from pathlib import Path

import torch

from ganlab.errors import GanlabError, first_line

SYSTEM_DATA_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian's dataset-fashion-mnist
DEBIAN_PACKAGE = "dataset-fashion-mnist"
RAW_MD5 = {  # the published MD5s of the uncompressed files
    "train-images-idx3-ubyte": "f4a8712d7a061bf5bd6d2ca38dc4d50a",
    "train-labels-idx1-ubyte": "9018921c3c673c538a1fc5bad174d6f9",
    "t10k-images-idx3-ubyte": "8181f5470baa50b63fa0f6fddb340f0a",
    "t10k-labels-idx1-ubyte": "15d484375f8d13e6eb1aabb0c3f46965",
}
CLASS_NAMES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag",
               "Ankle boot")


def resolve_data_dir(cli_value: str | Path | None) -> Path:
    """--data-dir, else $GANLAB_DATA_DIR, else ./data."""
    return Path(cli_value or os.environ.get("GANLAB_DATA_DIR") or "data")


def raw_dir(root: Path) -> Path:
    """Where torchvision's FashionMNIST reads the uncompressed files."""
    return Path(root) / "FashionMNIST" / "raw"


def prepare_fashion_mnist(root: Path, *, system_dir: Path = SYSTEM_DATA_DIR, allow_download: bool = True,
                          raw_md5: dict[str, str] = RAW_MD5, install: Callable[[], None] | None = None,
                          mirrors: list[str] | None = None) -> dict[str, str]:
    """Make `<root>/FashionMNIST/raw/` hold the four verified uncompressed files; return {file name: md5}.

    `install`, when given, is called once when the files are nowhere and not downloadable (from `mirrors`, else
    torchvision's): it should put them in `system_dir` (`debian_installer()` does, with apt-get)."""
    target_dir = raw_dir(root)
    missing = []
    for name, expected_md5 in raw_md5.items():
        path = target_dir / name
        if not path.exists():
            missing.append(name)
        elif file_digest(path) != expected_md5:
            raise GanlabError(f"{path} is corrupt (MD5 differs from the published {expected_md5}); delete it and "
                              f"run again to re-import it")
    if not missing:
        return dict(raw_md5)

    for source_dir in (target_dir, Path(system_dir)):
        if all((source_dir / f"{name}.gz").exists() for name in missing):
            for name in missing:
                _extract_verified(source_dir / f"{name}.gz", target_dir / name, raw_md5[name])
            return dict(raw_md5)

    problem = f"Fashion-MNIST is not in {target_dir} (missing {', '.join(missing)})"
    if allow_download:
        try:
            _download(root, mirrors)
            return prepare_fashion_mnist(root, system_dir=system_dir, allow_download=False, raw_md5=raw_md5)
        except (urllib.error.URLError, OSError, RuntimeError) as error:
            problem = f"Fashion-MNIST is not in {target_dir} and torchvision could not download it " \
                      f"({first_line(error)})"
    if install is None:
        raise GanlabError(f"{problem}; {_FIXES}")
    install()
    return prepare_fashion_mnist(root, system_dir=system_dir, allow_download=False, raw_md5=raw_md5)


def _download(root: Path, mirrors: list[str] | None) -> None:
    """torchvision's download of both splits, from its own mirrors or from `mirrors`."""
    from torchvision.datasets import FashionMNIST

    dataset_class = FashionMNIST if mirrors is None else type("MirroredFashionMNIST", (FashionMNIST,), {
        "mirrors": mirrors, "resources": [(name, None) for name, _ in FashionMNIST.resources],
        "raw_folder": property(lambda self: os.path.join(self.root, "FashionMNIST", "raw"))})
    for train in (True, False):
        dataset_class(str(root), train=train, download=True)


def can_install_debian_packages() -> bool:
    """Whether apt-get exists and this user may run it: root, or sudo without a password."""
    if shutil.which("apt-get") is None:
        return False
    if os.geteuid() == 0:
        return True
    try:
        return subprocess.run(["sudo", "-n", "true"], capture_output=True, timeout=10).returncode == 0
    except (OSError, subprocess.SubprocessError):
        return False


def debian_installer() -> Callable[[], None] | None:
    """A function that installs Debian's dataset-fashion-mnist, or None where this user cannot install packages."""
    if not can_install_debian_packages():
        return None
    apt_get = ["apt-get"] if os.geteuid() == 0 else ["sudo", "-n", "apt-get"]

    def install() -> None:
        print(f"Fashion-MNIST: not found and not downloadable; installing Debian's {DEBIAN_PACKAGE} "
              f"({' '.join(apt_get)} install)", file=sys.stderr, flush=True)
        environment = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        install_command = [*apt_get, "install", "-y", "-qq", DEBIAN_PACKAGE]
        if subprocess.run(install_command, capture_output=True, env=environment).returncode == 0:
            return
        # A machine that never ran apt-get update knows no packages yet.
        subprocess.run([*apt_get, "update", "-qq"], capture_output=True, env=environment)
        result = subprocess.run(install_command, capture_output=True, text=True, env=environment)
        if result.returncode != 0:
            raise GanlabError(f"installing {DEBIAN_PACKAGE} failed ({first_line(Exception(result.stderr))}); "
                              f"{_FIXES}")

    return install


def load_images(root: Path, *, train: bool = True) -> tuple[torch.Tensor, torch.Tensor]:
    """uint8 images [N, 1, 28, 28] and int64 labels [N] of one split, read from the raw IDX files."""
    split = "train" if train else "t10k"
    try:
        images = read_idx(raw_dir(root) / f"{split}-images-idx3-ubyte")
        labels = read_idx(raw_dir(root) / f"{split}-labels-idx1-ubyte")
    except (OSError, ValueError) as error:
        raise GanlabError(f"Fashion-MNIST is not in {raw_dir(root)}; {_FIXES}") from error
    return images.unsqueeze(1).contiguous(), labels.long()


def read_idx(path: Path) -> torch.Tensor:
    """An IDX file of unsigned bytes (LeCun's MNIST format): a magic number 0x0000 08 NDIM, NDIM big-endian sizes,
    then the data."""
    content = path.read_bytes()
    if len(content) < 4 or content[:3] != b"\x00\x00\x08":
        raise ValueError(f"{path.name} is not an IDX file of unsigned bytes")
    dimensions = content[3]
    shape = [int.from_bytes(content[4 + 4 * index: 8 + 4 * index], "big") for index in range(dimensions)]
    data = content[4 + 4 * dimensions:]
    if len(data) != math.prod(shape):
        raise ValueError(f"{path.name} holds {len(data)} bytes, not the {shape} its header says")
    return torch.frombuffer(bytearray(data), dtype=torch.uint8).reshape(shape)


def to_training_tensor(images_uint8: torch.Tensor, device: torch.device | str) -> torch.Tensor:
    """Move the uint8 images to the device first (4× less to copy), then scale there to float32 in [-1, 1]."""
    return images_uint8.to(device).float().div_(127.5).sub_(1.0)


_FIXES = ("fix it by `apt-get install dataset-fashion-mnist`, by letting torchvision download it (needs "
          "internet), or by putting the four .gz files in <data dir>/FashionMNIST/raw/ (--data-dir or "
          "$GANLAB_DATA_DIR choose the data dir)")


def _extract_verified(gz_path: Path, raw_path: Path, expected_md5: str) -> None:
    """Decompress into a temporary file beside the target, check the MD5, then rename into place."""
    raw_path.parent.mkdir(parents=True, exist_ok=True)
    temporary_path = raw_path.with_name(raw_path.name + ".partial")
    try:
        try:
            with gzip.open(gz_path, "rb") as source, open(temporary_path, "wb") as target:
                while chunk := source.read(1 << 20):
                    target.write(chunk)
        except (OSError, EOFError, zlib.error) as error:
            raise GanlabError(f"{gz_path} is corrupt ({first_line(error)}); {_FIXES}") from error
        content_md5 = file_digest(temporary_path)
        if content_md5 != expected_md5:
            raise GanlabError(f"{gz_path} is corrupt: its content's MD5 is {content_md5}, the published one is "
                              f"{expected_md5}; {_FIXES}")
        os.replace(temporary_path, raw_path)
    finally:
        temporary_path.unlink(missing_ok=True)


def file_digest(path: Path, algorithm: str = "md5") -> str:
    """Hex digest of a file, read in 1 MB chunks (md5 for the dataset's published sums, sha256 for weights)."""
    digest = hashlib.new(algorithm)
    with open(path, "rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def main() -> int:
    """`python -m ganlab.data`: prepare the data alone and say where it is."""
    parser = argparse.ArgumentParser(description="Prepare Fashion-MNIST for ganlab.")
    parser.add_argument("--data-dir", help="Fashion-MNIST root (else $GANLAB_DATA_DIR, else data/)")
    root = resolve_data_dir(parser.parse_args().data_dir)
    try:
        prepare_fashion_mnist(root, install=debian_installer())
    except GanlabError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    print(f"Fashion-MNIST ready and verified in {raw_dir(root)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
