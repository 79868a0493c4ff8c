// The topic browser: a lazy tree of every topic on the broker (children fetched on expand, with
// topic counts per branch and a filter by text or MQTT wildcard), the selected topic's latest
// message (pretty-printed, retained flag, QoS, MQTT 5 properties, arrival time, Sparkplug decoded
// through births, schema check) with its history, and a chart overlaying numeric topics. Live
// through the server's events; CSV downloads of the history and of the chart.

import { el, formatTime, getJson } from './api.js';
import { Chart } from './chart.js';
import { download, toCsv } from './csv.js';

const HISTORY_ROWS = 50;

export const topicsView = {
  id: 'topics',
  title: 'Topics',
  mount(container, live) {
    const browser = new TopicBrowser(container, live);
    return { unmount: () => browser.unmount() };
  },
};

class TopicBrowser {
  constructor(container, live) {
    this.live = live;
    this.expanded = new Set();
    this.selected = null;
    this.selectedData = null;
    this.filter = {};
    this.refreshing = false;

    this.filterInput = el('input', {
      id: 'filter', type: 'search', placeholder: 'Filter: text, or an MQTT filter such as +/+/_state or spBv1.0/#',
      oninput: () => this.filterChanged(),
    });
    this.filterInfo = el('div', { id: 'filter-info', class: 'hint' });
    this.treeRoot = el('ul', { id: 'tree', class: 'tree', role: 'tree' });
    this.pane = el('section', { id: 'topic-pane', class: 'pane' },
      el('p', { class: 'hint' }, 'Select a topic in the tree.'));
    const chartBox = el('section', { id: 'chart', class: 'pane chart' });
    const chartBar = el('div', { class: 'bar' },
      el('h2', {}, 'Chart'),
      el('button', { id: 'download-chart-csv', onclick: () => this.downloadChart() }, 'Download CSV'));
    this.chart = new Chart(chartBox, (name) => this.removeFromChart(name));
    container.append(el('div', { class: 'topics' },
      el('aside', { class: 'side' }, this.filterInput, this.filterInfo, this.treeRoot),
      el('div', { class: 'main' }, this.pane, el('div', { class: 'pane' }, chartBar, chartBox))));

    this.unsubscribe = [
      live.on('tree', () => this.refresh()),
      live.on('resync', () => this.resync()),
      live.on('topic', (data) => this.topicUpdate(data)),
    ];
    this.renderLevel(this.treeRoot, null);
  }

  unmount() {
    for (const off of this.unsubscribe) off();
    this.live.setWatch([]);
  }

  filterParams() {
    return this.filter;
  }

  filterChanged() {
    clearTimeout(this.filterTimer);
    this.filterTimer = setTimeout(() => {
      const text = this.filterInput.value.trim();
      this.filter = /[+#]/.test(text) ? { match: text } : (text ? { q: text } : {});
      this.renderLevel(this.treeRoot, null);
    }, 250);
  }

  // Re-reads every open level (counts and previews change), at most one pass at a time.
  async refresh() {
    if (this.refreshing) return;
    this.refreshing = true;
    try {
      await this.renderLevel(this.treeRoot, null);
    } finally {
      this.refreshing = false;
    }
  }

  async resync() {
    await this.refresh();
    if (this.selected) this.select(this.selected);
    for (const name of this.chart.names()) this.addToChart(name);
  }

  // Fills `list` with the children of `path` (null: the first level), and the open ones below.
  async renderLevel(list, path) {
    let listing;
    try {
      listing = await getJson('tree', { path, limit: 2000, ...this.filterParams() });
    } catch (err) {
      list.replaceChildren(el('li', { class: 'error' }, String(err.message)));
      return;
    }
    if (path === null) {
      const { q, match } = this.filter;
      const info = q || match
        ? `${listing.n_topics} of ${listing.n_topics_all} topics match`
        : `${listing.n_topics_all} topics`;
      // Setting the same text still replaces the text node and lays out the whole side panel
      // again (every row of an open level), so only a change is written.
      if (this.filterInfo.textContent !== info) this.filterInfo.textContent = info;
    }
    // Nodes already shown are updated in place (never rebuilt), so a click, the focus and the
    // open branches survive the once-a-second refresh.
    const shown = new Map();
    for (const item of list.children) if (item.dataset.path !== undefined) shown.set(item.dataset.path, item);
    const items = listing.children.map((child) => {
      const item = shown.get(child.path) || this.renderNode(child);
      this.updateNode(item, child);
      return item;
    });
    if (listing.n_left_out) items.push(el('li', { class: 'hint' }, `… ${listing.n_left_out} more (use the filter)`));
    const same = items.length === list.children.length && items.every((item, i) => list.children[i] === item);
    if (!same) list.replaceChildren(...items);
    await Promise.all(listing.children
      .filter((child) => child.has_children && this.expanded.has(child.path))
      .map((child) => this.renderLevel(list.querySelector(`:scope > li[data-path="${CSS.escape(child.path)}"] > ul`), child.path)));
  }

  renderNode(child) {
    const item = el('li', { class: 'node', 'data-path': child.path, role: 'treeitem' });
    item.child = child;
    const twisty = el('button', { class: 'twisty', onclick: () => this.toggle(item, item.child) });
    const label = el('span', {
      class: 'label', tabindex: 0,
      onclick: () => (item.child.is_topic ? this.select(item.child.path) : this.toggle(item, item.child)),
      onkeydown: (event) => { if (event.key === 'Enter') label.click(); },
    }, child.name === '' ? '(empty)' : child.name);
    item.append(twisty, label,
      el('span', { class: 'count', title: 'topics in this branch' }),
      el('span', { class: 'preview' }),
      el('ul', { role: 'group', hidden: true }));
    return item;
  }

  updateNode(item, child) {
    item.child = child;
    const open = this.expanded.has(child.path) && child.has_children;
    // Unchanged since the last refresh: nothing to touch (a level of 2 000 topics is re-read
    // every second while open; rewriting every node each time blocked the page for ~200 ms).
    const key = `${child.n_topics}|${child.has_children}|${child.is_topic}|${open}|${this.selected === child.path}|${child.preview ?? ''}`;
    if (item.renderKey === key) return;
    item.renderKey = key;
    item.classList.toggle('topic', child.is_topic);
    item.classList.toggle('selected', this.selected === child.path);
    if (child.has_children) item.setAttribute('aria-expanded', String(open));
    else item.removeAttribute('aria-expanded');
    const twisty = item.querySelector(':scope > .twisty');
    twisty.disabled = !child.has_children;
    twisty.setAttribute('aria-label', open ? 'Collapse' : 'Expand');
    twisty.textContent = child.has_children ? (open ? '▾' : '▸') : '·';
    const count = item.querySelector(':scope > .count');
    count.hidden = !child.has_children;
    count.textContent = child.n_topics;
    const preview = item.querySelector(':scope > .preview');
    preview.hidden = child.preview === undefined;
    preview.textContent = child.preview ?? '';
    item.querySelector(':scope > ul').hidden = !open;
  }

  async toggle(item, child) {
    if (!child.has_children) return;
    const list = item.querySelector(':scope > ul');
    const twisty = item.querySelector(':scope > .twisty');
    if (this.expanded.has(child.path)) {
      this.expanded.delete(child.path);
      list.hidden = true;
      twisty.textContent = '▸';
      item.setAttribute('aria-expanded', 'false');
      return;
    }
    this.expanded.add(child.path);
    twisty.textContent = '▾';
    item.setAttribute('aria-expanded', 'true');
    list.hidden = false;
    list.replaceChildren(el('li', { class: 'hint' }, 'loading…'));
    await this.renderLevel(list, child.path);
  }

  watch() {
    this.live.setWatch([this.selected, ...this.chart.names()].filter(Boolean));
  }

  async select(name) {
    this.selected = name;
    for (const node of this.treeRoot.querySelectorAll('li.selected')) node.classList.remove('selected');
    const node = this.treeRoot.querySelector(`li[data-path="${CSS.escape(name)}"]`);
    if (node) node.classList.add('selected');
    this.watch();
    try {
      this.selectedData = await getJson('topic', { name, history: 1000 });
    } catch (err) {
      this.pane.replaceChildren(el('p', { class: 'error' }, `${name}: ${err.message}`));
      return;
    }
    if (this.selected === name) this.renderPane();
  }

  topicUpdate(data) {
    if (this.chart.has(data.name) && data.point) this.chart.push(data.name, data.point.arrival_ms, data.point.value);
    if (data.name !== this.selected || !this.selectedData) return;
    this.selectedData.latest = data.latest;
    this.selectedData.n_messages = data.n_messages;
    if (data.point) {
      this.selectedData.history.push({ ...data.point, text: previewOf(data.latest) });
      if (this.selectedData.history.length > 1000) this.selectedData.history.shift();
    }
    this.renderPane();
  }

  renderPane() {
    const data = this.selectedData;
    const latest = data.latest;
    const numeric = typeof latest.value === 'number';
    const badges = el('div', { class: 'badges' },
      el('span', { id: 'badge-retained', class: `badge ${latest.retain ? 'on' : 'off'}` }, latest.retain ? 'retained' : 'not retained'),
      el('span', { id: 'badge-qos', class: 'badge' }, `QoS ${latest.qos}`),
      el('span', { class: 'badge' }, `${latest.size} bytes`),
      el('span', { class: 'badge' }, `${data.n_messages} messages`),
      el('span', { id: 'arrival', class: 'badge' }, `received ${formatTime(latest.arrival_ms)}`));
    const actions = el('div', { class: 'bar' },
      el('button', {
        id: 'add-to-chart', disabled: !numeric || this.chart.has(data.name),
        title: numeric ? 'Overlay this topic in the chart' : 'This payload has no number to chart',
        onclick: () => this.addToChart(data.name),
      }, 'Add to chart'),
      el('button', { id: 'download-topic-csv', onclick: () => this.downloadHistory() }, 'Download history CSV'));
    this.pane.replaceChildren(
      el('h2', { id: 'topic-name' }, data.name), badges, actions,
      propertiesTable(latest.properties),
      schemaCheck(latest.schema_check),
      el('h3', {}, latest.sparkplug ? 'Sparkplug B payload (decoded by topic namespace)' : 'Value'),
      valueView(latest),
      el('h3', {}, `History (${data.history.length} kept on the server, newest first)`),
      historyTable(data.history));
  }

  async addToChart(name) {
    let data;
    try {
      data = await getJson('topic', { name });
    } catch {
      return;
    }
    const points = data.history.filter((p) => typeof p.value === 'number').map((p) => ({ t: p.arrival_ms, v: p.value }));
    this.chart.set(name, points);
    this.watch();
    if (this.selectedData) this.renderPane();
  }

  removeFromChart(name) {
    this.chart.remove(name);
    this.watch();
    if (this.selectedData) this.renderPane();
  }

  downloadChart() {
    download('uns-chart.csv', toCsv(['topic', 'time', 'arrival_ms', 'value'], this.chart.rows()));
  }

  downloadHistory() {
    const data = this.selectedData;
    if (!data) return;
    const rows = data.history.map((p) => [data.name, new Date(p.arrival_ms).toISOString(), p.arrival_ms, p.value, p.text]);
    download(`${data.name.replaceAll('/', '_')}.csv`, toCsv(['topic', 'time', 'arrival_ms', 'value', 'payload'], rows));
  }
}

function previewOf(latest) {
  if (latest.json !== undefined) return JSON.stringify(latest.json).slice(0, 200);
  if (latest.text !== undefined) return latest.text.slice(0, 200);
  if (latest.sparkplug) return `(Sparkplug ${latest.sparkplug.kind})`;
  return `(${latest.size} bytes)`;
}

function propertiesTable(properties) {
  const rows = [];
  const add = (key, value) => rows.push(el('tr', {}, el('th', {}, key), el('td', {}, value)));
  if (properties.content_type) add('Content type', properties.content_type);
  if (properties.response_topic) add('Response topic', properties.response_topic);
  if (properties.correlation_data) add('Correlation data (hex)', properties.correlation_data);
  if (properties.payload_format_indicator !== undefined) add('Payload format', properties.payload_format_indicator === 1 ? 'UTF-8 text' : 'bytes');
  if (properties.message_expiry_interval !== undefined) add('Expires in', `${properties.message_expiry_interval} s`);
  for (const [key, value] of properties.user_properties || []) {
    rows.push(el('tr', { class: 'user-property' }, el('th', {}, `User property ${key}`), el('td', {}, value)));
  }
  if (rows.length === 0) return el('p', { id: 'topic-props', class: 'hint' }, 'No MQTT 5 properties.');
  return el('table', { id: 'topic-props', class: 'props' }, el('tbody', {}, rows));
}

function schemaCheck(check) {
  if (!check) return null;
  const verdict = !check.known ? 'unknown schema' : (check.valid ? 'valid' : 'INVALID');
  return el('div', { id: 'schema-check', class: `schema ${check.valid ? 'valid' : 'invalid'}` },
    el('strong', {}, `Schema ${check.schema}: ${verdict}`),
    check.errors.length ? el('ul', {}, check.errors.map((e) => el('li', {}, e))) : null);
}

function valueView(latest) {
  if (latest.sparkplug) return sparkplugView(latest.sparkplug);
  if (latest.json !== undefined) return el('pre', { id: 'topic-value', class: 'value' }, JSON.stringify(latest.json, null, 2));
  if (latest.text !== undefined) return el('pre', { id: 'topic-value', class: 'value' }, latest.text);
  return el('pre', { id: 'topic-value', class: 'value hex' }, `hex: ${latest.hex}`);
}

function sparkplugView(decoded) {
  const head = el('p', { class: 'hint' },
    `${decoded.kind}${decoded.group ? ` · group ${decoded.group}` : ''}${decoded.edge ? ` · edge ${decoded.edge}` : ''}`
    + `${decoded.device ? ` · device ${decoded.device}` : ''}${decoded.seq !== undefined && decoded.seq !== null ? ` · seq ${decoded.seq}` : ''}`
    + `${decoded.timestamp ? ` · ${formatTime(decoded.timestamp)}` : ''}`);
  if (decoded.error) return el('div', { id: 'topic-value' }, head, el('p', { class: 'error' }, decoded.error));
  if (!decoded.metrics) return el('pre', { id: 'topic-value', class: 'value' }, JSON.stringify(decoded, null, 2));
  const rows = decoded.metrics.map((m) => el('tr', { class: m.error ? 'metric error' : 'metric' },
    el('td', { class: 'metric-name' }, m.name ?? '(unknown)'),
    el('td', {}, m.alias ?? ''),
    el('td', {}, m.datatype ?? ''),
    el('td', { class: 'metric-value' }, JSON.stringify(m.value)),
    el('td', {}, m.historical ? 'historical' : ''),
    el('td', {}, m.timestamp ? formatTime(m.timestamp) : ''),
    el('td', { class: 'hint' }, m.error ?? (m.name_from === 'birth' ? 'name from birth' : ''))));
  return el('div', { id: 'topic-value' }, head, el('table', { id: 'sparkplug-metrics', class: 'metrics' },
    el('thead', {}, el('tr', {}, ['Metric', 'Alias', 'Datatype', 'Value', 'Flags', 'Timestamp', ''].map((h) => el('th', {}, h)))),
    el('tbody', {}, rows)));
}

function historyTable(history) {
  const rows = history.slice(-HISTORY_ROWS).reverse().map((p) => el('tr', {},
    el('td', {}, formatTime(p.arrival_ms)),
    el('td', {}, p.value ?? ''),
    el('td', { class: 'excerpt' }, p.text ?? '')));
  return el('table', { id: 'history', class: 'history' },
    el('thead', {}, el('tr', {}, el('th', {}, 'Received'), el('th', {}, 'Number'), el('th', {}, 'Payload'))),
    el('tbody', {}, rows));
}
