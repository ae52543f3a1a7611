"""Where the time of one /classify request goes, stage by stage, measured side by side in one run:

  python -m benchmarks.request_path [--model imdb-skim] [--texts 30] [--rounds 5]
      -> benchmarks/results/request_path.{json,md}

For long IMDb reviews (the model's dataset, test split) and short SST-2 sentences, at threshold 1.0 (reads
everything) and at the model's default:
- http: a whole request through a live `skimserve serve` (one worker, loopback, one keep-alive
  connection), client clock; the client writes prebuilt request bytes and reads the response by its
  Content-Length on a raw socket, so the column is the server's and the kernel's time, not a Python HTTP
  client's (http.client's parsing is the client's cost);
- protocol: the same request bytes handed to the server's uvicorn protocol in-process (its
  data_received, no socket), as served: a whole small POST is answered there (service/api/protocol.py,
  the inline fast path): head checks, JSON, validation, task, orjson, request metrics, the one write;
- app: the same request into the ASGI app in-process (no socket, no uvicorn): the fast path in plain
  ASGI (service/api/fast_path.py), the way of a request the protocol does not answer itself;
- app_routes: the same with the fast path off (fast_path=false), i.e. through the FastAPI route:
  dependency solving, the pool hop, response-model validation and serialisation;
- the parts of it measured on their own: tokenizer (the compiled scanner in use, and the regex it
  replaced), ids + embedding lookup, the model (its `latency_ms`, the response's own figure);
- and the two remainders: framework = protocol - tokenizer - ids - model, transport = http - protocol.
Medians over texts x rounds; every configuration runs once per round, interleaved.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
import functools
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def request_bytes(path: str, body: bytes, port: int = 80) -> bytes:
    """What a plain HTTP/1.1 keep-alive client (wrk, curl) sends."""
    return (b"POST %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nContent-Type: application/json\r\n"
            b"Content-Length: %d\r\n\r\n" % (path.encode(), port, len(body))) + body


def ok_json(status: int, reply: bytes) -> dict:
    """A 200's JSON; anything else stops the benchmark with the server's answer."""
    if status != 200:
        raise RuntimeError(f"{status}: {reply[:200]!r}")
    return json.loads(reply)


def read_response(recv) -> tuple[int, bytes]:
    """(status, body) of one response with a Content-Length, from recv() chunks."""
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = recv()
        if not chunk:
            raise ConnectionError("closed before the response head")
        data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    length = next(int(line.split(b":", 1)[1]) for line in head.split(b"\r\n")
                  if line.lower().startswith(b"content-length:"))
    while len(body) < length:
        chunk = recv()
        if not chunk:
            raise ConnectionError("closed mid-body")
        body += chunk
    return int(head.split(b" ", 2)[1]), body


class LiveServer:
    def __init__(self, models_dir: str, model: str, cpus: str | None = None):
        self.port = _free_port()
        env = {**os.environ, "SKIMSERVE_LOG_LEVEL": "warning"}
        pin = ["taskset", "-c", cpus] if cpus else []
        self.proc = subprocess.Popen([*pin, sys.executable, "-m", "service", "serve", "--models-dir", models_dir, "--port",
                                      str(self.port), "--workers", "1", "--default-model", model], env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.time() + 120
        while time.time() < deadline:
            try:
                c = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                c.request("GET", "/readyz")
                if c.getresponse().status == 200:
                    break
            except OSError:
                time.sleep(0.3)
        else:
            self.proc.kill()
            raise RuntimeError("server did not become ready: " + self.proc.stderr.read().decode()[-2000:])
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=30)
        self.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def post(self, path: str, body: bytes) -> tuple[float, dict]:
        data = request_bytes(path, body, self.port)
        recv = functools.partial(self.sock.recv, 65536)
        t0 = time.perf_counter()
        self.sock.sendall(data)
        status, reply = read_response(recv)
        return time.perf_counter() - t0, ok_json(status, reply)

    def close(self):
        self.sock.close()
        self.proc.terminate()
        self.proc.wait(10)


class InProcessApp:
    """The ASGI app driven directly: one coroutine call per request, no socket."""

    def __init__(self, models_dir: str, model: str, fast_path: bool = True):
        from service.api.app import create_app
        from service.config import Settings

        self.app = create_app(Settings(models_dir=models_dir, default_model=model, workers=1, fast_path=fast_path))
        self.loop = asyncio.new_event_loop()
        self._started, self._stop = asyncio.Event(), asyncio.Event()
        self._lifespan = self.loop.create_task(self._run_lifespan())
        self.loop.run_until_complete(self._started.wait())

    async def _run_lifespan(self):
        sent = iter([{"type": "lifespan.startup"}])

        async def receive():
            try:
                return next(sent)
            except StopIteration:
                await self._stop.wait()
                return {"type": "lifespan.shutdown"}

        async def send(message):
            if message["type"] == "lifespan.startup.complete":
                self._started.set()

        await self.app({"type": "lifespan", "asgi": {"version": "3.0"}}, receive, send)

    def post(self, path: str, body: bytes) -> tuple[float, dict]:
        route, _, query = path.partition("?")
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1", "method": "POST",
                 "scheme": "http", "path": route, "raw_path": route.encode(), "query_string": query.encode(),
                 "root_path": "", "headers": [(b"content-type", b"application/json"),
                                              (b"content-length", str(len(body)).encode())],
                 "client": ("127.0.0.1", 1), "server": ("127.0.0.1", 80)}
        chunks, status = [], []
        messages = iter([{"type": "http.request", "body": body, "more_body": False}])

        async def receive():
            return next(messages, {"type": "http.disconnect"})

        async def send(message):
            if message["type"] == "http.response.start":
                status.append(message["status"])
            elif message["type"] == "http.response.body":
                chunks.append(message.get("body", b""))

        t0 = time.perf_counter()
        self.loop.run_until_complete(self.app(scope, receive, send))
        dt = time.perf_counter() - t0
        if status[0] != 200:
            raise RuntimeError(f"{status[0]}: {b''.join(chunks)[:200]!r}")
        return dt, json.loads(b"".join(chunks))

    def close(self):
        self._stop.set()
        self.loop.run_until_complete(self._lifespan)
        self.loop.close()


class MemoryTransport:
    """An asyncio transport that keeps what a protocol writes, in memory: this benchmark and the tests
    (tests/conftest.py) drive uvicorn's protocols directly with it."""

    def __init__(self):
        self.out, self.closing = [], False

    def write(self, data):
        self.out.append(bytes(data))

    def close(self):
        self.closing = True

    def is_closing(self):
        return self.closing

    def can_write_eof(self):
        return False

    def write_eof(self):
        pass

    def get_extra_info(self, key, default=None):
        return {"sockname": ("127.0.0.1", 8000), "peername": ("127.0.0.1", 5000)}.get(key, default)

    def set_protocol(self, protocol):
        pass

    def set_write_buffer_limits(self, *a, **k):
        pass

    def pause_reading(self):
        pass

    def resume_reading(self):
        pass


class InProcessProtocol:
    """The server's guarded uvicorn protocol (service/api/protocol.py) over an InProcessApp's app and loop,
    fed request bytes: what a live worker does with them once read from the socket."""

    def __init__(self, inproc: InProcessApp):
        import uvicorn
        from uvicorn.server import ServerState

        from service.api import admission, fast_path
        from service.api.protocol import guarded_protocol

        self.loop = inproc.loop
        self.fast, self.state = fast_path.ACTIVE, admission.ACTIVE  # this app's (the last app started)
        config = uvicorn.Config(inproc.app, access_log=False, log_level="warning")
        config.load()
        server_state = ServerState()
        server_state.default_headers = [(b"date", b"Thu, 03 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
        self.protocol = guarded_protocol()(config, server_state, {}, self.loop)
        self.transport = MemoryTransport()
        self.protocol.connection_made(self.transport)

    def post(self, path: str, body: bytes) -> tuple[float, dict]:
        from service.api import admission, fast_path

        fast_path.ACTIVE, admission.ACTIVE = self.fast, self.state
        data, out = request_bytes(path, body), self.transport.out
        out.clear()

        def recv():
            while not out:
                self.loop.run_until_complete(asyncio.sleep(0))
            return out.pop(0)

        t0 = time.perf_counter()
        self.protocol.data_received(data)
        status, reply = read_response(recv)
        return time.perf_counter() - t0, ok_json(status, reply)

    def close(self):
        self.protocol.connection_lost(None)


def _median_us(xs) -> float:
    return round(statistics.median(xs) * 1e6, 1)


def main(argv=None):
    from service.artifacts import load_artifact
    from service.families import build_model
    from service.tokenizer import regex_tokenize_with_spans
    from training import data

    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--model", default="imdb-skim")
    p.add_argument("--models-dir", default=str(ROOT / "models"))
    p.add_argument("--texts", type=int, default=30)
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--data-dir", default=None)
    p.add_argument("--out", default=str(ROOT / "benchmarks" / "results"))
    multi = (os.cpu_count() or 1) > 1
    p.add_argument("--server-cpus", default="0" if multi else "",
                   help="taskset CPU list of the live server (default CPU 0 on a multi-core machine; '' = unpinned)")
    p.add_argument("--client-cpus", default="1" if multi else "",
                   help="CPUs of this process: the raw-socket client and every in-process stage (default CPU 1)")
    args = p.parse_args(argv)
    if args.client_cpus and hasattr(os, "sched_setaffinity"):  # before the server starts: it is pinned apart
        os.sched_setaffinity(0, {int(c) for c in args.client_cpus.split(",")})

    model = build_model(load_artifact(Path(args.models_dir) / args.model), "fast")
    sets = {"imdb-long": [ex.text for ex in data.load("imdb", "test", args.data_dir)
                          if len(model.tokenize(ex.text)) >= 250][:args.texts],
            "sst2-short": [ex.text for ex in data.load("sst2", "test", args.data_dir, args.texts)]}
    thresholds = {"1.0": 1.0, "default": model.default_threshold}
    server = LiveServer(args.models_dir, args.model, args.server_cpus or None)
    app = InProcessApp(args.models_dir, args.model)
    proto = InProcessProtocol(app)
    routes_app = InProcessApp(args.models_dir, args.model, fast_path=False)
    stages: dict[tuple, dict[str, list]] = {}
    try:
        for _ in range(args.rounds):
            for set_name, texts in sets.items():
                for thr_name, thr in thresholds.items():
                    st = stages.setdefault((set_name, thr_name), {k: [] for k in (
                        "http", "protocol", "app", "app_routes", "tokenizer", "tokenizer_regex", "ids_embed", "model")})
                    for text in texts:
                        body = json.dumps({"text": text}).encode()
                        path = f"/classify?threshold={thr}"
                        dt_http, _ = server.post(path, body)
                        dt_proto, _ = proto.post(path, body)
                        dt_app, resp = app.post(path, body)
                        dt_routes, _ = routes_app.post(path, body)
                        t0 = time.perf_counter()
                        toks = model.tokenize(text)
                        t1 = time.perf_counter()
                        regex_tokenize_with_spans(text)
                        t2 = time.perf_counter()
                        model.embed(model.to_ids(toks))
                        t3 = time.perf_counter()
                        st["http"].append(dt_http)
                        st["protocol"].append(dt_proto)
                        st["app"].append(dt_app)
                        st["app_routes"].append(dt_routes)
                        st["tokenizer"].append(t1 - t0)
                        st["tokenizer_regex"].append(t2 - t1)
                        st["ids_embed"].append(t3 - t2)
                        st["model"].append(resp["latency_ms"] / 1000.0)
    finally:
        server.close()
        proto.close()
        app.close()
        routes_app.close()

    rows = []
    for (set_name, thr_name), st in stages.items():
        med = {k: _median_us(v) for k, v in st.items()}
        med["framework"] = round(med["protocol"] - med["tokenizer"] - med["ids_embed"] - med["model"], 1)
        med["transport"] = round(med["http"] - med["protocol"], 1)
        med["outside_model"] = round(med["http"] - med["model"], 1)
        tokens = statistics.median(len(model.tokenize(t)) for t in sets[set_name])
        rows.append({"texts": set_name, "threshold": thr_name, "median_tokens": tokens, **med})
    by = {(r["texts"], r["threshold"]): r for r in rows}
    ratios = {s: round(by[(s, "1.0")]["http"] / by[(s, "default")]["http"], 2) for s in sets}
    model_ratios = {s: round(by[(s, "1.0")]["model"] / by[(s, "default")]["model"], 2) for s in sets}
    from training.evaluate import cpu_name

    result = {"model": args.model, "default_threshold": model.default_threshold, "texts": args.texts,
              "server_cpus": args.server_cpus, "client_cpus": args.client_cpus,
              "rounds": args.rounds, "cpu": cpu_name(), "cores": os.cpu_count(),
              "date": datetime.date.today().isoformat(), "rows": rows,
              "http_speedup_default_vs_1.0": ratios, "model_speedup_default_vs_1.0": model_ratios,
              "command": "python -m benchmarks.request_path " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "request_path.json").write_text(json.dumps(result, indent=1) + "\n")
    cols = ["texts", "threshold", "median_tokens", "http", "transport", "protocol", "app", "app_routes", "framework",
            "tokenizer",
            "tokenizer_regex", "ids_embed", "model", "outside_model"]
    lines = [f"# Request path: where the time of one /classify request goes ({args.model})", "",
             f"`{result['command']}` on {result['cpu']} ({result['cores']} cores), {result['date']}; medians in µs "
             f"over {args.texts} texts x {args.rounds} rounds, one keep-alive connection (a raw-socket client), "
             f"one worker; server on CPU {args.server_cpus or 'any'}, client and in-process stages on CPU "
             f"{args.client_cpus or 'any'} (so transport includes the wake-ups across cores).", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "Whole request (http), default threshold against 1.0: " +
              ", ".join(f"{s} {ratios[s]}x (model alone {model_ratios[s]}x)" for s in sets) + ".", "",
              "protocol = the request bytes through the server's uvicorn protocol in-process (as served: a whole "
              "small POST is answered there); app = in-process through the ASGI fast path (the way of requests the "
              "protocol does not answer itself); app_routes = the same through the FastAPI route (fast_path=false). "
              "tokenizer = the compiled scanner in use; tokenizer_regex = the regex it replaced (not on the path); "
              "framework = protocol - tokenizer - ids_embed - model; transport = http - protocol (socket, kernel, "
              "event loop); outside_model = http - model."]
    (out / "request_path.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
