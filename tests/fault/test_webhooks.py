"""Fault 6: webhooks as an attacker and a slow receiver would use them
(issue 11, items 1-3), against a real stack.

The stack runs with webhook_allow_cidrs = 127.0.0.3/32: the test's own
receivers listen on 127.0.0.3 and may be reached, every other loopback
address (and everything private) may not. webhook_ca_file is a CA this
module makes with the openssl command, for the https receivers.

Every case prints one line:

  WEBHOOK <case> ...

Traffic goes only to 127.0.0.0/8; a refused URL is never connected to,
and the tests assert that (a listener on 127.0.0.1 stays silent)."""

import os
import shutil
import socket
import ssl
import subprocess
import tempfile
import threading
import time
import unittest

import faultlib
import harness

STACK = None
OWNER = None                      # one user for most cases (sign-ups may be rate-limited)
CERTS = None
RECEIVER_ADDR = "127.0.0.3"       # the one loopback address webhooks may reach here
PER_USER = 4                      # notifier_webhook_per_user (default)
NOTIFIER_TIMEOUT_S = 5.0          # notifier_webhook_timeout_ms (default)
DELIVERY_WAIT_S = 15.0            # outbox -> outcome, through the notifier's 1 s tick


def setUpModule():
    global STACK, CERTS
    CERTS = make_certificates()
    config = harness.config_file("fault-webhooks",
                                 webhook_allow_cidrs=RECEIVER_ADDR + "/32",
                                 webhook_ca_file=os.path.join(CERTS, "ca.pem"))
    STACK = faultlib.start_stack("fault-webhooks", slot=6, settings={"PHANTOM_CONFIG": config})
    global OWNER
    OWNER = STACK.setup_owner(ports=1)


def tearDownModule():
    if CERTS:
        shutil.rmtree(CERTS, ignore_errors=True)


def make_certificates():
    """A test CA, a server certificate it signed for IP 127.0.0.3, and a
    self-signed one for the same address, in a fresh directory."""
    d = tempfile.mkdtemp(prefix="phantom-webhook-certs-")
    ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    san = "subjectAltName=IP:%s" % RECEIVER_ADDR
    with open(os.path.join(d, "server.ext"), "w") as fh:
        fh.write(san + "\n")
    for args in (
            ["req", "-x509"] + ec + ["-days", "2", "-subj", "/CN=PhantomWatch test CA",
                                     "-addext", "basicConstraints=critical,CA:TRUE",
                                     "-addext", "keyUsage=critical,keyCertSign",
                                     "-keyout", "ca.key", "-out", "ca.pem"],
            ["req"] + ec + ["-subj", "/CN=" + RECEIVER_ADDR, "-keyout", "server.key",
                            "-out", "server.csr"],
            ["x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
             "-CAcreateserial", "-days", "2", "-extfile", "server.ext", "-out", "server.pem"],
            ["req", "-x509"] + ec + ["-days", "2", "-subj", "/CN=" + RECEIVER_ADDR,
                                     "-addext", san, "-keyout", "rogue.key",
                                     "-out", "rogue.pem"]):
        subprocess.run(["openssl"] + args, cwd=d, check=True, capture_output=True, timeout=30)
    return d


# ----------------------------------------------------------------------
# receivers, all on loopback

class AcceptLoop:
    """A TCP listener on a free port of addr whose thread hands each
    connection it accepts to on_accept(conn), until close()."""

    def __init__(self, addr, backlog):
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.bind((addr, 0))
        self.sock.listen(backlog)
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self._stop = threading.Event()
        self._accepter = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
            except socket.timeout:
                continue
            except OSError:
                break
            self.on_accept(conn)

    def close(self):
        self._stop.set()
        self._accepter.join(2)
        self.sock.close()


class Listener(AcceptLoop):
    """A TCP listener that only counts the connections it is offered
    (and closes them): a refused webhook must never reach it."""

    def __init__(self, addr="127.0.0.1"):
        super().__init__(addr, 16)
        self.accepted = 0
        self._accepter.start()

    def on_accept(self, conn):
        self.accepted += 1
        conn.close()


def TlsReceiver(secret, certificate, key):
    """harness.WebhookReceiver on 127.0.0.3 over TLS with certificate/key."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(certificate, key)
    return harness.WebhookReceiver(secret, addr=RECEIVER_ADDR, context=context)


def PlainReceiver(secret):
    """harness.WebhookReceiver on 127.0.0.3 (it notes when each POST arrived)."""
    return harness.WebhookReceiver(secret, addr=RECEIVER_ADDR)


class TrickleReceiver(AcceptLoop):
    """Reads each request, then answers 200 one byte a second (bounded: at
    most 60 s per connection, and until close()). Counts connections and
    the most open at once."""

    ANSWER = b"HTTP/1.1 200 Slow\r\nContent-Length: 0\r\n\r\n"

    def __init__(self):
        super().__init__(RECEIVER_ADDR, 64)
        self.url = "http://%s:%d/slow" % (RECEIVER_ADDR, self.port)
        self.connections = 0
        self.open = 0
        self.most_open = 0
        self._lock = threading.Lock()
        self._threads = []
        self._accepter.start()

    def on_accept(self, conn):
        with self._lock:
            self.connections += 1
            self.open += 1
            self.most_open = max(self.most_open, self.open)
        t = threading.Thread(target=self._serve, args=(conn,), daemon=True)
        self._threads.append(t)
        t.start()

    def _serve(self, conn):
        try:
            conn.settimeout(0.2)
            deadline = time.monotonic() + 60
            data = b""
            while b"\r\n\r\n" not in data and time.monotonic() < deadline \
                    and not self._stop.is_set():
                try:
                    chunk = conn.recv(65536)
                except socket.timeout:
                    continue
                if not chunk:
                    return
                data += chunk
            for byte in self.ANSWER:
                if self._stop.wait(1.0) or time.monotonic() > deadline:
                    return
                conn.sendall(bytes([byte]))
        except OSError:
            pass
        finally:
            conn.close()
            with self._lock:
                self.open -= 1

    def close(self):
        self._stop.set()
        self._accepter.join(2)
        for t in self._threads:
            t.join(2)
        super().close()


# ----------------------------------------------------------------------

def wait_until(fn, timeout, step=0.05):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = fn()
        if value:
            return value
        time.sleep(step)
    return fn()


def last_delivery(token, webhook_id):
    doc = STACK.expect(200, "GET", "/api/webhooks", None, token)
    for hook in doc["data"]["webhooks"]:
        if hook["id"] == webhook_id:
            return hook["lastDelivery"]
    raise AssertionError("webhook %s not listed: %s" % (webhook_id, doc))


def create_webhook(token, url, secret=None):
    body = {"url": url}
    if secret:
        body["secret"] = secret
    return STACK.expect(201, "POST", "/api/webhooks", body, token)["data"]


class WebhookCase(unittest.TestCase):

    def tearDown(self):
        # each case starts with no webhooks of OWNER's
        doc = STACK.expect(200, "GET", "/api/webhooks", None, OWNER["token"])
        for hook in doc["data"]["webhooks"]:
            STACK.expect(200, "DELETE", "/api/webhooks/%d" % hook["id"], None, OWNER["token"])

    def test_refused_at_creation(self):
        owner = OWNER
        urls = ["http://127.0.0.1:%s/" % STACK.conf.get("PHANTOM_PG_PORT", "5432"),
                "http://[::1]/hook", "http://0x7f000001/", "http://2130706433/",
                "http://127.1/", "http://0177.0.0.1/", "http://localhost:8123/api/webhook/x",
                "http://127.0.0.2/", "http://169.254.169.254/latest/meta-data/",
                "http://10.0.0.1/", "http://172.16.0.1/", "http://192.168.1.1:8123/",
                "http://100.64.0.1/", "http://[fe80::1]/", "http://[fc00::1]/",
                "http://[::ffff:127.0.0.1]/", "http://[::ffff:10.0.0.1]/",
                "http://[::ffff:169.254.169.254]/", "http://0.0.0.0/", "http://[::]/",
                "http://224.0.0.1/", "http://255.255.255.255/",
                "https://127.0.0.1:%d/" % STACK.http_port]
        answers = {}
        for url in urls:
            status, _, doc = STACK.api("POST", "/api/webhooks", {"url": url},
                                       owner["token"])
            answers[url] = (status, (doc or {}).get("error", {}).get("field"),
                            (doc or {}).get("message"))
        wrong = {u: a for u, a in answers.items() if a[0] != 400 or a[1] != "url"}
        self.assertEqual(wrong, {}, "not refused with 400 on field url")
        listed = STACK.expect(200, "GET", "/api/webhooks", None, owner["token"])
        self.assertEqual(listed["data"]["webhooks"], [])
        # the allow-list names exactly 127.0.0.3
        allowed = create_webhook(owner["token"], "http://%s:9/x" % RECEIVER_ADDR)
        STACK.expect(200, "DELETE", "/api/webhooks/%d" % allowed["webhook"]["id"], None,
                     owner["token"])
        print("\nWEBHOOK refused_at_creation urls=%d status=400 field=url example=%r"
              % (len(urls), answers["http://0x7f000001/"][2]))

    def test_refused_at_delivery(self):
        """A URL stored before the check (as an old build did) is not
        connected to: the listener stays silent, the user sees only
        'address not allowed', at once and for good."""
        owner = OWNER
        listener = Listener("127.0.0.1")
        try:
            url = "http://127.0.0.1:%d/hook" % listener.port
            hook_id = int(STACK.scalar(
                "INSERT INTO webhooks (user_id, url, secret) VALUES (%s, %s, 'old-secret-0123456')"
                " RETURNING id", owner["user"]["id"], url))
            STACK.expect(202, "POST", "/api/webhooks/%d/test" % hook_id, None, owner["token"])
            last = wait_until(lambda: (lambda d: d if d and d["status"] != "pending" else None)(
                last_delivery(owner["token"], hook_id)), DELIVERY_WAIT_S)
            time.sleep(0.5)
            self.assertEqual(listener.accepted, 0, "the notifier connected to %s" % url)
            self.assertIsNotNone(last, "no outcome within %.0f s" % DELIVERY_WAIT_S)
            self.assertEqual(last["status"], "failed", last)
            self.assertEqual(last["attempts"], 1, last)
            self.assertEqual(last["lastError"], "address not allowed", last)
            print("\nWEBHOOK refused_at_delivery status=%s attempts=%d lastError=%r accepted=%d"
                  % (last["status"], last["attempts"], last["lastError"], listener.accepted))
        finally:
            listener.close()

    def test_https(self):
        """https to a receiver whose certificate the configured CA signed is
        delivered, signed; a self-signed certificate is a 'TLS error' and
        never gets the body."""
        owner = OWNER
        secret = "https-secret-0123456789"
        good = TlsReceiver(secret, os.path.join(CERTS, "server.pem"),
                           os.path.join(CERTS, "server.key"))
        rogue = TlsReceiver(secret, os.path.join(CERTS, "rogue.pem"),
                            os.path.join(CERTS, "rogue.key"))
        try:
            good_id = create_webhook(owner["token"], good.url, secret)["webhook"]["id"]
            rogue_id = create_webhook(owner["token"], rogue.url, secret)["webhook"]["id"]
            for hook_id in (good_id, rogue_id):
                STACK.expect(202, "POST", "/api/webhooks/%d/test" % hook_id, None,
                             owner["token"])
            delivered = wait_until(lambda: (lambda d: d if d and d["status"] == "delivered"
                                            else None)(last_delivery(owner["token"], good_id)),
                                   DELIVERY_WAIT_S)
            self.assertIsNotNone(delivered, last_delivery(owner["token"], good_id))
            reqs = good.received()
            self.assertEqual(len(reqs), 1, reqs)
            self.assertTrue(reqs[0]["signature_ok"], reqs[0])
            self.assertEqual(reqs[0]["json"]["kind"], "webhook.test", reqs[0])
            rogue_last = wait_until(lambda: (lambda d: d if d and d["lastError"] else None)(
                last_delivery(owner["token"], rogue_id)), DELIVERY_WAIT_S)
            self.assertIsNotNone(rogue_last)
            self.assertEqual(rogue_last["lastError"], "TLS error", rogue_last)
            self.assertEqual(rogue.received(), [])
            print("\nWEBHOOK https delivered=%s signature_ok=%s self_signed=%r"
                  % (delivered["status"], reqs[0]["signature_ok"], rogue_last["lastError"]))
        finally:
            good.close()
            rogue.close()

    def test_slow_receiver_delays_nobody_else(self):
        """User A's ten webhooks answer one byte a second. User B's webhook
        gets B's phantom.start within 1 s of the reading that started it,
        and A never holds more than its share of connections."""
        a = STACK.setup_owner(ports=0)
        b = OWNER
        trickle = TrickleReceiver()
        quick = PlainReceiver("quick-secret-0123456789")
        try:
            a_hooks = [create_webhook(a["token"], trickle.url)["webhook"]["id"]
                       for _ in range(10)]
            create_webhook(b["token"], quick.url, "quick-secret-0123456789")
            for hook_id in a_hooks:
                STACK.expect(202, "POST", "/api/webhooks/%d/test" % hook_id, None, a["token"])
            # A's deliveries are under way (the notifier looks every second)
            self.assertTrue(wait_until(lambda: trickle.connections >= 1, 5),
                            "A's deliveries never started")
            time.sleep(0.5)
            # B: active, then 5 W from 120 s to 60 s ago by device time;
            # the reading 60 s into the low run makes the port phantom
            now = harness.now_ms()
            t0 = now - now % 1000 - 130000
            series = [(t0, 60.0)] + [(t0 + 10000 * i, 5.0) for i in range(1, 8)]
            event_at = None
            for ts, watts in series:
                status, _, doc = STACK.post_reading(
                    b["device_token"], b["ports"][0], power=watts,
                    current=round(watts / 230.0, 6), voltage=230.0,
                    timestamp=harness.iso_ms(ts))
                self.assertEqual(status, 201, doc)
                if doc["data"]["portStatus"] == "phantom":
                    event_at = time.monotonic()
                    break
            self.assertIsNotNone(event_at, "B's port never went phantom")
            got = wait_until(lambda: [r for r in quick.received()
                                      if (r["json"] or {}).get("kind") == "phantom.start"], 5)
            self.assertTrue(got, "B's phantom.start never arrived; received %s"
                            % quick.received())
            index = quick.received().index(got[0])
            took = quick.times[index] - event_at
            print("\nWEBHOOK slow_receiver other_user_ms=%.0f a_connections=%d a_most_open=%d"
                  % (took * 1000, trickle.connections, trickle.most_open))
            self.assertLess(took, 1.0, "B's webhook took %.2f s" % took)
            self.assertLessEqual(trickle.most_open, PER_USER)
        finally:
            trickle.close()
            quick.close()


if __name__ == "__main__":
    unittest.main()
