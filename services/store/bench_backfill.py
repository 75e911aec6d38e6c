#!/usr/bin/python3
"""Backfill benchmark: how long after its last commit a backfill of history
shows up in the minute rollups (the figures read them before the watermark).

Against a running dev stack (deploy/up): registers a user with one device
and PORTS ports, posts DAYS days of readings every STEP seconds per port with
device timestamps (time order across the ports, BATCH per POST to
/api/sensor/readings, one keep-alive connection, as a sensor's backfill or
the demo's would; --kill-store-after kills the store on the way), then polls PostgreSQL until every reading before the
watermark is in readings_minute (sum of samples = readings) and prints how
long that took after the last acknowledgement. --check then compares every
rollup row of the ports with phantom_rollup from scratch (rolled back).

    export PHANTOM_HTTP_PORT=3160
    /usr/bin/python3 services/store/bench_backfill.py --days 7 --ports 4 --step 10 --check

The database comes from var/phantomwatch.env (PHANTOM_DATABASE) unless
--database is given; psql must be on the PATH.
"""
import argparse
import http.client
import json
import math
import os
import subprocess
import sys
import time
import uuid


def parse_args():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=float, default=7)
    parser.add_argument("--ports", type=int, default=4)
    parser.add_argument("--step", type=float, default=10, help="seconds between readings")
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--http-port", type=int,
                        default=int(os.environ.get("PHANTOM_HTTP_PORT", "3000")))
    parser.add_argument("--database", help="libpq connection string")
    parser.add_argument("--timeout", type=float, default=600,
                        help="seconds to wait for the rollups")
    parser.add_argument("--kill-store-after", type=float, metavar="FRACTION",
                        help="kill -9 the store (deploy/ctl pid store; supervisord restarts"
                        " it) once this fraction of the readings is acknowledged")
    parser.add_argument("--check", action="store_true",
                        help="compare the rollups with phantom_rollup from scratch")
    return parser.parse_args()


def database(args):
    if args.database:
        return args.database
    env = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "var",
                       "phantomwatch.env")
    value = subprocess.run(["bash", "-c", '. "$1" && printf %s "$PHANTOM_DATABASE"', "-", env],
                           capture_output=True, text=True).stdout
    if value:
        return value
    sys.exit("no PHANTOM_DATABASE in %s: pass --database" % env)


def sql(conninfo, text):
    out = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d", conninfo,
                          "-c", text], check=True, capture_output=True, text=True).stdout
    return [row.split("|") for row in out.strip().split("\n") if row]


class Api:
    def __init__(self, port):
        self.port = port
        self.conn = None

    def call(self, method, path, body=None, token=None):
        headers = {"Content-Type": "application/json"}
        if token:
            headers["Authorization"] = "Bearer " + token
        data = json.dumps(body).encode() if body is not None else None
        for attempt in range(2):
            if self.conn is None:
                self.conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=60)
            try:
                self.conn.request(method, path, data, headers)
                reply = self.conn.getresponse()
                text = reply.read()
                return reply.status, json.loads(text) if text else None
            except (http.client.HTTPException, OSError):
                self.conn.close()
                self.conn = None
                if attempt:
                    raise
        return None

    def expect(self, status, method, path, body=None, token=None):
        got, doc = self.call(method, path, body, token)
        if got != status:
            sys.exit("%s %s: %s %s" % (method, path, got, doc))
        return doc["data"]


def power(port, ts):
    """A day-shaped draw per port: standby most of the time, use now and then."""
    hour = (ts / 3600000.0) % 24
    base = 2.0 + port
    use = 40.0 * (1 + port) if (hour + 3 * port) % 24 < 4 else 0.0
    return round(base + use + 0.5 * math.sin(ts / 7000.0 + port), 3)


def main():
    args = parse_args()
    conninfo = database(args)
    api = Api(args.http_port)
    email = "backfill-%s@example.test" % uuid.uuid4().hex[:10]
    token = api.expect(201, "POST", "/api/auth/register",
                       {"email": email, "password": "pw-" + uuid.uuid4().hex,
                        "name": "Backfill"})["token"]
    device = api.expect(201, "POST", "/api/devices", {"name": "backfill"}, token)["device"]
    device_token = api.expect(201, "POST", "/api/devices/%s/token" % device["id"], None,
                              token)["token"]
    ports = [api.expect(201, "POST", "/api/ports", {"name": "outlet %d" % n,
                                                    "deviceId": device["id"]}, token)["port"]["id"]
             for n in range(args.ports)]
    step_ms = int(args.step * 1000)
    end = int(time.time() * 1000) // 60000 * 60000 - 60000
    start = end - int(args.days * 86400 * 1000)
    times = range(start, end, step_ms)
    total = len(times) * len(ports)
    print("%d readings: %d ports, %.1f days every %g s, %d per POST" %
          (total, len(ports), args.days, args.step, args.batch), flush=True)

    def readings():
        for ts in times:
            for n, port in enumerate(ports):
                watts = power(n, ts)
                yield {"portId": port, "voltage": 230.0, "current": round(watts / 230, 6),
                       "power": watts, "timestamp": ts, "readingId": "b%d-%d" % (n, ts)}

    posted = time.time()
    acked = 0
    killed = args.kill_store_after is None
    pending = []
    source = readings()
    while True:
        while len(pending) < args.batch:
            item = next(source, None)
            if item is None:
                break
            pending.append(item)
        if not pending:
            break
        batch, pending = pending[:args.batch], pending[args.batch:]
        status, doc = api.call("POST", "/api/sensor/readings",
                               {"deviceToken": device_token, "readings": batch})
        if status != 200:
            pending = batch + pending
            time.sleep(0.5)
            continue
        for result in doc["data"]["results"]:
            if result["status"] == 201:
                acked += 1
            elif result["status"] in (503, 504):
                pending.append(batch[result["index"]])
            else:
                sys.exit("reading refused: %s" % result)
        if not killed and acked >= args.kill_store_after * total:
            repo = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..")
            pid = subprocess.run([os.path.join(repo, "deploy", "ctl"), "pid", "store"],
                                 capture_output=True, text=True, check=True).stdout.strip()
            os.kill(int(pid), 9)
            killed = True
            print("store (pid %s) killed after %d readings" % (pid, acked), flush=True)
    last_ack = time.time()
    print("posted in %.1f s (%.0f readings/s)" % (last_ack - posted, acked / (last_ack - posted)),
          flush=True)

    port_array = "ARRAY[%s]::uuid[]" % ",".join("'%s'" % port for port in ports)
    #  Every reading in the rollups, and the watermark past the last one.
    probe = ("SELECT (SELECT count (*) FROM readings_minute m WHERE m.port_id = ANY (%(p)s)"
             "         AND m.minute >= to_timestamp (%(start)d) AND m.minute < to_timestamp (%(end)d)),"
             "       (SELECT coalesce (sum (samples), 0) FROM readings_minute m"
             "         WHERE m.port_id = ANY (%(p)s) AND m.minute >= to_timestamp (%(start)d)"
             "         AND m.minute < to_timestamp (%(end)d)),"
             "       (SELECT watermark >= to_timestamp (%(end)d) FROM rollup_state)" %
             {"p": port_array, "start": start // 1000, "end": end // 1000})
    while True:
        minutes, samples, past = sql(conninfo, probe)[0]
        if past == "t" and int(samples) == acked:
            break
        if time.time() - last_ack > args.timeout:
            sys.exit("not rolled up after %.0f s: %s of %d readings" %
                     (args.timeout, samples, acked))
        time.sleep(0.2)
    done = time.time()
    print("rolled up %.1f s after the last acknowledgement: %s port-minutes, %s readings" %
          (done - last_ack, minutes, samples), flush=True)
    if args.check:
        #  phantom_rollup from scratch over the range, inside a transaction
        #  rolled back; the rows as the store left them are kept aside first.
        compare = (
            "BEGIN;"
            " CREATE TEMP TABLE kept ON COMMIT DROP AS SELECT * FROM readings_minute"
            "  WHERE port_id = ANY (%(p)s);"
            " SELECT phantom_rollup (to_timestamp (%(start)d), (SELECT watermark FROM rollup_state))"
            "  \\g /dev/null\n"
            " SELECT count (*) FROM kept k FULL JOIN (SELECT * FROM readings_minute"
            "  WHERE port_id = ANY (%(p)s)) t USING (port_id, minute)"
            "  WHERE t.minute < (SELECT watermark FROM rollup_state)"
            "    AND (k.minute IS NULL OR t.minute IS NULL OR k.samples <> t.samples"
            "     OR k.min_power <> t.min_power OR k.max_power <> t.max_power"
            "     OR abs (k.mean_power - t.mean_power) > 1e-9"
            "     OR abs (k.energy_wh - t.energy_wh) > 1e-9"
            "     OR abs (k.reported_seconds - t.reported_seconds) > 1e-6);"
            " ROLLBACK;" % {"p": port_array, "start": start // 1000})
        out = subprocess.run(["psql", "-X", "-A", "-t", "-q", "-v", "ON_ERROR_STOP=1", "-d",
                              conninfo], input=compare, check=True, capture_output=True,
                             text=True).stdout.split()
        print("rows that differ from phantom_rollup from scratch: %s" % out[-1])
        if out[-1] != "0":
            sys.exit(1)


if __name__ == "__main__":
    main()
