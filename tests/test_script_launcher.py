"""The tests' script launcher (tests/script_launcher.py) runs a script as `python SCRIPT ARGS…` would."""

import os
import subprocess
import sys

import pytest

from helpers import run_script

PROBE = '''
import os, sys, tempfile
print(os.getcwd(), sys.argv[1:], sys.path[0] == os.path.dirname(os.path.abspath(__file__)), tempfile.gettempdir(),
      os.environ.get("PROBE_VALUE"), "HOME_ONLY_IN_PARENT" in os.environ)
print("to stderr", file=sys.stderr)
if sys.argv[1] == "raise":
    raise RuntimeError("uncaught")
sys.exit(int(sys.argv[1]))
'''


@pytest.mark.parametrize("argument", ["0", "7", "raise"])
def test_a_launched_script_sees_and_leaves_what_a_new_interpreter_would(tmp_path, monkeypatch, argument):
    script = tmp_path / "probe.py"
    script.write_text(PROBE)
    (tmp_path / "scratch").mkdir()
    monkeypatch.setenv("HOME_ONLY_IN_PARENT", "1")
    env = {key: value for key, value in os.environ.items() if key != "HOME_ONLY_IN_PARENT"}
    env |= {"PROBE_VALUE": "42", "TMPDIR": str(tmp_path / "scratch")}
    command = [sys.executable, str(script), argument]
    launched = run_script(command, cwd=tmp_path, env=env, timeout=60)
    started = subprocess.run(command, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
    assert (launched.returncode, launched.stdout) == (started.returncode, started.stdout)
    assert launched.stdout.startswith(f"{tmp_path} ['{argument}'] True {tmp_path / 'scratch'} 42 False")
    assert launched.stderr.startswith("to stderr\n") and started.stderr.startswith("to stderr\n")
    assert launched.stderr.strip().splitlines()[-1] == started.stderr.strip().splitlines()[-1]


def test_a_launched_script_past_its_timeout_is_killed(tmp_path):
    script = tmp_path / "sleeper.py"
    script.write_text("import time\ntime.sleep(600)\n")
    with pytest.raises(subprocess.TimeoutExpired):
        run_script([sys.executable, str(script)], cwd=tmp_path, timeout=2)
    quick = tmp_path / "quick.py"
    quick.write_text("raise SystemExit(5)\n")
    assert run_script([sys.executable, str(quick)], cwd=tmp_path, timeout=60).returncode == 5  # the next one runs
