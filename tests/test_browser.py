"""The web UI in headless Chromium against a real uvicorn server on 127.0.0.1.

Needs Debian's `chromium` and `chromium-driver` (the CI script installs them); skipped only
when /usr/bin/chromium is missing. The background-networking flags keep Chromium from trying
to reach Google's services, which a closed network turns into long stalls.
"""

from collections.abc import Iterator
from pathlib import Path

import pytest

from distillqa.app.serve import create_app
from tests.helpers import HARBOUR, running, tiny_document, tiny_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"
MARKUP = "<b>Lamp</b> & <script>window.injected = 1</script>"
# One document, one passage: every answer quotes this passage, markup included.
DOCUMENT = tiny_document("harbour", "harbour.txt", HARBOUR + f" The lamp room sign reads {MARKUP}.")

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def server_url(tmp_path_factory) -> Iterator[str]:
    """uvicorn serving a tiny run in a background thread, on a socket bound to a free port."""
    run_dir = tiny_run(tmp_path_factory.mktemp("browser") / "run", documents=[DOCUMENT], passage_tokens=200)
    with running(create_app(run_dir)) as url:
        yield url


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_ask_in_the_browser(server_url: str, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server_url + "/")
    assert browser.title == "distillqa"
    wait.until(lambda d: "1 documents" in d.find_element(By.ID, "status").text)

    box = browser.find_element(By.ID, "question")
    box.send_keys("Who built the harbour light?", Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#answers .answer .citation"))

    answers = browser.find_elements(By.CSS_SELECTOR, "#answers .answer")
    assert 1 <= len(answers) <= 3  # the form's default: 3 answers
    for answer in answers:
        text = answer.find_element(By.CLASS_NAME, "answer-text").text
        assert text and answer.find_element(By.TAG_NAME, "mark").text == text
        assert answer.find_element(By.CLASS_NAME, "citation").text in ("harbour.txt, page 1", "harbour.txt, page 2")
        assert answer.find_element(By.CLASS_NAME, "score").text.startswith("score 0.")
        passage = answer.find_element(By.CLASS_NAME, "passage")
        assert "Margaret Hale" in passage.text
        # Document text is shown as text: no <b> or <script> element came out of it.
        assert MARKUP in passage.text
        assert not passage.find_elements(By.CSS_SELECTOR, "b, script")
    assert browser.execute_script("return window.injected === undefined")

    # A blank question is caught in the page; the answers are left alone.
    box.clear()
    box.send_keys("   ")
    browser.find_element(By.ID, "ask-button").click()
    wait.until(lambda d: d.find_element(By.ID, "message").text == "Type a question first.")
    assert browser.find_elements(By.CSS_SELECTOR, "#answers .answer")


def test_api_docs_render_offline(server_url: str, browser):
    """Swagger UI comes from this server, so /docs renders with no network."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    browser.get(server_url + "/docs")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, ".swagger-ui .info .title"))
    assert "distillqa" in browser.find_element(By.CSS_SELECTOR, ".swagger-ui .info .title").text
    paths = {e.text for e in browser.find_elements(By.CSS_SELECTOR, ".opblock-summary-path")}
    assert {"/ask", "/health"} <= paths
