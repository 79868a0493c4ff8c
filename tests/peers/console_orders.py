"""Drives the console's work-order view in a real browser (Debian's headless Chromium through
chromedriver, with selenium) against `uns up --demo` with one running order: the order's row
shows it running, its detail's good count grows live, Hold (posted to the workorders API)
turns it held on the page once the new `_wo` document arrives over MQTT, Resume turns it
running again. Screenshots go to --screenshots. Prints one JSON object with what it saw; exit
code 0 when every step passed, else 1 with the reason on stderr.
"""

import argparse
import os
import sys

from selenium.webdriver.common.by import By

from console_browser import Session, wait_for


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--order", required=True, help="the id of a running work order")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    session = Session(args, "work-order")
    driver, seen = session.driver, session.seen

    def click(verb):
        """Clicks the order's `verb` button; the detail re-renders on live updates, so a button
        found a moment ago may be gone: find it again until the click lands."""
        def attempt():
            driver.find_element(By.CSS_SELECTOR, f'button[data-verb="{verb}"]').click()
            return True
        wait_for(f"the {verb} button", attempt, timeout=15)

    with session:
        driver.get(args.url + "#/orders")
        row = lambda: driver.find_element(By.CSS_SELECTOR, f'#orders-table tr.order[data-id="{args.order}"]')
        wait_for(f"{args.order} running in the list",
                 lambda: row().find_element(By.CSS_SELECTOR, "td.status").text == "running", timeout=60)
        seen["list_status"] = row().find_element(By.CSS_SELECTOR, "td.status").text
        wait_for("the order row to click", lambda: row().click() or True)
        status = lambda: driver.find_element(By.ID, "order-status").text
        good = lambda: driver.find_element(By.CSS_SELECTOR, '#order-detail td[data-field="Good"]').text
        wait_for("the order's detail", lambda: status() == "running")
        before = good()
        wait_for("the good count to grow on the page", lambda: good() != before, timeout=60)
        seen["good_before"], seen["good_after"] = before, good()
        seen["events"] = [r.get_attribute("data-type") for r in
                          driver.find_elements(By.CSS_SELECTOR, "#order-events tr.event")]
        driver.save_screenshot(os.path.join(args.screenshots, "console-work-order.png"))

        click("hold")
        wait_for("held on the page", lambda: status() == "held", timeout=30)
        seen["after_hold"] = status()
        seen["hold_answer"] = driver.find_element(By.ID, "order-action-result").text
        driver.save_screenshot(os.path.join(args.screenshots, "console-work-order-held.png"))
        click("start")
        wait_for("the refusal of start", lambda: "start:" in driver.find_element(By.ID, "order-action-result").text
                 and "accepted" not in driver.find_element(By.ID, "order-action-result").text)
        seen["start_answer"] = driver.find_element(By.ID, "order-action-result").text
        click("resume")
        wait_for("running again on the page", lambda: status() == "running", timeout=30)
        seen["after_resume"] = status()
        seen["list_status_after"] = row().find_element(By.CSS_SELECTOR, "td.status").text
    return session.exit_code


if __name__ == "__main__":
    sys.exit(main())
