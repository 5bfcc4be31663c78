"""The page in a real browser: headless Chromium (Debian's chromium and chromium-driver, which
.ci/run installs) opens it, types a sentence, presses Translate and sees the n-best list, the
latency and the attention heat map; the screenshot is kept in SEQ2SEQ_TEST_ARTIFACTS
(default: test-artifacts/ in the repository)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("fastapi", reason="the serve extra is not installed")
webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is not installed")

from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.common.keys import Keys  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from tests.serve.test_server import start_server  # noqa: E402

REPOSITORY = Path(__file__).parents[2]
ARTIFACTS = Path(os.environ.get("SEQ2SEQ_TEST_ARTIFACTS", REPOSITORY / "test-artifacts"))


@pytest.fixture
def browser():
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    driver = shutil.which("chromedriver")
    if not (chromium and driver):
        pytest.skip(
            "NO BROWSER: the page's browser test needs Debian's chromium and chromium-driver"
            " (apt-get install chromium chromium-driver; .ci/run installs them)"
        )
    options = webdriver.ChromeOptions()
    options.binary_location = chromium
    for flag in ("--headless=new", "--no-sandbox", "--disable-gpu", "--window-size=1200,1000"):
        options.add_argument(flag)
    session = webdriver.Chrome(options=options, service=webdriver.ChromeService(driver))
    yield session
    session.quit()


@pytest.fixture
def server(trained, tmp_path):
    process, url = start_server(trained.checkpoint, tmp_path / "server.log")
    yield url
    process.terminate()
    process.wait(30)


def test_a_person_translates_a_sentence_and_sees_its_attention(browser, server, trained) -> None:
    sentence = (trained.corpus / "test.de").read_text().splitlines()[0]
    browser.get(server)
    wait = WebDriverWait(browser, 30)
    wait.until(lambda page: "→" in page.find_element(By.ID, "pair").text)
    assert browser.find_element(By.ID, "pair").text == "de → en"
    assert "trained 600 updates" in browser.find_element(By.ID, "model").text
    source = browser.find_element(By.ID, "source")
    source.send_keys(sentence)
    browser.find_element(By.ID, "translate").click()
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, "#heatmap td"))
    hypotheses = browser.find_elements(By.CSS_SELECTOR, ".sentence li")
    assert len(hypotheses) == 3  # the page asks for 3 of the beam's 5
    best = hypotheses[0].find_element(By.CLASS_NAME, "text").text
    assert best and "selected" in hypotheses[0].get_attribute("class")
    assert "ms (server" in browser.find_element(By.ID, "latency").text
    rows = browser.find_elements(By.CSS_SELECTOR, "#heatmap tbody tr")
    columns = browser.find_elements(By.CSS_SELECTOR, "#heatmap thead th")
    cells = browser.find_elements(By.CSS_SELECTOR, "#heatmap td")
    assert rows[-1].find_element(By.TAG_NAME, "th").text == "</s>"
    assert len(cells) == len(rows) * (len(columns) - 1)
    assert " → " in cells[0].get_attribute("title")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    assert browser.save_screenshot(str(ARTIFACTS / "serve_page.png"))
    # the second hypothesis, chosen by a click, gets its own heat map; Ctrl+Enter translates
    hypotheses[1].click()
    assert hypotheses[1].text.split()[0] in browser.find_element(By.ID, "heatmap-title").text
    source.send_keys(Keys.CONTROL, Keys.ENTER)
    wait.until(lambda page: page.find_elements(By.CSS_SELECTOR, ".sentence li.selected"))
