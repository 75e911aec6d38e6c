"""The one table of config keys (issue 16, items 4 and 5), through the real
binaries and without a stack: a misspelt key, a value of the wrong type or
out of range stops a service at start-up with exit 1 and file:line; every
program's --help-config lists every key of the table; the deploy config
loads; bad usage exits 2; docs/config.md is the binaries' own output."""

import os
import re
import subprocess
import tempfile
import unittest

import harness

SERVICES = {
    "store": ["services/store/phantom-store"],
    "gateway": ["services/gateway/phantom-gateway"],
    "detector": ["services/detector/phantom-detector", "-i", "0"],
    "notifier": ["services/notifier/phantom-notifier"],
}
TOOLS = ["tools/phantom-tap/phantom-tap", "tools/phantom-certs/phantom-certs"]
BUILD = os.path.abspath(harness.BUILD)
DEPLOY_CONF = os.path.join(os.path.abspath(harness.REPO), "deploy", "phantomwatch.conf")


def _env():
    """The caller's environment without PHANTOM_* (they would override the
    file under test)."""
    return {k: v for k, v in os.environ.items() if not k.startswith("PHANTOM_")}


def _run(args, cwd=None):
    binary = os.path.join(BUILD, args[0])
    if not os.access(binary, os.X_OK):
        raise unittest.SkipTest(binary + " not built")
    return subprocess.run([binary] + args[1:], capture_output=True, text=True, timeout=30,
                          env=_env(), cwd=cwd or tempfile.gettempdir())


def _table_keys(path):
    """Key names of a C table of proto_config_key_t entries."""
    with open(os.path.join(harness.REPO, path)) as fh:
        text = fh.read()
    pattern = r'PROTO_CONFIG_KEY_(?:INT|STRING|CHOICE)\s*\(\s*"([a-z0-9_]+)"|\{\s*"([a-z0-9_]+)",\s*PROTO_CONFIG_'
    return [a or b for a, b in re.findall(pattern, text)]


def _file_keys(path):
    """Keys set in a config file (comments and blank lines skipped)."""
    keys = []
    with open(path) as fh:
        for line in fh:
            line = line.strip()
            if line and not line.startswith("#"):
                keys.append(line.split("=", 1)[0].strip())
    return keys


class Config(unittest.TestCase):
    def _bad_config(self, extra):
        """deploy/phantomwatch.conf with extra appended; (path, its line)."""
        with open(DEPLOY_CONF) as fh:
            text = fh.read()
        handle, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(handle, "w") as fh:
            fh.write(text + extra + "\n")
        self.addCleanup(os.remove, path)
        return path, text.count("\n") + 1

    def test_misspelt_key_stops_every_service(self):
        path, line = self._bad_config("partitons = 4")
        for name, args in SERVICES.items():
            with self.subTest(service=name):
                result = _run(args[:1] + ["-c", path] + args[1:])
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("%s:%d - unknown key 'partitons'" % (path, line), result.stderr)

    def test_bad_values_stop_with_file_and_line(self):
        cases = [("partitions = four", "partitions: 'four' is not an integer"),
                 ("partitions = 65", "partitions: 65 is out of range 1..64"),
                 ("store_synchronous_commit = maybe",
                  "store_synchronous_commit: 'maybe' is not one of on|off")]
        for extra, reason in cases:
            with self.subTest(line=extra):
                path, line = self._bad_config(extra)
                result = _run(["services/store/phantom-store", "-c", path])
                self.assertEqual(result.returncode, 1, result.stderr)
                self.assertIn("%s:%d - %s" % (path, line, reason), result.stderr)

    def test_environment_is_checked_too(self):
        binary = os.path.join(BUILD, "services/store/phantom-store")
        if not os.access(binary, os.X_OK):
            self.skipTest("phantom-store not built")
        env = dict(_env(), PHANTOM_BATCH_MS="soon")
        result = subprocess.run([binary, "-c", DEPLOY_CONF], capture_output=True, text=True,
                                timeout=30, env=env)
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("PHANTOM_BATCH_MS - batch_ms: 'soon' is not an integer", result.stderr)

    def test_help_config_lists_every_key(self):
        keys = _table_keys("proto/proto_config_keys.c")
        self.assertGreater(len(keys), 40)
        # deploy/up writes the stack's config from this file: all its keys are known
        self.assertLessEqual(set(_file_keys(DEPLOY_CONF)), set(keys))
        outputs = {}
        for args in [a[:1] for a in SERVICES.values()] + [[t] for t in TOOLS]:
            result = _run(args + ["--help-config"])
            self.assertEqual(result.returncode, 0, result.stderr)
            listed = re.findall(r"^([a-z0-9_]+) =", result.stdout, re.M)
            self.assertEqual(listed, keys, args[0])
            outputs[args[0]] = result.stdout
        self.assertEqual(len(set(outputs.values())), 1, "every program prints the same table")
        self.assertIn("partitions = 2  (integer 1..64)\n", result.stdout)
        self.assertIn("verdict_endpoint = tcp://127.0.0.1:5500  (text)\n", result.stdout)

    def test_deploy_defaults_agree_with_the_table(self):
        # deploy/lib.sh reads some keys itself before anything is built
        # (conf_get KEY DEFAULT): its defaults must be the table's.
        result = _run(["services/store/phantom-store", "--help-config"])
        defaults = dict(re.findall(r"^([a-z0-9_]+) =(?: (.*?))?  \(", result.stdout, re.M))
        with open(os.path.join(harness.REPO, "deploy", "lib.sh")) as fh:
            pairs = re.findall(r'conf_get ([a-z0-9_]+) ("[^"$]*"|[^"$\s)]+)\)', fh.read())
        self.assertGreater(len(pairs), 5)
        for key, default in pairs:
            with self.subTest(key=key):
                self.assertIn(key, defaults)
                self.assertEqual(default.strip('"'), defaults[key])

    def test_bridge_has_its_own_table(self):
        keys = _table_keys("tools/phantom-bridge/bridge_config_keys.c")
        example = os.path.join(harness.REPO, "deploy", "bridge.conf.example")
        self.assertEqual(set(_file_keys(example)), set(keys))
        result = _run(["tools/phantom-bridge/phantom-bridge", "--help-config"])
        self.assertEqual(result.returncode, 0, result.stderr)
        self.assertEqual(re.findall(r"^([a-z0-9_]+) =", result.stdout, re.M), keys)
        handle, path = tempfile.mkstemp(suffix=".conf")
        with os.fdopen(handle, "w") as fh:
            fh.write("bridge_baud = 9600\nbridge_spool_snyc = off\n")
        self.addCleanup(os.remove, path)
        result = _run(["tools/phantom-bridge/phantom-bridge", "-c", path])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("%s:2 - unknown key 'bridge_spool_snyc'" % path, result.stderr)

    def test_deploy_config_loads(self):
        # The config loads; the detector then refuses a partition out of range.
        result = _run(["services/detector/phantom-detector", "-c", DEPLOY_CONF, "-i", "99"])
        self.assertEqual(result.returncode, 1, result.stderr)
        self.assertIn("detector partition 99 - not in [0, 2)", result.stderr)
        self.assertNotIn("config ", result.stderr)

    def test_bad_usage_exits_2(self):
        for args in [a[:1] for a in SERVICES.values()] + [[t] for t in TOOLS]:
            with self.subTest(program=args[0]):
                result = _run(args + ["--no-such-flag"])
                self.assertEqual(result.returncode, 2, result.stderr)
                self.assertIn("usage: ", result.stderr)
        result = _run(["services/detector/phantom-detector", "-c", DEPLOY_CONF])
        self.assertEqual(result.returncode, 2, "no partition is bad usage")

    def test_docs_are_the_binaries_output(self):
        script = os.path.join(harness.REPO, "deploy", "config-doc")
        env = dict(_env(), PHANTOM_BUILD_DIR=BUILD)
        result = subprocess.run([script, "--check"], capture_output=True, text=True,
                                timeout=60, env=env)
        self.assertEqual(result.returncode, 0, result.stdout + result.stderr)


if __name__ == "__main__":
    unittest.main()
