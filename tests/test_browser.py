"""The web UI in headless Chromium against a real uvicorn server on 127.0.0.1.

Needs Debian's `chromium` and `chromium-driver` (the CI script installs them); skipped only
when /usr/bin/chromium is missing. The background-networking flags keep Chromium from trying
to reach Google's services, which a closed network turns into long stalls.
"""

import re
from collections.abc import Iterator
from pathlib import Path

import pytest

from distillqa.app.serve import create_app
from distillqa.config import load_config
from distillqa.io import write_json
from distillqa.layout import FEEDBACK, TRAIN, VALIDATION
from distillqa.pipeline import STAGE_BY_NAME, Run
from distillqa.student.feedback import read_feedback
from distillqa.student.reader import load_reader
from tests.helpers import HARBOUR, running, tiny_bert, tiny_document, tiny_run

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = "/usr/bin/chromedriver"
MARKUP = "<b>Lamp</b> & <script>window.injected = 1</script>"
# One document, one passage: every answer quotes this passage, markup included. The emoji, one
# character for the server and two UTF-16 units for JavaScript, shifts every offset after it.
DOCUMENT = tiny_document("harbour", "harbour.txt", "\U0001F3D7 " + HARBOUR + f" The lamp room sign reads {MARKUP}.")
QUESTION = "Who built the harbour light?"

pytestmark = pytest.mark.skipif(not CHROMIUM.exists(), reason="needs /usr/bin/chromium (apt-get install chromium chromium-driver)")


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    return tiny_run(tmp_path_factory.mktemp("browser") / "run", documents=[DOCUMENT], passage_tokens=200)


@pytest.fixture(scope="module")
def server_url(run_dir: Path) -> Iterator[str]:
    """uvicorn serving a tiny run in a background thread, on a socket bound to a free port."""
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


def ask(browser, server_url: str, question: str):
    """Open the page, ask `question`, wait for the answers and unfold them if they came as best
    guesses (the tiny random student is rarely confident). Returns the question box."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    browser.get(server_url + "/")
    assert browser.title == "distillqa"
    wait.until(lambda d: "1 documents" in d.find_element(By.ID, "status").text)
    box = browser.find_element(By.ID, "question")
    box.send_keys(question, Keys.ENTER)
    wait.until(lambda d: d.find_elements(By.CSS_SELECTOR, "#answers .answer .citation"))
    for guesses in browser.find_elements(By.CSS_SELECTOR, "details.guesses"):
        assert browser.find_element(By.ID, "message").text == "The documents do not seem to answer this question."
        guesses.find_element(By.TAG_NAME, "summary").click()
    return box


def test_ask_in_the_browser(server_url: str, browser):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    box = ask(browser, server_url, QUESTION)

    answers = browser.find_elements(By.CSS_SELECTOR, "#answers .answer")
    assert 1 <= len(answers) <= 3  # the form's default: 3 answers
    for answer in answers:
        text = answer.find_element(By.CLASS_NAME, "answer-text").text
        assert text and answer.find_element(By.TAG_NAME, "mark").text == text
        assert answer.find_element(By.CLASS_NAME, "citation").text in ("harbour.txt, page 1", "harbour.txt, page 2")
        assert not answer.find_elements(By.CLASS_NAME, "score")  # the confidence, not the bare score
        # confidence in words, its percentage beside them
        assert re.fullmatch(r"(likely right|may be right|unlikely) \d{1,3}%", answer.find_element(By.CLASS_NAME, "confidence").text)
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


def drag_select(browser, passage, text: str) -> None:
    """Select `text` in the passage element with the mouse: press just inside its first character
    and release just inside its last (the browser snaps to the nearest character boundaries)."""
    from selenium.webdriver.common.action_chains import ActionChains

    x0, x1, y = browser.execute_script(
        """
        const [p, text] = arguments;
        p.scrollIntoView({block: "center"});
        const start = p.textContent.indexOf(text), end = start + text.length;
        // (text node, offset) of the passage's UTF-16 offset n, across the answer's <mark>
        function point(n) {
          const walker = document.createTreeWalker(p, NodeFilter.SHOW_TEXT);
          for (let node = walker.nextNode(); node; node = walker.nextNode()) {
            if (n < node.length) return [node, n];
            n -= node.length;
          }
        }
        function box(n) {
          const range = document.createRange();
          range.setStart(...point(n));
          range.setEnd(...point(n));
          range.setEnd(range.startContainer, range.startOffset + 1);
          return range.getBoundingClientRect();
        }
        const first = box(start), last = box(end - 1);
        return [first.left + 2, last.right - 2, (first.top + first.bottom) / 2];
        """,
        passage,
        text,
    )
    actions = ActionChains(browser).w3c_actions
    actions.pointer_action.move_to_location(round(x0), round(y)).pointer_down().move_to_location(round(x1), round(y)).pointer_up()
    actions.perform()


def test_mark_an_answer_wrong_select_the_right_span_and_retrain(server_url: str, run_dir: Path, browser, tmp_path: Path):
    """The issue's end-to-end check: an answer is marked wrong, the right span is selected in its
    passage with the mouse and saved; feedback.jsonl holds the correction, and the train stage,
    run on that run folder, gives a reader that answers the question with that span."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    wait = WebDriverWait(browser, 60)
    ask(browser, server_url, QUESTION)
    card = next(a for a in browser.find_elements(By.CSS_SELECTOR, "#answers .answer") if a.find_element(By.CLASS_NAME, "answer-text").text != "Margaret Hale")
    shown = card.find_element(By.CLASS_NAME, "answer-text").text
    card.find_element(By.XPATH, ".//button[text()='Wrong']").click()
    passage = card.find_element(By.CLASS_NAME, "passage")
    drag_select(browser, passage, "Margaret Hale")
    hint = card.find_element(By.CLASS_NAME, "hint")
    wait.until(lambda d: hint.text == "Right answer: “Margaret Hale”")
    card.find_element(By.XPATH, ".//button[text()='Save correction']").click()
    note = card.find_element(By.CLASS_NAME, "feedback-note")
    wait.until(lambda d: note.text.startswith("Saved"))
    assert note.text == "Saved: the right answer is “Margaret Hale”. Retraining learns it."
    assert not card.find_element(By.XPATH, ".//button[text()='Wrong']").is_displayed()

    [record], damaged = read_feedback(run_dir / FEEDBACK)
    assert damaged == 0 and (record.question, record.answer, record.verdict) == (QUESTION, shown, "wrong")
    assert record.passage[record.correct_start : record.correct_end] == "Margaret Hale" and record.document == "harbour.txt"

    empty = {"version": "1.1", "data": []}  # no generated pairs: the correction alone is learnt
    write_json(run_dir / TRAIN, empty)
    write_json(run_dir / VALIDATION, empty)
    student = tiny_bert(tmp_path / "tiny", seed=1)
    cfg = load_config(None, [f"train.student={student}", "train.epochs=30", "train.learning_rate=2e-3", "feedback.weight=8"])
    summary = Run(run_dir, quiet=True).run_stage(STAGE_BY_NAME["train"], cfg)
    assert summary["feedback_pairs"] == 1
    [best, *_] = load_reader(run_dir, "torch").answer([QUESTION], [record.passage], top_k=1)[0]
    assert best.text == "Margaret Hale"


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
