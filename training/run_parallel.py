"""Run several training commands at once (one GPU, many processes), each with its own log and time limit.

  python -m training.run_parallel PLAN.txt --logs DIR --timeout SECONDS
A plan has one command per line ('#' comments); $OUT in a line is replaced by --out.
"""
from __future__ import annotations

import argparse
import os
import shlex
import subprocess
import sys
import time
from pathlib import Path


def main(argv=None):
    p = argparse.ArgumentParser()
    p.add_argument("plan")
    p.add_argument("--logs", required=True)
    p.add_argument("--out", default="models")
    p.add_argument("--timeout", type=float, default=540)
    args = p.parse_args(argv)
    logs = Path(args.logs)
    logs.mkdir(parents=True, exist_ok=True)
    lines = [ln.strip() for ln in Path(args.plan).read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    procs = []
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for i, line in enumerate(lines):
        cmd = shlex.split(line.replace("$OUT", args.out))
        log = open(logs / f"job{i:02d}.log", "w")
        log.write(line + "\n")
        log.flush()
        procs.append((line, subprocess.Popen([sys.executable, *cmd], stdout=log, stderr=subprocess.STDOUT, env=env), log))
    t0 = time.time()
    while any(pr.poll() is None for _, pr, _ in procs) and time.time() - t0 < args.timeout:
        time.sleep(5)
    for line, pr, log in procs:
        if pr.poll() is None:
            pr.kill()
        pr.wait()
        log.close()
        print(f"rc={pr.returncode} {line}")


if __name__ == "__main__":
    main()
