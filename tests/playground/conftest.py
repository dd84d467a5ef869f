"""Fixtures for the playground's end-to-end tests: Debian's Chromium driven by Playwright, real servers, screenshots.

The browser is required, never skipped: `bash scripts/install-system-deps.sh` installs `chromium` and the `test`
extra installs Playwright. Screenshots of every state go to test-artifacts/playground/ (gitignored).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from conftest import ServerProcess
from playground.pages import ARTIFACTS, BLOCKED_TERM, CHROMIUM_ARGS, LAPTOP, Playground


def chromium_path() -> str:
    candidates = [os.environ.get("OPENKONTEXT_CHROMIUM"), "/usr/bin/chromium", shutil.which("chromium")]
    for candidate in candidates:
        if candidate and Path(candidate).exists():
            return candidate
    pytest.fail(
        "Chromium is missing: the playground tests drive Debian's `chromium` with Playwright. Install it with "
        "`bash scripts/install-system-deps.sh` (or `apt-get install chromium`), or point OPENKONTEXT_CHROMIUM at a "
        "Chromium binary.",
        pytrace=False,
    )


@pytest.fixture(scope="session")
def browser():
    from playwright.sync_api import sync_playwright  # pages.py already failed clearly if it is missing

    executable = chromium_path()
    with sync_playwright() as playwright:
        instance = playwright.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield instance
        instance.close()


@pytest.fixture(scope="module")
def playground_server(tmp_path_factory):
    """The tiny model (fast), with an operator blocklist for the moderation path."""
    instance = ServerProcess(tmp_path_factory.mktemp("playground"), blocked_terms=BLOCKED_TERM).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="module")
def slow_server(tmp_path_factory):
    """The random placeholder model (150 steps take many seconds on a CPU), one active task per key: cancel, 429."""
    instance = ServerProcess(tmp_path_factory.mktemp("playground-slow"), model="random", max_active_tasks=1).start()
    yield instance
    instance.stop()


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    for stale in ARTIFACTS.glob("*.png"):
        stale.unlink()
    return ARTIFACTS


@pytest.fixture
def open_page(browser, artifacts):
    """Factory: ``open_page(server, viewport=LAPTOP)`` → a Playground in a fresh browser context (empty storage)."""
    contexts = []
    pages: list[Playground] = []

    def make(server: ServerProcess, viewport: dict = LAPTOP) -> Playground:
        context = browser.new_context(viewport=viewport, device_scale_factor=1, accept_downloads=True)
        contexts.append(context)
        playground = Playground(context.new_page(), server, artifacts)
        pages.append(playground)
        return playground

    yield make
    for context in contexts:
        context.close()
    for playground in pages:
        assert not playground.errors, f"script errors in the page: {playground.errors}"
        assert not playground.foreign_requests(), f"requests outside the public API: {playground.foreign_requests()}"
