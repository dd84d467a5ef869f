"""The web playground at `/`, in a real headless Chromium against a real server: the issue's flows end to end."""

from __future__ import annotations

import io
import os
import re
import shutil
import subprocess

import numpy as np
from PIL import Image

from conftest import KEY_A, b64, image_bytes
from playground.pages import BLOCKED_TERM, PHONE, REPO, expect

STATIC = REPO / "src" / "openkontext" / "api" / "static"
EXAMPLES = STATIC / "examples"  # the shipped toy-world examples, as the gallery serves them
STEPS = 4  # the tiny model: a step takes milliseconds


def pixels(data: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def test_three_step_iterative_edit_with_compare_download_and_curl(playground_server, open_page, tmp_path):
    ui = open_page(playground_server)
    page = ui.open(key=None)
    assert "placeholder" in page.page.text_content("#model-notice").lower()
    ui.shot("01-empty")

    ui.set_key(KEY_A)
    assert page.page.text_content("#key-status") == "✓ Key accepted"
    ui.upload(EXAMPLES / "sign.png")
    ui.set_steps(STEPS)
    page.page.fill("#prompt", "Change 'KELLAR' to 'SUMITH'")
    assert page.page.text_content("#submit") == "Edit image"
    assert ui.image_size("#input-image") == (256, 256)
    ui.shot("02-image-and-instruction")

    # Step 1: the result is shown next to its input and decodes.
    ui.submit()
    ui.wait_for_step(1)
    width, height = ui.image_size("#result-image")
    assert width > 0 and height > 0
    assert ui.image_size("#before-image") == (256, 256)
    assert page.page.get_attribute("#compare", "data-mode") == "side"
    ui.shot("03-first-result-side-by-side")

    # Before/after: the slider mode stacks the two; the slider moves the split.
    page.page.check("input[name='compare'][value='slider']")
    assert page.page.get_attribute("#compare", "data-mode") == "slider"
    assert page.page.is_visible("#compare-slider")
    page.page.fill("#compare-slider", "25")
    split = page.page.eval_on_selector("#compare", "el => el.style.getPropertyValue('--split')")
    assert split == "25%"
    ui.shot("04-first-result-slider")
    page.page.check("input[name='compare'][value='side']")

    # Download saves the result under the name the curl command uses.
    with page.page.expect_download() as download_info:
        page.page.click("#download")
    download = download_info.value
    assert download.suggested_filename == "openkontext-step-1.png"
    downloaded = tmp_path / "downloaded.png"
    download.save_as(downloaded)
    assert pixels(downloaded.read_bytes()).shape[:2] == (height, width)

    # The curl command, read from the page: it runs as shown and computes the same image (the seed is in it).
    page.page.click("#copy-curl")
    page.page.wait_for_selector("#curl-details[open]")
    curl = page.page.text_content("#curl")
    assert "/v1/flux-kontext-pro" in curl and "base64 -w0 'sign.png'" in curl
    assert f'"steps": {STEPS}' in curl and '"seed": ' in curl and "${BFL_API_KEY}" in curl
    assert KEY_A not in curl
    ui.shot("05-curl-command")
    run_dir = tmp_path / "curl"
    run_dir.mkdir()
    shutil.copy(EXAMPLES / "sign.png", run_dir)
    done = subprocess.run(["bash", "-c", curl], cwd=run_dir, env={**os.environ, "BFL_API_KEY": KEY_A},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "Ready", done.stdout + done.stderr
    assert np.array_equal(pixels((run_dir / "openkontext-step-1.png").read_bytes()), pixels(downloaded.read_bytes()))

    # Steps 2 and 3 continue from the previous result (the second one from the keyboard).
    page.page.click("#continue")
    assert page.page.text_content("#input-label") == "Result of step #1"
    assert page.page.evaluate("document.activeElement.id") == "prompt"
    ui.submit("Make it night.", keyboard=True)
    ui.wait_for_step(2)
    page.page.click("#continue")
    ui.submit("Remove the cone.")
    ui.wait_for_step(3)
    assert page.page.text_content("#history-count") == "(3)"
    prompts = page.page.locator(".history-prompt").all_text_contents()
    assert prompts == ["Change 'KELLAR' to 'SUMITH'", "Make it night.", "Remove the cone."]
    assert page.page.locator(".history-from").all_text_contents() == ["sign.png", "from #1", "from #2"]
    assert re.sub(r"\s+", " ", page.page.text_content("#result-title")) == "sign.png → #1 → #2 → #3"
    assert page.page.locator(".history-item.in-chain").count() == 3
    # Step 3's input really is step 2's output.
    same = page.page.evaluate("""async () => {
        const bytes = async (url) => new Uint8Array(await (await fetch(url)).arrayBuffer()).join();
        return await bytes(document.querySelector('#before-image').src)
            === await bytes(document.querySelector(".history-item[data-step='2'] img").src);
    }""")
    assert same
    ui.shot("06-three-step-chain")

    # Reopen step 1 and branch from it: step 4 comes from #1, and the chain shown is #1 → #4.
    page.page.click(".history-item[data-step='1'] button")
    assert page.page.locator("#result-meta dd").first.text_content() == "Change 'KELLAR' to 'SUMITH'"
    page.page.click("#continue")
    ui.submit("Turn this into pixel art.")
    ui.wait_for_step(4)
    assert page.page.locator(".history-item[data-step='4'] .history-from").text_content() == "from #1"
    assert page.page.locator(".history-item[data-step='4']").get_attribute("class").split().count("branch") == 1
    assert re.sub(r"\s+", " ", page.page.text_content("#result-title")) == "sign.png → #1 → #4"
    assert page.page.locator(".history-item.in-chain").count() == 2
    ui.shot("07-branch-from-step-1")


def test_gallery_example_and_text_to_image(playground_server, open_page):
    ui = open_page(playground_server)
    page = ui.open().page
    cards = page.locator(".gallery-card")
    assert cards.count() >= 5
    for capability in ("Text edit", "Character in a new scene", "Style", "Local edit", "Text to image"):
        assert page.locator(".gallery-capability", has_text=capability).count() == 1

    page.locator(".gallery-card", has_text="Character in a new scene").click()
    page.wait_for_selector("#input-image:not([hidden])")
    assert page.text_content("#input-label") == "Example: character.png"
    assert page.input_value("#prompt") == "Put this character on a beach, on the right, large."
    assert ui.image_size("#input-image") == (256, 256)
    ui.shot("08-gallery-example-picked")

    # Text to image: remove the image; the same form now generates.
    page.locator(".gallery-card", has_text="Text to image").click()
    assert page.is_hidden("#input-image")
    assert page.text_content("#submit") == "Generate image"
    ui.set_steps(STEPS)
    page.select_option("#aspect", "16:9")
    ui.submit()
    ui.wait_for_step(1)
    width, height = ui.image_size("#result-image")
    assert width > height
    assert page.is_hidden("#before-image")
    assert page.locator(".history-from").all_text_contents() == ["text to image"]
    curl = page.text_content("#curl")
    assert "input_image" not in curl and '"aspect_ratio": "16:9"' in curl
    ui.shot("09-text-to-image")
    page.emulate_media(color_scheme="dark")
    ui.shot("09b-text-to-image-dark")


def test_errors_are_shown_in_the_page(playground_server, open_page, tmp_path):
    ui = open_page(playground_server)
    page = ui.open(key=None).page

    # No key yet: the page says so before sending anything.
    ui.upload(EXAMPLES / "scene.png")
    ui.submit("Make the pink ball blue.")
    ui.message("Enter your API key first")

    # A wrong key: 403, both when saving it and when submitting.
    ui.set_key("not-a-key", expect="bad")
    ui.message("(403)")
    page.click("#message-close")
    assert page.is_hidden("#message")
    ui.submit()
    ui.message("The server rejected the API key (403)")
    ui.shot("10-error-invalid-key")

    # Bytes that are no image, under an image name: the server's 422, in words.
    ui.set_key(KEY_A)
    ui.upload({"name": "broken.png", "mimeType": "image/png", "buffer": b"\x89PNG\r\n\x1a\nnot really a picture"})
    ui.submit("Make the pink ball blue.")
    text = ui.message("The server could not use this image (422)")
    assert "input_image" in text
    assert page.is_visible("#input-no-preview")
    ui.shot("11-error-invalid-image")

    # A file that is not an image at all is refused before upload.
    ui.upload({"name": "notes.txt", "mimeType": "text/plain", "buffer": b"hello"})
    ui.message("“notes.txt” is not an image")

    # A prompt the operator's blocklist stops: accepted, then Request Moderated.
    ui.upload(EXAMPLES / "scene.png")
    ui.set_steps(STEPS)
    ui.submit(f"Paint {BLOCKED_TERM} on the sand.")
    text = ui.message("Request Moderated")
    assert "refused before running" in text and "blocked" in text
    ui.shot("12-error-request-moderated")

    # An empty instruction, and a steps value out of range (the server's 422 names the field).
    page.fill("#prompt", "   ")
    ui.submit()
    ui.message("Type an instruction first")
    ui.set_steps(151)
    ui.submit("Make the pink ball blue.")
    ui.message("The server refused the request (422): steps:")

    # None of these left a result behind.
    assert page.locator(".history-item").count() == 0
    assert page.is_visible("#empty-state")


def test_cancel_a_running_job_and_the_429(slow_server, open_page):
    ui = open_page(slow_server)
    page = ui.open().page
    ui.upload(EXAMPLES / "sign.png")
    ui.set_steps(150)
    ui.submit("Change 'KELLAR' to 'SUMITH'")

    # Running: the status names the step, the bar moves, the preview appears (every 5 steps).
    expect(page.locator("#job-status")).to_have_text(re.compile(r"Running: step [1-9]"), timeout=60_000)
    page.wait_for_selector("#job-preview-figure:not([hidden])", timeout=60_000)
    assert page.eval_on_selector("#job-progress", "bar => bar.value") > 0
    assert ui.image_size("#job-preview")[0] > 0
    assert page.is_disabled("#submit")
    ui.shot("13-running-with-preview")

    page.click("#cancel")
    ui.message("Cancelled: the task was stopped", timeout=60_000)
    assert page.is_hidden("#job") and page.is_enabled("#submit")
    assert page.locator(".history-item").count() == 0
    ui.shot("14-cancelled")
    with slow_server.client() as api:
        tasks = api.get("/v1/tasks").json()["tasks"]
        assert [task["status"] for task in tasks] == ["Cancelled"]

        # Now the page itself meets the 429: another client's task holds the key's only slot.
        held = api.post("/v1/flux-kontext-pro", json={"prompt": "x", "input_image": b64(image_bytes()), "steps": 150})
        assert held.status_code == 200
        try:
            ui.submit()
            ui.message("Too many tasks at once for this key (429)")
            ui.shot("15-error-429")
        finally:
            api.post("/v1/cancel", params={"id": held.json()["id"]})


def test_phone_width_layout(playground_server, open_page):
    ui = open_page(playground_server, viewport=PHONE)
    page = ui.open().page
    fits = "document.documentElement.scrollWidth <= window.innerWidth"
    assert page.evaluate(fits)
    ui.shot("16-phone-start")

    page.locator(".gallery-card", has_text="Text edit").click()
    ui.set_steps(STEPS)
    ui.submit()
    ui.wait_for_step(1)
    assert ui.image_size("#result-image")[0] > 0
    assert page.evaluate(fits)
    page.locator("#result").scroll_into_view_if_needed()
    ui.shot("17-phone-result-viewport", full_page=False)
    ui.shot("18-phone-result-full")


DISPATCH = """async ([kind, name]) => {
    const data = new DataTransfer();
    if (name) {
        const blob = await (await fetch(`playground/examples/${name}`)).blob();
        data.items.add(new File([blob], name, { type: "image/png" }));
    } else {
        data.setData("text/plain", "some dragged text");
    }
    const init = { dataTransfer: data, clipboardData: data, bubbles: true, cancelable: true };
    if (kind === "paste") {
        document.querySelector("#prompt").dispatchEvent(new ClipboardEvent("paste", init));
    } else {
        const zone = document.querySelector("#drop-zone");
        zone.dispatchEvent(new DragEvent("dragover", init));
        zone.dispatchEvent(new DragEvent("drop", init));
    }
}"""


def test_drop_and_paste_an_image(playground_server, open_page):
    ui = open_page(playground_server)
    page = ui.open().page
    page.evaluate(DISPATCH, ["drop", "scene.png"])
    expect(page.locator("#input-label")).to_have_text("scene.png")
    assert ui.image_size("#input-image") == (256, 256)
    page.evaluate(DISPATCH, ["paste", "character.png"])
    expect(page.locator("#input-label")).to_have_text("Pasted image")
    assert page.get_attribute("#input-image", "src").startswith("data:image/png;base64,")
    # Dragging text (into the instruction, say) is not an image drop: nothing changes, no message.
    page.evaluate(DISPATCH, ["drop", None])
    assert page.text_content("#input-label") == "Pasted image" and page.is_hidden("#message")


def test_keyboard_reaches_every_control(playground_server, open_page):
    """Tab order covers the key, the image picker, the instruction, the parameters and submit."""
    ui = open_page(playground_server)
    page = ui.open().page
    # Listen before any key press: Playwright turns on file-chooser interception when the first listener is added,
    # and a chooser opened before that is lost (a native dialog in a headless browser).
    choosers = []
    page.on("filechooser", lambda chooser: choosers.append(chooser))
    page.wait_for_timeout(200)
    seen = []
    for _ in range(25):
        page.keyboard.press("Tab")
        seen.append(page.evaluate("document.activeElement.id || document.activeElement.textContent.trim()"))
    for control in ("api-key", "key-save", "pick-image", "prompt", "submit"):
        assert control in seen, seen
    page.focus("#pick-image")
    page.keyboard.press("Enter")
    for _ in range(100):
        if choosers:
            break
        page.wait_for_timeout(100)
    assert choosers, "Enter on “Choose an image…” opened no file chooser"
    choosers[0].set_files(EXAMPLES / "sign.png")
    page.wait_for_selector("#input-image:not([hidden])")


def test_static_files_are_offline_and_packaged():
    """No CDN or other remote URL in the page's files; the examples the gallery names are all there."""
    for path in STATIC.rglob("*"):
        if path.suffix in {".html", ".css", ".js"}:
            text = path.read_text()
            assert not re.search(r"(?<![\w.])(https?:)?//[a-z0-9]", text, re.I), f"remote URL in {path.name}"
    for name in re.findall(r'image: "([\w.-]+\.png)"', (STATIC / "examples.js").read_text()):
        assert (STATIC / "examples" / name).is_file(), name


def test_curl_command_survives_any_prompt_and_file_name(playground_server, open_page, tmp_path):
    """The page's curl builder quotes prompts and file names for the shell: the server gets exactly the prompt."""
    page = open_page(playground_server).open().page
    prompt = """Write "it's $HOME" with `ls` and \\n, 100% sure! ☃ — done"""
    curl = page.evaluate(
        """async ([prompt, steps]) => {
            const { curlCommand } = await import("./playground/curl.js");
            return curlCommand({
                url: new URL("v1/flux-kontext-pro", document.baseURI).href,
                pollUrl: new URL("v1/get_result", document.baseURI).href,
                body: { prompt, steps, output_format: "jpeg", seed: 5 },
                imagePath: "it's my image.png",
                outputPath: "out $(x).jpg",
            });
        }""",
        [prompt, STEPS],
    )
    shutil.copy(EXAMPLES / "scene.png", tmp_path / "it's my image.png")
    done = subprocess.run(["bash", "-c", curl], cwd=tmp_path, env={**os.environ, "BFL_API_KEY": KEY_A},
                          capture_output=True, text=True, timeout=60)  # fmt: skip
    assert done.returncode == 0 and done.stdout.strip() == "Ready", done.stdout + done.stderr
    assert Image.open(tmp_path / "out $(x).jpg").format == "JPEG"
    with playground_server.client() as api:
        task = api.get("/v1/tasks", params={"limit": 1}).json()["tasks"][0]
    assert task["result"]["prompt"] == prompt and task["result"]["seed"] == 5
