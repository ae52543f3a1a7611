"""service/api/idle_poll.py: after an answer the worker's event loop keeps polling (a self-rescheduling
ready callback) for `idle_poll_us`, then sleeps as before; never where it is off, where the worker has no
CPU to spare, or while model jobs run on its pool. And the protocol starts it after each answer, inline
or through the ASGI path."""
import asyncio
import json
import time

import pytest

from service.api import admission, idle_poll
from service.api.idle_poll import IdlePoll
from service.config import Settings
from test_fast_protocol import TEXT, app, protocol, request, settle  # noqa: F401  (the module's app fixture)


class _Pool:
    def __init__(self, admitted):
        self.admitted = admitted


class _State:
    def __init__(self, admitted):
        self.pool = _Pool(admitted)


def _run_for(poll: IdlePoll, seconds: float, busy_after: float | None = None) -> tuple[int, bool]:
    """(ticks, still polling) after answering once and running the loop for `seconds`."""
    async def run():
        poll.answered(asyncio.get_running_loop())
        await asyncio.sleep(seconds)
        return poll.ticks, poll.polling

    return asyncio.run(run())


def test_polls_for_the_window_then_sleeps(monkeypatch):
    monkeypatch.setattr(admission, "ACTIVE", None)
    poll = IdlePoll(0.002, workers=1, cpus=2)
    t0 = time.perf_counter()
    ticks, polling = _run_for(poll, 0.05)
    assert ticks > 10 and not polling  # it ran many loop iterations, then stopped
    assert poll.until - t0 < 0.01  # the window is counted from the answer


@pytest.mark.parametrize("seconds,workers,cpus", [(0.0, 1, 2), (0.002, 1, 1), (0.002, 2, 2)])
def test_never_polls_when_off_or_without_a_spare_cpu(monkeypatch, seconds, workers, cpus):
    monkeypatch.setattr(admission, "ACTIVE", None)
    poll = IdlePoll(seconds, workers=workers, cpus=cpus)
    assert _run_for(poll, 0.01) == (0, False)


def test_no_poll_while_model_jobs_run(monkeypatch):
    monkeypatch.setattr(admission, "ACTIVE", _State(admitted=1))
    poll = IdlePoll(0.05, workers=1, cpus=2)
    assert _run_for(poll, 0.01) == (0, False)


def test_a_poll_stops_when_a_model_job_starts(monkeypatch):
    state = _State(admitted=0)
    monkeypatch.setattr(admission, "ACTIVE", state)
    poll = IdlePoll(10.0, workers=1, cpus=2)  # a window that would outlast the test

    async def run():
        poll.answered(asyncio.get_running_loop())
        await asyncio.sleep(0.005)
        assert poll.polling and poll.ticks > 0
        state.pool.admitted = 1
        await asyncio.sleep(0.005)
        return poll.polling

    assert asyncio.run(run()) is False


def test_setting_reaches_the_worker(monkeypatch):
    monkeypatch.setattr(idle_poll, "POLL", None)
    monkeypatch.setattr(idle_poll, "_cpus", lambda: 4)
    assert idle_poll.idle_poll(Settings(idle_poll_us=80)).seconds == pytest.approx(80e-6)
    monkeypatch.setattr(idle_poll, "POLL", None)
    assert idle_poll.idle_poll(Settings(idle_poll_us=0)).seconds == 0.0
    assert Settings().idle_poll_us is None  # unset: the machine decides (auto_us)
    for auto in (0, 50):
        monkeypatch.setattr(idle_poll, "POLL", None)
        monkeypatch.setattr(idle_poll, "auto_us", lambda: auto)
        assert idle_poll.idle_poll(Settings()).seconds == pytest.approx(auto * 1e-6)


@pytest.mark.parametrize("driver,halt_poll_ns,expected", [
    ("haltpoll\n", "0\n", idle_poll.AUTO_US),  # the guest never polls before it halts: we do
    ("haltpoll\n", "200000\n", 0),  # the guest polls itself
    ("none\n", "0\n", 0), ("intel_idle\n", "0\n", 0),  # no haltpoll driver (bare metal, other VMs)
    ("haltpoll\n", "x\n", 0), (None, "0\n", 0),  # unreadable: off
])
def test_auto_polls_only_where_the_guest_does_not(tmp_path, driver, halt_poll_ns, expected):
    d, h = tmp_path / "driver", tmp_path / "ns"
    if driver is not None:
        d.write_text(driver)
    h.write_text(halt_poll_ns)
    assert idle_poll.auto_us(str(d), str(h)) == expected


def test_a_worker_pinned_after_its_start_stops_polling(monkeypatch):
    monkeypatch.setattr(admission, "ACTIVE", None)
    monkeypatch.setattr(idle_poll, "RECHECK_S", 0.0)  # judge the affinity at every answer
    cpus = [2]
    poll = IdlePoll(0.002, workers=1, cpus=lambda: cpus[0])
    assert _run_for(poll, 0.01)[0] > 0
    cpus[0] = 1  # taskset -p onto one core
    ticks = poll.ticks
    assert _run_for(poll, 0.01)[0] == ticks  # no new ticks
    cpus[0] = 2
    assert _run_for(poll, 0.01)[0] > ticks


@pytest.mark.parametrize("split", [False, True])  # one chunk: answered inline; head then body: the ASGI way
def test_each_answer_starts_a_poll(app, monkeypatch, split):  # noqa: F811
    from service.api.protocol import _Guards

    calls = []
    head, raw = request("/classify", json.dumps({"text": TEXT}).encode())

    async def run():
        protocol(app)  # the first protocol of the process sets the class's IdlePoll; the spy replaces it
        monkeypatch.setattr(_Guards, "idle_poll", type("Spy", (), {"answered": lambda self, loop: calls.append(loop)})())
        p, t = protocol(app)
        if split:
            p.data_received(head)
            await asyncio.sleep(0)
            p.data_received(raw)
        else:
            p.data_received(head + raw)
        await settle(t)
        return b"".join(t.out)

    assert asyncio.run(run()).startswith(b"HTTP/1.1 200 OK")
    assert len(calls) == 1
