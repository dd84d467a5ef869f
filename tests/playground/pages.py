"""The playground page as the tests drive it, and the constants they share."""

from __future__ import annotations

import re
from pathlib import Path
from urllib.parse import urlsplit

try:
    from playwright.sync_api import expect
except ImportError as missing:  # a clear failure, never a skip
    raise ImportError("Playwright is missing: install the test extra (pip install -e '.[test]')") from missing

from conftest import KEY_A, ServerProcess

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts" / "playground"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-quic",
]
BLOCKED_TERM = "forbiddenword"
LAPTOP = {"width": 1280, "height": 900}
PHONE = {"width": 390, "height": 844}


class Playground:
    """One browser page on the playground, recording every request it makes and every script error."""

    def __init__(self, page, server: ServerProcess, artifacts: Path):
        self.page = page
        self.server = server
        self.artifacts = artifacts
        self.requests: list[str] = []
        self.errors: list[str] = []
        page.on("request", lambda request: self.requests.append(request.url))
        page.on("pageerror", lambda error: self.errors.append(str(error)))
        page.set_default_timeout(30_000)

    # --- actions ----------------------------------------------------------------------------------------------

    def open(self, key: str | None = KEY_A) -> Playground:
        self.page.goto(self.server.url + "/")
        self.page.wait_for_selector("body[data-ready='true']")
        if key is not None:
            self.set_key(key)
        return self

    def set_key(self, key: str, expect: str = "ok") -> None:
        self.page.fill("#api-key", key)
        self.page.click("#key-save")
        self.page.wait_for_selector(f"#key-status[data-state='{expect}']")

    def upload(self, path: Path | str | dict) -> None:
        self.page.set_input_files("#file-input", path)

    def set_steps(self, steps: int) -> None:
        if not self.page.locator("#parameters").evaluate("details => details.open"):
            self.page.click("#parameters summary")
        self.page.fill("#steps", str(steps))

    def submit(self, prompt: str | None = None, *, keyboard: bool = False) -> None:
        if prompt is not None:
            self.page.fill("#prompt", prompt)
        if keyboard:
            self.page.focus("#prompt")
            self.page.keyboard.press("Control+Enter")
        else:
            self.page.click("#submit")

    def wait_for_step(self, n: int, timeout: float = 30_000) -> None:
        self.page.wait_for_selector(f".history-item[data-step='{n}']", timeout=timeout)
        self.page.wait_for_selector("#result:not([hidden])")

    def message(self, containing: str | re.Pattern, timeout: float = 30_000) -> str:
        """Wait until the page's message shows ``containing``; return the whole message."""
        expect(self.page.locator("#message:not([hidden]) #message-text")).to_contain_text(containing, timeout=timeout)
        return self.page.text_content("#message-text")

    def shot(self, name: str, *, full_page: bool = True) -> Path:
        path = self.artifacts / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=full_page)
        return path

    # --- checks -----------------------------------------------------------------------------------------------

    def image_size(self, selector: str) -> tuple[int, int]:
        """The decoded size of an <img> (decode() rejects an image the browser cannot decode)."""
        return tuple(self.page.eval_on_selector(
            selector, "async img => { await img.decode(); return [img.naturalWidth, img.naturalHeight]; }"
        ))  # fmt: skip

    def foreign_requests(self) -> list[str]:
        """Requests to anywhere but this server (the page must work offline), or to non-public routes."""
        allowed = ("/", "/health", "/v1/tasks", "/v1/flux-kontext-pro", "/v1/get_result", "/v1/cancel")
        bad = []
        for url in self.requests:
            if url.startswith(("data:", "blob:")):
                continue
            parts = urlsplit(url)
            origin = f"{parts.scheme}://{parts.netloc}"
            public = parts.path in allowed or parts.path.startswith(("/playground/", "/results/"))
            if origin != self.server.url or not public:
                bad.append(url)
        return bad
