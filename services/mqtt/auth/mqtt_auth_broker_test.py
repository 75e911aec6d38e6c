#!/usr/bin/env python3
"""The plugin in a real mosquitto on a free 127.0.0.1 port, against
PHANTOM_TEST_DATABASE (deploy/test sets it; without it the test is skipped):
device tokens log in and nothing else does, the ACL holds (checked by what
an allowed subscriber receives and by the SUBACK refusal), each plug
PUBLISH carries a pw-id, a rotation keeps the old token only within its
grace, a revocation disconnects a connected plug within 5 s, and no token
text reaches the broker's config, log or persistence file.

Usage: mqtt_auth_broker_test.py <mosquitto> <phantom_mqtt_auth.so>
"""
import base64
import hashlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time

MOSQUITTO, PLUGIN = sys.argv[1], os.path.abspath(sys.argv[2])
DATABASE = os.environ.get("PHANTOM_TEST_DATABASE")
HOST = "127.0.0.1"
failures = []
checks = 0


def check(condition, what):
    global checks
    checks += 1
    print(("ok   " if condition else "FAIL ") + what, flush=True)
    if not condition:
        failures.append(what)


def sql(statement, **values):
    """One statement through psql, values bound as psql variables (quoted
    by psql as literals, never spliced by us)."""
    args = ["psql", DATABASE, "-v", "ON_ERROR_STOP=1", "-Atq"]
    for name, value in values.items():
        args += ["-v", f"{name}={value}"]
    out = subprocess.run(args, input=statement, capture_output=True, text=True, timeout=10)
    if out.returncode != 0:
        raise SystemExit(f"psql failed: {out.stderr}")
    return out.stdout.strip()


def new_token():
    # As gateway_api_token_new: 32 random bytes, base64url without padding.
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def sha_hex(text):
    return hashlib.sha256(text.encode()).hexdigest()


def free_port():
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return sock.getsockname()[1]


def client_args(user, password, version="5"):
    args = ["-h", HOST, "-p", str(port), "-V", version]
    if user is not None:
        args += ["-u", user]
    if password is not None:
        args += ["-P", password]
    return args


def publish(user, password, topic, payload="1", version="5", extra=()):
    run = subprocess.run(["mosquitto_pub", *client_args(user, password, version), "-q", "1",
                          "-t", topic, "-m", payload, *extra],
                         capture_output=True, text=True, timeout=10)
    return run.returncode, run.stdout + run.stderr


def refused(output):
    return "not authori" in output.lower()


def subscribe_once(user, password, topic):
    """Subscribes and gives mosquitto_sub's output after at most 1 s."""
    run = subprocess.run(["mosquitto_sub", *client_args(user, password), "-t", topic, "-W", "1"],
                         capture_output=True, text=True, timeout=10)
    return run.returncode, run.stdout + run.stderr


if not DATABASE:
    print("mqtt_auth_broker: skipped (PHANTOM_TEST_DATABASE unset)")
    sys.exit(0)

workdir = tempfile.mkdtemp(prefix="phantom-mqtt-auth-")
if os.geteuid() == 0:
    # Started as root, mosquitto drops to its own user (config "user"),
    # which must write the persistence file here.
    import pwd
    account = pwd.getpwnam("mosquitto")
    os.chown(workdir, account.pw_uid, account.pw_gid)
port = free_port()
service_secret = secrets.token_urlsafe(32)
tokens = {"a": new_token(), "b": new_token()}
names = {key: "pw-" + secrets.token_hex(5) for key in tokens}
user_id = sql("INSERT INTO users (email, name, password_hash) "
              "VALUES (:'email', 'mqtt auth test', 'x') RETURNING id",
              email=f"mqtt-auth-{secrets.token_hex(4)}@example.test")
device_ids = {}
for key in tokens:
    device_ids[key] = sql("INSERT INTO devices (user_id, name, mqtt_name, token_hash) "
                          "VALUES (:'user', :'name', :'mqtt', decode(:'hash', 'hex')) RETURNING id",
                          user=user_id, name="plug " + key, mqtt=names[key],
                          hash=sha_hex(tokens[key]))

config = os.path.join(workdir, "mosquitto.conf")
with open(os.open(config, os.O_WRONLY | os.O_CREAT, 0o600), "w") as out:
    out.write(f"""per_listener_settings false
allow_anonymous false
listener {port} {HOST}
persistence true
persistence_location {workdir}/
autosave_interval 1
log_dest stdout
log_type all
plugin {PLUGIN}
plugin_opt_database {DATABASE}
plugin_opt_service_sha256 {sha_hex(service_secret)}
""")
log_path = os.path.join(workdir, "mosquitto.log")
log = open(log_path, "w")
broker = subprocess.Popen([MOSQUITTO, "-c", config], stdout=log, stderr=subprocess.STDOUT)
service_sub = None
try:
    deadline = time.monotonic() + 8
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex((HOST, port)) == 0:
                break
        time.sleep(0.1)
    else:
        raise SystemExit("mosquitto did not listen; see " + log_path)

    a, b = names["a"], names["b"]
    # The service reads every device tree (v5, so it sees user properties).
    service_out = open(os.path.join(workdir, "service.out"), "w+")
    service_sub = subprocess.Popen(["mosquitto_sub", *client_args("phantom-mqtt", service_secret),
                                    "-q", "1", "-t", "#", "-F", "%t %P"],
                                   stdout=service_out, stderr=subprocess.STDOUT)
    time.sleep(0.5)

    rc, out = publish(a, tokens["a"], f"tele/{a}/SENSOR", '{"ENERGY":{"Power":1.5}}')
    check(rc == 0, "a device logs in with its token and publishes (v5)")
    rc, out = publish(a, tokens["a"], f"shellies/{a}/relay/0/power", "2.5", version="311")
    check(rc == 0, "a device publishes over MQTT 3.1.1 (Tasmota, Shelly Gen1)")
    rc, out = publish(a, tokens["b"], f"tele/{a}/SENSOR")
    check(rc != 0 and refused(out), "another device's token is refused")
    rc, out = publish(a, "x" * 43, f"tele/{a}/SENSOR")
    check(rc != 0 and refused(out), "a wrong token is refused")
    rc, out = publish("pw-unknown01", tokens["a"], "tele/pw-unknown01/SENSOR")
    check(rc != 0 and refused(out), "an unknown user is refused")
    rc, out = publish(None, None, f"tele/{a}/SENSOR")
    check(rc != 0 and refused(out), "an anonymous client is refused")
    rc, out = publish("phantom-mqtt", "wrong", "phantom/x")
    check(rc != 0 and refused(out), "the service user with a wrong secret is refused")

    # Not delivered (checked below): another device's tree, a forged pw-id,
    # the service writing into a device tree.
    publish(a, tokens["a"], f"tele/{b}/SENSOR", "spoofed")
    publish(a, tokens["a"], f"stat/{a}/FORGED", "x", extra=["-D", "publish", "user-property",
                                                           "pw-id", "1-1"])
    publish("phantom-mqtt", service_secret, f"tele/{a}/SENSOR", "from-service")

    for topic in ("#", "$SYS/#", f"tele/{b}/#", "+/#", f"$share/g/{a}/#"):
        rc, out = subscribe_once(a, tokens["a"], topic)
        check("denied" in out.lower(), f"a device's SUBSCRIBE to {topic} is refused (SUBACK)")
    rc, out = subscribe_once(a, tokens["a"], f"cmnd/{a}/#")
    check("denied" not in out.lower(), "a device subscribes to its own command topics")
    rc, out = subscribe_once("phantom-mqtt", service_secret, "$SYS/#")
    check("denied" in out.lower(), "the service's SUBSCRIBE to $SYS/# is refused")
    rc, out = subscribe_once("phantom-mqtt", service_secret, "$share/phantom/tele/+/SENSOR")
    check("denied" not in out.lower(), "the service subscribes to a shared device tree")

    time.sleep(0.3)
    service_out.seek(0)
    seen = service_out.read().splitlines()
    mine = [line for line in seen if line.startswith(f"tele/{a}/SENSOR ")]
    check(len(mine) == 1 and "pw-id:" in mine[0], "the service gets the plug's PUBLISH with a pw-id")
    gen1 = [line for line in seen if line.startswith(f"shellies/{a}/")]
    check(len(gen1) == 1 and "pw-id:" in gen1[0], "a 3.1.1 PUBLISH gets a pw-id too")
    ids = [part for line in seen for part in line.split() if part.startswith("pw-id:")]
    check(len(ids) == len(set(ids)) == 2, f"pw-ids are unique: {ids}")
    check(not any(line.startswith(f"tele/{b}/") for line in seen),
          "publishing into another device's tree is not delivered")
    check(not any("FORGED" in line for line in seen), "a PUBLISH with its own pw-id is refused")
    check(len(mine) == 1, "the service cannot publish into a device tree")

    # Rotation as the gateway does it (gateway_api_devices.c): the old hash
    # becomes the previous one, valid for its grace (2 s here).
    old, tokens["a"] = tokens["a"], new_token()
    sql("UPDATE devices SET previous_token_hash = token_hash, "
        "previous_token_expires_at = now () + interval '2 seconds', "
        "token_hash = decode(:'hash', 'hex') WHERE id = :'id'",
        hash=sha_hex(tokens["a"]), id=device_ids["a"])
    rotated = time.monotonic()
    time.sleep(0.5)
    rc, out = publish(a, tokens["a"], f"tele/{a}/SENSOR")
    check(rc == 0, "after a rotation the new token logs in")
    rc, out = publish(a, old, f"tele/{a}/SENSOR")
    check(rc == 0, "the old token still logs in within its grace")
    time.sleep(max(0, 2.2 - (time.monotonic() - rotated)))
    rc, out = publish(a, old, f"tele/{a}/SENSOR")
    check(rc != 0 and refused(out), "the old token is refused after its grace")

    # Revocation disconnects a connected plug.
    connected = subprocess.Popen(["mosquitto_sub", *client_args(b, tokens["b"]), "-t",
                                  f"cmnd/{b}/#"], stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                 text=True)
    time.sleep(0.5)
    check(connected.poll() is None, "a plug stays connected while its token holds")
    sql("UPDATE devices SET token_hash = NULL, token_created_at = NULL, token_expires_at = NULL, "
        "previous_token_hash = NULL, previous_token_expires_at = NULL WHERE id = :'id'",
        id=device_ids["b"])
    revoked = time.monotonic()
    try:
        connected.wait(timeout=5)
    except subprocess.TimeoutExpired:
        connected.kill()
        connected.wait()
    took = time.monotonic() - revoked
    check(took < 5, f"a revoked plug is disconnected in {took:.2f} s (< 5 s)")
    rc, out = publish(b, tokens["b"], f"tele/{b}/SENSOR")
    check(rc != 0 and refused(out), "a revoked token is refused")
finally:
    if service_sub:
        service_sub.terminate()
        service_sub.wait(timeout=5)
    broker.send_signal(signal.SIGTERM)  # writes the persistence file
    try:
        broker.wait(timeout=10)
    except subprocess.TimeoutExpired:
        broker.kill()
    log.close()
    sql("DELETE FROM users WHERE id = :'id'", id=user_id)

with open(log_path) as handle:
    broker_log = handle.read()
check("phantom-auth: ready" in broker_log, "the broker loaded the plugin")
check(os.path.exists(os.path.join(workdir, "mosquitto.db")), "the broker wrote its persistence file")
leaks = []
for root, _, files in os.walk(workdir):
    for name in files:
        if name == "service.out":
            continue
        with open(os.path.join(root, name), "rb") as handle:
            data = handle.read()
        for secret in (old, tokens["a"], tokens["b"], service_secret):
            if secret.encode() in data:
                leaks.append(name)
check(not leaks, f"no token or secret text in the broker's files ({sorted(os.listdir(workdir))})")

print(f"mqtt_auth_broker: {checks - len(failures)} passed, {len(failures)} failed")
if failures:
    print("broker log:", log_path)
    sys.exit(1)
subprocess.run(["rm", "-rf", workdir])
