"""Attacks below the protocol, on raw loopback sockets: big and slow bodies, slow request heads,
answers never read, many bodies at once. Torch-free.

Each function sends a bounded amount for a bounded time and returns what the server answered:
the status of its first response line (0 for none), the response's message, and how far the
client got. Used by `bench.attack` (`make attack`) and tests/api/test_hostile.py.
"""

from __future__ import annotations

import contextlib
import json
import select
import socket
import threading
import time
from dataclasses import dataclass

CHUNK = 1 << 20


@dataclass
class Answer:
    status: int  # 0: the server closed or stayed silent without answering
    message: str
    sent: int  # bytes of body the client got out before the answer
    seconds: float


def _connect(addr: tuple[str, int], receive_buffer: int | None = None) -> socket.socket:
    sock = socket.socket()
    if receive_buffer:  # before connecting, so the TCP window starts small
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.connect(addr)
    return sock


def read_answer(sock: socket.socket, timeout: float) -> tuple[int, str]:
    """(status, message) of the response on `sock`, read until its body is in or `timeout`."""
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data or len(data.split(b"\r\n\r\n", 1)[1]) < _length(data):
            part = sock.recv(65536)
            if not part:
                break
            data += part
    except OSError:  # reset or timed out: what came so far is the answer
        pass
    if not data.startswith(b"HTTP/1.1 "):
        return 0, "(no answer)" if not data else data[:60].decode(errors="replace")
    head, _, body = data.partition(b"\r\n\r\n")
    try:
        message = json.loads(body).get("error", "")
    except ValueError:
        message = body[:200].decode(errors="replace")
    return int(head[9:12]), message


def _length(data: bytes) -> int:
    for line in data.split(b"\r\n\r\n", 1)[0].split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            return int(line.split(b":")[1])
    return 0


def send_body(
    addr: tuple[str, int],
    path: str,
    body: bytes | int,
    headers: dict | None = None,
    chunked: bool = False,
    timeout: float = 60,
) -> Answer:
    """POST `body` (or that many zero bytes) to `path`, declared in Content-Length or chunked,
    a MiB at a time, stopping as soon as the server answers (as a careful client does: the
    server answers a body over its limit before reading it)."""
    start = time.monotonic()
    sock = _connect(addr)
    size = body if isinstance(body, int) else len(body)
    framing = "Transfer-Encoding: chunked" if chunked else f"Content-Length: {size}"
    head = "".join(f"{k}: {v}\r\n" for k, v in (headers or {}).items())
    sock.sendall(f"POST {path} HTTP/1.1\r\nHost: x\r\n{framing}\r\n{head}\r\n".encode())
    zeros, sent = b"0" * CHUNK, 0
    try:
        while sent < size and time.monotonic() - start < timeout:
            if select.select([sock], [], [], 0)[0]:
                break  # the server has answered (or closed)
            end = min(size, sent + CHUNK)
            piece = zeros[: end - sent] if isinstance(body, int) else body[sent:end]
            sock.sendall(b"%x\r\n%s\r\n" % (len(piece), piece) if chunked else piece)
            sent = end
        if chunked and sent == size:
            sock.sendall(b"0\r\n\r\n")
    except OSError:  # the server closed while the client still sent
        pass
    status, message = read_answer(sock, 10)
    sock.close()
    return Answer(status, message, sent, time.monotonic() - start)


def slow_head(addr: tuple[str, int], timeout: float) -> Answer:
    """Send half a request head, then nothing: the server must answer 408 and close."""
    start = time.monotonic()
    sock = _connect(addr)
    sock.sendall(b"POST /v2/models/x/infer HTTP/1.1\r\nHost: x\r\n")
    status, message = read_answer(sock, timeout)
    sock.close()
    return Answer(status, message, 0, time.monotonic() - start)


def slow_heads(addr: tuple[str, int], clients: int, timeout: float) -> list[Answer]:
    """`clients` slow heads at once, each on its own thread."""
    answers: list[Answer] = [Answer(0, "", 0, 0.0)] * clients

    def run(i: int) -> None:
        answers[i] = slow_head(addr, timeout)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return answers


def silent(addr: tuple[str, int], timeout: float) -> Answer:
    """Connect and send nothing: how long until the server closes (message "closed"), reading
    whatever it sends meanwhile (a gRPC server sends its HTTP/2 settings, then gives up)."""
    start = time.monotonic()
    sock = _connect(addr)
    sock.settimeout(timeout)
    message = "still open"
    try:
        while sock.recv(65536):
            pass
        message = "closed"
    except ConnectionResetError:
        message = "closed"
    except OSError:  # timed out: the server kept it
        pass
    sock.close()
    return Answer(0, message, 0, time.monotonic() - start)


def big_head(addr: tuple[str, int], size: int) -> Answer:
    """A request with one header of `size` bytes."""
    start = time.monotonic()
    sock = _connect(addr)
    with contextlib.suppress(OSError):  # the server may close before it is all sent
        sock.sendall(b"GET /v2 HTTP/1.1\r\nHost: x\r\nX-Big: " + b"a" * size + b"\r\n\r\n")
    status, message = read_answer(sock, 10)
    sock.close()
    return Answer(status, message, size, time.monotonic() - start)


def slow_body(addr: tuple[str, int], path: str, timeout: float) -> Answer:
    """Declare a body of 1,000 bytes and send 2 of them."""
    start = time.monotonic()
    sock = _connect(addr)
    sock.sendall(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\n{}" % path.encode())
    status, message = read_answer(sock, timeout)
    sock.close()
    return Answer(status, message, 2, time.monotonic() - start)


def unread_answer(
    addr: tuple[str, int], path: str, body: bytes, headers: dict, wait: float
) -> Answer:
    """Send a request whose answer is large, read none of it for `wait` seconds, then read what
    is left: a server that gave up on the client has closed the connection by then."""
    sock = _connect(addr, receive_buffer=4096)
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    request = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body)}\r\n{head}\r\n"
    sock.sendall(request.encode() + body)
    time.sleep(wait)
    sock.settimeout(5)
    received, length, closed = 0, 0, False
    try:
        while True:
            part = sock.recv(1 << 20)
            if not part:
                closed = True
                break
            if not length and b"\r\n\r\n" in part:
                length = _length(part)
            received += len(part)
    except ConnectionResetError:
        closed = True
    except OSError:  # still open, nothing more coming: the server kept waiting
        pass
    sock.close()
    state = "dropped" if closed and received < length else "kept"
    return Answer(0, f"{state}: read {received:,} of {length:,} bytes", len(body), wait)


def many_bodies(
    addr: tuple[str, int], path: str, clients: int, size: int, wait: float = 5
) -> list[Answer]:
    """`clients` connections each declaring a body of `size` bytes and sending one MiB of it;
    what each got back within `wait` seconds (0: let in, the server waits for its body)."""
    socks, answers = [], []
    for _ in range(clients):
        sock = _connect(addr)
        head = b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n" % (path.encode(), size)
        sock.sendall(head)
        sock.sendall(b"0" * CHUNK)
        socks.append(sock)
    deadline = time.monotonic() + wait
    waiting = list(socks)
    while waiting and time.monotonic() < deadline:  # those refused answer at once
        ready = select.select(waiting, [], [], 0.2)[0]
        waiting = [s for s in waiting if s not in ready]
    for sock in socks:
        if sock not in waiting:
            answers.append(Answer(*read_answer(sock, 5), CHUNK, 0.0))
        else:
            answers.append(Answer(0, "let in", CHUNK, 0.0))
    for sock in socks:
        sock.close()
    return answers
