#!/usr/bin/env python3
"""Check the relative links of README.md and docs/*.md (python3, stdlib only).

Every [text](path), [text](path#anchor) and [text](#anchor) that is not a URL
must name an existing file, and an anchor must be a heading of that Markdown
file (GitHub's slugs: lowercase, punctuation dropped, spaces to hyphens).
Exit status 1 on a broken link. Run by .ci/jobs/12-docs.sh.
"""
import glob
import os
import re
import sys

ROOT = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")


def slug(heading):
    s = heading.strip().lower()
    s = re.sub(r"[^\w\- ]", "", s)  # keeps letters, digits, _, -, spaces
    return s.replace(" ", "-")


def anchors(path):
    found, fenced = set(), False
    with open(path, encoding="utf-8") as f:
        for line in f:
            if line.lstrip().startswith(("```", "~~~")):
                fenced = not fenced
            elif not fenced and line.startswith("#"):
                found.add(slug(line.lstrip("#")))
    return found


def strip_code(text):
    text = re.sub(r"^\s*(```|~~~).*?^\s*\1", "", text, flags=re.S | re.M)
    return re.sub(r"`[^`\n]*`", "", text)


def main():
    files = [os.path.join(ROOT, "README.md")] + sorted(glob.glob(os.path.join(ROOT, "docs", "**", "*.md"), recursive=True))
    broken = 0
    for md in files:
        with open(md, encoding="utf-8") as f:
            text = strip_code(f.read())
        for target in LINK.findall(text):
            if re.match(r"^[a-z][a-z0-9+.-]*:", target):  # http:, https:, mailto:
                continue
            path, _, anchor = target.partition("#")
            dest = os.path.normpath(os.path.join(os.path.dirname(md), path)) if path else md
            where = os.path.relpath(md, ROOT)
            if not os.path.exists(dest):
                print("%s: broken link %s (no %s)" % (where, target, os.path.relpath(dest, ROOT)))
                broken += 1
            elif anchor and dest.endswith(".md") and anchor not in anchors(dest):
                print("%s: broken anchor %s (no such heading in %s)" % (where, target, os.path.relpath(dest, ROOT)))
                broken += 1
    print("links: %d files, %d broken" % (len(files), broken))
    return 1 if broken else 0


if __name__ == "__main__":
    sys.exit(main())
