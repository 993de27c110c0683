"""The documentation matches the code: every setting is documented with its variable and default."""
import os
import re

from getbatch.config import SETTINGS, format_value

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_every_setting_is_documented_with_its_default():
    with open(os.path.join(ROOT, "docs", "configuration.md")) as f:
        doc = f.read()
    rows = dict(re.findall(r"^\| `(\w+)` \| `GETBATCH_\w+` \| ([^|]*) \|", doc, re.M))
    assert set(rows) == {s.name for s in SETTINGS}
    for s in SETTINGS:
        assert f"| `{s.name}` | `{s.env}` |" in doc
        if not callable(s.default):
            assert rows[s.name].strip() == format_value(s.name, s.default), s.name


def test_readme_links_exist():
    with open(os.path.join(ROOT, "README.md")) as f:
        readme = f.read()
    for target in re.findall(r"\]\(([^)#:]+)\)", readme):
        assert os.path.exists(os.path.join(ROOT, target)), target
