"""Whole small POSTs answered by the uvicorn protocol itself (service/api/protocol.py, `_answer_inline`):
the same bytes the ASGI path writes (timings aside), only for the requests that path would take as they
are; every other request goes on to uvicorn's parser and the app untouched. The protocol is driven
directly (a fake transport): a request in one chunk may be answered inline, the same request in two
chunks (head, then body) always takes uvicorn's way, which is what it is compared with.
(Models named fpp-*: the Prometheus collectors are process-wide.)"""
import asyncio
import json

import pytest
import uvicorn
from fastapi.testclient import TestClient
from uvicorn.server import ServerState

from conftest import MemoryTransport, without_timings
from random_model import make_random_classifier, make_random_reader
from service.api.protocol import GuardedH11Protocol, GuardedHttpToolsProtocol
from service.config import Settings
from service.registry import Registry

TEXT = "the film was not very good but the acting was great ."


@pytest.fixture(scope="module")
def app(tmp_path_factory):
    from service.api.app import create_app

    root = tmp_path_factory.mktemp("fast-protocol-models")
    make_random_classifier(root / "fpp-skim", d_small=4, seed=3)
    make_random_reader(root / "fpp-reader", d_small=3, seed=1)
    registry = Registry(root, "reference", "fpp-skim").load_all()
    app = create_app(Settings(models_dir=str(root), max_tokens=40, max_text_bytes=300, inline_max_bytes=200),
                     registry)
    with TestClient(app):  # builds the middleware stack: this app's fast path and admission are the active ones
        yield app


def protocol(app, cls=GuardedHttpToolsProtocol, keep_alive=5.0):
    loop = asyncio.get_event_loop()
    config = uvicorn.Config(app, access_log=False, log_level="warning", timeout_keep_alive=keep_alive)
    config.load()
    state = ServerState()
    state.default_headers = [(b"date", b"Thu, 03 Dec 2026 00:00:00 GMT"), (b"server", b"uvicorn")]
    p = cls(config, state, {}, loop)
    t = MemoryTransport()
    p.connection_made(t)
    return p, t


def request(path: str, body: bytes, headers: dict | None = None, version: bytes = b"1.1") -> tuple[bytes, bytes]:
    head = {"Host": "x", "Content-Type": "application/json", "Content-Length": str(len(body)), **(headers or {})}
    lines = [b"POST %s HTTP/%s" % (path.encode(), version)] + [f"{k}: {v}".encode() for k, v in head.items() if v is not None]
    return b"\r\n".join(lines) + b"\r\n\r\n", body


async def settle(t: MemoryTransport, p=None):
    for _ in range(200):
        if t.out and b"\r\n\r\n" in b"".join(t.out):
            reply = b"".join(t.out)
            head, _, body = reply.partition(b"\r\n\r\n")
            length = [int(line.split(b":")[1]) for line in head.split(b"\r\n") if line.lower().startswith(b"content-length")]
            if not length or len(body) >= length[0]:
                return
        await asyncio.sleep(0.005)



def parse(reply: bytes):
    if reply.startswith(b"HTTP/1.1 100 Continue\r\n\r\n"):
        reply = reply[len(b"HTTP/1.1 100 Continue\r\n\r\n"):]
    head, _, body = reply.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    headers = sorted(line.lower() for line in lines[1:])
    length = [int(h.split(b":")[1]) for h in headers if h.startswith(b"content-length:")]
    body = body[:length[0]] if length else body  # the first response only
    try:
        doc = json.loads(body)
    except ValueError:
        doc = body
    if isinstance(doc, dict):
        doc = without_timings(doc)
        headers = [h for h in headers if not h.startswith(b"content-length")]  # timings differ in length
    return lines[0], headers, doc


def answer(app, head: bytes, body: bytes, split: bool, cls=GuardedHttpToolsProtocol):
    """(reply, answered inline) for one request on a fresh connection."""
    async def run():
        p, t = protocol(app, cls)
        answered = []
        original = p._answer_inline

        def spy(*args):
            answered.append(original(*args))
            return answered[-1]

        p._answer_inline = spy
        if split:
            p.data_received(head)
            await asyncio.sleep(0)
            p.data_received(body)
        else:
            p.data_received(head + body)
        inline = answered == [True]
        assert not inline or t.out  # written before the loop ran anything
        await settle(t)
        return b"".join(t.out), inline

    return asyncio.run(run())


TAKEN = [
    ("/classify", {"text": TEXT}, {}),
    ("/classify?threshold=0.3", {"text": TEXT}, {}),
    ("/classify?threshold=1&model=fpp-skim&explain=true", {"text": TEXT}, {}),
    ("/classify?budget=0.5", {"texts": [TEXT, "great acting"]}, {}),
    ("/classify", {"text": TEXT}, {"Connection": "keep-alive", "Content-Type": "application/json; charset=utf-8"}),
    ("/classify", {"text": TEXT}, {"Content-Type": "application/vnd.api+json", "X-Other": "a\tb"}),
    ("/qa", {"context": "the plot was awful and boring !", "question": "what was awful ?"}, {}),
]


@pytest.mark.parametrize("cls", [GuardedHttpToolsProtocol, GuardedH11Protocol])
@pytest.mark.parametrize("path,body,headers", TAKEN)
def test_taken_requests_are_answered_inline_as_uvicorn_would(app, cls, path, body, headers):
    head, raw = request(path, json.dumps(body).encode(), headers)
    inline, was_inline = answer(app, head, raw, split=False, cls=cls)
    routed, routed_inline = answer(app, head, raw, split=True, cls=cls)
    assert was_inline and not routed_inline
    assert inline.startswith(b"HTTP/1.1 200 OK\r\n"), inline[:300]
    assert parse(inline) == parse(routed)


NOT_TAKEN = [
    ("/classify", b'{"text": "good"}', {"Connection": "close"}, b"1.1"),
    ("/classify", b'{"text": "good"}', {}, b"1.0"),
    ("/classify", b'{"text": "good"}', {"Expect": "100-continue"}, b"1.1"),
    ("/classify", b'{"text": "good"}', {"Content-Type": "text/plain"}, b"1.1"),
    ("/classify", b'{"text": "good"}', {"Content-Type": "application/json; charset=latin-1"}, b"1.1"),
    ("/classify", b'{"text": "good"}', {"Content-Type": None}, b"1.1"),
    ("/classify?threshold=2", b'{"text": "good"}', {}, b"1.1"),
    ("/classify?threshold=0.3&threshold=0.4", b'{"text": "good"}', {}, b"1.1"),
    ("/classify?model=nope", b'{"text": "good"}', {}, b"1.1"),
    ("/classify?threshold=0.3#frag", b'{"text": "good"}', {}, b"1.1"),
    ("/classify", b'{"text": "\\ud800 good"}', {}, b"1.1"),  # a lone surrogate: orjson refuses, the route's 400
    ("/classify", b'{"text": 123456789012345678901234567890}', {}, b"1.1"),  # orjson reads a float: 422 either way
    ("/classify", b'{"text": NaN}', {}, b"1.1"),
    ("/classify", b'{"texts": ' + b"[" * 1100 + b"]" * 1100 + b"}", {}, b"1.1"),
    ("/classify", b'{"text": ""}', {}, b"1.1"),
    ("/classify", b'{"text": "good", "texts": ["a"]}', {}, b"1.1"),
    ("/classify", b'{"text": "good"', {}, b"1.1"),
    ("/classify", b'["good"]', {}, b"1.1"),
    ("/classify", json.dumps({"text": "good " * 60}).encode(), {}, b"1.1"),  # over the text limit
    ("/classify", json.dumps({"text": " ".join(["good"] * 45)}).encode(), {}, b"1.1"),  # over max_tokens
    ("/qa", b'{"text": "good"}', {}, b"1.1"),
    ("/models", b'{"text": "good"}', {}, b"1.1"),
    ("/classify", b'{"text": "good"}', {"X-Bad": "a\x01b"}, b"1.1"),
    ("/classify", b'{"text": "good"}', {"Bad Name": "x"}, b"1.1"),
]


@pytest.mark.parametrize("path,body,headers,version", NOT_TAKEN)
def test_other_requests_take_uvicorns_way(app, path, body, headers, version):
    head, raw = request(path, body, headers, version)
    whole, was_inline = answer(app, head, raw, split=False)
    routed, _ = answer(app, head, raw, split=True)
    assert not was_inline
    assert parse(whole) == parse(routed)


@pytest.mark.parametrize("raw", [b'\xef\xbb\xbf{"text": "good"}', b'{"text": "good", "text": "bad film"}',
                                 b'{"text": "good"}  \n', b'{"text": "\\u00e9t\\u00e9 ."}'])
def test_raw_bodies_taken_inline_read_as_the_route_reads_them(app, raw):
    head, body = request("/classify?threshold=0.3", raw)
    whole, was_inline = answer(app, head, body, split=False)
    routed, _ = answer(app, head, body, split=True)
    assert was_inline and parse(whole) == parse(routed)


def test_a_body_over_the_inline_size_takes_the_pool_way(app):
    body = json.dumps({"text": " ".join(["wonderfully"] * 20)}).encode()
    assert 200 < len(body) <= 300
    head, raw = request("/classify", body)
    reply, was_inline = answer(app, head, raw, split=False)
    assert not was_inline and reply.startswith(b"HTTP/1.1 200 OK")


def test_pipelined_requests_take_uvicorns_way(app):
    head, raw = request("/classify", b'{"text": "good"}')

    async def run():
        p, t = protocol(app)
        p.data_received(head + raw + head + raw)
        assert not t.out
        for _ in range(200):
            if b"".join(t.out).count(b"HTTP/1.1 200") == 2:
                break
            await asyncio.sleep(0.005)
        return b"".join(t.out)

    assert asyncio.run(run()).count(b"HTTP/1.1 200 OK") == 2


def test_inline_answers_count_in_request_metrics(app):
    head, raw = request("/classify?model=fpp-skim", json.dumps({"text": TEXT}).encode())
    for _ in range(3):
        assert answer(app, head, raw, split=False)[1]
    with TestClient(app) as client:
        text = client.get("/metrics").text
    line = [s for s in text.splitlines() if s.startswith("skimserve_request_duration_seconds_count{")
            and 'endpoint="/classify"' in s and 'model="fpp-skim"' in s and 'status="200"' in s]
    assert line and float(line[0].rsplit(" ", 1)[1]) >= 3


def test_keep_alive_after_inline_answers(app):
    """The connection stays open between requests and is closed after timeout_keep_alive idle, with one
    timer per idle stretch; a request that takes uvicorn's way after inline ones is served normally."""
    head, raw = request("/classify", json.dumps({"text": TEXT}).encode())

    async def run():
        p, t = protocol(app, keep_alive=0.2)
        for _ in range(3):
            p.data_received(head + raw)
            await asyncio.sleep(0.1)
        assert not t.closing and b"".join(t.out).count(b"HTTP/1.1 200 OK") == 3
        t.out.clear()
        p.data_received(head)  # split: uvicorn's way, its own keep-alive timer afterwards
        await asyncio.sleep(0.01)
        p.data_received(raw)
        await settle(t)
        assert b"".join(t.out).startswith(b"HTTP/1.1 200 OK") and not t.closing
        p.data_received(head + raw)  # inline again after uvicorn's answer
        assert b"".join(t.out).count(b"HTTP/1.1 200 OK") == 2
        await asyncio.sleep(0.35)
        assert t.closing  # idle past the keep-alive timeout

    asyncio.run(run())


def test_full_pool_is_not_answered_inline(app, monkeypatch):
    """With the pool full the protocol sheds (503; HTTP/1.1, so the connection is kept) before an inline
    answer is considered."""
    pool = app.state.pool
    monkeypatch.setattr(type(pool), "admitted", property(lambda self: self.threads + self.max_queue))
    monkeypatch.setattr(type(pool), "full", property(lambda self: True))
    head, raw = request("/classify", json.dumps({"text": TEXT}).encode())
    reply, was_inline = answer(app, head, raw, split=False)
    assert not was_inline and reply.startswith(b"HTTP/1.1 503") and b"connection: close" not in reply
    assert b"server: uvicorn" not in reply  # the protocol's own 503


def test_requests_waiting_unread_count_in_flight_at_a_scrape(app):
    """Requests answered inline are never in flight for a scrape; under load they wait unread in their
    connections' sockets, and those are what the in-flight gauge shows while a scrape reads it."""
    import socket

    from service import metrics
    from service.api import protocol as protocol_module

    class SocketTransport(MemoryTransport):
        def __init__(self, sock):
            super().__init__()
            self.sock = sock

        def get_extra_info(self, key, default=None):
            return self.sock if key == "socket" else super().get_extra_info(key, default)

    def inflight():
        text = metrics.render()[0].decode()
        return float([line for line in text.splitlines() if line.startswith("skimserve_inflight_requests ")][0].split()[1])

    async def run():
        pairs = [socket.socketpair() for _ in range(3)]
        try:
            protocols = []
            for server_side, _ in pairs:
                p, _ = protocol(app)
                p.connection_lost(None)  # the fake transport's connection: replaced by one with a socket
                t = SocketTransport(server_side)
                p.connection_made(t)
                protocols.append(p)
            before = inflight()
            assert protocol_module.waiting_requests() == 0
            head, raw = request("/classify", json.dumps({"text": TEXT}).encode())
            pairs[0][1].sendall(head + raw)  # sent, not yet read by the server: waiting
            pairs[2][1].sendall(head)
            assert protocol_module.waiting_requests() == 2
            assert inflight() == before + 2
            pairs[0][0].recv(65536)  # read (and answered): no longer waiting
            assert protocol_module.waiting_requests() == 1 and inflight() == before + 1
        finally:
            for a, b in pairs:
                a.close()
                b.close()

    asyncio.run(run())
