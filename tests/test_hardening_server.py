"""Faults against the real server (issue 20, items 2-7): slow clients cut within the timeouts, oversized
URL/headers answered with a status (not a reset), a huge string refused early, a client leaving mid-body
(499, no traceback), failed startups (non-zero, one line), dead workers' in-flight gauge. Short timeouts
(1 s) keep it to seconds."""
import json
import os
import signal
import socket
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import httpx
import numpy as np
import pytest

from random_model import make_random_classifier, make_random_reader

from service.artifacts import refresh_checksums

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "loadtest"))
from _server import free_port, running_server  # noqa: E402

TIMEOUT_S = 1.0


@pytest.fixture(scope="module")
def models_dir(tmp_path_factory):
    root = tmp_path_factory.mktemp("hsmodels")
    make_random_classifier(root / "tiny-skim", d_small=4, seed=1)
    make_random_reader(root / "tiny-qa", seed=3)
    return root


@pytest.fixture(scope="module", params=["httptools", "h11"])
def server(models_dir, tmp_path_factory, request):
    """The guards over each uvicorn parser (service/api/protocol.py)."""
    log = tmp_path_factory.mktemp("hslog") / "server.log"
    extra = ["--header-timeout", str(TIMEOUT_S), "--body-timeout", str(TIMEOUT_S), "--max-text-bytes", "10000",
             "--http-parser", request.param]
    with running_server(models_dir, extra=extra, log=log, timeout=60) as url:
        yield url, log


def _addr(url):
    host, port = url.rsplit("/", 1)[1].split(":")
    return host, int(port)


def _exchange(url, data: bytes, wait: float = 5.0, close_after: bool = False) -> tuple[bytes, float]:
    """Send raw bytes, read until the server closes (or `wait` passes); the reply and seconds taken."""
    t0 = time.monotonic()
    with socket.create_connection(_addr(url), timeout=wait) as s:
        if data:
            s.sendall(data)
        reply = b""
        try:
            while True:
                chunk = s.recv(65536)
                if not chunk:
                    break
                reply += chunk
        except (socket.timeout, ConnectionResetError):
            pass
    return reply, time.monotonic() - t0


def _status(reply: bytes) -> int:
    return int(reply.split(b" ", 2)[1]) if reply.startswith(b"HTTP/1.1 ") else -1


def _read_json_reply(s) -> bytes:
    """Bytes from the socket until a JSON body's closing brace (or the server closes)."""
    reply = b""
    while not reply.endswith(b"}"):
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def _json(reply: bytes) -> dict:
    return json.loads(reply.split(b"\r\n\r\n", 1)[1])


@pytest.mark.parametrize("data", [b"", b"POST /classify HTTP/1.1\r\nHost: x\r\n", b"GE"],
                         ids=["nothing", "half-headers", "half-request-line"])
def test_slow_headers_are_cut(server, data):
    reply, took = _exchange(server[0], data)
    assert _status(reply) == 408 and _json(reply)["code"] == "header_timeout"
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 2.0


def test_body_shorter_than_content_length_is_cut(server):
    head = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    reply, took = _exchange(server[0], head + b'{"text": "go')
    assert _status(reply) == 408 and _json(reply)["code"] == "body_timeout"
    assert TIMEOUT_S * 0.9 <= took < TIMEOUT_S + 2.0


def test_drip_fed_body_is_cut_at_the_body_timeout(server):
    """One byte every 0.2 s keeps every read short: the whole body still has to arrive in time."""
    head = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n")
    t0 = time.monotonic()
    with socket.create_connection(_addr(server[0]), timeout=5) as s:
        s.sendall(head)
        s.settimeout(0.2)
        reply = b""
        for _ in range(40):
            try:
                s.sendall(b" ")
            except OSError:
                break
            try:
                chunk = s.recv(65536)
            except socket.timeout:
                continue
            reply += chunk
            if not chunk or b"}" in reply:
                break
    assert _status(reply) == 408 and time.monotonic() - t0 < TIMEOUT_S + 2.0


@pytest.mark.parametrize("size", [10_000, 100_000, 1_000_000])
def test_long_urls_get_a_status_not_a_reset(server, size):
    """Over the URL limit: 414 when the head arrives whole, 431 when the head outgrows the header limit
    while it is still arriving (which of the two depends on how TCP splits it); never a reset."""
    reply, _ = _exchange(server[0], b"GET /models?x=" + b"a" * size + b" HTTP/1.1\r\nHost: x\r\n\r\n")
    assert (_status(reply), _json(reply)["code"]) in {(414, "uri_too_long"), (431, "headers_too_large")}, reply[:200]


def test_big_header_is_431(server):
    reply, _ = _exchange(server[0], b"GET /models HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * 100_000 + b"\r\n\r\n")
    assert _status(reply) == 431 and _json(reply)["code"] == "headers_too_large"


def test_huge_string_is_refused_after_a_little_of_it(server):
    """413 text_too_large while most of the (declared 7.9 MB) body is still unsent; the client reads it."""
    n = 7_900_000
    head = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (n + 12))
    with socket.create_connection(_addr(server[0]), timeout=10) as s:
        s.sendall(head + b'{"text": "' + b"a" * 200_000)
        s.settimeout(10)
        reply = _read_json_reply(s)
    assert _status(reply) == 413 and _json(reply)["code"] == "text_too_large"



def test_burst_of_big_bodies_is_read_a_budget_at_a_time(models_dir, tmp_path):
    """Declared bodies are reserved before they are read: with room for two 7.9 MB bodies, eight at once
    each holding a string over the text limit all get their 413 (the rest wait, unread, for the refused
    ones to release their share), none 503."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    n = 7_900_000
    head = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (n + 12))
    extra = ["--max-text-bytes", "10000", "--max-inflight-body-bytes", str(2 * (n + 12))]
    with running_server(models_dir, extra=extra, log=tmp_path / "log", timeout=60) as url:
        heads_in = threading.Barrier(8)

        def one(_):
            with socket.create_connection(_addr(url), timeout=10) as s:
                s.sendall(head)
                heads_in.wait()  # every head is in before any body: all eight ask for room at once
                time.sleep(0.05)
                s.sendall(b'{"text": "' + b"a" * 100_000)
                reply = _read_json_reply(s)
            body = reply.split(b"\r\n\r\n", 1)[1].decode()
            return _status(reply), json.JSONDecoder().raw_decode(body)[0]["code"]  # the first response's

        with ThreadPoolExecutor(8) as pool:
            assert list(pool.map(one, range(8))) == [(413, "text_too_large")] * 8

def test_client_leaving_mid_body_is_499_without_traceback(server):
    url, log = server
    head = (b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n")
    with socket.create_connection(_addr(url), timeout=5) as s:
        s.sendall(head + b'{"text": "a')
        time.sleep(0.3)
    time.sleep(0.5)
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'endpoint="/classify",le="+Inf",model="tiny-qa",status="499"' in text or \
        'status="499"' in text, [line for line in text.splitlines() if "classify" in line][:5]
    assert 'status="500"' not in text
    assert "Traceback" not in log.read_text()


def test_healthz_is_answered_by_the_protocol(server):
    url = server[0]
    for method, body in [(b"GET", b'{"status":"ok"}'), (b"HEAD", b"")]:
        reply, took = _exchange(url, method + b" /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
        assert _status(reply) == 200 and reply.endswith(b"\r\n\r\n" + body) and b"connection: close" in reply
        assert took < 1.0  # closed by the server, not by the client's wait
    # a keep-alive client that asks for /healthz after another request still gets its answer
    with httpx.Client(base_url=url, timeout=10) as c:
        assert c.get("/models").status_code == 200
        assert c.get("/healthz").json() == {"status": "ok"} and c.head("/healthz").status_code == 200
        assert c.get("/models").status_code == 200
    text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'endpoint="/healthz",le="+Inf",model="",status="200"' in text


def test_full_pool_is_shed_by_the_protocol(models_dir, tmp_path):
    """One model thread, no queue: while a long batch runs, a whole small POST is answered 503 by the
    connection itself (its own bytes, without uvicorn's date/server headers), one whose body comes later
    through ASGI."""
    import threading

    extra = ["--pool-threads", "1", "--max-queue", "0", "--max-tokens", "100000"]
    with running_server(models_dir, extra=extra, log=tmp_path / "log", timeout=60) as url:
        big = {"texts": ["a b " * 22_000] * 64}  # 64 x 44,000 tokens: the one model thread is busy for a while

        stop, busy = threading.Event(), []

        def occupy():  # keeps the pool busy until the test is done with it, however slow the machine is
            while not stop.is_set():
                busy.append(httpx.post(f"{url}/classify?model=tiny-skim", json=big, timeout=120).status_code)

        worker = threading.Thread(target=occupy)
        worker.start()
        try:
            _shed_by_the_protocol(url, busy)
        finally:
            stop.set()
            worker.join()
        text = httpx.get(f"{url}/metrics", timeout=10).text
        assert 'endpoint="/classify",le="+Inf",model="",status="503"' in text


def _shed_by_the_protocol(url, busy):
    """The checks of test_full_pool_is_shed_by_the_protocol while its pool is kept busy (`busy`: the
    statuses of the batches that occupied it so far, for the failure message)."""
    small = b'{"text": "a good film"}'
    head = (b"POST /classify?model=tiny-skim HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % len(small))
    deadline, reply = time.monotonic() + 30, b""
    # the first 503s may come from admission (the pool filled between the read and the ASGI task)
    while time.monotonic() < deadline and not (_status(reply) == 503 and b"server: uvicorn" not in reply):
        reply, _ = _exchange(url, head + small, wait=10)
        time.sleep(0.05)
    assert _status(reply) == 503 and b"connection: close" in reply and b"retry-after: 1" in reply, (reply[:300], busy)
    assert _json(reply)["code"] == "overloaded"
    # without `Connection: close` the shed connection stays open for the next request (a shed client
    # that retries does not have to reconnect)
    keep = head.replace(b"Connection: close\r\n", b"")
    with socket.create_connection(_addr(url), timeout=10) as s:
        deadline, reply = time.monotonic() + 30, b""
        while time.monotonic() < deadline and not (_status(reply) == 503 and b"server: uvicorn" not in reply):
            s.sendall(keep + small)
            reply = _read_json_reply(s)
            assert reply, "the server closed the connection"
            time.sleep(0.05)
        assert _status(reply) == 503 and b"connection: close" not in reply and b"retry-after: 1" in reply, reply
        s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")  # the same connection, still served
        reply = _read_json_reply(s)
        assert _status(reply) == 200 and _json(reply) == {"status": "ok"}, reply
    with socket.create_connection(_addr(url), timeout=10) as s:  # body in a second packet: ASGI path
        s.sendall(head)
        time.sleep(0.05)
        s.sendall(small)
        reply = s.recv(65536)
    assert _status(reply) in (200, 503) and b"server: uvicorn" in reply, reply[:300]  # uvicorn's own writer


def test_server_still_serves_after_all_that(server):
    r = httpx.post(f"{server[0]}/classify", params={"model": "tiny-skim"}, json={"text": "a good film"}, timeout=10)
    assert r.status_code == 200


# --- failed startups: non-zero exit, one clear line ---------------------------------------------------

def _serve(models_dir, *extra, env=None):
    return subprocess.run([sys.executable, "-m", "service", "serve", "--models-dir", str(models_dir),
                           "--port", str(free_port()), *extra], cwd=ROOT, capture_output=True, text=True, timeout=120,
                          env={**os.environ, **(env or {})})


def _object_array_weights(folder):
    with np.load(folder / "weights.npz") as npz:
        weights = {k: npz[k] for k in npz.files}
    key = sorted(weights)[0]
    weights[key] = weights[key].astype(object)
    np.savez(folder / "weights.npz", **weights)


def _flip_a_byte_inside(folder):
    data = bytearray((folder / "weights.npz").read_bytes())
    with zipfile.ZipFile(folder / "weights.npz") as z:
        info = z.infolist()[0]
    at = info.header_offset + 30 + len(info.filename) + 200  # inside the first member's data
    data[at] ^= 0xFF
    (folder / "weights.npz").write_bytes(bytes(data))


def _truncate(folder):
    data = (folder / "weights.npz").read_bytes()
    (folder / "weights.npz").write_bytes(data[: len(data) // 2])


@pytest.mark.parametrize("workers", ["1", "2"])
@pytest.mark.parametrize("corrupt", [_object_array_weights, _flip_a_byte_inside, _truncate],
                         ids=["object-array", "flipped-byte", "truncated"])
def test_corrupt_weights_under_a_valid_checksum_stop_startup(tmp_path, corrupt, workers):
    make_random_classifier(tmp_path / "bad", seed=2)
    corrupt(tmp_path / "bad")
    refresh_checksums(tmp_path / "bad")  # the checksum passes: only reading the bytes can tell
    r = _serve(tmp_path, "--workers", workers)
    assert r.returncode == 2, r.stderr[-2000:]
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr and str(tmp_path / "bad") in lines[0], r.stderr


@pytest.mark.parametrize("workers", [1, 2])
def test_worker_that_fails_to_start_makes_the_server_exit_nonzero(tmp_path, workers):
    """Behind the CLI's pre-flight, a worker can still fail to start (a models dir changed in between, a
    model that fails to build): uvicorn's supervisor then stopped and the parent exited 0. run_uvicorn is
    called directly here, skipping the pre-flight, on a models dir that no worker can load."""
    make_random_classifier(tmp_path / "bad", seed=2)
    _object_array_weights(tmp_path / "bad")
    refresh_checksums(tmp_path / "bad")
    code = ("import sys; from service.cli import run_uvicorn; from service.config import Settings; "
            "sys.exit(run_uvicorn(Settings.from_env()))")
    env = {**os.environ, "SKIMSERVE_MODELS_DIR": str(tmp_path), "SKIMSERVE_WORKERS": str(workers),
           "SKIMSERVE_PORT": str(free_port())}
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert r.returncode == 3, r.stderr[-2000:]
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("skimserve serve: ") and ("failed to start" in last or "did not start" in last), last


@pytest.mark.parametrize("workers", ["1", "2"])
def test_bad_prometheus_multiproc_dir_is_one_line(tmp_path, models_dir, workers):
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    r = _serve(models_dir, "--workers", workers, env={"PROMETHEUS_MULTIPROC_DIR": str(not_a_dir)})
    assert r.returncode == 2
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "PROMETHEUS_MULTIPROC_DIR" in lines[0] and "Traceback" not in r.stderr, r.stderr


# --- kill -9 of workers: the in-flight gauge ------------------------------------------------------------

def _children(pid: int) -> list[int]:
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [int(p) for p in out.split()]


def test_inflight_gauge_after_kill_9(models_dir, tmp_path):
    prom = tmp_path / "prom"
    with running_server(models_dir, extra=["--workers", "2", "--body-timeout", "60"], log=tmp_path / "log",
                        env={"PROMETHEUS_MULTIPROC_DIR": str(prom)}, timeout=60) as url:
        parent = int((tmp_path / "log").read_text().split("Started parent process [")[1].split("]")[0])
        workers = [p for p in _children(parent) if b"spawn_main" in Path(f"/proc/{p}/cmdline").read_bytes()]
        assert len(workers) == 2
        head = b"POST /classify HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 50\r\n\r\n{"
        socks = [socket.create_connection(_addr(url)) for _ in range(4)]
        for s in socks:
            s.sendall(head)  # in flight until the body arrives
        time.sleep(0.5)
        for pid in workers:
            os.kill(pid, signal.SIGKILL)
        for s in socks:
            s.close()
        deadline = time.monotonic() + 30
        value = None
        while time.monotonic() < deadline:
            try:
                text = httpx.get(f"{url}/metrics", timeout=5).text
                value = [line for line in text.splitlines() if line.startswith("skimserve_inflight_requests ")]
                if value:
                    break
            except httpx.HTTPError:
                pass
            time.sleep(0.5)
        assert value == ["skimserve_inflight_requests 0.0"], value
