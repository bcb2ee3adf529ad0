"""The Zope page of the documentation: its Python examples run, with Zope installed."""

from __future__ import annotations

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAGE = ROOT / "docs" / "howto" / "zope.md"
FENCE = re.compile(r"```python([^\n]*)\n(.*?)```", flags=re.DOTALL)


def test_the_zope_page_examples_run(tmp_path, monkeypatch):
    blocks = FENCE.findall(PAGE.read_text())
    assert blocks, "the page has no Python example"
    monkeypatch.syspath_prepend(str(tmp_path))
    namespace: dict[str, object] = {"__name__": "docs_example"}
    for options, text in blocks:
        title = re.search(r'title="([^"]+)"', options)
        if title:
            (tmp_path / title.group(1)).write_text(text)
        exec(compile(text, str(PAGE), "exec"), namespace)
    assert callable(namespace["build_report"]) and "RequestReport" in namespace
