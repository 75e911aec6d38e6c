"""Fault: nothing a broker acknowledged to a plug is lost (issue 17 item 4).

Simulated plugs (Tasmota tele/<name>/SENSOR and Shelly Gen2
<name>/status/switch:0, MQTT 3.1.1 over a raw socket, logged in with their
device's MQTT name and token) publish at QoS 1, each message waiting for its
PUBACK, while phantom-mqtt, a detector and the store are each kill -9'd
(supervisord restarts them) and the broker is kill -9'd (supervisord
restarts it). A plug whose connection breaks reconnects and sends again
what it had no PUBACK for, as the firmware's MQTT clients do on their next
connect. Each message carries a unique power value, so PostgreSQL says
which were stored and how often: lost = acknowledged but not stored,
duplicates = a message with the device's time (Tasmota) stored more than
once; a time-less message (Shelly status) sent again after a reconnect is
kept as a reading of the same watts (timeless_copies, at most one per
reconnect: the plugin cannot tell it from an idle plug's real repeat).

With the plugin's spool (mqtt_spool = on, deploy/up's default) lost and
duplicates must be 0. The negative control redeploys the same stack with
mqtt_spool = off and runs the same faults: the checker must find acked
messages lost (libmosquitto PUBACKs before on_message; the broker's
in-memory queue dies with it). Each lost message is put down to the first
kill after its PUBACK.
"""

import os
import signal
import socket
import struct
import threading
import time
import unittest
import urllib.request

import faultlib
from faultlib import duration

PARTITIONS = 2
PLUGS = 24
INTERVAL_S = 0.06            # each plug: a message every 60 ms (400 msg/s offered)
PUBACK_TIMEOUT_S = 5.0
SPOOL_DELAY_S = 3            # mqtt_spool_delay for the test (default 30)
STACK = None
PLUG_CREDENTIALS = []        # (name, token, shape)


def setUpModule():
    global STACK
    STACK = faultlib.start_stack("fault-mqtt", slot=4, partitions=PARTITIONS, settings={
        "PHANTOM_MQTT_SPOOL": "on", "PHANTOM_MQTT_SPOOL_DELAY": str(SPOOL_DELAY_S)})
    _, token, _, _ = STACK.register_user()
    for i in range(PLUGS):
        device, dtoken = STACK.create_device_and_token(token, "plug %d" % i)
        name = STACK.scalar("SELECT mqtt_name FROM devices WHERE id = %s", device["id"])
        PLUG_CREDENTIALS.append((name, dtoken, "tasmota" if i % 2 == 0 else "shelly"))


# ----------------------------------------------------------------------
# MQTT 3.1.1, the packets a plug sends (OASIS MQTT 3.1.1, 3.1 / 3.3 / 3.4)

def _string(text):
    data = text.encode()
    return struct.pack("!H", len(data)) + data


def _packet(first, body):
    length, out = len(body), bytearray([first])
    while True:
        byte, length = length % 128, length // 128
        out.append(byte | (0x80 if length else 0))
        if not length:
            return bytes(out) + body


def _read_packet(sock):
    def exact(n):
        data = b""
        while len(data) < n:
            chunk = sock.recv(n - len(data))
            if not chunk:
                raise ConnectionError("closed")
            data += chunk
        return data
    first = exact(1)[0]
    length, shift = 0, 0
    while True:
        byte = exact(1)[0]
        length |= (byte & 0x7F) << shift
        shift += 7
        if not byte & 0x80:
            break
    return first, exact(length)


class Plug(threading.Thread):
    """One plug: publishes its schedule, each message until it gets a PUBACK."""

    def __init__(self, port, name, token, shape, count, t0, base_s, power_base, stop=None):
        """count messages, or (count None) until stop is set."""
        super().__init__(daemon=True)
        self.stop = stop
        self.power_base = power_base
        self.port, self.name, self.token, self.shape = port, name, token, shape
        self.count, self.t0, self.base_s = count, t0, base_s
        self.sock, self.mid = None, 0
        self.acked = {}          # seq -> time of its PUBACK
        self.sends = 0           # PUBLISH packets, republishes included
        self.reconnects = 0
        self.failed = []         # seqs never acked within the deadline
        self.published = 0

    def _connect(self, deadline):
        while time.time() < deadline:
            try:
                sock = socket.create_connection(("127.0.0.1", self.port), timeout=2)
                sock.settimeout(PUBACK_TIMEOUT_S)
                body = _string("MQTT") + bytes([4, 0x80 | 0x40 | 0x02]) + struct.pack("!H", 60)
                body += _string("DVES_" + self.name) + _string(self.name) + _string(self.token)
                sock.sendall(_packet(0x10, body))
                first, data = _read_packet(sock)
                if first == 0x20 and data[1] == 0:
                    self.sock = sock
                    return True
                sock.close()
            except OSError:
                pass
            time.sleep(0.2)
        return False

    def payload(self, seq):
        power = self.power_base + seq * 0.01
        if self.shape == "tasmota":
            # tele/<topic>/SENSOR (mqtt_parse.c cites Tasmota's MqttShowSensor);
            # Time unique per message, an hour ago
            stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(self.base_s + seq))
            return ("tele/%s/SENSOR" % self.name,
                    '{"Time":"%s","ENERGY":{"TotalStartTime":"2026-01-03T10:11:12","Total":1.2,'
                    '"Yesterday":0.1,"Today":0.05,"Power":%.2f,"ApparentPower":40,'
                    '"ReactivePower":19,"Factor":0.88,"Voltage":230,"Current":0.174}}'
                    % (stamp, power))
        # Shelly Gen2 <prefix>/status/switch:0 (mqtt_parse.c cites shelly docs)
        return ("%s/status/switch:0" % self.name,
                '{"id":0,"source":"timer","output":true,"apower":%.2f,"voltage":230.1,'
                '"current":0.07,"aenergy":{"total":1.5,"by_minute":[0,0,0],'
                '"minute_ts":1796610300},"temperature":{"tC":40.1,"tF":104.2}}' % power)

    def _publish(self, seq):
        topic, payload = self.payload(seq)
        self.mid = self.mid % 65535 + 1
        body = _string(topic) + struct.pack("!H", self.mid) + payload.encode()
        self.sock.sendall(_packet(0x32, body))
        self.sends += 1
        while True:
            first, data = _read_packet(self.sock)
            if first >> 4 == 4 and struct.unpack("!H", data[:2])[0] == self.mid:
                return

    def run(self):
        deadline = self.t0 + 600 if self.count is None else self.t0 + self.count * INTERVAL_S + 60
        if not self._connect(deadline):
            self.failed = [0]
            return
        seq = -1
        while True:
            seq += 1
            if (self.count is not None and seq >= self.count) or (self.stop and self.stop.is_set()):
                break
            self.published = seq + 1
            time.sleep(max(0.0, self.t0 + seq * INTERVAL_S - time.time()))
            while seq not in self.acked:
                try:
                    self._publish(seq)
                    self.acked[seq] = time.time()
                except (OSError, ConnectionError):
                    # no PUBACK: reconnect, send it again
                    try:
                        self.sock.close()
                    except OSError:
                        pass
                    self.reconnects += 1
                    if time.time() > deadline or not self._connect(deadline):
                        self.failed.append(seq)
                        break
        try:
            self.sock.sendall(b"\xe0\x00")   # DISCONNECT
            self.sock.close()
        except OSError:
            pass


def _stored(stack, names):
    """{(name, power in centiwatts): rows} of the plugs' readings."""
    rows = stack.sql(
        "SELECT d.mqtt_name, round(r.power * 100)::bigint, count(*) FROM readings r"
        "  JOIN mqtt_channels c ON c.port_id = r.port_id JOIN devices d ON d.id = c.device_id"
        " WHERE d.mqtt_name = ANY (%s) GROUP BY 1, 2", "{" + ",".join(names) + "}")
    return {(name, int(cw)): int(n) for name, cw, n in rows}


VICTIMS = ["mqtt:mqtt-0", "detector:detector-0", "store", "mosquitto"]
#  By hand, to count losses per kill of one program: e.g.
#  FAULT_MQTT_KILLS=mqtt:mqtt-0,mqtt:mqtt-0,mqtt:mqtt-0 (a program may repeat).
if os.environ.get("FAULT_MQTT_KILLS"):
    VICTIMS = os.environ["FAULT_MQTT_KILLS"].split(",")


def service_connected():
    """phantom-mqtt's own word that it is subscribed (its metrics)."""
    url = "http://127.0.0.1:%d/metrics" % (9900 + 16 * (STACK.http_port - 3201))
    try:
        with urllib.request.urlopen(url, timeout=3) as r:
            return "\nphantom_mqtt_broker_connected 1" in "\n" + r.read().decode()
    except OSError:
        return False


def warm_up(case, power_base):
    """One message per plug, stored: the service is subscribed and the
    plugs' ports exist (auto-created on first sight) before the faults."""
    # A message reaching a restarted broker before phantom-mqtt is back is
    # acknowledged and goes nowhere (measured, mqtt_spool = off): wait.
    case.assertTrue(faultlib.wait_until(service_connected, 30), "phantom-mqtt not connected")
    t0 = time.time()
    plugs = [Plug(STACK.mqtt_port, name, token, shape, 1, t0, int(t0) - 7200, power_base)
             for name, token, shape in PLUG_CREDENTIALS]
    for p in plugs:
        p.start()
    for p in plugs:
        p.join(30)
    names = [p.name for p in plugs]
    case.assertTrue(faultlib.wait_until(
        lambda: len([k for k in _stored(STACK, names) if k[1] == power_base * 100]) == len(names),
        30), "warm-up messages not stored")


def run_faults(case, label, seconds, power_base):
    """Plugs publish for `seconds` under kills; returns the figures.
    power_base: the first message's power (W), each next + 0.01 W, so
    every message of a plug is told apart in PostgreSQL."""
    s = STACK
    warm_up(case, power_base - 1)
    # pids first: supervisorctl takes a while on a busy machine, the kills
    # must land inside the publishing
    pids = {victim: s.pid(victim) for victim in set(VICTIMS)}
    stop = threading.Event()
    t0 = time.time() + 0.5
    base_s = int(time.time()) - 3 * 3600            # Tasmota Times, distinct per message
    plugs = [Plug(s.mqtt_port, name, token, shape, None, t0, base_s, power_base, stop)
             for name, token, shape in PLUG_CREDENTIALS]
    for p in plugs:
        p.start()
    # Every step seconds while the plugs publish (they go on until 2 s
    # after the last kill, however late a busy machine makes it), each
    # while the others may still be restarting; restarts checked after.
    kills = []
    step = seconds / (len(VICTIMS) + 1)
    for i, victim in enumerate(VICTIMS):
        time.sleep(step)
        if any(v == victim for _, v, _ in kills):     # again: its restart first
            pids[victim] = s.wait_running(victim, old_pid=pids[victim], timeout=30)
        pid = pids[victim]
        case.assertGreater(pid, 0, "%s has no pid: %s" % (victim, s.ctl("status", check=False)))
        os.kill(pid, signal.SIGKILL)
        kills.append((time.time(), victim, pid))
    time.sleep(2.0)
    stop.set()
    for _, victim, pid in kills:
        if pid == pids[victim]:   # its last kill
            s.wait_running(victim, old_pid=pid, timeout=30)
    for p in plugs:
        p.join(90)
    published = sum(p.published for p in plugs)
    count = max(p.published for p in plugs)        # this run's power values: base + [0, count) x 0.01
    case.assertLess(count, 9000, "power values would reach the next run's")
    acked = sum(len(p.acked) for p in plugs)
    names = [p.name for p in plugs]
    want = {(p.name, round((power_base + seq * 0.01) * 100)): at for p in plugs for seq, at in p.acked.items()}

    # wait for the stores to settle: the spool publishes again after
    # mqtt_spool_delay, the service retries for 20 s
    def missing():
        got = _stored(s, names)
        got = {k: n for k, n in got.items() if power_base * 100 <= k[1] < power_base * 100 + count}
        return [k for k in want if k not in got], got
    deadline = time.time() + 60
    lost, got = missing()
    stable_since, last = time.time(), sum(got.values())
    while lost and time.time() < deadline:
        time.sleep(1.0)
        lost, got = missing()
        total = sum(got.values())
        if total != last:
            stable_since, last = time.time(), total
        elif time.time() - stable_since > 3 * SPOOL_DELAY_S:   # nothing moved
            break
    stored = sum(got.values())
    # A copy of a message with the device's time is a duplicate (the
    # plugin gives a resend its first pw-id); a time-less message's resend
    # after a reconnect is kept as a reading of the same watts (the plugin
    # cannot tell it from a real repeat): counted, at most one per reconnect.
    timed = {p.name for p in plugs if p.shape == "tasmota"}
    duplicates = sum(n - 1 for k, n in got.items() if n > 1 and k[0] in timed)
    timeless_copies = sum(n - 1 for k, n in got.items() if n > 1 and k[0] not in timed)
    timeless_reconnects = sum(p.reconnects for p in plugs if p.name not in timed)
    per_kill = {v: 0 for v in set(VICTIMS)}
    per_kill["before the first kill"] = 0
    for k in lost:
        after = [victim for at, victim, _ in kills if at >= want[k]]
        per_kill[after[0] if after else VICTIMS[-1]] += 1
    figures = dict(published=published, acked=acked, stored=stored, distinct=len(got),
                   duplicates=duplicates, lost=len(lost), timeless_copies=timeless_copies,
                   timeless_reconnects=timeless_reconnects,
                   unacked=sum(len(p.failed) for p in plugs),
                   sends=sum(p.sends for p in plugs),
                   reconnects=sum(p.reconnects for p in plugs))
    faultlib.summary("mqtt_loss_" + label, sent=published, acked=acked, stored=stored,
                     duplicates=duplicates, timeless_copies=timeless_copies,
                     lost=len(lost), sends=figures["sends"],
                     reconnects=figures["reconnects"], unacked=figures["unacked"],
                     lost_per_kill=",".join("%s:%d" % (v.split(":")[-1], per_kill[v])
                                            for v in sorted(set(VICTIMS))))
    print("  kills (s, program): %s" % [(round(at - t0, 1), v) for at, v, _ in kills])
    print("  spool: %s" % _spool_log(s))
    figures["per_kill"] = per_kill
    return figures


def _spool_log(stack):
    """The plugin's last counters line (it logs them each 10 s when they move)."""
    path = os.path.join(stack.var, "log", "mosquitto.log")
    last = ""
    try:
        with open(path, errors="replace") as fh:
            for line in fh:
                if "phantom-spool: spooled" in line:
                    last = line.strip()
    except OSError:
        pass
    return last[last.find("spooled"):] if last else "(no counters logged)"


class MqttLoss(unittest.TestCase):
    def test_0_republish_after_reconnect_is_stored_once(self):
        """A plug sends again, on its next connection, a message the broker
        had (its PUBACK lost with the connection): the plugin gives the
        copy the first one's pw-id, the store keeps one reading. The same
        message twice on one connection is two readings (a plug at a
        steady 0 W repeats itself), and so is a message without the
        device's time sent again on the next connection."""
        warm_up(self, 2)
        name, token, shape = PLUG_CREDENTIALS[0]
        base_s = int(time.time()) - 5 * 3600
        plug = Plug(STACK.mqtt_port, name, token, shape, 2, time.time(), base_s, 3)
        self.assertTrue(plug._connect(time.time() + 10))
        plug._publish(0)
        plug.sock.close()
        self.assertTrue(plug._connect(time.time() + 10))
        plug._publish(0)        # again, on the next connection
        plug._publish(1)
        plug._publish(1)        # twice on one connection
        plug.sock.close()
        time.sleep(2.0)
        got = faultlib.wait_until(lambda: (lambda g: g if g.get((name, 301)) == 2 else None)(
            _stored(STACK, [name])), 15) or _stored(STACK, [name])
        self.assertEqual((got.get((name, 300)), got.get((name, 301))), (1, 2), got)
        # Time-less (Shelly status/switch): the same message on the next
        # connection may be a real repeat (an idle plug's), so it is kept.
        name, token, shape = PLUG_CREDENTIALS[1]
        self.assertEqual(shape, "shelly")
        plug = Plug(STACK.mqtt_port, name, token, shape, 2, time.time(), base_s, 3)
        self.assertTrue(plug._connect(time.time() + 10))
        plug._publish(0)
        plug.sock.close()
        self.assertTrue(plug._connect(time.time() + 10))
        plug._publish(0)
        plug.sock.close()
        got = faultlib.wait_until(lambda: (lambda g: g if g.get((name, 300)) == 2 else None)(
            _stored(STACK, [name])), 15) or _stored(STACK, [name])
        self.assertEqual(got.get((name, 300)), 2, got)

    def test_1_spool_loses_nothing_acknowledged(self):
        f = run_faults(self, "spool", duration(8), 10)
        self.assertEqual(f["unacked"], 0, "plugs that never got a PUBACK: %s" % f)
        self.assertGreater(f["acked"], 0)
        self.assertEqual(f["lost"], 0, f)
        self.assertEqual(f["duplicates"], 0, f)
        self.assertLessEqual(f["timeless_copies"], f["timeless_reconnects"], f)

    def test_2_negative_control_without_spool(self):
        """The same faults with mqtt_spool = off: the checker must see a loss."""
        if os.environ.get("FAULT_MQTT_CONTROL", "1") == "0":
            self.skipTest("FAULT_MQTT_CONTROL=0")
        STACK.redeploy(PHANTOM_MQTT_SPOOL="off")
        time.sleep(1.0)   # phantom-mqtt sees the broker's restart
        f = run_faults(self, "nospool", duration(8), 110)
        self.assertGreater(f["lost"], 0, "no loss without the spool: the checker sees none? %s" % f)


if __name__ == "__main__":
    unittest.main(verbosity=2)
