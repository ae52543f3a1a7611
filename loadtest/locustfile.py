"""Locust users for skimserve: `locust -f loadtest/ --host http://127.0.0.1:8000`.

Users
  ShortTextUser  POST /classify with short SST-2-like sentences (SST-2 test split)
  LongTextUser   POST /classify with long IMDb-like reviews (IMDb test split)
  QAUser         POST /qa with SQuAD v1.1 questions and their contexts (squad/test.json: 1,080 questions)
  OverloadUser   the overload scenario (loadtest/overload.py): labelled IMDb reviews and SST-2 sentences, no
                 threshold sent (the server's choice), a fixed rate per user; only with SKIMSERVE_TASKS=overload
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
  SKIMSERVE_USER_RATE    OverloadUser: requests/s per user (constant throughput; 0 = closed loop)
  SKIMSERVE_LONG_SHARE   OverloadUser: share of requests that are IMDb reviews (default 0.5), the rest SST-2
  SKIMSERVE_OVERLOAD_THRESHOLD   OverloadUser: send this threshold (capacity at a fixed threshold); unset: none
  SKIMSERVE_BATCH        OverloadUser: texts per request (default 1: {"text"}; more: {"texts": [...]}, one kind)

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
import time
from pathlib import Path

from locust import HttpUser, between, constant, constant_throughput, events, task
from locust.contrib.fasthttp import FastHttpUser

ROOT = Path(__file__).resolve().parent.parent
for _p in (ROOT, ROOT / "loadtest"):
    if str(_p) not in sys.path:
        sys.path.insert(0, str(_p))

from skimlog import SkimLog, find, layer_skim_rates  # noqa: E402,F401  (find: the scenarios read response fields)
from texts import _data_root, _sample, load_labelled  # noqa: E402,F401  (shared with overload.py's driver, no locust)

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


SKIM_LOG = SkimLog()


@events.quitting.add_listener
def _write_skim_log(environment, **_kw):
    raw_dir = os.environ.get("SKIMSERVE_SKIM_RAW_DIR")  # several Locust processes: each dumps, run_headless merges
    if raw_dir:
        if SKIM_LOG.rows:
            SKIM_LOG.dump_raw(Path(raw_dir) / f"{os.getpid()}.json")
        return
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


class RequestLog:
    """One row per OverloadUser request: when, which kind, status, client latency, what the server applied
    (threshold, threshold_source) and whether the label was right. Written to PREFIX_requests.csv."""

    FIELDS = ("t", "kind", "model", "status", "latency_ms", "threshold", "source", "texts", "correct")

    def __init__(self):
        self.lock, self.rows = threading.Lock(), []

    def add(self, row: tuple):
        with self.lock:
            self.rows.append(row)

    def write(self, path: str | Path):
        with open(path, "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(self.FIELDS)
            w.writerows(self.rows)


REQUEST_LOG = RequestLog()
USER_RATE = float(os.environ.get("SKIMSERVE_USER_RATE", "0"))
LONG_SHARE = float(os.environ.get("SKIMSERVE_LONG_SHARE", "0.5"))
FIXED_THRESHOLD = os.environ.get("SKIMSERVE_OVERLOAD_THRESHOLD") or None
BATCH = int(os.environ.get("SKIMSERVE_BATCH", "1"))


@events.quitting.add_listener
def _write_request_log(environment, **_kw):
    prefix = getattr(environment.parsed_options, "csv_prefix", None) if environment.parsed_options else None
    if prefix and REQUEST_LOG.rows:
        REQUEST_LOG.write(f"{prefix}_requests.csv")


class OverloadUser(FastHttpUser):
    """Labelled IMDb reviews (share SKIMSERVE_LONG_SHARE) and SST-2 sentences to POST /classify with no
    threshold: the server applies its default, or in latency-objective mode a lower one under load. At
    SKIMSERVE_USER_RATE requests/s per user, so the offered load is users x rate while latency stays under
    1/rate (loadtest/overload.py sizes the users so)."""
    abstract = "overload" not in TASKS
    wait_time = constant_throughput(USER_RATE) if USER_RATE else constant(0)
    _texts: dict = {}
    _labels: dict = {}
    _labels_lock = threading.Lock()  # gevent-patched: a cooperative lock

    def on_start(self):
        cls = type(self)
        if not cls._texts:
            cls._texts = {"long": load_labelled("long", N_TEXTS), "short": load_labelled("short", N_TEXTS)}
        self.rng = random.Random(id(self))
        self.models = {k: task_model(k) for k in ("long", "short")}
        if USER_RATE:  # a random phase: users started together would otherwise fire in bursts, in step
            time.sleep(self.rng.uniform(0, 1 / USER_RATE))  # gevent-patched: yields to the other users
        with cls._labels_lock:  # one GET per model, not one per user
            for name in self.models.values():
                if name and name not in cls._labels:
                    cls._labels[name] = self.client.get(f"/models/{name}", name="/models/{name}").json()["labels"]

    @task
    def classify(self):
        kind = "long" if self.rng.random() < LONG_SHARE else "short"
        picked = [self.rng.choice(self._texts[kind]) for _ in range(BATCH)]
        body = {"text": picked[0][0]} if BATCH == 1 else {"texts": [t for t, _ in picked]}
        model = self.models[kind]
        query = "&".join(f"{k}={v}" for k, v in (("model", model), ("threshold", FIXED_THRESHOLD)) if v)
        t0 = time.time()
        with self.client.post("/classify" + (f"?{query}" if query else ""), json=body,
                              name=f"/classify overload {kind}", catch_response=True) as r:
            latency = 1000 * (time.time() - t0)
            if r.status_code != 200:
                r.failure(f"HTTP {r.status_code}")
                REQUEST_LOG.add((t0, kind, model, r.status_code, latency, "", "", BATCH, ""))
                return
            d = r.json()
            labels = self._labels.get(model) or []
            answers = [x["label"] for x in d["results"]] if "results" in d else [d["label"]]
            correct = sum(bool(labels) and a == labels[y] for a, (_, y) in zip(answers, picked))
            REQUEST_LOG.add((t0, kind, model, 200, latency, d["threshold"], d.get("threshold_source", ""), BATCH,
                             correct))


__all__ = ["ShortTextUser", "LongTextUser", "QAUser", "OverloadUser", "between"]
