"""run.py MODULE... - unittest runner for ctest: exit 0 passed, 1 failed,
77 when everything was skipped (SKIP_RETURN_CODE 77; e.g. PHANTOM_ALLOW_SKIP=1
and no deploy/up yet)."""

import sys
import unittest


def main(argv):
    names = argv[1:] or ["test_sensor", "test_api", "test_pipeline", "test_detection", "test_curve",
                          "test_figures", "test_demo", "test_backfill",
                          "test_emoncms", "test_bridge", "test_config", "test_mqtt"]
    suite = unittest.defaultTestLoader.loadTestsFromNames(names)
    result = unittest.TextTestRunner(verbosity=2).run(suite)
    if not result.wasSuccessful():
        return 1
    ran = result.testsRun - len(result.skipped)
    if result.skipped and ran <= 0:
        return 77
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
