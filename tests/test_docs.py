"""The README is a front door and the reference cannot drift: generated blocks are current, every page is linked."""

import re
import sys

from helpers import run_script


def test_generated_flag_tables_and_results_in_the_docs_are_current(repo_root):
    result = run_script([sys.executable, "docs/generate.py", "--check"], cwd=repo_root, timeout=300)
    assert result.returncode == 0, result.stderr


def test_the_readme_is_short_and_links_every_docs_page(repo_root):
    readme = (repo_root / "README.md").read_text()
    assert len(readme.encode()) < 10_000
    linked = set(re.findall(r"\(docs/([\w-]+\.md)", readme))
    assert {page.name for page in (repo_root / "docs").glob("*.md")} <= linked


def test_every_script_has_a_flag_table_in_the_docs(repo_root):
    documented = set()
    for page in (repo_root / "docs").glob("*.md"):
        documented |= set(re.findall(r"<!-- generated: flags (\S+) -->", page.read_text()))
    scripts = {str(path.relative_to(repo_root)) for folder in ("experiments", "analysis")
               for path in (repo_root / folder).glob("*.py")}
    assert scripts <= documented, sorted(scripts - documented)
