"""The playground's copy of the wire statuses (static/statuses.js) is the service's vocabulary, name for name."""

from __future__ import annotations

import re

from openkontext.api.app import PLAYGROUND_DIR
from openkontext.statuses import TaskStatus


def test_the_playground_knows_exactly_the_services_statuses():
    source = (PLAYGROUND_DIR / "statuses.js").read_text()
    body = re.search(r"TaskStatus = Object\.freeze\(\{(.*?)\}\)", source, re.S).group(1)
    pairs = dict(re.findall(r'^\s*([A-Z_]+): "([^"]+)",?$', body, re.M))
    assert pairs == {status.name: status.value for status in TaskStatus}


def test_the_playground_spells_no_status_itself():
    for script in PLAYGROUND_DIR.glob("*.js"):
        if script.name == "statuses.js":
            continue
        quoted = set(re.findall(r"[\"'`]([^\"'`]+)[\"'`]", script.read_text()))
        assert not quoted & {status.value for status in TaskStatus}, script.name
