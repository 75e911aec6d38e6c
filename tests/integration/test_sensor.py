"""The sensor contract: POST /api/sensor/reading exactly as the guide's
simulator sends it, idempotent retries, and every rejection (which stores
nothing)."""

import calendar
import socket
import threading
import time
import unittest
import uuid

import harness
from harness import ISO_RE, STATUSES, iso_ms, now_ms

STACK = None


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("sensor", slot=0)


class SensorTestCase(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        cls.s = STACK
        cls.owner = STACK.setup_owner(ports=1)
        cls.dtoken = cls.owner["device_token"]
        cls.port = cls.owner["ports"][0]

    def assertError(self, status, doc, headers, want):
        self.assertEqual(status, want, "expected %d, got %d %s" % (want, status, doc))
        self.assertIsInstance(doc, dict, "error body is not a JSON object")
        self.assertIs(doc.get("success"), False, doc)
        self.assertIsInstance(doc.get("message"), str, doc)
        self.assertTrue(doc["message"], doc)
        self.assertIsInstance(doc.get("error"), dict, doc)
        self.assertIsInstance(doc["error"].get("code"), str, doc)
        self.assertTrue(doc["error"]["code"], doc)
        self.assertIn("json", headers.get("content-type", ""), headers)

    def assertCreated(self, status, doc):
        self.assertEqual(status, 201, "expected 201, got %d %s" % (status, doc))
        return doc["data"]["reading"]


class GuideContract(SensorTestCase):
    def test_guide_request_and_response(self):
        # the guide's request body, byte for byte apart from token and port
        status, headers, doc = self.s.post_reading(self.dtoken, self.port,
                                                   voltage=230.5, current=0.45, power=103.73)
        before = now_ms()
        self.assertEqual(status, 201, doc)
        self.assertIn("application/json", headers.get("content-type", ""))
        self.assertEqual(set(doc), {"success", "message", "data"}, doc)
        self.assertIs(doc["success"], True)
        self.assertEqual(doc["message"], "Sensor reading created successfully")
        data = doc["data"]
        self.assertEqual(set(data), {"reading", "phantomDetected", "portStatus"}, data)
        reading = data["reading"]
        self.assertEqual(set(reading), {"id", "voltage", "current", "power", "timestamp"}, reading)
        self.assertIsInstance(reading["id"], int)
        self.assertNotIsInstance(reading["id"], bool)
        self.assertGreater(reading["id"], 0)
        self.assertEqual(reading["voltage"], 230.5)
        self.assertEqual(reading["current"], 0.45)
        self.assertEqual(reading["power"], 103.73)
        self.assertRegex(reading["timestamp"], ISO_RE)
        self.assertIsInstance(data["phantomDetected"], bool)
        self.assertIs(data["phantomDetected"], False)
        self.assertIn(data["portStatus"], STATUSES)
        self.assertEqual(data["portStatus"], "active")  # 103.73 W > standbyWatts 15
        # server time when the device sends none
        ts = calendar.timegm(time.strptime(reading["timestamp"][:19], "%Y-%m-%dT%H:%M:%S"))
        self.assertLess(abs(ts * 1000 - before), 10000, reading["timestamp"])

        # it really is in PostgreSQL: 201 means committed
        rows = self.s.sql(
            "SELECT port_id, voltage, current, power,"
            " to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            " FROM readings WHERE id = %s", reading["id"])
        self.assertEqual(len(rows), 1, "reading id %s not stored exactly once" % reading["id"])
        port, v, c, p, t = rows[0]
        self.assertEqual(port, self.port)
        self.assertEqual((float(v), float(c), float(p)), (230.5, 0.45, 103.73))
        self.assertEqual(t, reading["timestamp"])

    def test_device_timestamp_iso_and_epoch_ms(self):
        ms = now_ms() - 5000
        ms -= ms % 1000
        ms += 123
        iso = iso_ms(ms)
        reading = self.assertCreated(*self.s.post_reading(self.dtoken, self.port, timestamp=iso)[::2])
        self.assertEqual(reading["timestamp"], iso)
        reading2 = self.assertCreated(
            *self.s.post_reading(self.dtoken, self.port, timestamp=ms + 1000)[::2])
        self.assertEqual(reading2["timestamp"], iso_ms(ms + 1000))
        self.assertNotEqual(reading["id"], reading2["id"])
        got = self.s.scalar(
            "SELECT to_char(ts AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"')"
            " FROM readings WHERE id = %s", reading["id"])
        self.assertEqual(got, iso)

    def test_integer_values_accepted(self):
        # the guide's simulator rounds; 230 (an integer in JSON) is a number too
        reading = self.assertCreated(*self.s.post_reading(
            self.dtoken, self.port, voltage=230, current=0, power=0)[::2])
        self.assertEqual(reading["voltage"], 230)


class Idempotency(SensorTestCase):
    def test_same_reading_id_twice(self):
        key = "r-" + uuid.uuid4().hex
        before = self.s.readings_count(self.port)
        a = self.assertCreated(*self.s.post_reading(self.dtoken, self.port, readingId=key)[::2])
        b = self.assertCreated(*self.s.post_reading(self.dtoken, self.port, readingId=key)[::2])
        self.assertEqual(a["id"], b["id"])
        self.assertEqual(self.s.readings_count(self.port), before + 1)
        self.assertEqual(self.s.count(
            "SELECT count(*) FROM reading_keys WHERE reading_key = %s", key), 1)
        self.assertEqual(self.s.scalar(
            "SELECT reading_id FROM reading_keys WHERE reading_key = %s", key), str(a["id"]))

    def test_same_reading_id_concurrently(self):
        key = "c-" + uuid.uuid4().hex
        before = self.s.readings_count(self.port)
        ts = iso_ms(now_ms() - 2000)
        results = [None] * 5
        go = threading.Barrier(5)

        def send(i):
            go.wait(timeout=10)
            try:
                results[i] = self.s.post_reading(self.dtoken, self.port, readingId=key,
                                                 timestamp=ts)
            except Exception as e:  # reported below, not lost in the thread
                results[i] = (None, None, repr(e))

        threads = [threading.Thread(target=send, args=(i,)) for i in range(5)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(timeout=30)
        ids = set()
        for status, _, doc in results:
            self.assertEqual(status, 201, doc)
            ids.add(doc["data"]["reading"]["id"])
        self.assertEqual(len(ids), 1, "one readingId answered with ids %s" % ids)
        self.assertEqual(self.s.readings_count(self.port), before + 1)
        self.assertEqual(self.s.count(
            "SELECT count(*) FROM readings WHERE id = %s", ids.pop()), 1)

    def test_reading_id_is_per_device(self):
        # reading_keys is keyed by (device, key): another device's same key is another reading
        key = "d-" + uuid.uuid4().hex
        dev2, tok2 = self.s.create_device_and_token(self.owner["token"], "second board")
        port2 = self.s.create_port(self.owner["token"], dev2["id"])["id"]
        a = self.assertCreated(*self.s.post_reading(self.dtoken, self.port, readingId=key)[::2])
        b = self.assertCreated(*self.s.post_reading(tok2, port2, readingId=key)[::2])
        self.assertNotEqual(a["id"], b["id"])


class Rejections(SensorTestCase):
    """Each case: status, envelope with error.code, and no row stored."""

    def check(self, want, body):
        before_port = self.s.readings_count(self.port)
        before_all = self.s.readings_count()
        status, headers, doc = self.s.api("POST", "/api/sensor/reading", body)
        self.assertError(status, doc, headers, want)
        self.assertEqual(self.s.readings_count(self.port), before_port, "a rejected reading was stored")
        self.assertEqual(self.s.readings_count(), before_all, "a rejected reading was stored")
        return doc

    def body(self, **changes):
        b = {"deviceToken": self.dtoken, "portId": self.port,
             "voltage": 230.5, "current": 0.45, "power": 103.73}
        for k, v in changes.items():
            if v is Ellipsis:
                del b[k]
            else:
                b[k] = v
        return b

    def test_malformed_json(self):
        for raw in ('{"deviceToken": "x", ', "not json", "[]", '"a string"', "42"):
            with self.subTest(raw=raw):
                self.check(400, raw)

    def test_missing_fields(self):
        for field in ("voltage", "current", "power", "portId"):
            with self.subTest(field=field):
                self.check(400, self.body(**{field: Ellipsis}))
        with self.subTest(field="deviceToken"):
            # no token at all: bad request or unauthenticated, never stored
            b = self.body(deviceToken=Ellipsis)
            status, headers, doc = self.s.api("POST", "/api/sensor/reading", b)
            self.assertIn(status, (400, 401), doc)
            self.assertError(status, doc, headers, status)

    def test_wrong_types(self):
        for field in ("voltage", "current", "power"):
            for value in ("230.5", True, None, [1], {"v": 1}):
                with self.subTest(field=field, value=value):
                    self.check(400, self.body(**{field: value}))
        for value in (123, None, True):
            with self.subTest(field="portId", value=value):
                self.check(400, self.body(portId=value))

    def test_nan_and_infinity_literals(self):
        base = ('{"deviceToken": "%s", "portId": "%s", "voltage": %s, "current": 0.45,'
                ' "power": 103.73}')
        for lit in ("NaN", "Infinity", "-Infinity", "1e999"):
            with self.subTest(literal=lit):
                self.check(400, base % (self.dtoken, self.port, lit))

    def test_out_of_range(self):
        cases = [("voltage", -1), ("voltage", -0.01), ("voltage", 1e9), ("current", 1e9),
                 ("power", 1e12), ("current", -1e9)]
        for field, value in cases:
            with self.subTest(field=field, value=value):
                self.check(400, self.body(**{field: value}))

    def test_bad_optional_fields(self):
        for ts in ("yesterday", "2024-13-45T99:00:00.000Z", True, [1]):
            with self.subTest(timestamp=ts):
                self.check(400, self.body(timestamp=ts))
        with self.subTest(readingId="too long"):
            self.check(400, self.body(readingId="k" * 65))  # PROTO_KEY_MAX 64
        with self.subTest(readingId=[1]):
            self.check(400, self.body(readingId=[1]))

    def test_duplicate_keys_rejected(self):
        raw = ('{"deviceToken": "%s", "portId": "%s", "voltage": 230.5, "voltage": 1,'
               ' "current": 0.45, "power": 103.73}' % (self.dtoken, self.port))
        self.check(400, raw)

    def test_unknown_token_401(self):
        self.check(401, self.body(deviceToken="0" * 64))
        self.check(401, self.body(deviceToken="not-a-token"))

    def test_unknown_port_404(self):
        self.check(404, self.body(portId=str(uuid.uuid4())))

    def test_not_a_uuid_port(self):
        status, headers, doc = self.s.api("POST", "/api/sensor/reading",
                                          self.body(portId="not-a-uuid"))
        self.assertIn(status, (400, 404), doc)
        self.assertError(status, doc, headers, status)

    def test_other_users_port_404(self):
        other = self.s.setup_owner(ports=1)
        before = self.s.readings_count(other["ports"][0])
        self.check(404, self.body(portId=other["ports"][0]))
        self.assertEqual(self.s.readings_count(other["ports"][0]), before)

    def test_body_too_large_413(self):
        # a real body over the 4 KiB sensor limit
        pad = "x" * 8192
        self.check(413, self.body(readingId=pad))

    def test_huge_content_length_413_without_reading(self):
        """Content-Length 10 MB and a tiny body: the gateway answers 413 from the
        header without waiting for a body that never comes."""
        before = self.s.readings_count()
        s = socket.create_connection(("127.0.0.1", self.s.http_port), timeout=5)
        try:
            s.sendall(b"POST /api/sensor/reading HTTP/1.1\r\nHost: localhost\r\n"
                      b"Content-Type: application/json\r\nContent-Length: 10485760\r\n\r\n{\"a\":")
            t0 = time.time()
            data = b""
            while b"\r\n\r\n" not in data:
                chunk = s.recv(4096)
                if not chunk:
                    break
                data += chunk
            self.assertLess(time.time() - t0, 5)
        except socket.timeout:
            self.fail("no answer within 5 s to a 10 MB Content-Length: the gateway waits for the body")
        finally:
            s.close()
        status_line = data.split(b"\r\n", 1)[0].decode("latin-1")
        self.assertRegex(status_line, r"^HTTP/1\.[01] 413 ", data[:500])
        self.assertEqual(self.s.readings_count(), before)

    def test_get_not_allowed(self):
        status, _, doc = self.s.api("GET", "/api/sensor/reading")
        self.assertIn(status, (404, 405), doc)


if __name__ == "__main__":
    unittest.main(verbosity=2)
