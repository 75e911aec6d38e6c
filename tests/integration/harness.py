"""harness - a real PhantomWatch stack for the integration tests.

One Stack per test module: deploy/up starts a private PostgreSQL cluster and
the four services under supervisord in $PHANTOM_BUILD_DIR/test-var/<name>,
on ports of our own (HTTP 3201-3299, PG 5521-5529, ZMQ 6700-6999), and
deploy/down --purge removes it all again.

Environment:
  PHANTOM_REPO        source tree (default: two levels above this file)
  PHANTOM_BUILD_DIR   build tree with services/*/phantom-* (default: $PHANTOM_REPO/build)
  PHANTOM_ALLOW_SKIP  1: skip (exit 77 through run.py) when deploy/up or the
                      build tree is missing, instead of failing
  PHANTOM_KEEP_VAR    1: deploy/down without --purge, to read the logs afterwards

Python 3 standard library only.
"""

import http.client
import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("PHANTOM_REPO") or os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("PHANTOM_BUILD_DIR") or os.path.join(REPO, "build")

#  Each module asks for its own slot so modules can also run side by side:
#  slot k uses HTTP 3201+k, PG 5521+k and the ZMQ base 6700+10k (verdict
#  base, ack base+1, readings base+100+i, events base+200+i: the stride of
#  10 keeps the bases of two slots from overlapping for up to 10 partitions).
SLOTS = 9

UP_TIMEOUT = 180          # deploy/up: initdb, migrations, supervisord start
DOWN_TIMEOUT = 60
READY_TIMEOUT = 30        # /healthz 200 after deploy/up returned
HTTP_TIMEOUT = 20         # one request; the gateway's ack timeout is 5 s

ISO_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
STATUSES = ("active", "idle", "phantom", "off", "offline")


def fnv1a32(text):
    """FNV-1a 32-bit of text's UTF-8 bytes, as proto_partition() hashes."""
    h = 2166136261
    for b in text.encode("utf-8"):
        h ^= b
        h = (h * 16777619) & 0xFFFFFFFF
    return h


def partition_of(port_id, partitions):
    return fnv1a32(port_id) % partitions


def iso_ms(ms):
    """ms since epoch -> 2024-01-01T12:00:00.000Z"""
    secs, rest = divmod(int(ms), 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(secs)) + ".%03dZ" % rest


def now_ms():
    return int(time.time() * 1000)


def _port_free(port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", port))
        return True
    except OSError:
        return False
    finally:
        s.close()


def _skip_or_fail(reason):
    if os.environ.get("PHANTOM_ALLOW_SKIP") == "1":
        raise unittest.SkipTest(reason)
    raise RuntimeError(reason + " (set PHANTOM_ALLOW_SKIP=1 to skip instead)")


class ApiError(AssertionError):
    pass


class Stack:
    """A running PhantomWatch, its addresses and test helpers."""

    def __init__(self):
        self.name = None
        self.var = None
        self.env = None           # environment for deploy/* commands
        self.conf = {}            # PHANTOM_* from $PHANTOM_VAR/phantomwatch.env
        self.base_url = None
        self.http_port = None
        self.database = None
        self.partitions = 2
        self.started = False

    # ------------------------------------------------------------------
    # lifecycle

    def start(self, name, partitions=2, simulator=False, slot=0):
        self.name = name
        self.partitions = partitions
        up = os.path.join(REPO, "deploy", "up")
        if not os.access(up, os.X_OK):
            _skip_or_fail("no executable %s" % up)
        if not os.path.isdir(BUILD):
            _skip_or_fail("no build dir %s" % BUILD)
        if not any(
            os.path.exists(os.path.join(BUILD, "services", svc, "phantom-" + svc))
            for svc in ("gateway", "detector", "store", "notifier")
        ):
            _skip_or_fail("no services built in %s" % BUILD)

        self.var = os.path.join(BUILD, "test-var", name)
        # A stack left over by an interrupted run would hold our ports.
        if os.path.exists(self.var):
            self._down(purge=True, env=self._base_env(self.var))
        subprocess.run(["rm", "-rf", self.var], check=False)
        os.makedirs(os.path.dirname(self.var), exist_ok=True)

        http_port, pg_port, zmq_base = self._pick_ports(slot, partitions)
        self.http_port = http_port
        env = self._base_env(self.var)
        env.update({
            "PHANTOM_HTTP_PORT": str(http_port),
            "PHANTOM_PG_PORT": str(pg_port),
            "PHANTOM_ZMQ_PORT_BASE": str(zmq_base),
            "PHANTOM_PARTITIONS": str(partitions),
            "PHANTOM_SIMULATOR": "1" if simulator else "0",
            "PHANTOM_SEED": "0",
            "PHANTOM_SKIP_INSTALL": "1",
            "PHANTOM_SKIP_BUILD": "1",
        })
        self.env = env
        self.started = True        # from here on stop() has something to do
        t0 = time.time()
        try:
            p = subprocess.run([up], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError("deploy/up did not finish in %d s\n%s\n%s" % (
                UP_TIMEOUT, _text(e.stdout), _text(e.stderr)) + self.log_tail())
        if p.returncode != 0:
            raise RuntimeError("deploy/up exited %d\nstdout:\n%s\nstderr:\n%s" % (
                p.returncode, p.stdout[-4000:], p.stderr[-4000:]) + self.log_tail())

        envfile = os.path.join(self.var, "phantomwatch.env")
        if not os.path.exists(envfile):
            raise RuntimeError("deploy/up did not write %s" % envfile)
        self.conf = _source_env(envfile)
        self.database = self.conf.get("PHANTOM_DATABASE")
        if not self.database:
            raise RuntimeError("%s has no PHANTOM_DATABASE" % envfile)
        port = self.conf.get("PHANTOM_HTTP_PORT", str(http_port))
        self.http_port = int(port)
        self.base_url = "http://127.0.0.1:%d" % self.http_port
        # deploy/ctl needs to find this stack too
        self.env.update(self.conf)
        self.wait_ready(READY_TIMEOUT)
        sys.stderr.write("stack %s up in %.1f s at %s\n" % (name, time.time() - t0, self.base_url))
        return self

    def stop(self):
        if not self.started:
            return
        self.started = False
        keep = os.environ.get("PHANTOM_KEEP_VAR") == "1"
        self._down(purge=not keep, env=self.env)

    def _base_env(self, var):
        # nothing PHANTOM_* from the caller's shell (a PHANTOM_DATABASE or
        # PHANTOM_CONFIG there would point the stack elsewhere)
        env = {k: v for k, v in os.environ.items() if not k.startswith("PHANTOM_")}
        env["PHANTOM_VAR"] = var
        env["PHANTOM_BUILD_DIR"] = BUILD
        env["PHANTOM_REPO"] = REPO
        return env

    def _down(self, purge, env):
        down = os.path.join(REPO, "deploy", "down")
        args = [down] + (["--purge"] if purge else [])
        try:
            p = subprocess.run(args, cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=DOWN_TIMEOUT)
            if p.returncode != 0:
                sys.stderr.write("deploy/down exited %d: %s %s\n" % (
                    p.returncode, p.stdout[-2000:], p.stderr[-2000:]))
        except (OSError, subprocess.TimeoutExpired) as e:
            sys.stderr.write("deploy/down failed: %s\n" % e)

    def _pick_ports(self, slot, partitions):
        for k in list(range(slot, SLOTS)) + list(range(0, slot)):
            http_port, pg_port, base = 3201 + k, 5521 + k, 6700 + 10 * k
            ports = [http_port, pg_port, base, base + 1]
            ports += [base + 100 + i for i in range(partitions)]
            ports += [base + 200 + i for i in range(partitions)]
            if all(_port_free(p) for p in ports):
                return http_port, pg_port, base
        raise RuntimeError("no free slot of test ports (HTTP 3201-3209 busy?)")

    def wait_ready(self, timeout):
        deadline = time.time() + timeout
        last = None
        while time.time() < deadline:
            try:
                status, _, _ = self.api("GET", "/healthz", timeout=2)
                if status == 200:
                    return
                last = "status %d" % status
            except (OSError, http.client.HTTPException) as e:
                last = repr(e)
            time.sleep(0.2)
        raise RuntimeError("GET /healthz not 200 within %d s (last: %s)" % (timeout, last)
                           + self.log_tail())

    def log_tail(self, lines=30):
        """The last lines of every log under $PHANTOM_VAR/log, for failure messages."""
        out = []
        logdir = os.path.join(self.var or "", "log")
        if os.path.isdir(logdir):
            for f in sorted(os.listdir(logdir)):
                path = os.path.join(logdir, f)
                try:
                    with open(path, "rb") as fh:
                        text = fh.read()[-8000:].decode("utf-8", "replace")
                except OSError:
                    continue
                tail = "\n".join(text.splitlines()[-lines:])
                out.append("--- %s\n%s" % (path, tail))
        return ("\n" + "\n".join(out)) if out else ""

    # ------------------------------------------------------------------
    # process control

    def ctl(self, *args, timeout=60, check=True):
        """deploy/ctl (supervisorctl for this stack); returns stdout."""
        p = subprocess.run([os.path.join(REPO, "deploy", "ctl")] + list(args), cwd=REPO,
                           env=self.env, capture_output=True, text=True, timeout=timeout)
        # supervisorctl exits non-zero for "status" of a stopped program; callers decide
        if check and p.returncode != 0 and args and args[0] not in ("status",):
            raise RuntimeError("deploy/ctl %s exited %d: %s %s" % (
                " ".join(args), p.returncode, p.stdout, p.stderr))
        return p.stdout

    def pid(self, program):
        out = self.ctl("pid", program).strip()
        try:
            return int(out.split()[-1])
        except (ValueError, IndexError):
            return 0

    def wait_running(self, program, old_pid=None, timeout=20):
        """Waits until supervisord reports program RUNNING (with a pid other than old_pid)."""
        deadline = time.time() + timeout
        while time.time() < deadline:
            out = self.ctl("status", program, check=False)
            if "RUNNING" in out:
                pid = self.pid(program)
                if pid > 0 and pid != old_pid:
                    return pid
            time.sleep(0.2)
        raise AssertionError("%s not RUNNING again within %d s: %s" % (
            program, timeout, self.ctl("status", check=False)))

    # ------------------------------------------------------------------
    # HTTP

    def api(self, method, path, body=None, token=None, headers=None, timeout=HTTP_TIMEOUT):
        """One request on a fresh connection. body: dict/list (JSON-encoded),
        str/bytes (sent as is) or None. Returns (status, headers, json or None);
        headers have lower-case names."""
        conn = http.client.HTTPConnection("127.0.0.1", self.http_port, timeout=timeout)
        try:
            hdrs = {}
            data = None
            if body is not None:
                if isinstance(body, (dict, list)):
                    data = json.dumps(body).encode()
                elif isinstance(body, str):
                    data = body.encode()
                else:
                    data = body
                hdrs["Content-Type"] = "application/json"
            if token:
                hdrs["Authorization"] = "Bearer " + token
            hdrs.update(headers or {})
            conn.request(method, path, body=data, headers=hdrs)
            resp = conn.getresponse()
            raw = resp.read()
            rh = {k.lower(): v for k, v in resp.getheaders()}
            try:
                doc = json.loads(raw) if raw else None
            except ValueError:
                doc = None
            return resp.status, rh, doc
        finally:
            conn.close()

    def expect(self, want, method, path, body=None, token=None):
        """api() that insists on status want; returns the JSON document."""
        status, _, doc = self.api(method, path, body, token)
        if status != want:
            raise ApiError("%s %s %s: expected %d, got %d %s" % (
                method, path, json.dumps(body)[:300], want, status, doc))
        return doc

    # ------------------------------------------------------------------
    # PostgreSQL

    def sql(self, query, *params):
        """Runs query through psql; %s placeholders become psql variables
        (:'p1' ...), quoted by psql itself. Returns a list of row tuples (text)."""
        parts = query.split("%s")
        if len(parts) - 1 != len(params):
            raise ValueError("query has %d placeholders, %d params" % (len(parts) - 1, len(params)))
        text = parts[0]
        args = ["psql", self.database, "-X", "-q", "-At", "-F", "\x1f",
                "-v", "ON_ERROR_STOP=1"]
        for i, (param, rest) in enumerate(zip(params, parts[1:]), 1):
            text += ":'p%d'" % i + rest
            args += ["-v", "p%d=%s" % (i, param)]
        # stdin, not -c: psql interpolates variables only in what it reads as a script
        p = subprocess.run(args, input=text + ";\n", capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("psql failed (%d): %s\nquery: %s" % (p.returncode, p.stderr, text))
        return [tuple(line.split("\x1f")) for line in p.stdout.splitlines() if line != ""]

    def scalar(self, query, *params):
        rows = self.sql(query, *params)
        return rows[0][0] if rows else None

    def count(self, query, *params):
        return int(self.scalar(query, *params))

    # ------------------------------------------------------------------
    # domain helpers

    def register_user(self, name="Tester"):
        """Returns (user dict, bearer token, email, password)."""
        email = "t-%s@example.test" % uuid.uuid4().hex[:12]
        password = "pw-" + uuid.uuid4().hex
        doc = self.expect(201, "POST", "/api/auth/register",
                          {"email": email, "password": password, "name": name})
        return doc["data"]["user"], doc["data"]["token"], email, password

    def create_device(self, token, name="board"):
        doc = self.expect(201, "POST", "/api/devices", {"name": name}, token)
        return doc["data"]["device"]

    def device_token(self, token, device_id):
        doc = self.expect(201, "POST", "/api/devices/%s/token" % device_id, None, token)
        return doc["data"]["token"]

    def create_device_and_token(self, token, name="board"):
        """Returns (device dict, device token)."""
        device = self.create_device(token, name)
        return device, self.device_token(token, device["id"])

    def create_port(self, token, device_id, name="outlet"):
        doc = self.expect(201, "POST", "/api/ports", {"name": name, "deviceId": device_id}, token)
        return doc["data"]["port"]

    def setup_owner(self, ports=1):
        """A user with one device, its token and n ports.
        Returns dict(user, token, device, device_token, ports=[port ids])."""
        user, token, _, _ = self.register_user()
        device, dtoken = self.create_device_and_token(token)
        ids = [self.create_port(token, device["id"], "outlet %d" % i)["id"]
               for i in range(ports)]
        return {"user": user, "token": token, "device": device, "device_token": dtoken,
                "ports": ids}

    def post_reading(self, device_token, port_id, voltage=230.5, current=0.45, power=103.73,
                     timeout=HTTP_TIMEOUT, **extra):
        """POST /api/sensor/reading; extra keys (timestamp, readingId) are added.
        Returns (status, headers, json)."""
        body = {"deviceToken": device_token, "portId": port_id,
                "voltage": voltage, "current": current, "power": power}
        body.update(extra)
        return self.api("POST", "/api/sensor/reading", body, timeout=timeout)

    def readings_count(self, port_id=None):
        if port_id is None:
            return self.count("SELECT count(*) FROM readings")
        return self.count("SELECT count(*) FROM readings WHERE port_id = %s", port_id)


def _text(b):
    if b is None:
        return ""
    return b.decode("utf-8", "replace") if isinstance(b, bytes) else b


def _source_env(path):
    """PHANTOM_* variables after sourcing path in bash (any quoting it uses)."""
    p = subprocess.run(["bash", "-c", 'set -a; . "$1" >/dev/null; env -0', "_", path],
                       capture_output=True, timeout=10, env={"PATH": os.environ.get("PATH", "")})
    if p.returncode != 0:
        raise RuntimeError("cannot source %s: %s" % (path, p.stderr.decode("utf-8", "replace")))
    out = {}
    for item in p.stdout.split(b"\0"):
        if b"=" in item:
            k, v = item.decode("utf-8", "replace").split("=", 1)
            if k.startswith("PHANTOM_"):
                out[k] = v
    return out


#  One stack per module: each test module calls start_module_stack() in
#  setUpModule; the cleanup is registered before start so a half-started
#  stack is torn down too.
def start_module_stack(name, slot, partitions=2):
    stack = Stack()
    unittest.addModuleCleanup(stack.stop)
    # SIGTERM from ctest's TIMEOUT: leave through the cleanups, not around them
    signal.signal(signal.SIGTERM, lambda *_: (stack.stop(), os._exit(1)))
    stack.start(name, partitions=partitions, slot=slot)
    return stack
