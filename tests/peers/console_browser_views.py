"""Drives the console's plant, OEE, work-order and trace views in a real browser (Debian's
headless Chromium through chromedriver, with selenium) against `uns up --demo`.

- Plant (#/plant): a cell's state chip (category, since when) and its good counter, which must
  grow on the page without a reload; the services' health rows and the broker's $SYS figures.
- OEE (#/oee): the line's OEE figure of the open hour, and its counts changing live.
- Work orders (#/orders): --order is running; Hold is clicked on the page (posted to the
  workorders API), the page shows held; Resume, the page shows running. The caller checks that
  the `_wo` document changed over MQTT. The ERP dead-letter panel is shown.
- Trace (#/trace?lot=...): the graph of --lot layered by depth, the transforms off balance, and
  the recall CSV downloaded through the page's link; then --forward-lot traced forward from the
  form.

Every value is read in one script call (the views re-render on each live update, so element
references fetched earlier may be stale); waits poll a condition with a deadline. Screenshots of
each view go to --screenshots. Prints one JSON object with what it saw; exit code 0 when every
step passed, else 1 with the reason on stderr.
"""

import argparse
import csv
import io
import os
import sys

from selenium.webdriver.common.by import By

from console_browser import Session, wait_for

PLANT_JS = """
const node = document.querySelector(`li.plant-node[data-location="${arguments[0]}"]`);
if (!node) return null;
const text = (sel) => { const e = node.querySelector(sel); return e ? e.textContent.trim() : null; };
return {
  category: node.dataset.category || null,
  chip: text('.state-chip'),
  since: text('.since'),
  good: text('.count-figure[data-kind="good"]'),
  services: Array.from(document.querySelectorAll('#services-table tr.service'),
    (row) => [row.dataset.service, row.querySelector('td.status').textContent.trim()]),
  sys: Array.from(document.querySelectorAll('#sys-table tr.sys'),
    (row) => [row.dataset.name, row.querySelector('.sys-value').textContent.trim()]),
};
"""

OEE_JS = """
const card = document.querySelector(`.oee-card[data-scope="${arguments[0]}"]`);
if (!card) return null;
const text = (sel) => { const e = card.querySelector(sel); return e ? e.textContent.trim() : null; };
return {
  oee: text('.kpi[data-kpi="oee"] .kpi-value'),
  availability: text('.kpi[data-kpi="availability"] .kpi-value'),
  period: text('.period'),
  counts: text('.counts'),
  buckets: Array.from(card.querySelectorAll('svg.breakdown rect'), (r) => r.dataset.bucket),
  cards: document.querySelectorAll('.oee-card').length,
};
"""

ORDER_JS = """
const row = document.querySelector(`#orders-table tr.order[data-id="${arguments[0]}"]`);
const status = document.getElementById('order-status');
const result = document.getElementById('order-action-result');
const dead = document.querySelector('#dead-letters h2');
return {
  list_status: row ? row.querySelector('td.status').textContent.trim() : null,
  detail_status: status ? status.textContent.trim() : null,
  detail_id: document.getElementById('order-title') ? document.getElementById('order-title').firstChild.textContent : null,
  answer: result ? result.textContent.trim() : null,
  dead_letters: dead ? dead.parentElement.parentElement.textContent.trim().slice(0, 200) : null,
};
"""

TRACE_JS = """
const lots = Array.from(document.querySelectorAll('#trace-graph g.lot'),
  (g) => [g.dataset.lot, Number(g.dataset.depth), g.classList.contains('flagged')]);
const summary = document.getElementById('trace-summary');
return {
  lots,
  edges: document.querySelectorAll('#trace-graph path.edge').length,
  off_rows: document.querySelectorAll('#trace-balances tr.balance[data-status="off"]').length,
  summary: summary ? summary.textContent.trim() : null,
  csv_href: document.getElementById('download-recall-csv') ? document.getElementById('download-recall-csv').getAttribute('href') : null,
};
"""


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--url", required=True)
    parser.add_argument("--cell", required=True, help="a cell location with _state and _count")
    parser.add_argument("--line", required=True, help="a line location with _oee/current")
    parser.add_argument("--order", required=True, help="the id of a running work order")
    parser.add_argument("--lot", required=True, help="a lot to trace backward")
    parser.add_argument("--forward-lot", required=True, help="a lot to trace forward")
    parser.add_argument("--screenshots", required=True)
    parser.add_argument("--downloads", required=True)
    parser.add_argument("--chromium", default="/usr/bin/chromium")
    parser.add_argument("--chromedriver", default="/usr/bin/chromedriver")
    args = parser.parse_args()
    session = Session(args, "views", downloads=args.downloads, height=1100)
    driver, seen = session.driver, session.seen
    shot = lambda name: driver.save_screenshot(os.path.join(args.screenshots, f"console-{name}.png"))

    def click(css, what):
        """Clicks `css`; the views re-render on live updates, so find it again until it lands."""
        def attempt():
            driver.find_element(By.CSS_SELECTOR, css).click()
            return True
        wait_for(what, attempt, timeout=15)

    with session:
        # --- Plant
        driver.get(args.url + "#/plant")
        wait_for("the live connection", lambda: driver.find_element(By.ID, "live").get_attribute("data-state") == "ok")
        # Page weight: the document and the ES modules and CSS it loaded (nothing else is fetched
        # but the JSON answers and the event stream).
        seen["page_weight"] = driver.execute_script(
            "const e = [performance.getEntriesByType('navigation')[0],"
            " ...performance.getEntriesByType('resource').filter((r) => new URL(r.name).pathname.startsWith('/console/'))];"
            "return {files: e.length, transfer_bytes: e.reduce((s, r) => s + r.transferSize, 0),"
            " body_bytes: e.reduce((s, r) => s + r.decodedBodySize, 0)};")
        plant = lambda: driver.execute_script(PLANT_JS, args.cell)
        first = wait_for(f"{args.cell}'s state and good count on the plant view",
                         lambda: (lambda p: p if p and p["category"] and p["good"] and p["services"] and p["sys"] else None)(plant()))
        later = wait_for(f"{args.cell}'s good count to grow on the page",
                         lambda: (lambda p: p if p and p["good"] != first["good"] else None)(plant()), timeout=60)
        seen["plant"] = {"first": first, "later_good": later["good"], "later_category": later["category"]}
        shot("plant")

        # --- OEE
        driver.get(args.url + "#/oee")
        click('#oee-periods button[data-period="hour"]', "the hour button")
        oee = lambda: driver.execute_script(OEE_JS, args.line)
        first = wait_for(f"{args.line}'s OEE of the open hour",
                         lambda: (lambda o: o if o and o["oee"] and o["oee"].endswith("%") and o["period"]
                                  and o["period"].startswith("hour") else None)(oee()), timeout=60)
        later = wait_for(f"{args.line}'s hour figures to change on the page",
                         lambda: (lambda o: o if o and o["counts"] != first["counts"] else None)(oee()), timeout=60)
        seen["oee"] = {"first": first, "later": later}
        shot("oee")

        # --- Work orders
        driver.get(args.url + "#/orders")
        order = lambda: driver.execute_script(ORDER_JS, args.order)
        wait_for(f"{args.order} running in the list", lambda: order()["list_status"] == "running", timeout=60)
        click(f'#orders-table tr.order[data-id="{args.order}"]', "the order's row")
        wait_for("the order's detail", lambda: order()["detail_status"] == "running")
        click('button[data-verb="hold"]', "the hold button")
        wait_for("held on the page", lambda: order()["detail_status"] == "held", timeout=30)
        seen["after_hold"] = order()
        shot("work-order-held")
        click('button[data-verb="resume"]', "the resume button")
        wait_for("running again on the page", lambda: order()["detail_status"] == "running"
                 and order()["list_status"] == "running", timeout=30)
        seen["after_resume"] = order()
        wait_for("the dead-letter panel", lambda: order()["dead_letters"])
        seen["dead_letters"] = order()["dead_letters"]
        shot("work-orders")

        # --- Trace: an unknown lot gets the genealogy service's reason, then the real one
        driver.get(args.url + "#/trace?lot=no-such-lot")
        seen["unknown_lot"] = wait_for("the refusal of an unknown lot", lambda: driver.execute_script(
            "const e = document.getElementById('trace-error'); return e ? e.textContent : null;"))
        driver.get(args.url + f"#/trace?lot={args.lot}&direction=backward")
        trace = lambda: driver.execute_script(TRACE_JS)
        drawn = wait_for(f"the trace graph of {args.lot}",
                         lambda: (lambda t: t if len(t["lots"]) >= 2 and t["edges"] >= 1 else None)(trace()), timeout=30)
        seen["trace"] = drawn
        shot("trace")
        click("#download-recall-csv", "the recall CSV link")
        csv_path = os.path.join(args.downloads, f"recall-{args.lot}.csv")
        wait_for("the recall CSV download", lambda: os.path.exists(csv_path) and os.path.getsize(csv_path) > 0)
        with open(csv_path, encoding="utf-8-sig") as file:
            rows = list(csv.reader(io.StringIO(file.read())))
        seen["csv_header"] = rows[0]
        seen["csv_lots"] = sorted(row[0] for row in rows[1:] if row)

        # Forward from a raw lot, chosen in the form as a person would.
        def trace_forward():
            driver.execute_script(
                "document.getElementById('trace-lot').value = arguments[0];"
                "document.getElementById('trace-direction').value = 'forward';", args.forward_lot)
            driver.find_element(By.ID, "trace-go").click()
            return True
        wait_for("the trace form", trace_forward)
        forward = wait_for(f"the forward trace of {args.forward_lot}",
                           lambda: (lambda t: t if any(l[0] == args.forward_lot and l[1] == 0 for l in t["lots"])
                                    and t["edges"] >= 1 else None)(trace()), timeout=30)
        seen["forward"] = forward
        seen["forward_hash"] = driver.execute_script("return location.hash")
        shot("trace-forward")
    return session.exit_code


if __name__ == "__main__":
    sys.exit(main())
