"""Locust users for skimserve: `locust -f loadtest/ --host http://127.0.0.1:8000`.

Users
  ShortTextUser  POST /classify with short SST-2-like sentences (SST-2 test split)
  LongTextUser   POST /classify with long IMDb-like reviews (IMDb test split)
  QAUser         POST /qa with SQuAD v1.1 questions and their contexts (squad/test.json: 1,080 questions)
Texts come from the test splits via training.data (data dir: $SKIMSERVE_DATA, else ../shared/data);
if the data is missing, a small built-in text list is used (and said so on stderr).

Environment
  SKIMSERVE_TASKS        users to run, comma list of short,long,qa (default "short,long,qa")
  SKIMSERVE_THRESHOLDS   thresholds, comma list (default "1.0,0.7,0.5,0.3,0.1"). Each user cycles
                         through them, so every threshold gets the same share; one value = fixed.
                         /qa gets it as ?threshold= (every skim layer, both directions).
  SKIMSERVE_MODEL        model name sent as ?model= (default: the server's default model)
  SKIMSERVE_SHORT_MODEL / SKIMSERVE_LONG_MODEL / SKIMSERVE_QA_MODEL   per-task override
  SKIMSERVE_TEXTS        texts sampled per task (default 400), seeded
  SKIMSERVE_WAIT         seconds between a user's requests (default 0: closed loop)

Request names are "/classify short t=0.5", "/qa qa t=0.5" etc., so Locust's statistics (and its CSVs) are
per task and threshold. With --csv PREFIX the run also writes PREFIX_skim.csv: per task/threshold, the
server-reported skim rate, FLOP reduction, tokens and model per-token latency percentiles (from the
response bodies); for /qa, tokens are layer-steps (context tokens x 4) and the layer_skim_rates column
holds the mean skim rate of each layer/direction ("l0.fw=0.41 l0.bw=0.40 l1.fw=0.62 l1.bw=0.60").
"""
from __future__ import annotations

import csv
import gzip
import itertools
import json
import os
import random
import sys
import threading
from collections import defaultdict
from pathlib import Path

from locust import HttpUser, between, constant, events, task

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

FALLBACK_SHORT = [
    "a gorgeous , witty , seductive movie .",
    "the acting is bad and the plot is worse .",
    "it 's not very good , but it is never boring .",
    "an utterly charming and hilarious film .",
    "a dull , lifeless exercise in tedium .",
    "the story is funny and the acting is great .",
]
FALLBACK_LONG = [
    " ".join(random.Random(i).choices(
        "the a film movie was is not very good bad great awful plot acting story boring funny and but it this "
        "that of to with for as on at by from . , ! ?".split(), k=230)) for i in range(8)
]
FALLBACK_QA = [{"question": "what is skimmed ?",
                "context": "a skim rnn reads important tokens with a big cell and skims the rest with a small cell ."}]


def env_list(name: str, default: str) -> list[str]:
    return [s.strip() for s in os.environ.get(name, default).split(",") if s.strip()]


TASKS = set(env_list("SKIMSERVE_TASKS", "short,long,qa"))
THRESHOLDS = [float(t) for t in env_list("SKIMSERVE_THRESHOLDS", "1.0,0.7,0.5,0.3,0.1")]
N_TEXTS = int(os.environ.get("SKIMSERVE_TEXTS", "400"))
WAIT = float(os.environ.get("SKIMSERVE_WAIT", "0"))


def task_model(task_name: str) -> str | None:
    return os.environ.get(f"SKIMSERVE_{task_name.upper()}_MODEL") or os.environ.get("SKIMSERVE_MODEL") or None


def _data_root() -> Path:
    try:
        from training.data import data_dir

        return data_dir()
    except Exception:  # noqa: BLE001  (running from a copy without training/)
        env = os.environ.get("SKIMSERVE_DATA")
        return Path(env) if env else ROOT.parent / "shared" / "data"


def _sample(items: list, n: int) -> list:
    items = list(items)
    random.Random(13).shuffle(items)
    return items[:n]


def load_texts(kind: str, n: int = N_TEXTS) -> list[str]:
    """Test-split texts: 'short' = SST-2, 'long' = IMDb. Falls back to built-in texts if missing."""
    root = _data_root()
    try:
        if kind == "short":
            with open(root / "sst2" / "test.txt", encoding="utf-8") as f:
                texts = [line.rstrip("\n").split(" ", 1)[1] for line in f if line.strip()]
        elif kind == "long":
            with gzip.open(root / "imdb" / "test.jsonl.gz", "rt", encoding="utf-8") as f:
                texts = [json.loads(line)["text"] for line in f]
        else:
            raise ValueError(kind)
        return _sample(texts, n)
    except (OSError, ValueError, KeyError, IndexError) as exc:
        print(f"loadtest: {kind} texts not found under {root} ({exc}); using built-in texts", file=sys.stderr)
        return FALLBACK_SHORT if kind == "short" else FALLBACK_LONG


def load_qa(n: int = N_TEXTS) -> list[dict]:
    root = _data_root()
    try:
        data = json.loads((root / "squad" / "test.json").read_text(encoding="utf-8"))
        items = [{"question": qa["question"], "context": p["context"]}
                 for art in data["data"] for p in art["paragraphs"] for qa in p["qas"]]
        return _sample(items, n)
    except (OSError, ValueError, KeyError) as exc:
        print(f"loadtest: squad texts not found under {root} ({exc}); using built-in QA", file=sys.stderr)
        return FALLBACK_QA


def find(obj, key):
    """First value of `key` anywhere in a JSON response (tolerant of the exact response shape)."""
    if isinstance(obj, dict):
        if key in obj and not isinstance(obj[key], (dict, list)):
            return obj[key]
        for v in obj.values():
            r = find(v, key)
            if r is not None:
                return r
    elif isinstance(obj, list):
        for v in obj:
            r = find(v, key)
            if r is not None:
                return r
    return None


def layer_skim_rates(body) -> dict[str, float]:
    """{layer: skim_rate} of a /qa response (per_layer of the answer; a batch: of its first result)."""
    if isinstance(body, dict) and "results" in body and body["results"]:
        body = body["results"][0]
    layers = body.get("per_layer") if isinstance(body, dict) else None
    out = {}
    for layer in layers or []:
        if isinstance(layer, dict) and isinstance(layer.get("skim_rate"), (int, float)) and layer.get("layer"):
            out[str(layer["layer"])] = float(layer["skim_rate"])
    return out


class SkimLog:
    """Server-reported cost per (task, threshold), collected from response bodies."""

    FIELDS = ("skim_rate", "flop_reduction", "tokens", "per_token_us", "latency_ms")

    def __init__(self):
        self.lock = threading.Lock()
        self.rows: dict[tuple[str, str, float], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, task_name, model, threshold, body):
        vals = {k: find(body, k) for k in self.FIELDS}
        layers = layer_skim_rates(body)
        with self.lock:
            row = self.rows[(task_name, model or "", threshold)]
            for k, v in vals.items():
                if isinstance(v, (int, float)):
                    row[k].append(float(v))
            for name, v in layers.items():
                row["layer:" + name].append(v)

    def write(self, path: str | Path):
        import numpy as np

        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["task", "model", "threshold", "responses", "skim_rate_mean", "flop_reduction_mean",
                        "tokens_mean", "per_token_us_p50", "per_token_us_p95", "per_token_us_p99",
                        "model_ms_p50", "model_ms_p95", "layer_skim_rates"])
            for (t, m, thr), row in sorted(self.rows.items()):
                def stat(k, fn):
                    return f"{fn(np.asarray(row[k])):.6g}" if row.get(k) else ""
                w.writerow([t, m, thr, len(row.get("tokens", row.get("skim_rate", []))),
                            stat("skim_rate", np.mean), stat("flop_reduction", np.mean), stat("tokens", np.mean),
                            stat("per_token_us", lambda a: np.percentile(a, 50)),
                            stat("per_token_us", lambda a: np.percentile(a, 95)),
                            stat("per_token_us", lambda a: np.percentile(a, 99)),
                            stat("latency_ms", lambda a: np.percentile(a, 50)),
                            stat("latency_ms", lambda a: np.percentile(a, 95)),
                            " ".join(f"{k.removeprefix('layer:')}={np.mean(v):.4g}"
                                     for k, v in row.items() if k.startswith("layer:") and v)])


SKIM_LOG = SkimLog()


@events.quitting.add_listener
def _write_skim_log(environment, **_kw):
    prefix = getattr(environment.parsed_options, "csv_prefix", None) if environment.parsed_options else None
    if prefix and SKIM_LOG.rows:
        SKIM_LOG.write(f"{prefix}_skim.csv")


class _SkimUser(HttpUser):
    abstract = True
    wait_time = constant(WAIT) if WAIT else constant(0)
    kind = ""
    _texts: list = []

    def on_start(self):
        cls = type(self)
        if not cls._texts:
            cls._texts = self.load()
        self.rng = random.Random(id(self))
        self.thresholds = itertools.cycle(self.rng.sample(THRESHOLDS, len(THRESHOLDS)))
        self.model = task_model(self.kind)

    def load(self):
        return load_texts(self.kind)

    def _post(self, path, body):
        thr = next(self.thresholds)
        params = {"threshold": thr}
        if self.model:
            params["model"] = self.model
        with self.client.post(path, params=params, json=body, name=f"{path} {self.kind} t={thr:g}",
                              catch_response=True) as r:
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}: {r.text[:200]}")
                return
            try:
                SKIM_LOG.add(self.kind, self.model, thr, r.json())
            except ValueError:
                r.failure("response is not JSON")


class ShortTextUser(_SkimUser):
    """Short SST-like sentences (~20 tokens)."""
    abstract = "short" not in TASKS
    kind = "short"

    @task
    def classify(self):
        self._post("/classify", {"text": self.rng.choice(self._texts)})


class LongTextUser(_SkimUser):
    """Long IMDb-like reviews (~230 words)."""
    abstract = "long" not in TASKS
    kind = "long"

    @task
    def classify(self):
        self._post("/classify", {"text": self.rng.choice(self._texts)})


class QAUser(_SkimUser):
    """SQuAD v1.1 test questions with their contexts (contexts of ~150 words) against POST /qa
    (body {"context", "question"}); model: $SKIMSERVE_QA_MODEL, else $SKIMSERVE_MODEL, else the server's
    default QA model."""
    abstract = "qa" not in TASKS
    kind = "qa"

    def load(self):
        return load_qa()

    @task
    def qa(self):
        self._post("/qa", dict(self.rng.choice(self._texts)))


__all__ = ["ShortTextUser", "LongTextUser", "QAUser", "between"]
