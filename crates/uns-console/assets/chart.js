// A line chart of numeric history drawn as SVG: several topics overlaid on one time axis and one
// value axis, each in its own colour, with a legend. Points are {t: arrival ms, v: number}.

import { el } from './api.js';

const SVG = 'http://www.w3.org/2000/svg';
const COLORS = ['#1f77b4', '#d62728', '#2ca02c', '#9467bd', '#ff7f0e', '#17becf', '#8c564b', '#e377c2'];
const HEIGHT = 280;
const MARGIN = { left: 64, right: 16, top: 12, bottom: 30 };
// Points kept per series in the page (the server keeps its own bounded history).
const MAX_POINTS = 5000;

function svg(tag, attrs = {}, text) {
  const node = document.createElementNS(SVG, tag);
  for (const [key, value] of Object.entries(attrs)) node.setAttribute(key, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

// About `count` round tick values covering [min, max].
function niceTicks(min, max, count) {
  if (min === max) { min -= 1; max += 1; }
  const raw = (max - min) / count;
  const magnitude = 10 ** Math.floor(Math.log10(raw));
  const step = [1, 2, 5, 10].map((m) => m * magnitude).find((s) => s >= raw);
  const ticks = [];
  for (let t = Math.ceil(min / step) * step; t <= max + step * 1e-9; t += step) ticks.push(+t.toPrecision(12));
  return ticks;
}

function timeLabel(ms) {
  const d = new Date(ms);
  return [d.getHours(), d.getMinutes(), d.getSeconds()].map((n) => String(n).padStart(2, '0')).join(':');
}

export class Chart {
  constructor(container, onRemove) {
    this.container = container;
    this.onRemove = onRemove;
    this.series = new Map();
    this.legend = el('ul', { id: 'chart-legend', class: 'legend' });
    this.plot = el('div', { class: 'plot' });
    container.append(this.legend, this.plot);
    this.draw();
  }

  names() { return [...this.series.keys()]; }

  has(name) { return this.series.has(name); }

  set(name, points) {
    const used = new Set([...this.series.values()].map((s) => s.color));
    const old = this.series.get(name);
    const color = old ? old.color : (COLORS.find((c) => !used.has(c)) || COLORS[this.series.size % COLORS.length]);
    this.series.set(name, { color, points: points.slice(-MAX_POINTS) });
    this.draw();
  }

  push(name, t, v) {
    const series = this.series.get(name);
    if (!series || typeof v !== 'number') return;
    const last = series.points[series.points.length - 1];
    if (last && last.t === t) return;
    series.points.push({ t, v });
    if (series.points.length > MAX_POINTS) series.points.shift();
    this.draw();
  }

  remove(name) {
    this.series.delete(name);
    this.draw();
  }

  // What is shown, as rows for CSV: topic, time (ISO 8601 UTC), ms, value.
  rows() {
    const rows = [];
    for (const [name, series] of this.series) {
      for (const { t, v } of series.points) rows.push([name, new Date(t).toISOString(), t, v]);
    }
    return rows;
  }

  draw() {
    this.legend.replaceChildren(...[...this.series].map(([name, series]) => el('li', { 'data-topic': name },
      el('span', { class: 'swatch', style: `background:${series.color}` }),
      el('span', { class: 'legend-name' }, name),
      el('span', { class: 'legend-last' }, series.points.length ? ` = ${series.points[series.points.length - 1].v}` : ''),
      el('button', { class: 'remove', title: 'Remove from chart', onclick: () => this.onRemove(name) }, '×'))));
    const width = Math.max(320, this.plot.clientWidth || 800);
    const root = svg('svg', { width, height: HEIGHT, viewBox: `0 0 ${width} ${HEIGHT}`, role: 'img' });
    const all = [...this.series.values()].flatMap((s) => s.points);
    if (all.length === 0) {
      root.append(svg('text', { x: width / 2, y: HEIGHT / 2, 'text-anchor': 'middle', class: 'empty' },
        'Select a numeric topic and press “Add to chart”; add more to overlay them.'));
      this.plot.replaceChildren(root);
      return;
    }
    let tMin = Math.min(...all.map((p) => p.t));
    let tMax = Math.max(...all.map((p) => p.t));
    if (tMin === tMax) { tMin -= 1000; tMax += 1000; }
    const values = all.map((p) => p.v);
    const yTicks = niceTicks(Math.min(...values), Math.max(...values), 5);
    const vMin = Math.min(yTicks[0], ...values);
    const vMax = Math.max(yTicks[yTicks.length - 1], ...values);
    const innerW = width - MARGIN.left - MARGIN.right;
    const innerH = HEIGHT - MARGIN.top - MARGIN.bottom;
    const x = (t) => MARGIN.left + ((t - tMin) / (tMax - tMin)) * innerW;
    const y = (v) => MARGIN.top + (1 - (v - vMin) / (vMax - vMin || 1)) * innerH;
    const axes = svg('g', { class: 'axes' });
    for (const tick of yTicks) {
      axes.append(svg('line', { x1: MARGIN.left, x2: width - MARGIN.right, y1: y(tick), y2: y(tick), class: 'grid' }));
      axes.append(svg('text', { x: MARGIN.left - 6, y: y(tick) + 4, 'text-anchor': 'end' }, String(tick)));
    }
    for (let i = 0; i <= 4; i += 1) {
      const t = tMin + ((tMax - tMin) * i) / 4;
      axes.append(svg('line', { x1: x(t), x2: x(t), y1: MARGIN.top, y2: HEIGHT - MARGIN.bottom, class: 'grid' }));
      const anchor = i === 0 ? 'start' : (i === 4 ? 'end' : 'middle');
      axes.append(svg('text', { x: x(t), y: HEIGHT - 10, 'text-anchor': anchor }, timeLabel(t)));
    }
    axes.append(svg('rect', { x: MARGIN.left, y: MARGIN.top, width: innerW, height: innerH, class: 'frame' }));
    root.append(axes);
    for (const [name, series] of this.series) {
      if (series.points.length === 0) continue;
      const d = series.points.map((p, i) => `${i ? 'L' : 'M'}${x(p.t).toFixed(1)},${y(p.v).toFixed(1)}`).join(' ');
      const line = svg('path', { d, class: 'series', stroke: series.color, 'data-topic': name });
      line.append(svg('title', {}, name));
      root.append(line);
      const last = series.points[series.points.length - 1];
      root.append(svg('circle', { cx: x(last.t), cy: y(last.v), r: 3, fill: series.color }));
    }
    this.plot.replaceChildren(root);
  }
}
