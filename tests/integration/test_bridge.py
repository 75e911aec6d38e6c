"""phantom-bridge end to end: an emulated board on a socat pty pair writes
the guide's JSON lines and emonhub lines (CRLF, a line split across
writes, garbage, non-numeric, over-long, an unknown channel) to the
bridge; the device is unplugged and plugged back, and the bridge restarted
once. Every accepted line must be in PostgreSQL exactly once, with the
bridge's timestamp (taken when the line arrived) and a readingId unique
across the restart; the rejected lines are counted in its metrics."""

import os
import time
import unittest

import bridgelib
import harness
from harness import now_ms, wait_for

STACK = None


def setUpModule():
    global STACK
    STACK = harness.start_module_stack("bridge", slot=9)


class Bridge(unittest.TestCase):
    def setUp(self):
        bridgelib.check_prerequisites(self)
        self.owner = STACK.setup_owner(ports=3)
        self.rig = bridgelib.BridgeRig(self, STACK, self.owner)

    # ------------------------------------------------------------------
    def test_every_accepted_line_once_with_its_timestamp(self):
        p = self.owner["ports"]
        sent = {}          # power -> (port, written at ms)
        rejected = 0
        lines = 0

        def good(host, text, port, power):
            nonlocal lines
            before = now_ms()
            os.write(host, text.encode())
            sent[power] = (port, before)
            lines += 1

        def bad(host, data):
            nonlocal rejected, lines
            os.write(host, data)
            rejected += 1
            lines += 1

        def phase(host, first, count):
            for i in range(first, first + count):
                w = 10 + i + 0.25
                kind = i % 4
                if kind == 0:
                    good(host, '{"voltage":230.5,"current":0.1,"power":%s}\r\n' % w, p[0], w)
                elif kind == 1:
                    good(host, '{"voltage":231,"current":0.2,"power":%s,"channel":1}\n' % w,
                         p[1], w)
                elif kind == 2:
                    good(host, "MSG:%d,Vrms:229.5,P2:%s,E1:77\r\n" % (i, w), p[2], w)
                else:
                    # a line split across two writes with a pause between
                    text = '{"voltage":230,"current":0.3,"power":%s}\n' % w
                    os.write(host, text[:11].encode())
                    time.sleep(0.05)
                    good(host, text[11:], p[0], w)
                if i % 5 == 0:
                    bad(host, b"garbage \x01\xfe\n")
                if i % 7 == 0:
                    bad(host, b'{"voltage":"230","current":0.1,"power":3}\n')
                    bad(host, b"P2:abc,Vrms:230\n")
                if i % 9 == 0:
                    bad(host, b"P2:" + b"9" * 300 + b"\n")
                    bad(host, b'{"voltage":230,"current":0.1,"power":3,"channel":"nine"}\n')
                os.write(host, b"\r\n")  # blank: neither read nor rejected
                time.sleep(0.02)
            # the bridge reads what was written before the pty goes
            time.sleep(1)

        def open_host():
            # held open while socat runs: closing it would end socat
            return os.open(self.rig.host_path, os.O_WRONLY | os.O_NOCTTY)

        self.rig.start_socat()
        host = open_host()
        self.rig.start_bridge()
        self.rig.wait_open(0)
        phase(host, 0, 40)
        # unplug, write nothing while it is gone, plug back in
        os.close(host)
        self.rig.stop_socat()
        time.sleep(1.5)
        self.rig.start_socat()
        host = open_host()
        self.addCleanup(os.close, host)
        self.rig.wait_open(1)
        phase(host, 40, 40)
        # a restart of the bridge keeps the spool and its ids
        m = self.rig.metrics()
        self.assertEqual(m["phantom_bridge_lines_rejected_total"], rejected, self.rig.log_text())
        self.assertEqual(m["phantom_bridge_lines_read_total"], lines)
        self.rig.stop_bridge()
        self.rig.start_bridge()
        self.rig.wait_open(0)
        phase(host, 80, 40)

        total = len(sent)

        def drained():
            m = self.rig.metrics()
            return m and m["phantom_bridge_spool_depth"] == 0 and \
                m["phantom_bridge_readings_spooled_total"] == m["phantom_bridge_readings_uploaded_total"]
        self.assertTrue(wait_for(drained, 20), "spool not drained: %s\n%s" % (
            self.rig.metrics(), self.rig.log_text()))
        m = self.rig.metrics()
        # the second run's counters: phase 3 only (40 good lines)
        self.assertEqual(m["phantom_bridge_readings_refused_total"], 0, self.rig.log_text())
        self.assertEqual(m["phantom_bridge_readings_dropped_total"], 0)

        rows = STACK.sql(
            "SELECT r.port_id::text, r.power, (extract(epoch FROM r.ts) * 1000)::bigint,"
            "       k.reading_key"
            "  FROM readings r JOIN reading_keys k ON k.reading_id = r.id AND k.ts = r.ts"
            " WHERE r.port_id = ANY(%s::uuid[]) ORDER BY r.ts, r.id", "{%s}" % ",".join(p))
        unkeyed = STACK.count("SELECT count(*) FROM readings WHERE port_id = ANY(%s::uuid[])",
                              "{%s}" % ",".join(p))
        self.assertEqual(unkeyed, len(rows), "a reading without its readingId")
        self.assertEqual(len(rows), total, "rows %d, accepted lines %d" % (len(rows), total))
        powers = [float(r[1]) for r in rows]
        self.assertEqual(sorted(powers), sorted(sent), "not every accepted line once")
        keys = [r[3] for r in rows]
        self.assertEqual(len(set(keys)), total, "readingIds repeat")
        self.assertEqual(len({k.rsplit("-", 1)[0] for k in keys}), 1, "one spool, one prefix")
        for port, power, ts, key in rows:
            want_port, written = sent[float(power)]
            self.assertEqual(port, want_port, key)
            # the bridge's clock when the line arrived: after the write
            # started, and before the pipeline could have delayed it much
            self.assertGreaterEqual(int(ts), written - 50, key)
            self.assertLess(int(ts), written + 2000, key)
        # a port's readings in line order
        for port in p:
            mine = [float(r[1]) for r in rows if r[0] == port]
            self.assertEqual(mine, sorted(mine), port)
        # the second run counted its own phase
        second = sum((i % 5 == 0) + 2 * (i % 7 == 0) + 2 * (i % 9 == 0) for i in range(80, 120))
        self.assertEqual(m["phantom_bridge_lines_rejected_total"], second, self.rig.log_text())
        self.assertEqual(m["phantom_bridge_lines_read_total"], 40 + second)


if __name__ == "__main__":
    unittest.main()
