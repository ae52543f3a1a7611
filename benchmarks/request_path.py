"""Where the time of one /classify request goes, stage by stage, measured side by side in one run:

  python -m benchmarks.request_path [--model imdb-skim] [--texts 30] [--rounds 5]
      -> benchmarks/results/request_path.{json,md}

For long IMDb reviews (the model's dataset, test split) and short SST-2 sentences, at threshold 1.0 (reads
everything) and at the model's default:
- http: a whole request through a live `skimserve serve` (one worker, loopback, one keep-alive
  connection, http.client), client clock;
- app: the same request into the ASGI app in-process (no socket, no uvicorn), as served: the fast path
  (service/api/fast_path.py): body read, JSON, validation, task, orjson, request metrics;
- app_routes: the same with the fast path off (fast_path=false), i.e. through the FastAPI route:
  dependency solving, the pool hop, response-model validation and serialisation;
- the parts of it measured on their own: tokenizer (the compiled scanner in use, and the regex it
  replaced), ids + embedding lookup, the model (its `latency_ms`, the response's own figure);
- and the two remainders: framework = app - tokenizer - ids - model, transport = http - app.
Medians over texts x rounds; every configuration runs once per round, interleaved.
"""
from __future__ import annotations

import argparse
import asyncio
import datetime
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


class LiveServer:
    def __init__(self, models_dir: str, model: str):
        self.port = _free_port()
        env = {**os.environ, "SKIMSERVE_LOG_LEVEL": "warning"}
        self.proc = subprocess.Popen([sys.executable, "-m", "service", "serve", "--models-dir", models_dir, "--port",
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
        self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=30)

    def post(self, path: str, body: bytes) -> tuple[float, dict]:
        t0 = time.perf_counter()
        self.conn.request("POST", path, body, {"Content-Type": "application/json"})
        r = self.conn.getresponse()
        data = r.read()
        dt = time.perf_counter() - t0
        if r.status != 200:
            raise RuntimeError(f"{r.status}: {data[:200]!r}")
        return dt, json.loads(data)

    def close(self):
        self.conn.close()
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
    args = p.parse_args(argv)

    model = build_model(load_artifact(Path(args.models_dir) / args.model), "fast")
    sets = {"imdb-long": [ex.text for ex in data.load("imdb", "test", args.data_dir)
                          if len(model.tokenize(ex.text)) >= 250][:args.texts],
            "sst2-short": [ex.text for ex in data.load("sst2", "test", args.data_dir, args.texts)]}
    thresholds = {"1.0": 1.0, "default": model.default_threshold}
    server, app = LiveServer(args.models_dir, args.model), InProcessApp(args.models_dir, args.model)
    routes_app = InProcessApp(args.models_dir, args.model, fast_path=False)
    stages: dict[tuple, dict[str, list]] = {}
    try:
        for _ in range(args.rounds):
            for set_name, texts in sets.items():
                for thr_name, thr in thresholds.items():
                    st = stages.setdefault((set_name, thr_name), {k: [] for k in (
                        "http", "app", "app_routes", "tokenizer", "tokenizer_regex", "ids_embed", "model")})
                    for text in texts:
                        body = json.dumps({"text": text}).encode()
                        path = f"/classify?threshold={thr}"
                        dt_http, _ = server.post(path, body)
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
                        st["app"].append(dt_app)
                        st["app_routes"].append(dt_routes)
                        st["tokenizer"].append(t1 - t0)
                        st["tokenizer_regex"].append(t2 - t1)
                        st["ids_embed"].append(t3 - t2)
                        st["model"].append(resp["latency_ms"] / 1000.0)
    finally:
        server.close()
        app.close()
        routes_app.close()

    rows = []
    for (set_name, thr_name), st in stages.items():
        med = {k: _median_us(v) for k, v in st.items()}
        med["framework"] = round(med["app"] - med["tokenizer"] - med["ids_embed"] - med["model"], 1)
        med["transport"] = round(med["http"] - med["app"], 1)
        med["outside_model"] = round(med["http"] - med["model"], 1)
        tokens = statistics.median(len(model.tokenize(t)) for t in sets[set_name])
        rows.append({"texts": set_name, "threshold": thr_name, "median_tokens": tokens, **med})
    by = {(r["texts"], r["threshold"]): r for r in rows}
    ratios = {s: round(by[(s, "1.0")]["http"] / by[(s, "default")]["http"], 2) for s in sets}
    model_ratios = {s: round(by[(s, "1.0")]["model"] / by[(s, "default")]["model"], 2) for s in sets}
    from training.evaluate import cpu_name

    result = {"model": args.model, "default_threshold": model.default_threshold, "texts": args.texts,
              "rounds": args.rounds, "cpu": cpu_name(), "cores": os.cpu_count(),
              "date": datetime.date.today().isoformat(), "rows": rows,
              "http_speedup_default_vs_1.0": ratios, "model_speedup_default_vs_1.0": model_ratios,
              "command": "python -m benchmarks.request_path " + " ".join(argv if argv is not None else sys.argv[1:])}
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "request_path.json").write_text(json.dumps(result, indent=1) + "\n")
    cols = ["texts", "threshold", "median_tokens", "http", "transport", "app", "app_routes", "framework", "tokenizer",
            "tokenizer_regex", "ids_embed", "model", "outside_model"]
    lines = [f"# Request path: where the time of one /classify request goes ({args.model})", "",
             f"`{result['command']}` on {result['cpu']} ({result['cores']} cores), {result['date']}; medians in µs "
             f"over {args.texts} texts x {args.rounds} rounds, one keep-alive connection, one worker.", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(str(r[c]) for c in cols) + " |" for r in rows]
    lines += ["", "Whole request (http), default threshold against 1.0: " +
              ", ".join(f"{s} {ratios[s]}x (model alone {model_ratios[s]}x)" for s in sets) + ".", "",
              "app = in-process through the fast path (as served); app_routes = the same through the FastAPI route "
              "(fast_path=false). tokenizer = the compiled scanner in use; tokenizer_regex = the regex it replaced (not on the path); "
              "framework = app - tokenizer - ids_embed - model; transport = http - app; outside_model = http - model."]
    (out / "request_path.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
