// Talking to the server: JSON GETs under /api/v1/console/ and one server-sent event stream
// whose watch list (the topics the page shows) is set by the view.

const BASE = '/api/v1/console';

export async function getJson(endpoint, params = {}) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const one of Array.isArray(value) ? value : [value]) query.append(key, one);
  }
  const response = await fetch(`${BASE}/${endpoint}?${query}`);
  const body = await response.json();
  if (!response.ok) throw new Error(body.error || `${response.status}`);
  return body;
}

// Builds an element: el('td', {class: 'x', title: 't'}, 'text', otherNode). Text is always
// text (never parsed as HTML), so payloads cannot inject markup.
export function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null || value === false) continue;
    if (key.startsWith('on')) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value === true ? '' : value);
  }
  for (const child of children.flat()) {
    if (child === undefined || child === null) continue;
    node.append(child instanceof Node ? child : String(child));
  }
  return node;
}

// The reason of a failed call to another service's API on this HTTP port. A 404 without an
// error body means no such route here: that service runs elsewhere (e.g. `uns console` alone).
export function failure(response, body, service) {
  if (body && body.error) return body.error;
  if (response.status === 404) return `HTTP 404: the ${service} API is not served on this port (it is with uns up)`;
  return `HTTP ${response.status}`;
}

export function formatTime(ms) {
  if (ms === null || ms === undefined) return '';
  const date = new Date(ms);
  const pad = (n, w = 2) => String(n).padStart(w, '0');
  return `${date.getFullYear()}-${pad(date.getMonth() + 1)}-${pad(date.getDate())} `
    + `${pad(date.getHours())}:${pad(date.getMinutes())}:${pad(date.getSeconds())}.${pad(date.getMilliseconds(), 3)}`;
}

// A view redrawn from the server whenever the live stream says something changed ('tree') or
// events were skipped ('resync'), one refresh at a time. A subclass calls follow(live) once its
// elements exist and gives update() (read and draw) and failed(err) (show the error).
export class Refreshing {
  follow(live) {
    this.unsubscribe = [live.on('tree', () => this.refresh()), live.on('resync', () => this.refresh())];
    this.refresh();
  }

  unmount() {
    for (const off of this.unsubscribe || []) off();
  }

  async refresh() {
    if (this.busy) return;
    this.busy = true;
    try {
      await this.update();
    } catch (err) {
      this.failed(err);
    } finally {
      this.busy = false;
    }
  }
}

// The live connection: one EventSource, reopened when the watch list changes. Handlers get
// 'topic' (a watched topic's new message), 'tree' (something changed, at most once a second)
// and 'resync' (events were skipped: re-read what is shown).
export class Live {
  constructor(indicator) {
    this.indicator = indicator;
    this.watch = [];
    this.handlers = { topic: [], tree: [], resync: [] };
    this.source = null;
    this.open();
  }

  on(kind, handler) {
    this.handlers[kind].push(handler);
    return () => {
      this.handlers[kind] = this.handlers[kind].filter((h) => h !== handler);
    };
  }

  setWatch(topics) {
    const next = [...new Set(topics)].sort();
    if (next.join('\n') === this.watch.join('\n')) return;
    this.watch = next;
    this.open();
  }

  open() {
    if (this.source) this.source.close();
    const query = new URLSearchParams();
    for (const topic of this.watch) query.append('watch', topic);
    const source = new EventSource(`${BASE}/events?${query}`);
    this.source = source;
    this.status('connecting…', 'connecting');
    for (const kind of Object.keys(this.handlers)) {
      source.addEventListener(kind, (event) => {
        const data = JSON.parse(event.data);
        if (kind === 'tree') this.status(`live · ${data.n_topics} topics`, 'ok');
        for (const handler of this.handlers[kind]) handler(data);
      });
    }
    source.onerror = () => this.status('reconnecting…', 'down');
  }

  status(text, state) {
    // Written only when changed: a new text node costs a layout of the page.
    if (this.indicator.textContent !== text) this.indicator.textContent = text;
    if (this.indicator.dataset.state !== state) this.indicator.dataset.state = state;
  }
}
