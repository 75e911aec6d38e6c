"""Fault 3: backpressure - both detectors frozen (SIGSTOP) under load.

Pass: while frozen the gateway answers 503 with Retry-After (bounded queue)
or 504 after its ack timeout, never 201; its RSS (VmRSS) stays bounded; after
SIGCONT the backlog drains, the gateway answers 201 again, and nothing
acknowledged is lost or stored twice.
"""

import os
import signal
import threading
import time
import unittest
import uuid

import faultlib
from faultlib import RETRYABLE, duration

PARTITIONS = 2
DETECTORS = ["detector:detector-%d" % i for i in range(PARTITIONS)]
RSS_GROWTH_MAX_KB = 256 * 1024     # what "bounded" means here: +256 MB at most
STACK = None


def setUpModule():
    global STACK
    STACK = faultlib.start_stack("fault-backpressure", slot=3, partitions=PARTITIONS)


class Backpressure(unittest.TestCase):
    def test_sigstop_detectors(self):
        s = STACK
        seconds = duration(16)
        stall_s = min(60.0, seconds / 3) if faultlib.LONG else 8.0
        load_owner = faultlib.owner_with_ports(s, 16, PARTITIONS)
        probe_owner = faultlib.owner_with_ports(s, 2, PARTITIONS)
        rss_idle = s.vmrss_kb("gateway")
        # load + probes stay below the gateway's 32 HTTP threads: civetweb
        # gives each keep-alive connection a thread, and a connection beyond
        # that gets no answer at all (reported separately)
        # that gets no answer at all (reported separately). Batches of 1000
        # put more readings in flight than the gateway's per-partition send
        # queue holds (SNDHWM 10000), so the bounded queue answers 503.
        load = faultlib.Load(s, load_owner, seconds, conns=24, batch=1000).start()
        probe_log = []
        stop = threading.Event()

        def probe():
            i = 0
            while not stop.is_set():
                port = probe_owner["ports"][i % len(probe_owner["ports"])]
                t0 = time.time()
                try:
                    st, h, doc = s.post_reading(probe_owner["device_token"], port,
                                                readingId="bp-%s" % uuid.uuid4().hex, timeout=15)
                except OSError as e:
                    st, h, doc = None, {}, repr(e)
                probe_log.append((t0, time.time(), st, h.get("retry-after")))
                i += 1
                time.sleep(0.02)

        pthreads = [threading.Thread(target=probe, daemon=True) for _ in range(4)]
        pids = []
        rss = []
        try:
            time.sleep(2.0)
            rss_before = s.vmrss_kb("gateway")
            for t in pthreads:
                t.start()
            pids = [s.pid(d) for d in DETECTORS]
            self.assertTrue(all(p > 0 for p in pids), pids)
            for p in pids:
                os.kill(p, signal.SIGSTOP)
            frozen = time.time()
            while time.time() - frozen < stall_s:
                rss.append((round(time.time() - frozen, 2), s.vmrss_kb("gateway")))
                time.sleep(0.25)
            thawed = time.time()
        finally:
            for p in pids:
                os.kill(p, signal.SIGCONT)
        try:
            recovered = faultlib.wait_until(
                lambda: next((e[1] for e in probe_log if e[2] == 201 and e[0] > thawed), None),
                30)
        finally:
            r = load.wait(timeout=seconds + 120)
            stop.set()
            for t in pthreads:
                t.join(timeout=30)
        print("\n  " + load.out.replace("\n", "\n  "))
        # the backlog drains: the device's rows stop changing
        device = load_owner["device"]["id"]
        prev = [-1]

        def settled():
            n = s.count("SELECT count(*) FROM reading_keys WHERE device_id = %s", device)
            same, prev[0] = n == prev[0], n
            return same
        self.assertTrue(faultlib.wait_until(settled, 30, step=1.0), "backlog never drained")

        # sent and answered while frozen: never 201. (A reading sent just
        # before the SIGSTOP may have passed its detector already, and its
        # 201 come later than any fixed grace behind the store's backlog:
        # 0.73 s once, on a loaded machine.)
        during = [e for e in probe_log if frozen < e[0] and e[1] < thawed]
        statuses = sorted({e[2] for e in during}, key=str)
        rss_max = max(v for _, v in rss)
        print("  probe answers while frozen: %d %s; first 201 %.1f s after SIGCONT"
              % (len(during), statuses, (recovered or thawed) - thawed))
        print("  gateway VmRSS kB: idle %d, under load %d, frozen max %d; samples %s"
              % (rss_idle, rss_before, rss_max, rss[::4]))
        load_keys = faultlib.check_keys(s, device)
        self.assertIn("lost", r, load.report())
        n503 = sum(1 for e in during if e[2] == 503)
        n504 = sum(1 for e in during if e[2] == 504)
        faultlib.summary("backpressure", sent=r["sent"], acked=r["acked"], stored=load_keys[0],
                         duplicates=r["duplicates"] + (load_keys[1] - load_keys[2]),
                         lost=r["lost"], stall_s=stall_s, probe_503=n503, probe_504=n504,
                         probe_201_while_frozen=sum(1 for e in during if e[2] == 201),
                         rss_before_kb=rss_before, rss_max_kb=rss_max)
        self.assertIsNotNone(recovered, "no 201 within 30 s of SIGCONT" + s.log_tail())
        self.assertGreater(len(during), 0, "no probe answered while the detectors were frozen")
        self.assertEqual([e for e in during if e[2] == 201], [], "201 while frozen")
        self.assertTrue(set(statuses) <= set(RETRYABLE), "answers while frozen: %s" % statuses)
        self.assertTrue(all(e[3] for e in during), "503/504 without Retry-After")
        self.assertLess(rss_max - rss_before, RSS_GROWTH_MAX_KB, "gateway RSS grew unbounded")
        # the second half of the stall grows no more than the first did (flat)
        half = [v for t, v in rss if t >= stall_s / 2]
        self.assertLess(max(half) - min(half), RSS_GROWTH_MAX_KB / 2, rss)
        self.assertEqual(load.rc, 0, load.report())
        self.assertEqual((r["lost"], r["duplicates"], r["unexpected"]), (0, 0, 0), load.report())
        self.assertEqual(load_keys[0], load_keys[1])
        self.assertEqual(load_keys[1], load_keys[2])
        self.assertEqual(load_keys[3], 0)


if __name__ == "__main__":
    unittest.main(verbosity=2)
