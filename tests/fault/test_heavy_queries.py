"""Fault 6: heavy queries of one user (issue 11, item 6), against a real stack.

One user (the abuser) has a port with 80 days of raw readings (one every
10 s, 691,200 rows) and 400 days of minute rollups, written straight into
PostgreSQL. From 16 threads at once, again and again for HEAVY_S seconds,
it asks for

- its readings over 400 days with step=7001: 4937 buckets, under the 5000
  that would raise the step, and not whole minutes, so before the fix the
  gateway binned every raw reading of the window (about 0.5 s each, alone);
- its energy per day over 400 days (minute rollups, about 0.4 s alone).

Meanwhile another user asks GET /api/devices every 50 ms on a connection
of its own. Asserts:

- the other user: every answer 200, p99 under P99_MAX_MS;
- the abuser: only 200, or 429 too_many_requests with Retry-After (its
  share of the API's pool, api_connections_per_user, is taken by its own
  requests), and some of each kind of query answered 200;
- PostgreSQL never runs more than SHARE of the abuser's queries at once
  (pg_stat_activity, sampled);
- the gateway did not restart.

Before the fix the 16 requests took all 8 pooled connections for seconds
each and the other user waited for a connection (p99 in seconds, or 503
after the 2 s wait). Prints one line:

  HEAVY queries=<abuser's answers> ok=<200s> limited=<429s> ... other_p99_ms=<p99>
"""

import http.client
import json
import threading
import time
import unittest

import faultlib

PARTITIONS = 2
STACK = None
ABUSER = None
OTHER = None

#  Gateway settings this module relies on (deploy/phantomwatch.conf defaults).
SHARE = 3                        # api_connections_per_user
POOL = 8                         # the user API's pool (DB_POOL_SIZE, gateway.c)

THREADS = 16
HEAVY_S = faultlib.duration(10.0)
PROBE_EVERY_S = 0.05
P99_MAX_MS = 200.0
RAW_DAYS = 80                    # inside retention_days (90)
RAW_EVERY_S = 10
ROLLUP_DAYS = 400                # the widest window the API takes


def setUpModule():
    global STACK, ABUSER, OTHER
    STACK = faultlib.start_stack("fault-heavy", slot=7, partitions=PARTITIONS)
    ABUSER = STACK.setup_owner(ports=1)
    OTHER = STACK.setup_owner(ports=1)
    port = ABUSER["ports"][0]
    # Ending an hour ago: below the rollups' watermark, as old data is.
    STACK.sql("INSERT INTO readings (port_id, ts, voltage, current, power, status)"
              " SELECT %s::uuid, date_bin ('1 minute', now (), timestamptz 'epoch')"
              "        - interval '1 hour' - n * %s::integer * interval '1 second',"
              "        230, 0.1, (n % 97)::float8, 1"
              " FROM generate_series (1, %s::integer) n",
              port, RAW_EVERY_S, RAW_DAYS * 86400 // RAW_EVERY_S)
    STACK.sql("INSERT INTO readings_minute (port_id, minute, min_power, mean_power, max_power,"
              "                             energy_wh, samples, reported_seconds)"
              " SELECT %s::uuid, date_bin ('1 minute', now (), timestamptz 'epoch')"
              "        - interval '1 hour' - n * interval '1 minute', 0, 48, 96, 0.8, 6, 60"
              " FROM generate_series (1, %s::integer) n",
              port, ROLLUP_DAYS * 1440)
    STACK.sql("ANALYZE readings")
    STACK.sql("ANALYZE readings_minute")


def get(conn, path, token):
    """GET on conn (keep-alive): (status, headers, json or None, ms)."""
    t0 = time.monotonic()
    conn.request("GET", path, headers={"Authorization": "Bearer " + token})
    resp = conn.getresponse()
    raw = resp.read()
    ms = (time.monotonic() - t0) * 1000
    try:
        doc = json.loads(raw) if raw else None
    except ValueError:
        doc = None
    return resp.status, {k.lower(): v for k, v in resp.getheaders()}, doc, ms


def p99(values):
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))]


class HeavyQueries(unittest.TestCase):
    def test_heavy_queries(self):
        port = ABUSER["ports"][0]
        now = faultlib.now_ms()
        span = ROLLUP_DAYS * 86400 * 1000
        heavy = [
            ("readings", "/api/ports/%s/readings?from=%d&to=%d&step=7001" % (port, now - span, now)),
            ("energy", "/api/ports/%s/energy?period=day&from=%d&to=%d" % (port, now - span, now)),
        ]
        gateway_pid = STACK.pid("gateway")
        # Alone, once each: what one heavy query costs, and that it answers.
        alone = {}
        conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port, timeout=30)
        for kind, path in heavy:
            status, _, doc, ms = get(conn, path, ABUSER["token"])
            self.assertEqual(status, 200, "%s alone: %s" % (kind, doc))
            alone[kind] = ms
        conn.close()

        stop = time.monotonic() + HEAVY_S
        lock = threading.Lock()
        answers = []             # (kind, status, retry_after, code, ms)
        errors = []

        def abuser(index):
            conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port, timeout=30)
            try:
                for round_ in range(1000):
                    if time.monotonic() >= stop:
                        break
                    kind, path = heavy[(index + round_) % len(heavy)]
                    try:
                        status, headers, doc, ms = get(conn, path, ABUSER["token"])
                    except (OSError, http.client.HTTPException) as e:
                        with lock:
                            errors.append("%s: %r" % (kind, e))
                        conn.close()
                        conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port,
                                                          timeout=30)
                        continue
                    code = ((doc or {}).get("error") or {}).get("code")
                    with lock:
                        answers.append((kind, status, headers.get("retry-after"), code, ms))
            finally:
                conn.close()

        # The abuser's statements running in PostgreSQL, sampled.
        running = []

        def sampler():
            while time.monotonic() < stop:
                running.append(STACK.count(
                    "SELECT count (*) FROM pg_stat_activity"
                    " WHERE state = 'active' AND pid <> pg_backend_pid ()"
                    " AND (query LIKE %s OR query LIKE %s)",
                    "%FROM readings_minute%", "%phantom_port_usage%"))
                time.sleep(0.25)

        threads = [threading.Thread(target=abuser, args=(i,)) for i in range(THREADS)]
        threads.append(threading.Thread(target=sampler))
        for t in threads:
            t.start()
        time.sleep(0.5)          # the abuser's requests are all in by now

        other = []               # (status, ms)
        conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port, timeout=30)
        for _ in range(int(HEAVY_S / PROBE_EVERY_S) + 1):
            if time.monotonic() >= stop - 0.5:
                break
            try:
                status, _, _, ms = get(conn, "/api/devices", OTHER["token"])
            except (OSError, http.client.HTTPException) as e:
                status, ms = repr(e), 0
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", STACK.http_port, timeout=30)
            other.append((status, ms))
            time.sleep(PROBE_EVERY_S)
        conn.close()
        for t in threads:
            t.join(60)
        self.assertFalse(any(t.is_alive() for t in threads), "a load thread did not end")

        other_ms = [ms for _, ms in other]
        statuses = {}
        for kind, status, _, _, _ in answers:
            statuses["%s_%s" % (kind, status)] = statuses.get("%s_%s" % (kind, status), 0) + 1
        ok = sum(1 for a in answers if a[1] == 200)
        limited = sum(1 for a in answers if a[1] == 429)
        for status, _ in other:
            key = "other_%s" % status
            statuses[key] = statuses.get(key, 0) + 1
        line = ("HEAVY queries=%d ok=%d limited=%d errors=%d %s max_running=%d"
                " alone_readings_ms=%.0f alone_energy_ms=%.0f other=%d other_p99_ms=%.1f"
                " other_max_ms=%.1f" % (
                    len(answers), ok, limited, len(errors),
                    " ".join("%s=%d" % kv for kv in sorted(statuses.items())),
                    max(running or [0]), alone["readings"], alone["energy"], len(other),
                    p99(other_ms) if other_ms else -1, max(other_ms or [-1])))
        print("\n" + line, flush=True)

        # The other user: never refused, never kept waiting.
        bad = [(s, round(ms)) for s, ms in other if s != 200]
        self.assertEqual(bad, [], "the other user was refused: %s\n%s" % (bad[:5], line))
        self.assertLess(p99(other_ms), P99_MAX_MS, line)
        self.assertGreater(len(other), HEAVY_S / PROBE_EVERY_S / 4, line)
        # The abuser: served within its share, told to wait beyond it.
        self.assertEqual(errors, [], line)
        unexpected = [a for a in answers if a[1] not in (200, 429)]
        self.assertEqual(unexpected, [], "%s\n%s" % (unexpected[:5], line))
        for kind, status, retry_after, code, _ in answers:
            if status == 429:
                self.assertEqual((code, retry_after), ("too_many_requests", "1"), line)
        for kind, _ in heavy:
            self.assertTrue(any(a[0] == kind and a[1] == 200 for a in answers),
                            "no %s query answered 200: %s" % (kind, line))
        self.assertLessEqual(max(running or [0]), SHARE, line)
        self.assertEqual(STACK.pid("gateway"), gateway_pid, "the gateway restarted")


if __name__ == "__main__":
    unittest.main()
