"""Phantom detection end to end (issues 3 and 15), on a real stack.

A port goes active -> idle -> phantom -> active on device timestamps; the
test checks every answer, the stored episode (energy to within 1 % of the
engine's rule, computed here), exactly one notification per episode edge,
the signed webhook deliveries to a receiver of its own and what phantom-tap
printed. Then a detector is killed with SIGKILL in the middle of an episode
(no duplicate, no lost episode), and the stack is scaled from 2 to 4
detectors by running deploy/up again with PHANTOM_PARTITIONS=4, while a port
has an open episode that moves to another partition. Roles (issue 15): an
alwaysOn port never goes phantom nor notifies where a standby port does,
and a shouldBeOff port is phantom at any draw while its schedule is on.

The engine's rule (services/detector/detector_engine.c, defaults
offWatts 0.5, standbyWatts 15, minPhantomSeconds 60): low draw is idle until
it has lasted 60 s by reading timestamps, then phantom; the episode starts at
the first low reading; energy is the trapezoid over the low readings plus
the last low draw held until the reading that leaves phantom; leaving the low
band upwards takes p > 15 + 1.5 W (hysteresis)."""

import json
import os
import signal
import time
import unittest
import uuid

import harness
from harness import iso_ms, now_ms, partition_of, wait_for

STACK = None
PARTITIONS = 2          # at the start; Scaling takes it to 4
SCALED = 4
NOTIFY_WAIT = 15        # s: event -> notifier -> notification row
WEBHOOK_WAIT = 20       # s: notification -> outbox -> receiver


def setUpModule():
    global STACK
    # The webhook receiver listens on loopback, which webhooks may reach
    # only when the config says so (proto_address).
    config = harness.config_file("detection", webhook_allow_cidrs="127.0.0.0/8")
    STACK = harness.start_module_stack("detection", slot=3, partitions=PARTITIONS,
                                       reserve_partitions=SCALED,
                                       settings={"PHANTOM_CONFIG": config})


# ----------------------------------------------------------------------
# the expected episode, by the engine's rule

def expected_episode(series, statuses):
    """series: [(ts ms, watts)], statuses: the expected answer per reading.
    Returns dict(start, end, energy_wh, samples, peak, mean) of the episode
    that the first phantom run closes (end None if it never closes)."""
    first = statuses.index("phantom")
    lo = first
    while lo > 0 and statuses[lo - 1] in ("idle", "phantom"):
        lo -= 1
    hi = first
    while hi + 1 < len(statuses) and statuses[hi + 1] in ("idle", "phantom"):
        hi += 1
    run = series[lo:hi + 1]
    energy = 0.0
    for (t1, p1), (t2, p2) in zip(run, run[1:]):
        energy += (p1 + p2) / 2.0 * (t2 - t1) / 3600000.0
    end = None
    if hi + 1 < len(series):
        end = series[hi + 1][0]
        energy += run[-1][1] * (end - run[-1][0]) / 3600000.0
    last = end if end is not None else run[-1][0]
    hours = (last - run[0][0]) / 3600000.0
    return {"start": run[0][0], "end": end, "energy_wh": energy, "samples": len(run),
            "peak": max(p for _, p in run), "mean": energy / hours if hours > 0 else run[0][1]}


def within(got, want, rel=0.01):
    return abs(float(got) - want) <= rel * abs(want)


def series_at(t0, points):
    """[(offset s, watts)] -> [(ts ms, watts)] from t0 (ms)."""
    return [(t0 + int(off * 1000), w) for off, w in points]


def device_t0(back_s):
    t0 = now_ms() - back_s * 1000
    return t0 - t0 % 1000


class Driver:
    """Sends a port's readings with device timestamps and keeps the trace."""

    def __init__(self, tc, stack, dtoken, port):
        self.tc, self.s, self.dtoken, self.port = tc, stack, dtoken, port
        self.trace = []          # (s since the first reading, watts, answered status)
        self.t0 = None
        self.retried = 0

    def send(self, ts, watts, retry=False):
        """One reading; 201 required (retry: 503/504 retried with the same
        readingId, for readings around a restart). Returns the data member."""
        kw = {"voltage": 230.0, "current": round(watts / 230.0, 6), "power": watts,
              "timestamp": iso_ms(ts)}
        if retry:
            status, doc, attempts = self.s.post_until_acked(
                self.dtoken, self.port, "det-" + uuid.uuid4().hex, deadline_s=30, **kw)
            self.retried += attempts - 1
        else:
            status, _, doc = self.s.post_reading(self.dtoken, self.port, **kw)
        self.tc.assertEqual(status, 201, "reading at %s, %.1f W: %s\ntrace so far: %s"
                            % (iso_ms(ts), watts, doc, self.trace))
        data = doc["data"]
        self.tc.assertEqual(data["reading"]["timestamp"], iso_ms(ts), doc)
        self.tc.assertIs(data["phantomDetected"], data["portStatus"] == "phantom", doc)
        if self.t0 is None:
            self.t0 = ts
        self.trace.append(((ts - self.t0) / 1000.0, watts, data["portStatus"]))
        return data

    def drive(self, series, expected, retry=False):
        for (ts, watts), want in zip(series, expected):
            data = self.send(ts, watts, retry)
            self.tc.assertEqual(data["portStatus"], want,
                                "answer to %.1f W at %s\ntrace (s, W, status): %s"
                                % (watts, iso_ms(ts), self.trace))


# ----------------------------------------------------------------------
# checks shared by the tests

def episodes_of(s, port):
    return s.sql("SELECT (extract(epoch FROM started_at) * 1000)::bigint,"
                 " (extract(epoch FROM ended_at) * 1000)::bigint,"
                 " energy_wh, mean_watts, peak_watts, samples, user_id"
                 " FROM episodes WHERE port_id = %s ORDER BY started_at", port)


def check_episode(tc, s, port, want, user_id):
    rows = episodes_of(s, port)
    tc.assertEqual(len(rows), 1, "episodes of the port (start ms, end ms, Wh, mean, peak, n):"
                   " %s, expected one starting %d" % (rows, want["start"]))
    start, end, energy, mean, peak, samples, user = rows[0]
    tc.assertEqual(int(start), want["start"], "started_at %s, expected %s"
                   % (iso_ms(int(start)), iso_ms(want["start"])))
    tc.assertEqual(end and int(end), want["end"], "ended_at %s, expected %s" % (
        end and iso_ms(int(end)), want["end"] and iso_ms(want["end"])))
    tc.assertTrue(within(energy, want["energy_wh"]),
                  "energy_wh %s, expected %.6f (within 1 %%)" % (energy, want["energy_wh"]))
    tc.assertTrue(within(mean, want["mean"]), "mean_watts %s, expected %.4f" % (mean, want["mean"]))
    tc.assertAlmostEqual(float(peak), want["peak"], places=3)
    tc.assertEqual(int(samples), want["samples"], "samples")
    tc.assertEqual(int(user), user_id)
    return rows[0]


def notifications_of(s, port):
    """{kind: [(id, dedupe_key, data json)]} of the port's notifications."""
    out = {}
    for nid, kind, key, data in s.sql("SELECT id, kind, dedupe_key, data::text FROM notifications"
                                      " WHERE port_id = %s ORDER BY id", port):
        out.setdefault(kind, []).append((int(nid), key, json.loads(data)))
    return out


def check_notifications(tc, s, port, want):
    """Exactly one phantom.start and one phantom.end for the episode, after a
    grace second for late duplicates. Returns the notifications."""
    got = wait_for(lambda: "phantom.end" in notifications_of(s, port)
                   and notifications_of(s, port), NOTIFY_WAIT)
    tc.assertTrue(got, "no phantom.end notification within %d s: %s%s"
                  % (NOTIFY_WAIT, notifications_of(s, port), s.log_tail(10)))
    time.sleep(1.0)
    got = notifications_of(s, port)
    summary = {k: [(nid, key) for nid, key, _ in v] for k, v in got.items()}
    tc.assertEqual(sorted(got), ["phantom.end", "phantom.start"], summary)
    tc.assertEqual(len(got["phantom.start"]), 1, summary)
    tc.assertEqual(len(got["phantom.end"]), 1, summary)
    tc.assertEqual(got["phantom.start"][0][1], "episode:%s:%d:start" % (port, want["start"]))
    tc.assertEqual(got["phantom.end"][0][1], "episode:%s:%d:end" % (port, want["start"]))
    data = got["phantom.end"][0][2]
    tc.assertEqual(data.get("portId"), port, data)
    tc.assertEqual(data.get("episodeStart"), want["start"], data)
    tc.assertEqual(data.get("episodeEnd"), want["end"], data)
    tc.assertTrue(within(data.get("energyWh", -1), want["energy_wh"]),
                  "phantom.end energyWh %s, expected %.6f" % (data.get("energyWh"),
                                                            want["energy_wh"]))
    return got


def check_tap(tc, tap, port, want, first_phantom_ts, user_id, timeout=20):
    """phantom-tap -n 2 printed phantom.start then phantom.end of the episode."""
    rc, err = tap.wait(timeout)
    events = tap.snapshot()
    tc.assertEqual(rc, 0, "phantom-tap exit %s (stderr %s), printed %s" % (rc, err[-500:], events))
    tc.assertEqual(tap.garbage, [], "phantom-tap printed lines that are not JSON objects")
    tc.assertEqual([e.get("kind") for e in events], ["phantom.start", "phantom.end"], events)
    start, end = events
    for e in events:
        tc.assertEqual(e.get("topic"), "%s.%s" % (e.get("kind"), port), e)
        tc.assertEqual(e.get("port"), port, e)
        tc.assertEqual(e.get("user"), user_id, e)
        tc.assertIsInstance(e.get("episode"), dict, e)
        tc.assertEqual(e["episode"].get("start"), iso_ms(want["start"]), e)
    tc.assertEqual((start.get("status"), start.get("previous")), ("phantom", "idle"), start)
    tc.assertEqual(start.get("ts"), iso_ms(first_phantom_ts), start)
    tc.assertIsNone(start["episode"].get("end"), start)
    tc.assertEqual((end.get("status"), end.get("previous")), ("active", "phantom"), end)
    tc.assertEqual(end.get("ts"), iso_ms(want["end"]), end)
    tc.assertEqual(end["episode"].get("end"), iso_ms(want["end"]), end)
    tc.assertTrue(within(end["episode"].get("energy_wh", -1), want["energy_wh"]),
                  "tap phantom.end energy_wh %s, expected %.6f" % (
                      end["episode"].get("energy_wh"), want["energy_wh"]))
    tc.assertEqual(end["episode"].get("samples"), want["samples"], end)


# ----------------------------------------------------------------------

class DetectionFlow(unittest.TestCase):
    def test_active_idle_phantom_active(self):
        s = STACK
        secret = "whsec-" + uuid.uuid4().hex
        receiver = harness.WebhookReceiver(secret)
        self.addCleanup(receiver.close)
        owner = s.setup_owner(ports=1)
        dtoken, port, token = owner["device_token"], owner["ports"][0], owner["token"]
        user_id = owner["user"]["id"]

        status, _, doc = s.api("POST", "/api/webhooks", {"url": receiver.url, "secret": secret},
                               token)
        if status == 404 and not (doc or {}).get("data"):
            # the route is not in this build yet: the table is the contract
            s.sql("INSERT INTO webhooks (user_id, url, secret) VALUES (%s, %s, %s)",
                  user_id, receiver.url, secret)
            print("\n  NOTE: POST /api/webhooks answered 404; webhook inserted with SQL")
        else:
            self.assertEqual(status, 201, doc)
            self.assertEqual(doc["data"]["webhook"]["url"], receiver.url, doc)
            self.assertEqual(doc["data"]["secret"], secret, doc)

        tap = s.tap("phantom.start." + port, "phantom.end." + port, count=2, wait=60)
        self.addCleanup(tap.close)

        # device time: 3 active readings, 10 low ones at uneven intervals
        # (16.0 W is above standby but inside the 1.5 W hysteresis margin,
        # so it stays low), the reading that leaves and one more active one
        t0 = device_t0(150)
        points = [(0, 120.0), (10, 95.5), (20, 130.2),
                  (30, 5.0), (40, 6.2), (47, 4.8), (60, 16.0), (70, 5.5), (80, 7.3),
                  (90, 5.1), (103, 4.4), (110, 14.9), (120, 6.0),
                  (133, 120.0), (140, 118.0)]
        statuses = (["active"] * 3 + ["idle"] * 6 + ["phantom"] * 4 + ["active"] * 2)
        series = series_at(t0, points)
        want = expected_episode(series, statuses)
        self.assertEqual((want["start"], want["end"], want["samples"]),
                         (t0 + 30000, t0 + 133000, 10))      # the fixture itself

        d = Driver(self, s, dtoken, port)
        d.drive(series[:9], statuses[:9])
        self.assertEqual(s.count("SELECT count(*) FROM episodes WHERE port_id = %s", port), 0,
                         "an episode row while the port is only idle")
        d.drive(series[9:13], statuses[9:13])
        self.assertEqual(s.scalar("SELECT status FROM ports WHERE id = %s", port), "phantom")
        rows = episodes_of(s, port)
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(int(rows[0][0]), want["start"], "open episode's started_at")
        self.assertEqual(rows[0][1], "", "episode closed while the port is phantom: %s" % rows)
        d.drive(series[13:], statuses[13:])

        check_episode(self, s, port, want, user_id)
        self.assertEqual(s.scalar("SELECT status FROM ports WHERE id = %s", port), "active")
        self.assertEqual(s.readings_count(port), len(series))

        # the API shows the same episode (GET /api/ports/:id/episodes, when
        # this build has the route: a 404 for one's own port means it has not)
        status, _, doc = s.api("GET", "/api/ports/%s/episodes" % port, token=token)
        if status == 404:
            print("\n  NOTE: GET /api/ports/:id/episodes answered 404; API check skipped")
        else:
            self.assertEqual(status, 200, doc)
            eps = doc["data"]["episodes"]
            self.assertEqual(len(eps), 1, eps)
            self.assertEqual(eps[0]["start"], iso_ms(want["start"]), eps)
            self.assertEqual(eps[0]["end"], iso_ms(want["end"]), eps)
            self.assertIs(eps[0]["open"], False, eps)
            self.assertTrue(within(eps[0]["energyWh"], want["energy_wh"]), eps)

        got = check_notifications(self, s, port, want)
        check_tap(self, tap, port, want, series[9][0], user_id)

        # webhook: one signed delivery per notification
        ids = {got["phantom.start"][0][0]: "phantom.start", got["phantom.end"][0][0]: "phantom.end"}
        wait_for(lambda: len(receiver.received()) >= 2, WEBHOOK_WAIT)
        time.sleep(1.0)      # a duplicate delivery would show up now
        reqs = receiver.received()
        brief = [(r["path"], r["json"] and r["json"].get("kind"), r["signature_ok"]) for r in reqs]
        self.assertEqual(len(reqs), 2, "webhook deliveries: %s; outbox: %s" % (
            brief, s.sql("SELECT d.status, d.attempts, d.last_error FROM webhook_deliveries d"
                         " JOIN notifications n ON n.id = d.notification_id"
                         " WHERE n.port_id = %s", port)))
        for r in reqs:
            body = r["json"]
            self.assertEqual(r["path"], "/hook")
            self.assertTrue(r["signature_ok"], "bad X-PhantomWatch-Signature %r for body %r"
                            % (r["headers"].get("x-phantomwatch-signature"), r["body"][:200]))
            self.assertIsInstance(body, dict, r["body"][:200])
            self.assertEqual(set(body), {"id", "kind", "title", "message", "data", "createdAt"},
                             body)
            self.assertIn(body["id"], ids, body)
            self.assertEqual(body["kind"], ids[body["id"]], body)
            self.assertEqual(r["headers"].get("x-phantomwatch-event"), body["kind"])
            self.assertEqual(body["data"].get("portId"), port, body)
            self.assertEqual(body["data"].get("episodeStart"), want["start"], body)
            self.assertTrue(body["title"] and body["message"], body)
        self.assertEqual(sorted(r["json"]["id"] for r in reqs), sorted(ids))
        end = [r["json"] for r in reqs if r["json"]["kind"] == "phantom.end"][0]
        self.assertTrue(within(end["data"]["energyWh"], want["energy_wh"]), end)
        self.assertEqual(s.count("SELECT count(*) FROM webhook_deliveries d JOIN notifications n"
                                 " ON n.id = d.notification_id WHERE n.port_id = %s"
                                 " AND d.status = 'delivered'", port), 2)


class DetectorKill(unittest.TestCase):
    def test_killed_mid_episode(self):
        """SIGKILL to the port's detector while the port is phantom: the new
        process restores the episode from PostgreSQL, and the episode is
        stored once, closed once, with the energy of the whole series, one
        phantom.start and one phantom.end."""
        s = STACK
        owner = s.setup_owner(ports=1)
        dtoken, port, user_id = owner["device_token"], owner["ports"][0], owner["user"]["id"]
        tap = s.tap("phantom.start." + port, "phantom.end." + port, count=2, wait=90)
        self.addCleanup(tap.close)

        t0 = device_t0(150)
        points = [(0, 100.0), (10, 100.0),
                  (20, 5.0), (30, 5.5), (40, 6.0), (50, 4.5), (60, 5.0), (70, 5.2), (80, 5.8),
                  (90, 6.1),
                  # after the kill
                  (100, 5.4), (110, 4.9), (120, 5.3), (130, 110.0)]
        statuses = ["active"] * 2 + ["idle"] * 6 + ["phantom"] * 2 + ["phantom"] * 3 + ["active"]
        series = series_at(t0, points)
        want = expected_episode(series, statuses)

        d = Driver(self, s, dtoken, port)
        d.drive(series[:10], statuses[:10])
        self.assertEqual(len(episodes_of(s, port)), 1)

        program = s.detector_program(port)
        pid = s.pid(program)
        self.assertGreater(pid, 0, s.ctl("status", check=False))
        os.kill(pid, signal.SIGKILL)
        s.wait_running(program, old_pid=pid, timeout=30)
        s.wait_ready(30)
        d.drive(series[10:], statuses[10:], retry=True)

        check_episode(self, s, port, want, user_id)
        self.assertEqual(s.readings_count(port), len(series), "readings stored for the port")
        check_notifications(self, s, port, want)
        check_tap(self, tap, port, want, series[8][0], user_id)
        if d.retried:
            print("\n  detector kill: %d retries (503/504) after the restart" % d.retried)


class Scaling(unittest.TestCase):
    def test_2_to_4_detectors_with_deploy_up(self):
        """PHANTOM_PARTITIONS=4 deploy/up on the running stack: 4 detectors,
        the gateway routes FNV-1a % 4, and an open episode of a port that
        moves to partition 2 or 3 goes on at its new owner (restored from
        PostgreSQL): one episode row, one phantom.start, one phantom.end."""
        s = STACK
        self.assertEqual(s.partitions, PARTITIONS, "Scaling needs the stack at 2 partitions")
        owner = s.setup_owner(ports=2)
        dtoken, token, user_id = owner["device_token"], owner["token"], owner["user"]["id"]

        # q: moves from partition q%2 to q%4 in {2, 3}; fresh[k]: no reading
        # before the scale-up, one per partition of 4
        q, fresh, before = None, {}, []
        for _ in range(80):
            if q and len(fresh) == SCALED and len({partition_of(p, 2) for p in before}) == 2:
                break
            p = s.create_port(token, owner["device"]["id"])["id"]
            k = partition_of(p, SCALED)
            if q is None and k >= 2:
                q = p
            elif k not in fresh:
                fresh[k] = p
            else:
                before.append(p)
        self.assertTrue(q and len(fresh) == SCALED, "could not spread ports over partitions")
        for p in before:
            status, _, doc = s.post_reading(dtoken, p, power=40.0)
            self.assertEqual(status, 201, "2 partitions, port %s (partition %d): %s"
                             % (p, partition_of(p, 2), doc))

        t0 = device_t0(150)
        points = [(0, 100.0)] + [(10 + 10 * i, 5.0 + 0.3 * i) for i in range(8)] \
            + [(90, 5.3), (100, 4.9), (110, 100.0)]
        statuses = ["active"] + ["idle"] * 6 + ["phantom"] * 2 + ["phantom"] * 2 + ["active"]
        series = series_at(t0, points)
        want = expected_episode(series, statuses)
        d = Driver(self, s, dtoken, q)
        d.drive(series[:9], statuses[:9])
        rows = episodes_of(s, q)
        self.assertEqual(len(rows), 1, rows)
        self.assertEqual(rows[0][1], "", rows)
        old_owner = s.detector_program(q)

        out = s.redeploy(PHANTOM_PARTITIONS=SCALED)
        self.assertEqual(s.partitions, SCALED,
                         "phantomwatch.env after deploy/up: PHANTOM_PARTITIONS=%s"
                         % s.conf.get("PHANTOM_PARTITIONS"))
        running = {"detector:detector-%d" % i: "RUNNING" for i in range(SCALED)}
        programs = wait_for(lambda: s.detector_programs() == running and running, 15) \
            or s.detector_programs()
        self.assertEqual(programs, {"detector:detector-%d" % i: "RUNNING" for i in range(SCALED)},
                         "deploy/ctl status after the scale-up:\n%s\ndeploy/up said:\n%s"
                         % (s.ctl("status", check=False), out[-2000:]))
        new_owner = s.detector_program(q)
        self.assertNotEqual(old_owner, new_owner)

        # the gateway binds 4 partitions, each with a detector
        peers = None

        def healthy4():
            nonlocal peers
            _, _, doc = s.api("GET", "/healthz", timeout=5)
            peers = ((doc or {}).get("checks") or {}).get("partitionPeers")
            return isinstance(peers, list) and len(peers) == SCALED and all(peers)
        self.assertTrue(wait_for(healthy4, 15), "/healthz partitionPeers %s" % peers)

        # each fresh port's first reading is judged by detector k = FNV-1a % 4:
        # its status event comes out of partition k's event port only
        taps = {k: s.tap("status.", partitions=[k], wait=60) for k in range(SCALED)}
        for t in taps.values():
            self.addCleanup(t.close)
        for k, p in sorted(fresh.items()):
            status, doc, attempts = s.post_until_acked(dtoken, p, "scale-" + uuid.uuid4().hex,
                                                       deadline_s=20, power=60.0)
            self.assertEqual(status, 201, "4 partitions, port %s (partition %d): %s"
                             % (p, k, doc))
            self.assertEqual(attempts, 1, "port %s (partition %d) needed %d attempts after"
                             " deploy/up returned" % (p, k, attempts))
        seen = {}

        def all_seen():
            for k, t in taps.items():
                seen[k] = sorted({e["port"] for e in t.snapshot() if e.get("port") in
                                  fresh.values()})
            return all(seen[k] == [fresh[k]] for k in taps) and seen
        wait_for(all_seen, 10)
        self.assertEqual(seen, {k: [fresh[k]] for k in fresh},
                         "fresh ports' status events per detector partition (FNV-1a % 4)")

        # the open episode goes on at its new owner
        d.drive(series[9:], statuses[9:], retry=True)
        check_episode(self, s, q, want, user_id)
        check_notifications(self, s, q, want)
        if d.retried:
            print("\n  scaling: %d retries (503/504) for the moved port" % d.retried)


# ----------------------------------------------------------------------
# roles (issue 15)

DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"]


def hhmm(minutes):
    minutes %= 1440
    return "%02d:%02d" % (minutes // 60, minutes % 60)


def every_day(from_min, to_min):
    """An offSchedule of one window on all seven days, minutes wrapped."""
    return [{"days": DAYS, "from": hhmm(from_min), "to": hhmm(to_min)}]


class Roles(unittest.TestCase):
    ZONE = "Asia/Tokyo"     # UTC+9 all year: a schedule read in UTC would miss
    OFFSET_MIN = 9 * 60

    def test_always_on_standby_should_be_off(self):
        """The same 11 W for longer than minPhantomSeconds: a standby port
        goes phantom (episode, phantom.start), an alwaysOn port stays active
        with no episode and no notification. 100 W on a shouldBeOff port:
        phantom while its schedule (in the owner's time zone) covers now,
        active when it does not."""
        s = STACK
        owner = s.setup_owner(ports=4)
        dtoken, token = owner["device_token"], owner["token"]
        standby, always_on, off_now, off_later = owner["ports"]
        s.expect(200, "PATCH", "/api/settings", {"timeZone": self.ZONE}, token)

        local_now = (now_ms() // 60000 + self.OFFSET_MIN) % 1440
        schedules = {
            always_on: {"role": "alwaysOn"},
            off_now: {"role": "shouldBeOff",
                      "offSchedule": every_day(local_now - 60, local_now + 120)},
            off_later: {"role": "shouldBeOff",
                        "offSchedule": every_day(local_now + 180, local_now + 240)},
        }
        for port, body in schedules.items():
            doc = s.expect(200, "PATCH", "/api/ports/%s" % port, body, token)
            settings = doc["data"]["port"]["settings"]
            self.assertEqual(settings["role"], body["role"], doc)
            self.assertEqual(settings["offSchedule"], body.get("offSchedule"), doc)
        doc = s.expect(200, "GET", "/api/ports/%s" % off_now, None, token)
        port = doc["data"]["port"]
        self.assertEqual(port["settings"]["offSchedule"], schedules[off_now]["offSchedule"])
        self.assertEqual(port["status"], "waiting", "a port that never reported")
        self.assertEqual(port["offlineAfterSeconds"],
                         int(s.conf.get("PHANTOM_DETECTOR_OFFLINE_SECONDS", 300)))

        # 10 readings 10 s apart (device time): past the 60 s dwell
        t0 = device_t0(120)
        points = [(10 * i, 11.0) for i in range(10)]
        low = ["idle"] * 6 + ["phantom"] * 4
        Driver(self, s, dtoken, standby).drive(series_at(t0, points), low)
        Driver(self, s, dtoken, always_on).drive(series_at(t0, points), ["active"] * 10)
        hundred = [(t, 100.0) for t, _ in points]
        Driver(self, s, dtoken, off_now).drive(series_at(t0, hundred), low)
        Driver(self, s, dtoken, off_later).drive(series_at(t0, hundred), ["active"] * 10)

        for port, status in ((standby, "phantom"), (always_on, "active"),
                             (off_now, "phantom"), (off_later, "active")):
            self.assertEqual(s.scalar("SELECT status FROM ports WHERE id = %s", port), status)
            doc = s.expect(200, "GET", "/api/ports/%s" % port, None, token)
            self.assertEqual(doc["data"]["port"]["status"], status, doc)
            want = 1 if status == "phantom" else 0
            self.assertEqual(len(episodes_of(s, port)), want, "episodes of %s port %s"
                             % (status, port))
        self.assertEqual(int(episodes_of(s, standby)[0][0]), t0 + 0, "episode start")
        self.assertEqual(int(episodes_of(s, off_now)[0][0]), t0 + 0, "episode start")

        # the notifier told the phantom ports, and nothing about the others
        for port in (standby, off_now):
            got = wait_for(lambda: "phantom.start" in notifications_of(s, port), NOTIFY_WAIT)
            self.assertTrue(got, "no phantom.start for %s within %d s: %s%s" % (
                port, NOTIFY_WAIT, notifications_of(s, port), s.log_tail(10)))
        time.sleep(1.0)     # a late notification would show up now
        for port in (always_on, off_later):
            told = notifications_of(s, port)
            self.assertEqual([k for k in told if k.startswith("phantom.")], [],
                             "notifications of %s: %s" % (port, told))
            self.assertEqual(s.count("SELECT count(*) FROM readings WHERE port_id = %s", port),
                             10, "readings of %s are stored and charted all the same" % port)


if __name__ == "__main__":
    unittest.main(verbosity=2)
