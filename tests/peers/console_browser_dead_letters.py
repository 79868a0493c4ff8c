"""The ERP bridge's dead letters in the console's work-order view, in a real browser (Debian's
headless Chromium through chromedriver, with selenium): the dead letter of --order is listed with
its error, Replay (posted to the bridge's API from the page) answers "queued again", and the
entry leaves the list (the caller checks that the ERP then received it once). Screenshots go to --screenshots. Prints one JSON
object with what it saw; exit code 0 when every step passed, else 1 with the reason on stderr.
"""

import argparse
import os
import sys

from selenium.webdriver.common.by import By

from console_browser import Session, wait_for

LETTERS_JS = """
return {
  rows: Array.from(document.querySelectorAll('#dead-letters-table tr.dead-letter'), (row) =>
    Array.from(row.querySelectorAll('td'), (cell) => cell.textContent.trim()).slice(0, 5)),
  answer: document.getElementById('dead-letter-result') ? document.getElementById('dead-letter-result').textContent.trim() : null,
  heading: document.querySelector('#dead-letters h2') ? document.querySelector('#dead-letters h2').textContent : null,
};
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--order", required=True, help="the work order whose confirmation is a dead letter")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    session = Session(args, "dead-letters")
    driver, seen = session.driver, session.seen
    letters = lambda: driver.execute_script(LETTERS_JS)
    with session:
        driver.get(args.url + "#/orders")
        row = wait_for(f"the dead letter of {args.order}",
                       lambda: next((r for r in letters()["rows"] if r[1] == args.order), None), timeout=30)
        seen["row"] = row
        driver.save_screenshot(os.path.join(args.screenshots, "console-dead-letters.png"))

        def replay():
            driver.find_element(By.CSS_SELECTOR, f'button[data-replay="{row[0]}"]').click()
            return True
        wait_for("the replay button", replay, timeout=15)
        seen["answer"] = wait_for("the bridge's answer", lambda: (lambda a: a if a and "…" not in a else None)(letters()["answer"]))
        wait_for("the dead letter to leave the list",
                 lambda: all(r[1] != args.order for r in letters()["rows"]), timeout=30)
        seen["rows_after"] = letters()["rows"]
    return session.exit_code


if __name__ == "__main__":
    sys.exit(main())
