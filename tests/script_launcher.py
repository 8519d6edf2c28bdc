"""Starts ganlab's scripts for the tests as forked children of one process that imported torch, MLflow and ganlab once.

A script's own start-up is mostly imports (~5 s of torch, MLflow and Optuna on a CI core); the suite runs scripts a
few hundred times. Each request still runs in its own process: its own working directory, environment, standard
streams, exit status and death, as `python SCRIPT ARGS…` would; only the interpreter and the imports are shared. The
tests that signal a script, and the `--help` tests that prove every script starts cold, start real interpreters.

Protocol: one JSON request per line on stdin ({script, arguments, cwd, env, stdout, stderr}); the launcher answers
{"pid": …} when the child started and {"returncode": …} when it ended, one line each.
"""

import importlib
import json
import os
import runpy
import sys
import tempfile
import traceback

# What the scripts import at start-up, imported here once. Nothing runs a torch op here: a child inherits no
# thread pool (a forked OpenMP pool hangs).
PRELOADED = ("torch", "mlflow", "optuna", "ganlab.cli", "ganlab.lab", "ganlab.latent_study", "ganlab.metrics",
             "ganlab.model_registry", "ganlab.report", "ganlab.train", "ganlab.tuning")
environment_before_imports = dict(os.environ)
for module_name in PRELOADED:
    importlib.import_module(module_name)
# What the imports set in the environment (ganlab.tracking turns MLflow's artifact progress bars off): a script's
# own imports would set it again, so each child gets it on top of the environment it asks for.
SET_BY_IMPORTS = {name: value for name, value in os.environ.items() if environment_before_imports.get(name) != value}


def run_child(request: dict) -> None:
    """In the forked child: become `python SCRIPT ARGS…`. Never returns: the script's SystemExit, or its uncaught
    exception, ends this interpreter as it would end a new one (exit status, traceback, atexit, thread joins)."""
    try:
        os.chdir(request["cwd"])
        os.environ.clear()
        os.environ.update(request["env"])
        os.environ.update(SET_BY_IMPORTS)
        tempfile.tempdir = None  # read $TMPDIR again, as a new interpreter would
        os.setsid()  # its own session, as subprocess's start_new_session: no terminal signals from the tests
        for path, flags, target in ((os.devnull, os.O_RDONLY, 0),
                                    (request["stdout"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 1),
                                    (request["stderr"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 2)):
            descriptor = os.open(path, flags, 0o644)
            os.dup2(descriptor, target)
            os.close(descriptor)
        sys.stdin, sys.stdout, sys.stderr = open(0), open(1, "w"), open(2, "w")
        script = os.path.abspath(request["script"])
        sys.argv = [request["script"], *request["arguments"]]
        sys.path[0] = os.path.dirname(script)  # as `python SCRIPT` puts the script's folder first
    except BaseException:  # noqa: BLE001 - the launcher's own failure, never the script's
        traceback.print_exc()
        os._exit(70)
    runpy.run_path(script, run_name="__main__")
    sys.exit(0)


def main() -> None:
    for line in sys.stdin:
        request = json.loads(line)
        pid = os.fork()
        if pid == 0:
            run_child(request)
        print(json.dumps({"pid": pid}), flush=True)
        _, status = os.waitpid(pid, 0)
        print(json.dumps({"returncode": os.waitstatus_to_exitcode(status)}), flush=True)


if __name__ == "__main__":
    main()
