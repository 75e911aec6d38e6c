"""The demo account (issue 15, item 8), on a real stack.

deploy/seed.py backfills a shorter history than deploy/up's week (2 days,
a reading every 10 s) through the batch endpoint; the first run is killed
in the middle and a second run finishes it. Then: every reading is stored
once, on the step's grid, from the history's start to its end; each
port's episodes are exactly the standby runs of its profile (the same
functions of tools/sensor_simulator.py, replayed here); the router, always
on by design, has none; the figures follow; a third run sends nothing.
Also the profiles themselves, and the simulator with and without PROFILE
(the guide's output lines).
"""

import datetime
import os
import random
import re
import subprocess
import sys
import time
import unittest
import zoneinfo

import harness

sys.path.insert(0, os.path.join(harness.REPO, "tools"))
import sensor_simulator  # noqa: E402

STACK = None
DAYS = 2
STEP = 10
SEED = os.path.join(harness.REPO, "deploy", "seed.py")
SIMULATOR = os.path.join(harness.REPO, "tools", "sensor_simulator.py")
BERLIN = zoneinfo.ZoneInfo("Europe/Berlin")
PORTS = [("DEMO_PORT_TV", "tv", 15), ("DEMO_PORT_COFFEE", "coffee", 15),
         ("DEMO_PORT_CHARGER", "charger", 3), ("DEMO_PORT_ROUTER", "router", None)]
DWELL = 60              # s: minPhantomSeconds, the default the demo keeps


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("demo", slot=5)


def seed_process():
    env = dict(STACK.env, PHANTOM_HTTP_PORT=str(STACK.http_port), PHANTOM_VAR=STACK.var,
               DEMO_HISTORY_DAYS=str(DAYS), DEMO_HISTORY_STEP=str(STEP))
    return subprocess.Popen([sys.executable, SEED], cwd=harness.REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def seed_run():
    proc = seed_process()
    out, _ = proc.communicate(timeout=120)
    if proc.returncode != 0:
        raise AssertionError("deploy/seed.py exited %d:\n%s" % (proc.returncode, out))
    return out


def demo_env():
    values = {}
    with open(os.path.join(STACK.var, "demo.env")) as f:
        for line in f:
            key, _, value = line.strip().partition("=")
            values[key] = value.strip("'")
    return values


def standby_runs(profile, cut, first, last):
    """The runs of readings at or below cut watts in the profile's series
    (first..last every STEP s), as [(first ts, last ts, next ts or None)]:
    what the detector makes its low-draw runs of. The noise cannot cross
    the cut (nor its hysteresis band) in any profile."""
    rng = random.Random(1)
    runs, start, previous = [], None, None
    for ts in range(first, last + 1, STEP):
        low = sensor_simulator.profile_power(
            profile, datetime.datetime.fromtimestamp(ts, BERLIN), rng) <= cut
        if low and start is None:
            start = ts
        elif not low and start is not None:
            runs.append((start, previous, ts))
            start = None
        previous = ts
    if start is not None:
        runs.append((start, last, None))
    return runs


def iso_epoch(text):
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


class Profiles(unittest.TestCase):
    """The daily patterns (pure functions, no stack)."""

    def at(self, profile, day, hour, minute=0, second=0):
        local = datetime.datetime(2026, 12, day, hour, minute, second, tzinfo=BERLIN)
        return sensor_simulator.profile_power(profile, local, random.Random(day * 100 + hour))

    def test_days(self):
        # 2026-12-07 is a Monday, 2026-12-12 a Saturday.
        for day in (7, 12):
            self.assertTrue(80 <= self.at("tv", day, 21) <= 120)
            self.assertTrue(3.8 <= self.at("tv", day, 3) <= 4.2)
            self.assertTrue(1.8 <= self.at("coffee", day, 12) <= 2.2)
            self.assertTrue(5 <= self.at("charger", day, 23, 30) <= 10)
            self.assertTrue(0.9 <= self.at("charger", day, 12) <= 1.2)
            for hour in range(24):
                self.assertTrue(9 <= self.at("router", day, hour) <= 12)
        # Coffee: weekday mornings about 06:45-07:30, weekends 08:30-09:30.
        for day, earliest, latest in ((7, (6, 35), (7, 35)), (12, (8, 15), (9, 45))):
            cycles = sensor_simulator._coffee_plan(datetime.date(2026, 12, day))
            self.assertGreater(len(cycles), 5)
            self.assertGreaterEqual(cycles[0][0], earliest[0] * 3600 + earliest[1] * 60)
            self.assertLessEqual(cycles[-1][1], latest[0] * 3600 + latest[1] * 60)
            middle = int(cycles[0][0] + cycles[0][1]) // 2
            self.assertTrue(1000 <= self.at("coffee", day, middle // 3600, middle % 3600 // 60,
                                            middle % 60) <= 1400)

    def test_reading_is_consistent(self):
        rng = random.Random(7)
        for profile in sensor_simulator.PROFILES:
            for hour in range(24):
                local = datetime.datetime(2026, 12, 8, hour, 17, tzinfo=BERLIN)
                voltage, current, power = sensor_simulator.profile_reading(profile, local, rng)
                self.assertTrue(220 <= voltage <= 240)
                self.assertEqual(power, round(voltage * current, 2))
        with self.assertRaises(ValueError):
            sensor_simulator.profile_power("fridge", datetime.datetime.now(BERLIN), rng)


class Simulator(unittest.TestCase):
    """tools/sensor_simulator.py against the stack, with and without PROFILE."""

    def run_simulator(self, **env):
        owner = STACK.setup_owner(ports=1)
        full = dict(os.environ, NODE_SERVER_URL=STACK.base_url + "/api/sensor/reading",
                    DEVICE_TOKEN=owner["device_token"], PORT_ID=owner["ports"][0], COUNT="2",
                    READING_INTERVAL="0.1", **env)
        p = subprocess.run([sys.executable, SIMULATOR], env=full, capture_output=True, text=True,
                           timeout=60)
        self.assertEqual(p.returncode, 0, p.stdout + p.stderr)
        rows = STACK.sql("SELECT voltage, current, power FROM readings WHERE port_id = %s",
                         owner["ports"][0])
        return p.stdout.splitlines(), [tuple(map(float, row)) for row in rows]

    def test_guide_output_without_profile(self):
        lines, rows = self.run_simulator()
        url = STACK.base_url + "/api/sensor/reading"
        self.assertEqual(lines[0], "Sending readings to %s every 0.1 s" % url)
        sent = r"^Sent: \{'voltage': [\d.]+, 'current': [\d.]+, 'power': [\d.]+\} \| Status: 201$"
        self.assertEqual(len(lines), 4, lines)
        for line in lines[1:3]:
            self.assertRegex(line, sent)
        self.assertEqual(lines[3], "Stopped after 2 reading(s), 0 not acknowledged")
        self.assertEqual(len(rows), 2)
        for voltage, current, _ in rows:
            self.assertTrue(220 <= voltage <= 240 and 0.3 <= current <= 0.8, rows)

    def test_profile(self):
        lines, rows = self.run_simulator(PROFILE="router", TIME_ZONE="Europe/Berlin")
        self.assertEqual(lines[1], "Profile router, local time Europe/Berlin")
        self.assertEqual(len(rows), 2)
        for voltage, current, power in rows:
            self.assertTrue(9 <= power <= 12 and 220 <= voltage <= 240, rows)

    def test_bad_profile(self):
        owner = STACK.setup_owner(ports=1)
        env = dict(os.environ, DEVICE_TOKEN=owner["device_token"], PORT_ID=owner["ports"][0],
                   PROFILE="fridge")
        p = subprocess.run([sys.executable, SIMULATOR], env=env, capture_output=True, text=True,
                           timeout=30)
        self.assertEqual(p.returncode, 1)
        self.assertIn("PROFILE must be one of tv, coffee, charger, router", p.stderr)
        self.assertEqual(STACK.readings_count(owner["ports"][0]), 0)


class DemoHistory(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        # A first run killed in the middle of its history (it sends about
        # 70,000 readings; the kill comes after 5,000 are stored)...
        proc = seed_process()
        deadline = time.time() + 60
        cls.partial = 0
        while proc.poll() is None and time.time() < deadline and cls.partial < 5000:
            cls.partial = STACK.readings_count()
        cls.killed_running = proc.poll() is None
        proc.kill()
        cls.killed_output = proc.communicate(timeout=30)[0]
        cls.pending = demo_env().get("DEMO_HISTORY")
        # ... and one that finishes it.
        t0 = time.time()
        cls.output = seed_run()
        cls.seconds = time.time() - t0
        sys.stderr.write("demo seed (resumed): %.1f s\n%s" % (cls.seconds, cls.output))
        cls.env = demo_env()
        cls.first = int(cls.env["DEMO_HISTORY_FROM"]) + STEP
        cls.last = int(cls.env["DEMO_HISTORY_TO"])
        doc = STACK.expect(200, "POST", "/api/auth/login",
                           {"email": cls.env["DEMO_EMAIL"], "password": cls.env["DEMO_PASSWORD"]})
        cls.token = doc["data"]["token"]

    def get(self, path):
        return STACK.expect(200, "GET", path, token=self.token)["data"]

    def test_a_crash_is_resumed(self):
        self.assertTrue(self.killed_running and self.partial,
                        "the first run was to be killed in the middle of its history "
                        "(killed running: %s, readings then: %s)\n%s" % (
                            self.killed_running, self.partial, self.killed_output))
        self.assertEqual(self.pending, "pending")
        self.assertEqual(self.env["DEMO_HISTORY"], "done")
        self.assertRegex(self.output, r"==> demo history: \d+ readings for 4 port\(s\)")

    def test_every_reading_stored_once(self):
        span = self.last - self.first + STEP
        self.assertGreaterEqual(span, DAYS * 86400)
        self.assertLess(span, DAYS * 86400 + 600)      # the resume only extends to its own now
        for key, _, _ in PORTS:
            rows = STACK.sql(
                "SELECT count(*), count(DISTINCT ts), extract (epoch FROM min (ts))::bigint,"
                " extract (epoch FROM max (ts))::bigint,"
                " count(*) FILTER (WHERE mod (extract (epoch FROM ts)::bigint, %s::bigint) <> 0)"
                " FROM readings WHERE port_id = %s", STEP, self.env[key])
            count, distinct, first, last, off_grid = map(int, rows[0])
            self.assertEqual((count, distinct, first, last, off_grid),
                             (span // STEP, span // STEP, self.first, self.last, 0), key)

    def test_episodes_are_the_standby_runs(self):
        for key, profile, cut in PORTS:
            episodes = self.get("/api/ports/%s/episodes" % self.env[key])["episodes"]
            if cut is None:
                self.assertEqual(episodes, [], "%s is always on by design" % profile)
                continue
            runs = [run for run in standby_runs(profile, cut, self.first, self.last)
                    if run[1] - run[0] >= DWELL]
            got = sorted((iso_epoch(e["start"]), iso_epoch(e["end"]) if e["end"] else None)
                         for e in episodes)
            want = [(float(start), float(end) if end else None) for start, _, end in runs]
            self.assertEqual(got, want, profile)
            # One a day at least: the TV's standby between evenings, the
            # coffee machine's between mornings, the charger's between nights.
            for day in range(DAYS):
                lo, hi = self.first + day * 86400, self.first + (day + 1) * 86400
                self.assertTrue(any(s < hi and (e is None or e > lo) for s, e in got), (profile, day))

    def test_figures(self):
        summary = self.get("/api/summary")
        self.assertEqual((summary["timeZone"], summary["currency"]), ("Europe/Berlin", "EUR"))
        ports = {p["id"]: p for p in summary["ports"]}
        expected_roles = {"DEMO_PORT_TV": "standby", "DEMO_PORT_COFFEE": "standby",
                          "DEMO_PORT_CHARGER": "shouldBeOff", "DEMO_PORT_ROUTER": "alwaysOn"}
        for key, profile, cut in PORTS:
            port = ports[self.env[key]]
            self.assertEqual(port["role"], expected_roles[key], profile)
            if cut is None:
                self.assertEqual(port["last30"]["phantomKwh"], 0)
                self.assertEqual(port["status"], "active")
                self.assertTrue(9 <= port["lowestSteadyWatts"] <= 12, port)
                continue
            # Phantom energy: the standby runs at their mean draw.
            low = {"tv": (3.8, 4.2), "coffee": (1.8, 2.2), "charger": (0.9, 1.2)}[profile]
            hours = sum((end or self.last) - start for start, last, end
                        in standby_runs(profile, cut, self.first, self.last)
                        if last - start >= DWELL) / 3600
            want = (low[0] + low[1]) / 2 * hours / 1000
            self.assertAlmostEqual(port["last30"]["phantomKwh"], want, delta=want * 0.02,
                                   msg=(profile, hours, port["last30"]))
            self.assertTrue(low[0] <= port["lowestSteadyWatts"] <= low[1], port)
        # The time-of-use tariff prices the same waste higher on weekday days.
        settings = self.get("/api/settings")["settings"]
        self.assertEqual(settings["tariff"]["kind"], "timeOfUse")

    def test_readings_charted_every_day(self):
        # The seed waits for the rollups of its history. The few readings
        # it sends after them to reach the clock may land in minutes rolled
        # up already: the store's next run (once a minute) adds them.
        buckets = self.get("/api/ports/%s/readings?from=%d&to=%d&step=600" % (
            self.env["DEMO_PORT_TV"], self.first * 1000, (self.last + 1) * 1000))["buckets"]
        want = (self.last - self.first) // STEP + 1
        late = int(re.search(r"(\d+) more to catch up", self.output).group(1)) // len(PORTS)
        self.assertTrue(want - late <= sum(b["count"] for b in buckets) <= want,
                        (want, late, sum(b["count"] for b in buckets)))
        # Buckets on every (UTC) day the history touches.
        first, last = (datetime.datetime.fromtimestamp(ts, datetime.timezone.utc).date()
                       for ts in (self.first, self.last))
        want = {(first + datetime.timedelta(days=k)).isoformat()
                for k in range((last - first).days + 1)}
        self.assertEqual({b["ts"][:10] for b in buckets}, want)

    def test_z_rerun_sends_nothing(self):
        before = STACK.readings_count()
        output = seed_run()
        self.assertIn("nothing to backfill", output)
        self.assertEqual(STACK.readings_count(), before)
        self.assertEqual(demo_env()["DEMO_HISTORY_TO"], self.env["DEMO_HISTORY_TO"])


if __name__ == "__main__":
    unittest.main()
