#!/usr/bin/env bash
# Docs that compile: every ```cpp block of README.md and docs/*.md (a new page
# is picked up by the glob) is compiled with g++ and clang++ under the strict
# flags (tests/docs/extract_cpp_blocks.py; fragments are wrapped in the harness
# tests/docs/prelude.hpp, excerpts of examples/ are checked against their file),
# and every relative link and anchor must resolve. Conventions: docs/maintaining.md.
set -euo pipefail
echo "-- C++ blocks of README.md and docs/*.md, g++ and clang++"
python3 tests/docs/extract_cpp_blocks.py --compiler g++ --compiler clang++
echo "-- relative links and anchors"
python3 tests/docs/check_links.py
