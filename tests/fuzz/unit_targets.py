# tests/fuzz/unit_targets.py BUILD_DIR EXCLUDE_LABELS - names of the executables
# that the ctests not labelled EXCLUDE_LABELS (a regex) run, so a sanitizer
# tree builds only those (hardening.sh).
import json, os, re, subprocess, sys
build = sys.argv[1]
out = subprocess.run(["ctest", "--test-dir", build, "-N", "-LE", sys.argv[2], "--show-only=json-v1"],
                     capture_output=True, text=True, check=True).stdout
names = {t["name"] for t in json.loads(out)["tests"]}
targets = set()
for root, _, files in os.walk(build):
    if "CTestTestfile.cmake" in files:
        for line in open(os.path.join(root, "CTestTestfile.cmake")):
            m = re.match(r'add_test\((\S+) "([^"]+)"', line)
            if m and m.group(1) in names and m.group(2).startswith(build):
                targets.add(os.path.basename(m.group(2)))
print(" ".join(sorted(targets)))
