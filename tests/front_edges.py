"""Edge cases of the Cloud Run front's HTTP layer, over real sockets (run by test_front_http.py).

The instance here is a scripted HTTP peer, not gunicorn: gunicorn never sends an interim 100,
a close-delimited body or a dropped connection on demand, and the front must still handle
them. The instance registry is reduced to that one peer for the same reason.
"""

import asyncio
import socket
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import uvloop

from opslib.localcloud import tokens
from opslib.localcloud.cloud import Cloud
from opslib.localcloud.logging.store import LogStore
from opslib.localcloud.run import front as run_front

SEEN: list[tuple[bytes, bytes]] = []  # (head, body) the instance received
IDLE_CLOSE = {"on": False}


async def instance(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while True:
            head = await reader.readuntil(b"\r\n\r\n")
            length = 0
            for line in head.split(b"\r\n"):
                if line.lower().startswith(b"content-length:"):
                    length = int(line.split(b":")[1])
            body = await reader.readexactly(length)
            SEEN.append((head, body))
            path = head.split(b" ")[1]
            if path == b"/len":
                out = str(len(body)).encode()
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nX-Up: 1\r\n")
                await asyncio.sleep(0.001)
                writer.write(b"Content-Length: %d\r\n\r\n" % len(out))
                await asyncio.sleep(0.001)
                writer.write(out)
            elif path == b"/chunked":
                writer.write(
                    b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                    b"5\r\nhello\r\n6;x=y\r\n world\r\n0\r\nTrailer: t\r\n\r\n"
                )
            elif path == b"/close":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil close")
                await writer.drain()
                writer.close()
                return
            elif path == b"/204":
                writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            elif path == b"/head":
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n")
            elif path == b"/interim":
                writer.write(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 201 Created\r\n")
                writer.write(b"Content-Length: 2\r\n\r\nok")
            elif path == b"/slow":
                await asyncio.sleep(2.5)
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 4\r\n\r\nlate")
            elif path == b"/drop":
                writer.close()
                return
            elif path == b"/big":
                out = b"x" * 5_000_000
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % len(out) + out)
            else:
                writer.write(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\n\r\n")
            await writer.drain()
            if IDLE_CLOSE["on"]:
                await asyncio.sleep(0.05)
                writer.close()  # as gunicorn does with idle keep-alive connections
                return
    except (asyncio.IncompleteReadError, ConnectionError):
        writer.close()


def exchange(port: int, data: bytes, shut: bool = False, wait: float = 5.0) -> bytes:
    """Send raw bytes; read until the server closes or `wait` passes without bytes."""
    sock = socket.create_connection(("127.0.0.1", port))
    sock.sendall(data)
    if shut:
        sock.shutdown(socket.SHUT_WR)
    sock.settimeout(wait)
    out = b""
    try:
        while chunk := sock.recv(1 << 20):
            out += chunk
    except TimeoutError:
        pass
    sock.close()
    return out


async def main() -> None:
    loop = asyncio.get_running_loop()
    up = await asyncio.start_server(instance, "127.0.0.1", 0)
    up_port = up.sockets[0].getsockname()[1]
    cloud = Cloud(Path(tempfile.mkdtemp()))
    cloud.logs = LogStore(cloud)
    name = "projects/p/locations/l/services/s"
    rev = name + "/revisions/s-00001-abc"
    sa = "sa@p.iam.gserviceaccount.com"
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    service = {
        "name": name,
        "uri": f"http://127.0.0.1:{port}",
        "_port": port,
        "etag": "1",
        "_iam": {"bindings": [{"role": "roles/run.invoker", "members": [f"serviceAccount:{sa}"]}]},
        "latestReadyRevision": rev,
        "traffic": [{"type": "TRAFFIC_TARGET_ALLOCATION_TYPE_LATEST", "percent": 100}],
    }
    revision = {"name": rev, "timeout": "1s"}
    inst = SimpleNamespace(
        port=up_port,
        process=SimpleNamespace(returncode=None),
        active=0,
        last_used=0,
        instance_id="0" * 64,
    )

    async def ensure(revision: dict) -> tuple:
        return inst, False

    run = SimpleNamespace(
        data={"services": {name: service}, "revisions": {rev: revision}},
        instances=SimpleNamespace(running={rev: inst}, ensure=ensure),
    )
    front = run_front.Front(cloud, run)
    await front.ensure(service)
    tok = tokens.mint(cloud, sa, service["uri"])
    auth = f"Authorization: Bearer {tok}\r\n".encode()
    failures = []

    def check(label: str, ok: bool, detail: object = "") -> None:
        print(("ok   " if ok else "FAIL ") + label + ("" if ok else f": {detail!r}"[:600]))
        if not ok:
            failures.append(label)

    async def ex(data: bytes, shut: bool = False, wait: float = 3.0) -> bytes:
        return await loop.run_in_executor(None, exchange, port, data, shut, wait)

    def req(path: str, extra: bytes = b"", method: str = "GET", version: str = "HTTP/1.1") -> bytes:
        return f"{method} {path} {version}\r\nHost: x\r\n".encode() + auth + extra

    out = await ex(req("/len", b"Connection: close\r\n\r\n"))
    check(
        "GET 200 with close", out.startswith(b"HTTP/1.1 200 OK") and out.endswith(b"\r\n\r\n0"), out
    )
    check("Connection: close sent", b"Connection: close\r\n" in out, out)
    check("X-Up forwarded back", b"X-Up: 1" in out, out)
    head = SEEN[-1][0]
    check(
        "trace/forwarded headers reach instance; hop-by-hop dropped",
        b"X-Cloud-Trace-Context: " in head
        and b"X-Forwarded-Proto: https" in head
        and b"X-Forwarded-For: 127.0.0.1" in head
        and b"Connection" not in head
        and head.count(b"Host:") == 1,
        head,
    )
    out = await ex(b"GET /len HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
    check("no token 403", out.startswith(b"HTTP/1.1 403 Forbidden") and b"/len" in out, out)
    out = await ex(b"GET /len HTTP/1.1\r\nAuthorization: Bearer nope\r\nConnection: close\r\n\r\n")
    check("bad token 401", out.startswith(b"HTTP/1.1 401 Unauthorized"), out)
    out = await ex(
        req("/len", b"Content-Length: 11\r\nConnection: close\r\n\r\nhello world", "POST")
    )
    check("POST body", out.endswith(b"\r\n\r\n11") and SEEN[-1][1] == b"hello world", out)

    def chunked_client() -> bytes:
        sock = socket.create_connection(("127.0.0.1", port))
        sock.sendall(
            req("/len", b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n", "POST")
        )
        for piece in (b"5\r\nhel", b"lo\r\n", b"3;ext=1\r\nabc\r\n", b"0\r\n", b"X-T: 1\r\n\r\n"):
            time.sleep(0.02)
            sock.sendall(piece)
        sock.settimeout(3)
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
        return data

    out = await loop.run_in_executor(None, chunked_client)
    check(
        "chunked request body",
        out.endswith(b"\r\n\r\n8") and SEEN[-1][1] == b"helloabc",
        (out, SEEN[-1]),
    )
    out = await ex(
        req(
            "/len",
            b"Expect: 100-continue\r\nContent-Length: 2\r\nConnection: close\r\n\r\nhi",
            "POST",
        )
    )
    check("100-continue", out.startswith(b"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK"), out)
    out = await ex(req("/len", b"\r\n", version="HTTP/1.0"))
    check("HTTP/1.0 closes", out.startswith(b"HTTP/1.1 200") and b"Connection: close" in out, out)
    out = await ex(
        req("/len", b"\r\n") + req("/chunked", b"\r\n") + req("/len", b"Connection: close\r\n\r\n")
    )
    check(
        "pipelined, in order",
        out.count(b"HTTP/1.1 200 OK") == 3 and out.index(b"hello world") > 0 and out.endswith(b"0"),
        out,
    )
    for length in (b"+5", b"1_0", b"-1", b"x"):
        out = await ex(req("/len", b"Content-Length: " + length + b"\r\n\r\nhello", "POST"))
        check(f"Content-Length {length!r} is 400", out.startswith(b"HTTP/1.1 400"), out)
    out = await ex(b"NONSENSE\r\n\r\n")
    check(
        "bad request line 400",
        out.startswith(b"HTTP/1.1 400 Bad Request") and b"bad request line" in out,
        out,
    )
    out = await ex(b"GET /len HTTP/1.1\r\nHost: x", shut=True)
    check(
        "incomplete head 400", b"400 Bad Request" in out and b"incomplete request head" in out, out
    )
    out = await ex(b"GET /len HTTP/1.1\r\nX: " + b"a" * 70000, wait=3)
    check("head too large 400", b"400 Bad Request" in out and b"too large" in out, out[:200])
    out = await ex(req("/len", b"\r\n"), shut=True)
    check("half-closed client still answered", out.startswith(b"HTTP/1.1 200 OK"), out)
    out = await ex(b"\r\n", shut=True, wait=2)
    check("blank then EOF: just closed", out == b"", out)
    out = await ex(req("/chunked", b"Connection: close\r\n\r\n"))
    check(
        "upstream chunked",
        out.endswith(b"Content-Length: 11\r\nConnection: close\r\n\r\nhello world"),
        out,
    )
    out = await ex(req("/close", b"Connection: close\r\n\r\n"))
    check("upstream close-delimited", out.endswith(b"\r\n\r\nuntil close"), out)
    out = await ex(req("/204", b"Connection: close\r\n\r\n"))
    check("upstream 204", out.startswith(b"HTTP/1.1 204 No Content"), out)
    out = await ex(req("/head", b"Connection: close\r\n\r\n", "HEAD"), wait=3)
    check("HEAD: no body awaited", out.startswith(b"HTTP/1.1 200 OK"), out)
    out = await ex(req("/interim", b"Connection: close\r\n\r\n"))
    check(
        "upstream interim 100 skipped",
        out.startswith(b"HTTP/1.1 201 Created") and out.endswith(b"ok"),
        out,
    )
    started = time.monotonic()
    out = await ex(req("/slow", b"Connection: close\r\n\r\n"))
    took = time.monotonic() - started
    check(
        "timeout 504",
        out.startswith(b"HTTP/1.1 504")
        and out.endswith(b"upstream request timeout")
        and took < 1.6,
        (out, took),
    )
    out = await ex(req("/drop", b"Connection: close\r\n\r\n"))
    check("dropped on fresh connection: 503", out.startswith(b"HTTP/1.1 503"), out)
    # A worker that dies mid-request also closes without a byte: a POST (the job may have
    # run) is never sent again; a GET is, once.
    for method, expected in (("POST", 1), ("GET", 2)):
        await ex(req("/len", b"Connection: close\r\n\r\n"))  # leaves a pooled connection
        before = len(SEEN)
        out = await ex(req("/drop", b"Content-Length: 0\r\nConnection: close\r\n\r\n", method))
        sent = len(SEEN) - before
        check(
            f"{method} lost on a pooled connection: sent {expected}x, 503",
            (out.startswith(b"HTTP/1.1 503") and sent == expected),
            (out, sent),
        )
    out = await ex(req("/big", b"Connection: close\r\n\r\n"), wait=5)
    check("5 MB response", out.endswith(b"x" * 1000) and out.count(b"x") >= 5_000_000, len(out))
    out = await ex(req("/big", b"\r\n") + req("/len", b"Connection: close\r\n\r\n"), wait=5)
    check(
        "5 MB response then a pipelined request",
        out.count(b"HTTP/1.1 200 OK") == 2 and out.endswith(b"\r\n\r\n0"),
        out[-200:],
    )
    big = b"y" * 5_000_000
    out = await ex(
        req("/len", b"Content-Length: %d\r\nConnection: close\r\n\r\n" % len(big), "POST") + big,
        wait=5,
    )
    check("5 MB request", out.endswith(b"5000000") and SEEN[-1][1] == big, out[-100:])
    # Stale pooled connections: the instance closes each after 50 ms idle.
    IDLE_CLOSE["on"] = True
    statuses = []
    for _ in range(4):
        out = await ex(req("/len", b"Connection: close\r\n\r\n"))
        statuses.append(out[:12])
        await asyncio.sleep(0.2)
    check("idle-closed pooled connections never 503", statuses == [b"HTTP/1.1 200"] * 4, statuses)
    IDLE_CLOSE["on"] = False

    # Keep-alive on one connection, 50 requests.
    def keepalive() -> list[int]:
        import http.client

        conn = http.client.HTTPConnection("127.0.0.1", port)
        got = []
        for i in range(50):
            conn.request("POST", "/len", body=b"z" * i, headers={"Authorization": f"Bearer {tok}"})
            r = conn.getresponse()
            got.append(int(r.read()) if r.status == 200 else -r.status)
        conn.close()
        return got

    got = await loop.run_in_executor(None, keepalive)
    check("keep-alive 50 requests", got == list(range(50)), got)
    check("no instance left active", inst.active == 0, inst.active)
    await asyncio.sleep(0.05)
    entries = [
        e for e in cloud.logs.entries if e["logName"].endswith("run.googleapis.com%2Frequests")
    ]
    statuses = [e["httpRequest"]["status"] for e in entries]
    check(
        "every answered request logged",
        len(entries) >= 60 and 504 in statuses and 403 in statuses and 401 in statuses,
        statuses,
    )
    e504 = next(e for e in entries if e["httpRequest"]["status"] == 504)
    check(
        "504 entry",
        e504["severity"] == "ERROR"
        and "maximum request timeout" in e504["textPayload"]
        and e504["httpRequest"]["responseSize"] == "24",
        e504,
    )
    e200 = next(e for e in entries if e["httpRequest"]["status"] == 200)
    check(
        "200 entry fields",
        e200["trace"].startswith("projects/p/traces/")
        and len(e200["trace"].rsplit("/", 1)[1]) == 32
        and e200["httpRequest"]["latency"].endswith("s")
        and len(e200["insertId"]) == 20
        and e200["resource"]["labels"]["revision_name"] == "s-00001-abc",
        e200,
    )
    await front.close()
    up.close()
    print("FAILURES:", failures)
    sys.exit(1 if failures else 0)


if __name__ == "__main__":
    uvloop.run(main())
