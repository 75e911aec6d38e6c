"""Backfill: readings with device timestamps in the past, uploaded late and
in big batches (a board or bridge that was offline sending its buffer),
must give what the same readings give live (issue 12, item 3).

One account, one device per way of sending, the same three ports on each
with the same scripted three hours (a day ago; one reading every 30 s):
  live      in time order across the ports, a few readings per request
  backfill  each port's buffer in big batches whose readings are shuffled,
            one port's batches interleaved with the others', the rest of
            all three ports in one last shuffled batch
Then every reading's verdict (status), the episodes (start, end, energy,
samples, mean, peak), the minute rollups (energy used) and the
notifications of each port must be equal on both devices.

And a straggler: a reading older than its port's last judged one (sent
after it) is stored, acknowledged with the port's current status and
counted in the energy used, but is not judged again: the episodes and
notifications stay as they were (docs/figures-and-api.md, "Backfill").
"""

import random
import time
import unittest

import harness
import test_figures as figures   # the golden scenario's episodes() and intervals()

STACK = None
STEP_MS = figures.STEP_MS        # 30 s
MINUTE = 60 * 1000


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("backfill", slot=7)


def script(start, spans):
    """[(ts, W)] from spans [(minutes, W or None for silence)], every STEP_MS."""
    out = []
    at = start
    for minutes, watts in spans:
        end = at + int(minutes * MINUTE)
        if watts is not None:
            out.extend((ts, float(watts)) for ts in range(at, end, STEP_MS))
        at = end
    return out


#  Three hours per port. Each ends in use, so no episode is still open when
#  the detector's offline timer (gateway clock) might run.
PORTS = [
    # TV: standby, watched, standby, watched again, a short standby
    ("TV", [(40, 4), (40, 100), (50, 4), (20, 100), (25, 4), (5, 100)]),
    # Charger: standby split by a 10-minute silence (offline, back
    # online), in use, standby, in use
    ("Charger", [(30, 2), (10, None), (30, 2), (40, 60), (60, 2.5), (10, 60)]),
    # Lamp: off, low draw too short to be phantom, flapping standby inside
    # the notifier's cool-down, off, in use
    ("Lamp", [(20, 0.2), (0.5, 8), (10, 0.2), (15, 3), (1, 50), (3, 3), (1, 50), (40, 3),
              (30, 0.2), (60, 40)]),
]


class Backfill(unittest.TestCase):

    @classmethod
    def setUpClass(cls):
        s = cls.s = STACK
        _, cls.token, _, _ = s.register_user("Backfill")
        end = (harness.now_ms() // MINUTE) * MINUTE - 24 * 3600 * 1000
        cls.start = end - 3 * 3600 * 1000
        cls.series = {name: script(cls.start, spans) for name, spans in PORTS}
        cls.sets = {}
        for way in ("live", "backfill", "straggler"):
            device, device_token = s.create_device_and_token(cls.token, "%s board" % way)
            ports = {name: s.create_port(cls.token, device["id"], name)["id"]
                     for name, _ in PORTS}
            cls.sets[way] = {"token": device_token, "ports": ports}
        rng = random.Random(12)
        cls.started = time.time()
        cls.send(cls.sets["live"], cls.live_batches())
        cls.send(cls.sets["backfill"], cls.backfill_batches(rng))
        # The straggler's port: its series in order, then one reading
        # from the middle of its first standby (100 W, which live would
        # have ended the episode with) after its last one.
        tv = cls.series["TV"]
        cls.straggler = (cls.start + 20 * MINUTE + 15000, 100.0)
        cls.send(cls.sets["straggler"], [[("TV", ts, w) for ts, w in tv]])
        cls.straggler_result = cls.send(cls.sets["straggler"], [[("TV",) + cls.straggler]])[0]
        cls.converge()
        print("backfill: sent and rolled up in %.1f s" % (time.time() - cls.started))

    @classmethod
    def live_batches(cls):
        """Every port's readings in time order, four per request."""
        items = sorted(((ts, name, w) for name, points in cls.series.items()
                        for ts, w in points), key=lambda item: (item[0], item[1]))
        items = [(name, ts, w) for ts, name, w in items]
        return [items[i:i + 4] for i in range(0, len(items), 4)]

    @classmethod
    def backfill_batches(cls, rng):
        """Each port's buffer, oldest first, in batches of 100 readings,
        the ports' batches interleaved; the last batch holds the rest of
        all three. Every batch shuffled."""
        chunks = {name: [[(name, ts, w) for ts, w in points[i:i + 100]]
                         for i in range(0, len(points), 100)]
                  for name, points in cls.series.items()}
        batches = []
        for round_ in range(max(len(c) for c in chunks.values()) - 1):
            batches += [list(c[round_]) for c in chunks.values() if round_ < len(c) - 1]
        batches.append([item for c in chunks.values() for item in c[-1]])
        for batch in batches:
            rng.shuffle(batch)
        sent = sorted((ts, name) for batch in batches for name, ts, _ in batch)
        assert sent == sorted((ts, name) for name, points in cls.series.items()
                              for ts, _ in points), "backfill batches lose or repeat readings"
        return batches

    @classmethod
    def send(cls, port_set, batches):
        """Posts the batches in order, retrying what the pipeline could not
        take (503/504) with its readingId; returns the last batch's results."""
        deadline = time.time() + 60
        results = None
        for batch in batches:
            body = [{"portId": port_set["ports"][name], "voltage": 230.0,
                     "current": round(w / 230.0, 6), "power": w,
                     "timestamp": harness.iso_ms(ts), "readingId": "%s-%d" % (name, ts)}
                    for name, ts, w in batch]
            results = [None] * len(body)
            pending = list(range(len(body)))
            while pending:
                if time.time() > deadline:
                    raise AssertionError("readings not acknowledged in time")
                status, _, doc = cls.s.api("POST", "/api/sensor/readings",
                                           {"deviceToken": port_set["token"],
                                            "readings": [body[i] for i in pending]})
                if status != 200:
                    time.sleep(0.2)
                    continue
                retry = []
                for result in doc["data"]["results"]:
                    index = pending[result["index"]]
                    if result["status"] in (503, 504):
                        retry.append(index)
                    elif result["status"] != 201:
                        raise AssertionError("reading refused: %s" % result)
                    else:
                        results[index] = result
                pending = retry
                if retry:
                    time.sleep(0.2)
        return results

    @classmethod
    def converge(cls):
        """Late readings are rolled up after their commit (their minutes
        re-rolled within about a second): wait until every port's rollups
        hold the energy of its series (the straggler's with it)."""
        want = {}
        for way, port_set in cls.sets.items():
            for name, port in port_set["ports"].items():
                points = cls.points(way, name)
                want[port] = sum(e for _, _, e in figures.intervals(points)) if points else 0.0
        deadline = time.time() + 20
        while True:
            got = dict(cls.s.sql(
                "SELECT port_id, sum(energy_wh) FROM readings_minute"
                " WHERE port_id = ANY (string_to_array(%s, ',')::uuid[]) GROUP BY port_id",
                ",".join(want)))
            if all(abs(float(got.get(port, 0)) - wh) < 1e-9 for port, wh in want.items()):
                return
            if time.time() > deadline:
                raise AssertionError("rollups did not converge: %s, want %s" % (got, want))
            time.sleep(0.5)

    @classmethod
    def points(cls, way, name):
        if way == "straggler":
            return sorted(cls.series["TV"] + [cls.straggler]) if name == "TV" else []
        return cls.series[name]

    # ------------------------------------------------------------------

    def port_rows(self, way, name, query):
        port = self.sets[way]["ports"][name]
        rows = self.s.sql(query, port)
        return [tuple(field.replace(port, "<port>") for field in row) for row in rows]

    def verdicts(self, way, name):
        return self.port_rows(way, name, "SELECT (extract(epoch FROM ts) * 1000)::bigint, power,"
                              " status FROM readings WHERE port_id = %s ORDER BY ts")

    def episodes(self, way, name):
        return self.port_rows(way, name, "SELECT started_at, ended_at, energy_wh::text, samples,"
                              " mean_watts::text, peak_watts::text FROM episodes"
                              " WHERE port_id = %s ORDER BY started_at")

    def rollups(self, way, name):
        return self.port_rows(way, name, "SELECT minute, min_power, mean_power::text, max_power,"
                              " energy_wh::text, samples, reported_seconds::text"
                              " FROM readings_minute WHERE port_id = %s ORDER BY minute")

    def notifications(self, way, name):
        return self.port_rows(way, name, "SELECT kind, title, message, data::text"
                              " FROM notifications WHERE port_id = %s ORDER BY kind,"
                              " data->>'start', data->>'ts', id")

    def test_every_reading_stored_once_with_the_live_verdict(self):
        for name, points in self.series.items():
            live = self.verdicts("live", name)
            self.assertEqual([int(row[0]) for row in live], [ts for ts, _ in points], name)
            self.assertEqual(self.verdicts("backfill", name), live, name)

    def test_same_episodes(self):
        for name, points in self.series.items():
            live = self.episodes("live", name)
            self.assertEqual(self.episodes("backfill", name), live, name)
            # as DESIGN.md computes them (start, end, Wh), all closed
            want = figures.episodes(points, "standby", None)
            self.assertEqual(len(live), len(want), name)
            for row, (start, end, wh) in zip(live, want):
                self.assertIsNotNone(end, name)
                self.assertAlmostEqual(float(row[2]), wh, places=6, msg=name)
        # the script has episodes to compare: TV 3, Charger 3 (the silence
        # splits one), Lamp 3 (the flapping standby)
        self.assertEqual([len(self.episodes("live", name)) for name in self.series], [3, 3, 3])

    def test_same_rollups(self):
        for name in self.series:
            live = self.rollups("live", name)
            self.assertGreater(len(live), 150, name)
            self.assertEqual(self.rollups("backfill", name), live, name)

    def test_same_notifications(self):
        kinds = set()
        for name in self.series:
            live = self.notifications("live", name)
            kinds.update(row[0] for row in live)
            self.assertEqual(self.notifications("backfill", name), live, name)
        self.assertEqual(kinds, {"phantom.start", "phantom.end", "sensor.offline",
                                 "sensor.online"})

    def test_straggler_stored_not_judged_again(self):
        result = self.straggler_result
        self.assertEqual(result["status"], 201)
        # answered with the port's current status (the series ends in use)
        self.assertEqual(result["portStatus"], "active", result)
        # stored, with the status the port had when it came
        rows = self.verdicts("straggler", "TV")
        self.assertEqual(len(rows), len(self.series["TV"]) + 1)
        ts, watts = self.straggler
        self.assertIn((str(ts), "100", "1"), [(r[0], r[1], r[2]) for r in rows])
        # not judged again: the episodes are the live port's, unsplit,
        # and so are the notifications
        self.assertEqual(self.episodes("straggler", "TV"), self.episodes("live", "TV"))
        self.assertEqual(self.notifications("straggler", "TV"),
                         self.notifications("live", "TV"))
        # but counted in the energy used: converge() waited for the
        # rollups of the series with the straggler in it


if __name__ == "__main__":
    unittest.main()
