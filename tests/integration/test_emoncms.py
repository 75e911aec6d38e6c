"""The Emoncms input API: emonhub's and IoTaWatt's requests replayed byte
for byte as their sources build them (emonhub's EmonHubEmoncmsHTTPInterfacer,
IoTaWatt's Emoncms_uploader), Emoncms's documented input/post forms, and
GET /api/sensor/last. Checked in the answers and in PostgreSQL."""

import http.client
import json
import time
import unittest
import urllib.parse

import harness

STACK = None


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("emoncms", slot=8)


def raw(method, path, body=None, headers=None):
    """(status, headers, text): the answer's text, not JSON."""
    conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port, timeout=harness.HTTP_TIMEOUT)
    try:
        conn.request(method, path, body=body, headers=headers or {})
        resp = conn.getresponse()
        text = resp.read().decode()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, text
    finally:
        conn.close()


class Emoncms(unittest.TestCase):
    @classmethod
    def setUpClass(cls):
        s = cls.s = STACK
        cls.owner = s.setup_owner(ports=5)
        token = cls.owner["token"]
        # the Emoncms apikey form: 32 hex digits, what emonhub and IoTaWatt accept
        doc = s.expect(201, "POST", "/api/devices/%s/token" % cls.owner["device"]["id"],
                       {"format": "emoncms"}, token)
        cls.apikey = doc["data"]["token"]
        keys = ["10:1", "10:2", "IotaWatt:1", "IotaWatt:3", "emontx:power1"]
        for port, key in zip(cls.owner["ports"], keys):
            doc = s.expect(200, "PATCH", "/api/ports/" + port, {"externalKey": key}, token)
            assert doc["data"]["port"]["externalKey"] == key, doc
        cls.port = dict(zip(keys, cls.owner["ports"]))

    def rows(self, port):
        return self.s.sql("SELECT (extract (epoch FROM ts) * 1000)::bigint, voltage, current, power"
                          " FROM readings WHERE port_id = %s ORDER BY ts", port)

    def test_emonhub_bulk(self):
        now = int(time.time())
        # emonhub: requests.post(url + '/input/bulk.json?', {apikey, data, sentat}):
        # a form body; data is json.dumps(buffer, separators=(',', ':'))
        data = json.dumps([[now - 20, 10, 150, 250.5, 23967], [now - 10, 10, 151, 251, 23970]],
                          separators=(',', ':'))
        body = urllib.parse.urlencode({"apikey": self.apikey, "data": data, "sentat": str(now)})
        headers = {"Content-Type": "application/x-www-form-urlencoded"}
        status, _, text = raw("POST", "/input/bulk.json?", body, headers)
        self.assertEqual((status, text), (200, "ok"))
        want = [((now - 20) * 1000, 150.0), ((now - 10) * 1000, 151.0)]
        got = [(int(r[0]), float(r[3])) for r in self.rows(self.port["10:1"])]
        self.assertEqual(got, want)
        voltage, current = float(self.rows(self.port["10:2"])[0][1]), float(self.rows(self.port["10:2"])[0][2])
        self.assertEqual(voltage, 230.0)
        self.assertAlmostEqual(current, 250.5 / 230.0, places=9)
        # the answer was lost: emonhub posts the same buffer again, with a new
        # sentat (a second later here): stored once
        time.sleep(1.1)
        body = urllib.parse.urlencode({"apikey": self.apikey, "data": data,
                                       "sentat": str(int(time.time()))})
        status, _, text = raw("POST", "/input/bulk.json?", body, headers)
        self.assertEqual((status, text), (200, "ok"))
        self.assertEqual(len(self.rows(self.port["10:1"])), 2)

    def test_iotawatt(self):
        bearer = {"Authorization": "Bearer " + self.apikey}
        # IoTaWatt asks where to resume: input/get?node=<node>
        status, _, text = raw("GET", "/input/get?node=IotaWatt", None, bearer)
        self.assertEqual(status, 200)
        self.assertEqual(json.loads(text), {"1": {"time": 0, "value": 0}, "3": {"time": 0, "value": 0}})
        status, _, text = raw("GET", "/input/get?node=nosuch", None, bearer)
        self.assertEqual((status, text), (200, '"Node does not exist"'))
        # then POSTs /input/bulk, form type, time=<lastSent>&data=[[offset,"node",v,null,...]]
        last = int(time.time()) - 60
        last -= last % 10
        body = 'time=%d&data=[[10,"IotaWatt",120.5,null,3.2],[20,"IotaWatt",121.0,null,3.3]]' % last
        status, _, text = raw("POST", "/input/bulk", body,
                              dict(bearer, **{"Content-Type": "application/x-www-form-urlencoded"}))
        self.assertEqual(status, 200)
        self.assertTrue(text.startswith("ok"), text)
        got = [(int(r[0]), float(r[3])) for r in self.rows(self.port["IotaWatt:1"])]
        self.assertEqual(got, [((last + 10) * 1000, 120.5), ((last + 20) * 1000, 121.0)])
        got = [float(r[3]) for r in self.rows(self.port["IotaWatt:3"])]
        self.assertEqual(got, [3.2, 3.3])
        status, _, text = raw("GET", "/input/get?node=IotaWatt", None, bearer)
        self.assertEqual(json.loads(text)["1"], {"time": last + 20, "value": 121.0})

    def test_input_post_forms(self):
        port = self.port["emontx:power1"]
        now = int(time.time())
        q = urllib.parse.urlencode({"node": "emontx", "time": now - 100, "apikey": self.apikey,
                                    "fulljson": json.dumps({"power1": 100, "vrms": 240})})
        status, _, text = raw("GET", "/input/post?" + q)
        self.assertEqual((status, text), (200, '{"success": true}'))
        # Emoncms's own documented loose form, and POST with a Bearer header
        q = "node=emontx&time=%d&json={power1:200,vrms:239.5}" % (now - 90)
        status, _, text = raw("POST", "/input/post", q,
                              {"Authorization": "Bearer " + self.apikey,
                               "Content-Type": "application/x-www-form-urlencoded"})
        self.assertEqual((status, text), (200, "ok"))
        rows = [(int(r[0]), float(r[1]), float(r[3])) for r in self.rows(port)]
        self.assertEqual(rows, [((now - 100) * 1000, 240.0, 100.0), ((now - 90) * 1000, 239.5, 200.0)])
        self.assertAlmostEqual(float(self.rows(port)[0][2]), 100 / 240, places=9)
        # Emoncms's errors, and nothing stored
        status, _, text = raw("GET", "/input/post?node=emontx&json={power1:abc}&apikey=" + self.apikey)
        self.assertEqual((status, text), (200, '{"success": false, "message": "Format error, json value is not numeric"}'))
        status, _, text = raw("GET", "/input/post?node=emontx&apikey=" + self.apikey)
        self.assertEqual(json.loads(text), {"success": False, "message": "Request contains no data via csv, json or data tag"})
        status, _, text = raw("GET", "/input/post?node=emontx&json={power1:5}&apikey=" + "0" * 32)
        self.assertEqual(status, 401)
        self.assertIs(json.loads(text)["success"], False)
        status, _, text = raw("GET", "/input/post?node=emontx&json={power1:-5}&apikey=" + self.apikey)
        self.assertIs(json.loads(text)["success"], False)
        self.assertEqual(len(self.rows(port)), 2)

    def test_sensor_last(self):
        port = self.port["emontx:power1"]
        ts = int(time.time()) - 30
        q = "node=emontx&time=%d&json={power1:7}&apikey=%s" % (ts, self.apikey)
        self.assertEqual(raw("GET", "/input/post?" + q)[2], "ok")
        doc = self.s.expect(200, "GET", "/api/sensor/last?portId=" + port, token=self.apikey)
        (item,) = doc["data"]["ports"]
        self.assertEqual(item["portId"], port)
        self.assertEqual(item["timestamp"], harness.iso_ms(ts * 1000))
        self.assertEqual(item["readingId"], "emoncms:%s:%d" % (port, ts))
        self.assertEqual(str(item["id"]), self.s.scalar(
            "SELECT id FROM readings WHERE port_id = %s AND ts = to_timestamp (%s)", port, ts))
        doc = self.s.expect(200, "GET", "/api/sensor/last", token=self.apikey)
        self.assertEqual(sorted(p["portId"] for p in doc["data"]["ports"]), sorted(self.owner["ports"]))
        # another user's port is not found; a bad token is refused
        other = self.s.setup_owner(ports=1)
        status, _, doc = self.s.api("GET", "/api/sensor/last?portId=" + other["ports"][0], token=self.apikey)
        self.assertEqual(status, 404, doc)
        status, _, doc = self.s.api("GET", "/api/sensor/last", token="nope")
        self.assertEqual(status, 401, doc)


if __name__ == "__main__":
    unittest.main()
