"""Regenerate the parts of docs/*.md and README.md that copy something else, so they cannot drift from it.

    python docs/generate.py           # rewrite every generated block
    python docs/generate.py --check   # exit 1, naming the stale blocks, if any differs (a test runs this)

A block sits between `<!-- generated: KIND SOURCE -->` and `<!-- end generated -->`:
- `flags SCRIPT` (e.g. `flags experiments/train.py`): the script's flag table, from its own `build_parser()`;
- `file PATH` (e.g. `file results/cnn-balance/comparison/table.md`): a committed results file, quoted as it is,
  or a note saying which command writes it while it does not exist yet.
"""

import argparse
import importlib.util
import os
import re
import sys
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
BLOCK = re.compile(r"(<!-- generated: (?P<kind>flags|file) (?P<source>\S+) -->\n)(?P<body>.*?)(<!-- end generated -->)",
                   re.DOTALL)


def flags_table(script: str) -> str:
    """| flag | default | what it does | for every option of the script (from its parser, not by hand)."""
    spec = importlib.util.spec_from_file_location(f"docs_{Path(script).stem}", REPO_ROOT / script)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    parser = module.build_parser()
    rows = ["| flag | default | what it does |", "| --- | --- | --- |"]
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction):
            continue
        flags = ", ".join(f"`{flag}`" for flag in action.option_strings)
        if action.choices:
            flags += " " + "/".join(f"`{choice}`" for choice in action.choices)
        help_text = (action.help or "").replace("|", "\\|")
        default = re.search(r"\(default: ([^)]*)\)", help_text)
        help_text = re.sub(r"\s*\(default: [^)]*\)", "", help_text)
        shown_default = default.group(1) if default else ""
        if not default and action.default not in (None, argparse.SUPPRESS, False):
            shown_default = str(action.default)
        rows.append(f"| {flags} | {shown_default} | {help_text} |")
    return "\n".join(rows).replace(f"{REPO_ROOT}/", "") + "\n"  # the same table in every clone


def file_block(path: str, page: Path) -> str:
    """A committed results file as it is (linked relative to the page that quotes it), or what writes it."""
    source = REPO_ROOT / path
    if not source.exists():
        return f"*Not measured yet: `{path}` is written by the commands in its folder's run script.*\n"
    link = Path(os.path.relpath(source, page.parent)).as_posix()
    return source.read_text().rstrip("\n") + f"\n\n*(from [`{path}`]({link}))*\n"


def regenerate(text: str, page: Path) -> str:
    def replace(match: re.Match) -> str:
        body = flags_table(match["source"]) if match["kind"] == "flags" else file_block(match["source"], page)
        return match.group(1) + body + match.group(5)
    return BLOCK.sub(replace, text)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only check; exit 1 if a block is stale")
    arguments = parser.parse_args()
    sys.path.insert(0, str(REPO_ROOT))
    stale = []
    for page in [*sorted((REPO_ROOT / "docs").glob("*.md")), REPO_ROOT / "README.md"]:
        text = page.read_text()
        updated = regenerate(text, page)
        if updated != text:
            stale.append(page.relative_to(REPO_ROOT))
            if not arguments.check:
                page.write_text(updated)
    if arguments.check and stale:
        print(f"stale generated blocks in {', '.join(map(str, stale))}: run python docs/generate.py",
              file=sys.stderr)
        return 1
    print(f"{'checked' if arguments.check else 'regenerated'} docs/*.md and README.md" + (f" ({len(stale)} updated)"
                                                                             if stale and not arguments.check else ""))
    return 0


if __name__ == "__main__":
    sys.exit(main())
