"""Fault 2: PostgreSQL crash under load.

pg_ctl stop -m immediate (no checkpoint, shared memory dropped) while
phantom-load --retry runs and a probe posts readings one by one; a few
seconds later pg_ctl start. Pass: while PostgreSQL is down the gateway answers
503/504 and never 201, it recovers by itself (no service restarted), and no
acknowledged reading is lost.

Negative control (test_d): the same check must fail when the store does
lose acknowledged readings. A stack of its own runs the store with
store_synchronous_commit = off (PHANTOM_STORE_SYNCHRONOUS_COMMIT), so a
commit, and its ack, returns before its WAL is on disk; an immediate stop
under steady load then loses the acked commits of the WAL still in shared
memory, and phantom-load --verify must report lost > 0 and exit non-zero.
test_b is its twin on the normal stack: same server settings, same crash,
the store's own synchronous_commit = on: nothing lost. test_c deletes
acknowledged rows by hand: the one loss a crash cannot make (a readings row
gone while its reading_keys row stays), which the checker must see too.
"""

import threading
import time
import unittest
import uuid

import faultlib
import harness
from faultlib import RETRYABLE, duration

PARTITIONS = 2
STACK = None


def setUpModule():
    global STACK
    STACK = faultlib.start_stack("fault-pg", slot=2, partitions=PARTITIONS)


class Probe:
    """One reading at a time, each with a fresh readingId, no retry:
    records (sent at, answered at, status, readingId, id)."""

    def __init__(self, stack, owner):
        self.stack, self.owner = stack, owner
        self.log = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self):
        i = 0
        while not self.stop.is_set():
            port = self.owner["ports"][i % len(self.owner["ports"])]
            key = "probe-%s" % uuid.uuid4().hex
            t0 = time.time()
            try:
                status, headers, doc = self.stack.post_reading(
                    self.owner["device_token"], port, readingId=key, timeout=15)
            except OSError as e:
                status, headers, doc = None, {}, repr(e)
            rid = doc["data"]["reading"]["id"] if status == 201 else None
            self.log.append((t0, time.time(), status, key, rid, "retry-after" in headers))
            i += 1
            time.sleep(0.05)

    def start(self):
        self.thread.start()
        return self

    def join(self):
        self.stop.set()
        self.thread.join(timeout=30)


def user_api_recovers(test, s, tries=40):
    """The user API (its own PostgreSQL connections) works again after the
    restart: a registration succeeds within tries. Returns the failed answers
    before it did (a gateway that does not reset a broken connection answers
    500 once per pooled connection; printed, reported, not failed on)."""
    errors = []
    for _ in range(tries):
        try:
            s.register_user()
            break
        except harness.ApiError as e:
            errors.append(str(e)[-120:])
            time.sleep(0.25)
    else:
        test.fail("the user API did not recover after PostgreSQL's restart: %s" % errors[-3:])
    if errors:
        print("  user API after restart: %d failed answers before a 201: %s" % (
            len(errors), errors[:2]))
    return errors


#  Server settings that keep an asynchronous commit in shared memory, where
#  an immediate stop drops it, as long as PostgreSQL 15 allows: the WAL writer
#  flushes every 10 s (the maximum), never for volume (1GB), and the other
#  sessions (autovacuum, the gateway, the notifier) commit asynchronously
#  too, so no synchronous commit flushes the store's along with its own.
WIDE_ASYNC_WINDOW = (("synchronous_commit", "off"), ("wal_writer_delay", "10s"),
                     ("wal_writer_flush_after", "1GB"))


def wide_async_window(s, on):
    for name, value in WIDE_ASYNC_WINDOW:
        s.pg_super("ALTER SYSTEM SET %s = '%s'" % (name, value) if on
                   else "ALTER SYSTEM RESET %s" % name)
    s.pg_super("SELECT pg_reload_conf()")


def crash_under_steady_load(s, owner, rate=200, seconds=4, crash_at=2.5):
    """phantom-load --retry --verify at a steady, modest rate; crash_at s in,
    pg_ctl stop -m immediate and start again at once. Even with the WAL
    writer delayed, each finished WAL page is written out (to the kernel,
    which an immediate stop does not lose); the last, unfinished page is
    not. A modest rate keeps the commits of the last ~100 ms on that page,
    acked by the time of the crash. Returns (Load, its parsed result)."""
    load = faultlib.Load(s, owner, seconds, conns=8, rate=rate).start()
    time.sleep(crash_at)
    s.pg_crash()
    s.pg_start()
    r = load.wait(timeout=120)
    print("\n  " + load.out.replace("\n", "\n  "))
    return load, r


class PostgresCrash(unittest.TestCase):
    def test_a_immediate_stop_loses_no_acked_reading(self):
        s = STACK
        seconds = duration(16)
        # longer than the gateway's 5 s ack timeout, so answers come back while down
        down_s = 10.0 if faultlib.LONG else 7.0
        load_owner = faultlib.owner_with_ports(s, 16, PARTITIONS)
        probe_owner = faultlib.owner_with_ports(s, 2, PARTITIONS)
        load = faultlib.Load(s, load_owner, seconds, conns=16, rate=500).start()
        probe = Probe(s, probe_owner).start()
        crashes = []
        try:
            t0 = time.time()
            rounds = max(1, int(seconds // 60)) if faultlib.LONG else 1
            for k in range(rounds):
                time.sleep(max(0.0, t0 + 3 + k * 60 - time.time()))
                s.pg_crash()
                down = time.time()
                time.sleep(down_s)
                up_begin = time.time()
                s.pg_start()
                crashes.append((down, up_begin))
            # recovers by itself: a probe 201 after the restart
            last_up = crashes[-1][1]
            recovered = faultlib.wait_until(
                lambda: next((t1 for t0_, t1, st, *_ in probe.log
                              if st == 201 and t0_ > last_up), None), 30)
        finally:
            r = load.wait(timeout=seconds + 120)
            probe.join()
        print("\n  " + load.out.replace("\n", "\n  "))
        self.assertIsNotNone(recovered, "no 201 within 30 s of PostgreSQL's restart"
                             + s.log_tail())
        print("  first 201 %.1f s after pg_ctl start" % (recovered - crashes[-1][1]))
        api_errors = user_api_recovers(self, s)

        # answered while down (sent before the crash or during it)
        during = [e for e in probe.log for down, up in crashes if down < e[1] < up]
        statuses = sorted({e[2] for e in during}, key=str)
        print("  probe answers while down: %d, statuses %s" % (len(during), statuses))
        self.assertGreater(len(during), 0, "no probe answered while PostgreSQL was down")
        acked_while_down = [e for e in during if e[2] == 201]
        self.assertEqual(acked_while_down, [], "201 while PostgreSQL was down")
        self.assertTrue(set(statuses) <= set(RETRYABLE), "answers while down: %s" % statuses)
        self.assertTrue(all(e[5] for e in during), "503/504 without Retry-After")

        probe_acked = {e[3]: e[4] for e in probe.log if e[2] == 201}
        stored = dict((k, int(v)) for k, v in s.sql(
            "SELECT reading_key, reading_id FROM reading_keys WHERE device_id = %s",
            probe_owner["device"]["id"]))
        probe_lost = [k for k, v in probe_acked.items() if stored.get(k) != v]
        load_keys = faultlib.check_keys(s, load_owner["device"]["id"])
        self.assertIn("lost", r, load.report())
        faultlib.summary("pg_crash", sent=r["sent"] + len(probe.log),
                         acked=r["acked"] + len(probe_acked),
                         stored=load_keys[0] + len(stored),
                         duplicates=r["duplicates"] + (load_keys[1] - load_keys[2]),
                         lost=r["lost"] + len(probe_lost), crashes=len(crashes),
                         down_s=down_s, answers_while_down=len(during),
                         acked_while_down=len(acked_while_down),
                         api_errors_after_restart=len(api_errors))
        self.assertEqual(load.rc, 0, load.report())
        self.assertEqual((r["lost"], r["duplicates"], r["unexpected"]), (0, 0, 0), load.report())
        self.assertEqual(probe_lost, [])
        self.assertEqual(load_keys[0], load_keys[1])
        self.assertEqual(load_keys[1], load_keys[2])

    def test_b_server_async_commit_loses_nothing(self):
        """test_d's server settings and crash, but the store as deployed: its
        session's synchronous_commit = on beats the server's off."""
        s = STACK
        wide_async_window(s, True)
        try:
            user_api_recovers(self, s)
            owner = faultlib.owner_with_ports(s, 8, PARTITIONS)
            load, r = crash_under_steady_load(s, owner)
        finally:
            wide_async_window(s, False)
        faultlib.summary("pg_crash_server_async_commit", sent=r["sent"], acked=r["acked"],
                         stored=r["stored"], duplicates=r["duplicates"], lost=r["lost"])
        self.assertEqual((load.rc, r["lost"], r["duplicates"]), (0, 0, 0), load.report())

    def test_c_checker_sees_a_lost_readings_row(self):
        """The loss a crash cannot make (a batch commits or not as a whole):
        two acknowledged readings rows deleted behind the pipeline's back,
        their reading_keys rows left. --verify must count both lost."""
        s = STACK
        user_api_recovers(self, s)
        owner = faultlib.owner_with_ports(s, 16, PARTITIONS)
        device = owner["device"]["id"]
        load = faultlib.Load(s, owner, 4, conns=16).start()
        deleted = []
        try:
            faultlib.wait_until(lambda: s.count(
                "SELECT count(*) FROM reading_keys WHERE device_id = %s", device) > 100, 10)
            for _ in range(2):
                deleted += s.sql("DELETE FROM readings WHERE id = (SELECT reading_id"
                                 " FROM reading_keys WHERE device_id = %s ORDER BY random()"
                                 " LIMIT 1) RETURNING id", device)
        finally:
            r = load.wait(timeout=120)
        print("\n  deleted %s\n  %s" % (deleted, load.out.replace("\n", "\n  ")))
        faultlib.summary("checker_negative_control", sent=r["sent"], acked=r["acked"],
                         stored=r["stored"], duplicates=r["duplicates"], lost=r["lost"],
                         deleted=len(deleted))
        self.assertEqual(len(deleted), 2)
        self.assertIn("lost", r, load.report())
        # every deleted row was acknowledged unless some reading's fate is unknown
        if r["sent"] == r["acked"]:
            self.assertEqual(r["lost"], 2, load.report())
        else:
            self.assertGreaterEqual(r["lost"], 1, load.report())
        self.assertNotEqual(load.rc, 0, "phantom-load --verify passed despite the loss")
        self.assertIn("verify: FAILED", load.out)

    def test_d_negative_control_store_async_commit(self):
        """store_synchronous_commit = off on a stack of its own, then test_b's
        crash: acknowledged readings are lost, and the check of test_a and
        test_b (phantom-load --verify) must say so and fail. A crash right
        after the WAL writer wrote out the last page can lose nothing: up to
        three crashes, each under a load run of its own."""
        s = faultlib.FaultStack()
        faultlib._STACKS.append(s)          # ctest's SIGTERM stops it too
        self.addCleanup(s.stop)
        s.start("fault-pg-async", partitions=PARTITIONS, slot=6,
                settings={"PHANTOM_STORE_SYNCHRONOUS_COMMIT": "off"})
        wide_async_window(s, True)
        owner = faultlib.owner_with_ports(s, 8, PARTITIONS)
        for attempt in range(1, 4):
            load, r = crash_under_steady_load(s, owner)
            self.assertIn("lost", r, load.report())
            if r["lost"]:
                break
        faultlib.summary("pg_crash_store_async_commit", sent=r["sent"], acked=r["acked"],
                         stored=r["stored"], duplicates=r["duplicates"], lost=r["lost"],
                         crashes=attempt, exit=load.rc)
        self.assertGreater(r["lost"], 0, "no acknowledged reading lost in 3 crashes with"
                           " synchronous_commit = off: the control proves nothing")
        self.assertNotEqual(load.rc, 0, "phantom-load --verify passed despite the loss")
        self.assertIn("verify: FAILED", load.out)


if __name__ == "__main__":
    unittest.main(verbosity=2)
