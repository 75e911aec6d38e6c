"""The user API: accounts, devices and their tokens, ports, notifications,
and that one user never sees another's things (404)."""

import subprocess
import time
import unittest
import uuid

import harness

STACK = None


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("api", slot=1)


def assertEnvelope(tc, doc, success=True):
    tc.assertIsInstance(doc, dict, doc)
    tc.assertIs(doc.get("success"), success, doc)
    tc.assertIsInstance(doc.get("message"), str, doc)
    if not success:
        tc.assertIsInstance(doc.get("error"), dict, doc)
        tc.assertIsInstance(doc["error"].get("code"), str, doc)


class Accounts(unittest.TestCase):
    def setUp(self):
        self.s = STACK

    def test_register_login(self):
        email = "Reg-%s@Example.test" % uuid.uuid4().hex[:10]
        status, _, doc = self.s.api("POST", "/api/auth/register",
                                    {"email": email, "password": "correct horse", "name": "Ann"})
        self.assertEqual(status, 201, doc)
        assertEnvelope(self, doc)
        user = doc["data"]["user"]
        self.assertIsInstance(user["id"], int)
        self.assertEqual(user["name"], "Ann")
        self.assertEqual(user["email"].lower(), email.lower())
        self.assertIsInstance(doc["data"]["token"], str)
        self.assertGreaterEqual(len(doc["data"]["token"]), 32)
        text = str(doc).lower()
        self.assertNotIn("password", text, "register answer leaks the password or its hash")
        self.assertNotIn("correct horse", text)
        self.assertTrue(self.s.scalar("SELECT password_hash FROM users WHERE id = %s",
                                      user["id"]).startswith("$argon2id$"))

        status, _, doc = self.s.api("POST", "/api/auth/login",
                                    {"email": email, "password": "correct horse"})
        self.assertEqual(status, 200, doc)
        assertEnvelope(self, doc)
        self.assertEqual(doc["data"]["user"]["id"], user["id"])
        token = doc["data"]["token"]
        # the login token works as a Bearer token
        status, _, doc = self.s.api("GET", "/api/devices", token=token)
        self.assertEqual(status, 200, doc)

        for password in ("wrong horse", "correct horse ", "Correct horse"):
            with self.subTest(password=password):
                status, _, doc = self.s.api("POST", "/api/auth/login",
                                            {"email": email, "password": password})
                self.assertEqual(status, 401, doc)
                assertEnvelope(self, doc, success=False)
        # an empty password is no password: bad request or unauthorized, never 200
        status, _, doc = self.s.api("POST", "/api/auth/login", {"email": email, "password": ""})
        self.assertIn(status, (400, 401), doc)
        status, _, doc = self.s.api("POST", "/api/auth/login",
                                    {"email": "nobody-%s@example.test" % uuid.uuid4().hex,
                                     "password": "correct horse"})
        self.assertEqual(status, 401, doc)

        # duplicate email, also in another case (unique on lower(email))
        for dup in (email, email.upper()):
            with self.subTest(duplicate=dup):
                status, _, doc = self.s.api("POST", "/api/auth/register",
                                            {"email": dup, "password": "another one", "name": "B"})
                self.assertEqual(status, 409, doc)
                assertEnvelope(self, doc, success=False)

    def test_register_rejects_bad_input(self):
        for body in ({"email": "x@example.test", "name": "no password"},
                     {"password": "pw-long-enough", "name": "no email"},
                     "not json"):
            with self.subTest(body=body):
                status, _, doc = self.s.api("POST", "/api/auth/register", body)
                self.assertEqual(status, 400, doc)
                assertEnvelope(self, doc, success=False)

    def test_no_auth_401_everywhere(self):
        owner = self.s.setup_owner(ports=1)
        dev, port = owner["device"]["id"], owner["ports"][0]
        routes = [("GET", "/api/devices", None), ("POST", "/api/devices", {"name": "x"}),
                  ("GET", "/api/devices/%s" % dev, None),
                  ("POST", "/api/devices/%s/token" % dev, None),
                  ("DELETE", "/api/devices/%s/token" % dev, None),
                  ("GET", "/api/ports", None),
                  ("POST", "/api/ports", {"name": "x", "deviceId": dev}),
                  ("GET", "/api/ports/%s" % port, None),
                  ("GET", "/api/notifications", None)]
        for token in (None, "garbage-token", "0" * 64):
            for method, path, body in routes:
                with self.subTest(method=method, path=path, token=token):
                    status, _, doc = self.s.api(method, path, body, token)
                    self.assertEqual(status, 401, doc)
                    assertEnvelope(self, doc, success=False)
        # nothing changed without auth: the device token still works
        status, _, doc = self.s.post_reading(owner["device_token"], port)
        self.assertEqual(status, 201, doc)
        self.assertEqual(self.s.count("SELECT count(*) FROM devices WHERE user_id = %s",
                                      owner["user"]["id"]), 1)


class DevicesAndPorts(unittest.TestCase):
    def setUp(self):
        self.s = STACK

    def test_broker_takes_device_tokens(self):
        """deploy/up's broker is up with our plugin: a device logs in with
        the user and port its JSON names and its token; a revocation in the
        API refuses the token and ends a connected session within 5 s."""
        _, token, _, _ = self.s.register_user()
        device, dtoken = self.s.create_device_and_token(token)
        mqtt = self.s.expect(200, "GET", "/api/devices/%s" % device["id"], None,
                             token)["data"]["device"]["mqtt"]
        self.assertEqual(mqtt["port"], self.s.mqtt_port)
        self.assertEqual(mqtt["user"], mqtt["topic"])

        def client(tool, password, *args):
            return [tool, "-h", "127.0.0.1", "-p", str(mqtt["port"]), "-u", mqtt["user"],
                    "-P", password, *args]

        def publish(password):
            return subprocess.run(client("mosquitto_pub", password, "-q", "1", "-t",
                                         "tele/%s/SENSOR" % mqtt["topic"], "-m", "{}"),
                                  capture_output=True, text=True, timeout=10)

        run = publish(dtoken)
        self.assertEqual(run.returncode, 0, "the device token logs in: " + run.stderr)
        self.assertNotEqual(publish(dtoken[::-1]).returncode, 0, "a wrong token is refused")
        session = subprocess.Popen(client("mosquitto_sub", dtoken, "-t", "cmnd/%s/#" % mqtt["topic"]),
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            time.sleep(0.5)
            self.assertIsNone(session.poll(), "a plug stays connected")
            self.s.expect(200, "DELETE", "/api/devices/%s/token" % device["id"], None, token)
            started = time.monotonic()
            session.wait(timeout=5)
            self.assertLess(time.monotonic() - started, 5)
        finally:
            if session.poll() is None:
                session.kill()
                session.wait()
        self.assertNotEqual(publish(dtoken).returncode, 0, "a revoked token is refused")

    def test_device_crud_and_token_shown_once(self):
        _, token, _, _ = self.s.register_user()
        status, _, doc = self.s.api("POST", "/api/devices", {"name": "kitchen board"}, token)
        self.assertEqual(status, 201, doc)
        assertEnvelope(self, doc)
        device = doc["data"]["device"]
        self.assertIsInstance(device["id"], int)
        self.assertEqual(device["name"], "kitchen board")

        doc = self.s.expect(200, "GET", "/api/devices", None, token)
        ids = [d["id"] for d in doc["data"]["devices"]]
        self.assertEqual(ids, [device["id"]])

        status, _, doc = self.s.api("POST", "/api/devices/%s/token" % device["id"], None, token)
        self.assertEqual(status, 201, doc)
        dtoken = doc["data"]["token"]
        self.assertIsInstance(dtoken, str)
        self.assertGreaterEqual(len(dtoken), 32)

        # shown once: neither the device nor the list carries it (or its hash)
        for path in ("/api/devices/%s" % device["id"], "/api/devices"):
            status, _, doc = self.s.api("GET", path, None, token)
            self.assertEqual(status, 200, doc)
            self.assertNotIn(dtoken, str(doc))
            self.assertNotIn("token_hash", str(doc))
        self.assertEqual(self.s.expect(200, "GET", "/api/devices/%s" % device["id"], None,
                                       token)["data"]["device"]["id"], device["id"])
        # only the SHA-256 is stored
        stored = self.s.scalar("SELECT encode(token_hash, 'hex') FROM devices WHERE id = %s",
                               device["id"])
        self.assertEqual(len(stored), 64)
        self.assertNotIn(stored, dtoken.lower())

        status, _, doc = self.s.api("POST", "/api/devices", {}, token)
        self.assertEqual(status, 400, doc)

    def test_port_crud(self):
        _, token, _, _ = self.s.register_user()
        device = self.s.create_device(token)
        status, _, doc = self.s.api("POST", "/api/ports",
                                    {"name": "tv", "deviceId": device["id"]}, token)
        self.assertEqual(status, 201, doc)
        assertEnvelope(self, doc)
        port = doc["data"]["port"]
        self.assertEqual(str(uuid.UUID(port["id"])), port["id"], "port id is not a lower-case uuid")
        self.assertEqual(port["status"], "waiting", "a port that has never reported")
        self.assertEqual(port["name"], "tv")

        doc = self.s.expect(200, "GET", "/api/ports", None, token)
        self.assertEqual([p["id"] for p in doc["data"]["ports"]], [port["id"]])
        doc = self.s.expect(200, "GET", "/api/ports/%s" % port["id"], None, token)
        self.assertEqual(doc["data"]["port"]["id"], port["id"])

        for body in ({"name": "no device"}, {"deviceId": device["id"]},
                     {"name": "bad device", "deviceId": "abc"}):
            with self.subTest(body=body):
                status, _, doc = self.s.api("POST", "/api/ports", body, token)
                self.assertEqual(status, 400, doc)
        status, _, doc = self.s.api("POST", "/api/ports",
                                    {"name": "ghost", "deviceId": 987654321}, token)
        self.assertEqual(status, 404, doc)
        status, _, doc = self.s.api("GET", "/api/ports/%s" % uuid.uuid4(), None, token)
        self.assertEqual(status, 404, doc)

    def test_revoked_token_401_within_1s(self):
        owner = self.s.setup_owner(ports=1)
        dtoken, port = owner["device_token"], owner["ports"][0]
        status, _, doc = self.s.post_reading(dtoken, port)
        self.assertEqual(status, 201, doc)
        status, _, doc = self.s.api("DELETE", "/api/devices/%s/token" % owner["device"]["id"],
                                    None, owner["token"])
        self.assertIn(status, (200, 204), doc)
        revoked = time.time()
        while True:
            before = self.s.readings_count(port)
            status, _, doc = self.s.post_reading(dtoken, port)
            if status == 401:
                break
            self.assertLess(time.time() - revoked, 1.0,
                            "revoked device token still accepted after 1 s: %d %s" % (status, doc))
            time.sleep(0.05)
        self.assertEqual(self.s.readings_count(port), before)
        assertEnvelope(self, doc, success=False)
        # a new token works again
        new = self.s.device_token(owner["token"], owner["device"]["id"])
        self.assertNotEqual(new, dtoken)
        status, _, doc = self.s.post_reading(new, port)
        self.assertEqual(status, 201, doc)

    def test_notifications_empty_for_new_user(self):
        _, token, _, _ = self.s.register_user()
        doc = self.s.expect(200, "GET", "/api/notifications", None, token)
        self.assertEqual(doc["data"]["notifications"], [])
        self.assertEqual(doc["data"]["unread"], 0)

    def test_healthz(self):
        status, _, _ = self.s.api("GET", "/healthz")
        self.assertEqual(status, 200)


class Isolation(unittest.TestCase):
    """User B sees none of user A's things: 404, not 403."""

    @classmethod
    def setUpClass(cls):
        cls.s = STACK
        cls.a = STACK.setup_owner(ports=1)
        cls.b = STACK.setup_owner(ports=1)

    def test_b_gets_404_for_a(self):
        s, a, b = self.s, self.a, self.b
        dev, port = a["device"]["id"], a["ports"][0]
        for method, path, body in [
                ("GET", "/api/devices/%s" % dev, None),
                ("POST", "/api/devices/%s/token" % dev, None),
                ("DELETE", "/api/devices/%s/token" % dev, None),
                ("GET", "/api/ports/%s" % port, None)]:
            with self.subTest(method=method, path=path):
                status, _, doc = s.api(method, path, body, b["token"])
                self.assertEqual(status, 404, doc)
                assertEnvelope(self, doc, success=False)
        # DESIGN's DELETE /api/devices/:id and /api/ports/:id are not in the
        # first API cut: 405 is accepted until they are; never 2xx
        for path in ("/api/devices/%s" % dev, "/api/ports/%s" % port):
            with self.subTest(method="DELETE", path=path):
                status, _, doc = s.api("DELETE", path, None, b["token"])
                self.assertIn(status, (404, 405), doc)
                assertEnvelope(self, doc, success=False)
        # B cannot hang a port on A's device
        status, _, doc = s.api("POST", "/api/ports", {"name": "x", "deviceId": dev}, b["token"])
        self.assertEqual(status, 404, doc)
        # B's lists hold only B's things
        doc = s.expect(200, "GET", "/api/devices", None, b["token"])
        self.assertEqual([d["id"] for d in doc["data"]["devices"]], [b["device"]["id"]])
        doc = s.expect(200, "GET", "/api/ports", None, b["token"])
        self.assertEqual([p["id"] for p in doc["data"]["ports"]], [b["ports"][0]])
        # and none of it touched A: A's device token and port still work
        status, _, doc = s.post_reading(a["device_token"], port)
        self.assertEqual(status, 201, doc)
        s.expect(200, "GET", "/api/ports/%s" % port, None, a["token"])

    def test_b_device_token_on_a_port_404(self):
        port = self.a["ports"][0]
        before = self.s.readings_count(port)
        status, _, doc = self.s.post_reading(self.b["device_token"], port)
        self.assertEqual(status, 404, doc)
        assertEnvelope(self, doc, success=False)
        self.assertEqual(self.s.readings_count(port), before)


if __name__ == "__main__":
    unittest.main(verbosity=2)


class MqttChannels(unittest.TestCase):
    """GET/PUT /api/devices/:id/mqtt-channels through the whole gateway:
    the owner maps a plug's channel onto one of their ports; another
    user's device or port is 404, bad fields name the field, and nothing
    of A's changes."""

    def test_map_by_hand(self):
        s = STACK
        a, b = s.setup_owner(ports=2), s.setup_owner(ports=1)
        dev = a["device"]["id"]
        auto, other = a["ports"]
        # As phantom-mqtt records a channel it saw first.
        s.sql("INSERT INTO mqtt_channels (device_id, channel, port_id) VALUES (%s, '1', %s)",
              dev, auto)
        path = "/api/devices/%s/mqtt-channels" % dev
        doc = s.expect(200, "GET", path, None, a["token"])
        self.assertEqual([(c["channel"], c["portId"], c["isNew"]) for c in doc["data"]["channels"]],
                         [("1", auto, True)])
        for token, body in ((b["token"], None), (b["token"], {"channel": "1", "portId": other}),
                            (a["token"], {"channel": "1", "portId": b["ports"][0]})):
            method = "PUT" if body else "GET"
            with self.subTest(method=method, body=body):
                status, _, doc = s.api(method, path, body, token)
                self.assertEqual(status, 404, doc)
                assertEnvelope(self, doc, success=False)
        for body, field in (({"channel": "1", "portId": "x"}, "portId"),
                            ({"channel": "a b", "portId": other}, "channel"),
                            ({"portId": other}, "channel")):
            with self.subTest(body=body):
                status, _, doc = s.api("PUT", path, body, a["token"])
                self.assertEqual((status, doc["error"].get("field")), (400, field), doc)
        self.assertEqual(s.scalar("SELECT port_id FROM mqtt_channels WHERE device_id = %s", dev),
                         auto)
        doc = s.expect(200, "PUT", path, {"channel": "1", "portId": other}, a["token"])
        self.assertEqual((doc["data"]["channel"]["portId"], doc["data"]["channel"]["isNew"]),
                         (other, False))
        self.assertEqual(s.sql("SELECT port_id, is_new FROM mqtt_channels WHERE device_id = %s",
                               dev), [(other, "f")])
