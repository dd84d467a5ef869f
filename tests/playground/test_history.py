"""The playground's history is kept in the browser (IndexedDB): it survives a reload, "Clear history" empties it, it
keeps its bounds (steps and bytes), and a full storage is a note in the page, never a lost step or a script error."""

from __future__ import annotations

import re

from playground.pages import REPO, expect

EXAMPLES = REPO / "src" / "openkontext" / "api" / "static" / "examples"
STEPS = 4  # the tiny model: a step takes milliseconds

DIGESTS = """async (selector) => Promise.all([...document.querySelectorAll(selector)].map(async (img) => {
    const bytes = await (await fetch(img.src)).arrayBuffer();
    const digest = new Uint8Array(await crypto.subtle.digest("SHA-256", bytes));
    return [...digest].map((byte) => byte.toString(16).padStart(2, "0")).join("");
}))"""

USAGE = """async () => {
    const { openHistory } = await import("./playground/history-store.js");
    return (await openHistory()).usage();
}"""


def reload(ui) -> None:
    ui.page.reload()
    ui.page.wait_for_selector("body[data-ready='true']")


def shown_steps(page) -> list[int]:
    return [int(n) for n in page.locator(".history-item").evaluate_all("items => items.map(i => i.dataset.step)")]


def digests(page, selector: str) -> list[str]:
    return page.evaluate(DIGESTS, selector)


def chain(page) -> str:
    return re.sub(r"\s+", " ", page.text_content("#result-title"))


def text_to_image(ui, n: int) -> None:
    ui.page.locator(".gallery-card", has_text="Text to image").click()
    ui.set_steps(STEPS)
    ui.submit()
    ui.wait_for_step(n)


def test_history_survives_a_reload_and_clear_history_empties_it(playground_server, open_page):
    ui = open_page(playground_server)
    page = ui.open().page
    assert page.is_hidden("#history-clear")
    assert "Kept in this browser: the last 50 steps" in page.text_content("#history-note")
    ui.upload(EXAMPLES / "sign.png")
    ui.set_steps(STEPS)
    ui.submit("Change 'KELLAR' to 'SUMITH'")
    ui.wait_for_step(1)
    page.click("#continue")
    ui.submit("Make it night.")
    ui.wait_for_step(2)
    assert page.is_visible("#history-clear")
    images = digests(page, ".history-item img")
    upload = digests(page, "#input-image")  # the input of step 2 is step 1's result
    assert upload == images[:1]

    reload(ui)
    assert page.text_content("#history-count") == "(2)"
    assert shown_steps(page) == [1, 2]
    assert page.locator(".history-prompt").all_text_contents() == ["Change 'KELLAR' to 'SUMITH'", "Make it night."]
    assert page.locator(".history-from").all_text_contents() == ["sign.png", "from #1"]
    assert digests(page, ".history-item img") == images  # the very images, not the server's (expiring) URLs
    assert chain(page) == "sign.png → #1 → #2"  # the newest step is open again, with its input
    assert digests(page, "#before-image") == images[:1]
    assert ui.image_size("#result-image")[0] > 0
    page.click(".history-item[data-step='1'] button")
    assert ui.image_size("#before-image") == (256, 256)  # step 1's input: the uploaded sign.png, kept too
    ui.shot("19-history-after-reload")

    # A kept step continues like a fresh one: its image is sent as the next input.
    page.click(".history-item[data-step='2'] button")
    page.click("#continue")
    ui.submit("Remove the cone.")
    ui.wait_for_step(3)
    assert page.locator(".history-from").all_text_contents() == ["sign.png", "from #1", "from #2"]
    assert digests(page, "#before-image") == images[1:2]

    # Clear history asks first; dismissed, nothing changes.
    page.once("dialog", lambda dialog: dialog.dismiss())
    page.click("#history-clear")
    assert shown_steps(page) == [1, 2, 3]
    page.once("dialog", lambda dialog: dialog.accept())
    page.click("#history-clear")
    expect(page.locator(".history-item")).to_have_count(0)
    assert page.is_hidden("#history-clear") and page.is_visible("#history-empty")
    assert page.is_visible("#empty-state") and page.is_hidden("#result")
    assert page.text_content("#history-count") == ""
    assert page.text_content("#input-label") == "Result of step #2"  # the input stays, no longer a step's child
    assert page.text_content("#chain-from") == ""
    assert page.evaluate(USAGE) == {"steps": 0, "images": 0, "bytes": 0}

    reload(ui)
    assert shown_steps(page) == [] and page.is_visible("#history-empty") and page.is_visible("#empty-state")
    assert page.text_content("#key-status") in ("Checking…", "✓ Key accepted")  # the key is not history
    text_to_image(ui, 1)  # numbering starts again
    assert shown_steps(page) == [1]


SEED = """async (count) => {
    const { openHistory } = await import("./playground/history-store.js");
    const store = await openHistory();
    const blob = await (await fetch("playground/examples/sign.png")).blob();
    for (let n = 1; n <= count; n++) {
        const body = { prompt: `seeded ${n}`, steps: 4, output_format: "png", seed: n };
        const record = { n, taskId: `seeded-${n}`, body, prompt: body.prompt, seed: n, duration: 0.01, input: null };
        await store.add(record, { result: blob, input: null });
    }
    return store.usage();
}"""


def test_history_keeps_the_last_50_steps(playground_server, open_page):
    ui = open_page(playground_server)
    page = ui.open().page
    seeded = page.evaluate(SEED, 50)
    assert seeded["steps"] == 50 and seeded["images"] == 50

    reload(ui)
    assert page.text_content("#history-count") == "(50)"
    assert shown_steps(page) == list(range(1, 51))
    assert ui.image_size(".history-item[data-step='1'] img") == (256, 256)

    text_to_image(ui, 51)  # one more: the oldest goes, in the page and in the browser's storage
    assert page.text_content("#history-count") == "(50)"
    assert shown_steps(page) == list(range(2, 52))
    usage = page.evaluate(USAGE)
    assert usage["steps"] == 50 and usage["images"] == 50  # the dropped step's image went with it

    reload(ui)
    assert shown_steps(page) == list(range(2, 52))
    assert chain(page) == "text to image → #51"


BOUNDS = """async () => {
    const { openHistory } = await import("./playground/history-store.js");
    const store = await openHistory("openkontext-test-bounds");
    const blob = (size, fill) => new Blob([new Uint8Array(size).fill(fill)], { type: "image/png" });
    const limits = { steps: 3, bytes: 2500 };
    const record = (n, input = null) => ({ n, taskId: `t${n}`, body: { prompt: `p${n}`, output_format: "png" },
                                           prompt: `p${n}`, seed: n, duration: 0, input });
    const numbers = async () => (await store.load()).map((step) => step.n);
    const log = {};
    // #1 from an upload (1000 + 500 bytes); #2 from #1's result, which is stored once for both.
    const first = await store.add(record(1, { label: "up.png", path: "up.png", parent: null, image: null }),
                                  { result: blob(1000, 1), input: blob(500, 2) }, limits);
    await store.add(record(2, { label: "Result of step #1", path: "s1.png", parent: 1, image: first.resultImage }),
                    { result: blob(400, 3), input: blob(1000, 1) }, limits);
    log.shared = await store.usage();
    // #3 takes the images to 2600 bytes: #1 goes, and its upload with it; its result stays as #2's input.
    log.third = (await store.add(record(3), { result: blob(700, 4), input: null }, limits)).dropped;
    log.afterThird = [await numbers(), await store.usage()];
    // A step over the byte bound on its own is refused, and nothing is dropped for it.
    try {
        await store.add(record(4), { result: blob(3000, 5), input: null }, limits);
    } catch (error) {
        log.refused = [error.name, error.message];
    }
    log.afterRefused = [await numbers(), await store.usage()];
    // The step bound: a fourth step drops the oldest.
    await store.add(record(5), { result: blob(10, 6), input: null }, limits);
    log.sixth = (await store.add(record(6), { result: blob(10, 7), input: null }, limits)).dropped;
    log.afterSixth = [await numbers(), await store.usage()];
    // A number another tab already used is not overwritten: the step takes the next free one.
    log.renumbered = (await store.add(record(2), { result: blob(10, 8), input: null }, limits)).n;
    await store.clear();
    log.cleared = await store.usage();
    return log;
}"""


def test_history_store_keeps_its_byte_and_step_bounds(playground_server, open_page):
    page = open_page(playground_server).open().page
    log = page.evaluate(BOUNDS)
    assert log["shared"] == {"steps": 2, "images": 3, "bytes": 1900}
    assert log["third"] == [1]
    assert log["afterThird"] == [[2, 3], {"steps": 2, "images": 3, "bytes": 2100}]
    assert log["refused"][0] == "HistoryTooLarge" and "more than the history keeps" in log["refused"][1]
    assert log["afterRefused"] == log["afterThird"]
    assert log["sixth"] == [2]
    assert log["afterSixth"] == [[3, 5, 6], {"steps": 3, "images": 3, "bytes": 720}]
    assert log["renumbered"] == 7
    assert log["cleared"] == {"steps": 0, "images": 0, "bytes": 0}


# Every IndexedDB write of an image fails with the browser's QuotaExceededError while window.quotaFailures > 0.
QUOTA = """(() => {
    const add = IDBObjectStore.prototype.add;
    IDBObjectStore.prototype.add = function (...args) {
        if (this.name === "images" && window.quotaFailures > 0) {
            window.quotaFailures -= 1;
            throw new DOMException("The quota has been exceeded.", "QuotaExceededError");
        }
        return add.apply(this, args);
    };
})();"""


def test_full_browser_storage_is_a_note_not_an_error(playground_server, open_page):
    ui = open_page(playground_server)
    ui.page.add_init_script(QUOTA)
    page = ui.open().page

    # Nothing can be stored: the step is shown, and the page says it is not kept.
    page.evaluate("window.quotaFailures = 1000")
    text_to_image(ui, 1)
    expect(page.locator("#history-note")).to_contain_text("Step #1 is shown but not kept in this browser")
    assert page.get_attribute("#history-note", "data-kind") == "warn" and page.is_hidden("#message")
    assert shown_steps(page) == [1]
    ui.shot("20-history-storage-full")
    reload(ui)
    assert shown_steps(page) == []

    # Full once: the older steps are dropped to make room, and the new one is kept.
    text_to_image(ui, 1)
    page.evaluate("window.quotaFailures = 1")
    text_to_image(ui, 2)
    expect(page.locator("#history-note")).to_contain_text("storage was full: older steps were dropped")
    assert shown_steps(page) == [1, 2]  # this visit still shows both
    reload(ui)
    assert shown_steps(page) == [2]
    assert page.get_attribute("#history-note", "data-kind") == ""
