#!/usr/bin/env bash
# Report only, never fails: is the build host's Public Suffix List (Debian's
# `publicsuffix` package) newer than the snapshot the header was generated from?
# The tests check the header against the committed snapshot, not against this
# list, so a distribution with another list never fails the build. When this
# says the host's list is newer, consider taking it (docs/maintaining.md).
set -uo pipefail
host=/usr/share/publicsuffix/public_suffix_list.dat
committed=tests/psl/public_suffix_list.dat
field() { sed -n "s/^- $1: //p" tests/psl/README.md; }
committed_version=$(field version)
echo "-- committed snapshot: publicsuffix $committed_version, list of $(field date), sha256 $(field sha256)"
if [ ! -f "$host" ]; then
  echo "   no host list at $host (Debian package publicsuffix not installed): nothing to compare"
  exit 0
fi
host_sha=$(sha256sum "$host" | cut -d' ' -f1)
host_version=$(dpkg-query -W -f='${Version}' publicsuffix 2>/dev/null || true)
echo "-- host list: $host, publicsuffix ${host_version:-(version unknown)}, sha256 $host_sha"
if cmp -s "$host" "$committed"; then
  echo "   identical to the committed snapshot"
elif [ -n "$host_version" ] && dpkg --compare-versions "$host_version" gt "$committed_version" 2>/dev/null; then
  echo "NOTICE: the host's Public Suffix List is NEWER than the committed snapshot ($host_version > $committed_version)."
  echo "        To take it: see docs/maintaining.md, 'The Public Suffix List'. The build does not depend on it."
else
  echo "   differs from the committed snapshot but is not newer by its package version: nothing to do"
fi
exit 0
