// The OEE board: per line and cell (every scope with `_oee` topics) the open period chosen above
// (hour, shift or work order) with availability, performance, quality and OEE, the time breakdown
// as one stacked bar (ISO 22400 buckets), the top loss reasons, and the newest closed periods with
// their versions (a late input re-publishes a closed period as version n+1). One GET of
// /api/v1/console/oee, repeated on the server's `tree` event.

import { el, formatTime, getJson, Refreshing } from './api.js';
import { duration } from './plant.js';

const SVG = 'http://www.w3.org/2000/svg';
const PERIODS = ['hour', 'shift', 'wo'];
// The buckets of planned operation time, in the order drawn, with their colours.
const BUCKETS = [
  ['apt_ms', 'APT production', '#2da44e'],
  ['asut_ms', 'ASUT setup', '#bf8700'],
  ['adet_ms', 'ADET delay', '#cf222e'],
  ['adot_ms', 'ADOT down', '#8250df'],
  ['pdt_ms', 'PDT planned down', '#8c959f'],
];
const TOP_LOSSES = 3;

export const oeeView = {
  id: 'oee',
  title: 'OEE',
  mount(container, live) {
    const view = new OeeView(container, live);
    return { unmount: () => view.unmount() };
  },
};

export function percent(ratio) {
  return typeof ratio === 'number' ? `${(ratio * 100).toFixed(1)} %` : '—';
}

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// Lines first (they are what a shift lead reads), then cells, each by name.
function scopeOrder(a, b) {
  return a.scope.split('/').length - b.scope.split('/').length || a.scope.localeCompare(b.scope);
}

class OeeView extends Refreshing {
  constructor(container, live) {
    super();
    this.period = 'shift';
    this.picker = el('div', { class: 'bar', id: 'oee-periods' }, el('h2', {}, 'OEE'),
      PERIODS.map((period) => el('button', {
        'data-period': period, onclick: () => { this.period = period; this.refresh(); },
      }, period === 'wo' ? 'work order' : period)),
      el('span', { class: 'hint' }, 'open period, from retained _oee/current/*'));
    this.board = el('div', { id: 'oee-board', class: 'oee-board' }, el('p', { class: 'hint' }, 'Loading…'));
    container.append(el('div', { class: 'oee' }, el('div', { class: 'pane' }, this.picker), this.board));
    this.follow(live);
  }

  async update() {
    const data = await getJson('oee');
    for (const button of this.picker.querySelectorAll('button')) button.classList.toggle('active', button.dataset.period === this.period);
    const scopes = data.scopes.slice().sort(scopeOrder);
    this.board.replaceChildren(...(scopes.length ? scopes.map((scope) => this.card(scope))
      : [el('p', { class: 'hint' }, 'No OEE results on the broker yet (the oee service publishes _oee/current/* once it has states).')]));
  }

  failed(err) {
    this.board.replaceChildren(el('p', { class: 'error' }, `OEE: ${err.message}`));
  }

  card(scope) {
    const result = scope.current[this.period];
    const body = [];
    if (!result) {
      body.push(el('p', { class: 'hint' }, `No open ${this.period} period here.`));
    } else if (result.error) {
      body.push(el('p', { class: 'error' }, result.error));
    } else {
      body.push(el('p', { class: 'hint period' },
        `${result.period.kind} ${result.period.id} · ${formatTime(Date.parse(result.start))} → ${formatTime(Date.parse(result.end))}`
        + ` · v${result.version}${result.final ? ' final' : ''}`));
      body.push(el('div', { class: 'kpis' },
        [['oee', 'OEE'], ['availability', 'A'], ['performance', 'P'], ['quality', 'Q']].map(([key, label]) => el('div', {
          class: `kpi kpi-${key}`, 'data-kpi': key, title: (result.null_reasons || {})[key] || '',
        }, el('span', { class: 'kpi-label' }, label), el('span', { class: 'kpi-value' }, percent(result[key]))))));
      body.push(breakdown(result.times));
      const c = result.counts;
      body.push(el('p', { class: 'counts' }, `produced ${c.produced.qty} · good ${c.good.qty} · scrap ${c.scrap.qty} · rework ${c.rework.qty} ${c.good.uom}`));
      const reasons = Object.entries(result.null_reasons || {});
      if (reasons.length) body.push(el('ul', { class: 'null-reasons hint' }, reasons.map(([kpi, why]) => el('li', {}, `${kpi}: ${why}`))));
      const losses = (result.losses || []).slice().sort((a, b) => b.duration_ms - a.duration_ms).slice(0, TOP_LOSSES);
      body.push(el('h3', {}, 'Top losses'));
      body.push(losses.length ? el('table', { class: 'losses' }, el('tbody', {}, losses.map((loss) => el('tr', { class: 'loss' },
        el('td', {}, loss.reason), el('td', { class: 'hint' }, loss.category), el('td', {}, duration(loss.duration_ms)),
        el('td', { class: 'hint' }, `${loss.occurrences}×`)))))
        : el('p', { class: 'hint' }, 'No loss in this period.'));
    }
    const closed = scope.closed.filter((period) => period && !period.error);
    if (closed.length) {
      body.push(el('h3', {}, 'Closed periods'));
      body.push(el('table', { class: 'closed' },
        el('thead', {}, el('tr', {}, ['Period', 'OEE', 'A', 'P', 'Q', 'Versions'].map((h) => el('th', {}, h)))),
        el('tbody', {}, closed.map((period) => el('tr', { class: 'closed-period', 'data-topic': period.topic },
          el('td', {}, `${period.kind} ${period.id}`), el('td', {}, percent(period.oee)),
          el('td', {}, percent(period.availability)), el('td', {}, percent(period.performance)), el('td', {}, percent(period.quality)),
          el('td', { class: 'versions' }, period.versions.length > 1
            ? period.versions.map((v) => `v${v.version} ${percent(v.oee)}${v.reason ? ` (${v.reason})` : ''}`).join(' → ')
            : `v${period.version}${period.final ? ' final' : ''}`))))));
    }
    for (const bad of scope.closed.filter((period) => period && period.error)) body.push(el('p', { class: 'error' }, `${bad.topic}: ${bad.error}`));
    return el('section', { class: 'pane oee-card', 'data-scope': scope.scope },
      el('h2', { class: 'scope' }, scope.scope), body);
  }
}

// One horizontal bar: each bucket's share of planned operation time plus planned downtime.
function breakdown(times) {
  const total = BUCKETS.reduce((sum, [key]) => sum + (times[key] || 0), 0);
  const width = 360;
  const root = svg('svg', { class: 'breakdown', width, height: 18, viewBox: `0 0 ${width} 18`, role: 'img' });
  let x = 0;
  for (const [key, label, color] of BUCKETS) {
    const ms = times[key] || 0;
    if (!total || !ms) continue;
    const w = (ms / total) * width;
    const rect = svg('rect', { x, y: 0, width: w, height: 18, fill: color, 'data-bucket': key });
    rect.append(svg('title', {}, `${label}: ${duration(ms)} (${((ms / total) * 100).toFixed(1)} %)`));
    root.append(rect);
    x += w;
  }
  const legend = el('div', { class: 'bucket-legend hint' }, BUCKETS.filter(([key]) => times[key]).map(([key, label, color]) => el('span', {},
    el('span', { class: 'swatch', style: `background:${color}` }), `${label} ${duration(times[key])}`)));
  return el('div', { class: 'time-breakdown' }, total ? root : el('p', { class: 'hint' }, 'No monitored time yet.'), legend);
}
