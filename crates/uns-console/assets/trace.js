// The trace view: a lot traced backward (what went into it) or forward (where it went) through
// the genealogy service's API (GET /api/v1/trace/{lot}), drawn as a graph layered by depth
// (column n holds the lots n edges away), with every transform's mass balance and the flagged
// ones (`off`) marked in the table and on their lots; links download the recall sheet (CSV), the
// FSMA 204 sheet and the EPCIS 2.0 document of that lot. `#/trace?lot=X&direction=forward` opens
// a trace directly (the work-order view links its lots here).

import { el, failure } from './api.js';

const SVG = 'http://www.w3.org/2000/svg';
const NODE_W = 230;
const NODE_H = 46;
const COL_GAP = 90;
const ROW_GAP = 18;
const PAD = 12;

export const traceView = {
  id: 'trace',
  title: 'Trace',
  mount(container, live, params) {
    const view = new TraceView(container, params);
    return { unmount: () => view.unmount() };
  },
};

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

function qty(quantity) {
  return quantity ? `${quantity.qty} ${quantity.uom}` : '';
}

async function getApi(path) {
  const response = await fetch(path);
  const body = await response.json().catch(() => ({}));
  if (!response.ok) throw new Error(failure(response, body, 'genealogy'));
  return body;
}

class TraceView {
  constructor(container, params) {
    this.lotInput = el('input', { id: 'trace-lot', list: 'trace-lots', placeholder: 'lot id, e.g. pet-2026-001', value: params.get('lot') || '' });
    this.lots = el('datalist', { id: 'trace-lots' });
    this.direction = el('select', { id: 'trace-direction' },
      el('option', { value: 'backward' }, 'backward (inputs)'), el('option', { value: 'forward' }, 'forward (where it went)'));
    this.direction.value = params.get('direction') === 'forward' ? 'forward' : 'backward';
    this.depth = el('input', { id: 'trace-depth', type: 'number', min: 1, max: 64, placeholder: 'depth (all)', value: params.get('depth') || '' });
    const form = el('form', {
      class: 'bar', id: 'trace-form',
      onsubmit: (event) => { event.preventDefault(); this.trace(); },
    }, el('h2', {}, 'Trace'), this.lotInput, this.lots, this.direction, this.depth, el('button', { id: 'trace-go', type: 'submit' }, 'Trace'));
    this.downloads = el('div', { id: 'trace-downloads', class: 'bar' });
    this.result = el('div', { id: 'trace-result' }, el('p', { class: 'hint' }, 'Enter a lot and press Trace.'));
    container.append(el('div', { class: 'trace' }, el('section', { class: 'pane' }, form, this.downloads), this.result));
    this.loadLots();
    if (this.lotInput.value) this.trace();
  }

  unmount() {}

  async loadLots() {
    try {
      const lots = await getApi('/api/v1/lots?limit=500');
      this.lots.replaceChildren(...lots.map((record) => el('option', { value: record.lot.lot_id || record.lot.id || '' },
        `${record.lot.material || ''}`)));
    } catch {
      // The list is a convenience; the trace itself reports what is wrong.
    }
  }

  query() {
    const query = new URLSearchParams({ direction: this.direction.value });
    if (this.depth.value) query.set('depth', this.depth.value);
    return query;
  }

  async trace() {
    const lot = this.lotInput.value.trim();
    if (!lot) return;
    const hash = new URLSearchParams({ lot, ...Object.fromEntries(this.query()) });
    history.replaceState(null, '', `#/trace?${hash}`);
    const base = `/api/v1/trace/${encodeURIComponent(lot)}`;
    this.result.replaceChildren(el('p', { class: 'hint' }, 'Tracing…'));
    let trace;
    try {
      trace = await getApi(`${base}?${this.query()}`);
    } catch (err) {
      this.downloads.replaceChildren();
      this.result.replaceChildren(el('p', { id: 'trace-error', class: 'error' }, `${lot}: ${err.message}`));
      return;
    }
    const withFormat = (format) => { const q = this.query(); q.set('format', format); return `${base}?${q}`; };
    this.downloads.replaceChildren(
      el('span', { class: 'hint' }, 'Download:'),
      el('a', { id: 'download-recall-csv', href: withFormat('csv'), download: `recall-${lot}.csv` }, 'Recall sheet (CSV)'),
      el('a', { id: 'download-fsma', href: withFormat('fsma'), download: `fsma204-${lot}.csv` }, 'FSMA 204 sheet'),
      el('a', { id: 'download-epcis', href: `/api/v1/epcis/events?${new URLSearchParams({ lot })}`, download: `epcis-${lot}.jsonld` }, 'EPCIS 2.0'));
    this.render(trace);
  }

  render(trace) {
    const flagged = trace.transforms.filter((t) => t.status === 'off');
    // Lots of a flagged transform (its inputs and outputs) are outlined in the graph.
    const flaggedLots = new Set(flagged.flatMap((t) => [...t.consumed, ...t.produced].map((q) => q.lot)));
    const summary = el('p', { id: 'trace-summary', class: flagged.length ? 'error' : 'hint' },
      `${trace.lots.length} lots, ${trace.edges.length} edges, ${trace.transforms.length} transforms`
      + `${flagged.length ? `, ${flagged.length} off balance` : ', all in balance'}${trace.truncated ? ' (depth limit reached)' : ''}`);
    const balances = trace.transforms.map((t) => el('tr', { class: `balance ${t.status}`, 'data-status': t.status },
      el('td', {}, t.occurred_at), el('td', {}, t.wo_id || ''),
      el('td', {}, t.consumed.map((q) => `${q.lot} ${qty(q.quantity)}`).join(', ')),
      el('td', {}, t.produced.map((q) => `${q.lot} ${qty(q.quantity)}`).join(', ')),
      el('td', {}, typeof t.deviation === 'number' ? `${(t.deviation * 100).toFixed(1)} %` : ''),
      el('td', {}, `±${(t.tolerance * 100).toFixed(1)} %`),
      el('td', { class: 'balance-status' }, t.status === 'off' ? 'OFF BALANCE' : t.status)));
    this.result.replaceChildren(
      el('section', { class: 'pane' }, summary, graph(trace, flaggedLots)),
      el('section', { class: 'pane' }, el('h3', {}, 'Mass balance per transform'),
        balances.length ? el('table', { id: 'trace-balances' },
          el('thead', {}, el('tr', {}, ['Occurred', 'Order', 'Consumed', 'Produced', 'Deviation', 'Tolerance', 'Status'].map((h) => el('th', {}, h)))),
          el('tbody', {}, balances)) : el('p', { class: 'hint' }, 'No transform in this trace.')));
  }
}

// Columns by depth: backward traces put the lot traced on the right (its inputs flow into it),
// forward traces on the left (it flows out to the right).
function graph(trace, flaggedLots) {
  const backward = trace.query ? trace.query.direction !== 'forward' : true;
  const byDepth = new Map();
  for (const lot of trace.lots) {
    if (!byDepth.has(lot.depth)) byDepth.set(lot.depth, []);
    byDepth.get(lot.depth).push(lot);
  }
  const maxDepth = Math.max(0, ...byDepth.keys());
  const rows = Math.max(1, ...[...byDepth.values()].map((lots) => lots.length));
  const width = PAD * 2 + (maxDepth + 1) * NODE_W + maxDepth * COL_GAP;
  const height = PAD * 2 + rows * NODE_H + (rows - 1) * ROW_GAP;
  const root = svg('svg', { id: 'trace-graph', width, height, viewBox: `0 0 ${width} ${height}`, role: 'img' });
  const place = new Map();
  for (const [depth, lots] of byDepth) {
    const column = backward ? maxDepth - depth : depth;
    const x = PAD + column * (NODE_W + COL_GAP);
    const offset = (rows - lots.length) * (NODE_H + ROW_GAP) / 2;
    lots.forEach((lot, i) => place.set(lot.lot_id, { x, y: PAD + offset + i * (NODE_H + ROW_GAP), lot }));
  }
  for (const edge of trace.edges) {
    const from = place.get(edge.from);
    const to = place.get(edge.to);
    if (!from || !to) continue;
    // Material flows from the input lot to the output lot; a self edge (rework) is a loop.
    const [x1, y1] = [from.x + NODE_W, from.y + NODE_H / 2];
    const [x2, y2] = [to.x, to.y + NODE_H / 2];
    const d = edge.from === edge.to
      ? `M${from.x + NODE_W / 2},${from.y} c-30,-30 30,-30 0,0`
      : `M${x1},${y1} C${x1 + COL_GAP / 2},${y1} ${x2 - COL_GAP / 2},${y2} ${x2},${y2}`;
    const path = svg('path', { d, class: 'edge', 'data-from': edge.from, 'data-to': edge.to });
    path.append(svg('title', {}, `${edge.kind}${edge.wo_id ? ` (${edge.wo_id})` : ''}: ${qty(edge.quantity)} at ${edge.occurred_at}`));
    root.append(path);
  }
  for (const { x, y, lot } of place.values()) {
    const record = lot.lot || {};
    const group = svg('g', { class: `lot${flaggedLots.has(lot.lot_id) ? ' flagged' : ''}${lot.depth === 0 ? ' start' : ''}`, 'data-lot': lot.lot_id, 'data-depth': lot.depth });
    group.append(svg('rect', { x, y, width: NODE_W, height: NODE_H, rx: 5 }));
    group.append(svg('text', { x: x + 8, y: y + 18, class: 'lot-id' }, lot.lot_id));
    group.append(svg('text', { x: x + 8, y: y + 36, class: 'lot-info' },
      `${record.material || '?'} · ${qty(record.quantity)}${record.status ? ` · ${record.status}` : ''}`));
    group.append(svg('title', {}, `depth ${lot.depth}${lot.created_at ? `, created ${lot.created_at}` : ''}`));
    root.append(group);
  }
  return el('div', { class: 'graph' }, root);
}
