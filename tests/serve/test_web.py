"""The web demo end to end: headless Chromium (Debian's, through Playwright) against a real uvicorn server."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

from tests.serve.conftest import live_server, scripted_pipeline, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]

pytestmark = [
    pytest.mark.skipif(
        importlib.util.find_spec("playwright") is None,
        reason="the playwright package is not installed (pip install playwright)",
    ),
    pytest.mark.skipif(
        not CHROMIUM.exists() and shutil.which("chromium") is None,
        reason="Debian's chromium is not installed (apt-get install -y chromium)",
    ),
]


@pytest.fixture(scope="module")
def browser():
    from playwright.sync_api import sync_playwright

    executable = str(CHROMIUM) if CHROMIUM.exists() else shutil.which("chromium")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=executable, headless=True, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


def open_page(browser, url: str):
    page = browser.new_page()
    requests, errors = [], []
    page.on("request", lambda request: requests.append(request.url))
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(url + "/")
    return page, requests, errors


def test_upload_an_image_ask_and_watch_the_answer_stream_in(browser, pipeline, image_reference):
    image, question, max_tokens, expected = image_reference
    with live_server(pipeline) as server:
        page, requests, errors = open_page(browser, server.url)
        page.wait_for_function("document.getElementById('model').textContent === 'tiny'")
        page.set_input_files("#image", str(image))
        page.wait_for_selector("#preview", state="visible", timeout=10_000)  # shown once the file is read
        page.fill("#question", question)
        page.click("summary")
        page.fill("#max-tokens", str(max_tokens))
        page.click("#send")
        page.wait_for_selector("#status[data-state=done]", timeout=60_000)
        answer = page.text_content("#answer")
        chunks = int(page.get_attribute("#answer", "data-chunks"))
        status = page.text_content("#status")
        page.close()
    assert answer.strip() == expected != ""
    assert chunks > 1  # shown piece by piece as the events arrived
    assert "done (length)" in status and f"{max_tokens} generated" in status
    assert errors == []
    assert requests and all(url.removeprefix("blob:").startswith(server.url) for url in requests)  # no other hosts


def test_stop_button_ends_the_answer_and_the_server_stops_generating(browser, pipeline):
    pipe = scripted_pipeline(pipeline, "and more", delay=0.01, repeat=True)
    with live_server(pipe, max_tokens_cap=100_000) as server:
        page, _, errors = open_page(browser, server.url)
        page.fill("#question", "Tell me everything")
        page.click("summary")
        page.fill("#max-tokens", "100000")
        page.click("#send")
        page.wait_for_function("Number(document.getElementById('answer').dataset.chunks) >= 5")
        assert page.is_enabled("#stop") and not page.is_enabled("#send")
        page.click("#stop")
        page.wait_for_selector("#status[data-state=done]")
        assert page.text_content("#status") == "stopped" and "and more" in page.text_content("#answer")
        assert wait_until(lambda: pipe.model.closed == 1 and server.app.state.admission.in_flight == 0)
        page.close()
    assert errors == []


def test_the_page_asks_for_a_key_when_the_server_needs_one(browser, pipeline):
    pipe = scripted_pipeline(pipeline, "keyed answer")
    with live_server(pipe, api_key="k3y") as server:
        page, _, _ = open_page(browser, server.url)
        page.wait_for_function("document.getElementById('model').textContent.includes('API key')")
        page.fill("#question", "hello")
        page.click("#send")
        page.wait_for_selector("#status[data-state=error]")
        assert "401" in page.text_content("#status")
        page.fill("#api-key", "k3y")
        page.click("#send")
        page.wait_for_selector("#status[data-state=done]")
        assert page.text_content("#answer") == "keyed answer"
        page.close()
