#!/usr/bin/env python3
"""Writes docs/reference.md from include/bufpool.h: every public function, type and macro
with the comment that documents it, under the header's section banners.

The header's conventions, which this script relies on and --check enforces:
  - a banner comment (a line starting "/* ----") opens a section; its first sentence is the
    section's title and the rest its introduction;
  - any other comment documents the declarations that follow it, up to the next blank line
    or comment; a comment at the end of a declaration's line is added to that one alone;
  - every function's comment has a line starting "Errors:" that lists what the call can
    report (the BP_E* codes, or NULL and the errno values; "none" when it cannot fail),
    rendered as a paragraph of its own wherever it starts.

  scripts/gen_reference.py > docs/reference.md
  scripts/gen_reference.py --check LIBBUFPOOL_SO    fails when docs/reference.md is stale, a
      symbol the library exports (nm -D) is undocumented, a function's comment has no
      "Errors:" line, or the header declares a function the library does not export
"""
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HEADER = ROOT / "include" / "bufpool.h"
REFERENCE = ROOT / "docs" / "reference.md"

FUNCTION = re.compile(r"\b(bp_\w+)\s*\(")
VARIABLE = re.compile(r"^extern BP_API .*?\b(bp_\w+)\b(?: __attribute__.*)?;")
TYPED = re.compile(r"^BP_BUF_TYPED\((\w+), (\w+)\)")
DEFINE = re.compile(r"^#define\s+((?:BP|bp)_\w+)(\(.*?\))?")
TYPEDEF_BLOCK = re.compile(r"^typedef (struct|enum) (\w+) \{$")
TYPEDEF_LINE = re.compile(r"^typedef (struct|enum) (\w+)\b.*;$")
# the start of the paragraph that lists what a function can report
ERRORS = "Errors:"
# macros of the header's own machinery, not part of the API
PRIVATE_MACROS = {"BP_API", "BP_INLINE_API", "BP_BUF_INLINE_API", "BP_MALLOCLIKE", "BP_BUF_TYPED"}


class Entry:
    """One declaration (or a family of them) and its documentation."""

    def __init__(self, kind, names, code, doc, group, title=None):
        self.kind, self.names, self.code, self.doc = kind, names, code, doc
        self.group, self.title = group, title or names[0]


def comment_text(lines):
    """The prose of a C comment: delimiters, leading stars and rule lines removed; an
    indented line (a picture, a list) keeps its line break and indentation."""
    out = []
    for line in lines:
        line = line.rstrip()
        line = re.sub(r"^\s*/\*+ ?", "", line)
        line = re.sub(r"\s*\*+/$", "", line)
        line = re.sub(r"^\s*\* ?", "", line)
        if line and set(line) <= set("-"):
            continue
        out.append(line)
    paragraphs, block = [], []
    for line in out:
        if line.startswith("    "):
            block.append(line[4:])
            continue
        if block:
            paragraphs.append("```\n" + "\n".join(block) + "\n```")
            block = []
        if paragraphs and line and not paragraphs[-1].startswith("```") and paragraphs[-1]:
            paragraphs[-1] += " " + line.strip()
        else:
            paragraphs.append(line.strip())
    if block:
        paragraphs.append("```\n" + "\n".join(block) + "\n```")
    # "Errors:" opens a paragraph wherever the comment's lines put it
    paragraphs = [q for p in paragraphs
                  for q in ([p] if p.startswith("```") else re.split(r"\s+(?=" + ERRORS + ")", p))]
    return "\n\n".join(p for p in paragraphs if p).strip()


def trailing_comment(line):
    m = re.search(r"/\*\s*(.*?)\s*\*/\s*$", line)
    return m.group(1) if m else ""


def read_block(lines, i, first):
    """A brace block opened by `first`, through its closing line; returns it and the index
    of the line after it."""
    body = [first]
    while not lines[i].startswith("}"):
        body.append(lines[i].rstrip())
        i += 1
    body.append(lines[i].rstrip())
    return body, i + 1


def parse():
    lines = HEADER.read_text().splitlines()
    sections = [["Version", "", []]]  # [title, intro, entries]
    doc = ""
    group = 0  # declarations that share a comment share a group
    i = 0

    def add(kind, names, code, own_comment="", title=None):
        if doc:
            sections[-1][2].append(Entry(kind, names, code, doc, group, title))
        else:  # documented by its own line's comment, or not at all: alone
            sections[-1][2].append(Entry(kind, names, code, own_comment, -i, title))

    while i < len(lines):
        line = lines[i].rstrip()
        if line.startswith("/*"):
            start = i
            while "*/" not in lines[i]:
                i += 1
            block = lines[start:i + 1]
            i += 1
            group += 1
            if line.startswith("/* ----"):
                text = comment_text(block)
                title, _, intro = text.partition(". ")
                sections.append([title.rstrip("."), intro.strip(), []])
                doc = ""
            elif start == 0:
                doc = ""  # the file's own opening lines
            else:
                doc = comment_text(block)
            continue
        i += 1
        if not line.strip():
            doc = ""
            group += 1
            continue
        m = TYPED.match(line)
        if m:
            suffix, ctype = m.groups()
            names = [f"bp_buf_{verb}_{suffix}" for verb in ("get", "set", "read", "write")]
            code = "\n".join([
                f"int bp_buf_get_{suffix}(const bp_buf *b, size_t idx, {ctype} *out);",
                f"int bp_buf_set_{suffix}(bp_buf *b, size_t idx, {ctype} v);",
                f"int bp_buf_read_{suffix}(bp_buf *b, {ctype} *out);",
                f"int bp_buf_write_{suffix}(bp_buf *b, {ctype} v);"])
            add("function", names, code, title=f"bp_buf_{{get,set,read,write}}_{suffix}")
            continue
        if line.startswith(("BP_API", "BP_INLINE_API", "BP_BUF_INLINE_API")):
            decl = [line]
            while not decl[-1].rstrip().endswith(";") and not trailing_comment(decl[-1]):
                decl.append(lines[i].rstrip())
                i += 1
            inline = not line.startswith("BP_API")
            code = "\n".join(re.sub(r"^BP_(BUF_)?(INLINE_)?API\s+(BP_MALLOCLIKE\s+)?", "", d)
                             for d in decl)
            if inline:  # inline in programs, exported by the library too
                code = "static inline " + code
            add("function", [FUNCTION.search(code).group(1)], code, trailing_comment(decl[-1]))
            continue
        m = VARIABLE.match(line)
        if m:
            code = re.sub(r"\bBP_API\s+", "", line)
            add("variable", [m.group(1)], code, trailing_comment(line))
            continue
        m = TYPEDEF_BLOCK.match(line)
        if m:
            body, i = read_block(lines, i, line)
            add("type", [m.group(2)], "\n".join(body))
            continue
        m = TYPEDEF_LINE.match(line)
        if m:
            add("type", [m.group(2)], line, trailing_comment(line))
            continue
        if line == "enum {":
            body, i = read_block(lines, i, line)
            names = re.findall(r"^\s+(BP_\w+)", "\n".join(body), re.M)
            add("constants", names, "\n".join(body), title=f"{names[0]}, {names[1]}, …")
            continue
        m = DEFINE.match(line)
        if m and m.group(1) not in PRIVATE_MACROS:
            code = line
            while code.endswith("\\"):
                code += "\n" + lines[i].rstrip()
                i += 1
            add("macro", [m.group(1)], code, trailing_comment(line))
            continue
        if line.startswith("#define"):
            while line.endswith("\\"):
                line = lines[i].rstrip()
                i += 1
    for section in sections:
        section[2] = merge(section[2])
    return sections


def merge(entries):
    """Consecutive declarations of one kind under one comment become one entry."""
    out = []
    for e in entries:
        last = out[-1] if out else None
        if last and last.group == e.group and last.kind == e.kind and e.kind != "type":
            last.names += e.names
            last.code += "\n" + e.code
            family = "bp_buf_{get,set,read,write}_"
            if last.title.startswith(family) and e.title.startswith(family):
                suffixes = last.title[len(family):].strip("{}").split(",")
                last.title = family + "{" + ",".join(suffixes + [e.title[len(family):]]) + "}"
            else:
                last.title += ", " + e.title
        else:
            out.append(e)
    return out


def anchor(title):
    return re.sub(r"[^a-z0-9_-]", "", title.lower().replace(" ", "-"))


def render(sections):
    out = ["# bufpool reference", "",
           "Every public function, type and macro of `include/bufpool.h`, with the comment",
           "that documents it there. Generated by `scripts/gen_reference.py` (`make docs`);",
           "`make test` checks that this page is current, that every symbol the shared library",
           "exports is documented here, and that every function declared is exported.", "",
           "Link with `-lbufpool` (`pkg-config --cflags --libs bufpool`, or",
           "`find_package(bufpool)` and the target `bufpool::bufpool` in CMake). While",
           "developing, link the checked library instead, which stops a double free or a",
           "pointer into a block at the call: `-lbufpool-checked` (`pkg-config bufpool-checked`,",
           "`bufpool::bufpool_checked`); `libbufpool-malloc-checked.so` is the malloc library",
           "built the same way.", "",
           "Every function's **Errors:** paragraph lists what it can report: for calls that",
           "return `int` or `ssize_t`, the negative `BP_E*` codes (`bp_strerror` names them;",
           "`BP_EIO` comes with `errno` set); for calls that return a pointer, NULL and the",
           "`errno` values; \"none\" when the call cannot fail. Misuse the library cannot",
           "return from (a bad pointer to `bp_free`) is reported on stderr and aborts.", ""]
    for title, _, entries in sections:
        if entries:
            names = ", ".join(f"`{e.title}`" for e in entries)
            out.append(f"- [{title}](#{anchor(title)}): {names}")
    out.append("")
    for title, intro, entries in sections:
        if not entries:
            continue
        out += [f"## {title}", ""]
        if intro:
            out += [intro, ""]
        for e in entries:
            out += [f"### `{e.title}`", "", "```c", e.code, "```", ""]
            doc = re.sub(r"(?m)^" + ERRORS, "**" + ERRORS + "**", e.doc)
            out += [doc or "(undocumented)", ""]
    return "\n".join(out).rstrip() + "\n"


def check(sections, library):
    problems = []
    if REFERENCE.read_text() != render(sections):
        problems.append("docs/reference.md is out of date: run make docs")
    documented, declared = set(), set()
    for _, _, entries in sections:
        for e in entries:
            if e.kind == "function":
                declared.update(e.names)
            if e.doc:
                documented.update(e.names)
            else:
                problems.append(f"undocumented in the header: {e.title}")
            if e.kind == "function" and e.doc and not re.search(r"(?m)^" + ERRORS, e.doc):
                problems.append(f"no \"{ERRORS}\" line in the header's comment: {e.title}")
    nm = subprocess.run(["nm", "-D", "--defined-only", library], check=True,
                        capture_output=True, text=True).stdout.split()
    exported = {nm[k] for k in range(2, len(nm), 3)}
    problems += [f"exported but undocumented: {n}" for n in sorted(exported - documented)]
    problems += [f"declared but not exported: {n}" for n in sorted(declared - exported)]
    for p in problems:
        print(p)
    print(f"{len(exported)} exported symbols, {len(exported & documented)} documented; "
          f"{sum(len(s[2]) for s in sections)} entries in docs/reference.md")
    return 1 if problems else 0


def main():
    sections = parse()
    if len(sys.argv) >= 3 and sys.argv[1] == "--check":
        sys.exit(check(sections, sys.argv[2]))
    if len(sys.argv) > 1:
        sys.exit(__doc__)
    sys.stdout.write(render(sections))


if __name__ == "__main__":
    main()
