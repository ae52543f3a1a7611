"""Open-loop HTTP load for loadtest/overload.py: requests go out on a schedule whatever the answers' speed,
and each is timed from the moment it was due, so a slow server is charged for every request it delays.

  rows = run("http://127.0.0.1:8000", requests, rate=1500, seconds=30)            # Poisson arrivals
  rows = run("http://127.0.0.1:8000", requests, rate=0, seconds=20, connections=16) # closed loop

- Open loop (rate > 0): arrivals of a Poisson process at `rate` per second; a due request takes a free
  keep-alive connection of the pool (`connections` of them), or waits for one. Its latency runs from when it
  was due to the last byte of the answer, and `lag_ms` says how long it waited here before it was written
  (the load generator's own delay: if it grows, the figures are the generator's, not the server's).
- A request not answered within `timeout` seconds of when it was due is given up (status 0).
- Closed loop (rate = 0): every connection sends its next request as soon as it has the last answer (what
  wrk does): the server's throughput at that concurrency.

Requests are built once (`build_requests`: raw HTTP/1.1 bytes, labelled texts), answers read by their
Content-Length and parsed with orjson; one row per request (overload.py's CSV columns).

Why not Locust for overload.py's figures: a Locust user waits for its answer before its next request
(closed loop per user: a slow server lowers its own offered load), and one Locust process sharing the
machine adds its own delay to every request it times; `overload.py --driver-check F` drives one server at
the same rate with each and puts both side by side in its report (loadtest/results/overload/REPORT.md).
wrk is a closed loop too, and the open-loop tools (wrk2, vegeta) are not packaged for Debian. Locust's
OverloadUser stays the scenario to drive the server by hand (`locust -f loadtest/ OverloadUser`), and
`overload.py --driver locust` runs the whole report with it.
"""
from __future__ import annotations

import asyncio
import json
import random
import time
from dataclasses import dataclass
from urllib.parse import urlsplit

import orjson


@dataclass(frozen=True)
class Request:
    kind: str           # "long" / "short": which texts (overload.py's MODELS keys)
    model: str
    labels: tuple       # label index of each text sent
    raw: bytes          # the whole HTTP/1.1 request


def build_requests(texts: dict[str, list[tuple[str, int]]], models: dict[str, str], *, n: int = 2000,
                   batch: int = 4, long_share: float = 0.5, threshold: str | None = None, seed: int = 13,
                   host: str = "127.0.0.1") -> list[Request]:
    """n requests of `batch` labelled texts each, a kind drawn per request (long with `long_share`), to
    POST /classify?model=...[&threshold=...]; deterministic for a seed."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        kind = "long" if rng.random() < long_share else "short"
        picked = [rng.choice(texts[kind]) for _ in range(batch)]
        body = orjson.dumps({"text": picked[0][0]} if batch == 1 else {"texts": [t for t, _ in picked]})
        query = f"model={models[kind]}" + (f"&threshold={threshold}" if threshold else "")
        head = (f"POST /classify?{query} HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n"
                f"Content-Length: {len(body)}\r\n\r\n").encode()
        out.append(Request(kind, models[kind], tuple(y for _, y in picked), head + body))
    return out


def _row(req: Request, due: float, sent: float, done: float, status: int, answer: dict | None,
         label_names: dict[str, list[str]]) -> dict:
    row = {"t": due, "kind": req.kind, "model": req.model, "status": status, "latency_ms": 1000 * (done - due),
           "threshold": "", "source": "", "texts": len(req.labels), "correct": "", "lag_ms": 1000 * (sent - due)}
    if status == 200 and answer is not None:
        results = answer["results"] if "results" in answer else [answer]
        names = label_names.get(req.model) or []
        row["threshold"] = answer.get("threshold", "")
        row["source"] = answer.get("threshold_source", "")
        row["correct"] = sum(bool(names) and r.get("label") == names[y] for r, y in zip(results, req.labels))
    return row


class _Connection:
    """One keep-alive connection; reopened after the server closes it or fails."""

    def __init__(self, host: str, port: int):
        self.host, self.port = host, port
        self.reader = self.writer = None

    async def exchange(self, raw: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        self.writer.write(raw)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status, length, close = int(head[9:12]), 0, False
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            name = name.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"connection" and value.strip().lower() == b"close":
                close = True
        body = await self.reader.readexactly(length)
        if close:
            self.close()
        return status, body

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def _drive(host: str, port: int, requests: list[Request], rate: float, seconds: float, connections: int,
                 label_names: dict[str, list[str]], seed: int, timeout: float) -> list[dict]:
    loop = asyncio.get_running_loop()
    rows: list[dict] = []
    queue: asyncio.Queue = asyncio.Queue()
    stop_at = loop.time() + seconds
    counter = iter(range(1 << 62))
    wall0, mono0 = time.time(), loop.time()  # rows carry wall-clock times (overload.py's plots)

    async def one(conn: _Connection, req: Request, due: float) -> None:
        sent = loop.time()
        try:
            status, body = await asyncio.wait_for(conn.exchange(req.raw), max(0.001, due + timeout - sent))
            answer = orjson.loads(body) if status == 200 else None
        except (OSError, asyncio.IncompleteReadError, asyncio.TimeoutError, ValueError):
            conn.close()  # (a timed-out exchange leaves its connection mid-answer: a new one for the next)
            status, answer = 0, None
        rows.append(_row(req, wall0 + due - mono0, wall0 + sent - mono0, wall0 + loop.time() - mono0,
                         status, answer, label_names))

    async def open_worker() -> None:
        conn = _Connection(host, port)
        while True:
            item = await queue.get()
            if item is None:
                conn.close()
                return
            await one(conn, *item)

    async def closed_worker() -> None:
        conn = _Connection(host, port)
        while loop.time() < stop_at:
            await one(conn, requests[next(counter) % len(requests)], loop.time())
        conn.close()

    if rate <= 0:
        await asyncio.gather(*(closed_worker() for _ in range(connections)))
        return rows
    workers = [asyncio.ensure_future(open_worker()) for _ in range(connections)]
    rng, due, i = random.Random(seed), loop.time(), 0
    while True:
        due += rng.expovariate(rate)
        if due >= stop_at:
            break
        wait = due - loop.time()
        if wait > 0:
            await asyncio.sleep(wait)
        queue.put_nowait((requests[i % len(requests)], due))
        i += 1
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    return rows


def label_names_of(url: str, models) -> dict[str, list[str]]:
    """{model: its labels} from GET /models/{name} (what a response's label is compared with)."""
    import httpx

    return {m: httpx.get(f"{url}/models/{m}", timeout=10).json()["labels"] for m in sorted(set(models))}


def run(url: str, requests: list[Request], rate: float, seconds: float, connections: int = 256,
        seed: int = 7, label_names: dict[str, list[str]] | None = None, timeout: float = 10.0) -> list[dict]:
    """Rows of one run against url (rate 0: closed loop over `connections`). A request not answered within
    `timeout` s of when it was due is given up (status 0), as a client would: without it, a server that
    falls behind would be credited, after the run, with answers nobody waited for."""
    parts = urlsplit(url)
    names = label_names if label_names is not None else label_names_of(url, [r.model for r in requests])
    return asyncio.run(_drive(parts.hostname, parts.port or 80, requests, rate, seconds, connections, names, seed,
                              timeout))


def write_rows(rows: list[dict], path) -> None:
    """The rows as overload.py's CSV (its read_requests reads it back)."""
    import csv

    cols = ["t", "kind", "model", "status", "latency_ms", "threshold", "source", "texts", "correct", "lag_ms"]
    with open(path, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=cols)
        w.writeheader()
        for r in sorted(rows, key=lambda r: r["t"]):
            w.writerow({k: (f"{r[k]:.6f}" if isinstance(r[k], float) else r[k]) for k in cols})


if __name__ == "__main__":  # a quick look: python -m loadtest.openloop URL RATE SECONDS (SST-2-like texts)
    import sys

    target, r, s = sys.argv[1], float(sys.argv[2]), float(sys.argv[3])
    reqs = build_requests({"long": [("a long review " * 50, 0)], "short": [("a short one", 0)]},
                          {"long": "imdb-skim", "short": "sst2-skim"})
    out = run(target, reqs, r, s)
    lat = sorted(x["latency_ms"] for x in out if x["status"] == 200)
    print(json.dumps({"requests": len(out), "ok": len(lat), "p50_ms": lat[len(lat) // 2] if lat else None,
                      "p99_ms": lat[int(0.99 * len(lat))] if lat else None}))
