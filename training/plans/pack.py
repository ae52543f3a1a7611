"""Pack trained run folders into a few tars under a size cap (the GPU call returns at most 8 files of 16 MiB).

  python training/plans/pack.py DEST RUNS_DIR LOGS_DIR NAME...
meta.tar.gz: every run's manifest.json and train_log.jsonl, and the logs; then runs-N.tar: the named
run folders whole (weights, vocab, manifest, log), packed greedily under 15 MiB each.
"""
import sys
import tarfile
from pathlib import Path

CAP = 15 * 2 ** 20
dest, runs, logs, names = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4:]
dest.mkdir(parents=True, exist_ok=True)
with tarfile.open(dest / "meta.tar.gz", "w:gz") as t:
    for f in sorted(runs.glob("*/manifest.json")) + sorted(runs.glob("*/train_log.jsonl")):
        t.add(f, arcname=f"runs/{f.parent.name}/{f.name}")
    t.add(logs, arcname="logs")
sizes = {n: sum(f.stat().st_size for f in (runs / n).iterdir()) for n in names if (runs / n / "manifest.json").is_file()}
bins = []
for n in sorted(sizes, key=lambda n: -sizes[n]):
    for b in bins:
        if b[0] + sizes[n] <= CAP:
            b[0] += sizes[n]
            b[1].append(n)
            break
    else:
        bins.append([sizes[n], [n]])
for i, (_, ns) in enumerate(bins):
    with tarfile.open(dest / f"runs-{i}.tar", "w") as t:
        for n in ns:
            t.add(runs / n, arcname=n)
    print(f"runs-{i}.tar: {' '.join(ns)}")
missing = [n for n in names if n not in sizes]
if missing:
    print("not found:", " ".join(missing))
