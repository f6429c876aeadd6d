"""logfmt_check.py LOG -- exit 0 if every line of LOG is one auditq logfmt
record:  ts=YYYY-MM-DDTHH:MM:SS.mmmZ level=L msg="..." [key=value ...]
where a value is a bare word (no blank, '=' or '"') or a double-quoted
string with backslash escapes. Otherwise print the offending lines, exit 1.
Used by the integration tests on the worker's stderr."""
import re
import sys

VALUE = r'(?:"(?:[^"\\]|\\.)*"|[^\s="]+)'
LINE = re.compile(r'ts=\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z level=(?:error|warn|info|debug) '
                  r'msg="(?:[^"\\]|\\.)*"(?: [a-z_][a-z0-9_]*=' + VALUE + r')*')

lines = open(sys.argv[1], encoding="utf-8").read().splitlines()
bad = [ln for ln in lines if not LINE.fullmatch(ln)]
if bad:
    print("FAIL: %d of %d lines of %s are not logfmt, e.g.:" % (len(bad), len(lines), sys.argv[1]))
    print("\n".join(bad[:5]))
    sys.exit(1)
print("all %d lines of %s are logfmt" % (len(lines), sys.argv[1].rsplit("/", 1)[-1]))
