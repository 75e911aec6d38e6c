"""spool_cost.py [MESSAGES] - what the broker plugin's spool costs: the
broker's PUBACK rate and broker -> phantom-mqtt -> store rate for the same
burst with mqtt_spool = on, then off (the same stack, redeployed).

MESSAGES (default 8000) Tasmota SENSOR messages from 16 plugs (real device
credentials), QoS 1, MQTT 3.1.1 over raw sockets, 20 in flight per plug.
Prints one line per setting. On a fault-suite stack (tests/fault):

    PHANTOM_BUILD_DIR=$PWD/build /usr/bin/python3 services/mqtt/bench/spool_cost.py 8000
"""
import os
import socket
import struct
import sys
import threading
import time
import unittest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "..", "..", "tests", "fault"))
import faultlib  # noqa: E402
import test_mqtt_loss as loss  # noqa: E402

MESSAGES = int(sys.argv[1]) if len(sys.argv) > 1 else 8000
PLUGS, WINDOW = 16, 20


def burst(stack, plugs, power_base):
    """Each plug sends its share pipelined; returns (seconds to the last
    PUBACK, seconds until all stored)."""
    per = MESSAGES // len(plugs)
    base_s = int(time.time()) - 4 * 3600
    done = []

    def one(name, token):
        p = loss.Plug(stack.mqtt_port, name, token, "tasmota", per, time.time(), base_s, power_base)
        assert p._connect(time.time() + 10)
        sock = p.sock
        acked, sent = 0, 0
        while acked < per:
            while sent < per and sent - acked < WINDOW:
                topic, payload = p.payload(sent)
                body = loss._string(topic) + struct.pack("!H", sent % 65535 + 1) + payload.encode()
                sock.sendall(loss._packet(0x32, body))
                sent += 1
            first, _ = loss._read_packet(sock)
            if first >> 4 == 4:
                acked += 1
        sock.sendall(b"\xe0\x00")
        sock.close()
        done.append(per)

    t0 = time.time()
    threads = [threading.Thread(target=one, args=(n, t)) for n, t, _ in plugs]
    for t in threads:
        t.start()
    for t in threads:
        t.join(300)
    acked_s = time.time() - t0
    names = [n for n, _, _ in plugs]
    want = per * len(plugs)
    faultlib.wait_until(lambda: sum(n for (_, cw), n in loss._stored(stack, names).items()
                                    if power_base * 100 <= cw < power_base * 100 + per) >= want,
                        300, step=0.5)
    return sum(done), acked_s, time.time() - t0


class Bench(unittest.TestCase):
    def test(self):
        loss.PLUGS = PLUGS
        loss.setUpModule()
        s = loss.STACK
        loss.warm_up(self, 5)
        for label, base in (("on", 1000), ("off", 2000)):
            if label == "off":
                s.redeploy(PHANTOM_MQTT_SPOOL="off")
                time.sleep(1.0)
                loss.warm_up(self, 6)
            n, acked_s, stored_s = burst(s, loss.PLUG_CREDENTIALS, base)
            print("\nmqtt_spool=%s: %d messages, PUBACKed in %.2f s (%.0f/s), stored in %.2f s"
                  " (%.0f/s)" % (label, n, acked_s, n / acked_s, stored_s, n / stored_s),
                  flush=True)
            print("  " + loss._spool_log(s))


if __name__ == "__main__":
    unittest.main(argv=sys.argv[:1])
