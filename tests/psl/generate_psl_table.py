#!/usr/bin/env python3
"""Generate wsguard's compact Public Suffix List table (python3, stdlib only).

Rewrites the region between the two marker comments in
include/wsguard.hpp with the rules of the Public Suffix List,
ICANN and private sections both. The list is Debian's `publicsuffix` package:

    python3 tests/psl/generate_psl_table.py [public_suffix_list.dat [wsguard.hpp]]

Table format (what detail::origin_psl_* in the header reads): one rule per
line, labels reversed so every rule beneath a domain shares its prefix, a
wildcard rule `*.ck` written `ck.*`, an exception rule `!www.ck` written
`ck.www!`, Unicode labels in their punycode (xn--) form. Lines are sorted by
byte and split into chunks of at most 16000 bytes (MSVC's string-literal limit
is 64 KiB after concatenation). tests/test_public_suffix.cpp parses the .dat
at test time and checks every rule against this table, and that the pinned
fingerprint below matches the file.
"""
import os
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
HEADER = os.path.join(HERE, "..", "..", "include", "wsguard.hpp")
DEFAULT_DAT = "/usr/share/publicsuffix/public_suffix_list.dat"
BEGIN = "// BEGIN GENERATED PUBLIC SUFFIX TABLE"
END = "// END GENERATED PUBLIC SUFFIX TABLE"
CHUNK_BYTES = 16000


def fnv1a64(data):
    h = 0xCBF29CE484222325
    for b in data:
        h ^= b
        h = (h * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def to_ascii_label(label):
    if all(ord(c) < 128 for c in label):
        return label
    return "xn--" + label.encode("punycode").decode("ascii")


def parse_rules(text):
    """Yields (rule, section) with section 'icann' or 'private'."""
    section = None
    for raw in text.splitlines():
        line = raw.strip()
        if line.startswith("// ===BEGIN ICANN DOMAINS==="):
            section = "icann"
        elif line.startswith("// ===BEGIN PRIVATE DOMAINS==="):
            section = "private"
        if not line or line.startswith("//"):
            continue
        rule = line.split()[0]  # the spec: a rule ends at the first whitespace
        yield rule, section


def encode(rule):
    kind = ""
    if rule.startswith("!"):
        kind, rule = "!", rule[1:]
    labels = [to_ascii_label(l) for l in rule.lower().split(".")]
    if labels[0] == "*":
        return ".".join(reversed(labels[1:])) + ".*"
    assert "*" not in labels, rule
    return ".".join(reversed(labels)) + kind


def debian_version():
    try:
        out = subprocess.run(["dpkg-query", "-W", "-f=${Version}", "publicsuffix"],
                             capture_output=True, text=True, check=False)
        return out.stdout.strip() or "unknown"
    except OSError:
        return "unknown"


def main():
    dat = sys.argv[1] if len(sys.argv) > 1 else DEFAULT_DAT
    with open(dat, "rb") as f:
        data = f.read()
    rules = list(parse_rules(data.decode("utf-8")))
    icann = sum(1 for _, s in rules if s == "icann")
    private = sum(1 for _, s in rules if s == "private")
    lines = sorted(set(encode(r) for r, _ in rules))
    for line in lines:
        assert all(33 <= ord(c) < 127 and c not in '"\\' for c in line), line

    chunks, current = [], []
    for line in lines:
        if current and sum(len(l) + 1 for l in current) + len(line) + 1 > CHUNK_BYTES:
            chunks.append(current)
            current = []
        current.append(line)
    chunks.append(current)

    out = [BEGIN + " (tests/psl/generate_psl_table.py; do not edit by hand)"]
    out.append("// Source: %s, Debian publicsuffix %s" % (os.path.basename(dat), debian_version()))
    out.append("// %d rules (%d ICANN, %d private), %d distinct lines, %d bytes"
               % (len(rules), icann, private, len(lines), sum(len(l) + 1 for l in lines)))
    out.append('inline constexpr const char origin_psl_version[] = "%s";' % debian_version())
    out.append("inline constexpr std::size_t origin_psl_rule_count = %d;" % len(rules))
    out.append("inline constexpr std::uint64_t origin_psl_source_fnv1a64 = 0x%016xULL;" % fnv1a64(data))
    out.append("inline constexpr std::string_view origin_psl_chunks[] = {")
    for chunk in chunks:
        pieces, piece = [], ""
        for l in chunk:
            if len(piece) + len(l) + 2 > 96:
                pieces.append(piece)
                piece = ""
            piece += l + "\\n"
        pieces.append(piece)
        out.append("    std::string_view(")
        for p in pieces:
            out.append('        "%s"' % p)
        out.append("    , %d)," % sum(len(l) + 1 for l in chunk))
    out.append("};")
    out.append(END)

    header_path = sys.argv[2] if len(sys.argv) > 2 else HEADER
    with open(header_path, encoding="utf-8") as f:
        header = f.read()
    start = header.index(BEGIN)
    stop = header.index(END) + len(END)
    header = header[:start] + "\n".join(out) + header[stop:]
    with open(header_path, "w", encoding="utf-8") as f:
        f.write(header)
    print("wrote %d lines in %d chunks to %s" % (len(lines), len(chunks), header_path))


if __name__ == "__main__":
    main()
