"""Is loadtest/overload.py's closed-loop throughput the server's, or its load generator's?

  python -m loadtest.driver_headroom [--seconds 10] [--server-cpus 0] [--client-cpus 1]
      -> loadtest/results/overload/driver_headroom.{json,md}

The overload script's server (`--workers 1 --pool-threads 1 --inline-max-bytes 65536`, pinned to one CPU)
under its own open-loop driver's closed loop (16 connections, batches of 4 texts, half IMDb reviews, half
SST-2 sentences), once at the floor threshold 0.1 and once at the defaults, with the CPU time each side
used over the run: a server near 100% of its CPU and a driver well below 100% of its own means the
throughput figures are the server's.
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from loadtest import openloop  # noqa: E402
from loadtest._server import free_port, serve_command, stop, wait_http  # noqa: E402
from loadtest.overload import MODELS, hardware  # noqa: E402
from loadtest.texts import load_labelled  # noqa: E402

SERVER_ARGS = ["--workers", "1", "--pool-threads", "1", "--inline-max-bytes", "65536", "--log-level", "warning"]


def cpu_seconds(pid: int) -> float:
    """user + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--seconds", type=float, default=10.0, help="length of each closed-loop run")
    p.add_argument("--connections", type=int, default=16)
    p.add_argument("--server-cpus", default="0")
    p.add_argument("--client-cpus", default="1")
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--out", default=str(ROOT / "loadtest/results/overload"))
    args = p.parse_args(argv)
    port = free_port()
    cmd = ["taskset", "-c", args.server_cpus, *serve_command(args.models_dir, port, SERVER_ARGS)]
    server = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
    rows = []
    try:
        url = f"http://127.0.0.1:{port}"
        wait_http(f"{url}/healthz", 120, server)
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})
        texts = {k: load_labelled(k, 1000) for k in MODELS}
        for name, threshold in (("floor 0.1", "0.1"), ("defaults", None)):
            requests = openloop.build_requests(texts, MODELS, batch=4, threshold=threshold)
            openloop.run(url, requests, 0, 2.0, connections=args.connections)  # warm-up, not recorded
            s0, d0, t0 = cpu_seconds(server.pid), time.process_time(), time.monotonic()
            answers = openloop.run(url, requests, 0, args.seconds, connections=args.connections)
            s1, d1, t1 = cpu_seconds(server.pid), time.process_time(), time.monotonic()
            wall = t1 - t0
            ok = sum(r["status"] == 200 for r in answers)
            rows.append({"thresholds": name, "req_per_s": round(ok / wall, 1),
                         "server_cpu_pct": round(100 * (s1 - s0) / wall, 1),
                         "driver_cpu_pct": round(100 * (d1 - d0) / wall, 1), "errors": len(answers) - ok})
            print(rows[-1], flush=True)
    finally:
        stop(server)
    result = {"command": " ".join(["python -m loadtest.driver_headroom", *(argv if argv is not None else sys.argv[1:])]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "hardware": hardware(), "server_cpus": args.server_cpus, "client_cpus": args.client_cpus,
              "connections": args.connections, "seconds": args.seconds, "rows": rows}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "driver_headroom.json").write_text(json.dumps(result, indent=1) + "\n")
    lines = ["# Closed loop: the server's CPU and the load generator's", "",
             f"`{result['command']}` ({result['date']}; {result['hardware']['cpu']}, {result['hardware']['cpus']} CPUs). Server (`skimserve serve "
             f"{' '.join(SERVER_ARGS)}`) on CPU {args.server_cpus}, loadtest/openloop.py's closed loop "
             f"({args.connections} connections, batches of 4 texts, half IMDb reviews, half SST-2 sentences) on "
             f"CPU {args.client_cpus}, {args.seconds:g} s each after 2 s of warm-up. CPU % = CPU seconds used / "
             "wall seconds (100% = one core).", "",
             "| thresholds | req/s | server CPU % | driver CPU % | errors |", "| --- | ---: | ---: | ---: | ---: |"]
    lines += [f"| {r['thresholds']} | {r['req_per_s']} | {r['server_cpu_pct']} | {r['driver_cpu_pct']} | {r['errors']} |"
              for r in rows]
    (out / "driver_headroom.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
