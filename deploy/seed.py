#!/usr/bin/python3
"""deploy/seed.py - creates (or finds again) the demo account through the
HTTP API, as a user would: user demo@phantomwatch.local, device "Demo board"
with a device token, ports "TV", "Coffee machine", "Phone charger".

Writes $PHANTOM_VAR/demo.env (mode 600, shell-sourceable). On a second run it
reuses the device, the ports and the stored token while the gateway still
accepts it. Standard library only. Env: PHANTOM_HTTP_PORT, PHANTOM_VAR.
"""
import json
import os
import sys
import urllib.error
import urllib.request

EMAIL = "demo@phantomwatch.local"
PASSWORD = "phantom-demo-2024"
DEVICE = "Demo board"
PORTS = [("DEMO_PORT_TV", "TV"), ("DEMO_PORT_COFFEE", "Coffee machine"),
         ("DEMO_PORT_CHARGER", "Phone charger")]
NO_SUCH_PORT = "00000000-0000-0000-0000-000000000000"

BASE = "http://127.0.0.1:%s" % os.environ.get("PHANTOM_HTTP_PORT", "3000")
DEMO_ENV = os.path.join(os.environ.get("PHANTOM_VAR", "var"), "demo.env")


class ApiError(Exception):
    def __init__(self, status, body):
        super().__init__("HTTP %s: %s" % (status, body))
        self.status = status


def call(method, path, body=None, token=None):
    """Returns the response's data object; raises ApiError on a non-2xx."""
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    if token:
        headers["Authorization"] = "Bearer " + token
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(BASE + path, data=data, headers=headers, method=method)
    try:
        with urllib.request.urlopen(request, timeout=15) as response:
            payload = json.loads(response.read() or b"{}")
    except urllib.error.HTTPError as error:
        raise ApiError(error.code, error.read().decode(errors="replace")[:300]) from None
    return payload.get("data") or {}


def listing(data, key):
    """A list from {data:{key:[...]}} (or a bare list)."""
    return data if isinstance(data, list) else data.get(key) or []


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


def main():
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

    ports = listing(call("GET", "/api/ports", token=user_token), "ports")
    port_ids = {}
    for key, name in PORTS:
        port = next((p for p in ports if p.get("name") == name
                     and str(p.get("deviceId")) == str(device_id)), None)
        if port is None:
            port = call("POST", "/api/ports", {"name": name, "deviceId": device_id},
                        token=user_token)["port"]
        port_ids[key] = port["id"]

    values = {"DEMO_EMAIL": EMAIL, "DEMO_PASSWORD": PASSWORD, "DEMO_DEVICE_ID": device_id,
              "DEMO_DEVICE_TOKEN": device_token, **port_ids}
    tmp = DEMO_ENV + ".tmp"
    with open(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "w") as f:
        for key, value in values.items():
            f.write("%s='%s'\n" % (key, value))
    os.replace(tmp, DEMO_ENV)
    print("==> demo account ready (%s)" % DEMO_ENV)


if __name__ == "__main__":
    try:
        main()
    except (ApiError, KeyError, TypeError, ValueError, OSError) as error:
        sys.exit("deploy: error: seeding the demo account failed: %r" % error)
