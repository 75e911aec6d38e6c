"""Fault 1: kill -9 each service under load.

phantom-load --retry (unique readingIds, 503/504/connection errors retried
with the same id) runs while a detector, the store, the notifier and the
gateway are killed with SIGKILL in turn (supervisord restarts them). Alongside,
a few ports get deterministic device-timestamped series that make phantom
episodes. Pass: every 201 is in PostgreSQL exactly once, rows = distinct
readingIds, and the episodes equal those of the same series replayed into a
fresh stack without kills (start, end, energy within 0.1 %).
"""

import os
import signal
import threading
import time
import unittest

import faultlib
from faultlib import duration

PARTITIONS = 2
VICTIMS = ["detector:detector-0", "store", "notifier", "gateway", "detector:detector-1"]
STACK = None


def setUpModule():
    global STACK
    STACK = faultlib.start_stack("fault-kill", slot=0, partitions=PARTITIONS)


class KillEachService(unittest.TestCase):
    def test_gateway_killed_under_a_request(self):
        """The gateway killed with a reading in its hands: the client gets
        the contract's 503 unavailable with Retry-After (HAProxy's own 502
        would not be retried by a client written to the contract), the
        retry with the same readingId is stored once."""
        s = STACK
        owner = s.setup_owner(ports=1)
        port, key = owner["ports"][0], "gone-under-request"
        pid = s.pid("gateway")
        answer = {}

        def post():
            answer["r"] = s.post_reading(owner["device_token"], port, readingId=key, timeout=30)

        # stopped, the gateway cannot answer; killed, its sockets are reset
        # under the request HAProxy has sent it
        os.kill(pid, signal.SIGSTOP)
        try:
            t = threading.Thread(target=post)
            t.start()
            time.sleep(1.0)
        finally:
            os.kill(pid, signal.SIGKILL)
        t.join(30)
        status, headers, doc = answer["r"]
        print("\n  gateway killed under a request: %s %s retry-after=%s" % (
            status, doc, headers.get("retry-after")))
        self.assertEqual((status, (doc.get("error") or {}).get("code")), (503, "unavailable"), doc)
        self.assertEqual(headers.get("retry-after"), "5")
        s.wait_running("gateway", old_pid=pid, timeout=30)
        status, doc, _ = s.post_until_acked(owner["device_token"], port, key, deadline_s=30)
        self.assertEqual(status, 201, doc)
        self.assertEqual(s.count("SELECT count(*) FROM reading_keys WHERE reading_key = %s", key), 1)

    def test_kill9_each_service_under_load(self):
        s = STACK
        seconds = duration(20)
        nseries = 8 if faultlib.LONG else 4
        load_owner = faultlib.owner_with_ports(s, 16, PARTITIONS)
        series_owner = faultlib.owner_with_ports(s, nseries, PARTITIONS)
        sports = series_owner["ports"][:max(nseries, PARTITIONS)]
        base = faultlib.series_base_ms()
        nreadings = len(faultlib.episode_series(0))
        # spread each port's series over the kill window
        pace = max(0.05, (seconds - 4) / nreadings)

        load = faultlib.Load(s, load_owner, seconds, conns=16, rate=800).start()
        series = faultlib.SeriesSender(s, series_owner, sports, base, "kill", pace_s=pace,
                                       deadline_s=120).start()
        kills = []
        if faultlib.LONG:
            interval = max(4.0, seconds / 50.0)
            n = int((seconds - 4) / interval)
        else:
            interval = (seconds - 4) / len(VICTIMS)
            n = len(VICTIMS)
        try:
            t0 = time.time()
            for i in range(n):
                time.sleep(max(0.0, t0 + 1.5 + i * interval - time.time()))
                victim = VICTIMS[i % len(VICTIMS)]
                pid = s.pid(victim)
                self.assertGreater(pid, 0, "%s has no pid: %s" % (victim, s.ctl("status", check=False)))
                os.kill(pid, signal.SIGKILL)
                newpid = s.wait_running(victim, old_pid=pid, timeout=30)
                kills.append((round(time.time() - t0, 1), victim, pid, newpid))
        finally:
            r = load.wait(timeout=seconds + 120)
            done = series.join(timeout=300)
        print("\n  kills (s, program, pid, new pid): %s" % kills)
        print("  " + load.out.replace("\n", "\n  "))
        self.assertTrue(done, "series senders still running")
        self.assertGreaterEqual(len(kills), len(VICTIMS))

        # every 201 stored exactly once
        self.assertIn("lost", r, load.report())
        series_keys = faultlib.check_keys(s, series_owner["device"]["id"])
        load_keys = faultlib.check_keys(s, load_owner["device"]["id"])
        stored_series = {k: int(v) for k, v in s.sql(
            "SELECT reading_key, reading_id FROM reading_keys WHERE device_id = %s",
            series_owner["device"]["id"])}
        series_lost = [k for k in series.acked if stored_series.get(k) != series.acked[k]]
        faultlib.summary("kill9", sent=r["sent"] + series.readings,
                         acked=r["acked"] + len(series.acked),
                         stored=load_keys[0] + series_keys[0],
                         duplicates=r["duplicates"] + (series_keys[0] - series_keys[2]),
                         lost=r["lost"] + len(series_lost) + load_keys[3] + series_keys[3],
                         kills=len(kills), retries=r.get("retries", 0),
                         unexpected=r["unexpected"])
        self.assertEqual(load.rc, 0, load.report())
        self.assertEqual((r["lost"], r["duplicates"], r["unexpected"]), (0, 0, 0), load.report())
        # rows = distinct readingIds (no reading stored twice under two ids)
        self.assertEqual(load_keys[0], load_keys[1], "load: readings rows vs reading_keys rows")
        self.assertEqual(load_keys[1], load_keys[2], "load: reading_keys sharing a reading id")
        self.assertEqual(load_keys[3], 0, "load: reading_keys without a readings row")
        self.assertEqual(series.failures, [], "series readings never acknowledged")
        self.assertEqual(series.mismatch, [])
        self.assertEqual(series_lost, [], "series: acked readingIds not stored as answered")
        self.assertEqual(series_keys[0], nreadings * len(sports), series_keys)
        self.assertEqual(series_keys[0], series_keys[1])
        self.assertEqual(series_keys[1], series_keys[2])

        got = faultlib.episodes_of(s, sports, base)
        # the same series, without kills, in a fresh stack
        fresh = faultlib.FaultStack()
        self.addCleanup(fresh.stop)
        fresh.start("fault-kill-replay", partitions=PARTITIONS, slot=1)
        owner2 = faultlib.owner_with_ports(fresh, len(sports), PARTITIONS)
        base2 = faultlib.series_base_ms()
        replay = faultlib.SeriesSender(fresh, owner2, owner2["ports"][:len(sports)], base2,
                                       "replay").start()
        self.assertTrue(replay.join(timeout=120))
        self.assertEqual(replay.failures, [])
        want = faultlib.episodes_of(fresh, owner2["ports"][:len(sports)], base2)
        print("  episodes under kills: %s" % got)
        print("  episodes replayed:    %s" % want)
        self.assertTrue(all(len(v) == 2 for v in want.values()),
                        "the series should make two episodes per port: %s" % want)
        diffs = faultlib.compare_episodes(got, want)
        self.assertEqual(diffs, [], "episodes under kills differ from the replay:\n"
                         + "\n".join(diffs))


if __name__ == "__main__":
    unittest.main(verbosity=2)
