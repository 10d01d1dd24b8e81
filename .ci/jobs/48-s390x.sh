#!/usr/bin/env bash
# Big-endian: the crypto, ticket and frame tests cross-compiled for s390x and
# run under qemu-user. SHA-256 words, ticket fields and frame lengths are all
# big-endian on the wire; this proves the byte-order code is written with
# shifts, not with loads that only work on little-endian machines. s390x has
# no SHA extension wsguard uses: the portable compression runs.
set -euo pipefail
source .ci/cross-setup s390x  # cxx, out, strict, defs, "$out/catch_main.o"
run=(qemu-s390x -L /usr/s390x-linux-gnu)

byte_order=$(printf '#if __BYTE_ORDER__ == __ORDER_BIG_ENDIAN__\nbig-endian\n#else\nlittle-endian\n#endif\n' | "$cxx" -E -P -x c++ - | tr -d '[:space:]')
echo "target: $("$cxx" -dumpmachine), $byte_order"
[ "$byte_order" = big-endian ] || { echo "FAIL: $cxx does not target a big-endian machine"; exit 1; }
for component in crypto tickets frames; do
  echo "-- $component"
  "$cxx" "${strict[@]}" "${defs[@]}" tests/test_"$component".cpp "$out/catch_main.o" -o "$out/test_$component" -pthread
  "${run[@]}" "$out/test_$component" >"$out/test_$component.log" 2>&1 || { cat "$out/test_$component.log"; echo "FAIL: $component on s390x"; exit 1; }
  tail -n 2 "$out/test_$component.log"
done
grep -F "tested on this machine: portable (active: portable)" "$out/test_crypto.log" >/dev/null ||
  { echo "FAIL: expected the portable SHA-256 on s390x"; cat "$out/test_crypto.log"; exit 1; }
echo "s390x (big-endian) crypto, ticket and frame tests passed"
