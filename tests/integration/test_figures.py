"""The golden scenario: three days of a scripted household go in through
the batch endpoint with device timestamps, and every figure the API gives
(docs/figures-and-api.md) must equal the one this test computes by hand
from its own series: the phantom episodes, energy used, hours reported,
waste and its time-of-use cost today, over 30 days, per local day and per
year, the lowest steady draw; the CSV export returns every reading sent.

The household, in Europe/Berlin, one reading every 30 s per port:
  TV        standby watch: watched 19:00-23:00 at 100 W, 4 W standby else
  Coffee    standby watch: 1,200 W 07:00-07:30 on weekdays and 08:30-09:30
            at weekends, 2 W standby else
  Monitor   should be off on weekdays 09:00-17:00: 25 W 08:00-18:00 every
            day, 0.3 W (off) at night -- phantom only inside the schedule
  Router    always on by design: 11 W, never phantom
  Speaker   standby watch at 3 W, with its sensor silent for two hours
The tariff: 0.20 per kWh, 0.40 on weekdays 07:00-22:00.
"""

import bisect
import csv
import datetime
import io
import math
import time
import unittest
import uuid
import zoneinfo

import harness

STACK = None
ZONE_NAME = "Europe/Berlin"
ZONE = zoneinfo.ZoneInfo(ZONE_NAME)
STEP_MS = 30 * 1000
DAYS = 3
GAP_MS = 300 * 1000           # readings further apart are offline (rollups and detector)
DWELL_MS = 60 * 1000          # minPhantomSeconds, the default
OFF_W, STANDBY_W = 0.5, 15.0  # the default thresholds
BASE_PRICE, PEAK_PRICE = 0.20, 0.40
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
PEAK = [{"days": WEEKDAYS, "from": "07:00", "to": "22:00"}]
SCHEDULE = [{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}]


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("figures", slot=6)


def local(ms):
    return datetime.datetime.fromtimestamp(ms / 1000, ZONE)


def minutes_of_day(moment):
    return moment.hour * 60 + moment.minute


def in_windows(windows, ms):
    """Whether ms falls in weekly windows (days a window starts on; one
    that ends at or before its start runs into the next day)."""
    now = local(ms)
    for w in windows:
        start = int(w["from"][:2]) * 60 + int(w["from"][3:])
        end = int(w["to"][:2]) * 60 + int(w["to"][3:])
        for back in (0, 1):
            day = now.date() - datetime.timedelta(days=back)
            if day.strftime("%a").lower() not in w["days"]:
                continue
            begins = datetime.datetime.combine(day, datetime.time(), ZONE) + datetime.timedelta(
                minutes=start)
            ends = datetime.datetime.combine(day, datetime.time(), ZONE) + datetime.timedelta(
                minutes=end if end > start else end + 1440)
            if begins <= now < ends:
                return True
    return False


# ----------------------------------------------------------------------
# The series

def tv(ms):
    return 100.0 if 19 * 60 <= minutes_of_day(local(ms)) < 23 * 60 else 4.0


def coffee(ms):
    moment = local(ms)
    minute = minutes_of_day(moment)
    if moment.weekday() < 5:
        return 1200.0 if 7 * 60 <= minute < 7 * 60 + 30 else 2.0
    return 1200.0 if 8 * 60 + 30 <= minute < 9 * 60 + 30 else 2.0


def monitor(ms):
    return 25.0 if 8 * 60 <= minutes_of_day(local(ms)) < 18 * 60 else 0.3


def router(ms):
    return 11.0


PORTS = [
    # name, role, schedule, power function
    ("TV", "standby", None, tv),
    ("Coffee", "standby", None, coffee),
    ("Monitor", "shouldBeOff", SCHEDULE, monitor),
    ("Router", "alwaysOn", None, router),
    ("Speaker", "standby", None, lambda ms: 3.0),
]


def series(power, start, end, silent=None):
    """[(ts, W)] every STEP_MS in [start, end]; silent (from, to) leaves a hole."""
    out = []
    for ts in range(start, end + 1, STEP_MS):
        if silent and silent[0] <= ts < silent[1]:
            continue
        out.append((ts, power(ts)))
    return out


# ----------------------------------------------------------------------
# The figures, by hand

def low_draw(role, schedule, ts, watts):
    if role == "alwaysOn":
        return False
    if role == "shouldBeOff" and (schedule is None or in_windows(schedule, ts)):
        return watts > OFF_W
    return OFF_W < watts <= STANDBY_W


def episodes(points, role, schedule):
    """DESIGN.md's episodes of a clean series (levels far from the
    thresholds, so hysteresis never decides): (start, end or None, Wh).
    A run of low draw becomes phantom once it lasted DWELL_MS; it ends at
    the reading that leaves it (the last low draw held until then), or at
    its last reading before a silence longer than GAP_MS."""
    out = []
    run = None
    previous = None
    for ts, watts in points:
        if previous and ts - previous[0] > GAP_MS:
            if run and run["phantom"]:
                out.append((run["start"], previous[0], run["wh"]))
            run = None
            previous = None
        if low_draw(role, schedule, ts, watts):
            if run is None:
                run = {"start": ts, "wh": 0.0, "phantom": False}
            else:
                run["wh"] += (previous[1] + watts) / 2 * (ts - previous[0]) / 3.6e6
            run["phantom"] = run["phantom"] or ts - run["start"] >= DWELL_MS
        else:
            if run and run["phantom"]:
                run["wh"] += previous[1] * (ts - previous[0]) / 3.6e6
                out.append((run["start"], ts, run["wh"]))
            run = None
        previous = (ts, watts)
    if run and run["phantom"]:
        out.append((run["start"], None, run["wh"]))
    return out


def intervals(points):
    """The reported intervals (start, end, Wh)."""
    return [(a, b, (pa + pb) / 2 * (b - a) / 3.6e6)
            for (a, pa), (b, pb) in zip(points, points[1:]) if b - a <= GAP_MS]


def price_at(ms):
    return PEAK_PRICE if in_windows(PEAK, ms) else BASE_PRICE


def cost(start, end, wh):
    """wh spread evenly over [start, end), each part at the price then; the
    tariff changes only at whole local hours, so pieces cut there are exact."""
    if end <= start:
        return wh / 1000 * price_at(start)
    total = 0.0
    at = start
    while at < end:
        moment = local(at)
        next_hour = (moment.replace(minute=0, second=0, microsecond=0)
                     + datetime.timedelta(hours=1)).timestamp() * 1000
        piece_end = min(end, int(next_hour))
        total += (piece_end - at) * price_at(at)
        at = piece_end
    return wh / 1000 * total / (end - start)


def waste(eps, last_ts, lo, hi):
    """(Wh, cost) of the episodes' parts inside [lo, hi)."""
    wh = money = 0.0
    for start, end, energy in eps:
        end = last_ts if end is None else end
        if end == start:
            if lo <= start < hi:
                wh += energy
                money += cost(start, start, energy)
            continue
        a, b = max(start, lo), min(end, hi)
        if b <= a:
            continue
        part = energy * (b - a) / (end - start)
        wh += part
        money += cost(a, b, part)
    return wh, money


def usage(points, lo, hi):
    """(Wh, reported seconds) of the intervals starting in [lo, hi)."""
    wh = seconds = 0.0
    for a, b, energy in intervals(points):
        if lo <= a < hi:
            wh += energy
            seconds += (b - a) / 1000
    return wh, seconds


def lowest_steady(points):
    last = points[-1][0]
    values = sorted(w for ts, w in points if last - 24 * 3600 * 1000 < ts <= last)
    return values[math.ceil(0.01 * len(values)) - 1]


# ----------------------------------------------------------------------

class GoldenScenario(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        s = cls.s = STACK
        _, cls.token, _, _ = s.register_user("Golden")
        s.expect(200, "PATCH", "/api/settings",
                 {"timeZone": ZONE_NAME, "currency": "EUR",
                  "tariff": {"kind": "timeOfUse", "pricePerKwh": BASE_PRICE,
                             "peakPricePerKwh": PEAK_PRICE, "peakWindows": PEAK}}, cls.token)
        device, cls.device_token = s.create_device_and_token(cls.token, "Golden board")
        cls.end = (harness.now_ms() // 60000) * 60000 - 60000
        cls.start = cls.end - DAYS * 86400 * 1000
        silent = (cls.start + 30 * 3600 * 1000, cls.start + 32 * 3600 * 1000)
        cls.ports = {}
        for name, role, schedule, power in PORTS:
            port = s.create_port(cls.token, device["id"], name)
            body = {"role": role}
            if schedule:
                body["offSchedule"] = schedule
            s.expect(200, "PATCH", "/api/ports/%s" % port["id"], body, cls.token)
            points = series(power, cls.start, cls.end, silent if name == "Speaker" else None)
            cls.ports[name] = {"id": port["id"], "role": role, "points": points,
                               "episodes": episodes(points, role, schedule)}
        cls.sent = cls.send_all()
        cls.summary = cls.wait_converged()

    @classmethod
    def send_all(cls):
        """Every reading, in time order, 500 per request; retried items keep
        their readingId. Returns how many were acknowledged."""
        items = []
        for name, port in cls.ports.items():
            for ts, watts in port["points"]:
                items.append((ts, {"portId": port["id"], "voltage": 230.0,
                                   "current": round(watts / 230.0, 6), "power": watts,
                                   "timestamp": harness.iso_ms(ts),
                                   "readingId": "%s-%d" % (name, ts)}))
        items.sort(key=lambda item: item[0])
        pending = [body for _, body in items]
        acked = 0
        deadline = time.time() + 240
        while pending:
            batch, pending = pending[:500], pending[500:]
            while batch:
                if time.time() > deadline:
                    raise AssertionError("readings not acknowledged in time")
                status, _, doc = cls.s.api("POST", "/api/sensor/readings",
                                           {"deviceToken": cls.device_token, "readings": batch})
                if status != 200:
                    time.sleep(0.5)
                    continue
                retry = []
                for result in doc["data"]["results"]:
                    if result["status"] == 201:
                        acked += 1
                    elif result["status"] in (503, 504):
                        retry.append(batch[result["index"]])
                    else:
                        raise AssertionError("reading refused: %s" % result)
                batch = retry
                if retry:
                    time.sleep(0.5)
        return acked

    @classmethod
    def wait_converged(cls):
        """Readings this late are rolled up by the store after their commit
        (the minutes they changed are re-rolled): wait until the energy
        used over the 30 days, which every rolled-up minute adds to, is the
        series' own, then assert on everything."""
        want = sum(energy for port in cls.ports.values()
                   for _, _, energy in intervals(port["points"])) / 1000
        # A port's row (its last reading, which ends an open episode for
        # the figures) is written at most once a second: in a backfill that
        # second is hours of device time, so wait for it too.
        last = {port["id"]: harness.iso_ms(port["points"][-1][0]) for port in cls.ports.values()}
        deadline = time.time() + 180
        while True:
            doc = cls.s.expect(200, "GET", "/api/summary", token=cls.token)["data"]
            done = all(row["lastReadingAt"] == last[row["id"]] for row in doc["ports"])
            if (done and abs(doc["total"]["last30"]["energyKwh"] - want) < 1e-9
                    or time.time() > deadline):
                return doc
            time.sleep(1)

    def port(self, name):
        for row in self.summary["ports"]:
            if row["id"] == self.ports[name]["id"]:
                return row
        self.fail("no %s in the summary" % name)

    def test_every_reading_acknowledged_and_stored(self):
        sent = sum(len(p["points"]) for p in self.ports.values())
        self.assertEqual(self.sent, sent)
        for name, port in self.ports.items():
            self.assertEqual(self.s.readings_count(port["id"]), len(port["points"]), name)

    def test_episodes_as_computed(self):
        for name, port in self.ports.items():
            doc = self.s.expect(200, "GET", "/api/ports/%s/episodes?limit=200" % port["id"],
                                token=self.token)["data"]
            got = sorted(doc["episodes"], key=lambda e: e["start"])
            want = port["episodes"]
            self.assertEqual(len(got), len(want), "%s: %s" % (name, [e["start"] for e in got]))
            last = port["points"][-1][0]
            for episode, (start, end, wh) in zip(got, want):
                self.assertEqual(episode["start"], harness.iso_ms(start), name)
                # An open episode closes at its last reading once the
                # detector's timer takes the silent port offline.
                if end is None and episode["end"] is not None:
                    self.assertEqual(episode["end"], harness.iso_ms(last), name)
                else:
                    self.assertEqual(episode["end"], None if end is None else harness.iso_ms(end),
                                     name)
                self.assertAlmostEqual(episode["energyWh"], wh, places=6, msg=name)
                self.assertAlmostEqual(episode["cost"], cost(start, end or last, wh), places=9,
                                       msg=name)
        self.assertEqual(self.ports["Router"]["episodes"], [])
        # the schedule decides: the monitor wastes only on weekdays 09:00-17:00
        for start, end, _ in self.ports["Monitor"]["episodes"]:
            self.assertTrue(in_windows(SCHEDULE, start), harness.iso_ms(start))
        # the silence splits the speaker's standby in two episodes
        self.assertEqual(len(self.ports["Speaker"]["episodes"]), 2)

    def test_summary_figures(self):
        now = self.parse(self.summary["now"])
        today = self.parse(self.summary["todayFrom"])
        midnight = datetime.datetime.combine(local(now).date(), datetime.time(), ZONE)
        self.assertEqual(today, int(midnight.timestamp() * 1000))
        totals = {"today": [0.0, 0.0, 0.0], "last30": [0.0, 0.0, 0.0]}
        year_kwh = year_cost = 0.0
        phantom_now = 0.0
        for name, port in self.ports.items():
            row = self.port(name)
            points, eps = port["points"], port["episodes"]
            last = points[-1][0]
            for window, lo in (("today", today), ("last30", now - 30 * 86400 * 1000)):
                used, _ = usage(points, lo, now)
                wh, money = waste(eps, last, lo, now)
                self.assertAlmostEqual(row[window]["energyKwh"], used / 1000, places=9,
                                       msg="%s %s energy" % (name, window))
                self.assertAlmostEqual(row[window]["phantomKwh"], wh / 1000, places=9,
                                       msg="%s %s waste" % (name, window))
                self.assertAlmostEqual(row[window]["phantomCost"], money, places=9,
                                       msg="%s %s cost" % (name, window))
                for index, value in enumerate((used / 1000, wh / 1000, money)):
                    totals[window][index] += value
            _, seconds = usage(points, now - 30 * 86400 * 1000, now)
            hours = seconds / 3600
            self.assertAlmostEqual(row["year"]["reportedHours"], hours, places=6, msg=name)
            self.assertGreaterEqual(hours, 24, name)
            self.assertFalse(row["year"]["learning"], name)
            wh, money = waste(eps, last, now - 30 * 86400 * 1000, now)
            self.assertAlmostEqual(row["year"]["phantomKwh"], wh / 1000 / hours * 8760, places=6,
                                   msg=name)
            self.assertAlmostEqual(row["year"]["phantomCost"], money / hours * 8760, places=6,
                                   msg=name)
            year_kwh += wh / 1000 / hours * 8760
            year_cost += money / hours * 8760
            self.assertEqual(row["lowestSteadyWatts"], lowest_steady(points), name)
            self.assertEqual(row["role"], port["role"], name)
            # Offline once the detector's timer (5 min of silence) ran.
            if row["status"] == "offline":
                self.assertIsNone(row["watts"], name)
            elif eps and eps[-1][1] is None:
                self.assertEqual(row["status"], "phantom", name)
                self.assertEqual(row["watts"], points[-1][1], name)
                phantom_now += points[-1][1]
            else:
                self.assertNotEqual(row["status"], "phantom", name)
        # the speaker's silence is not reported time: the two hours without
        # readings and the interval that would have led into them
        self.assertAlmostEqual(self.port("Speaker")["year"]["reportedHours"],
                               self.port("TV")["year"]["reportedHours"] - 2 - STEP_MS / 3.6e6,
                               places=6)
        self.assertEqual(self.port("Router")["year"]["phantomKwh"], 0)
        total = self.summary["total"]
        for window in ("today", "last30"):
            for index, key in enumerate(("energyKwh", "phantomKwh", "phantomCost")):
                self.assertAlmostEqual(total[window][key], totals[window][index], places=9,
                                       msg="total %s %s" % (window, key))
        self.assertAlmostEqual(total["year"]["phantomKwh"], year_kwh, places=6)
        self.assertAlmostEqual(total["year"]["phantomCost"], year_cost, places=6)
        self.assertEqual(total["year"]["learningPorts"], 0)
        self.assertAlmostEqual(total["phantomWattsNow"], phantom_now, places=9)

    def test_energy_per_local_day(self):
        now = self.parse(self.summary["now"])
        first_day = datetime.datetime.combine(local(self.start).date(), datetime.time(), ZONE)
        for name in ("TV", "Monitor", "Speaker"):
            port = self.ports[name]
            doc = self.s.expect(200, "GET", "/api/ports/%s/energy?period=day&from=%d&to=%d" % (
                port["id"], first_day.timestamp() * 1000, now), token=self.token)["data"]
            day = first_day
            self.assertEqual(len(doc["buckets"]), DAYS + 1, name)
            for bucket in doc["buckets"]:
                lo = int(day.timestamp() * 1000)
                day = datetime.datetime.combine(day.date() + datetime.timedelta(days=1),
                                                datetime.time(), ZONE)
                hi = min(int(day.timestamp() * 1000), now)
                self.assertEqual(bucket["start"], harness.iso_ms(lo), name)
                used, seconds = usage(port["points"], lo, hi)
                wh, money = waste(port["episodes"], port["points"][-1][0], lo, hi)
                self.assertAlmostEqual(bucket["energyKwh"], used / 1000, places=9, msg=name)
                self.assertAlmostEqual(bucket["reportedHours"], seconds / 3600, places=9, msg=name)
                self.assertAlmostEqual(bucket["phantomKwh"], wh / 1000, places=9, msg=name)
                self.assertAlmostEqual(bucket["phantomCost"], money, places=9, msg=name)

    def test_csv_export_returns_every_reading(self):
        conn = harness.http.client.HTTPConnection("127.0.0.1", self.s.http_port, timeout=60)
        conn.request("GET", "/api/readings.csv?from=%d&to=%d" % (self.start, self.end + 1),
                     headers={"Authorization": "Bearer " + self.token})
        response = conn.getresponse()
        self.assertEqual(response.status, 200)
        self.assertIn("text/csv", response.getheader("Content-Type"))
        rows = list(csv.DictReader(io.StringIO(response.read().decode("utf-8"))))
        conn.close()
        sent = {(port["id"], harness.iso_ms(ts)): watts
                for port in self.ports.values() for ts, watts in port["points"]}
        got = {(row["port_id"], row["timestamp"]): float(row["power_w"]) for row in rows}
        self.assertEqual(len(rows), len(sent))
        self.assertEqual(got, sent)

    def test_notified_once_per_outage(self):
        speaker = self.ports["Speaker"]["id"]
        kinds = [row[0] for row in self.s.sql(
            "SELECT kind FROM notifications WHERE port_id = %s AND kind LIKE 'sensor.%'"
            " ORDER BY id", speaker)]
        self.assertEqual(kinds, ["sensor.offline", "sensor.online"])
        self.assertEqual(self.s.count(
            "SELECT count(*) FROM notifications WHERE port_id = %s", self.ports["Router"]["id"]), 0)

    @staticmethod
    def parse(text):
        return int(datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)


if __name__ == "__main__":
    unittest.main()
