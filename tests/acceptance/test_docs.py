"""The Python examples in README.md and docs/ run and their assertions hold."""

from __future__ import annotations

import contextlib
import pathlib
import re

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
DOCS = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


def python_blocks(path: pathlib.Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(), flags=re.DOTALL)


DOCUMENTED_ZEO_URI = "zeo://127.0.0.1:8100"


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=lambda p: p.name)
def test_examples_run(path, capsys, tmp_path):
    blocks = python_blocks(path)
    with contextlib.ExitStack() as stack:
        if any(DOCUMENTED_ZEO_URI in block for block in blocks):
            # The examples name the usual address; run them against a real server on a free one.
            from workers import ZEOServer, free_port

            server = ZEOServer(tmp_path / "zeo.fs", free_port(), tmp_path / "zeo.log")
            server.start()
            stack.callback(server.stop)
            blocks = [block.replace(DOCUMENTED_ZEO_URI, server.uri) for block in blocks]
        for block in blocks:
            exec(compile(block, str(path), "exec"), {"__name__": "docs_example"})


def test_readme_example_prints_the_failure(capsys):
    (block,) = python_blocks(ROOT / "README.md")
    exec(compile(block, "README.md", "exec"), {"__name__": "docs_example"})
    assert capsys.readouterr().out.strip() == "ZeroDivisionError: division by zero"


def test_readme_has_a_two_command_quick_start():
    text = (ROOT / "README.md").read_text()
    quick_start = text.split("## Quick start", 1)[1].split("##", 1)[0]
    (commands,) = re.findall(r"```sh\n(.*?)```", quick_start, flags=re.DOTALL)
    assert [line.split("#")[0].strip() for line in commands.strip().splitlines()] == [
        "make demo",
        "make test",
    ]
