"""What each training command keeps of its run: the wall clock, a JSON-lines log (printed above the progress
bar, written beside the artifact as train_log.jsonl), SIGTERM as a request to stop after the current step and
still write the best checkpoint (e.g. from `timeout`), and the exact command line for the manifest."""
from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from pathlib import Path

from tqdm import tqdm

LOG_FILE = "train_log.jsonl"


def command_line(module: str, argv: list[str] | None) -> str:
    """The command a manifest or card records: `python -m MODULE ARGS` (argv None: this process's)."""
    return f"python -m {module} " + " ".join(shlex.quote(a) for a in (argv if argv is not None else sys.argv[1:]))


class RunLog:
    def __init__(self, module: str):
        self.module = module
        self.t_start = time.time()
        self.lines: list[str] = []
        self.sigterm_at: float | None = None

    def elapsed(self) -> float:
        return time.time() - self.t_start

    def over_budget(self, seconds: float) -> bool:
        """True once a time budget (0 = none) is spent."""
        return bool(seconds) and self.elapsed() > seconds

    def stop_on_sigterm(self) -> None:
        """From here on, SIGTERM sets sigterm_at instead of killing the process (call once training starts)."""
        def handler(*_):
            if self.sigterm_at is None:
                self.sigterm_at = self.elapsed()
        signal.signal(signal.SIGTERM, handler)

    def log(self, rec: dict) -> None:
        line = json.dumps({"time_s": round(self.elapsed(), 1), **rec})
        self.lines.append(line)
        tqdm.write(line)

    def write(self, folder: Path) -> None:
        (Path(folder) / LOG_FILE).write_text("\n".join(self.lines) + "\n", encoding="utf-8")

    def command(self, argv: list[str] | None) -> str:
        return command_line(self.module, argv)
