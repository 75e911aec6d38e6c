"""The pipeline end to end: gateway -> detector partitions -> store ->
PostgreSQL -> ack, phantom detection and its notification, and no
acknowledged reading lost or doubled when a detector restarts or dies."""

import os
import signal
import threading
import time
import unittest
import uuid

import harness
from harness import iso_ms, now_ms, partition_of

STACK = None
PARTITIONS = 2
RETRYABLE = (503, 504)


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("pipeline", slot=2, partitions=PARTITIONS)


def owner_with_ports_in_every_partition(stack, n):
    """An owner with n ports (more if needed until each partition has one)."""
    owner = stack.setup_owner(ports=n)
    while len({partition_of(p, PARTITIONS) for p in owner["ports"]}) < PARTITIONS:
        owner["ports"].append(stack.create_port(owner["token"], owner["device"]["id"])["id"])
    return owner


def send_until_acked(stack, dtoken, port, key, deadline_s=30, **kw):
    """Sends one reading with readingId key, retrying 503/504 and connection
    errors with the same key. Returns (status, doc, attempts)."""
    deadline = time.time() + deadline_s
    attempts = 0
    while True:
        attempts += 1
        try:
            status, headers, doc = stack.post_reading(dtoken, port, readingId=key, timeout=15, **kw)
        except OSError as e:
            status, headers, doc = None, {}, repr(e)
        if status not in RETRYABLE + (None,) or time.time() > deadline:
            return status, doc, attempts
        time.sleep(0.2)


class Partitions(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = STACK
        cls.owner = owner_with_ports_in_every_partition(STACK, 20)

    def test_readings_spread_over_partitions(self):
        s = self.s
        owner = owner_with_ports_in_every_partition(s, 20)   # its own: no other readings
        parts = {}
        for p in owner["ports"]:
            parts.setdefault(partition_of(p, PARTITIONS), []).append(p)
        self.assertEqual(sorted(parts), list(range(PARTITIONS)))
        sent = {}
        for i, port in enumerate(owner["ports"]):
            status, _, doc = s.post_reading(owner["device_token"], port, voltage=220 + i,
                                            current=0.1, power=22 + i)
            self.assertEqual(status, 201, "port %s (partition %d): %s" % (
                port, partition_of(port, PARTITIONS), doc))
            sent[doc["data"]["reading"]["id"]] = (port, 220.0 + i, 22.0 + i)
        rows = s.sql("SELECT id, port_id, voltage, power FROM readings WHERE port_id IN (%s)"
                     % ",".join(["%s"] * len(owner["ports"])), *owner["ports"])
        got = {int(r[0]): (r[1], float(r[2]), float(r[3])) for r in rows}
        self.assertEqual(got, sent)

    def test_gateway_routes_by_fnv1a_partition(self):
        """With detector-0 stopped, every port of partition 1 still gets 201 and
        ports of partition 0 get 503/504 with Retry-After; after detector-0 is
        back the retried readingId is stored once."""
        s, owner = self.s, self.owner
        p0 = [p for p in owner["ports"] if partition_of(p, PARTITIONS) == 0][:2]
        p1 = [p for p in owner["ports"] if partition_of(p, PARTITIONS) == 1]
        s.ctl("stop", "detector:detector-0")
        try:
            results = {}

            def down_reading(port):
                key = "p0-" + uuid.uuid4().hex
                t0 = time.time()
                try:
                    r = s.post_reading(owner["device_token"], port, readingId=key, timeout=20)
                except OSError as e:
                    r = (None, {}, repr(e))
                results[port] = (key, r, time.time() - t0)

            threads = [threading.Thread(target=down_reading, args=(p,)) for p in p0]
            for t in threads:
                t.start()
            for port in p1:
                status, _, doc = s.post_reading(owner["device_token"], port)
                self.assertEqual(status, 201, "partition-1 port %s with detector-0 down: %s"
                                 % (port, doc))
            for t in threads:
                t.join(timeout=30)
            for port in p0:
                key, (status, headers, doc), took = results[port]
                self.assertIn(status, RETRYABLE, "partition-0 port %s with detector-0 down: %s %s"
                              % (port, status, doc))
                self.assertIn("retry-after", headers)
                self.assertFalse(doc.get("success"), doc)
                self.assertLess(took, 10, "no bounded answer while detector-0 is down")
        finally:
            s.ctl("start", "detector:detector-0")
        s.wait_running("detector:detector-0")
        for port in p0:
            key = results[port][0]
            status, doc, _ = send_until_acked(s, owner["device_token"], port, key, deadline_s=20)
            self.assertEqual(status, 201, doc)
            rid = doc["data"]["reading"]["id"]
            self.assertEqual(s.count("SELECT count(*) FROM reading_keys WHERE reading_key = %s",
                                     key), 1)
            self.assertEqual(s.count("SELECT count(*) FROM readings WHERE id = %s", rid), 1)


class Phantom(unittest.TestCase):
    def test_phantom_flow_and_one_notification(self):
        s = STACK
        owner = s.setup_owner(ports=1)
        dtoken, port = owner["device_token"], owner["ports"][0]
        # device time, in the recent past: 3 active readings 10 s apart, then
        # 5 W every 10 s for 120 s, then two more phantom readings
        t0 = now_ms() - 200 * 1000
        t0 -= t0 % 1000
        seq = [(t0 + i * 10000, 100.0, "active") for i in range(3)]
        low_start = t0 + 30000
        seq += [(low_start + i * 10000, 5.0, None) for i in range(15)]
        answers = []
        for ts, watts, _ in seq:
            status, _, doc = s.post_reading(dtoken, port, voltage=230.0, current=watts / 230.0,
                                            power=watts, timestamp=iso_ms(ts))
            self.assertEqual(status, 201, doc)
            data = doc["data"]
            self.assertEqual(data["reading"]["timestamp"], iso_ms(ts))
            self.assertIs(data["phantomDetected"], data["portStatus"] == "phantom", data)
            answers.append(data["portStatus"])
        trace = list(zip([(ts - t0) // 1000 for ts, _, _ in seq], answers))
        self.assertEqual(answers[:3], ["active"] * 3, trace)
        low = answers[3:]
        self.assertIn("idle", low, trace)
        self.assertEqual(low[0], "idle", "first 5 W reading after 100 W: %s" % trace)
        first_phantom = low.index("phantom") if "phantom" in low else None
        self.assertIsNotNone(first_phantom, "never phantom after 140 s at 5 W: %s" % trace)
        # not before minPhantomSeconds (60 s) of low draw, and by 120 s
        self.assertGreaterEqual(first_phantom * 10, 60, trace)
        self.assertLessEqual(first_phantom * 10, 120, trace)
        self.assertTrue(all(st == "idle" for st in low[:first_phantom]), trace)
        self.assertTrue(all(st == "phantom" for st in low[first_phantom:]), trace)

        self.assertEqual(s.scalar("SELECT status FROM ports WHERE id = %s", port), "phantom")
        self.assertEqual(s.count("SELECT count(*) FROM episodes WHERE port_id = %s"
                                 " AND ended_at IS NULL", port), 1)

        # one notification per episode, not per reading
        deadline = time.time() + 10
        n = 0
        while time.time() < deadline:
            n = s.count("SELECT count(*) FROM notifications WHERE port_id = %s"
                        " AND kind = 'phantom.start'", port)
            if n:
                break
            time.sleep(0.2)
        self.assertEqual(n, 1, "phantom.start notifications for the port after 10 s")
        doc = s.expect(200, "GET", "/api/notifications", None, owner["token"])
        self.assertGreaterEqual(len(doc["data"]["notifications"]), 1, doc)
        self.assertGreaterEqual(doc["data"]["unread"], 1, doc)
        time.sleep(1.0)  # a late duplicate would show up now
        self.assertEqual(s.count("SELECT count(*) FROM notifications WHERE port_id = %s", port),
                         1, s.sql("SELECT kind, dedupe_key FROM notifications WHERE port_id = %s",
                                  port))


class DetectorRestart(unittest.TestCase):
    def test_no_acked_reading_lost_or_doubled(self):
        s = STACK
        owner = owner_with_ports_in_every_partition(s, 16)
        dtoken, ports = owner["device_token"], owner["ports"]
        acked = {}          # readingId -> (reading id, port)
        failed = []         # (readingId, status, doc): not retryable or gave up
        retried = [0]
        lock = threading.Lock()
        stop = threading.Event()
        counter = iter(range(10 ** 9))

        def sender(worker):
            while not stop.is_set():
                with lock:
                    n = next(counter)
                port = ports[n % len(ports)]
                key = "ld-%d-%d" % (worker, n)
                status, doc, attempts = send_until_acked(s, dtoken, port, key, deadline_s=30,
                                                         power=50.0 + n % 7)
                with lock:
                    if attempts > 1:
                        retried[0] += 1
                    if status == 201:
                        acked[key] = (doc["data"]["reading"]["id"], port)
                    else:
                        failed.append((key, status, doc))

        threads = [threading.Thread(target=sender, args=(w,), daemon=True) for w in range(4)]
        for t in threads:
            t.start()
        try:
            time.sleep(1.5)
            s.ctl("restart", "detector:detector-0")
            s.wait_running("detector:detector-0")
            time.sleep(1.5)
            pid = s.pid("detector:detector-0")
            self.assertGreater(pid, 0)
            os.kill(pid, signal.SIGKILL)
            s.wait_running("detector:detector-0", old_pid=pid)
            # load goes on until partition 0 answers again
            mark = len(acked)
            time.sleep(2.0)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=60)
        self.assertFalse(any(t.is_alive() for t in threads), "sender stuck")
        self.assertEqual(failed, [], "readings neither acknowledged nor retryable")
        self.assertGreater(len(acked), mark, "no reading acknowledged after the kill")
        parts_after = {partition_of(p, PARTITIONS) for k, (_, p) in acked.items()}
        self.assertEqual(parts_after, set(range(PARTITIONS)))

        rows = s.sql("SELECT k.reading_key, k.reading_id, k.ts, count(r.id),"
                     " min(r.port_id::text), max(r.port_id::text)"
                     " FROM reading_keys k LEFT JOIN readings r ON r.id = k.reading_id"
                     " WHERE k.device_id = %s GROUP BY 1, 2, 3", owner["device"]["id"])
        stored = {key: (int(rid), int(cnt), pmin, pmax) for key, rid, _, cnt, pmin, pmax in rows}
        missing = [k for k in acked if k not in stored]
        self.assertEqual(missing, [], "acknowledged readingIds without a reading_keys row")
        for key, (rid, port) in acked.items():
            srid, cnt, pmin, pmax = stored[key]
            self.assertEqual(srid, rid, "readingId %s answered id %d, stored %d" % (key, rid, srid))
            self.assertEqual(cnt, 1, "readingId %s: %d readings rows" % (key, cnt))
            self.assertEqual((pmin, pmax), (port, port), key)
        # nothing stored twice under another id either: one row per key for these ports
        total = s.count("SELECT count(*) FROM readings WHERE port_id IN (%s)"
                        % ",".join(["%s"] * len(ports)), *ports)
        self.assertEqual(total, len(stored), "readings rows vs reading_keys rows")
        self.assertEqual(set(stored), set(acked))
        print("\n  detector restart: %d readings acknowledged, %d needed a retry"
              % (len(acked), retried[0]))


if __name__ == "__main__":
    unittest.main(verbosity=2)
