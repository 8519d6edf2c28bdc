"""A folder of wheels that lets ganlab run on a GPU machine that has torch but no network (experiments/gpu_check.py).

    make gpu-wheels                                         # the same as the next line, with the venv's Python
    python -m ganlab.gpu_wheels                             # into .whl/, for the H200 image below (Python 3.12)
    python -m ganlab.gpu_wheels --have FILE --python 3.13   # for another machine: FILE = its `pip freeze`

What to carry is worked out, not listed by hand: ganlab's own requirements and everything they require, as this
venv has them installed (so the versions are constraints.txt's), with the markers evaluated for the target Python;
less every distribution the target already has. pip then downloads each as a binary wheel for the target (--no-deps,
exact versions), and the folder gets an install line. On the GPU machine:

    python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site .whl/*.whl
    export PYTHONPATH=/tmp/site:$PWD

The default target is this workplace's NVIDIA H200 image as last read (2026-11-17, Python 3.12.3, torch 2.11):
`gpu_image_packages.txt` beside this file. Its own versions of what it has (numpy, torch, …) are the ones used there.
"""

import argparse
import importlib.metadata
import re
import subprocess
import sys
from pathlib import Path

from packaging.markers import default_environment
from packaging.requirements import Requirement

from ganlab.cli import ArgumentParser, run_script
from ganlab.errors import GanlabError

IMAGE_PACKAGES = Path(__file__).with_name("gpu_image_packages.txt")
DEFAULT_OUT = Path(".whl")
# The manylinux tags pip may match for an x86-64 Linux with a recent glibc; pip matches each exactly.
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_24_x86_64", "manylinux_2_17_x86_64",
             "manylinux2014_x86_64", "manylinux1_x86_64", "any"]
ROOT = "ganlab"
ROOT_EXTRAS = ("system-metrics",)  # train.py --system-metrics reads the GPU through NVML
# A GPU run needs MLflow's client and its SQLite store, not its UI and server: mlflow-skinny holds both stores, the
# SQLite one needs SQLAlchemy and Alembic, and the full wheel (12 MB, mostly the UI's JavaScript, and its server's
# needs) would not fit beside the dataset in what travels to the device machine (64 MiB).
SUBSTITUTES = {"mlflow": ("mlflow-skinny", "sqlalchemy", "alembic")}


def canonical(name: str) -> str:
    """A distribution's name as pip compares them (PEP 503)."""
    return re.sub(r"[-_.]+", "-", name).lower()


def read_have(path: Path) -> set[str]:
    """The distributions a machine has: one per line, `name` or `name==version` (pip freeze), # comments."""
    try:
        lines = path.read_text().splitlines()
    except OSError as error:
        raise GanlabError(f"cannot read --have {path}: {error.strerror}") from error
    return {canonical(re.split(r"[=<>~! @;\[]", line.strip(), maxsplit=1)[0]) for line in lines
            if line.strip() and not line.lstrip().startswith("#")}


def requirement_closure(python_version: str) -> dict[str, str]:
    """ganlab's requirements and theirs, recursively, as installed here: canonical name → version (MLflow as in
    SUBSTITUTES). A requirement whose marker is false on the target Python is left out; one that holds there but is
    not installed here is an error."""
    environment = {**default_environment(), "python_version": python_version,
                   "python_full_version": f"{python_version}.0"}
    found: dict[str, str] = {}
    pending = [(ROOT, ROOT_EXTRAS)]
    while pending:
        name, extras = pending.pop()
        try:
            distribution = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError as error:
            raise GanlabError(f"{name} is needed on Python {python_version} but not installed here; "
                              f"pip install it (with constraints.txt) and run again") from error
        found[canonical(name)] = distribution.version
        for text in distribution.requires or []:
            requirement = Requirement(text)
            applies = requirement.marker is None or any(
                requirement.marker.evaluate({**environment, "extra": extra}) for extra in (*extras, ""))
            if not applies:
                continue
            for needed in SUBSTITUTES.get(canonical(requirement.name), (requirement.name,)):
                if canonical(needed) not in found:
                    pending.append((needed, tuple(requirement.extras) if needed == requirement.name else ()))
    return found


def carried(python_version: str, have: set[str]) -> dict[str, str]:
    """What the target lacks: the closure less what it has, and less ganlab itself (it travels as source)."""
    return {name: version for name, version in sorted(requirement_closure(python_version).items())
            if name not in have and name != ROOT}


def download(wheels: dict[str, str], out: Path, python_version: str) -> list[Path]:
    """pip download of each exact version as a binary wheel for the target; returns the folder's wheels. A folder
    that already holds other wheels is refused first: two versions of one package stop the whole install there."""
    out.mkdir(parents=True, exist_ok=True)
    stale = [path.name for path in sorted(out.glob("*.whl")) if _name_and_version(path) not in wheels.items()]
    if stale:
        raise GanlabError(f"{out}/ holds wheels that are not wanted now: {', '.join(stale)}; remove them or pick "
                          f"another --out")
    platforms = [argument for platform in PLATFORMS for argument in ("--platform", platform)]
    command = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
               "--python-version", python_version, "--implementation", "cp", *platforms, "--dest", str(out),
               *(f"{name}=={version}" for name, version in wheels.items())]
    completed = subprocess.run(command, capture_output=True, text=True)
    if completed.returncode != 0:
        last = (completed.stderr.strip().splitlines() or ["(no output)"])[-1]
        raise GanlabError(f"pip could not download the wheels for Python {python_version}: {last}")
    return sorted(out.glob("*.whl"))


def _name_and_version(wheel: Path) -> tuple[str, str]:
    """From a wheel's file name, NAME-VERSION-…whl (PEP 427)."""
    name, version = wheel.name.split("-")[:2]
    return canonical(name), version


def build_parser() -> ArgumentParser:
    parser = ArgumentParser(description=__doc__.splitlines()[0], epilog=__doc__.split("\n", 1)[1],
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help="the wheels folder (default: .whl)")
    parser.add_argument("--have", type=Path, default=IMAGE_PACKAGES,
                        help="what the target already has, one distribution a line (default: the H200 image's list)")
    parser.add_argument("--python", default="3.12", help="the target's Python, major.minor (default: 3.12)")
    parser.add_argument("--list", action="store_true", help="print what would be carried; download nothing")
    return parser


def main() -> int:
    arguments = build_parser().parse_args()
    if not re.fullmatch(r"3\.\d+", arguments.python):
        raise GanlabError(f"--python takes major.minor, e.g. 3.12, not {arguments.python!r}")
    wheels = carried(arguments.python, read_have(arguments.have))
    if arguments.list:
        print("\n".join(f"{name}=={version}" for name, version in wheels.items()))
        return 0
    files = download(wheels, arguments.out, arguments.python)
    megabytes = sum(path.stat().st_size for path in files) / 2**20
    print(f"{len(files)} wheels ({megabytes:.0f} MB) for Python {arguments.python} in {arguments.out}/; on the GPU "
          f"machine: python3 -m pip install -q --no-index --no-deps --no-compile --target /tmp/site "
          f"{arguments.out}/*.whl && export PYTHONPATH=/tmp/site:$PWD")
    return 0


if __name__ == "__main__":
    run_script(main)
