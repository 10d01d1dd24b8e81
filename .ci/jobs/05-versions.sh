#!/usr/bin/env bash
# One version everywhere: the header's WSGUARD_VERSION_* macros and
# WSGUARD_VERSION_STRING, meson.build's project(), CMakeLists.txt's project(),
# ports/wsguard/vcpkg.json and the newest released entry of CHANGELOG.md must
# agree; the ABI namespace must name the same major.minor (abi_v<major>_<minor>);
# CHANGELOG.md keeps an "Unreleased" section above the releases.
set -euo pipefail
python3 - <<'PY'
import json, re, sys

def read(path):
    with open(path, encoding="utf-8") as f:
        return f.read()

def one(pattern, text, what):
    found = re.findall(pattern, text, re.M)
    if len(found) != 1:
        sys.exit(f"FAIL: {what}: expected one match of {pattern!r}, found {len(found)}")
    return found[0]

header = read("include/wsguard.hpp")
parts = [one(rf"^#define WSGUARD_VERSION_{p} (\d+)$", header, f"header WSGUARD_VERSION_{p}")
         for p in ("MAJOR", "MINOR", "PATCH")]
versions = {
    "include/wsguard.hpp WSGUARD_VERSION_MAJOR/MINOR/PATCH": ".".join(parts),
    "include/wsguard.hpp WSGUARD_VERSION_STRING": one(r'^#define WSGUARD_VERSION_STRING "([^"]+)"$', header, "WSGUARD_VERSION_STRING"),
    "meson.build project()": one(r"^project\('wsguard',[^)]*?version: '([^']+)'", read("meson.build"), "meson.build version"),
    "CMakeLists.txt project()": one(r"^project\(wsguard VERSION (\S+)", read("CMakeLists.txt"), "CMakeLists.txt version"),
    "ports/wsguard/vcpkg.json": json.loads(read("ports/wsguard/vcpkg.json"))["version"],
}
changelog = read("CHANGELOG.md")
headings = re.findall(r"^## \[([^\]]+)\]", changelog, re.M)
if not headings or headings[0] != "Unreleased":
    sys.exit("FAIL: CHANGELOG.md must start its entries with '## [Unreleased]'")
released = [h for h in headings if h != "Unreleased"]
if not released:
    sys.exit("FAIL: CHANGELOG.md has no released entry ('## [X.Y.Z] - YYYY-MM-DD')")
one(rf"^## \[{re.escape(released[0])}\] - \d{{4}}-\d{{2}}-\d{{2}}$", changelog, "the newest release's heading (with its date)")
versions["CHANGELOG.md newest release"] = released[0]

expected = versions["include/wsguard.hpp WSGUARD_VERSION_MAJOR/MINOR/PATCH"]
width = max(map(len, versions))
for where, version in versions.items():
    print(f"{where:<{width}}  {version}")
wrong = {w: v for w, v in versions.items() if v != expected}
if wrong:
    sys.exit("FAIL: versions disagree: " + ", ".join(f"{w} says {v}" for w, v in wrong.items()))

major, minor, _ = parts
abi_names = re.findall(r"^#define WSGUARD_ABI_NS (\w+)$", header, re.M)
# 0.x: every minor release may change layouts, so the namespace names major
# and minor; from 1.0 it names at least the major (README "Versioning").
want = f"abi_v{major}_{minor}" if major == "0" else f"abi_v{major}_"
if len(abi_names) != 2 or not all(n.startswith(want) for n in abi_names) or \
        sorted(abi_names)[1] != sorted(abi_names)[0] + "_portable":
    sys.exit(f"FAIL: the ABI namespaces are {abi_names}; version {expected} needs {want}... and its _portable twin")
print(f"{'ABI namespace':<{width}}  {' and '.join(sorted(abi_names))}")
print(f"versions: all {expected}")
PY
