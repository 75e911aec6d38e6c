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
"""
import datetime
import json
import os
import random
import signal
import sys
import threading
import urllib.error
import urllib.request
import uuid

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

RETRY_STATUSES = (503, 504)
BACKOFF_BASE = 0.5   # seconds; doubles per attempt
BACKOFF_CAP = 30.0

stop = threading.Event()


def on_signal(signum, frame):
    stop.set()


def make_reading():
    voltage = round(random.uniform(VOLTAGE_MIN, VOLTAGE_MAX), 2)
    amps = round(random.uniform(CURRENT_MIN, CURRENT_MAX), 3)
    now = datetime.datetime.now(datetime.timezone.utc)
    return {
        "deviceToken": DEVICE_TOKEN,
        "portId": PORT_ID,
        "voltage": voltage,
        "current": amps,
        "power": round(voltage * amps, 2),
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
    print(f"Sending readings to {NODE_SERVER_URL} every {READING_INTERVAL:g} s", flush=True)
    sent = failed = 0
    while not stop.is_set() and (COUNT == 0 or sent < COUNT):
        if not send(make_reading()):
            failed += 1
        sent += 1
        if COUNT and sent >= COUNT:
            break
        stop.wait(READING_INTERVAL)
    print(f"Stopped after {sent} reading(s), {failed} not acknowledged", flush=True)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
