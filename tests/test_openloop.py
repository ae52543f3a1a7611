"""loadtest/openloop.py, the open-loop driver of loadtest/overload.py, against a small asyncio HTTP server
in this test: requests are due on schedule whatever the answers' speed, each timed from when it was due,
statuses and closed connections counted, labels compared with the model's."""
import asyncio
import csv
import sys
import threading
from pathlib import Path

import orjson
import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from loadtest import openloop  # noqa: E402

MODELS = {"long": "m-long", "short": "m-short"}
TEXTS = {"long": [("good long review", 1), ("bad long review", 0)], "short": [("good", 1), ("bad", 0)]}


class FakeServer:
    """Answers POST /classify like skimserve (label = "pos" if the text has "good"), after `delay` s; every
    `status_every`-th request gets `status` instead, with Connection: close when `close` is set."""

    def __init__(self, delay=0.0, status_every=0, status=503, close=False):
        self.delay, self.status_every, self.status, self.close = delay, status_every, status, close
        self.count, self.connections = 0, 0
        self.loop = asyncio.new_event_loop()
        started = threading.Event()
        self.thread = threading.Thread(target=self._run, args=(started,), daemon=True)
        self.thread.start()
        started.wait(10)

    def _run(self, started):
        asyncio.set_event_loop(self.loop)
        self.server = self.loop.run_until_complete(asyncio.start_server(self._handle, "127.0.0.1", 0))
        self.port = self.server.sockets[0].getsockname()[1]
        started.set()
        self.loop.run_forever()

    async def _handle(self, reader, writer):
        self.connections += 1
        try:
            while True:
                head = await reader.readuntil(b"\r\n\r\n")
                n = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                body = orjson.loads(await reader.readexactly(n))
                self.count += 1
                await asyncio.sleep(self.delay)
                texts = body.get("texts") or [body["text"]]
                if self.status_every and self.count % self.status_every == 0:
                    payload, status = b'{"error": "busy"}', self.status
                else:
                    results = [{"label": "pos" if "good" in t else "neg"} for t in texts]
                    payload, status = orjson.dumps({"threshold": 0.3, "threshold_source": "load", "results": results}), 200
                extra = b"connection: close\r\n" if self.close and status != 200 else b""
                writer.write(b"HTTP/1.1 %d X\r\ncontent-length: %d\r\n%s\r\n" % (status, len(payload), extra) + payload)
                await writer.drain()
                if extra:
                    writer.close()
                    return
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    @property
    def url(self):
        return f"http://127.0.0.1:{self.port}"

    def stop(self):
        async def shutdown():  # the connections' handlers end before the loop does
            self.server.close()
            tasks = [t for t in asyncio.all_tasks() if t is not asyncio.current_task()]
            for t in tasks:
                t.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

        asyncio.run_coroutine_threadsafe(shutdown(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(5)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.stop()


@pytest.fixture
def labels():
    return {"m-long": ["neg", "pos"], "m-short": ["neg", "pos"]}


def test_requests_are_built_once_deterministic_and_valid():
    a = openloop.build_requests(TEXTS, MODELS, n=50, batch=3, threshold="0.1", seed=5)
    b = openloop.build_requests(TEXTS, MODELS, n=50, batch=3, threshold="0.1", seed=5)
    assert a == b and {r.kind for r in a} == {"long", "short"}
    for r in a:
        head, _, body = r.raw.partition(b"\r\n\r\n")
        assert head.startswith(f"POST /classify?model={r.model}&threshold=0.1 HTTP/1.1".encode())
        assert int(head.split(b"Content-Length: ")[1]) == len(body)
        assert len(orjson.loads(body)["texts"]) == 3 == len(r.labels)
    single = openloop.build_requests(TEXTS, MODELS, n=5, batch=1)
    assert all(b'{"text":' in r.raw and b"threshold" not in r.raw.split(b"\r\n")[0] for r in single)


def test_open_loop_keeps_its_schedule_while_answers_are_slow(labels):
    """20 ms answers, 200 requests/s over 1 s: a closed loop of one connection would send about 50; the
    open loop sends about 200 on its own schedule, and each latency includes the full delay."""
    with FakeServer(delay=0.02) as server:
        reqs = openloop.build_requests(TEXTS, MODELS, n=100, batch=2)
        rows = openloop.run(server.url, reqs, rate=200, seconds=1.0, connections=64, label_names=labels)
    assert 130 <= len(rows) <= 280  # Poisson: 200 expected
    assert all(r["status"] == 200 and r["latency_ms"] >= 19 for r in rows)
    assert all(r["correct"] == 2 and r["source"] == "load" and r["threshold"] == 0.3 for r in rows)
    assert max(r["lag_ms"] for r in rows) < 200
    assert server.count == len(rows)


def test_too_few_connections_show_as_driver_lag(labels):
    """One connection, 20 ms answers, 100 requests/s: requests wait for the connection here, and that wait
    is in their latency and in lag_ms (what the report shows as the driver's own delay)."""
    with FakeServer(delay=0.02) as server:
        rows = openloop.run(server.url, openloop.build_requests(TEXTS, MODELS, n=10), rate=100, seconds=0.5,
                            connections=1, label_names=labels)
    lags = sorted(r["lag_ms"] for r in rows)
    assert lags[-1] > 50 and rows[-1]["latency_ms"] >= rows[-1]["lag_ms"]


def test_closed_loop_sends_back_to_back(labels):
    with FakeServer(delay=0.01) as server:
        rows = openloop.run(server.url, openloop.build_requests(TEXTS, MODELS, n=10), rate=0, seconds=0.5,
                            connections=2, label_names=labels)
    assert 40 <= len(rows) <= 110  # 2 connections x 0.5 s / 10 ms, minus scheduling
    assert server.connections == 2


@pytest.mark.parametrize("close", [False, True])
def test_errors_are_counted_and_connections_reopened(labels, close, tmp_path):
    with FakeServer(status_every=4, status=503, close=close) as server:
        rows = openloop.run(server.url, openloop.build_requests(TEXTS, MODELS, n=10), rate=0, seconds=0.3,
                            connections=1, label_names=labels)
    statuses = [r["status"] for r in rows]
    assert statuses.count(503) == len(rows) // 4 and set(statuses) == {200, 503}
    assert all(r["correct"] == "" for r in rows if r["status"] == 503)
    assert server.connections == (1 + statuses[:-1].count(503) if close else 1)
    path = tmp_path / "run_requests.csv"
    openloop.write_rows(rows, path)
    with open(path, newline="") as f:
        back = list(csv.DictReader(f))
    assert len(back) == len(rows) and {r["status"] for r in back} == {"200", "503"}
    assert float(back[0]["t"]) <= float(back[-1]["t"])


def test_refused_connection_is_status_0(labels):
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]  # nothing listens there once closed
    rows = openloop.run(f"http://127.0.0.1:{port}", openloop.build_requests(TEXTS, MODELS, n=5), rate=50,
                        seconds=0.2, connections=2, label_names=labels)
    assert rows and all(r["status"] == 0 for r in rows)


def test_an_answer_later_than_the_timeout_is_given_up(labels):
    """A client gives up: a request unanswered `timeout` s after it was due is status 0, not a late 200."""
    with FakeServer(delay=0.3) as server:
        rows = openloop.run(server.url, openloop.build_requests(TEXTS, MODELS, n=5), rate=20, seconds=0.3,
                            connections=4, label_names=labels, timeout=0.1)
    assert rows and all(r["status"] == 0 and 95 <= r["latency_ms"] < 250 for r in rows)
