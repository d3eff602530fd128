"""SECURITY.md maps every threat to a test: each test it names must exist."""

from __future__ import annotations

import re

from tests.conftest import ROOT


def test_every_test_named_in_security_md_exists():
    text = (ROOT / "SECURITY.md").read_text()
    named, current = [], None
    for file, name in re.findall(r"`(?:tests/)?((?:\w+/)?test_\w+\.py)?(?:::(\w+))?`", text):
        current = file or current
        named.append((current, name))
    assert len(named) > 40
    missing = []
    for file, name in named:
        source = (ROOT / "tests" / file).read_text()
        if name and not re.search(rf"^def {name}\(", source, re.M):
            missing.append(f"{file}::{name}")
    assert not missing, missing
