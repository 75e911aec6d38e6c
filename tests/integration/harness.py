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

import fcntl
import hashlib
import hmac
import http.client
import http.server
import json
import os
import re
import secrets
import signal
import socket
import subprocess
import sys
import threading
import time
import unittest
import uuid

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.environ.get("PHANTOM_REPO") or os.path.dirname(os.path.dirname(HERE))
BUILD = os.environ.get("PHANTOM_BUILD_DIR") or os.path.join(REPO, "build")

#  Each module asks for its own slot so modules can also run side by side:
#  slot k uses HTTP 3201+k (the gateway behind deploy/up's HAProxy front
#  4201+k: GATEWAY_PORT_OFFSET), PG 5521+k and the ZMQ base 6700+10k (verdict
#  base, ack base+1, readings base+100+i, events base+200+i: the stride of
#  10 keeps the bases of two slots from overlapping for up to 10 partitions).
#  A slot is claimed with a lock file before its ports are checked, so two
#  modules started at the same moment cannot both see a slot free.
SLOTS = 10
SLOT_LOCK_DIR = "/tmp/phantomwatch-test-slots"
GATEWAY_PORT_OFFSET = 1000   # deploy/lib.sh: the gateway's port is http_port + 1000
MQTT_PORT_BASE = 1900        # slot k's broker (mosquitto) listens on 1900+k

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
        self.mqtt_port = None     # the broker's (deploy/up's mosquitto)
        self.database = None
        self.partitions = 2
        self.started = False

    # ------------------------------------------------------------------
    # lifecycle

    # ZeroMQ links: TCP, so Tap can see its connections in /proc/net/tcp
    # (deploy/up's default, ipc, runs in the fault suite and the browser test).
    transport = "tcp"

    def start(self, name, partitions=2, simulator=False, slot=0, reserve_partitions=None,
              settings=None):
        """reserve_partitions: also require the ZMQ ports of that many
        partitions to be free, for a test that scales up later (redeploy).
        settings: more PHANTOM_* for deploy/up (e.g. PHANTOM_CURVE="1")."""
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

        http_port, pg_port, zmq_base = self._pick_ports(
            slot, max(partitions, reserve_partitions or 0))
        self.http_port = http_port
        env = self._base_env(self.var)
        env.update({
            "PHANTOM_HTTP_PORT": str(http_port),
            "PHANTOM_PG_PORT": str(pg_port),
            "PHANTOM_ZMQ_PORT_BASE": str(zmq_base),
            "PHANTOM_MQTT_PORT": str(self.mqtt_port),
            "PHANTOM_ZMQ_TRANSPORT": self.transport,
            "PHANTOM_PARTITIONS": str(partitions),
            "PHANTOM_SIMULATOR": "1" if simulator else "0",
            "PHANTOM_SEED": "0",
            "PHANTOM_SKIP_INSTALL": "1",
            "PHANTOM_SKIP_BUILD": "1",
            # phantom-mqtt's metrics: 16 ports per slot (instance i: + i).
            "PHANTOM_MQTT_METRICS_PORT": str(9900 + 16 * (http_port - 3201)),
        })
        env.update({k: str(v) for k, v in (settings or {}).items()})
        self.env = env
        self.up_env = dict(env)    # what deploy/up was given, for redeploy()
        self.started = True        # from here on stop() has something to do
        t0 = time.time()
        self.last_up_output = self._run_up(env)
        self._load_conf(http_port)
        self.wait_ready(READY_TIMEOUT)
        sys.stderr.write("stack %s up in %.1f s at %s\n" % (name, time.time() - t0, self.base_url))
        return self

    def redeploy(self, **settings):
        """Runs deploy/up again on the same PHANTOM_VAR with the first run's
        settings changed by settings (e.g. PHANTOM_PARTITIONS="4"), as an
        operator would; re-reads phantomwatch.env and waits for /healthz.
        Returns deploy/up's stdout + stderr."""
        env = dict(self.up_env)
        env.update({k: str(v) for k, v in settings.items()})
        self.up_env = env
        self.env = dict(env)
        t0 = time.time()
        out = self._run_up(env)
        self.last_up_output = out
        self._load_conf(self.http_port)
        self.wait_ready(READY_TIMEOUT)
        sys.stderr.write("stack %s redeployed in %.1f s (%s)\n" % (
            self.name, time.time() - t0, settings))
        return out

    def _run_up(self, env):
        up = os.path.join(REPO, "deploy", "up")
        try:
            p = subprocess.run([up], cwd=REPO, env=env, capture_output=True, text=True,
                               timeout=UP_TIMEOUT)
        except subprocess.TimeoutExpired as e:
            raise RuntimeError("deploy/up did not finish in %d s\n%s\n%s" % (
                UP_TIMEOUT, _text(e.stdout), _text(e.stderr)) + self.log_tail())
        if p.returncode != 0:
            raise RuntimeError("deploy/up exited %d\nstdout:\n%s\nstderr:\n%s" % (
                p.returncode, p.stdout[-4000:], p.stderr[-4000:]) + self.log_tail())
        return p.stdout + p.stderr

    def _load_conf(self, http_port):
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
        try:
            self.partitions = int(self.conf.get("PHANTOM_PARTITIONS", self.partitions))
        except ValueError:
            pass

    def stop(self):
        if not self.started:
            return
        self.started = False
        keep = os.environ.get("PHANTOM_KEEP_VAR") == "1"
        self._down(purge=not keep, env=self.env)
        self._release_slot()

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
            self.mqtt_port = MQTT_PORT_BASE + k
            ports = [http_port, http_port + GATEWAY_PORT_OFFSET, pg_port, base, base + 1,
                     self.mqtt_port]
            ports += [base + 100 + i for i in range(partitions)]
            ports += [base + 200 + i for i in range(partitions)]
            if not self._claim_slot(k):
                continue
            if all(_port_free(p) for p in ports):
                return http_port, pg_port, base
            self._release_slot()
        raise RuntimeError("no free slot of test ports (HTTP 3201-%d busy?)" % (3200 + SLOTS))

    def _claim_slot(self, k, kind="slot"):
        """An exclusive lock on SLOT_LOCK_DIR/slot-k, held until stop() or the
        process ends: the port check alone races with a module starting
        beside us (both see the ports free, the second PostgreSQL fails).
        The ports are the machine's, so the lock is too (not the build
        directory's: two checkouts testing at once share the slots)."""
        if not os.path.isdir(SLOT_LOCK_DIR):
            os.makedirs(SLOT_LOCK_DIR, exist_ok=True)
            os.chmod(SLOT_LOCK_DIR, 0o1777)     # like /tmp: any user's tests
        path = os.path.join(SLOT_LOCK_DIR, "%s-%d" % (kind, k))
        fd = os.open(path, os.O_RDONLY | os.O_CREAT, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            os.close(fd)
            return False
        self.slot_fd = fd
        return True

    def _release_slot(self):
        if getattr(self, "slot_fd", None) is not None:
            os.close(self.slot_fd)     # closing drops the flock
            self.slot_fd = None

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

    def detector_program(self, port_id):
        """supervisord name of the detector that owns port_id now."""
        return "detector:detector-%d" % partition_of(port_id, self.partitions)

    def detector_programs(self):
        """{program name: state} of every detector supervisord knows."""
        out = {}
        for line in self.ctl("status", check=False).splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].startswith("detector:"):
                out[fields[0]] = fields[1]
        return out

    def tap(self, *prefixes, count=None, wait=60, partitions=None):
        """Starts phantom-tap on this stack's event bus (topic prefixes, -n
        count, -w wait); returns a Tap once it is connected. partitions: a
        list of partition numbers to listen to only (-e each), default all
        of them through the config."""
        return Tap(self, prefixes, count, wait, partitions)

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
        password = "pw-" + secrets.token_urlsafe(24)
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

    def post_until_acked(self, device_token, port_id, key, deadline_s=30, retry=(503, 504),
                         **kw):
        """post_reading with readingId key, retried with the same key on
        retry statuses and connection errors until deadline_s. Returns
        (status, doc, attempts)."""
        deadline = time.time() + deadline_s
        attempts = 0
        while True:
            attempts += 1
            try:
                status, _, doc = self.post_reading(device_token, port_id, readingId=key,
                                                   timeout=15, **kw)
            except OSError as e:
                status, doc = None, repr(e)
            if status not in tuple(retry) + (None,) or time.time() > deadline:
                return status, doc, attempts
            time.sleep(0.2)

    def readings_count(self, port_id=None):
        if port_id is None:
            return self.count("SELECT count(*) FROM readings")
        return self.count("SELECT count(*) FROM readings WHERE port_id = %s", port_id)


def wait_for(predicate, timeout, interval=0.2):
    """Polls predicate() until it returns something true; returns that, or
    the last (false) value after timeout seconds."""
    deadline = time.time() + timeout
    while True:
        value = predicate()
        if value or time.time() >= deadline:
            return value
        time.sleep(interval)


def tap_binary():
    path = os.path.join(BUILD, "tools", "phantom-tap", "phantom-tap")
    return path if os.access(path, os.X_OK) else None


class Tap:
    """phantom-tap as a child process; its stdout lines, parsed, in .events."""

    def __init__(self, stack, prefixes, count, wait, partitions=None):
        binary = tap_binary()
        if not binary:
            raise RuntimeError("no phantom-tap under %s/tools/phantom-tap" % BUILD)
        base = int(stack.conf.get("PHANTOM_ZMQ_PORT_BASE", "0")) + 200
        explicit = partitions is not None
        self.ports = {base + i for i in (partitions if explicit else range(stack.partitions))}
        args = [binary, "-c", os.path.join(REPO, "deploy", "phantomwatch.conf"),
                "-w", str(int(wait))]
        if explicit:
            for p in sorted(self.ports):
                args += ["-e", "tcp://127.0.0.1:%d" % p]
        for prefix in prefixes:
            args += ["-t", prefix]
        if count:
            args += ["-n", str(int(count))]
        # the stack's PHANTOM_* (event endpoint, partitions) override the config
        self.events = []
        self.garbage = []           # stdout lines that are not JSON objects
        self.proc = subprocess.Popen(args, cwd=REPO, env=stack.env, stdout=subprocess.PIPE,
                                     stderr=subprocess.PIPE, text=True)
        self._lock = threading.Lock()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()
        self._wait_connected(5.0)

    def _read(self):
        for line in self.proc.stdout:
            line = line.strip()
            if not line:
                continue
            try:
                doc = json.loads(line)
            except ValueError:
                doc = None
            with self._lock:
                if isinstance(doc, dict):
                    self.events.append(doc)
                else:
                    self.garbage.append(line)

    def _connections(self):
        """TCP connections the tap holds to the event ports (from /proc)."""
        wanted = self.ports
        found = set()
        try:
            inodes = set()
            fddir = "/proc/%d/fd" % self.proc.pid
            for fd in os.listdir(fddir):
                try:
                    target = os.readlink(os.path.join(fddir, fd))
                except OSError:
                    continue
                if target.startswith("socket:["):
                    inodes.add(target[8:-1])
            with open("/proc/net/tcp") as fh:
                next(fh)
                for line in fh:
                    f = line.split()
                    # state 01 = ESTABLISHED; remote address is field 2
                    if f[3] == "01" and f[9] in inodes:
                        port = int(f[2].split(":")[1], 16)
                        if port in wanted:
                            found.add(port)
        except (OSError, StopIteration, IndexError, ValueError):
            return None
        return found

    def _wait_connected(self, timeout):
        # A SUB socket connects in the background; an event published before
        # the subscription reached the PUB is lost (ZeroMQ "slow joiner").
        deadline = time.time() + timeout
        while time.time() < deadline and self.proc.poll() is None:
            found = self._connections()
            if found is None:           # no /proc: fall back on time
                time.sleep(1.0)
                return
            if found == self.ports:
                time.sleep(0.3)         # the subscription follows the handshake
                return
            time.sleep(0.05)
        if self.proc.poll() is not None:
            raise RuntimeError("phantom-tap exited %s: %s" % (
                self.proc.returncode, self.proc.stderr.read()[-2000:]))
        raise RuntimeError("phantom-tap not connected to event ports %s in %.0f s" % (
            sorted(self.ports), timeout))

    def snapshot(self):
        with self._lock:
            return list(self.events)

    def wait(self, timeout):
        """Waits for the tap to exit (-n reached or -w passed); returns its exit
        code (None if still running) and its stderr."""
        try:
            self.proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            return None, ""
        self._reader.join(timeout=5)
        return self.proc.returncode, self.proc.stderr.read()

    def close(self):
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=5)
        for f in (self.proc.stdout, self.proc.stderr):
            try:
                f.close()
            except OSError:
                pass


class WebhookReceiver:
    """A local HTTP server for webhook deliveries, in a thread, on a free
    port of addr (over TLS with an ssl server context). Every POST is
    recorded as dict(path, headers (lower-case), body (bytes), json,
    signature_ok), and when it arrived in times (time.monotonic()); it
    answers status (default 204)."""

    def __init__(self, secret, status=204, addr="127.0.0.1", context=None):
        self.secret = secret
        self.status = status
        self.requests = []
        self.times = []
        self._lock = threading.Lock()
        receiver = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):
                receiver.times.append(time.monotonic())
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length > 0 else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                try:
                    doc = json.loads(body)
                except ValueError:
                    doc = None
                with receiver._lock:
                    receiver.requests.append({
                        "path": self.path, "headers": headers, "body": body, "json": doc,
                        "signature_ok": receiver.signature_ok(
                            body, headers.get("x-phantomwatch-signature"))})
                    status = receiver.status
                self.send_response(status)
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer((addr, 0), Handler)
        self.server.daemon_threads = True
        if context:
            self.server.socket = context.wrap_socket(self.server.socket, server_side=True)
        self.port = self.server.server_address[1]
        self.url = "%s://%s:%d/hook" % ("https" if context else "http", addr, self.port)
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        kwargs={"poll_interval": 0.1}, daemon=True)
        self._thread.start()

    def signature_ok(self, body, header):
        if not header or not header.startswith("sha256="):
            return False
        want = hmac.new(self.secret.encode(), body, hashlib.sha256).hexdigest()
        return hmac.compare_digest(want, header[7:].strip().lower())

    def received(self):
        with self._lock:
            return list(self.requests)

    def close(self):
        self.server.shutdown()
        self.server.server_close()


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


def config_file(name, **keys):
    """deploy/phantomwatch.conf with keys appended (later lines win), written
    as $PHANTOM_BUILD_DIR/test-var/<name>.conf; pass it to a stack as
    settings={"PHANTOM_CONFIG": path} (e.g. webhook_allow_cidrs="127.0.0.0/8"
    for a test whose webhook receiver listens on loopback)."""
    with open(os.path.join(REPO, "deploy", "phantomwatch.conf")) as fh:
        text = fh.read()
    path = os.path.join(BUILD, "test-var", name + ".conf")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        fh.write(text + "\n# test settings\n")
        for key, value in keys.items():
            fh.write("%s = %s\n" % (key, value))
    return path


#  One stack per module: each test module calls start_module_stack() in
#  setUpModule; the cleanup is registered before start so a half-started
#  stack is torn down too.
def start_module_stack(name, slot, partitions=2, reserve_partitions=None, settings=None):
    stack = Stack()
    unittest.addModuleCleanup(stack.stop)
    # SIGTERM from ctest's TIMEOUT: leave through the cleanups, not around them
    signal.signal(signal.SIGTERM, lambda *_: (stack.stop(), os._exit(1)))
    stack.start(name, partitions=partitions, slot=slot, reserve_partitions=reserve_partitions,
                settings=settings)
    return stack
