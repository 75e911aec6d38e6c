"""Fault 4: duplicate storm.

Deterministic device-timestamped series that make phantom episodes go to a
few ports twice over: once with every reading sent 1-5 times at once (same
readingId, concurrent requests; readings of one port still in order), and
once, on other ports, with every reading sent once. Pass: rows = distinct
readings, all copies of a reading answered with the same id, and the storm's
episodes and notifications equal the single send's.
"""

import unittest

import faultlib
from faultlib import duration

PARTITIONS = 2
STACK = None


def setUpModule():
    global STACK
    STACK = faultlib.start_stack("fault-duplicates", slot=4, partitions=PARTITIONS)


class DuplicateStorm(unittest.TestCase):
    def test_duplicate_storm_same_as_single_send(self):
        s = STACK
        nports = 8 if faultlib.LONG else 4
        rounds = max(1, int(duration(0) // 60)) if faultlib.LONG else 1
        totals = dict(sent=0, acked=0, stored=0, duplicates=0, lost=0)
        for round_ in range(rounds):
            self._round(s, nports, round_, totals)
        faultlib.summary("duplicates", **totals)

    def _round(self, s, nports, round_, totals):
        storm_owner = faultlib.owner_with_ports(s, nports, PARTITIONS)
        single_owner = faultlib.owner_with_ports(s, nports, PARTITIONS)
        sports = storm_owner["ports"][:nports]
        oports = single_owner["ports"][:nports]
        base = faultlib.series_base_ms()
        rnd = faultlib.rng(round_)
        plan = {}

        def copies(pi, ri):
            return plan.setdefault((pi, ri), rnd.randint(1, 5))

        for pi in range(nports):                 # decide up front: reproducible
            for ri in range(len(faultlib.episode_series(pi))):
                copies(pi, ri)
        storm = faultlib.SeriesSender(s, storm_owner, sports, base, "storm%d" % round_,
                                      copies=lambda pi, ri: plan[(pi, ri)]).start()
        single = faultlib.SeriesSender(s, single_owner, oports, base, "single%d" % round_).start()
        self.assertTrue(storm.join(timeout=180), "storm senders stuck")
        self.assertTrue(single.join(timeout=180), "single senders stuck")
        self.assertEqual(storm.failures, [], "storm readings not acknowledged")
        self.assertEqual(single.failures, [])
        nreadings = sum(len(faultlib.episode_series(pi)) for pi in range(nports))

        keys = faultlib.check_keys(s, storm_owner["device"]["id"])
        stored = {k: int(v) for k, v in s.sql(
            "SELECT reading_key, reading_id FROM reading_keys WHERE device_id = %s",
            storm_owner["device"]["id"])}
        lost = [k for k, v in storm.acked.items() if stored.get(k) != v]
        rows_per_reading = s.sql(
            "SELECT max(n) FROM (SELECT count(*) n FROM readings WHERE port_id IN (%s)"
            " GROUP BY port_id, ts) x" % ",".join(["%s"] * nports), *sports)
        totals["sent"] += storm.sent
        totals["acked"] += len(storm.acked)
        totals["stored"] += keys[0]
        totals["duplicates"] += keys[0] - len(storm.acked) + len(storm.mismatch)
        totals["lost"] += len(lost)
        print("\n  round %d: %d readings sent as %d requests (1-5 copies each); rows %d;"
              " max rows per (port, ts) %s" % (round_, storm.readings, storm.sent, keys[0],
                                               rows_per_reading))

        self.assertEqual(storm.mismatch, [], "copies of one readingId answered different ids")
        self.assertEqual(lost, [])
        self.assertEqual(len(storm.acked), nreadings)
        self.assertEqual(keys[0], nreadings, "readings rows vs distinct readings: %s" % (keys,))
        self.assertEqual(keys[1], nreadings)
        self.assertEqual(keys[2], nreadings)
        self.assertEqual(rows_per_reading, [("1",)])

        got = faultlib.episodes_of(s, sports, base)
        want = faultlib.episodes_of(s, oports, base)
        print("  episodes storm:  %s\n  episodes single: %s" % (got, want))
        self.assertTrue(all(len(v) == 2 for v in want.values()), want)
        diffs = faultlib.compare_episodes(got, want, rel=1e-9)
        self.assertEqual(diffs, [], "storm episodes differ from the single send:\n"
                         + "\n".join(diffs))

        # notifications: the notifier works from events asynchronously; wait
        # until both sides have as many as episodes made and stay unchanged
        def snapshot():
            return (faultlib.notifications_of(s, sports, base),
                    faultlib.notifications_of(s, oports, base))
        prev = [None]

        def settled():
            snap = snapshot()
            same = snap == prev[0] and all(snap[1].values())
            prev[0] = snap
            return same
        faultlib.wait_until(settled, 15, step=1.0)
        n_storm, n_single = prev[0]
        print("  notifications storm:  %s\n  notifications single: %s" % (n_storm, n_single))
        self.assertTrue(all(n_single.values()), "no notifications for the single send")
        self.assertEqual(n_storm, n_single, "storm notifications differ from the single send")
        # one per kind and episode at most, never one per copy
        st = s.sql("SELECT port_id, dedupe_key, count(*) FROM notifications WHERE port_id IN (%s)"
                   " GROUP BY 1, 2 HAVING count(*) > 1" % ",".join(["%s"] * nports), *sports)
        self.assertEqual(st, [])


if __name__ == "__main__":
    unittest.main(verbosity=2)
