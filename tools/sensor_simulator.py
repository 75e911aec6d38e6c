#!/usr/bin/env python3
"""PhantomWatch sensor simulator.

The integration guide's simulator (reference/sensor-simulator-guide.md) with
the same settings and output, plus what its "Next steps" ask for: every
reading carries a readingId and a timestamp, and a reading the server could
not acknowledge (503/504, connection error) is retried with exponential
backoff and jitter under the same readingId, so the server stores it once.

Standard library only. Every setting can be overridden by the environment
variable of the same name:

    DEVICE_TOKEN=... PORT_ID=... python3 tools/sensor_simulator.py

COUNT=N sends N readings and exits (status 1 if any was not acknowledged).
SIGTERM or Ctrl-C stops it cleanly after the request in flight.

PROFILE=tv|coffee|charger|router draws an appliance's day instead of a random
current (the demo's sensors; deploy/seed.py backfills their history with
the same functions): a TV watched in the evening and on standby otherwise,
a coffee machine used in the morning, a phone charger charging at night and
left plugged in, a router always on. The day follows the local time of
TIME_ZONE (default Europe/Berlin, the demo account's). Without PROFILE the
current range above applies, as in the guide.
"""
import datetime
import functools
import json
import math
import os
import random
import signal
import sys
import threading
import urllib.error
import urllib.request
import uuid
import zoneinfo

NODE_SERVER_URL = os.environ.get("NODE_SERVER_URL", "http://localhost:3000/api/sensor/reading")
DEVICE_TOKEN = os.environ.get("DEVICE_TOKEN", "your-device-token-here")  # Paste device token
PORT_ID = os.environ.get("PORT_ID", "your-port-uuid-here")               # Paste port UUID
READING_INTERVAL = float(os.environ.get("READING_INTERVAL", "5"))        # seconds between readings
VOLTAGE_MIN = float(os.environ.get("VOLTAGE_MIN", "220.0"))
VOLTAGE_MAX = float(os.environ.get("VOLTAGE_MAX", "240.0"))
CURRENT_MIN = float(os.environ.get("CURRENT_MIN", "0.3"))
CURRENT_MAX = float(os.environ.get("CURRENT_MAX", "0.8"))
COUNT = int(os.environ.get("COUNT", "0"))                                # 0: run until stopped
MAX_ATTEMPTS = int(os.environ.get("MAX_ATTEMPTS", "6"))                  # per reading
REQUEST_TIMEOUT = float(os.environ.get("REQUEST_TIMEOUT", "10"))         # seconds
PROFILE = os.environ.get("PROFILE", "")                                  # "": the current range
TIME_ZONE = os.environ.get("TIME_ZONE", "Europe/Berlin")                 # the profile's local time

RETRY_STATUSES = (503, 504)
BACKOFF_BASE = 0.5   # seconds; doubles per attempt
BACKOFF_CAP = 30.0

stop = threading.Event()


def on_signal(signum, frame):
    stop.set()


# --- daily profiles -----------------------------------------------------------
# Each day's plan (when the TV goes on, how the coffee machine cycles, when
# the phone charges) comes from a generator seeded by the profile and the
# date, not from the caller's rng: the live simulator and the seed's
# backfill, and every reading of the same day, then agree on it. The rng
# only adds the noise of each reading.

PROFILES = ("tv", "coffee", "charger", "router")
DAY = 86400


def _day_rng(profile, day):
    return random.Random("%s:%s" % (profile, day.isoformat()))


@functools.lru_cache(maxsize=64)
def _tv_plan(day):
    """(on, off) in seconds after local midnight: watched about 19:00-23:00."""
    rng = _day_rng("tv", day)
    return 19 * 3600 + rng.uniform(-30, 45) * 60, 23 * 3600 + rng.uniform(-30, 30) * 60


@functools.lru_cache(maxsize=64)
def _coffee_plan(day):
    """The morning's heating cycles, [(start, end, watts)] in seconds after
    local midnight: weekdays about 06:45-07:30, weekends about 08:30-09:30,
    a long first heat-up, then brews and re-heats with short pauses."""
    rng = _day_rng("coffee", day)
    if day.weekday() < 5:
        start, end = (6 * 60 + 45 + rng.uniform(-10, 10)) * 60, (7 * 60 + 30 + rng.uniform(-10, 5)) * 60
    else:
        start, end = (8 * 60 + 30 + rng.uniform(-15, 15)) * 60, (9 * 60 + 30 + rng.uniform(-15, 15)) * 60
    cycles, at, length = [], start, rng.uniform(90, 150)
    while at + length <= end:
        cycles.append((at, at + length, rng.uniform(1025, 1370)))
        at += length + rng.uniform(10, 40)   # a pause: shorter than the dwell of a phantom
        length = rng.uniform(30, 90)
    return tuple(cycles)


@functools.lru_cache(maxsize=64)
def _charger_plan(day):
    """(start, end) of the night's charge in seconds after the local
    midnight that starts day: about 22:30 to 00:30 (end may pass 24 h)."""
    rng = _day_rng("charger", day)
    start = (22 * 60 + 30 + rng.uniform(-20, 20)) * 60
    return start, start + rng.uniform(90, 130) * 60


def profile_power(profile, local_datetime, rng):
    """Watts drawn at local_datetime (an aware datetime in the profile's
    time zone) by the appliance of profile; rng (random.Random) adds the
    reading's noise."""
    day = local_datetime.date()
    second = local_datetime.hour * 3600 + local_datetime.minute * 60 + local_datetime.second
    if profile == "tv":
        on, off = _tv_plan(day)
        if on <= second < off:
            # Scenes brighten and darken; a backlit panel follows them.
            return min(120.0, max(80.0, 100 + 13 * math.sin(second / 200.0) + rng.uniform(-6, 6)))
        return rng.uniform(3.8, 4.2)
    if profile == "coffee":
        cycles = _coffee_plan(day)
        if cycles and cycles[0][0] <= second < cycles[-1][1]:
            for start, end, watts in cycles:
                if start <= second < end:
                    return watts * rng.uniform(0.98, 1.02)
            return rng.uniform(2.5, 4.0)      # between cycles: pump and display
        return rng.uniform(1.8, 2.2)
    if profile == "charger":
        for plan_day, offset in ((day, 0), (day - datetime.timedelta(days=1), DAY)):
            start, end = _charger_plan(plan_day)
            if start <= second + offset < end:
                # Fast charging first, tapering off as the battery fills.
                done = (second + offset - start) / (end - start)
                return min(10.0, max(5.0, 10 - 5 * done + rng.uniform(-0.3, 0.3)))
        return rng.uniform(0.9, 1.2)
    if profile == "router":
        return min(12.0, max(9.0, 10.5 + 1.2 * math.sin(local_datetime.timestamp() / 3000.0)
                            + rng.uniform(-0.3, 0.3)))
    raise ValueError("unknown profile %r (one of %s)" % (profile, ", ".join(PROFILES)))


def profile_reading(profile, local_datetime, rng, voltage_min=220.0, voltage_max=240.0):
    """(voltage, current, power) of a reading of profile at local_datetime:
    power is voltage times current, as a meter computes it."""
    watts = profile_power(profile, local_datetime, rng)
    voltage = round(rng.uniform(voltage_min, voltage_max), 2)
    current = round(watts / voltage, 5)
    return voltage, current, round(voltage * current, 2)


def make_reading(time_zone=None):
    now = datetime.datetime.now(datetime.timezone.utc)
    if PROFILE:
        voltage, amps, power = profile_reading(PROFILE, now.astimezone(time_zone), random,
                                               VOLTAGE_MIN, VOLTAGE_MAX)
    else:
        voltage = round(random.uniform(VOLTAGE_MIN, VOLTAGE_MAX), 2)
        amps = round(random.uniform(CURRENT_MIN, CURRENT_MAX), 3)
        power = round(voltage * amps, 2)
    return {
        "deviceToken": DEVICE_TOKEN,
        "portId": PORT_ID,
        "voltage": voltage,
        "current": amps,
        "power": power,
        "readingId": str(uuid.uuid4()),
        "timestamp": now.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
    }


def post(payload):
    """One attempt: (status, Retry-After seconds or None); status None when
    the server could not be reached."""
    request = urllib.request.Request(
        NODE_SERVER_URL, data=json.dumps(payload).encode(),
        headers={"Content-Type": "application/json"}, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=REQUEST_TIMEOUT) as response:
            return response.status, None
    except urllib.error.HTTPError as error:
        retry_after = error.headers.get("Retry-After", "")
        return error.code, float(retry_after) if retry_after.isdigit() else None
    except (urllib.error.URLError, OSError) as error:
        print(f"Connection error: {getattr(error, 'reason', error)}", flush=True)
        return None, None


def send(payload):
    """Sends one reading, retrying what may not have been stored. True when
    the server acknowledged it (2xx)."""
    data = {k: payload[k] for k in ("voltage", "current", "power")}
    for attempt in range(1, MAX_ATTEMPTS + 1):
        status, retry_after = post(payload)
        print(f"Sent: {data} | Status: {status if status else 'no connection'}", flush=True)
        if status is not None and status not in RETRY_STATUSES:
            return 200 <= status < 300
        if attempt == MAX_ATTEMPTS:
            break
        # Full jitter keeps many sensors from retrying in lockstep.
        delay = random.uniform(0, min(BACKOFF_CAP, BACKOFF_BASE * 2 ** attempt))
        if retry_after is not None:
            delay = max(delay, min(retry_after, BACKOFF_CAP))
        if stop.wait(delay):
            break
    print(f"Gave up on reading {payload['readingId']} after {attempt} attempt(s)", flush=True)
    return False


def main():
    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    if DEVICE_TOKEN.startswith("your-") or PORT_ID.startswith("your-"):
        sys.exit("Set DEVICE_TOKEN and PORT_ID (environment or the top of this file).")
    time_zone = None
    if PROFILE:
        if PROFILE not in PROFILES:
            sys.exit(f"PROFILE must be one of {', '.join(PROFILES)}, not {PROFILE!r}.")
        try:
            time_zone = zoneinfo.ZoneInfo(TIME_ZONE)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            sys.exit(f"TIME_ZONE must be an IANA time zone like Europe/Berlin, not {TIME_ZONE!r}.")
    print(f"Sending readings to {NODE_SERVER_URL} every {READING_INTERVAL:g} s", flush=True)
    if PROFILE:
        print(f"Profile {PROFILE}, local time {TIME_ZONE}", flush=True)
    sent = failed = 0
    while not stop.is_set() and (COUNT == 0 or sent < COUNT):
        if not send(make_reading(time_zone)):
            failed += 1
        sent += 1
        if COUNT and sent >= COUNT:
            break
        stop.wait(READING_INTERVAL)
    print(f"Stopped after {sent} reading(s), {failed} not acknowledged", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
