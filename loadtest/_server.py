"""Start a local skimserve server for tests and load-test runs (not a locustfile: the leading '_' keeps
Locust from importing it). Loopback only, bounded waits, always stopped."""
from __future__ import annotations

import contextlib
import os
import shlex
import socket
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float, proc: subprocess.Popen | None = None) -> None:
    import httpx

    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"process exited with {proc.returncode} before {url} answered")
        try:
            r = httpx.get(url, timeout=2)
            if r.status_code < 500:
                return
            last = f"HTTP {r.status_code}"
        except httpx.HTTPError as exc:
            last = exc
        time.sleep(0.2)
    raise TimeoutError(f"{url} did not answer within {timeout}s ({last})")


def serve_command(models_dir: str | Path, port: int, extra: list[str] | None = None) -> list[str]:
    """`python -m service serve ...`; $SKIMSERVE_SERVE_CMD (a template with {models_dir} {port}) overrides."""
    tmpl = os.environ.get("SKIMSERVE_SERVE_CMD")
    if tmpl:
        return shlex.split(tmpl.format(models_dir=models_dir, port=port, python=sys.executable)) + (extra or [])
    return [sys.executable, "-m", "service", "serve", "--models-dir", str(models_dir),
            "--host", "127.0.0.1", "--port", str(port), *(extra or [])]


@contextlib.contextmanager
def running_server(models_dir: str | Path, port: int | None = None, env: dict | None = None,
                   extra: list[str] | None = None, timeout: float = 30, log: str | Path | None = None):
    """Yield the base URL of a server on 127.0.0.1; kill it on exit whatever happens."""
    port = port or free_port()
    out = open(log, "wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(serve_command(models_dir, port, extra), cwd=ROOT, stdout=out, stderr=subprocess.STDOUT,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(
                                filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])), **(env or {})})
    url = f"http://127.0.0.1:{port}"
    try:
        wait_http(f"{url}/healthz", timeout, proc)
        yield url
    finally:
        stop(proc)
        if log:
            out.close()


def stop(proc: subprocess.Popen, grace: float = 5) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
