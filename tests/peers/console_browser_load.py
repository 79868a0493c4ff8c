"""The console's topic browser in a real browser (Debian's headless Chromium through chromedriver,
with selenium) on a broker holding many retained topics: how long the page takes to show the
tree's first level, to open a branch, to filter, and whether the main thread stays responsive
(Chrome's long tasks, over 50 ms each, while the page runs live for --seconds).

Times are taken in the page (performance.now(), checked at every animation frame), so they
include the server's answer, the parse and the render. Prints one JSON object with the figures;
exit code 0 when every step passed, else 1 with the reason on stderr. A measurement, not a
test of a limit: the caller prints the figures.
"""

import argparse
import os
import sys
import time

from selenium.common.exceptions import WebDriverException

from console_browser import Failed, Session

# Resolves with performance.now() once `selector` matches (and, if given, its text contains
# `text`), checked at every frame; null after `timeout_ms`.
WAIT_JS = """
const [selector, text, timeoutMs] = arguments;
const done = arguments[arguments.length - 1];
const start = performance.now();
(function check() {
  const node = document.querySelector(selector);
  if (node && (!text || node.textContent.includes(text))) return done(performance.now());
  if (performance.now() - start > timeoutMs) return done(null);
  requestAnimationFrame(check);
})();
"""

# Clicks the twisty of `path` and resolves with the milliseconds until the CSS selector `child`
# matches (and the shown items under `path`).
EXPAND_JS = """
const [path, child, timeoutMs] = arguments;
const done = arguments[arguments.length - 1];
const item = document.querySelector(`li.node[data-path="${path}"]`);
if (!item) return done(null);
const start = performance.now();
item.querySelector(':scope > .twisty').click();
(function check() {
  if (document.querySelector(child)) return done(performance.now() - start);
  if (performance.now() - start > timeoutMs) return done(null);
  requestAnimationFrame(check);
})();
"""

# Types `text` into the filter and resolves with the milliseconds until the count says `wanted`.
FILTER_JS = """
const [text, wanted, timeoutMs] = arguments;
const done = arguments[arguments.length - 1];
const input = document.getElementById('filter');
const info = document.getElementById('filter-info');
const start = performance.now();
input.value = text;
input.dispatchEvent(new Event('input'));
(function check() {
  if (info.textContent.startsWith(wanted)) return done(performance.now() - start);
  if (performance.now() - start > timeoutMs) return done(null);
  requestAnimationFrame(check);
})();
"""

LONG_TASKS_JS = """
window.__longTasks = [];
new PerformanceObserver((list) => {
  for (const entry of list.getEntries()) window.__longTasks.push([Math.round(entry.startTime), Math.round(entry.duration)]);
}).observe({ type: 'longtask', buffered: true });
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--first", required=True, help="the first-level node to wait for")
    parser.add_argument("--first-count", required=True, help="its topic count as shown")
    parser.add_argument("--expand", action="append", required=True,
                        help="PATH=SELECTOR: open PATH, wait for SELECTOR to match (in order)")
    parser.add_argument("--filter", required=True, help="TEXT=WANTED: filter text and the count line it gives")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    session = Session(args, "load", catch=(Failed, WebDriverException))
    driver, seen = session.driver, session.seen
    driver.set_script_timeout(120)
    with session:
        driver.get(args.url)
        driver.execute_script(LONG_TASKS_JS)
        first = driver.execute_async_script(
            WAIT_JS, f'#tree li.node[data-path="{args.first}"] > .count', args.first_count, 60000)
        if first is None:
            raise Failed(f"the first level with {args.first} ({args.first_count}) did not show")
        seen["first_level_ms_since_navigation"] = round(first, 1)
        seen["expand_ms"] = {}
        for step in args.expand:
            path, child = step.split("=", 1)
            elapsed = driver.execute_async_script(EXPAND_JS, path, child, 60000)
            if elapsed is None:
                raise Failed(f"opening {path} did not show {child}")
            shown = driver.execute_script(
                "return document.querySelectorAll(`li.node[data-path=\"${arguments[0]}\"] > ul > li`).length", path)
            seen["expand_ms"][path] = {"ms": round(elapsed, 1), "items_shown": shown,
                                       "done_at": round(driver.execute_script("return performance.now()"))}
        driver.save_screenshot(os.path.join(args.screenshots, "console-load.png"))
        # Live for a while with every branch above open (the widest too): the page re-reads the
        # open levels on every `tree` event, at most once a second.
        live_from = driver.execute_script("return performance.now()")
        time.sleep(args.seconds)
        tasks = driver.execute_script("return window.__longTasks")
        seen["long_tasks_while_live"] = [task for task in tasks if task[0] >= live_from]
        text, wanted = args.filter.split("=", 1)
        elapsed = driver.execute_async_script(FILTER_JS, text, wanted, 60000)
        if elapsed is None:
            raise Failed(f"filtering {text!r} did not say {wanted!r}")
        seen["filter_ms_including_250ms_debounce"] = round(elapsed, 1)
        seen["filter_done_at"] = round(driver.execute_script("return performance.now()"))
        seen["long_tasks_over_50ms"] = len(tasks)
        seen["longest_task_ms"] = max(duration for _, duration in tasks) if tasks else 0
        # [start, duration] in ms since navigation, to match against the steps' marks.
        seen["long_tasks"] = tasks
        seen["live_seconds"] = args.seconds
        seen["dom_nodes"] = driver.execute_script("return document.getElementsByTagName('*').length")
        seen["js_heap_mib"] = driver.execute_script(
            "return performance.memory ? +(performance.memory.usedJSHeapSize / 1048576).toFixed(1) : null")
    return session.exit_code


if __name__ == "__main__":
    sys.exit(main())
