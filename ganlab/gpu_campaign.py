"""The GPU campaign's parts (experiments/gpu_check.py runs them): its steps, running one within the time left,
pytest's JUnit XML read back, and the results as campaign.json and table.md."""

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent
GOALS = {("mlp", 64): 0.3, ("cnn", 64): 1.5}  # seconds per epoch on one H200, tracking on (issue 21)


@dataclass
class Step:
    """One command of the campaign and what became of it."""

    name: str
    command: list[str]
    timeout_s: float
    status: str = "not run"  # ok, failed, timed out, skipped (no time left)
    seconds: float = 0.0
    result: dict = field(default_factory=dict)
    error_tail: str = ""


def campaign_steps(device: str, quick: bool, out: Path, tracking_uri: str | None) -> list[Step]:
    """The machine, the GPU tests, then the benchmark grid (the evaluation timed once per architecture)."""
    python = sys.executable
    steps = [Step("machine", [python, "-c", MACHINE_PROBE, device], 60)]
    if not quick:
        steps.append(Step("gpu tests", [python, "-m", "pytest", "-m", "gpu", "-q", "-p", "no:cacheprovider",
                                        *gpu_test_files(), f"--junitxml={out / 'gpu-tests.xml'}"], 240))
    grid = [("mlp-small", 64, "fp32")] if quick else [
        (arch, batch, precision) for arch in ("mlp", "cnn") for batch in (64, 512) for precision in ("fp32", "bf16")]
    timed_evaluation: set[str] = set()
    for arch, batch, precision in grid:
        steps_per_loop = 5 if quick else max(60, 300 * 64 // batch)
        eval_samples = 0 if quick or arch in timed_evaluation else 10_000
        timed_evaluation.add(arch)
        steps.append(Step(f"benchmark {arch} b{batch} {precision}", [
            python, "experiments/benchmark.py", "--arch", arch, "--batch-size", str(batch), "--precision", precision,
            "--device", device, "--steps", str(steps_per_loop), "--repeats", "1", "--eval-samples", str(eval_samples),
            *(["--tracking-uri", tracking_uri] if tracking_uri else []), "--json", "--no-progress"], 90))
    return steps


def gpu_test_files() -> list[str]:
    """The test files with GPU-marked tests: only these are collected, since the others import what a GPU machine
    may lack (prdc, selenium, psycopg: the dev extra)."""
    return [str(path.relative_to(REPO_ROOT)) for path in sorted((REPO_ROOT / "tests").glob("test_*.py"))
            if "pytest.mark.gpu" in path.read_text()]


# Printed as one JSON object by the machine step (its argument: the device).
MACHINE_PROBE = """
import json, platform, subprocess, sys, torch
device = torch.device(sys.argv[1])
facts = {"python": platform.python_version(), "torch": torch.__version__, "cuda": torch.version.cuda,
         "device": str(device), "threads": torch.get_num_threads()}
if device.type == "cuda":
    properties = torch.cuda.get_device_properties(device)
    facts.update(gpu=properties.name, gpu_memory_gib=round(properties.total_memory / 2**30, 1),
                 multiprocessors=properties.multi_processor_count, capability=f"{properties.major}.{properties.minor}")
    try:
        facts["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                         capture_output=True, text=True, timeout=20).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        facts["driver"] = "unknown (no nvidia-smi)"
else:
    from ganlab.devices import machine_description
    facts["gpu"] = "none: " + machine_description(device)
print(json.dumps(facts))
"""


def run_step(step: Step, seconds_left: float) -> None:
    """Run one step within its limit and what is left of the budget; record its outcome."""
    limit = min(step.timeout_s, seconds_left)
    if limit < 10:
        step.status = "skipped (no time left)"
        return
    start = time.perf_counter()
    try:
        completed = subprocess.run(step.command, cwd=REPO_ROOT, capture_output=True, text=True, timeout=limit,
                                   env={**os.environ, "PYTHONUNBUFFERED": "1"})
    except subprocess.TimeoutExpired as expired:
        step.seconds, step.status = time.perf_counter() - start, f"timed out after {limit:.0f} s"
        step.error_tail = _tail(expired.stderr)
        return
    step.seconds = time.perf_counter() - start
    step.status = "ok" if completed.returncode == 0 else f"failed (exit {completed.returncode})"
    if completed.returncode != 0:
        step.error_tail = _tail(completed.stderr) or _tail(completed.stdout)
    lines = completed.stdout.strip().splitlines()
    if step.name == "gpu tests":
        step.result = junit_summary(Path(step.command[-1].removeprefix("--junitxml=")))
    elif lines and lines[-1].startswith("{"):
        try:
            step.result = json.loads(lines[-1])
        except json.JSONDecodeError:
            step.error_tail = step.error_tail or "its last line was not JSON"


def _tail(output: str | bytes | None, lines: int = 8) -> str:
    text = output.decode(errors="replace") if isinstance(output, bytes) else (output or "")
    return "\n".join(text.strip().splitlines()[-lines:])


def junit_summary(path: Path) -> dict:
    """Counts and the failed tests' names from pytest's JUnit XML (written by pytest here, read as data)."""
    if not path.is_file():
        return {}
    cases = ElementTree.parse(path).getroot().iter("testcase")
    summary = {"passed": 0, "failed": [], "skipped": 0}
    for case in cases:
        name = f"{case.get('classname')}.{case.get('name')}"
        if case.find("failure") is not None or case.find("error") is not None:
            summary["failed"].append(name)
        elif case.find("skipped") is not None:
            summary["skipped"] += 1
        else:
            summary["passed"] += 1
    return summary


def write_results(out: Path, steps: list[Step], started: str) -> None:
    """campaign.json (every step whole) and table.md (what a reader wants), both replaced atomically."""
    out.mkdir(parents=True, exist_ok=True)
    record = {"started": started, "steps": [step.__dict__ for step in steps]}
    _replace(out / "campaign.json", json.dumps(record, indent=2))
    _replace(out / "table.md", table_markdown(steps, started))


def _replace(path: Path, text: str) -> None:
    staging = path.with_name(path.name + ".partial")
    staging.write_text(text)
    staging.replace(path)


def table_markdown(steps: list[Step], started: str) -> str:
    machine = next((step.result for step in steps if step.name == "machine"), {})
    lines = [f"GPU campaign of {started}: {machine.get('gpu', '?')} (driver {machine.get('driver', '?')}), "
             f"torch {machine.get('torch', '?')}, CUDA {machine.get('cuda', '?')}, Python {machine.get('python', '?')}.",
             ""]
    for step in steps:
        if step.name == "gpu tests":
            result = step.result
            failed = ", ".join(result.get("failed", [])) or "none"
            lines += [f"`pytest -m gpu`: {step.status}, {result.get('passed', 0)} passed, {result.get('skipped', 0)} "
                      f"skipped, failed: {failed} ({step.seconds:.0f} s).", ""]
    lines += ["| arch | batch | precision | reports' loop s/epoch | ganlab s/epoch (tracked) | speedup | goal s/epoch "
              "| tracking cost | eval 10k s | status |", "|---|---|---|---|---|---|---|---|---|---|"]
    for step in steps:
        if not step.name.startswith("benchmark"):
            continue
        _, arch, batch, precision = step.name.split()
        result, batch_size = step.result, int(batch.removeprefix("b"))
        goal = GOALS.get((arch, batch_size))
        if result:
            lines.append(f"| {arch} | {batch_size} | {precision} | {result['reference_epoch_seconds']:.2f} | "
                         f"{result['ganlab_epoch_seconds']:.3f} | {result['speedup']:.1f}× | "
                         f"{'≤ ' + str(goal) if goal else '–'} | {100 * result['tracking_overhead']:+.0f}% | "
                         f"{result.get('eval_seconds', float('nan')):.2f} | {step.status} |")
        else:
            lines.append(f"| {arch} | {batch_size} | {precision} | | | | | | | {step.status} |")
    return "\n".join(lines).replace("| nan |", "| – |") + "\n"
