"""The transport of ``regmon check`` with few references (monitor/registry/streams.py):
the keep-alive cases the fault table does not reach. The fault table itself runs on it
in test_registry_faults.py."""

from __future__ import annotations

import asyncio

import httpx
from support.faults import Fault, WireRequest, WireServer, http_answer

from monitor.registry.streams import stream_transport

OK = http_answer(200, {"Content-Type": "application/json"}, b"{}")
HEAD_OK = http_answer(200, {"Content-Type": "application/json", "Content-Length": "2"})


def get_all(server: WireServer, paths: list[str], method: str = "GET") -> list[httpx.Response]:
    async def main() -> list[httpx.Response]:
        async with httpx.AsyncClient(transport=stream_transport(False), timeout=5) as client:
            answers = []
            for path in paths:
                answer = await client.request(method, f"http://127.0.0.1:{server.port}{path}")
                answers.append(answer)
            return answers

    return asyncio.run(main())


def test_one_connection_for_answers_read_to_the_end_or_without_body() -> None:
    with WireServer(lambda request: HEAD_OK if request.method == "HEAD" else OK) as server:
        answers = get_all(server, ["/v2/", "/v2/a/manifests/b", "/v2/c/manifests/d"])
        heads = get_all(server, ["/v2/x/manifests/1", "/v2/x/manifests/2"], method="HEAD")
        requests = server.requests
    assert [(a.status_code, a.content) for a in answers] == [(200, b"{}")] * 3
    assert [(a.status_code, a.content) for a in heads] == [(200, b"")] * 2
    assert [r.connection for r in requests] == [1, 1, 1, 2, 2]


def test_connection_close_is_not_reused() -> None:
    closing = http_answer(200, {}, b"{}", keep_alive=False)
    with WireServer(lambda request: closing) as server:
        answers = get_all(server, ["/v2/", "/v2/"])
        requests = server.requests
    assert [a.status_code for a in answers] == [200, 200]
    assert [r.connection for r in requests] == [1, 2]


def test_a_kept_connection_the_server_closed_is_asked_again_on_a_new_one() -> None:
    """The server closes the kept connection on reading the next request, without an
    answer (as one whose keep-alive timeout passed just then): the request goes out
    again on a new connection, once."""

    def respond(request: WireRequest) -> bytes | Fault:
        if request.connection == 1 and request.path == "/second":
            return Fault.CLOSE
        return OK

    with WireServer(respond) as server:
        answers = get_all(server, ["/first", "/second"])
        requests = server.requests
    assert [a.status_code for a in answers] == [200, 200]
    assert [(r.connection, r.path) for r in requests] == [
        (1, "/first"),
        (1, "/second"),
        (2, "/second"),
    ]


def test_informational_answers_are_skipped() -> None:
    answer = b"HTTP/1.1 100 Continue\r\n\r\n" + OK
    with WireServer(lambda request: answer) as server:
        (response,) = get_all(server, ["/v2/"])
    assert (response.status_code, response.content) == (200, b"{}")
