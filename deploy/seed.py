#!/usr/bin/python3
"""deploy/seed.py - creates (or finds again) the demo account through the
HTTP API, as a user would, and gives it a week of history.

The account: user demo@phantomwatch.local in Europe/Berlin, paying in EUR
on a time-of-use tariff; device "Demo board" with a device token; ports
"TV" and "Coffee machine" (standby watch), "Phone charger" (should be off on
weekdays 09:00-17:00, when nobody is home) and "Router" (always on by
design). The settings and roles are applied once (demo.env records it), so
what the owner changes later in the dashboard stays.

The history: for every demo port that holds no readings yet (the API says),
DEMO_HISTORY_DAYS (7) days up to now, a reading every DEMO_HISTORY_STEP (10)
seconds, drawn by the simulator's profiles (tools/sensor_simulator.py: the
same days the live simulators then continue) and sent in timestamp order
through the batch endpoint with the device token, device timestamps and a
readingId per port and second, so the pipeline finds the episodes as it
would have live. demo.env says "pending" while it runs: a re-run after a
crash resumes each port after its last stored reading (a batch whose answer
was lost is stored once: the gateway dedupes by readingId), and deploy/up
starts the live simulators only once the history is complete.

Writes $PHANTOM_VAR/demo.env (mode 600, shell-sourceable). On a second run it
reuses the device, the ports and the stored token while the gateway still
accepts it. Standard library only. Env: PHANTOM_HTTP_PORT, PHANTOM_VAR,
DEMO_HISTORY_DAYS, DEMO_HISTORY_STEP.
"""
import datetime
import json
import os
import random
import sys
import time
import urllib.error
import urllib.request
import zoneinfo

sys.path.insert(0, os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "tools"))
from sensor_simulator import profile_reading  # noqa: E402  (the live simulators' days)

EMAIL = "demo@phantomwatch.local"
PASSWORD = "phantom-demo-2024"   # passes the gateway's cracklib check (cracklib-check)
DEVICE = "Demo board"
WEEKDAYS = ["mon", "tue", "wed", "thu", "fri"]
#  A time-of-use tariff shows that waste costs more at some hours (the
#  charger's, on weekdays) than at others (the TV's nights).
ACCOUNT = {"timeZone": "Europe/Berlin", "currency": "EUR",
           "tariff": {"kind": "timeOfUse", "pricePerKwh": 0.24, "peakPricePerKwh": 0.34,
                      "peakWindows": [{"days": WEEKDAYS, "from": "07:00", "to": "22:00"}]}}
#  demo.env key, name, simulator profile, settings. The charger draws 5-10 W
#  while it charges: above its 3 W standby cut-off that is use, not waste.
PORTS = [("DEMO_PORT_TV", "TV", "tv", {"role": "standby"}),
         ("DEMO_PORT_COFFEE", "Coffee machine", "coffee", {"role": "standby"}),
         ("DEMO_PORT_CHARGER", "Phone charger", "charger",
          {"role": "shouldBeOff", "standbyWatts": 3,
           "offSchedule": [{"days": WEEKDAYS, "from": "09:00", "to": "17:00"}]}),
         ("DEMO_PORT_ROUTER", "Router", "router", {"role": "alwaysOn"})]
NO_SUCH_PORT = "00000000-0000-0000-0000-000000000000"

BATCH = 500                 # readings per POST /api/sensor/readings
ATTEMPTS = 8                # per batch, for 503/504 and lost connections
CATCH_UP_SECONDS = 60       # for the port rows to show the last reading
CHARTS_SECONDS = 180        # for the minute rollups (the store's run once a minute)

BASE = "http://127.0.0.1:%s" % os.environ.get("PHANTOM_HTTP_PORT", "3000")
DEMO_ENV = os.path.join(os.environ.get("PHANTOM_VAR", "var"), "demo.env")


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__("HTTP %s: %s" % (status, body))
        self.status = status


class SeedError(Exception):
    pass


def call(method, path, body=None, token=None, timeout=15):
    """Returns the response's data object; raises ApiError on a non-2xx."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            payload = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise ApiError(error.code, error.read().decode(errors="replace")[:300]) from None
    return payload.get("data") or {}


def listing(data, key):
    """A list from {data:{key:[...]}} (or a bare list)."""
    return data if isinstance(data, list) else data.get(key) or []


def knob(name, default, low, high):
    text = os.environ.get(name, str(default))
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not low <= value <= high:
        raise SeedError("%s must be a number from %g to %g, not %r" % (name, low, high, text))
    return value


def load_demo_env():
    values = {}
    try:
        with open(DEMO_ENV) as f:
            for line in f:
                key, _, value = line.strip().partition("=")
                values[key] = value.strip("'")
    except FileNotFoundError:
        pass
    return values


def write_demo_env(values):
    tmp = DEMO_ENV + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        for key, value in values.items():
            f.write("%s='%s'\n" % (key, value))
    os.replace(tmp, DEMO_ENV)


def token_valid(device_token):
    """Whether the gateway accepts the device token, without storing a
    reading: a known token on an unknown port is a 404, an unknown one a 401."""
    reading = {"deviceToken": device_token, "portId": NO_SUCH_PORT,
               "voltage": 230.0, "current": 0.1, "power": 23.0}
    try:
        call("POST", "/api/sensor/reading", reading)
    except ApiError as error:
        return error.status != 401
    return True


def epoch(iso):
    return datetime.datetime.fromisoformat(iso.replace("Z", "+00:00")).timestamp()


def set_up_account(user_token, ports):
    """The demo's tariff, time zone and port roles (once)."""
    call("PATCH", "/api/settings", ACCOUNT, token=user_token)
    refused = []
    for key, name, _, settings in PORTS:
        port = call("PATCH", "/api/ports/%s" % ports[key]["id"], {"settings": settings},
                    token=user_token)["port"]
        if port.get("settings", {}).get("role") != settings["role"]:
            refused.append("%s (%s)" % (name, settings["role"]))
    if refused:
        #  A gateway from before the roles: the router is then watched as
        #  standby and its 9-12 W counted as waste.
        print("deploy: warning: the gateway kept no port role for %s" % ", ".join(refused),
              file=sys.stderr)


def post_batch(device_token, readings):
    """Sends one batch until every reading in it is stored (201). 503/504
    and lost connections are retried with the same readingIds, so nothing is
    stored twice; anything else stops the seed."""
    body = {"deviceToken": device_token, "readings": readings}
    for attempt in range(1, ATTEMPTS + 1):
        try:
            results = call("POST", "/api/sensor/readings", body, timeout=60)["results"]
            refused = [r for r in results if r.get("status") != 201]
            if len(results) != len(readings):
                raise SeedError("the batch of %d readings got %d results" % (len(readings), len(results)))
            if not refused:
                return
            if any(r.get("status") not in (503, 504) for r in refused):
                first = refused[0]
                raise SeedError("reading %s was refused: %s %s" % (
                    readings[first.get("index", 0)].get("readingId"), first.get("status"),
                    first.get("error")))
            why = "%d of %d readings answered %s" % (len(refused), len(readings), refused[0]["status"])
        except ApiError as error:
            if error.status not in (503, 504):
                raise
            why = str(error)
        except (urllib.error.URLError, OSError) as error:
            why = "no answer (%s)" % getattr(error, "reason", error)
        if attempt < ATTEMPTS:
            time.sleep(min(10.0, 0.25 * 2 ** attempt) * random.uniform(0.5, 1.0))
    raise SeedError("a batch of history was not stored after %d attempts: %s" % (ATTEMPTS, why))


def send_history(device_token, lanes, starts, end, step, time_zone):
    """Each lane's readings after its start up to end, in timestamp order,
    in batches; returns {lane key: readings sent}."""
    first = min(starts[key] for key, _, _, _ in lanes)
    batch, sent = [], {key: 0 for key, _, _, _ in lanes}
    for ts in range(first - first % step + step, end + 1, step):
        local = datetime.datetime.fromtimestamp(ts, time_zone)
        for key, port_id, profile, rng in lanes:
            if ts <= starts[key]:
                continue
            voltage, current, power = profile_reading(profile, local, rng)
            batch.append({"portId": port_id, "voltage": voltage, "current": current,
                          "power": power, "timestamp": ts * 1000,
                          "readingId": "history:%s:%d" % (port_id, ts)})
            sent[key] += 1
            if len(batch) == BATCH:
                post_batch(device_token, batch)
                batch = []
    if batch:
        post_batch(device_token, batch)
    return sent


def wait_until(what, done, seconds):
    """Polls done() (a list of what is still missing) for a bounded time."""
    deadline = time.time() + seconds
    while True:
        missing = done()
        if not missing:
            return True
        if time.time() > deadline:
            raise SeedError("the history was stored but %s within %d s: %s"
                            % (what, seconds, ", ".join(missing)))
        time.sleep(0.5)


def backfill(user_token, device_token, ports, time_zone, stored, days, step):
    """Sends the history the demo ports miss; returns the values demo.env
    keeps about it."""
    pending = stored.get("DEMO_HISTORY") == "pending"
    now = int(time.time())
    end = now - now % step
    starts = {}             # port key: readings go after this epoch second
    for key, _, _, _ in PORTS:
        last = ports[key].get("lastReadingAt")
        if last is None:
            starts[key] = end - int(days * 86400)
        elif pending:
            starts[key] = int(epoch(last))
    history = {key: stored[key] for key in ("DEMO_HISTORY", "DEMO_HISTORY_FROM", "DEMO_HISTORY_TO")
               if key in stored}
    if not starts:
        print("==> demo history: every demo port holds readings already (nothing to backfill)")
        return history
    #  A resumed history began where the crashed run began.
    begun = list(starts.values())
    if pending and stored.get("DEMO_HISTORY_FROM", "").isdigit():
        begun.append(int(stored["DEMO_HISTORY_FROM"]))
    history = {"DEMO_HISTORY": "pending", "DEMO_HISTORY_FROM": min(begun), "DEMO_HISTORY_TO": end}
    write_demo_env({**stored, **history})
    lanes = [(key, ports[key]["id"], profile, random.Random(ports[key]["id"]))
             for key, _, profile, _ in PORTS if key in starts]
    names = {key: name for key, name, _, _ in PORTS}

    t0 = time.time()
    sent = send_history(device_token, lanes, starts, end, step, time_zone)
    t1 = time.time()

    #  201 means stored. The charts and the energy figures of past minutes
    #  come from the store's minute rollups, which its maintenance redoes
    #  for late readings once a minute: wait for them, so that the history
    #  is all there when deploy/up says the demo is ready.
    def charts_missing():
        missing = []
        for key, port_id, _, _ in lanes:
            window = "from=%d&to=%d&step=3600" % ((starts[key] + 1) * 1000, (end + 1) * 1000)
            buckets = call("GET", "/api/ports/%s/readings?%s" % (port_id, window),
                           token=user_token).get("buckets") or []
            if sum(bucket.get("count") or 0 for bucket in buckets) < sent[key]:
                missing.append(names[key])
        return missing
    wait_until("the charts did not show it", charts_missing, CHARTS_SECONDS)
    t2 = time.time()

    #  The minute or so since: the live simulators continue from now.
    now = int(time.time())
    top_up_end = now - now % step
    top_up = send_history(device_token, lanes, {key: end for key in starts}, top_up_end, step,
                          time_zone)

    #  The port rows (last reading, status) follow the readings a moment later.
    def ports_behind():
        current = {p["id"]: p for p in listing(call("GET", "/api/ports", token=user_token), "ports")}
        return [names[key] for key, port_id, _, _ in lanes
                if current.get(port_id, {}).get("lastReadingAt") is None
                or epoch(current[port_id]["lastReadingAt"]) < top_up_end]
    wait_until("its port rows did not show the last reading", ports_behind, CATCH_UP_SECONDS)
    print("==> demo history: %d readings for %d port(s) (%g days, every %d s) sent in %.1f s,"
          " charted after %.1f s more, %d more to catch up with the clock in %.1f s"
          % (sum(sent.values()), len(lanes), days, step, t1 - t0, t2 - t1, sum(top_up.values()),
             time.time() - t2))
    history["DEMO_HISTORY"] = "done"
    history["DEMO_HISTORY_TO"] = top_up_end
    return history


def main():
    days = knob("DEMO_HISTORY_DAYS", 7, 0.01, 29)       # the gateway takes 30 days back
    step = int(knob("DEMO_HISTORY_STEP", 10, 1, 300))   # 300 s: longer is a gap
    try:
        user_token = call("POST", "/api/auth/login", {"email": EMAIL, "password": PASSWORD})["token"]
    except ApiError as error:
        if error.status not in (400, 401, 404):
            raise
        user_token = call("POST", "/api/auth/register",
                          {"email": EMAIL, "password": PASSWORD, "name": "Demo"})["token"]

    devices = listing(call("GET", "/api/devices", token=user_token), "devices")
    device = next((d for d in devices if d.get("name") == DEVICE), None)
    if device is None:
        device = call("POST", "/api/devices", {"name": DEVICE}, token=user_token)["device"]
    device_id = device["id"]

    stored = load_demo_env()
    device_token = stored.get("DEMO_DEVICE_TOKEN")
    if (stored.get("DEMO_DEVICE_ID") != str(device_id) or not device_token
            or not token_valid(device_token)):
        device_token = call("POST", "/api/devices/%s/token" % device_id, token=user_token)["token"]

    existing = listing(call("GET", "/api/ports", token=user_token), "ports")
    ports = {}
    for key, name, _, _ in PORTS:
        port = next((p for p in existing if p.get("name") == name
                     and str(p.get("deviceId")) == str(device_id)), None)
        if port is None:
            port = call("POST", "/api/ports", {"name": name, "deviceId": device_id},
                        token=user_token)["port"]
        ports[key] = port

    values = {**stored, "DEMO_EMAIL": EMAIL, "DEMO_PASSWORD": PASSWORD, "DEMO_DEVICE_ID": device_id,
              "DEMO_DEVICE_TOKEN": device_token, **{key: port["id"] for key, port in ports.items()}}
    if stored.get("DEMO_SETUP") != "done":
        set_up_account(user_token, ports)
        values["DEMO_SETUP"] = "done"
    time_zone_name = call("GET", "/api/settings", token=user_token)["settings"]["timeZone"]
    try:
        time_zone = zoneinfo.ZoneInfo(time_zone_name)
    except (zoneinfo.ZoneInfoNotFoundError, ValueError):
        raise SeedError("the account's time zone %r is not one Python knows" % time_zone_name) from None
    values["DEMO_TIME_ZONE"] = time_zone_name
    write_demo_env(values)
    print("==> demo account ready (%s)" % DEMO_ENV)

    values.update(backfill(user_token, device_token, ports, time_zone, values, days, step))
    write_demo_env(values)


if __name__ == "__main__":
    try:
        main()
    except (ApiError, SeedError, KeyError, TypeError, ValueError, OSError) as error:
        sys.exit("deploy: error: seeding the demo account failed: %s" % error)
