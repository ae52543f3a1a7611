"""The lean metric wrappers of service/metrics.py (_Histogram, _Counter) record exactly what
prometheus_client's own observe()/inc() record: same buckets, sums and counts, boundaries, NaN and inf."""
import math

from prometheus_client import CollectorRegistry, Counter, Histogram

from service import metrics

VALUES = [0.0, 0.0005, 0.00051, 0.001, 0.0024, 1.0, 9.99, 10.0, 10.5, math.inf, -1.0, math.nan, 3e-7, 0.05]


def samples(registry):
    return sorted((s.name, tuple(sorted(s.labels.items())), repr(s.value))
                  for m in registry.collect() for s in m.samples)


def test_histogram_and_counter_wrappers_record_what_the_originals_record():
    mine, theirs = CollectorRegistry(), CollectorRegistry()
    buckets = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10]
    h_mine = Histogram("h", "h", ["a"], buckets=buckets, registry=mine)
    h_theirs = Histogram("h", "h", ["a"], buckets=buckets, registry=theirs)
    c_mine = Counter("c", "c", ["a"], registry=mine)
    c_theirs = Counter("c", "c", ["a"], registry=theirs)
    fast_h, fast_c = metrics._fast(h_mine.labels("x")), metrics._fast(c_mine.labels("x"))
    assert isinstance(fast_h, metrics._Histogram) and isinstance(fast_c, metrics._Counter)
    for v in VALUES:
        fast_h.observe(v)
        h_theirs.labels("x").observe(v)
        if v >= 0:
            fast_c.inc(v)
            c_theirs.labels("x").inc(v)
    fast_c.inc()
    c_theirs.labels("x").inc()
    assert samples(mine) == samples(theirs)
