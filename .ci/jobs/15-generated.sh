#!/usr/bin/env bash
# Generated files are regenerated from their committed sources and must not
# differ (the nlohmann/doctest discipline): today the Public Suffix List table,
# include/wsguard/detail/public_suffix_data.hpp, from tests/psl/public_suffix_list.dat.
# The generator also refuses a list whose sha256 is not the one tests/psl/README.md names.
set -euo pipefail
echo "-- include/wsguard/detail/public_suffix_data.hpp from tests/psl/public_suffix_list.dat"
python3 tests/psl/generate_psl_table.py --check
