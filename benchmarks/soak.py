"""Hostile load against a live `python -m service serve` on loopback (issue 20); not part of CI.

  python -m benchmarks.soak [--workers 1] [--scenarios bodies,overload,soak] [--soak-s 600]
      -> benchmarks/results/soak.{json,md}  (--tag NAME: soak-NAME.{json,md})

Scenarios, each against a fresh server (the real models of --models-dir, default settings):
- bodies: 64 clients at once each send a body at the body limit (max_body_bytes): by default
  `{"text": "aaa..."}`, one string (the issue's case), and `{"texts": [...]}`, a batch of maximal texts.
  Reported: every status and its latency (request start to status line), and the server's memory (RSS
  of the parent and its workers, from /proc): idle before, peak while, and 3 s after.
- overload: 200 connections post long IMDb reviews (the longest test reviews, cut to max_text_bytes) to
  /classify in a closed loop without pause (a shed request is retried at once), for --overload-s. Two
  separate processes probe the server meanwhile, each every 20 ms on a new connection: GET /healthz (as an
  orchestrator's liveness probe does) and POST /classify of a long review (as a new client does; under
  this load most are shed). Reported: /healthz latency p50/p99/max, the probe POSTs' latency by status
  (503: what a shed client waits for its answer), the load's counts and 200s per second.
  --load wrk (the default when wrk is installed): the load is wrk (C, two threads, benchmarks/wrk_post.lua)
  at nice 10. --load python: the asyncio generator below, which also times every request it sends by
  status; on this 2-core machine that generator, niced and saturated, measures mostly its own event
  loop (a response waits for the generator to get round to it), so the probes are the figures to read.
- soak: --soak-connections (8) connections of mixed requests (SST-2 and IMDb /classify, SQuAD /qa) for
  --soak-s; reported: requests, any status other than 200, memory every 5 s.

The Python load generators are raw asyncio HTTP/1.1 (keep-alive, one request at a time per connection) in
their own process at nice 10, as wrk is, so the probes' timings do not wait on them; the server, the load
and the probes still share this machine's cores (and whatever else runs on it), which the figures include.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import gzip
import json
import multiprocessing as mp
import os
import platform
import random
import re
import shlex
import shutil
import socket
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
OUT = ROOT / "benchmarks" / "results"
sys.path.insert(0, str(ROOT / "loadtest"))
from _server import free_port, serve_command, stop, wait_http  # noqa: E402

from service import cli  # noqa: E402
from service.config import Settings  # noqa: E402


# --- the server and its memory ---------------------------------------------------------------------------

def tree_pids(pid: int) -> list[int]:
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        try:
            todo += [int(c) for c in Path(f"/proc/{p}/task/{p}/children").read_text().split()]
        except OSError:
            pass
    return out


def rss_mb(pid: int) -> float:
    total = 0
    for p in tree_pids(pid):
        try:
            m = re.search(r"VmRSS:\s+(\d+) kB", Path(f"/proc/{p}/status").read_text())
        except OSError:
            continue
        if m and b"resource_tracker" not in Path(f"/proc/{p}/cmdline").read_bytes():
            total += int(m.group(1))
    return total / 1024


class Server:
    def __init__(self, models_dir: str, workers: int, log: Path, extra: list[str] = ()):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = open(log, "ab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("SKIMSERVE_")}
        self.proc = subprocess.Popen(serve_command(models_dir, self.port, ["--workers", str(workers),
                                                                           "--log-level", "warning", *extra]),
                                     cwd=ROOT, stdout=self.log, stderr=subprocess.STDOUT, env=env)
        wait_http(f"{self.url}/readyz", 120, self.proc)

    def rss(self) -> float:
        return rss_mb(self.proc.pid)

    def close(self):
        stop(self.proc)
        self.log.close()


class MemorySampler(threading.Thread):
    def __init__(self, server: Server, every: float):
        super().__init__(daemon=True)
        self.server, self.every, self.samples, self.done = server, every, [], threading.Event()

    def run(self):
        t0 = time.monotonic()
        while not self.done.is_set():
            self.samples.append((round(time.monotonic() - t0, 2), round(self.server.rss(), 1)))
            self.done.wait(self.every)

    def stop(self):
        self.done.set()
        self.join()
        return self.samples


# --- raw HTTP/1.1 client -----------------------------------------------------------------------------------

def http_request(method: str, path: str, body: bytes = b"") -> bytes:
    head = f"{method} {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n"
    if body:
        head += f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n"
    return head.encode() + b"\r\n" + body


async def read_response(reader: asyncio.StreamReader) -> tuple[int, bytes, bool]:
    """(status, body, server closes); reads exactly one response."""
    head = await reader.readuntil(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    status = int(lines[0].split(" ", 2)[1])
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:] if line)}
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return status, body, headers.get("connection", "").lower() == "close"


def pct(values: list[float], q: float) -> float | None:
    if not values:
        return None
    values = sorted(values)
    return values[min(len(values) - 1, max(0, round(q / 100 * len(values) + 0.5) - 1))]


def summary_ms(values: list[float]) -> dict:
    ms = [v * 1000 for v in values]
    return {"n": len(ms), "p50": pct(ms, 50), "p99": pct(ms, 99), "max": max(ms) if ms else None}


# --- scenario: 64 bodies at the body limit -------------------------------------------------------------------

async def _send_big(port: int, data: bytes) -> tuple[int, float]:
    t0 = time.perf_counter()
    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)

    async def push():
        try:
            for i in range(0, len(data), 1 << 16):
                writer.write(data[i:i + (1 << 16)])
                await writer.drain()
        except (ConnectionError, OSError):
            pass  # the server answered and closed before the whole body was sent

    pusher = asyncio.ensure_future(push())
    try:
        status, _, _ = await asyncio.wait_for(read_response(reader), 60)
    except (asyncio.IncompleteReadError, ConnectionError, asyncio.TimeoutError) as exc:
        status = f"no answer ({type(exc).__name__})"
    took = time.perf_counter() - t0
    pusher.cancel()
    writer.close()
    return status, took


def big_bodies(settings: Settings) -> dict[str, bytes]:
    limit = settings.max_body_bytes
    one = b'{"text": "' + b"a" * (limit - 12) + b'"}'
    text = b'"' + b"good film " * ((settings.max_text_bytes - 2) // 10) + b'"'
    n = (limit - 20) // (len(text) + 2)
    batch = b'{"texts": [' + b", ".join([text] * n) + b"]}"
    batch += b" " * (limit - len(batch))  # whitespace up to the limit: still valid JSON
    return {name: http_request("POST", "/classify", body)
            for name, body in {"one string": one, "batch of maximal texts": batch}.items()}


def scenario_bodies(server: Server, settings: Settings, clients: int) -> dict:
    out = {}
    for name, data in big_bodies(settings).items():
        warm(server)
        time.sleep(1.0)
        idle = server.rss()
        sampler = MemorySampler(server, 0.05)
        sampler.start()

        async def run():
            return await asyncio.gather(*[_send_big(server.port, data) for _ in range(clients)])

        results = asyncio.run(run())
        time.sleep(3.0)
        samples = sampler.stop()
        after = server.rss()
        statuses = {}
        for status, _ in results:
            statuses[str(status)] = statuses.get(str(status), 0) + 1
        out[name] = {"clients": clients, "body_bytes": len(data), "statuses": statuses,  # body_bytes: head + body
                     "latency_ms": summary_ms([t for _, t in results]),
                     "rss_mb": {"idle": round(idle, 1), "peak": max(s for _, s in samples), "after_3s": round(after, 1)},
                     "after_vs_idle": round(after / idle, 3)}
        print(f"bodies/{name}: {out[name]}", flush=True)
    return out


def warm(server: Server):
    import httpx

    for _ in range(20):
        httpx.post(f"{server.url}/classify", json={"text": "a gripping , funny film ."}, timeout=30)


# --- scenario: overload with a liveness probe ---------------------------------------------------------------

# The load generator runs at a lower CPU priority: on one machine it would otherwise take the server's
# cores, which load from other machines does not (the probe keeps the default priority).
LOAD_NICE = 10


def probe(port: int, seconds: float, every: float, queue) -> None:
    """GET /healthz on a new connection every `every` s; (latency s or None) per probe."""
    out, deadline = [], time.monotonic() + seconds
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
                s.sendall(http_request("GET", "/healthz") + b"")
                reply = b""
                while b"\r\n\r\n" not in reply or not reply.endswith(b"}"):
                    chunk = s.recv(4096)
                    if not chunk:
                        break
                    reply += chunk
            ok = reply.startswith(b"HTTP/1.1 200")
            out.append(time.perf_counter() - t0 if ok else None)
        except OSError:
            out.append(None)
        time.sleep(max(0.0, every - (time.perf_counter() - t0)))
    queue.put(out)


def post_probe(port: int, body: bytes, seconds: float, every: float, queue) -> None:
    """POST /classify of `body` on a new connection every `every` s: (status or None, latency s to the
    status line, answered by the connection itself (no uvicorn `server` header)) per probe."""
    out, deadline = [], time.monotonic() + seconds
    request = http_request("POST", "/classify", body)
    while time.monotonic() < deadline:
        t0 = time.perf_counter()
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=30) as s:
                s.sendall(request)
                reply = b""
                while b"\r\n\r\n" not in reply:
                    chunk = s.recv(65536)
                    if not chunk:
                        break
                    reply += chunk
            took = time.perf_counter() - t0
            status = int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else None
            out.append((status, took, b"\r\nserver: uvicorn" not in reply.split(b"\r\n\r\n")[0].lower()))
        except OSError:
            out.append((None, time.perf_counter() - t0, False))
        time.sleep(max(0.0, every - (time.perf_counter() - t0)))
    queue.put(out)


def _wrk_load(port: int, bodies: list[bytes], connections: int, seconds: float) -> subprocess.Popen:
    path = Path(os.environ.get("TMPDIR", "/tmp")) / f"skimserve-soak-bodies-{os.getpid()}.txt"
    path.write_bytes(b"\n".join(bodies) + b"\n")  # one JSON body a line (json.dumps writes no newline)
    env = {**os.environ, "WRK_BODIES": str(path), "WRK_PATH": "/classify"}
    return subprocess.Popen(["nice", "-n", str(LOAD_NICE), "wrk", "-t2", f"-c{connections}", f"-d{max(1, round(seconds))}s",
                             "--timeout", "30s", "-s", str(ROOT / "benchmarks" / "wrk_post.lua"),
                             f"http://127.0.0.1:{port}"], env=env, stdout=subprocess.PIPE, text=True)


def _load(port: int, bodies: list[bytes], connections: int, seconds: float, queue) -> None:
    os.nice(LOAD_NICE)
    lat: dict[int, list[float]] = {}
    errors: dict[str, int] = {}

    async def conn(i: int):
        rng = random.Random(i)
        deadline = time.monotonic() + seconds
        reader = writer = None
        while time.monotonic() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
                t0 = time.perf_counter()
                writer.write(http_request("POST", "/classify", rng.choice(bodies)))
                status, _, closes = await read_response(reader)
                lat.setdefault(status, []).append(time.perf_counter() - t0)
                if closes:
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError) as exc:
                errors[type(exc).__name__] = errors.get(type(exc).__name__, 0) + 1
                writer = None
                await asyncio.sleep(0.05)
        if writer is not None:
            writer.close()

    async def run():
        await asyncio.gather(*[conn(i) for i in range(connections)])

    asyncio.run(run())
    queue.put({"latencies": {str(k): v for k, v in lat.items()}, "errors": errors})


def long_reviews(settings: Settings, n: int = 200) -> list[bytes]:
    from training.data import data_dir

    with gzip.open(data_dir() / "imdb" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        texts = sorted((json.loads(line)["text"] for line in f), key=len, reverse=True)[:n]
    cut = []
    for t in texts:
        b = t.encode("utf-8")[: settings.max_text_bytes].decode("utf-8", "ignore")
        cut.append(json.dumps({"text": b}).encode())
    return cut


def scenario_overload(server: Server, settings: Settings, connections: int, seconds: float, load_kind: str) -> dict:
    bodies = long_reviews(settings)
    warm(server)
    ctx = mp.get_context("spawn")
    q_probe, q_post, q_load = ctx.Queue(), ctx.Queue(), ctx.Queue()
    if load_kind == "wrk":
        load = _wrk_load(server.port, bodies, connections, seconds)
    else:
        load = ctx.Process(target=_load, args=(server.port, bodies, connections, seconds, q_load))
        load.start()
    lead = min(3.0, seconds / 5)
    time.sleep(lead)  # probe once the load is on
    probe_s = seconds - lead - 1
    probe_body = sorted(bodies, key=len)[len(bodies) // 2]  # the median review
    probes = [ctx.Process(target=probe, args=(server.port, probe_s, 0.02, q_probe)),
              ctx.Process(target=post_probe, args=(server.port, probe_body, probe_s, 0.02, q_post))]
    for pr in probes:
        pr.start()
    health, posts = q_probe.get(), q_post.get()
    if load_kind == "wrk":
        figures = json.loads(load.communicate()[0].strip().splitlines()[-1])
        result = {"errors": {"socket_errors": figures["socket_errors"]} if figures["socket_errors"] else {}}
        statuses = {"2xx": figures["requests"] - figures["non_2xx"], "not 2xx": figures["non_2xx"]}
        ok = statuses["2xx"]
    else:
        result = q_load.get()
        load.join()
        statuses = {k: len(v) for k, v in result["latencies"].items()}
        ok = statuses.get("200", 0)
    for pr in probes:
        pr.join()
    ok_probes = [p for p in health if p is not None]
    by_status: dict[str, list[float]] = {}
    for status, took, _ in posts:
        by_status.setdefault(str(status), []).append(took)
    out = {"connections": connections, "seconds": seconds, "load": load_kind,
           "review_bytes_median": statistics.median(len(b) for b in bodies), "probe_body_bytes": len(probe_body),
           "healthz_ms": summary_ms(ok_probes), "healthz_failed": len(health) - len(ok_probes),
           "probe_post_ms": {k: summary_ms(v) for k, v in sorted(by_status.items())},
           "probe_503_from_the_connection": sum(1 for status, _, own in posts if status == 503 and own),
           "statuses": statuses, "client_errors": result["errors"],
           "throughput_200_per_s": round(ok / seconds, 1)}
    if load_kind == "wrk":
        out["wrk"] = figures
    else:
        out["latency_ms"] = {k: summary_ms(v) for k, v in result["latencies"].items()}
    print(f"overload: {json.dumps(out)}", flush=True)
    return out


# --- scenario: soak ------------------------------------------------------------------------------------------

def mixed_bodies() -> list[tuple[str, bytes]]:
    from training.data import data_dir

    root = data_dir()
    rng = random.Random(5)
    with open(root / "sst2" / "test.txt", encoding="utf-8") as f:
        short = [line.split(" ", 1)[1].strip() for line in f if line.strip()]
    with gzip.open(root / "imdb" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
        long = [json.loads(line)["text"] for _, line in zip(range(2000), f)]
    squad = json.loads((root / "squad" / "test.json").read_text(encoding="utf-8"))
    qa = [{"context": p["context"], "question": q["question"]} for a in squad["data"] for p in a["paragraphs"]
          for q in p["qas"]]
    out = [("/classify?model=sst2-skim", json.dumps({"text": t}).encode()) for t in rng.sample(short, 200)]
    out += [("/classify?model=imdb-skim", json.dumps({"text": t}).encode()) for t in rng.sample(long, 200)]
    out += [("/qa", json.dumps(item).encode()) for item in rng.sample(qa, 200)]
    return out


def _soak_load(port: int, requests: list, connections: int, seconds: float, queue) -> None:
    os.nice(LOAD_NICE)
    counts: dict[str, int] = {}

    async def conn(i: int):
        rng = random.Random(i)
        deadline = time.monotonic() + seconds
        reader = writer = None
        while time.monotonic() < deadline:
            try:
                if writer is None:
                    reader, writer = await asyncio.open_connection("127.0.0.1", port, limit=1 << 20)
                path, body = rng.choice(requests)
                writer.write(http_request("POST", path, body))
                status, _, closes = await read_response(reader)
                counts[str(status)] = counts.get(str(status), 0) + 1
                if closes:
                    writer.close()
                    writer = None
            except (OSError, asyncio.IncompleteReadError) as exc:
                counts[type(exc).__name__] = counts.get(type(exc).__name__, 0) + 1
                writer = None

    async def run():
        await asyncio.gather(*[conn(i) for i in range(connections)])

    asyncio.run(run())
    queue.put(counts)


def scenario_soak(server: Server, connections: int, seconds: float) -> dict:
    requests = mixed_bodies()
    warm(server)
    idle = server.rss()
    sampler = MemorySampler(server, 5.0)
    sampler.start()
    ctx = mp.get_context("spawn")
    q = ctx.Queue()
    load = ctx.Process(target=_soak_load, args=(server.port, requests, connections, seconds, q))
    load.start()
    counts = q.get()
    load.join()
    samples = sampler.stop()
    rss = [s for _, s in samples]
    out = {"connections": connections, "seconds": seconds, "statuses": counts,
           "requests": sum(counts.values()), "not_200": sum(v for k, v in counts.items() if k != "200"),
           "rss_mb": {"idle": round(idle, 1), "first_minute_max": max(s for t, s in samples if t <= 60),
                      "max": max(rss), "last": rss[-1]}, "rss_samples": samples}
    print(f"soak: {json.dumps({k: v for k, v in out.items() if k != 'rss_samples'})}", flush=True)
    return out


# --- report -------------------------------------------------------------------------------------------------

def write_md(result: dict, path: Path) -> None:
    r = result
    lines = [f"# Hostile load on loopback ({r['workers']} worker(s))", "",
             f"`{r['command']}` on {r['machine']}, {r['date']}; 1-minute load average before each scenario "
             f"(other work on the machine included): {r['load_average_1min_before']}. Server defaults (service/config.py): body limit "
             f"{r['settings']['max_body_bytes']:,} B, text limit {r['settings']['max_text_bytes']:,} B, in-flight "
             f"body budget {r['settings']['max_inflight_body_bytes']:,} B per worker, {r['settings']['threads']} model "
             f"threads + queue {r['settings']['max_queue']} per worker.", ""]
    if "bodies" in r:
        lines += ["## 64 parallel bodies at the body limit", "",
                  "| body | statuses | latency p50 / max (ms) | RSS idle / peak / 3 s after (MB) | after / idle |",
                  "| --- | --- | --- | --- | --- |"]
        for name, b in r["bodies"].items():
            lines.append(f"| {name} ({b['body_bytes']:,} B with the request head) | {', '.join(f'{k}: {v}' for k, v in b['statuses'].items())} "
                         f"| {b['latency_ms']['p50']:.0f} / {b['latency_ms']['max']:.0f} | {b['rss_mb']['idle']:.0f} / "
                         f"{b['rss_mb']['peak']:.0f} / {b['rss_mb']['after_3s']:.0f} | {b['after_vs_idle']:.2f} |")
        lines.append("")
    if "overload" in r:
        o = r["overload"]
        load = ("wrk (`-t2`, nice 10, benchmarks/wrk_post.lua)" if o.get("load", "python") == "wrk"
                else "the asyncio generator of benchmarks/soak.py (nice 10)")
        lines += [f"## Overload: {o['connections']} connections of long IMDb reviews, {o['seconds']:g} s", "",
                  f"Load: {load}, {o['connections']} connections in a closed loop (a shed request is retried at "
                  f"once). Median review body {o['review_bytes_median']:,.0f} B. Probes, each every 20 ms on a new "
                  f"connection from its own process: GET /healthz ({o['healthz_ms']['n']} probes, "
                  f"{o['healthz_failed']} failed) and POST /classify of the median review "
                  f"({sum(s['n'] for s in o['probe_post_ms'].values())} probes; "
                  f"{o['probe_503_from_the_connection']} of the 503s answered by the connection itself).", "",
                  "| what | n | p50 (ms) | p99 (ms) | max (ms) |", "| --- | --- | --- | --- | --- |",
                  f"| probe GET /healthz | {o['healthz_ms']['n']} | {o['healthz_ms']['p50']:.1f} | {o['healthz_ms']['p99']:.1f} "
                  f"| {o['healthz_ms']['max']:.1f} |"]
        for status, s in o["probe_post_ms"].items():
            lines.append(f"| probe POST /classify -> {status} | {s['n']} | {s['p50']:.1f} | {s['p99']:.1f} | {s['max']:.1f} |")
        for status, s in sorted(o.get("latency_ms", {}).items()):
            lines.append(f"| load POST /classify -> {status} (the generator's own timing) | {s['n']} | {s['p50']:.1f} "
                         f"| {s['p99']:.1f} | {s['max']:.1f} |")
        lines += ["", f"Load requests by status: {o['statuses']}; 200s per second: {o['throughput_200_per_s']}; "
                      f"client-side errors: {o['client_errors'] or 'none'}.", ""]
    if "soak" in r:
        s = r["soak"]
        lines += [f"## Soak: {s['connections']} connections of mixed requests, {s['seconds']:g} s", "",
                  f"{s['requests']:,} requests, {s['not_200']} not 200 ({s['statuses']}). RSS: idle "
                  f"{s['rss_mb']['idle']:.0f} MB, max in the first minute {s['rss_mb']['first_minute_max']:.0f} MB, "
                  f"max {s['rss_mb']['max']:.0f} MB, at the end {s['rss_mb']['last']:.0f} MB.", ""]
    path.write_text("\n".join(lines))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--scenarios", default="bodies,overload,soak")
    p.add_argument("--clients", type=int, default=64, help="parallel bodies (bodies)")
    p.add_argument("--connections", type=int, default=200, help="connections (overload)")
    p.add_argument("--overload-s", type=float, default=30)
    p.add_argument("--load", choices=["wrk", "python"], default="wrk" if shutil.which("wrk") else "python",
                   help="the overload's load generator (default: wrk when installed)")
    p.add_argument("--soak-connections", type=int, default=8)
    p.add_argument("--soak-s", type=float, default=600)
    p.add_argument("--tag", default="")
    p.add_argument("--serve-args", default="", help="more flags for `serve`, e.g. '--pool-threads 1'")
    args = p.parse_args(argv)
    settings = Settings.from_env({}, **vars(cli.serve_parser().parse_args(shlex.split(args.serve_args))))
    scenarios = [s.strip() for s in args.scenarios.split(",") if s.strip()]
    result = {"command": "python -m benchmarks.soak " + " ".join(argv if argv is not None else sys.argv[1:]),
              "date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
              "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores",
              "workers": args.workers,
              "settings": {k: getattr(settings, k) for k in ("max_body_bytes", "max_text_bytes",
                                                             "max_inflight_body_bytes", "max_queue", "threads")}}
    OUT.mkdir(parents=True, exist_ok=True)
    log = Path(os.environ.get("TMPDIR", "/tmp")) / f"skimserve-soak-{os.getpid()}.log"
    for name in scenarios:
        server = Server(args.models_dir, args.workers, log, shlex.split(args.serve_args))
        result.setdefault("load_average_1min_before", {})[name] = round(os.getloadavg()[0], 2)
        try:
            if name == "bodies":
                result["bodies"] = scenario_bodies(server, settings, args.clients)
            elif name == "overload":
                result["overload"] = scenario_overload(server, settings, args.connections, args.overload_s, args.load)
            elif name == "soak":
                result["soak"] = scenario_soak(server, args.soak_connections, args.soak_s)
            else:
                p.error(f"unknown scenario {name!r}")
        finally:
            server.close()
    result["server_log_tracebacks"] = log.read_text(errors="replace").count("Traceback")
    stem = "soak" + (f"-{args.tag}" if args.tag else "")
    (OUT / f"{stem}.json").write_text(json.dumps(result, indent=1) + "\n")
    write_md(result, OUT / f"{stem}.md")
    print(f"wrote {OUT / stem}.json and .md", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
