"""Fault 9: phantom-bridge loses nothing through the faults of a real board.

An emulated board on a socat pty pair writes a line per port for three
ports at 10 Hz (the guide's JSON with CRLF and LF, emonhub lines, lines
split across writes) mixed with malformed ones (garbage bytes, a
non-numeric value in each form, over-long, an unknown channel) and blank
lines. While it writes:

1. the gateway is stopped (`deploy/ctl stop gateway`) for
   BRIDGE_GATEWAY_DOWN_S seconds (10 here; the issue's 120 by hand) and
   started again; the bridge spools meanwhile;
2. as soon as the backlog is being uploaded (some readings acked, some
   still spooled; batches of 10) the bridge is `kill -9`ed and started again
   on the same spool;
3. the serial device disappears (socat killed with a line half written, so
   the node goes) and comes back.

The board pauses while the bridge is dead or the node gone (nothing could
read the lines; a real board's lines would be lost on the wire, not by
the bridge), so every good line written is one the bridge accepts.

Pass (check_lines): every line written and accepted is in PostgreSQL exactly
once, on its port, its timestamp (the bridge's clock on arrival) between
the write and 1 s after it, in line order per port; the rejected lines
counted by the bridge's metrics equal the malformed ones written; and the
phantom episodes (start, end, energy, samples) equal those of a live
replay of the stored series, with the same timestamps, through
`POST /api/sensor/readings` into a second device's ports.

Negative control: a bridge with `bridge_spool_sync = off` and a power cut
(its spool copied with cp while it writes - the state a disk would hold
had the later writes never been synced -, more lines, kill -9, the copy put
back, restarted): check_lines must report the lines written after the copy
as lost.

Environment: BRIDGE_GATEWAY_DOWN_S (default 10; 120 is the issue's figure);
PHANTOM_BRIDGE_BIN, another phantom-bridge binary to test (default: the
build tree's).
"""

import os
import shutil
import threading
import time
import unittest

import faultlib
from bridgelib import BridgeRig as BaseRig, check_prerequisites, free_port
from harness import iso_ms, now_ms, wait_for

STACK = None
GATEWAY_DOWN_S = float(os.environ.get("BRIDGE_GATEWAY_DOWN_S") or 10)
HZ = 10
TS_SLACK_MS = 50        # the write's clock read just before os.write
TS_BOUND_MS = 1000      # stamped on arrival: well within a second of the write
MIN_PHANTOM_S = 3       # per-port setting: low draw this long is phantom
CYCLE_TICKS = 80        # 2 s at 100 W, then 6 s at a few W, at 10 Hz


def setUpModule():
    global STACK
    STACK = faultlib.start_stack("fault-bridge-loss", slot=9)


def watts(port_index, seq):
    """The series: 2 s active, 6 s low (an episode after MIN_PHANTOM_S),
    offset per port. Each line's power is unique on its port (seq/10^4 W
    added) so a stored row names the line it came from."""
    phase = (seq + 17 * port_index) % CYCLE_TICKS
    base = 100.0 + 5 * port_index if phase < 20 else 4.0 + 0.5 * port_index
    return round(base + seq * 0.0001, 4)


# ----------------------------------------------------------------------
class Board:
    """The emulated Arduino: a thread writing a tick of lines every 100 ms
    into the host end of the pty pair, paused around the faults."""

    MALFORMED = [
        b"garbage \x01\xfe\xff\n",
        b'{"voltage":"230","current":0.1,"power":3}\r\n',
        b"P2:abc,Vrms:230\n",
        b"P2:" + b"9" * 300 + b"\n",
        b'{"voltage":230,"current":0.1,"power":3,"channel":"nine"}\n',
    ]

    def __init__(self, host_path):
        self.host_path = host_path
        self.fd = None
        self.lock = threading.Lock()   # held for one tick; the faults take it to pause
        self.stop = threading.Event()
        self.seq = 0
        self.lines = []                # (port index, power, written at ms), good lines
        self.malformed = 0
        self.blank = 0
        self.ticks = 0
        self.thread = None

    def open(self):
        # held open while socat runs: closing it would end socat
        self.fd = os.open(self.host_path, os.O_WRONLY | os.O_NOCTTY)

    def close(self):
        if self.fd is not None:
            os.close(self.fd)
            self.fd = None

    def _good(self, port_index, text):
        before = now_ms()
        os.write(self.fd, text.encode())
        return before

    def tick(self):
        i = self.seq
        self.seq += 1
        w = [watts(k, i) for k in range(3)]
        # port 0: the guide's JSON, CRLF; every 4th split across two writes
        text = '{"voltage":230.5,"current":%.5f,"power":%s}\r\n' % (w[0] / 230.5, w[0])
        if i % 4 == 3:
            os.write(self.fd, text[:13].encode())
            time.sleep(0.01)
            t0 = self._good(0, text[13:])
        else:
            t0 = self._good(0, text)
        self.lines.append((0, w[0], t0))
        # port 1: JSON with a channel, LF
        t1 = self._good(1, '{"voltage":231,"current":%.5f,"power":%s,"channel":1}\n'
                        % (w[1] / 231, w[1]))
        self.lines.append((1, w[1], t1))
        # port 2: an emonhub line, CRLF (current = power / Vrms)
        t2 = self._good(2, "MSG:%d,Vrms:229.5,P2:%s,E1:77\r\n" % (i, w[2]))
        self.lines.append((2, w[2], t2))
        for k, bad in enumerate(self.MALFORMED):
            if i % (7 + 3 * k) == 0:
                os.write(self.fd, bad)
                self.malformed += 1
        if i % 3 == 0:
            os.write(self.fd, b"\r\n")   # blank: neither read nor rejected
            self.blank += 1
        self.ticks += 1

    def _run(self):
        next_t = time.time()
        while not self.stop.is_set():
            with self.lock:
                if self.stop.is_set():
                    break
                self.tick()
            next_t += 1.0 / HZ
            time.sleep(max(0.0, next_t - time.time()))
            next_t = max(next_t, time.time() - 0.5)   # no burst after a pause

    def start(self):
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def finish(self):
        self.stop.set()
        if self.thread:
            self.thread.join(10)


# ----------------------------------------------------------------------
def check_lines(lines, rows):
    """The checker. lines: [(port index, power, written at ms)] the board
    wrote and the bridge accepted; rows: [(port index, power, ts ms)] in
    PostgreSQL for those ports. Returns (figures, problems): figures
    {accepted, stored, lost, duplicates, extra, bad_ts, out_of_order};
    problems, text lines (empty: nothing lost, nothing twice, timestamps
    and order right)."""
    want = {}
    for port, power, written in lines:
        want[(port, round(power, 4))] = written
    got = {}
    for port, power, ts in rows:
        got.setdefault((port, round(float(power), 4)), []).append(int(ts))
    lost = sorted(k for k in want if k not in got)
    dup = sorted(k for k, v in got.items() if len(v) > 1)
    extra = sorted(k for k in got if k not in want)
    bad_ts = sorted((k, want[k], got[k][0]) for k in want if k in got and
                    not want[k] - TS_SLACK_MS <= got[k][0] <= want[k] + TS_BOUND_MS)
    out_of_order = []
    for port in sorted({k[0] for k in want}):
        order = [p for q, p, _ in lines if q == port]
        stored = [round(float(p), 4) for q, p, _ in
                  sorted((r for r in rows if r[0] == port), key=lambda r: (int(r[2]), r[1]))]
        stored = [p for p in stored if (port, p) in want]
        present = [p for p in order if (port, p) in got]
        if stored != present:
            out_of_order.append(port)
    figures = {"accepted": len(want), "stored": sum(len(v) for v in got.values()),
               "lost": len(lost), "duplicates": sum(len(got[k]) - 1 for k in dup),
               "extra": len(extra), "bad_ts": len(bad_ts), "out_of_order": len(out_of_order)}
    problems = []
    if lost:
        problems.append("%d accepted lines not stored, e.g. %s" % (len(lost), lost[:5]))
    if dup:
        problems.append("%d lines stored more than once, e.g. %s" % (len(dup), dup[:5]))
    if extra:
        problems.append("%d rows no line wrote, e.g. %s" % (len(extra), extra[:5]))
    if bad_ts:
        problems.append("%d timestamps outside [write-%d ms, write+%d ms], e.g. %s"
                        % (len(bad_ts), TS_SLACK_MS, TS_BOUND_MS, bad_ts[:5]))
    if out_of_order:
        problems.append("ports %s: stored order differs from line order" % out_of_order)
    return figures, problems


# ----------------------------------------------------------------------
class BridgeRig(BaseRig):
    """socat, the bridge and the board for one device's three ports."""

    def __init__(self, test, owner, **settings):
        self.board = None
        options = {"bridge_batch": 10, "bridge_http_timeout_ms": 5000}
        options.update(settings)
        super().__init__(test, STACK, owner, prefix="phantom-bridge-loss-",
                         spool=os.path.join("spool", "spool.db"), **options)
        self.board = Board(self.host_path)

    def start_socat(self):
        super().start_socat()
        self.board.open()

    def kill_socat(self):
        """The device disappears: the board's fd closed under it, socat
        killed, the node gone."""
        self.board.close()
        if self.socat:
            self.socat.kill()
            self.socat.wait(5)
            self.socat = None
        self.test.assertTrue(wait_for(lambda: not os.path.exists(self.board_path), 5),
                             "the pty node stayed")

    def stop_all(self):
        if self.board:
            self.board.finish()
        self.stop_bridge()
        if self.board:
            self.board.close()
        self.stop_socat()
        self.log.close()

    def wait_open(self, reopens):
        super().wait_open(reopens)
        time.sleep(0.2)

    def settle(self):
        """Until the bridge has read what the board wrote (read counter flat)."""
        last = None
        for _ in range(50):
            m = self.metrics()
            now = (m["phantom_bridge_lines_read_total"], m["phantom_bridge_readings_spooled_total"])
            if now == last:
                return m
            last = now
            time.sleep(0.1)
        return self.metrics()

    def drained(self):
        m = self.metrics()
        return m and m["phantom_bridge_spool_depth"] == 0


def rows_of(ports):
    """[(port index, power, ts ms, voltage, current)] stored for ports."""
    index = {p: i for i, p in enumerate(ports)}
    rows = STACK.sql(
        "SELECT port_id::text, power, (extract(epoch FROM ts) * 1000)::bigint, voltage, current"
        "  FROM readings WHERE port_id = ANY(%s::uuid[]) ORDER BY ts, id",
        "{%s}" % ",".join(ports))
    return [(index[r[0]], float(r[1]), int(r[2]), float(r[3]), float(r[4])) for r in rows]


def set_min_phantom(owner, ports):
    for port in ports:
        STACK.expect(200, "PATCH", "/api/ports/%s" % port,
                     {"minPhantomSeconds": MIN_PHANTOM_S}, owner["token"])


def replay(device_token, ports, rows):
    """The stored series, with its timestamps, into ports through the batch
    endpoint, oldest first, 200 a batch, 503/504 retried with the readingId."""
    deadline = time.time() + 60
    body = [{"portId": ports[i], "voltage": v, "current": c, "power": w,
             "timestamp": iso_ms(ts), "readingId": "replay-%d-%d" % (i, n)}
            for n, (i, w, ts, v, c) in enumerate(rows)]
    for start in range(0, len(body), 200):
        pending = body[start:start + 200]
        while pending:
            if time.time() > deadline:
                raise AssertionError("replay not acknowledged in time")
            status, _, doc = STACK.api("POST", "/api/sensor/readings",
                                       {"deviceToken": device_token, "readings": pending})
            if status != 200:
                time.sleep(0.2)
                continue
            retry = []
            for result in doc["data"]["results"]:
                if result["status"] in (503, 504):
                    retry.append(pending[result["index"]])
                elif result["status"] != 201:
                    raise AssertionError("replayed reading refused: %s" % result)
            pending = retry
            if retry:
                time.sleep(0.2)


def episodes(ports):
    got = faultlib.episodes_of(STACK, ports, 0)
    return {i: [(s, e, round(wh, 9), n) for s, e, wh, n in v] for i, v in got.items()}


# ----------------------------------------------------------------------
class BridgeLoss(unittest.TestCase):
    def setUp(self):
        check_prerequisites(self)

    def test_a_gateway_down_kill9_unplug_lose_nothing(self):
        s = STACK
        owner = s.setup_owner(ports=3)
        ports = owner["ports"]
        device2, dtoken2 = s.create_device_and_token(owner["token"], "replay")
        replay_ports = [s.create_port(owner["token"], device2["id"], "replay %d" % i)["id"]
                        for i in range(3)]
        set_min_phantom(owner, ports + replay_ports)

        rig = BridgeRig(self, owner)
        board = rig.board
        rig.start_socat()
        rig.start_bridge()
        rig.wait_open(0)
        board.start()
        t0 = time.time()
        counted = {"read": 0, "rejected": 0}    # the first bridge run's counters
        mid_upload = None
        try:
            time.sleep(3)
            # 1. the gateway down; the bridge spools
            s.ctl("stop", "gateway")
            down_at = time.time()
            time.sleep(GATEWAY_DOWN_S)
            # 2. kill -9 while the backlog is being uploaded: the board
            # paused (the bridge dead reads nothing), the gateway started
            # while the upload is watched, the kill at the first ack
            with board.lock:
                m = rig.settle()
                backlog = m["phantom_bridge_spool_depth"]
                counted["read"] += m["phantom_bridge_lines_read_total"]
                counted["rejected"] += m["phantom_bridge_lines_rejected_total"]
                starter = threading.Thread(target=s.ctl, args=("start", "gateway"))
                starter.start()

                def uploading():
                    m = rig.metrics()
                    return m["phantom_bridge_readings_uploaded_total"] > 0 and m
                mid_upload = wait_for(uploading, 30, interval=0.002)
                rig.kill9_bridge()
                down_s = time.time() - down_at
                starter.join(60)
                s.wait_running("gateway", timeout=30)
                rig.start_bridge()
                rig.wait_open(0)
            time.sleep(3)
            # 3. the device unplugged, a line half written, plugged back
            with board.lock:
                os.write(board.fd, b'{"voltage":230,"curr')
                time.sleep(0.2)
                rig.kill_socat()
                time.sleep(2)
                rig.start_socat()
                rig.wait_open(1)
            time.sleep(5)
        finally:
            board.finish()
        elapsed = time.time() - t0
        self.assertTrue(mid_upload, "the upload never started:\n" + rig.log_text())
        self.assertLess(mid_upload["phantom_bridge_readings_uploaded_total"], backlog,
                        "killed after the backlog drained: %s" % mid_upload)
        self.assertTrue(wait_for(rig.drained, 30), "spool not drained: %s\n%s"
                        % (rig.metrics(), rig.log_text()))
        m = rig.settle()
        counted["read"] += m["phantom_bridge_lines_read_total"]
        counted["rejected"] += m["phantom_bridge_lines_rejected_total"]
        written = len(board.lines)
        self.assertEqual(m["phantom_bridge_readings_dropped_total"], 0)
        self.assertEqual(m["phantom_bridge_readings_refused_total"], 0, rig.log_text())

        rows = rows_of(ports)
        figures, problems = check_lines(board.lines, [(i, w, ts) for i, w, ts, _, _ in rows])
        faultlib.summary("bridge_loss", sent=written, acked=figures["accepted"],
                         stored=figures["stored"], duplicates=figures["duplicates"],
                         lost=figures["lost"], malformed=board.malformed,
                         rejected=int(counted["rejected"]), backlog=int(backlog),
                         gateway_down_s=round(down_s, 1),
                         killed_after_acks=int(mid_upload["phantom_bridge_readings_uploaded_total"]),
                         reopens=int(m["phantom_bridge_serial_reopens_total"]),
                         seconds=round(elapsed, 1))
        self.assertEqual(problems, [], "\n".join(problems))
        self.assertEqual(figures["stored"], written)
        # every line counted: good ones read, malformed ones rejected
        self.assertEqual(counted["rejected"], board.malformed, rig.log_text())
        self.assertEqual(counted["read"], written + board.malformed)
        self.assertGreater(backlog, GATEWAY_DOWN_S * HZ * 3 * 0.8, "the gateway was not down")

        # the episodes equal a live replay of the same series
        replay(dtoken2, replay_ports, rows)

        def same():
            a, b = episodes(ports), episodes(replay_ports)
            return (a == b and all(b.values())) and (a, b)
        self.assertTrue(wait_for(same, 15), "episodes differ from the replay:\n  %s\n  %s\n%s"
                        % (episodes(ports), episodes(replay_ports),
                           "\n".join(faultlib.compare_episodes(episodes(ports),
                                                               episodes(replay_ports)))))
        got = episodes(ports)
        print("  episodes per port: %s" % {i: len(v) for i, v in got.items()})
        self.assertTrue(all(len(v) >= 2 for v in got.values()), got)

    def test_b_negative_control_unsynced_spool_power_cut(self):
        """bridge_spool_sync = off and a power cut: the checker sees the loss."""
        s = STACK
        owner = s.setup_owner(ports=3)
        rig = BridgeRig(self, owner, bridge_spool_sync="off",
                        bridge_url="http://127.0.0.1:%d" % free_port())
        board = rig.board
        rig.start_socat()
        rig.start_bridge()
        rig.wait_open(0)
        board.start()
        try:
            time.sleep(2)
            # the disk as it would be: the spool files as they are now
            with board.lock:
                rig.settle()
                snap = os.path.join(rig.dir, "snapshot")
                shutil.copytree(os.path.dirname(rig.spool), snap)
                at_snapshot = len(board.lines)
            time.sleep(2)
        finally:
            board.finish()
        m = rig.settle()
        self.assertEqual(m["phantom_bridge_readings_spooled_total"], len(board.lines))
        # the power cut: the process gone, the unsynced writes with it
        rig.kill9_bridge()
        shutil.rmtree(os.path.dirname(rig.spool))
        shutil.copytree(snap, os.path.dirname(rig.spool))
        rig.env["PHANTOM_BRIDGE_URL"] = s.base_url
        rig.start_bridge()
        self.assertTrue(wait_for(rig.drained, 30), "spool not drained: %s\n%s"
                        % (rig.metrics(), rig.log_text()))
        rows = rows_of(owner["ports"])
        figures, problems = check_lines(board.lines, [(i, w, ts) for i, w, ts, _, _ in rows])
        faultlib.summary("bridge_loss_negative_control", sent=len(board.lines),
                         acked=figures["accepted"], stored=figures["stored"],
                         duplicates=figures["duplicates"], lost=figures["lost"],
                         after_snapshot=len(board.lines) - at_snapshot)
        self.assertGreater(len(board.lines), at_snapshot)
        self.assertEqual(figures["lost"], len(board.lines) - at_snapshot, problems)
        self.assertTrue(problems and "not stored" in problems[0], problems)


if __name__ == "__main__":
    unittest.main(verbosity=2)
