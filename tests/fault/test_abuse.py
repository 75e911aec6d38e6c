"""Fault 5: abuse of the HTTP surface, and authorization (issue 6, items 5
and 7), against a real stack.

Every case asserts the exact answer, then that nothing restarted
(deploy/ctl status: every program RUNNING with the pid it had before the
case) and that a legitimate reading from another client address
(127.0.0.2) still gets 201. Each prints one line:

  ABUSE <case> status=<what it got> up=yes legit=201 ...

Client addresses (the gateway limits failed token lookups, failed logins
and registrations per address, and loopback is 127.0.0.0/8, so each case
that fails on purpose has its own): 127.0.0.1 most cases, 127.0.0.2 the
legitimate readings, 127.0.0.3 the trusted reverse proxy (trusted_proxies),
127.0.0.5 the brute force, 127.0.0.6 a client that forges X-Forwarded-For,
127.0.0.7 the revocation probe, 127.0.0.9/.10 registrations, 127.0.0.11
password guessing, 127.0.0.12 sessions, 127.0.1.1-40 the timing
comparison, 127.0.2.1-10 credential stuffing. Addresses behind the proxy
(198.51.100.0/24, documentation space) exist only as header text: no
packet goes to them.

Issue 11, item 5 (limits that hit only the abuser) and item 7 (sessions
and passwords): test_token_brute_force, test_trusted_proxy,
test_registration_flood, test_login_limits, test_sessions_and_passwords.
"""

import http.client
import json
import secrets
import select
import socket
import statistics
import threading
import time
import unittest
import uuid

import faultlib

PARTITIONS = 2
STACK = None
OWNER = None

LEGIT_SRC = "127.0.0.2"
PROXY_SRC = "127.0.0.3"
BRUTE_SRC = "127.0.0.5"
FORGER_SRC = "127.0.0.6"
PROBE_SRC = "127.0.0.7"
REGISTER_SRC = "127.0.0.9"
REGISTER_OTHER_SRC = "127.0.0.10"
GUESS_SRC = "127.0.0.11"
SESSION_SRC = "127.0.0.12"

#  Gateway settings this module relies on (services/gateway/gateway.h,
#  deploy/phantomwatch.conf defaults).
REQUEST_TIMEOUT_S = 5.0          # http_request_timeout_ms
RATE_BURST = 20                  # sensor_token_limit_burst: failed token lookups at once
RATE_REFILL_PER_MIN = 10         # sensor_token_limit_per_hour / 60
LOGIN_BURST = 20                 # login_limit_burst: failed logins per address
LOGIN_REFILL_S = 3600 / 600      # login_limit_per_hour
ACCOUNT_BURST = 10               # login_account_limit_burst: failed logins per account
REGISTER_BURST = 20              # register_limit_burst: accounts per address
SESSION_IDLE_S = 14 * 86400      # session_idle_seconds
STRONG_PASSWORD = "lamp orbit velvet cactus"
SENSOR_BODY_MAX = 4 * 1024       # GATEWAY_SENSOR_BODY_MAX
BATCH_BODY_MAX = 512 * 1024      # BATCH_BODY_MAX (gateway_sensor.c)
USER_BODY_MAX = 64 * 1024        # GATEWAY_BODY_MAX
FRONT_BODY_MAX = 1024 * 1024    # deploy/up: the front refuses a larger Content-Length
HEADERS_MAX = 16384              # civetweb max_request_size (gateway_http.c)
SLACK_S = 3.0


def setUpModule():
    global STACK, OWNER
    # the documented defaults, and a trusted proxy of the test's own
    # (test_trusted_proxy), in front of deploy/up's HAProxy, which adds
    # itself (127.0.0.1) for the gateway: its X-Forwarded-For names each
    # test address as the client, as a direct connection would
    STACK = faultlib.start_stack("fault-abuse", slot=5, partitions=PARTITIONS,
                                 settings={"PHANTOM_TRUSTED_PROXIES": PROXY_SRC})
    # deploy/up returns at the gateway's first /healthz; supervisord calls
    # a program RUNNING only after its startsecs
    states = faultlib.wait_until(
        lambda: (lambda p: p if p and all(st == "RUNNING" for st, _ in p.values()) else None)(
            processes()), 30, step=0.3)
    if not states:
        raise RuntimeError("not every program RUNNING: %s" % STACK.ctl("status", check=False))
    OWNER = STACK.setup_owner(ports=1)


# ----------------------------------------------------------------------
# raw HTTP

class Reply:
    def __init__(self):
        self.status = None
        self.head = b""
        self.body = b""
        self.after = b""
        self.closed = False       # the server closed (EOF or reset)
        self.reset = False
        self.ttfb = None          # seconds to the first byte of the answer
        self.elapsed = None       # seconds to close (or to giving up)

    def header(self, name):
        for line in self.head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            if k.strip().lower() == name.lower().encode():
                return v.strip().decode("latin-1")
        return None

    def json(self):
        try:
            return json.loads(self.body)
        except ValueError:
            return None

    def code(self):
        doc = self.json()
        return (doc or {}).get("error", {}).get("code") if isinstance(doc, dict) else None

    def __repr__(self):
        return "Reply(status=%s closed=%s reset=%s ttfb=%s elapsed=%s body=%r)" % (
            self.status, self.closed, self.reset, self.ttfb, self.elapsed, self.body[:200])


def _parse(reply, data):
    """The first answer in data; what follows it (civetweb's own 400 after
    a request timeout, say) goes to reply.after."""
    head, sep, body = data.partition(b"\r\n\r\n")
    reply.head, reply.body, reply.after = head, body, b""
    try:
        reply.status = int(head.split(b" ", 2)[1])
    except (IndexError, ValueError):
        reply.status = None
    n = reply.header("Content-Length")
    if n is not None and n.isdigit() and len(body) > int(n):
        reply.body, reply.after = body[:int(n)], body[int(n):]


def connect(src="127.0.0.1", timeout=10.0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.settimeout(timeout)
    s.bind((src, 0))
    s.connect(("127.0.0.1", STACK.http_port))
    return s


def exchange(data, src="127.0.0.1", wait_close=True, timeout=REQUEST_TIMEOUT_S + SLACK_S + 2):
    """Sends data on a new connection and reads the answer: to the close when
    wait_close (the connection must end within timeout), else to the end of
    the first answer (Content-Length)."""
    reply = Reply()
    s = connect(src, timeout)
    t0 = time.monotonic()
    buf = b""
    try:
        try:
            s.sendall(data)
        except (BrokenPipeError, ConnectionResetError):
            pass                  # answered and closed before all was sent
        while True:
            try:
                chunk = s.recv(65536)
            except ConnectionResetError:
                reply.closed = reply.reset = True
                break
            except socket.timeout:
                break
            if reply.ttfb is None and chunk:
                reply.ttfb = time.monotonic() - t0
            if not chunk:
                reply.closed = True
                break
            buf += chunk
            if not wait_close and b"\r\n\r\n" in buf:
                _parse(reply, buf)
                n = reply.header("Content-Length")
                if n is not None and len(reply.body) >= int(n):
                    break
    finally:
        reply.elapsed = time.monotonic() - t0
        s.close()
    _parse(reply, buf)
    return reply


def keep_alive(requests, src="127.0.0.1", timeout=REQUEST_TIMEOUT_S + SLACK_S):
    """Sends each request on one connection after the answer to the one
    before; returns the replies (status None: no answer)."""
    s = connect(src, timeout)
    out = []
    buf = b""
    try:
        for data in requests:
            reply = Reply()
            t0 = time.monotonic()
            try:
                s.sendall(data)
            except OSError:
                reply.closed = True
            while not reply.closed:
                if b"\r\n\r\n" in buf:
                    head = buf.partition(b"\r\n\r\n")[0]
                    _parse(reply, buf)
                    n = int(reply.header("Content-Length") or 0)
                    if len(reply.body) >= n:
                        reply.body = reply.body[:n]
                        buf = buf[len(head) + 4 + n:]
                        break
                try:
                    chunk = s.recv(65536)
                except (socket.timeout, ConnectionResetError):
                    chunk = b""
                if reply.ttfb is None and chunk:
                    reply.ttfb = time.monotonic() - t0
                if not chunk:
                    reply.closed = True
                    _parse(reply, buf)
                buf += chunk
            reply.elapsed = time.monotonic() - t0
            out.append(reply)
    finally:
        s.close()
    return out


def request_bytes(method, path, body=None, headers=(), close=True):
    lines = [b"%s %s HTTP/1.1" % (method.encode(), path if isinstance(path, bytes)
                                   else path.encode()), b"Host: 127.0.0.1"]
    if close:
        lines.append(b"Connection: close")
    if body is not None:
        lines.append(b"Content-Type: application/json")
        lines.append(b"Content-Length: %d" % len(body))
    lines += [h if isinstance(h, bytes) else h.encode("latin-1") for h in headers]
    return b"\r\n".join(lines) + b"\r\n\r\n" + (body or b"")


def reading_body(token=None, port=None, extra=b"", **fields):
    """A single-reading body as bytes, so raw bytes can go inside strings."""
    def b(v):
        return v if isinstance(v, bytes) else str(v).encode()
    token = OWNER["device_token"] if token is None else token
    port = OWNER["ports"][0] if port is None else port
    out = b'{"deviceToken":"%s","portId":"%s","voltage":230.1,"current":0.41,"power":94.3' % (
        b(token), b(port))
    for k, v in fields.items():
        out += b',"%s":"%s"' % (k.encode(), b(v))
    return out + extra + b"}"


def batch_body(token=None, item=None, extra=b""):
    token = OWNER["device_token"] if token is None else token
    if item is None:
        item = b'{"portId":"%s","voltage":230,"current":0.4,"power":92}' % (
            OWNER["ports"][0].encode())
    t = token if isinstance(token, bytes) else token.encode()
    return b'{"deviceToken":"%s","readings":[%s]%s}' % (t, item, extra)


# ----------------------------------------------------------------------
# after every case: still up, same pids, a legitimate reading gets 201

def processes():
    """{program: (state, pid)} from deploy/ctl status."""
    out = {}
    for line in STACK.ctl("status", check=False).splitlines():
        f = line.split()
        if len(f) >= 2:
            pid = 0
            if "pid" in f:
                try:
                    pid = int(f[f.index("pid") + 1].rstrip(","))
                except (IndexError, ValueError):
                    pid = 0
            out[f[0]] = (f[1], pid)
    return out


def legit_reading(timeout=5.0):
    """(status, seconds) of one reading from LEGIT_SRC on a new connection."""
    body = reading_body(readingId="legit-" + uuid.uuid4().hex)
    return faultlib.timed_post(STACK, "/api/sensor/reading", body, LEGIT_SRC, timeout)


class AbuseCase(unittest.TestCase):
    def setUp(self):
        self.before = processes()
        self.assertTrue(self.before and all(s == "RUNNING" for s, _ in self.before.values()),
                        self.before)

    def still_up(self, case, status, **extra):
        after = processes()
        self.assertEqual(after, self.before,
                         "%s: a program restarted or stopped\n%s" % (case, STACK.log_tail()))
        legit, secs = legit_reading()
        self.assertEqual(legit, 201, "%s: legitimate reading got %s" % (case, legit))
        line = "ABUSE %s status=%s up=yes legit=%d" % (case, status, legit)
        for k, v in extra.items():
            line += " %s=%s" % (k, v)
        print("\n" + line, flush=True)

    def assertAnswer(self, reply, status, code=None, what=""):
        self.assertEqual(reply.status, status, "%s: %r" % (what, reply))
        if code is not None:
            self.assertEqual(reply.code(), code, "%s: %r" % (what, reply))

    # ------------------------------------------------------------------
    # item 5

    def test_oversized_headers(self):
        """Headers beyond civetweb's max_request_size (16 KiB): civetweb 1.15
        has no 431; it answers 400 and closes, before any handler runs."""
        got = []
        cases = [
            ("one 20 KB header", request_bytes("GET", "/healthz", close=False,
                                               headers=[b"X-Big: " + b"a" * 20000])),
            ("1 MB header", request_bytes("POST", "/api/sensor/reading", reading_body(),
                                          close=False, headers=[b"X-Big: " + b"a" * 1000000])),
            ("3000 header lines", request_bytes("GET", "/healthz", close=False,
                                                headers=[b"X-A: b"] * 3000)),
            ("20 KB cookie", request_bytes("GET", "/api/auth/me", close=False,
                                           headers=[b"Cookie: pw_session=" + b"a" * 20000])),
        ]
        for what, data in cases:
            r = exchange(data)
            self.assertAnswer(r, 400, what=what)
            self.assertTrue(r.closed, "%s: connection not closed: %r" % (what, r))
            self.assertLess(r.elapsed, 2.0, what)
            got.append(r.status)
        # just under the limit is served, on a keep-alive connection
        r = exchange(request_bytes("GET", "/healthz", headers=[b"X-Big: " + b"a" * 15000]))
        self.assertAnswer(r, 200, what="15 KB header")
        self.still_up("oversized_headers", "/".join(map(str, got)), closed="yes")

    def test_oversized_body(self):
        """Content-Length over the route's limit: 413 before the body is read
        (the first byte of the answer comes at once). A body announced but
        never sent: civetweb waits for it (to discard it) up to the request
        timeout, then closes. A body announced far beyond any route's limit
        (over 1 MiB) is refused by the front itself and the connection closed
        at once (through the gateway, the front's client timeout and the
        gateway's discard ended together and the close came late, 3 times in
        8). A body sent in full is discarded and the connection serves the
        next request (the body is never read as one)."""
        cases = [
            ("reading 10 MB", "/api/sensor/reading", 10000000),
            ("reading limit+1", "/api/sensor/reading", SENSOR_BODY_MAX + 1),
            ("batch 10 MB", "/api/sensor/readings", 10000000),
            ("batch limit+1", "/api/sensor/readings", BATCH_BODY_MAX + 1),
            ("register 10 MB", "/api/auth/register", 10000000),
            ("huge Content-Length", "/api/sensor/reading", 10 ** 19),
        ]
        replies = [None] * len(cases)

        def one(i, path, length):
            replies[i] = exchange(b"POST %s HTTP/1.1\r\nHost: x\r\nContent-Type: application/json"
                                  b"\r\nContent-Length: %d\r\n\r\n" % (path.encode(), length))

        threads = [threading.Thread(target=one, args=(i, p, n))
                   for i, (_, p, n) in enumerate(cases)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(REQUEST_TIMEOUT_S + SLACK_S + 5)
        worst = 0.0
        for (what, _, n), r in zip(cases, replies):
            self.assertIsNotNone(r, what)
            self.assertAnswer(r, 413, "body_too_large", what)
            self.assertLess(r.ttfb, 1.0, "%s: 413 not at once: %r" % (what, r))
            self.assertTrue(r.closed, "%s: not closed: %r" % (what, r))
            self.assertLess(r.elapsed, REQUEST_TIMEOUT_S + SLACK_S, what)
            if n > FRONT_BODY_MAX:
                self.assertLess(r.elapsed, 1.0, "%s: not closed at once: %r" % (what, r))
            worst = max(worst, r.elapsed)

        sent = [("reading 5000 B", "/api/sensor/reading", 5000),
                ("batch limit+1", "/api/sensor/readings", BATCH_BODY_MAX + 1),
                ("register limit+1", "/api/auth/register", USER_BODY_MAX + 1)]
        for what, path, length in sent:
            # the body looks like a request, should it ever be read as one
            fake = b"GET /api/auth/me HTTP/1.1\r\nHost: x\r\n\r\n"
            body = (fake * (length // len(fake) + 1))[:length]
            self.assertEqual(len(body), length)
            first, second = keep_alive(
                [request_bytes("POST", path, body, close=False),
                 request_bytes("GET", "/healthz", close=False)])
            self.assertAnswer(first, 413, "body_too_large", what)
            self.assertLess(first.ttfb, 1.0, what)
            self.assertAnswer(second, 200, what="%s: next request on the connection" % what)
        self.still_up("oversized_body", 413, ttfb_max_ms="%.1f" % (
            1000 * max(r.ttfb for r in replies)), unsent_closed_after_s="%.1f" % worst,
            sent_then_next=200)

    def test_slowloris(self):
        """40 connections send a partial header, one byte a second: each is
        closed within the request timeout (+ slack) while readings from
        another client keep getting 201 within 1 s."""
        n = 40
        slow = []
        for _ in range(n):
            s = connect()
            s.setblocking(False)
            s.send(b"POST /api/sensor/reading HTTP/1.1\r\nHost: x\r\n")
            slow.append(s)
        t0 = time.monotonic()
        closed_at = {}
        answers = {}
        legit = []
        stop = threading.Event()

        def legit_loop():
            while not stop.is_set():
                legit.append(legit_reading(timeout=5.0))
                stop.wait(0.25)

        lt = threading.Thread(target=legit_loop)
        lt.start()
        try:
            next_byte = t0 + 1.0
            deadline = t0 + REQUEST_TIMEOUT_S + SLACK_S
            while len(closed_at) < n and time.monotonic() < deadline:
                now = time.monotonic()
                if now >= next_byte:
                    for i, s in enumerate(slow):
                        if i not in closed_at:
                            try:
                                s.send(b"X")
                            except OSError:
                                pass     # closed: recv below sees it
                    next_byte += 1.0
                open_ = [s for i, s in enumerate(slow) if i not in closed_at]
                ready, _, _ = select.select(open_, [], [], max(0.0, min(0.1, next_byte - now)))
                for s in ready:
                    i = slow.index(s)
                    try:
                        chunk = s.recv(4096)
                    except (ConnectionResetError, BlockingIOError):
                        chunk = b""
                    if chunk:
                        answers[i] = answers.get(i, b"") + chunk
                    else:
                        closed_at[i] = time.monotonic() - t0
        finally:
            stop.set()
            lt.join(10)
            for s in slow:
                s.close()
        self.assertEqual(len(closed_at), n, "slow connections still open after %.1f s: %d" % (
            REQUEST_TIMEOUT_S + SLACK_S, n - len(closed_at)))
        statuses = set()
        for i, data in answers.items():
            r = Reply()
            _parse(r, data)
            statuses.add(r.status)
        self.assertTrue(statuses <= {400, 408}, "slow clients answered %s" % statuses)
        self.assertTrue(legit, "no legitimate reading was sent")
        bad = [(st, round(secs, 3)) for st, secs in legit if st != 201 or secs >= 1.0]
        self.assertEqual(bad, [], "readings during the slowloris")
        self.still_up("slowloris", "/".join(str(s) for s in sorted(statuses)) or "closed",
                      conns=n, closed_min_s="%.1f" % min(closed_at.values()),
                      closed_max_s="%.1f" % max(closed_at.values()), legit_during=len(legit),
                      legit_max_ms="%.0f" % (1000 * max(s for _, s in legit)))

    def test_deep_nesting(self):
        """Deeply nested arrays: 400 invalid_json. Nesting is counted before
        jansson parses, whose recursion overflowed a civetweb worker's stack
        at about 700 levels (the gateway died of SIGSEGV before the fix in
        gateway_http.c)."""
        def deep(n):
            return b"[" * n + b"]" * n

        cases = [
            ("reading 33", "/api/sensor/reading", reading_body(extra=b',"x":' + deep(33)), 400),
            ("reading 1000", "/api/sensor/reading", reading_body(extra=b',"x":' + deep(1000)), 400),
            ("reading 1900", "/api/sensor/reading", b'{"x":' + deep(1900) + b"}", 400),
            # 20 KB: the reading route's 4 KiB limit answers first
            ("reading 10000", "/api/sensor/reading", reading_body(extra=b',"x":' + deep(10000)),
             413),
            ("batch 10000 readings", "/api/sensor/readings",
             b'{"deviceToken":"%s","readings":%s}' % (OWNER["device_token"].encode(),
                                                     deep(10000)), 400),
            ("batch 10000 in item", "/api/sensor/readings",
             batch_body(item=b'{"portId":"%s","voltage":1,"current":1,"power":1,"x":%s}' % (
                 OWNER["ports"][0].encode(), deep(10000))), 400),
            ("batch 10000 objects", "/api/sensor/readings",
             b'{"readings":' + b'{"a":' * 10000 + b"1" + b"}" * 10000 + b"}", 400),
            ("register 10000", "/api/auth/register", b'{"email":' + deep(10000) + b"}", 400),
        ]
        for what, path, body, want in cases:
            r = exchange(request_bytes("POST", path, body))
            self.assertAnswer(r, want, "invalid_json" if want == 400 else "body_too_large", what)
            if want == 400:
                self.assertIn(b"too deeply", r.body, what)
        self.still_up("deep_nesting", "400/413(reading>4KiB)", cases=len(cases))

    def test_invalid_utf8(self):
        """Invalid UTF-8 inside string fields (raw bytes): 400 invalid_json on
        both sensor routes (the batch route's fast scanner gives up on any
        byte outside printable ASCII and jansson rejects it)."""
        bad = [b"\xff\xfe", b"\xc0\xaf", b"\xed\xa0\x80", b"\xe2\x82", b"\x80"]
        token, port = OWNER["device_token"].encode(), OWNER["ports"][0].encode()
        n = 0
        for seq in bad:
            bodies = [
                ("reading deviceToken", "/api/sensor/reading",
                 reading_body(token=token[:-2] + seq)),
                ("reading portId", "/api/sensor/reading", reading_body(port=port[:-2] + seq)),
                ("reading readingId", "/api/sensor/reading", reading_body(readingId=b"k" + seq)),
                ("reading key", "/api/sensor/reading", reading_body(extra=b',"x' + seq + b'":1')),
                ("batch deviceToken", "/api/sensor/readings", batch_body(token=token[:-2] + seq)),
                ("batch portId", "/api/sensor/readings", batch_body(
                    item=b'{"portId":"%s","voltage":1,"current":1,"power":1}' % (port[:-2] + seq))),
                ("batch readingId", "/api/sensor/readings", batch_body(
                    item=b'{"portId":"%s","voltage":1,"current":1,"power":1,"readingId":"k%s"}'
                    % (port, seq))),
                ("register name", "/api/auth/register",
                 b'{"email":"a@b.test","password":"pw-lamp-orbit-velvet","name":"x%s"}' % seq),
            ]
            for what, path, body in bodies:
                r = exchange(request_bytes("POST", path, body))
                self.assertAnswer(r, 400, "invalid_json", "%s %r" % (what, seq))
                n += 1
        # the same bytes in the Idempotency-Key header
        r = exchange(request_bytes("POST", "/api/sensor/reading", reading_body(),
                                   headers=[b"Idempotency-Key: k\xff\xfe"]))
        self.assertAnswer(r, 400, "invalid_field", "Idempotency-Key")
        self.still_up("invalid_utf8", "400", cases=n + 1)

    def test_duplicate_keys(self):
        token, port = OWNER["device_token"].encode(), OWNER["ports"][0].encode()
        item = b'{"portId":"%s","voltage":230,"current":0.4,"power":92' % port
        cases = [
            ("reading power twice", "/api/sensor/reading", reading_body(extra=b',"power":5')),
            ("reading deviceToken twice", "/api/sensor/reading",
             reading_body(extra=b',"deviceToken":"%s"' % token)),
            ("reading portId twice", "/api/sensor/reading",
             reading_body(extra=b',"portId":"%s"' % port)),
            ("reading readingId twice", "/api/sensor/reading",
             reading_body(readingId="a", extra=b',"readingId":"b"')),
            ("batch deviceToken twice", "/api/sensor/readings",
             batch_body(extra=b',"deviceToken":"%s"' % token)),
            ("batch readings twice", "/api/sensor/readings",
             batch_body(extra=b',"readings":[]')),
            ("batch item power twice", "/api/sensor/readings",
             batch_body(item=item + b',"power":5}')),
            ("batch item portId twice", "/api/sensor/readings",
             batch_body(item=item + b',"portId":"%s"}' % port)),
            ("register email twice", "/api/auth/register",
             b'{"email":"a@b.test","password":"pw-lamp-orbit-velvet","name":"x","email":"c@d.test"}'),
        ]
        for what, path, body in cases:
            r = exchange(request_bytes("POST", path, body))
            self.assertAnswer(r, 400, "invalid_json", what)
        self.still_up("duplicate_keys", 400, cases=len(cases))

    def test_token_brute_force(self):
        """From one address: RATE_BURST wrong tokens get 401, then 429 with
        Retry-After. A valid token from that same address (every sensor
        behind one NAT) still gets 201: only failures count, after the
        lookup. Failed logins are another budget: a login from it is
        judged on its merits (401 for a wrong password, not 429)."""
        statuses = []
        retry_after = []
        for i in range(RATE_BURST + 10):
            r = exchange(request_bytes("POST", "/api/sensor/reading",
                                       reading_body(token=secrets.token_urlsafe(32))),
                         src=BRUTE_SRC)
            statuses.append(r.status)
            if r.status == 429:
                self.assertEqual(r.code(), "rate_limited")
                retry_after.append(int(r.header("Retry-After")))
        self.assertEqual(statuses, [401] * RATE_BURST + [429] * 10, statuses)
        # 1 s at least, at most a full refill of the floored bucket
        self.assertTrue(all(1 <= s <= 2 * RATE_BURST * 60 // RATE_REFILL_PER_MIN
                            for s in retry_after), retry_after)
        # the batch route answers the guesser alike
        r = exchange(request_bytes("POST", "/api/sensor/readings",
                                   batch_body(token=secrets.token_urlsafe(32))), src=BRUTE_SRC)
        self.assertAnswer(r, 429, "rate_limited", "batch guess from the limited address")
        valid = exchange(request_bytes("POST", "/api/sensor/reading",
                                       reading_body(readingId="nat-" + uuid.uuid4().hex)),
                         src=BRUTE_SRC)
        self.assertAnswer(valid, 201, what="valid token from the limited address")
        batch = exchange(request_bytes("POST", "/api/sensor/readings", batch_body()),
                         src=BRUTE_SRC)
        self.assertAnswer(batch, 200, what="valid batch from the limited address")
        self.assertEqual(batch.json()["data"]["accepted"], 1, batch)
        login = exchange(request_bytes("POST", "/api/auth/login",
                                       b'{"email":"x@y.test","password":"guess"}'), src=BRUTE_SRC)
        self.assertAnswer(login, 401, "invalid_credentials", "login from the limited address")
        self.still_up("token_brute_force", "401x%d/429x%d" % (RATE_BURST, 10),
                      retry_after=min(retry_after), valid_same_addr=valid.status,
                      login_same_addr=login.status)

    def test_trusted_proxy(self):
        """Behind a reverse proxy (trusted_proxies = 127.0.0.3) every client
        arrives from one address: each is told apart by the rightmost
        X-Forwarded-For hop, so a guesser behind the proxy is limited alone,
        while a hop a client forges left of the proxy's counts for nothing,
        and a client that is not the proxy is not believed at all."""
        def guess(src, forwarded_for, token=None):
            headers = [b"X-Forwarded-For: " + forwarded_for.encode()] if forwarded_for else []
            body = reading_body(token=token or secrets.token_urlsafe(32),
                                readingId="px-" + uuid.uuid4().hex)
            return exchange(request_bytes("POST", "/api/sensor/reading", body, headers=headers),
                            src=src).status

        got = [guess(PROXY_SRC, "198.51.100.20") for _ in range(RATE_BURST + 1)]
        self.assertEqual(got, [401] * RATE_BURST + [429], got)
        # a forged hop left of the client's does not make a new client
        self.assertEqual(guess(PROXY_SRC, "203.0.113.5, 198.51.100.20"), 429)
        # other clients behind the same proxy: unaffected
        self.assertEqual(guess(PROXY_SRC, "198.51.100.21"), 401)
        self.assertEqual(guess(PROXY_SRC, "198.51.100.20",
                               token=OWNER["device_token"]), 201)
        self.assertEqual(guess(PROXY_SRC, "198.51.100.22", token=OWNER["device_token"]), 201)
        # not the proxy: its own X-Forwarded-For is just text, so claiming
        # to be a fresh client gains it nothing, and claiming to be the
        # limited one hurts no one
        got = [guess(FORGER_SRC, "198.51.100.%d" % (30 + i)) for i in range(RATE_BURST + 1)]
        self.assertEqual(got, [401] * RATE_BURST + [429], got)
        self.assertEqual(guess(PROXY_SRC, "127.0.0.6"), 429)  # it is 127.0.0.6 that is limited
        self.assertEqual(guess(PROXY_SRC, "198.51.100.23"), 401)
        self.still_up("trusted_proxy", "401x%d/429" % RATE_BURST, other_client=401,
                      forged_hop=429, valid_behind_proxy=201)

    def test_registration_flood(self):
        """One address registers REGISTER_BURST accounts, then gets 429 with
        Retry-After (before: 190 accounts in 15 s, both password-hashing
        slots busy); another address still registers."""
        statuses = []
        t0 = time.monotonic()
        for i in range(REGISTER_BURST + 3):
            body = json.dumps({"email": "flood-%d-%s@example.test" % (i, uuid.uuid4().hex[:8]),
                               "password": STRONG_PASSWORD, "name": "Flood"}).encode()
            r = exchange(request_bytes("POST", "/api/auth/register", body), src=REGISTER_SRC)
            statuses.append(r.status)
            if r.status == 429:
                self.assertEqual(r.code(), "rate_limited")
                self.assertGreaterEqual(int(r.header("Retry-After")), 1)
        elapsed = time.monotonic() - t0
        self.assertEqual(statuses, [201] * REGISTER_BURST + [429] * 3, statuses)
        body = json.dumps({"email": "flood-other-%s@example.test" % uuid.uuid4().hex[:8],
                           "password": STRONG_PASSWORD, "name": "Other"}).encode()
        r = exchange(request_bytes("POST", "/api/auth/register", body), src=REGISTER_OTHER_SRC)
        self.assertAnswer(r, 201, what="registration from another address")
        self.still_up("registration_flood", "201x%d/429x3" % REGISTER_BURST,
                      seconds="%.1f" % elapsed, other_addr=r.status)

    def test_login_limits(self):
        """Password guessing: LOGIN_BURST failures from one address (each on
        another email), then 429 even for the right password from it;
        another address signs in. Credential stuffing: ACCOUNT_BURST
        failures on one account from as many addresses, then the account
        answers 429 to everyone, the right password included; another
        account is unaffected. An unknown email is limited alike."""
        s = STACK

        def login(src, email, password):
            body = json.dumps({"email": email, "password": password}).encode()
            return exchange(request_bytes("POST", "/api/auth/login", body), src=src)

        _, _, email, password = s.register_user("guessed")
        _, _, other_email, other_password = s.register_user("bystander")
        t0 = time.monotonic()
        got = [login(GUESS_SRC, "guess-%d@example.test" % i, "wrong horse").status
               for i in range(LOGIN_BURST)]
        self.assertEqual(got, [401] * LOGIN_BURST, got)
        # the bucket refills one failure every LOGIN_REFILL_S: on a slow
        # machine the burst itself outlasts that (each login hashes), so
        # the refills are spent first, as many as the time allows and no more
        refills = 0
        while login(GUESS_SRC, "guess-more-%d@example.test" % refills, "wrong horse").status == 401:
            refills += 1
            self.assertLessEqual(refills, (time.monotonic() - t0) / LOGIN_REFILL_S + 1,
                                 "more failures than the burst and its refills let through")
        r = login(GUESS_SRC, email, password)
        self.assertAnswer(r, 429, "rate_limited", "right password from the guessing address")
        self.assertIsNotNone(r.header("Retry-After"))
        self.assertAnswer(login(LEGIT_SRC, email, password), 200, what="another address")

        stuffing = ["127.0.2.%d" % i for i in range(1, ACCOUNT_BURST + 1)]
        got = [login(src, email, "wrong horse %d" % i).status for i, src in enumerate(stuffing)]
        self.assertEqual(got, [401] * ACCOUNT_BURST, got)
        r = login(LEGIT_SRC, email, password)
        self.assertAnswer(r, 429, "rate_limited", "stuffed account, right password")
        self.assertAnswer(login(LEGIT_SRC, other_email, other_password), 200,
                          what="another account")
        unknown = "nobody-%s@example.test" % uuid.uuid4().hex[:8]
        got = [login(src, unknown, "wrong horse").status for src in stuffing]
        self.assertEqual(got, [401] * ACCOUNT_BURST, got)
        self.assertAnswer(login(LEGIT_SRC, unknown, "wrong horse"), 429, "rate_limited",
                          "unknown email")
        self.still_up("login_limits", "401x%d/429" % LOGIN_BURST, account_after=ACCOUNT_BURST,
                      other_addr=200, other_account=200)

    def test_token_timing(self):
        """A never-issued token and a revoked one: the same 401 body, and
        latencies whose medians differ by no more than the noise."""
        user_token = OWNER["token"]
        device, revoked = STACK.create_device_and_token(user_token, "revoked board")
        STACK.expect(200, "DELETE", "/api/devices/%s/token" % device["id"], None, user_token)
        # the cache drops it (a few tries at most: each costs the probe
        # address one token of its bucket)
        deadline = time.time() + 5
        while True:
            r = exchange(request_bytes("POST", "/api/sensor/reading", reading_body(token=revoked)),
                         src=PROBE_SRC)
            if r.status == 401 or time.time() > deadline:
                break
            time.sleep(0.3)
        self.assertAnswer(r, 401, "invalid_token", "revoked token")

        addresses = ["127.0.1.%d" % i for i in range(1, 41)]
        per_kind = 5           # 2 x 5 failures per address, under the burst of 20
        times = {"never": [], "revoked": []}
        bodies = {"never": set(), "revoked": set()}
        heads = {"never": set(), "revoked": set()}
        statuses = set()
        for ai, src in enumerate(addresses):
            conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port, timeout=5,
                                              source_address=(src, 0))
            conn.connect()
            order = ["never", "revoked"] if ai % 2 == 0 else ["revoked", "never"]
            try:
                for _ in range(per_kind):
                    for kind in order:
                        token = secrets.token_urlsafe(32) if kind == "never" else revoked
                        body = reading_body(token=token)
                        t0 = time.perf_counter()
                        conn.request("POST", "/api/sensor/reading", body=body,
                                     headers={"Content-Type": "application/json"})
                        resp = conn.getresponse()
                        data = resp.read()
                        times[kind].append(time.perf_counter() - t0)
                        statuses.add(resp.status)
                        bodies[kind].add(data)
                        heads[kind].add(tuple(sorted((k.lower(), v) for k, v in resp.getheaders()
                                                     if k.lower() != "date")))
            finally:
                conn.close()
        self.assertEqual(statuses, {401})
        self.assertEqual(len(bodies["never"]), 1, bodies["never"])
        self.assertEqual(bodies["never"], bodies["revoked"])
        self.assertEqual(heads["never"], heads["revoked"])

        def stats(xs):
            med = statistics.median(xs)
            mad = statistics.median(abs(x - med) for x in xs)
            # standard error of a median, from the MAD's estimate of sigma
            return med, 1.2533 * 1.4826 * mad / len(xs) ** 0.5

        ma, sa = stats(times["never"])
        mb, sb = stats(times["revoked"])
        diff = abs(ma - mb)
        bound = max(0.0002, 3 * (sa * sa + sb * sb) ** 0.5)
        self.assertLess(diff, bound, "median never-issued %.3f ms, revoked %.3f ms" % (
            1000 * ma, 1000 * mb))
        self.still_up("token_timing", 401, n="%dx2" % len(times["never"]),
                      median_never_ms="%.3f" % (1000 * ma),
                      median_revoked_ms="%.3f" % (1000 * mb),
                      diff_ms="%.3f" % (1000 * diff), bound_ms="%.3f" % (1000 * bound))

    def test_static_traversal(self):
        """Traversal and long-slash URLs on the dashboard handler: 404 (or a
        400 from civetweb), never a file's contents."""
        paths = [
            b"/../../etc/passwd", b"/%2e%2e/%2e%2e/etc/passwd",
            b"/assets/..%2f..%2fdeploy/phantomwatch.conf", b"//////////////etc/passwd",
            b"/" * 10000, b"/assets/", b"/assets/../../deploy/phantomwatch.conf",
            b"/assets/%2e%2e%2f%2e%2e%2fdeploy%2fphantomwatch.conf", b"/..%5c..%5cetc%5cpasswd",
            b"/%2fetc%2fpasswd", b"/assets/..\\..\\etc\\passwd", b"/" + b"a/" * 5000,
            b"/.%2e/.%2e/etc/passwd", b"/%c0%ae%c0%ae/etc/passwd", b"/proc/self/environ",
            b"/deploy/phantomwatch.conf", b"/" * 16000,
        ]
        leaks = (b"root:", b"partitions =", b"PHANTOM_", b"[program:")
        got = set()
        for path in paths:
            r = exchange(request_bytes("GET", path))
            self.assertIn(r.status, (404, 400), "%r: %r" % (path[:60], r))
            for leak in leaks:
                self.assertNotIn(leak, r.body, path[:60])
            got.add(r.status)
        # the dashboard itself is still there
        r = exchange(request_bytes("GET", "/"))
        self.assertAnswer(r, 200, what="GET /")
        self.still_up("static_traversal", "/".join(str(s) for s in sorted(got)), paths=len(paths))

    # ------------------------------------------------------------------
    # item 7

    def test_authorization(self):
        """A device token cannot call the user API (as Bearer or as the
        pw_session cookie); no, a bad or an expired session: 401; another
        user's ids: 404."""
        s = STACK
        dtoken = OWNER["device_token"]
        other = s.setup_owner(ports=1)
        routes = [("GET", "/api/devices", None), ("GET", "/api/ports", None),
                  ("GET", "/api/auth/me", None), ("GET", "/api/summary", None),
                  ("POST", "/api/devices", {"name": "intruder"})]
        expired_user, expired_token, _, _ = s.register_user("expiring")
        self.assertEqual(s.api("GET", "/api/auth/me", token=expired_token)[0], 200)
        s.sql("UPDATE sessions SET expires_at = now () - interval '1 second'"
              " WHERE user_id = %s", expired_user["id"])
        credentials = [
            ("device token as Bearer", {"Authorization": "Bearer " + dtoken}),
            ("device token as cookie", {"Cookie": "pw_session=" + dtoken,
                                        "X-Requested-With": "fetch"}),
            ("no session", {}),
            ("bad session", {"Authorization": "Bearer not-a-token"}),
            ("never-issued session", {"Authorization": "Bearer " + secrets.token_urlsafe(32)}),
            ("expired session", {"Authorization": "Bearer " + expired_token}),
            ("expired session cookie", {"Cookie": "pw_session=" + expired_token,
                                        "X-Requested-With": "fetch"}),
        ]
        n = 0
        devices_before = s.count("SELECT count(*) FROM devices")
        for what, headers in credentials:
            for method, path, body in routes:
                status, _, doc = s.api(method, path, body, headers=headers)
                self.assertEqual(status, 401, "%s %s with %s: %s %s" % (
                    method, path, what, status, doc))
                self.assertEqual(doc["error"]["code"], "unauthorized")
                n += 1
        self.assertEqual(s.count("SELECT count(*) FROM devices"), devices_before)

        # another user's ids: 404, as for ids that do not exist
        mine_dev, mine_port = OWNER["device"]["id"], OWNER["ports"][0]
        foreign = [("GET", "/api/devices/%s" % mine_dev, None),
                   ("PATCH", "/api/devices/%s" % mine_dev, {"name": "taken"}),
                   ("POST", "/api/devices/%s/token" % mine_dev, None),
                   ("DELETE", "/api/devices/%s/token" % mine_dev, None),
                   ("GET", "/api/ports/%s" % mine_port, None),
                   ("GET", "/api/ports/%s/readings" % mine_port, None),
                   ("GET", "/api/ports/%s/episodes" % mine_port, None),
                   ("PATCH", "/api/ports/%s" % mine_port, {"name": "taken"}),
                   ("POST", "/api/ports", {"name": "p", "deviceId": mine_dev})]
        for method, path, body in foreign:
            status, _, doc = s.api(method, path, body, token=other["token"])
            self.assertEqual(status, 404, "%s %s as another user: %s %s" % (
                method, path, status, doc))
            n += 1
        # a reading with another user's device token for my port
        r = exchange(request_bytes("POST", "/api/sensor/reading",
                                   reading_body(token=other["device_token"])))
        self.assertAnswer(r, 404, "port_not_found", "foreign port")
        # nothing of mine changed, my session still works
        doc = s.expect(200, "GET", "/api/devices/%s" % mine_dev, None, OWNER["token"])
        self.assertEqual(doc["data"]["device"]["name"], OWNER["device"]["name"])
        self.still_up("authorization", "401/404", checks=n + 1)

    def test_sessions_and_passwords(self):
        """A common or short password is refused (400, field password);
        sessions are listed with their origin and ended one by one or all
        but the current ("sign out everywhere"); a session idle past
        session_idle_seconds is refused; the cookie is Secure when the
        trusted proxy says the client came over https."""
        s = STACK

        def call(method, path, body=None, token=None, headers=(), src=SESSION_SRC):
            hs = list(headers)
            if token:
                hs.append("Authorization: Bearer " + token)
            data = json.dumps(body).encode() if body is not None else None
            return exchange(request_bytes(method, path, data, headers=hs), src=src)

        email = "sessions-%s@example.test" % uuid.uuid4().hex[:8]
        weak = ["password", "password1", "12345678", "qwertyuiop", "letmein1", "short"]
        for password in weak:
            r = call("POST", "/api/auth/register",
                     {"email": email, "password": password, "name": "S"})
            self.assertAnswer(r, 400, "validation_error", "password %r" % password)
            self.assertEqual(r.json()["error"]["field"], "password", r)
        self.assertEqual(s.count("SELECT count(*) FROM users WHERE email = %s", email), 0)

        r = call("POST", "/api/auth/register",
                 {"email": email, "password": STRONG_PASSWORD, "name": "S"},
                 headers=["User-Agent: phone/1"])
        self.assertAnswer(r, 201, what="strong password")
        self.assertNotIn("Secure", r.header("Set-Cookie"))
        phone = r.json()["data"]["token"]
        creds = {"email": email, "password": STRONG_PASSWORD}
        # through the trusted proxy, which terminated TLS
        r = call("POST", "/api/auth/login", creds, src=PROXY_SRC,
                 headers=["X-Forwarded-For: 198.51.100.40", "X-Forwarded-Proto: https",
                          "User-Agent: laptop/2"])
        self.assertAnswer(r, 200, what="login through the proxy")
        self.assertIn("; Secure;", r.header("Set-Cookie"))
        laptop = r.json()["data"]["token"]
        # a client that only claims https
        r = call("POST", "/api/auth/login", creds, headers=["X-Forwarded-Proto: https"])
        self.assertNotIn("Secure", r.header("Set-Cookie"))
        tablet = r.json()["data"]["token"]

        r = call("GET", "/api/auth/sessions", token=laptop)
        self.assertAnswer(r, 200, what="list")
        sessions = r.json()["data"]["sessions"]
        self.assertEqual(len(sessions), 3, sessions)
        mine = [x for x in sessions if x["current"]]
        self.assertEqual(len(mine), 1, sessions)
        self.assertEqual(mine[0]["clientAddress"], "198.51.100.40")
        self.assertEqual(mine[0]["userAgent"], "laptop/2")
        by_agent = {x["userAgent"]: x for x in sessions}
        self.assertEqual(by_agent["phone/1"]["clientAddress"], SESSION_SRC)
        for x in sessions:
            self.assertTrue(x["createdAt"] and x["lastSeenAt"] and x["expiresAt"], x)

        # the phone is lost: ended by its id, from the laptop
        r = call("DELETE", "/api/auth/sessions/%d" % by_agent["phone/1"]["id"], token=laptop)
        self.assertAnswer(r, 200, what="end one")
        self.assertAnswer(call("GET", "/api/auth/me", token=phone), 401, "unauthorized", "ended")
        # idle: a session unused past session_idle_seconds is gone
        s.sql("UPDATE sessions SET last_seen_at = now () - make_interval (secs => %s)"
              " WHERE user_id = (SELECT id FROM users WHERE email = %s)"
              " AND user_agent IS NULL", SESSION_IDLE_S + 60, email)
        self.assertAnswer(call("GET", "/api/auth/me", token=tablet), 401, "unauthorized", "idle")
        s.sql("UPDATE sessions SET last_seen_at = now ()"
              " WHERE user_id = (SELECT id FROM users WHERE email = %s)", email)
        # sign out everywhere else: the current one stays
        r = call("POST", "/api/auth/login", creds)
        other = r.json()["data"]["token"]
        r = call("DELETE", "/api/auth/sessions", token=laptop)
        self.assertAnswer(r, 200, what="everywhere else")
        self.assertEqual(r.json()["data"]["ended"], 2, r)
        self.assertAnswer(call("GET", "/api/auth/me", token=other), 401, "unauthorized", "other")
        self.assertAnswer(call("GET", "/api/auth/me", token=laptop), 200, what="current stays")
        self.still_up("sessions_and_passwords", "400x%d/201" % len(weak), listed=3,
                      secure_via_proxy="yes", ended_others=2)


if __name__ == "__main__":
    unittest.main()
