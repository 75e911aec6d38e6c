"""phantom-bridge under test: a socat pty pair standing for the board's
serial device, and the bridge on it with its own spool and metrics port.

Shared by tests/integration/test_bridge.py and tests/fault/test_bridge_loss.py,
which write the board's lines into host_path and read the bridge's
Prometheus counters back (metrics()).
"""

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import urllib.request

import harness
from harness import wait_for

#  The build tree's bridge; PHANTOM_BRIDGE_BIN tests another binary.
BRIDGE = os.environ.get("PHANTOM_BRIDGE_BIN") or os.path.join(
    harness.BUILD, "tools", "phantom-bridge", "phantom-bridge")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def check_prerequisites(test):
    """Fails test when socat or the bridge binary is missing."""
    if not shutil.which("socat"):
        test.fail("socat is not installed (deploy/packages.txt)")
    test.assertTrue(os.access(BRIDGE, os.X_OK), "%s is not built" % BRIDGE)


class BridgeRig:
    """socat and the bridge for one device's three ports (the owner's,
    as channels default, 1 and P2), in a temporary directory removed after
    the test. settings: bridge config keys (bridge_batch=10, ...), passed
    as PHANTOM_BRIDGE_* overrides after the defaults here."""

    def __init__(self, test, stack, owner, prefix="phantom-bridge-", spool="spool.db",
                 **settings):
        self.test = test
        self.dir = tempfile.mkdtemp(prefix=prefix)
        test.addCleanup(shutil.rmtree, self.dir, True)
        self.board_path = os.path.join(self.dir, "board")
        self.host_path = os.path.join(self.dir, "host")
        self.spool = os.path.join(self.dir, spool)
        os.makedirs(os.path.dirname(self.spool), exist_ok=True)
        self.metrics_port = free_port()
        self.socat = None
        self.bridge = None
        p = owner["ports"]
        self.env = dict(os.environ)
        self.env.update({
            "PHANTOM_BRIDGE_DEVICE": self.board_path,
            "PHANTOM_BRIDGE_URL": stack.base_url,
            "PHANTOM_BRIDGE_DEVICE_TOKEN": owner["device_token"],
            "PHANTOM_BRIDGE_CHANNELS": "default=%s,1=%s,P2=%s" % (p[0], p[1], p[2]),
            "PHANTOM_BRIDGE_SPOOL": self.spool,
            "PHANTOM_BRIDGE_METRICS_ADDRESS": "127.0.0.1:%d" % self.metrics_port,
            "PHANTOM_BRIDGE_LINE_MAX": "200",
            "PHANTOM_BRIDGE_BACKOFF_MIN_MS": "100",
            "PHANTOM_BRIDGE_BACKOFF_MAX_MS": "1000",
        })
        self.env.update({"PHANTOM_" + k.upper(): str(v) for k, v in settings.items()})
        self.log = open(os.path.join(self.dir, "bridge.log"), "ab")
        test.addCleanup(self.stop_all)

    def start_socat(self):
        self.socat = subprocess.Popen(
            ["socat", "pty,raw,echo=0,link=" + self.board_path,
             "pty,raw,echo=0,link=" + self.host_path],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.test.assertTrue(wait_for(lambda: os.path.exists(self.host_path)
                                      and os.path.exists(self.board_path), 5),
                             "socat made no pty pair")

    def stop_socat(self):
        """The device unplugged: socat ended, its nodes gone."""
        if self.socat:
            self.socat.terminate()
            self.socat.wait(5)
            self.socat = None
            wait_for(lambda: not os.path.exists(self.board_path), 5)

    def start_bridge(self):
        self.bridge = subprocess.Popen([BRIDGE], env=self.env, stdout=self.log,
                                       stderr=self.log)
        self.test.assertTrue(wait_for(lambda: self.metrics() is not None, 10),
                             "bridge metrics never answered:\n" + self.log_text())

    def kill9_bridge(self):
        self.bridge.send_signal(signal.SIGKILL)
        self.bridge.wait(10)
        self.bridge = None

    def stop_bridge(self):
        if self.bridge:
            self.bridge.send_signal(signal.SIGTERM)
            try:
                self.bridge.wait(20)
            except subprocess.TimeoutExpired:
                self.bridge.kill()
                self.bridge.wait(5)
            self.bridge = None

    def stop_all(self):
        self.stop_bridge()
        self.stop_socat()
        self.log.close()

    def log_text(self):
        self.log.flush()
        with open(os.path.join(self.dir, "bridge.log"), "rb") as f:
            return f.read().decode("utf-8", "replace")[-3000:]

    def metrics(self):
        """The bridge's counters {name: value}; None while it does not answer."""
        try:
            url = "http://127.0.0.1:%d/metrics" % self.metrics_port
            with urllib.request.urlopen(url, timeout=2) as r:
                text = r.read().decode()
        except OSError:
            return None
        out = {}
        for line in text.splitlines():
            if line and not line.startswith("#"):
                name, value = line.split()
                out[name] = float(value)
        return out

    def wait_open(self, reopens):
        """Until the bridge has opened the device (by itself) and counted
        at least reopens reopenings."""
        ok = wait_for(lambda: (self.metrics() or {}).get(
            "phantom_bridge_serial_reopens_total", -1) >= reopens
            and "open at 9600 baud" in self.log_text(), 10)
        self.test.assertTrue(ok, self.log_text())
