// The work-order view: every `_wo/{id}` document the console holds (status, quantities, where it
// runs), newest change first; a selected order's detail with its lifecycle events and the
// lifecycle actions, posted to the workorders service's API (which decides and answers; the new
// status then arrives over MQTT like any other change). Re-read on the server's `tree` event.
// Below the list, the ERP bridge's dead letters (confirmations the ERP refused until the last
// attempt), each with a Replay button posted to the bridge's API. An order's lots link to the
// trace view.

import { el, failure, formatTime, getJson, Refreshing } from './api.js';

const VERBS = ['release', 'start', 'hold', 'resume', 'complete', 'close', 'cancel'];

export const ordersView = {
  id: 'orders',
  title: 'Work orders',
  mount(container, live) {
    const view = new OrdersView(container, live);
    return { unmount: () => view.unmount() };
  },
};

function qty(quantity) {
  return quantity ? `${quantity.qty} ${quantity.uom}` : '';
}

class OrdersView extends Refreshing {
  constructor(container, live) {
    super();
    this.selected = null;
    this.list = el('section', { id: 'orders-list', class: 'pane' }, el('p', { class: 'hint' }, 'Loading…'));
    this.detail = el('section', { id: 'order-detail', class: 'pane' },
      el('p', { class: 'hint' }, 'Select a work order.'));
    this.dead = el('section', { id: 'dead-letters', class: 'pane' });
    this.deadMessage = el('p', { id: 'dead-letter-result', class: 'hint' });
    this.deadReadAt = 0;
    container.append(el('div', { class: 'orders' }, el('div', { class: 'main' }, this.list, this.dead), this.detail));
    this.follow(live);
  }

  async update() {
    const data = await getJson('work-orders');
    this.renderList(data);
    if (this.selected) await this.renderDetail(this.selected);
    // The bridge reads its store for this: every few seconds is enough.
    if (Date.now() - this.deadReadAt > 3000) {
      this.deadReadAt = Date.now();
      await this.renderDeadLetters();
    }
  }

  failed(err) {
    this.list.replaceChildren(el('p', { class: 'error' }, `Work orders: ${err.message}`));
  }

  renderList(data) {
    const rows = data.work_orders.map(({ topic, order }) => el('tr', {
      class: `order${topic === this.selected ? ' selected' : ''}`, 'data-id': order.id, 'data-topic': topic,
      onclick: () => { this.selected = topic; this.refresh(); },
    },
    el('td', { class: 'order-id' }, order.id),
    el('td', {}, order.erp_ref || ''),
    el('td', {}, order.material),
    el('td', { class: 'status' }, el('span', { class: `status-chip ${order.status}` }, order.status)),
    el('td', { class: 'good' }, `${order.quantities.good.qty} of ${qty(order.quantities.planned)}`),
    el('td', {}, qty(order.quantities.scrap)),
    el('td', { class: 'scope' }, order.hierarchy_scope),
    el('td', {}, order.updated_at)));
    const invalid = data.invalid.map((bad) => el('li', { class: 'error' }, `${bad.topic}: ${bad.error}`));
    this.list.replaceChildren(...[
      el('div', { class: 'bar' }, el('h2', {}, 'Work orders'),
        el('span', { class: 'hint' }, `${data.work_orders.length} from retained _wo topics`)),
      rows.length === 0 ? el('p', { class: 'hint' }, 'No work order on the broker yet.')
        : el('table', { id: 'orders-table' },
          el('thead', {}, el('tr', {}, ['Order', 'ERP', 'Material', 'Status', 'Good', 'Scrap', 'Where', 'Updated']
            .map((name) => el('th', {}, name)))),
          el('tbody', {}, rows)),
      invalid.length ? el('ul', {}, invalid) : null].filter(Boolean));
  }

  async renderDetail(topic) {
    let data;
    try {
      data = await getJson('work-order', { topic });
    } catch (err) {
      this.detail.replaceChildren(el('p', { class: 'error' }, `${topic}: ${err.message}`));
      return;
    }
    const { order } = data;
    const q = order.quantities;
    this.message = this.message || el('p', { id: 'order-action-result', class: 'hint' });
    const actions = el('div', { class: 'bar actions' }, VERBS.map((verb) => el('button', {
      'data-verb': verb, onclick: () => this.act(order.id, verb),
    }, verb)));
    const events = data.events.map((item) => {
      if (item.error) return el('tr', { class: 'error' }, el('td', {}, formatTime(item.arrival_ms)), el('td', { colspan: 2 }, item.error));
      const event = item.event;
      let what = '';
      if (event.type === 'status_changed') what = `${event.from} → ${event.to}`;
      else if (event.type === 'confirmation_requested') what = `${event.final ? 'final' : 'partial'} #${event.sequence}: good ${qty(event.good)}, scrap ${qty(event.scrap)}`;
      else if (event.type === 'confirmation_failed') what = `${event.error} (attempt ${event.attempts}${event.dead_lettered ? ', dead-lettered' : ''})`;
      else if (event.type === 'confirmation_posted') what = event.erp_document || '';
      return el('tr', { class: 'event', 'data-type': event.type },
        el('td', {}, event.occurred_at || formatTime(item.arrival_ms)), el('td', {}, event.type), el('td', {}, what));
    });
    const lots = (order.lots || []).map((lot) => el('tr', {},
      el('td', {}, el('a', { href: `#/trace?${new URLSearchParams({ lot: lot.lot, direction: lot.material_use === 'produced' ? 'backward' : 'forward' })}` }, lot.lot)), el('td', {}, lot.material), el('td', {}, qty(lot.quantity)), el('td', {}, lot.material_use)));
    this.detail.replaceChildren(...[
      el('h2', { id: 'order-title' }, `${order.id}`, el('span', { id: 'order-status', class: `status-chip ${order.status}` }, order.status)),
      el('table', { class: 'props' }, el('tbody', {},
        [['Topic', data.topic], ['ERP reference', order.erp_ref || ''], ['Material', order.material],
          ['Where', order.hierarchy_scope], ['Planned', qty(q.planned)], ['Good', qty(q.good)],
          ['Scrap', qty(q.scrap)], ['Rework', qty(q.rework)], ['Updated', order.updated_at]]
          .map(([name, value]) => el('tr', {}, el('th', {}, name), el('td', { 'data-field': name }, value))))),
      el('h3', {}, 'Actions'), actions, this.message,
      lots.length ? el('h3', {}, 'Lots') : null,
      lots.length ? el('table', {}, el('tbody', {}, lots)) : null,
      el('h3', {}, `Events (${data.events.length} in the console's history of ${data.events_topic})`),
      el('table', { id: 'order-events' }, el('tbody', {}, events))].filter(Boolean));
  }

  async renderDeadLetters() {
    let letters;
    try {
      const response = await fetch('/api/v1/dead-letters');
      letters = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(failure(response, letters, 'ERP bridge'));
    } catch (err) {
      this.dead.replaceChildren(el('h2', {}, 'ERP dead letters'), el('p', { class: 'error' }, `ERP bridge: ${err.message}`));
      return;
    }
    const rows = letters.map((letter) => el('tr', { class: 'dead-letter', 'data-id': letter.id },
      el('td', {}, letter.id), el('td', {}, letter.wo_id || ''), el('td', {}, letter.attempts),
      el('td', {}, letter.dead_at || ''), el('td', { class: 'error' }, letter.last_error || ''),
      el('td', {}, el('button', { 'data-replay': letter.id, onclick: () => this.replay(letter.id) }, 'Replay'))));
    this.dead.replaceChildren(...[
      el('div', { class: 'bar' }, el('h2', {}, 'ERP dead letters'),
        el('span', { class: 'hint' }, `${letters.length} confirmations the ERP did not accept`)),
      rows.length ? el('table', { id: 'dead-letters-table' },
        el('thead', {}, el('tr', {}, ['Entry', 'Order', 'Attempts', 'Dead since', 'Last error', ''].map((h) => el('th', {}, h)))),
        el('tbody', {}, rows)) : el('p', { class: 'hint' }, 'None: every confirmation reached the ERP or is still being retried.'),
      this.deadMessage]);
  }

  async replay(id) {
    this.deadMessage.className = 'hint';
    this.deadMessage.textContent = `replay ${id}…`;
    try {
      const response = await fetch(`/api/v1/dead-letters/${encodeURIComponent(id)}/replay`, { method: 'POST' });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(failure(response, body, 'ERP bridge'));
      this.deadMessage.textContent = `replay ${id}: queued again`;
    } catch (err) {
      this.deadMessage.className = 'error';
      this.deadMessage.textContent = `replay ${id}: ${err.message}`;
    }
    this.deadReadAt = 0;
    this.refresh();
  }

  async act(id, verb) {
    this.message.className = 'hint';
    this.message.textContent = `${verb}…`;
    try {
      const response = await fetch(`/api/v1/work-orders/${encodeURIComponent(id)}/${verb}`, { method: 'POST' });
      const body = await response.json().catch(() => ({}));
      if (!response.ok) throw new Error(failure(response, body, 'work-order'));
      this.message.textContent = `${verb}: accepted`;
    } catch (err) {
      this.message.className = 'error';
      this.message.textContent = `${verb}: ${err.message}`;
    }
  }
}
