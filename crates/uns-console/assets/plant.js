// The plant view: the ISA-95 tree from the retained `_meta` documents, each node with its state
// (coloured by category, since when, reason), its counters and its running order; beside it the
// services' health (`uns/v1/_services/*`) and the broker's `$SYS` figures. One GET of
// /api/v1/console/plant, repeated on the server's `tree` event (at most once a second).

import { el, formatTime, getJson, Refreshing } from './api.js';

export const plantView = {
  id: 'plant',
  title: 'Plant',
  mount(container, live) {
    const view = new PlantView(container, live);
    return { unmount: () => view.unmount() };
  },
};

// "3 min", "2 h 5 min": how long a state has lasted.
export function duration(ms) {
  if (!(ms >= 0)) return '';
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${s % 60} s`;
  const h = Math.floor(m / 60);
  return `${h} h ${m % 60} min`;
}

function qty(quantity) {
  if (!quantity || quantity.error) return quantity && quantity.error ? '?' : '';
  return `${quantity.qty}`;
}

function leaf(location) {
  return location.split('/').pop();
}

class PlantView extends Refreshing {
  constructor(container, live) {
    super();
    this.tree = el('section', { id: 'plant-tree', class: 'pane' }, el('p', { class: 'hint' }, 'Loading…'));
    this.services = el('section', { id: 'services', class: 'pane' });
    this.sys = el('section', { id: 'sys', class: 'pane' });
    container.append(el('div', { class: 'plant' }, this.tree, el('div', { class: 'main' }, this.services, this.sys)));
    this.follow(live);
  }

  async update() {
    const data = await getJson('plant');
    this.render(data);
  }

  failed(err) {
    this.tree.replaceChildren(el('p', { class: 'error' }, `Plant: ${err.message}`));
  }

  render(data) {
    const now = Date.now();
    const minDepth = Math.min(...data.nodes.map((n) => n.depth));
    const nodes = data.nodes.map((node) => nodeRow(node, node.depth - minDepth, now));
    const withState = data.nodes.filter((n) => n.state && !n.state.error);
    const down = withState.filter((n) => !['running'].includes(n.state.state.category));
    this.tree.replaceChildren(
      el('div', { class: 'bar' }, el('h2', {}, 'Plant'),
        el('span', { class: 'hint' }, `${data.nodes.length} nodes from _meta, ${withState.length} with a state, ${down.length} not running`)),
      data.nodes.length === 0 ? el('p', { class: 'hint' }, 'No _meta or _state on the broker yet.')
        : el('ul', { class: 'plant-tree' }, nodes));

    const services = data.services.map(({ topic, health, arrival_ms: arrival }) => {
      if (health.error) return el('tr', { class: 'service error' }, el('td', {}, topic), el('td', { colspan: 5 }, health.error));
      return el('tr', { class: 'service', 'data-service': health.service },
        el('td', {}, health.service),
        el('td', { class: 'status' }, el('span', { class: `health ${health.status}` }, health.status)),
        el('td', {}, health.version),
        el('td', { title: `received ${formatTime(arrival)}` }, health.started_at),
        el('td', {}, health.restarts || 0),
        el('td', { class: 'error' }, health.last_error || ''));
    });
    this.services.replaceChildren(
      el('div', { class: 'bar' }, el('h2', {}, 'Services'), el('span', { class: 'hint' }, 'retained uns/v1/_services/*')),
      el('table', { id: 'services-table' },
        el('thead', {}, el('tr', {}, ['Service', 'Status', 'Version', 'Started', 'Restarts', 'Last error'].map((h) => el('th', {}, h)))),
        el('tbody', {}, services)));

    const sys = data.sys.map((figure) => el('tr', { class: 'sys', 'data-name': figure.name },
      el('th', {}, figure.name), el('td', { class: 'sys-value' }, figure.value),
      el('td', { class: 'hint' }, formatTime(figure.arrival_ms))));
    this.sys.replaceChildren(
      el('div', { class: 'bar' }, el('h2', {}, 'Broker'), el('span', { class: 'hint' }, '$SYS/#')),
      sys.length ? el('table', { id: 'sys-table', class: 'props' }, el('tbody', {}, sys))
        : el('p', { class: 'hint' }, 'No $SYS figures yet.'));
  }
}

function nodeRow(node, indent, now) {
  const meta = node.meta && !node.meta.error ? node.meta : null;
  const title = meta ? meta.display_name : leaf(node.location);
  const parts = [
    el('span', { class: 'node-name' }, title),
    el('span', { class: 'level' }, meta ? meta.level : (node.meta && node.meta.error ? 'bad _meta' : 'no _meta')),
  ];
  const state = node.state;
  let category = null;
  if (state && state.error) {
    parts.push(el('span', { class: 'error' }, state.error));
  } else if (state) {
    category = state.state.category;
    const since = Date.parse(state.since);
    parts.push(el('span', { class: `state-chip cat-${category}`, title: `mode ${state.mode}` },
      el('span', { class: 'state-category' }, category),
      state.state.name ? ` · ${state.state.name}` : ''));
    parts.push(el('span', { class: 'since', title: state.since }, `since ${formatTime(since)} (${duration(now - since)})`));
    if (state.state.reason) parts.push(el('span', { class: 'reason' }, state.state.reason));
  }
  const counts = Object.entries(node.counts || {});
  if (counts.length) {
    parts.push(el('span', { class: 'counts' }, counts.map(([kind, total]) => el('span', { class: 'count-figure', 'data-kind': kind }, `${kind} ${qty(total)}`))));
  }
  if (node.active_order && node.active_order.id) {
    const order = node.active_order;
    parts.push(el('a', { class: 'active-order', href: '#/orders', title: 'running order' },
      `▶ ${order.id} ${order.good ? order.good.qty : 0}/${order.planned ? order.planned.qty : '?'}`));
  }
  return el('li', {
    class: `plant-node${category ? ` has-state cat-${category}` : ''}`,
    'data-location': node.location,
    'data-category': category || undefined,
    style: `padding-left:${indent * 1.2}rem`,
    title: node.location,
  }, parts);
}
