"""run.py [MODULE...] - the integration suite's ctest runner (exit 0 passed,
1 failed, 77 all skipped) with the fault suite's modules as the default."""

import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "integration"))
import run  # noqa: E402  (tests/integration/run.py)

DEFAULT = ["test_kill", "test_pg_crash", "test_backpressure", "test_duplicates", "test_abuse",
           "test_webhooks", "test_heavy_queries", "test_exposure", "test_bridge_loss",
           "test_mqtt_loss"]

if __name__ == "__main__":
    sys.exit(run.main(sys.argv[:1] + (sys.argv[1:] or DEFAULT)))
