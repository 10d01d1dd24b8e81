#!/usr/bin/env bash
# Constant-time check of the secret-handling code ("ctgrind"): tests/ct/ct_crypto.cpp
# runs HMAC-SHA256 (key object, stream, a copied prefix stream, one-shot), constant_time_equal,
# base64url encoding, keyring::create, ticket_issuer::issue and ticket_verifier::verify
# on secrets that valgrind's memcheck sees as uninitialised, so any branch or memory
# index on a secret is reported. Two negative controls must be reported, proving the
# check can fail: a memcmp-style early-exit comparison in the same program, and a
# build without the library's declassification hook (verify's branch on the MAC
# comparison must then show up, so the ticket path really ran on secret data).
# memcheck.h ships in Debian's `valgrind` package.
set -euo pipefail
read -ra warnings < tests/strict-warnings.txt  # the one list of warning flags
out=build-ci/ct
mkdir -p "$out"
[ -f /usr/include/valgrind/memcheck.h ] || { echo "missing <valgrind/memcheck.h> (Debian package: valgrind)"; exit 1; }
vg=(valgrind -q --error-exitcode=1 --track-origins=yes)
strict=(-std=c++17 -gdwarf-4 -Iinclude "${warnings[@]}" -Werror)

for cxx in g++ clang++; do
  for opt in -O2 -O3; do
    exe="$out/ct_crypto-$cxx$opt"
    echo "-- $cxx $opt"
    $cxx "${strict[@]}" "$opt" tests/ct/ct_crypto.cpp -o "$exe"
    "${vg[@]}" "$exe"
    log="$out/leaky-control-$cxx$opt.log"
    if "${vg[@]}" "$exe" --leaky-control >"$log" 2>&1; then
      echo "FAIL: valgrind did not report the deliberately leaky comparison ($cxx $opt)"; cat "$log"; exit 1
    fi
    if ! grep -q 'Conditional jump or move depends on uninitialised value' "$log" || ! grep -q 'leaky_equal' "$log"; then
      echo "FAIL: the negative control failed, but not with memcheck's report on leaky_equal"; cat "$log"; exit 1
    fi
    echo "   negative control reported by valgrind, as it must be"
    exe_nd="$out/ct_crypto-$cxx$opt-no-declassify"
    $cxx "${strict[@]}" "$opt" -DCT_WITHOUT_DECLASSIFY tests/ct/ct_crypto.cpp -o "$exe_nd"
    log="$out/no-declassify-$cxx$opt.log"
    if "${vg[@]}" "$exe_nd" >"$log" 2>&1; then
      echo "FAIL: without the declassification hook valgrind must report verify's MAC branch ($cxx $opt)"; cat "$log"; exit 1
    fi
    if ! grep -q 'ticket_verifier<.*>::verify' "$log"; then
      echo "FAIL: the no-declassify control failed, but not in ticket_verifier::verify"; cat "$log"; exit 1
    fi
    echo "   without the hook, verify's branch on the MAC comparison is reported, as it must be"
  done
done

# Valgrind 3.19 does not emulate SHA-NI (its CPUID hides the SHA bit, so the
# runs above exercise the portable path only). The SHA-NI compression is
# intrinsics only, with no branch but the block-count loop in its source; this
# checks what a compiler could change: that the function exists, calls nothing
# (its blocks are inlined, the state never leaves it) and runs the SHA-NI rounds.
# The count of conditional jumps is printed, not judged: it varies by compiler.
if [ "$(uname -m)" = x86_64 ]; then
  for cxx in g++ clang++; do
    exe="$out/ct_crypto-$cxx-O2"
    body=$(objdump -d --no-show-raw-insn -C "$exe" |
      awk '/sha256_compress_shani\(.*>:$/{p=1;next} p&&/^$/{p=0} p')
    [ -n "$body" ] || { echo "FAIL: sha256_compress_shani not found in $exe"; exit 1; }
    jumps=$(grep -cE '\sj(a|ae|b|be|c|e|g|ge|l|le|na|nae|nb|nbe|nc|ne|ng|nge|nl|nle|no|np|ns|nz|o|p|pe|po|s|z)\s' <<<"$body" || true)
    calls=$(grep -cE '\scall' <<<"$body" || true)
    rounds=$(grep -c 'sha256rnds2' <<<"$body" || true)
    echo "-- SHA-NI compression ($cxx -O2): $calls calls, $rounds sha256rnds2 ($jumps conditional jumps)"
    if [ "$calls" -ne 0 ] || [ "$rounds" -eq 0 ]; then
      echo "FAIL: the SHA-NI compression calls out or has no SHA-NI rounds"; echo "$body"; exit 1
    fi
  done
fi
echo "constant-time checks passed"
