#!/usr/bin/env bash
# Checks that the documentation works in any clone of the repository:
#   (a) relative links in Markdown files point at files or directories that
#       exist in the repository;
#   (b) the same for relative links in Rust doc comments (`//!`, `///`);
#   (c) no text file holds an absolute path of one machine (a home or work
#       directory, a tool's scratch directory).
# Looks at the files git tracks plus new files it does not ignore, so a
# broken link is caught before it is committed. Prints file:line for every
# finding and exits 1 if there is any.
#
# A line that must name such a path anyway carries `check-docs: allow-path`
# (on the line itself or on the line just above), with the reason beside it.
#
# Needs bash, git and python3 (standard library only).
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."

exec python3 - <<'PY'
import os
import re
import subprocess
import sys
from urllib.parse import unquote

SELF = "scripts/check-docs.sh"
ROOT = os.path.realpath(".")

files = subprocess.run(
    ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
    check=True,
    capture_output=True,
).stdout.decode("utf-8", "surrogateescape").split("\0")
# A tracked file deleted in the working tree is not there to check.
files = sorted({f for f in files if f and os.path.isfile(f)})

findings = []


def report(path, line, message):
    findings.append((path, line, message))


def read_text(path):
    """The file's text, or None for a binary file (a NUL byte, as git judges)."""
    with open(path, "rb") as handle:
        data = handle.read()
    if b"\0" in data[:8192]:
        return None
    return data.decode("utf-8", "replace")


# --- links -------------------------------------------------------------------

# `[text](target)`, `![alt](target)`, `[text](<target> "title")`.
INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*(<[^>]*>|[^)\s]+)(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
# `[label]: target` reference definitions (Markdown only).
REFERENCE = re.compile(r"^ {0,3}\[[^\]]+\]:\s*(<[^>]*>|\S+)")
CODE_SPAN = re.compile(r"(`+)(.+?)\1")
FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
# Rust intra-doc links (`[Foo](crate::foo::Foo)`, `[x](Foo)`), not files.
RUST_PATH = re.compile(r"^(::)?[A-Za-z_][A-Za-z0-9_]*(::[A-Za-z_][A-Za-z0-9_]*)*(\(\)|!)?$")


def check_target(path, line, raw, rust):
    target = raw[1:-1] if raw.startswith("<") and raw.endswith(">") else raw
    if not target or target.startswith("#") or SCHEME.match(target):
        return
    if rust and ("::" in target or RUST_PATH.match(target)):
        return
    file_part = unquote(target.split("#", 1)[0].split("?", 1)[0])
    if not file_part:
        return
    if file_part.startswith("/"):
        # As GitHub reads it: relative to the repository's root.
        resolved = os.path.join(ROOT, file_part.lstrip("/"))
    else:
        resolved = os.path.join(os.path.dirname(os.path.join(ROOT, path)), file_part)
    resolved = os.path.realpath(resolved)
    if resolved != ROOT and not resolved.startswith(ROOT + os.sep):
        report(path, line, f"link leaves the repository: {target}")
    elif not os.path.exists(resolved):
        report(path, line, f"dangling link: {target}")


def links_in(text):
    """Link targets of one line of Markdown, code spans left out."""
    text = CODE_SPAN.sub("code", text)
    return [m.group(1) for m in INLINE_LINK.finditer(text)]


def check_markdown(path, text):
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        opened = FENCE.match(line)
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0] and len(opened.group(1)) >= len(fence):
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        targets = links_in(line)
        reference = REFERENCE.match(line)
        if reference:
            targets.append(reference.group(1))
        for target in targets:
            check_target(path, number, target, rust=False)


DOC_COMMENT = re.compile(r"^\s*//[/!](?!/)(.*)$")


def check_rust(path, text):
    fence = None
    for number, line in enumerate(text.splitlines(), 1):
        doc = DOC_COMMENT.match(line)
        if not doc:
            fence = None
            continue
        body = doc.group(1)
        opened = FENCE.match(body.strip())
        if fence is not None:
            if opened and opened.group(1)[0] == fence[0]:
                fence = None
            continue
        if opened:
            fence = opened.group(1)
            continue
        for target in links_in(body):
            check_target(path, number, target, rust=True)


# --- machine paths -------------------------------------------------------------

# An absolute path starts a word: not a relative path's inner segment
# (`benches/load/workload.rs`) nor part of a URL.
START = r"(?<![\w.~-])"
# Top-level directories that exist only on some machine (a workspace, an
# account's home); named without slashes so this file does not match itself.
MACHINE_ROOTS = ["work", "root", r"home/[A-Za-z0-9._-]+", r"Users/[A-Za-z0-9._-]+"]
MACHINE_PATHS = [
    re.compile(START + "/(?:" + "|".join(MACHINE_ROOTS) + ")/"),
    re.compile(r"/tmp/bash_jobs"),
]
ALLOW = "check-docs: allow-path"


def check_paths(path, text):
    previous = ""
    for number, line in enumerate(text.splitlines(), 1):
        if ALLOW not in line and ALLOW not in previous:
            for pattern in MACHINE_PATHS:
                found = pattern.search(line)
                if found:
                    report(path, number, f"machine-specific path: {line[found.start():].split()[0]}")
                    break
        previous = line


counts = {"markdown": 0, "rust": 0, "text": 0}
for path in files:
    text = read_text(path)
    if text is None:
        continue
    if path.endswith(".md"):
        counts["markdown"] += 1
        check_markdown(path, text)
    elif path.endswith(".rs"):
        counts["rust"] += 1
        check_rust(path, text)
    if path != SELF:
        counts["text"] += 1
        check_paths(path, text)

for path, line, message in sorted(findings):
    print(f"{path}:{line}: {message}")
if findings:
    print(f"check-docs: {len(findings)} problem(s)", file=sys.stderr)
    sys.exit(1)
print(
    f"check-docs: ok ({counts['markdown']} Markdown, {counts['rust']} Rust, "
    f"{counts['text']} text files)",
    file=sys.stderr,
)
PY
