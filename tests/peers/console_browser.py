"""Drives the web console in a real browser: Debian's headless Chromium through Debian's
chromedriver, with selenium (a client we did not write).

Against `uns up --demo` it opens the page, waits until the live connection is up, expands the
tree level by level to a `_tag` of the demo plant, selects it and waits until its value changes
on the page, adds it and a second tag to the chart and waits until both lines are drawn and
grow, downloads the chart's CSV, and opens a Sparkplug DDATA topic to read its metric names.
Screenshots of each step go to --screenshots. Prints one JSON object with what it saw; exit
code 0 when every step passed, else 1 with the reason on stderr.
"""

import argparse
import json
import os
import sys
import time

from selenium import webdriver
from selenium.common.exceptions import StaleElementReferenceException, WebDriverException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.by import By


class Failed(Exception):
    pass


def wait_for(what, check, timeout=30.0):
    """Polls `check` until it returns something truthy; fails naming `what`."""
    deadline = time.monotonic() + timeout
    last_error = None
    while time.monotonic() < deadline:
        try:
            value = check()
            if value:
                return value
        except (StaleElementReferenceException, WebDriverException) as err:
            last_error = err
        time.sleep(0.1)
    raise Failed(f"timed out after {timeout}s waiting for {what} (last error: {last_error})")


def node(driver, path):
    return driver.find_element(By.CSS_SELECTOR, f'li.node[data-path="{path}"]')


def expand_to(driver, topic):
    """Expands every level above `topic`, clicking each twisty as a person would."""
    levels = topic.split("/")
    for depth in range(1, len(levels)):
        path = "/".join(levels[:depth])
        item = wait_for(f"tree node {path}", lambda: node(driver, path))
        if item.get_attribute("aria-expanded") != "true":
            item.find_element(By.CSS_SELECTOR, ":scope > .twisty").click()
        child = "/".join(levels[: depth + 1])
        wait_for(f"tree node {child}", lambda: node(driver, child))


def select(driver, topic):
    expand_to(driver, topic)
    node(driver, topic).find_element(By.CSS_SELECTOR, ":scope > .label").click()
    wait_for(f"topic pane of {topic}",
             lambda: driver.find_element(By.ID, "topic-name").text == topic)


def headless_chromium(args, downloads=None, height=1000):
    """Debian's Chromium (args.chromium) through chromedriver (args.chromedriver), headless, a
    1500 x `height` window; downloads, when given, land in that directory without a prompt. Makes
    args.screenshots (and downloads) first."""
    os.makedirs(args.screenshots, exist_ok=True)
    options = webdriver.ChromeOptions()
    options.binary_location = args.chromium
    for flag in ["--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
                 f"--window-size=1500,{height}"]:
        options.add_argument(flag)
    if downloads is not None:
        os.makedirs(downloads, exist_ok=True)
        options.add_experimental_option("prefs", {
            "download.default_directory": os.path.abspath(downloads),
            "download.prompt_for_download": False,
        })
    return webdriver.Chrome(service=Service(executable_path=args.chromedriver), options=options)


class Session:
    """A headless Chromium (headless_chromium) for one script, and what the script saw.

    `with session:` runs the steps: when they raise one of `catch` (Failed by default), the page is
    saved as console-{name}-failure.png in args.screenshots, the JSON of `seen` is printed and the
    reason goes to stderr (exit_code 1); when they pass, `seen` is printed (exit_code 0). The
    browser quits either way; any other exception propagates after it did.
    """

    def __init__(self, args, name, downloads=None, height=1000, catch=(Failed,)):
        self.driver = headless_chromium(args, downloads=downloads, height=height)
        self.seen = {}
        self.exit_code = 1
        self._screenshots = args.screenshots
        self._name = name
        self._catch = catch

    def __enter__(self):
        return self

    def __exit__(self, kind, err, _traceback):
        try:
            if err is None:
                print(json.dumps(self.seen))
                self.exit_code = 0
                return False
            if not isinstance(err, self._catch):
                return False
            try:
                self.driver.save_screenshot(
                    os.path.join(self._screenshots, f"console-{self._name}-failure.png"))
            except WebDriverException:
                pass
            print(json.dumps(self.seen))
            print(f"console {self._name} browser test failed: {err}", file=sys.stderr)
            return True
        finally:
            self.driver.quit()


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--tag", action="append", required=True, help="a numeric _tag topic (give two)")
    parser.add_argument("--ddata", required=True, help="a Sparkplug DDATA topic")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--downloads", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    session = Session(args, "browser", downloads=args.downloads)
    driver, seen = session.driver, session.seen
    with session:
        driver.get(args.url)
        wait_for("the live connection", lambda: driver.find_element(By.ID, "live").get_attribute("data-state") == "ok")
        seen["live"] = driver.find_element(By.ID, "live").text

        first, second = args.tag[0], args.tag[1]
        select(driver, first)
        value = lambda: driver.find_element(By.ID, "topic-value").text
        arrival = lambda: driver.find_element(By.ID, "arrival").text
        before = (value(), arrival())
        wait_for(f"{first} to change on the page",
                 lambda: value() != before[0] and arrival() != before[1], timeout=60)
        seen["value_before"] = json.loads(before[0]).get("value")
        seen["value_after"] = json.loads(value()).get("value")
        seen["retained"] = driver.find_element(By.ID, "badge-retained").text
        seen["schema"] = driver.find_element(By.ID, "schema-check").text
        driver.save_screenshot(os.path.join(args.screenshots, "console-topic.png"))

        driver.find_element(By.ID, "add-to-chart").click()
        wait_for("the first line in the chart",
                 lambda: driver.find_elements(By.CSS_SELECTOR, f'#chart path.series[data-topic="{first}"]'))
        select(driver, second)
        wait_for("Add to chart to be enabled", lambda: driver.find_element(By.ID, "add-to-chart").is_enabled())
        driver.find_element(By.ID, "add-to-chart").click()
        # Read every line in one script: the chart is redrawn on each point.
        lines = lambda: dict(driver.execute_script(
            "return [...document.querySelectorAll('#chart path.series')]"
            ".map((p) => [p.dataset.topic, p.getAttribute('d')]);"))
        wait_for("two lines in one chart", lambda: len(lines()) == 2)
        drawn = lines()
        wait_for("both lines to grow live", lambda: all(
            len(d) > len(drawn.get(topic, "")) for topic, d in lines().items()), timeout=60)
        seen["chart_topics"] = sorted(lines())
        seen["chart_svgs"] = len(driver.find_elements(By.CSS_SELECTOR, "#chart svg"))
        driver.save_screenshot(os.path.join(args.screenshots, "console-chart.png"))

        driver.find_element(By.ID, "download-chart-csv").click()
        csv_path = os.path.join(args.downloads, "uns-chart.csv")
        wait_for("the chart CSV download", lambda: os.path.exists(csv_path) and os.path.getsize(csv_path) > 0)
        with open(csv_path, encoding="utf-8") as file:
            rows = file.read().splitlines()
        seen["csv_header"] = rows[0]
        seen["csv_topics"] = sorted({row.split(",")[0] for row in rows[1:]})

        select(driver, args.ddata)
        # Read in one script call: the live page re-renders the table at each DDATA, so element
        # references fetched first can be stale by the time their text is read.
        names = lambda: driver.execute_script(
            "return Array.from(document.querySelectorAll('#sparkplug-metrics td.metric-name'),"
            " cell => cell.textContent.trim())")
        seen["ddata_metric_names"] = wait_for("Sparkplug metric names", names)
        driver.execute_script("document.getElementById('topic-pane').scrollIntoView()")
        driver.save_screenshot(os.path.join(args.screenshots, "console-sparkplug.png"))
    return session.exit_code


if __name__ == "__main__":
    sys.exit(main())
