"""Command lines derived from config dataclasses, the flags every script shares, and the one place scripts turn
errors into exit codes.

Each config field becomes a kebab-case flag whose default and help come from the dataclass, so the documented
defaults live in exactly one place; a `tuple[X, ...]` field is a flag given once per item (`--set 1=0,10 --set
70=-10`). Each script builds its parser in `build_parser()` from `script_parser` and the `add_*` helpers below, so
`docs/generate.py` can print its flag table.
"""

import argparse
import dataclasses
import sys
import types
import typing
from collections.abc import Callable
from pathlib import Path

from ganlab.errors import GanlabError

EXIT_USAGE = 2  # bad input: one line on stderr
DATA_DIR_HELP = "Fashion-MNIST root (else $GANLAB_DATA_DIR, else data/)"
TRACKING_URI_HELP = "MLflow store (else $MLFLOW_TRACKING_URI, else sqlite:///mlruns/mlflow.db)"
DEVICE_HELP = "cpu, cuda, cuda:N, mps or auto (cuda when available)"


def option(default, help: str, flag: str | None = None, **argparse_options):  # noqa: A002 - argparse's keyword
    """A dataclass field that carries its command-line help, optionally its own flag name (else --field-name), and
    argparse extras such as choices."""
    return dataclasses.field(default=default, metadata={"help": help, "flag": flag, **argparse_options})


def add_config_arguments(parser: argparse.ArgumentParser, config_class: type) -> None:
    """One flag per field; defaults are SUPPRESSed so `explicit_fields` can tell what the user typed."""
    hints = typing.get_type_hints(config_class)
    for config_field in dataclasses.fields(config_class):
        value_type = _base_type(hints[config_field.name])
        extras = {key: value for key, value in config_field.metadata.items() if key not in ("help", "flag")}
        help_text = config_field.metadata.get("help", "")
        if config_field.default is not None and "default" not in help_text:  # None: the help says what happens
            help_text += f" (default: {config_field.default})"
        flag = config_field.metadata.get("flag") or "--" + config_field.name.replace("_", "-")
        common = {"dest": config_field.name, "default": argparse.SUPPRESS, "help": help_text, **extras}
        if value_type is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, **common)
            continue
        common.setdefault("metavar", config_field.name.upper())
        if typing.get_origin(value_type) is tuple:  # repeatable: one item per use of the flag
            parser.add_argument(flag, type=typing.get_args(value_type)[0], action="append", **common)
        else:
            parser.add_argument(flag, type=value_type, **common)


def config_flags(config) -> list[str]:
    """The inverse of add_config_arguments: the flags that give `config` (the fields that differ from the defaults),
    for starting a script again with the same settings."""
    flags = []
    for config_field in dataclasses.fields(config):
        value = getattr(config, config_field.name)
        if value == config_field.default or value is None:
            continue
        flag = config_field.metadata.get("flag") or "--" + config_field.name.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else "--no-" + flag.removeprefix("--"))
        elif isinstance(value, tuple):  # repeatable: one use of the flag per item
            flags += [item for element in value for item in (flag, str(element))]
        else:
            flags += [flag, str(value)]
    return flags


def explicit_fields(namespace: argparse.Namespace, config_class: type) -> dict:
    """The config fields the user gave on the command line."""
    names = {config_field.name for config_field in dataclasses.fields(config_class)}
    return {name: tuple(value) if isinstance(value, list) else value
            for name, value in vars(namespace).items() if name in names}


def run_script(main: Callable[[], int | None]) -> None:
    """Run a script's main: GanlabError → `error: …` on stderr and exit 2; Ctrl-C → exit 130."""
    try:
        exit_code = main()
    except GanlabError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(getattr(error, "exit_code", EXIT_USAGE))  # 3: a run that stopped learning (TrainingFailed)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
    sys.exit(exit_code or 0)


def script_parser(docstring: str) -> "ArgumentParser":
    """A script's parser: the docstring's first line as the description, the rest (its examples) as the epilog."""
    return ArgumentParser(description=docstring.splitlines()[0], epilog=docstring.split("\n", 1)[1],
                          formatter_class=argparse.RawDescriptionHelpFormatter)


def add_common_flags(parser: argparse.ArgumentParser, *, tracking: bool = True, device: bool = False,
                     data_dir: bool = False, out: str | None = None, json_output: bool = False,
                     progress: bool = False) -> None:
    """The flags scripts share, worded once: --tracking-uri, --device, --data-dir, --out, --json, --no-progress."""
    if tracking:
        parser.add_argument("--tracking-uri", help=TRACKING_URI_HELP)
    if device:
        parser.add_argument("--device", default="auto", help=DEVICE_HELP + " (default: auto)")
    if data_dir:
        parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    if out:
        parser.add_argument("--out", type=Path, help=f"also keep {out} in this new (or empty) folder")
    if json_output:
        parser.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="no progress bar (logs, CI)")


def empty_folder(path: Path | None) -> Path | None:
    """An --out folder that is new or empty: nothing in it is ever overwritten."""
    if path is not None and path.exists() and (not path.is_dir() or any(path.iterdir())):
        raise GanlabError(f"--out {path} exists and is not an empty folder; nothing is overwritten")
    return path


class ArgumentParser(argparse.ArgumentParser):
    """argparse with ganlab's exit convention: a usage error is one line and exit 2."""

    def error(self, message: str) -> typing.NoReturn:
        print(f"error: {message} (see --help)", file=sys.stderr)
        sys.exit(EXIT_USAGE)


def _base_type(hint) -> type:
    """int for `int`, `int | None` and `Optional[int]`."""
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        (hint,) = [member for member in typing.get_args(hint) if member is not type(None)]
    return hint
