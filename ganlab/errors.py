"""The exceptions scripts turn into exit codes: a user's mistake (2), a stopped run (128 + signal), a failed one (3)."""


def first_line(error: BaseException, limit: int = 300) -> str:
    """An error's message as one line (its first), for one-line errors and tags."""
    lines = str(error).strip().splitlines()
    return (lines[0] if lines else type(error).__name__)[:limit]


class GanlabError(Exception):
    """A problem the user can fix: the message says what went wrong and how to fix it."""


class TrainingInterrupted(Exception):
    """Raised after Ctrl-C / SIGTERM once the checkpoint is written; the run ends KILLED."""

    def __init__(self, signal_number: int, run_id: str):
        super().__init__(f"interrupted by signal {signal_number}; resume with --resume {run_id}")
        self.signal_number = signal_number
        self.run_id = run_id


class TrainingFailed(GanlabError):
    """Training stopped learning (non-finite values, or a saturated D that passes no gradient to G).

    The run ends FAILED with tags `ganlab.failure` (the kind) and `ganlab.failure_step`; the last good checkpoint
    is kept, so `--resume` continues from it."""

    exit_code = 3

    def __init__(self, kind: str, step: int, detail: str, run_id: str = "", checkpoint_step: int | None = None):
        kept = (f"the last good checkpoint (step {checkpoint_step}) is kept" + (f"; resume with --resume {run_id}"
                                                                                 if run_id else "")
                if checkpoint_step is not None else "no checkpoint was written before it")
        super().__init__(f"{'run ' + run_id + ' ' if run_id else ''}{kind} at step {step}: {detail}; {kept}")
        self.kind = kind
        self.step = step
        self.detail = detail
        self.run_id = run_id
