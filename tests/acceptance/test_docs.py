"""The documentation: its Python examples run and their assertions hold, and the site builds.

Every ```python block of README.md and of docs/**/*.md runs, in order, in a fresh
directory.  A block titled with a file name (```python title="shop_jobs.py") is
also saved under that name there first, as the page asks the reader to do, so
later blocks and worker processes can import it.  A page that tells the reader
to start a worker (`python -m zasync --db URI worker` in a ```sh block) gets a
real one, started where the page starts it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import pathlib
import re
import subprocess
import sys

import pytest

pytest_plugins = ["pytester"]

ROOT = pathlib.Path(__file__).resolve().parents[2]
#: Pages whose examples need Zope: run by the Zope tier (tests/zope/test_zope_docs.py).
ZOPE_PAGES = [ROOT / "docs" / "howto" / "zope.md"]
DOCS = [
    path
    for path in [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
    if path not in ZOPE_PAGES
]

FENCE = re.compile(r"```(\w+)([^\n]*)\n(.*?)```", flags=re.DOTALL)
TITLE = re.compile(r'title="([^"]+)"')
WORKER_COMMAND = re.compile(r"^python -m zasync --db (\S+) worker\b", flags=re.MULTILINE)
DOCUMENTED_ZEO_URI = "zeo://127.0.0.1:8100"
TESTING_PAGE = ROOT / "docs" / "howto" / "test-jobs.md"


@dataclasses.dataclass(frozen=True)
class Block:
    """One fenced block of a page: its language, the rest of its opening line, its text."""

    language: str
    options: str
    text: str

    @property
    def title(self) -> str | None:
        found = TITLE.search(self.options)
        return found.group(1) if found else None


def blocks(path: pathlib.Path) -> list[Block]:
    return [Block(*found) for found in FENCE.findall(path.read_text())]


def python_blocks(path: pathlib.Path) -> list[str]:
    return [block.text for block in blocks(path) if block.language == "python"]


def page_id(path: pathlib.Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("path", [p for p in DOCS if python_blocks(p)], ids=page_id)
def test_examples_run(path, capsys, tmp_path, monkeypatch):
    from workers import WorkerProcess, ZEOServer, free_port

    page = blocks(path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    saved_modules: list[str] = []
    # One namespace for the page: its blocks are steps that build on each other.
    namespace = {"__name__": "docs_example"}
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [sys.modules.pop(name, None) for name in saved_modules])
        if any(DOCUMENTED_ZEO_URI in block.text for block in page):
            # The examples name the usual address; run them against a real server on a free one.
            server = ZEOServer(tmp_path / "zeo.fs", free_port(), tmp_path / "zeo.log")
            server.start()
            stack.callback(server.stop)
            page = [
                dataclasses.replace(block, text=block.text.replace(DOCUMENTED_ZEO_URI, server.uri))
                for block in page
            ]
        for block in page:
            if block.language == "sh":
                for uri in WORKER_COMMAND.findall(block.text):
                    worker = WorkerProcess(uri, tmp_path / "worker.log")
                    stack.callback(worker.stop)
                    # As the reader does: wait for the worker to say it serves (it has
                    # set up the queues), or the page's first commit may race its setup.
                    worker.wait_for_log("worker ")
            if block.language != "python":
                continue
            if block.title is not None:
                (tmp_path / block.title).write_text(block.text)
                saved_modules.append(pathlib.Path(block.title).stem)
            exec(compile(block.text, page_id(path), "exec"), namespace)


def test_the_tutorial_runs_a_worker_of_its_own():
    tutorial = blocks(ROOT / "docs" / "tutorial" / "first-job.md")
    commands = [
        uri
        for block in tutorial
        if block.language == "sh"
        for uri in WORKER_COMMAND.findall(block.text)
    ]
    assert commands == ["file://var/tutorial/Data.fs"]
    assert [block.title for block in tutorial if block.title] == ["shop_jobs.py"]


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


def test_the_testing_example_passes_under_pytest(pytester):
    """The pytest example of "Test your jobs" is a real test file: pytest runs it, and it passes."""
    examples = [block for block in blocks(TESTING_PAGE) if (block.title or "").startswith("test_")]
    assert examples, "no titled test file in the page"
    tests = 0
    for block in examples:
        pytester.makepyfile(**{pathlib.Path(block.title).stem: block.text})
        tests += len(re.findall(r"^def test_", block.text, flags=re.MULTILINE))
    # A subprocess: the example's dispatcher and database are its own, as in a user's project.
    result = pytester.runpytest_subprocess("-p", "no:cacheprovider", "-q")
    result.assert_outcomes(passed=tests)


def test_the_site_builds_without_a_warning(tmp_path):
    """`mkdocs build --strict`: every link, the CLI reference and the API reference hold."""
    site = tmp_path / "site"
    done = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(site)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert done.returncode == 0, done.stderr
    assert (site / "index.html").is_file()
    cli = (site / "reference" / "cli.html").read_text()
    # mkdocs-click documents every sub-command of the click group.
    from zasync.cli import main

    for name in main.commands:
        assert f'id="zasync-{name}"' in cli, name
    api = (site / "reference" / "api" / "zasync.html").read_text()
    assert 'id="zasync.Job"' in api
