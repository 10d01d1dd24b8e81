#!/usr/bin/env python3
"""Drives one of the guarded example servers (raw_epoll, crow, uwebsockets) over
loopback with a hand-written client (Python standard library only): the ticket
endpoint, the guarded upgrade and each refusal, echo, caps and shutdown.

Usage: test_guarded_server.py STACK SERVER
STACK is raw_epoll, crow or uwebsockets: it selects what the stack promises
about oversized messages (raw_epoll and wsguard's frame_guard send a 1009 close
frame; Crow and uWebSockets drop the TCP connection) and the raw frame checks
that only the hand-rolled server owns."""
import base64
import hashlib
import json
import os
import signal
import socket
import struct
import subprocess
import sys
import zlib

STACK, SERVER = sys.argv[1], sys.argv[2]
TIMEOUT = 5.0
OTHER_ORIGIN = "http://127.0.0.1:9"  # allowed too, to show that a ticket is bound to one origin
failures = []


def check(condition, what):
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def start(*args):
    proc = subprocess.Popen([SERVER, "--port", "0", "--allow-origin", OTHER_ORIGIN, *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    line = proc.stdout.readline().split()
    if len(line) != 2 or line[0] != "listening":
        proc.kill()
        sys.exit("%s did not print 'listening <port>'" % SERVER)
    return proc, int(line[1])


def stop(proc):
    proc.send_signal(signal.SIGTERM)
    try:
        code = proc.wait(timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        proc.kill()
        code = None
    sys.stderr.write(proc.stderr.read())
    return code


def recv_exact(sock, n):
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
        if not chunk:
            raise ConnectionError("closed after %d of %d bytes" % (len(data), n))
        data += chunk
    return data


def http_head(sock):
    head = b""
    while b"\r\n\r\n" not in head:
        chunk = sock.recv(1)
        if not chunk:
            break
        head += chunk
    return head.decode("latin-1")


def http_exchange(port, request):
    """Sends raw request bytes; returns (status, {lowercased name: value}, body)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    try:
        sock.sendall(request)
        response = b""
        while True:  # until the server closes, or the whole body (Content-Length) arrived: keep-alive stacks stay open
            chunk = sock.recv(65536)
            if not chunk:
                break
            response += chunk
            head, sep, body = response.partition(b"\r\n\r\n")
            length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
            if sep and len(body) >= (length[0] if length else 0):
                break
    except ConnectionResetError:
        pass  # the server may close before reading everything we sent
    sock.close()
    head, _, body = response.decode("latin-1").partition("\r\n\r\n")
    lines = head.split("\r\n")
    status = int(lines[0].split()[1]) if head else 0
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return status, headers, body


def post_ticket(port, origin=None, session="demo-session", marker=True):
    """POST /ticket as fetch() sends it: with the X-Wsguard-Ticket marker."""
    origin = origin or "http://127.0.0.1:%d" % port
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    auth = "Authorization: Bearer %s\r\n" % session if session else ""
    auth += "X-Wsguard-Ticket: 1\r\n" if marker else ""
    sock.sendall(("POST /ticket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\n%sContent-Length: 0\r\n"
                  "Connection: close\r\n\r\n" % (port, origin, auth)).encode())
    response = b""
    while True:
        chunk = sock.recv(65536)
        if not chunk:
            break
        response += chunk
        head, _, body = response.partition(b"\r\n\r\n")
        length = [int(l.split(b":")[1]) for l in head.split(b"\r\n") if l.lower().startswith(b"content-length:")]
        if length and len(body) >= length[0]:
            break
    sock.close()
    head, _, body = response.decode("latin-1").partition("\r\n\r\n")
    status = int(head.split()[1]) if head else 0
    return status, (json.loads(body)["ticket"] if status == 200 else None)


def upgrade(port, ticket=None, origin=None, path="/ws", method="GET", deflate=False, extra=""):
    """Sends an upgrade; returns (socket, response head, expected Sec-WebSocket-Accept)."""
    sock = socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT)
    key = base64.b64encode(os.urandom(16)).decode()
    origin_line = "" if origin == "" else "Origin: %s\r\n" % (origin or "http://127.0.0.1:%d" % port)
    protocol = "Sec-WebSocket-Protocol: wsguard.v1, %s\r\n" % ticket if ticket else ""
    ext = "Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits\r\n" if deflate else ""
    sock.sendall(("%s %s HTTP/1.1\r\nHost: 127.0.0.1:%d\r\n%sUpgrade: websocket\r\nConnection: Upgrade\r\n"
                  "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n%s%s%s\r\n"
                  % (method, path, port, origin_line, key, protocol, ext, extra)).encode())
    head = http_head(sock)
    accept = base64.b64encode(hashlib.sha1((key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11").encode()).digest()).decode()
    return sock, head, accept


def open_socket(port, **kwargs):
    status, ticket = post_ticket(port)
    assert status == 200, "ticket endpoint answered %d" % status
    sock, head, _ = upgrade(port, ticket=ticket, **kwargs)
    assert head.startswith("HTTP/1.1 101"), head
    return sock, head


def frame(opcode, payload, fin=True, mask=True, rsv1=False, length=None):
    length = len(payload) if length is None else length
    first = (0x80 if fin else 0) | (0x40 if rsv1 else 0) | opcode
    if length < 126:
        header = struct.pack("!BB", first, (0x80 if mask else 0) | length)
    elif length <= 0xFFFF:
        header = struct.pack("!BBH", first, (0x80 if mask else 0) | 126, length)
    else:
        header = struct.pack("!BBQ", first, (0x80 if mask else 0) | 127, length)
    if not mask:
        return header + payload
    key = os.urandom(4)
    return header + key + bytes(b ^ key[i % 4] for i, b in enumerate(payload))


def read_frame(sock):
    first, second = recv_exact(sock, 2)
    length = second & 0x7F
    if length == 126:
        length = struct.unpack("!H", recv_exact(sock, 2))[0]
    elif length == 127:
        length = struct.unpack("!Q", recv_exact(sock, 8))[0]
    return first & 0x0F, recv_exact(sock, length)


def read_until_close(sock, limit=1000):
    """Skips data frames; returns (code, reason) of the close frame, or None if the TCP connection just ended."""
    try:
        for _ in range(limit):
            opcode, payload = read_frame(sock)
            if opcode == 0x8:
                code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
                return code, payload[2:].decode(errors="replace")
    except (ConnectionError, socket.timeout, OSError):
        return None
    return None


def expect_close(sock, code, reason_prefix, what, drop_ok=False):
    got = read_until_close(sock)
    if got is None:
        check(drop_ok, "%s: connection dropped without a close frame%s" % (what, " (as this stack does)" if drop_ok else ""))
    else:
        check(got[0] == code and got[1].startswith(reason_prefix), "%s closes with %d %s (got %s %s)" % (what, code, reason_prefix, got[0], got[1]))
    sock.close()


def status_of(head):
    return int(head.split()[1]) if head.startswith("HTTP/1.1 ") else 0


def guarded_handshake(port):
    check(post_ticket(port, session=None)[0] == 401, "POST /ticket without the session is refused with 401")
    status, ticket = post_ticket(port)
    check(status == 200 and ticket, "POST /ticket with the session returns a ticket")

    sock, head, accept = upgrade(port, ticket=ticket)
    check(head.startswith("HTTP/1.1 101"), "the page's origin with a fresh ticket upgrades (101)")
    check(("Sec-WebSocket-Accept: " + accept).lower() in head.lower(), "Sec-WebSocket-Accept is right")
    check("sec-websocket-protocol: wsguard.v1\r\n" in head.lower(), "the answer's subprotocol is wsguard.v1")
    check(ticket not in head, "the ticket is never echoed")
    sock.sendall(frame(0x1, b"hello"))
    check(read_frame(sock) == (0x1, b"hello"), "a text message is echoed")
    sock.sendall(frame(0x8, struct.pack("!H", 1000)))
    sock.close()

    _, head, _ = upgrade(port, ticket=ticket)
    check(status_of(head) == 401, "a ticket works once: reusing it is refused with 401 (%s)" % head.split("\r\n")[0])
    _, fresh = post_ticket(port)
    _, head, _ = upgrade(port, ticket=fresh, origin="http://evil.example")
    check(status_of(head) == 403, "another site's origin is refused with 403 before the ticket is spent")
    _, head, _ = upgrade(port, ticket=fresh, origin="null")
    check(status_of(head) == 403, "Origin: null (sandboxed iframe) is refused with 403")
    _, head, _ = upgrade(port, ticket=fresh, origin="")
    check(status_of(head) == 403, "a missing Origin is refused with 403")
    # The example feeds every header line to upgrade_request_builder: a second
    # line of a security header, even with the same value, is refused before 101
    # (security_header_repeated) and the ticket is not spent.
    for name, value in (("Origin", "http://127.0.0.1:%d" % port), ("origin", "http://evil.example"),
                        ("Host", "127.0.0.1:%d" % port), ("Sec-WebSocket-Protocol", "wsguard.v1, " + fresh)):
        sock, head, _ = upgrade(port, ticket=fresh, extra="%s: %s\r\n" % (name, value))
        body = sock.recv(200).decode("latin-1") if status_of(head) == 400 else ""
        sock.close()
        if STACK == "uwebsockets" and name == "Host":
            # uWS's own parser refuses a second Host (HttpParser.h, "Host header is
            # not allowed twice") with its own 400, before the upgrade handler runs.
            check(status_of(head) == 400, "a second Host line is refused with 400 by uWS's parser (%s)" % head.split("\r\n")[0])
            continue
        check(status_of(head) == 400 and "security_header_repeated" in body,
              "a second %s line is refused with 400 security_header_repeated (%s)" % (name, head.split("\r\n")[0]))
    _, head, _ = upgrade(port)
    check(status_of(head) == 401, "no ticket is refused with 401")
    _, head, _ = upgrade(port, ticket=fresh, origin=OTHER_ORIGIN)
    check(status_of(head) == 401, "a ticket fetched from one origin fails from another allowed origin (401)")
    _, head, _ = upgrade(port, ticket=fresh, path="/other")
    if STACK == "crow" and head == "":
        check(True, "an unknown path is refused (Crow closes the connection without a response)")
    else:
        check(status_of(head) in (400, 404), "an unknown path is refused (%d)" % status_of(head))
    _, query_ticket = post_ticket(port)
    sock, head, _ = upgrade(port, path="/ws?ticket=" + query_ticket)
    check(head.startswith("HTTP/1.1 101"), "a ticket in the query string is accepted too")
    sock.close()


def ticket_endpoint(port):
    """mint_guard in front of POST /ticket, and the CORS preflight."""
    page = "http://127.0.0.1:%d" % port
    check(post_ticket(port, marker=False)[0] == 403,
          "POST /ticket without X-Wsguard-Ticket (a form could send it) is refused with 403")
    check(post_ticket(port, origin="http://evil.example")[0] == 403, "POST /ticket from another origin is refused with 403")
    status, headers, body = http_exchange(port, (
        "POST /ticket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\nAuthorization: Bearer demo-session\r\n"
        "X-Wsguard-Ticket: 1\r\nContent-Length: 0\r\n\r\n" % (port, OTHER_ORIGIN)).encode())
    check(status == 200 and headers.get("access-control-allow-origin") == OTHER_ORIGIN
          and headers.get("access-control-allow-credentials") == "true",
          "a ticket for another allowed origin carries that origin's CORS pair")
    check(http_exchange(port, ("GET /ticket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\n\r\n"
                               % (port, page)).encode())[0] == 405, "GET /ticket is refused with 405")

    def preflight(origin):
        return http_exchange(port, (
            "OPTIONS /ticket HTTP/1.1\r\nHost: 127.0.0.1:%d\r\nOrigin: %s\r\nSec-Fetch-Site: same-site\r\n"
            "Access-Control-Request-Method: POST\r\nAccess-Control-Request-Headers: x-wsguard-ticket\r\n\r\n"
            % (port, origin)).encode())
    status, headers, _ = preflight(OTHER_ORIGIN)
    expected = {"access-control-allow-origin": OTHER_ORIGIN, "access-control-allow-credentials": "true",
                "access-control-allow-methods": "POST", "access-control-allow-headers": "X-Wsguard-Ticket",
                "access-control-max-age": "600", "vary": "Origin"}
    check(status == 204 and all(headers.get(k) == v for k, v in expected.items()),
          "the preflight of an allowed origin is answered 204 with exactly its CORS headers (%d %s)" % (status, headers))
    status, headers, _ = preflight("http://evil.example")
    check(status == 403 and "access-control-allow-origin" not in headers,
          "the preflight of another origin is refused with 403 and no Allow-Origin")


def head_budget(port):
    """request_head_budget: caps on the raw head, decided as bytes arrive."""
    status, _, body = http_exchange(port, b"GET /ws HTTP/1.1\r\nX-Long: " + b"a" * 9000 + b"\r\n\r\n")
    check(status == 431 and body.startswith("request_head_too_large"), "a head over 8 KiB is refused with 431")
    status, _, body = http_exchange(port, b"GET /ws HTTP/1.1\r\n" + b"A: b\r\n" * 65 + b"\r\n")
    check(status == 431 and body.startswith("too_many_header_lines"), "65 header lines are refused with 431")
    status, _, _ = http_exchange(port, b"GET /ws HTTP/1.1\nHost: 127.0.0.1\n\n")
    check(status == 400, "bare LF line ends are refused with 400")


def caps(port):
    sock, _ = open_socket(port)
    sock.sendall(frame(0x2, b"x" * 2000))
    expect_close(sock, 1009, "", "a 2000-byte message over the 1024-byte cap", drop_ok=STACK != "raw_epoll")

    sock, _ = open_socket(port)
    sock.sendall(b"".join(frame(0x1, b"m") for _ in range(100)))
    expect_close(sock, 1008, "message_rate_limited", "100 messages at once (20/s, burst 40)")


def raw_frames(port):
    """frame_guard at work on the hand-rolled server's raw frame headers."""
    sock, _ = open_socket(port)
    sock.sendall(frame(0x2, b"ab", fin=False) + frame(0x9, b"p") + frame(0x0, b"cd"))
    check(read_frame(sock) == (0xA, b"p"), "a ping inside a fragmented message gets its pong")
    check(read_frame(sock) == (0x2, b"abcd"), "fragments are reassembled")
    sock.close()
    cases = [
        (frame(0x1, b"x" * 10, mask=False), 1002, "frame_not_masked", "an unmasked client frame"),
        (frame(0x2, b"", length=2000)[:8], 1009, "frame_too_large", "a header announcing 2000 bytes (payload never sent)"),
        (frame(0x2, b"a" * 600, fin=False) + frame(0x0, b"b" * 600), 1009, "message_too_large", "two fragments past the cap"),
        (frame(0x3, b""), 1002, "frame_reserved_opcode", "a reserved opcode"),
        (frame(0x1, b"x", rsv1=True), 1002, "frame_reserved_bits", "RSV1 without permessage-deflate"),
        (frame(0x0, b"x"), 1002, "unexpected_continuation", "a continuation with no message"),
    ]
    for data, code, reason, what in cases:
        sock, _ = open_socket(port)
        sock.sendall(data)
        expect_close(sock, code, reason, what)

    sock, head = open_socket(port, deflate=True)
    if "permessage-deflate" not in head:
        print("skip permessage-deflate: the server was built without zlib")
        return

    def deflate(data):
        c = zlib.compressobj(9, zlib.DEFLATED, -15)
        out = c.compress(data) + c.flush(zlib.Z_SYNC_FLUSH)
        return out[:-4]  # RFC 7692: the sender strips 00 00 FF FF
    sock.sendall(frame(0x1, deflate(b"compressed hello " * 20), rsv1=True))
    check(read_frame(sock) == (0x1, b"compressed hello " * 20), "a compressed message is inflated and echoed")
    bomb = deflate(b"\0" * (512 * 1024))
    check(len(bomb) <= 1024, "the bomb fits under the 1024-byte frame cap (%d bytes)" % len(bomb))
    sock.sendall(frame(0x2, bomb, rsv1=True))
    expect_close(sock, 1009, "inflate_", "a 512 KiB deflate bomb (inflate cap 64 KiB)")


def rate_limit():
    proc, port = start("--handshake-rate", "1", "--handshake-burst", "3")
    try:
        heads = [upgrade(port)[1] for _ in range(6)]
        limited = [h for h in heads if status_of(h) == 429]
        check(len(limited) >= 2, "a burst of 6 upgrades (burst 3) gets 429s (%d)" % len(limited))
        check(all("retry-after: " in h.lower() for h in limited), "every 429 carries Retry-After")
    finally:
        check(stop(proc) == 0, "SIGTERM stops the server with status 0")


def time_guard():
    """raw_epoll --time-guard 1 (bench_handshake's in-server share) prints its total on exit."""
    proc, port = start("--time-guard", "1")
    status, ticket = post_ticket(port)
    sock, head, _ = upgrade(port, ticket=ticket)
    sock.close()
    upgrade(port)[0].close()  # refused (no ticket): still one check
    proc.send_signal(signal.SIGTERM)
    try:
        out = proc.communicate(timeout=TIMEOUT)[0]
    except subprocess.TimeoutExpired:
        proc.kill()
        out = ""
    check(status == 200 and status_of(head) == 101, "--time-guard 1 serves as usual (%d, %s)" % (status, head[:12]))
    fields = out.split()
    check(len(fields) == 4 and fields[0] == "guard_check_ns" and fields[2] == "checks" and fields[3] == "2"
          and int(fields[1]) > 0, "--time-guard 1 prints the time of its 2 checks on exit (%r)" % out.strip())


def main():
    extra = ["--max-inflated", "65536"] if STACK == "raw_epoll" else []
    proc, port = start("--max-message", "1024", "--handshake-burst", "1000", "--handshake-rate", "1000", *extra)
    try:
        guarded_handshake(port)
        ticket_endpoint(port)
        caps(port)
        if STACK == "raw_epoll":
            raw_frames(port)
            head_budget(port)
    finally:
        check(stop(proc) == 0, "SIGTERM stops the server with status 0")
    rate_limit()
    if STACK == "raw_epoll":
        time_guard()
    print("%d failure(s)" % len(failures))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
