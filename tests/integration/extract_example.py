#!/usr/bin/env python3
"""extract_example.py FILE NAME -- print the example program NAME from FILE.

The documents mark their examples so that a test compiles exactly what a
reader sees (tests/integration/it_12_readme_example.sh):

  README.md (Markdown): the fenced block between the lines
      <!-- readme-example NAME: ... -->      and      <!-- end readme-example -->
  a man page (roff): the .EX ... .EE block between the lines
      .\\" example NAME: ...                   and      .\\" end example
      with the roff escapes of the text turned back into characters
      (\\- -> -, \\e -> backslash, \\(aq -> ', \\(dq -> ", \\& -> nothing).

Exits 1 with the reason when the markers are missing, repeated or
malformed, or when the roff text holds an escape or request it does not
know (so the test fails instead of compiling something else).
"""
import re
import sys

ROFF_NAMED = {"aq": "'", "dq": '"', "rs": "\\", "ti": "~", "ha": "^", "ga": "`"}


def fail(msg):
    sys.stderr.write("extract_example.py: %s\n" % msg)
    sys.exit(1)


def one_block(lines, begin, end, path, name):
    starts = [i for i, ln in enumerate(lines) if begin(ln)]
    if len(starts) != 1:
        fail("%s: %d start markers for example %r (need exactly 1)" % (path, len(starts), name))
    s = starts[0]
    ends = [i for i in range(s + 1, len(lines)) if end(lines[i])]
    if not ends:
        fail("%s:%d: example %r has no end marker" % (path, s + 1, name))
    return s, ends[0]


def markdown(lines, path, name):
    s, e = one_block(lines, lambda ln: ln.startswith("<!-- readme-example %s:" % name),
                     lambda ln: ln.strip() == "<!-- end readme-example -->", path, name)
    body = lines[s + 1:e]
    if len(body) < 2 or not re.fullmatch(r"```[a-z]+", body[0].strip()) or body[-1].strip() != "```":
        fail("%s:%d: example %r: expected one fenced block (```c, ```js) between the markers" % (path, s + 1, name))
    return body[1:-1]


def unroff(line, path, no):
    out, i = [], 0
    while i < len(line):
        c = line[i]
        if c != "\\":
            out.append(c)
            i += 1
            continue
        nxt = line[i + 1:i + 2]
        if nxt == "-":
            out.append("-")
            i += 2
        elif nxt == "e":
            out.append("\\")
            i += 2
        elif nxt == "&":
            i += 2
        elif nxt == "(":
            code = line[i + 2:i + 4]
            if code not in ROFF_NAMED:
                fail("%s:%d: unknown roff escape \\(%s" % (path, no, code))
            out.append(ROFF_NAMED[code])
            i += 4
        else:
            fail("%s:%d: unknown roff escape \\%s" % (path, no, nxt))
    return "".join(out)


def roff(lines, path, name):
    s, e = one_block(lines, lambda ln: ln.startswith('.\\" example %s:' % name),
                     lambda ln: ln.strip() == '.\\" end example', path, name)
    body = lines[s + 1:e]
    try:
        ex = next(i for i, ln in enumerate(body) if ln.strip() == ".EX")
        ee = max(i for i, ln in enumerate(body) if ln.strip() == ".EE")
    except (StopIteration, ValueError):
        fail("%s:%d: example %r: no .EX ... .EE between the markers" % (path, s + 1, name))
    out = []
    for k in range(ex + 1, ee):
        ln = body[k]
        if re.match(r"^[.']", ln):
            fail("%s:%d: roff request inside example %r: %s" % (path, s + 2 + k, name, ln))
        out.append(unroff(ln, path, s + 2 + k))
    return out


def main():
    if len(sys.argv) != 3:
        fail("usage: extract_example.py FILE NAME")
    path, name = sys.argv[1], sys.argv[2]
    with open(path, encoding="utf-8") as f:
        lines = f.read().split("\n")
    body = roff(lines, path, name) if re.search(r"\.[1-9]$", path) else markdown(lines, path, name)
    sys.stdout.write("\n".join(body) + "\n")


main()
