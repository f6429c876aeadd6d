"""README.md's "Python" example runs as printed (Redis URL and spool path
pointed at the test's) and its two events land."""
import os
import re

from conftest import wait_rows

README = os.path.join(os.path.dirname(__file__), "..", "..", "..", "README.md")


def test_readme_example_runs(redis_url, tmp_path, capsys):
    text = open(README, encoding="utf-8").read()
    section = text[text.index("\n## Python\n"):]
    code = re.search(r"```python\n(.*?)```", section, re.S).group(1)
    assert 'redis_url="redis://127.0.0.1:6379"' in code and "/var/lib/myapp/auditq.spool" in code
    code = code.replace('redis_url="redis://127.0.0.1:6379"', f"redis_url={redis_url!r}")
    code = code.replace("/var/lib/myapp/auditq.spool", str(tmp_path / "auditq.spool"))
    exec(compile(code, "README.md (Python)", "exec"), {"__name__": "readme"})
    out = capsys.readouterr().out
    assert "'queued_async': 1" in out and "'sent_sync': 1" in out
    wait_rows("tenant_id = 'acme' AND actor_id = 'u-42' AND entity_id = 'p-7' AND action = 'page.update' "
              "AND changes = '{\"title\": [\"Old\", \"New\"]}'::jsonb", 1)
