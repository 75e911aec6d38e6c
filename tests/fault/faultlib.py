"""faultlib - what the fault tests share, on top of tests/integration/harness.py.

A FaultStack is a harness.Stack on the fault suite's own ports (HTTP 3250+k,
PG 5540+k, ZMQ base 7500+10k), with PostgreSQL crash helpers. Load comes from
the C load generator (phantom-load --retry --verify); deterministic
device-timestamped series that make phantom episodes are sent by Python
threads that retry each reading with its own readingId until it is acked.

Environment, besides harness's:
  FAULT_DURATION  seconds of load per test (default: short, a few seconds);
                  e.g. FAULT_DURATION=300 for the long variant by hand.

Python 3 standard library only.
"""

import http.client
import math
import os
import random
import re
import signal
import subprocess
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(os.path.dirname(HERE), "integration"))

import harness  # noqa: E402
from harness import iso_ms, now_ms, partition_of  # noqa: E402,F401

BUILD = harness.BUILD
LOAD_BIN = os.path.join(BUILD, "tools", "phantom-load", "phantom-load")
PG_BIN = "/usr/lib/postgresql/15/bin"
RETRYABLE = (503, 504)

#  Short by default (ctest); FAULT_DURATION=300 for the long run by hand.
DURATION = float(os.environ.get("FAULT_DURATION") or 0)
LONG = DURATION > 0


def duration(short):
    return DURATION if LONG else short


class FaultStack(harness.Stack):
    """harness.Stack on the fault suite's port slots, with deploy/up's
    default links (unix sockets): the faults are injected into the stack
    as users run it."""

    transport = "ipc"

    def _pick_ports(self, slot, partitions):
        for k in list(range(slot, 10)) + list(range(0, slot)):
            http_port, pg_port, base = 3250 + k, 5540 + k, 7500 + 10 * k
            self.mqtt_port = 1950 + k   # the broker's
            ports = [http_port, http_port + harness.GATEWAY_PORT_OFFSET, pg_port, base, base + 1,
                     self.mqtt_port]
            ports += [base + 100 + i for i in range(partitions)]
            ports += [base + 200 + i for i in range(partitions)]
            if not self._claim_slot(k, "fault-slot"):
                continue
            if all(harness._port_free(p) for p in ports):
                return http_port, pg_port, base
            self._release_slot()
        raise RuntimeError("no free fault slot (HTTP 3250-3259 busy?)")

    # ------------------------------------------------------------------
    # PostgreSQL of this stack, as its OS user (deploy/lib.sh pg_run)

    @property
    def pg_dir(self):
        return self.conf["PHANTOM_PG_DIR"]

    def _pg_user(self):
        return ["runuser", "-u", "postgres", "--"] if os.getuid() == 0 else []

    def pg_ctl(self, *args, timeout=90):
        cmd = self._pg_user() + [os.path.join(PG_BIN, "pg_ctl"), "-D",
                                 os.path.join(self.pg_dir, "data")] + list(args)
        return subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=timeout)

    def pg_crash(self):
        """pg_ctl stop -m immediate: no shutdown checkpoint, WAL buffers not flushed."""
        p = self.pg_ctl("-m", "immediate", "-w", "-t", "30", "stop")
        if p.returncode != 0:
            raise RuntimeError("pg_ctl stop -m immediate: %s %s" % (p.stdout, p.stderr))

    def pg_start(self):
        p = self.pg_ctl("-l", os.path.join(self.pg_dir, "log", "postgresql.log"),
                        "-w", "-t", "60", "start")
        if p.returncode != 0:
            raise RuntimeError("pg_ctl start: %s %s" % (p.stdout, p.stderr))

    def pg_super(self, query):
        """query as the superuser over the cluster's unix socket (ALTER SYSTEM)."""
        sock = os.path.join(self.pg_dir, "run")
        if len(sock) > 90:   # deploy/lib.sh pg_sockdir
            sock = "/tmp/phantomwatch-" + subprocess.run(
                ["bash", "-c", "printf '%s' \"$1\" | sha256sum | cut -c1-10", "_", self.pg_dir],
                capture_output=True, text=True).stdout.strip()
        cmd = self._pg_user() + ["psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1",
                                 "-h", sock, "-p", self.conf["PHANTOM_PG_PORT"],
                                 "-d", "postgres", "-c", query]
        p = subprocess.run(cmd, cwd="/", capture_output=True, text=True, timeout=30)
        if p.returncode != 0:
            raise RuntimeError("psql as superuser: %s\n%s" % (p.stderr, query))
        return p.stdout.strip()

    def vmrss_kb(self, program):
        pid = self.pid(program)
        try:
            with open("/proc/%d/status" % pid) as fh:
                for line in fh:
                    if line.startswith("VmRSS:"):
                        return int(line.split()[1])
        except OSError:
            pass
        return 0


_STACKS = []


def start_stack(name, slot, partitions=2, settings=None):
    """A FaultStack stopped at module cleanup (and on ctest's SIGTERM).
    settings: more PHANTOM_* for deploy/up (harness.Stack.start)."""
    stack = FaultStack()
    _STACKS.append(stack)
    unittest.addModuleCleanup(stack.stop)
    signal.signal(signal.SIGTERM, lambda *_: ([s.stop() for s in _STACKS], os._exit(1)))
    stack.start(name, partitions=partitions, slot=slot, settings=settings)
    return stack


def owner_with_ports(stack, n, partitions):
    """An owner with at least n ports, every partition holding one."""
    owner = stack.setup_owner(ports=n)
    while len({partition_of(p, partitions) for p in owner["ports"]}) < partitions:
        owner["ports"].append(stack.create_port(owner["token"], owner["device"]["id"])["id"])
    return owner


# ----------------------------------------------------------------------
# phantom-load

class Load:
    """phantom-load --retry --verify in the background, on its own owner's ports."""

    def __init__(self, stack, owner, seconds, conns=16, rate=0, workdir=None, timeout_ms=10000,
                 batch=1):
        self.stack = stack
        self.owner = owner
        workdir = workdir or stack.var
        self.creds = os.path.join(workdir, "load-creds-%d.txt" % id(self))
        self.ids = os.path.join(workdir, "load-ids-%d.txt" % id(self))
        with open(self.creds, "w") as fh:
            for p in owner["ports"]:
                fh.write("%s %s\n" % (owner["device_token"], p))
        self.args = [LOAD_BIN, "-u", stack.base_url, "-f", self.creds, "-c", str(conns),
                     "-d", str(seconds), "-T", str(timeout_ms), "--retry", "--ids", self.ids,
                     "--verify", stack.database]
        if rate:
            self.args += ["-r", str(rate)]
        if batch > 1:
            self.args += ["-b", str(batch)]
        self.proc = None
        self.out = ""
        self.err = ""
        self.rc = None
        self.result = {}

    def start(self):
        if not os.access(LOAD_BIN, os.X_OK):
            raise RuntimeError("no phantom-load at %s" % LOAD_BIN)
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                     text=True)
        return self

    def wait(self, timeout=180):
        self.out, self.err = self.proc.communicate(timeout=timeout)
        self.rc = self.proc.returncode
        self.result = parse_load(self.out)
        return self.result

    def kill(self):
        if self.proc and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()

    def verify_again(self):
        """The verification alone, later (after a crash, say): re-reads the
        database for the run's acked readingIds from the --ids file."""
        acked = {}
        with open(self.ids) as fh:
            for line in fh:
                key, rid = line.split()
                acked[key] = int(rid)
        return acked

    def report(self):
        return "phantom-load exit %s\n%s\n%s" % (self.rc, self.out, self.err[-2000:])


def parse_load(out):
    r = {}
    m = re.search(r"readings sent (\d+), acknowledged (\d+)", out)
    if m:
        r["sent"], r["acked"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"retries (\d+), reconnects (\d+)", out)
    if m:
        r["retries"], r["reconnects"] = int(m.group(1)), int(m.group(2))
    m = re.search(r"verify: stored (\d+), acknowledged (\d+), lost (\d+), extra (\d+) .*"
                  r"unexpected (\d+), duplicates (\d+)", out)
    if m:
        (r["stored"], r["verify_acked"], r["lost"], r["extra"], r["unexpected"],
         r["duplicates"]) = [int(x) for x in m.groups()]
    m = re.search(r"readings by outcome:(.*)", out)
    if m:
        r["outcomes"] = dict(kv.split("=") for kv in m.group(1).split())
    return r


def check_keys(stack, device_id):
    """(readings rows, reading_keys rows, distinct reading ids in reading_keys,
    keys whose reading row is missing) for a device's readings."""
    rows = stack.sql(
        "SELECT (SELECT count(*) FROM readings r JOIN ports p ON p.id = r.port_id"
        "         WHERE p.device_id = %s),"
        "       count(*), count(DISTINCT k.reading_id), count(*) FILTER (WHERE r.id IS NULL)"
        "  FROM reading_keys k LEFT JOIN readings r ON r.id = k.reading_id"
        " WHERE k.device_id = %s", device_id, device_id)
    return tuple(int(x) for x in rows[0])


def summary(name, sent, acked, stored, duplicates, lost, **extra):
    line = "FAULT %s sent=%d acked=%d stored=%d duplicates=%d lost=%d" % (
        name, sent, acked, stored, duplicates, lost)
    for k, v in extra.items():
        line += " %s=%s" % (k, v)
    print("\n" + line, flush=True)
    return line


# ----------------------------------------------------------------------
# Deterministic series that make phantom episodes

STEP_MS = 5000


def episode_series(index):
    """[(offset ms, watts)] for one port: active, > 60 s at a few W (phantom
    episode 1), active, again low for a while (episode 2), active. Watts vary
    per index and per reading, deterministically, so energies differ."""
    seq = []
    t = 0

    def add(watts):
        nonlocal t
        seq.append((t, round(watts, 3)))
        t += STEP_MS

    for _ in range(3):
        add(100.0 + index)
    for i in range(24):                       # 120 s low: phantom after 60 s
        add(4.0 + 0.5 * (index % 3) + 0.3 * math.sin(i + index))
    for _ in range(2):
        add(120.0)
    for i in range(19):                       # 95 s low: a second episode
        add(2.5 + 0.2 * (index % 4) + 0.2 * math.cos(i * 0.7 + index))
    add(90.0)
    return seq


class SeriesSender:
    """Sends episode_series() to n ports, one thread per port, each reading in
    order and retried with its own readingId until 201. copies > 1: each
    reading is sent that many times at once (a duplicate storm), still in
    order between readings. pace_s: pause between readings of one port."""

    def __init__(self, stack, owner, ports, base_ms, tag, pace_s=0.0, copies=None,
                 deadline_s=90, seed=0):
        self.stack, self.owner, self.ports = stack, owner, ports
        self.base_ms, self.tag, self.pace_s = base_ms, tag, pace_s
        self.copies = copies                 # function (port index, reading index) -> n
        self.deadline_s = deadline_s
        self.lock = threading.Lock()
        self.sent = 0                        # requests
        self.readings = 0                    # distinct readings
        self.acked = {}                      # readingId -> reading id (all copies agree)
        self.failures = []                   # (readingId, status, doc)
        self.mismatch = []                   # copies answered with different ids
        self.threads = []

    def _one(self, port, key, ts, watts):
        dtoken = self.owner["device_token"]
        deadline = time.time() + self.deadline_s
        while True:
            with self.lock:
                self.sent += 1
            try:
                status, _, doc = self.stack.post_reading(
                    dtoken, port, voltage=230.0, current=round(watts / 230.0, 5), power=watts,
                    timestamp=iso_ms(ts), readingId=key, timeout=15)
            except OSError as e:
                status, doc = None, repr(e)
            if status == 201:
                return doc["data"]["reading"]["id"]
            if status not in RETRYABLE + (None,) or time.time() > deadline:
                with self.lock:
                    self.failures.append((key, status, doc))
                return None
            time.sleep(0.2)

    def _port(self, pi, port):
        for ri, (off, watts) in enumerate(episode_series(pi)):
            key = "%s-%d-%d" % (self.tag, pi, ri)
            ts = self.base_ms + off
            n = self.copies(pi, ri) if self.copies else 1
            with self.lock:
                self.readings += 1
            if n == 1:
                ids = [self._one(port, key, ts, watts)]
            else:
                ids = [None] * n

                def copy(j):
                    ids[j] = self._one(port, key, ts, watts)

                ts_threads = [threading.Thread(target=copy, args=(j,)) for j in range(n)]
                for t in ts_threads:
                    t.start()
                for t in ts_threads:
                    t.join()
            got = {i for i in ids if i is not None}
            with self.lock:
                if len(got) > 1:
                    self.mismatch.append((key, sorted(got)))
                if got:
                    self.acked[key] = min(got)
            if self.pace_s:
                time.sleep(self.pace_s)

    def start(self):
        self.threads = [threading.Thread(target=self._port, args=(i, p), daemon=True)
                        for i, p in enumerate(self.ports)]
        for t in self.threads:
            t.start()
        return self

    def join(self, timeout=300):
        end = time.time() + timeout
        for t in self.threads:
            t.join(max(0.1, end - time.time()))
        return not any(t.is_alive() for t in self.threads)


def series_base_ms():
    """Device time of a series' first reading: recent enough that a restored
    detector does not take the port offline (offline timer 300 s from the
    last reading's ts), and the last reading (< 5 min later) is within the
    gateway's 5-minute future skew."""
    t = now_ms() - 60 * 1000
    return t - t % 1000


def episodes_of(stack, ports, base_ms):
    """{port index: [(start offset ms, end offset ms or None, energy_wh, samples)]}"""
    out = {}
    for i, port in enumerate(ports):
        rows = stack.sql(
            "SELECT (extract(epoch FROM started_at) * 1000)::bigint,"
            "       (extract(epoch FROM ended_at) * 1000)::bigint, energy_wh, samples"
            "  FROM episodes WHERE port_id = %s ORDER BY started_at", port)
        out[i] = [(int(s) - base_ms, (int(e) - base_ms) if e else None, float(wh), int(n))
                  for s, e, wh, n in rows]
    return out


def notifications_of(stack, ports, base_ms):
    """{port index: sorted [(kind, episode start offset or '')]}"""
    out = {}
    for i, port in enumerate(ports):
        rows = stack.sql("SELECT kind, dedupe_key, data::text FROM notifications"
                         " WHERE port_id = %s ORDER BY id", port)
        out[i] = sorted(k for k, _, _ in rows)
    return out


def compare_episodes(got, want, rel=1e-3):
    """Differences between two episodes_of() results, as text lines (empty: same)."""
    diffs = []
    for i in sorted(set(got) | set(want)):
        g, w = got.get(i, []), want.get(i, [])
        if len(g) != len(w):
            diffs.append("port %d: %d episodes %s, want %d %s" % (i, len(g), g, len(w), w))
            continue
        for a, b in zip(g, w):
            if a[0] != b[0] or a[1] != b[1]:
                diffs.append("port %d: episode %s, want %s (start/end ms from series start)"
                             % (i, a, b))
            elif not math.isclose(a[2], b[2], rel_tol=rel, abs_tol=1e-9):
                diffs.append("port %d: episode energy %.6f Wh, want %.6f Wh (%s vs %s)"
                             % (i, a[2], b[2], a, b))
    return diffs


def timed_post(stack, path, body, src, timeout):
    """(status, seconds) of one JSON POST to path from address src on a new
    connection; status None when it failed (refused, reset, timed out)."""
    conn = http.client.HTTPConnection("127.0.0.1", stack.http_port, timeout=timeout,
                                      source_address=(src, 0))
    t0 = time.monotonic()
    try:
        conn.request("POST", path, body=body, headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        resp.read()
        return resp.status, time.monotonic() - t0
    except (OSError, http.client.HTTPException):
        return None, time.monotonic() - t0
    finally:
        conn.close()


def wait_until(fn, timeout, step=0.2):
    end = time.time() + timeout
    while True:
        v = fn()
        if v or time.time() > end:
            return v
        time.sleep(step)


def rng(seed=0):
    return random.Random(seed)
