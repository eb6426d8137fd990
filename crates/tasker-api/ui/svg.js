// The pictures: a DAG laid out by longest-path layering, a Gantt chart of attempts, and a
// bar chart. All plain SVG.

const NS = 'http://www.w3.org/2000/svg';

function el(name, attrs = {}, parent = null) {
  const node = document.createElementNS(NS, name);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  if (parent) parent.append(node);
  return node;
}

export const STATE_COLOURS = {
  pending: '#6b7280', in_progress: '#0b5cad', complete: '#1a7f37', error: '#c62828',
  cancelled: '#8a5a00', resolved_manually: '#6f42c1', template: '#334e68',
};

// Layers by longest path from a root: a node sits one layer right of its deepest parent.
// Iterative (Kahn's order), so deep chains do not recurse.
export function layers(nodes, edges) {
  const parents = new Map(nodes.map((n) => [n, []]));
  const children = new Map(nodes.map((n) => [n, []]));
  for (const [a, b] of edges) {
    if (parents.has(b) && children.has(a)) {
      parents.get(b).push(a);
      children.get(a).push(b);
    }
  }
  const level = new Map();
  const waiting = new Map(nodes.map((n) => [n, parents.get(n).length]));
  const queue = nodes.filter((n) => waiting.get(n) === 0);
  for (const n of queue) level.set(n, 0);
  for (let i = 0; i < queue.length; i += 1) {
    const n = queue[i];
    for (const c of children.get(n)) {
      level.set(c, Math.max(level.get(c) || 0, level.get(n) + 1));
      waiting.set(c, waiting.get(c) - 1);
      if (waiting.get(c) === 0) queue.push(c);
    }
  }
  const columns = [];
  for (const n of nodes) {
    const l = level.has(n) ? level.get(n) : 0;
    (columns[l] = columns[l] || []).push(n);
  }
  return { level, columns: columns.map((c) => c || []) };
}

// `steps`: name -> { state, href, label }. Returns an <svg> whose nodes are links.
export function dag(nodes, edges, steps, title) {
  const { level, columns } = layers(nodes, edges);
  const W = 170; const H = 38; const GX = 60; const GY = 22; const PAD = 12;
  const pos = new Map();
  columns.forEach((column, x) => column.forEach((n, y) => {
    pos.set(n, { x: PAD + x * (W + GX), y: PAD + y * (H + GY) });
  }));
  const tallest = Math.max(1, ...columns.map((c) => c.length));
  const width = PAD * 2 + columns.length * W + Math.max(0, columns.length - 1) * GX;
  const height = PAD * 2 + tallest * H + (tallest - 1) * GY;
  const svg = el('svg', {
    class: 'dag', width, height, viewBox: `0 0 ${width} ${height}`, role: 'group',
    'aria-label': title,
  });
  el('title', {}, svg).textContent = title;
  const defs = el('defs', {}, svg);
  const marker = el('marker', {
    id: 'arrow', viewBox: '0 0 10 10', refX: 10, refY: 5, markerWidth: 7, markerHeight: 7,
    orient: 'auto-start-reverse',
  }, defs);
  el('path', { d: 'M 0 0 L 10 5 L 0 10 z', fill: '#5b6775' }, marker);
  for (const [a, b] of edges) {
    const p = pos.get(a); const q = pos.get(b);
    if (!p || !q) continue;
    const x1 = p.x + W; const y1 = p.y + H / 2; const x2 = q.x; const y2 = q.y + H / 2;
    const mx = (x1 + x2) / 2;
    el('path', {
      d: `M ${x1} ${y1} C ${mx} ${y1}, ${mx} ${y2}, ${x2} ${y2}`, fill: 'none',
      stroke: '#5b6775', 'stroke-width': 1.5, 'marker-end': 'url(#arrow)',
    }, svg);
  }
  for (const n of nodes) {
    const p = pos.get(n);
    const step = steps.get(n) || { state: 'template' };
    const group = step.href ? el('a', { href: step.href }, svg) : el('g', {}, svg);
    group.setAttribute('class', 'node');
    group.setAttribute('data-step', n);
    group.setAttribute('data-state', step.state);
    group.setAttribute('aria-label', `${n}: ${step.label || step.state}`);
    el('rect', {
      x: p.x, y: p.y, width: W, height: H, rx: 6,
      fill: STATE_COLOURS[step.state] || STATE_COLOURS.pending, stroke: '#1b1f24',
      'stroke-width': 1,
    }, group);
    const text = el('text', { x: p.x + 10, y: p.y + 16 }, group);
    text.textContent = n.length > 22 ? `${n.slice(0, 21)}…` : n;
    const sub = el('text', { x: p.x + 10, y: p.y + 31, 'font-size': 11 }, group);
    sub.textContent = step.label || step.state;
    el('title', {}, group).textContent = `${n} (${step.label || step.state}), level ${level.get(n) || 0}`;
  }
  return svg;
}

// `rows`: [{ label, start, end, state, tip }] with times in ms.
export function gantt(rows, title) {
  const LABEL = 180; const W = 640; const ROW = 22; const PAD = 8;
  const starts = rows.map((r) => r.start);
  const ends = rows.map((r) => r.end);
  const t0 = Math.min(...starts); const t1 = Math.max(...ends, t0 + 1);
  const height = PAD * 2 + rows.length * ROW + 18;
  const svg = el('svg', {
    class: 'gantt', width: LABEL + W + PAD * 2, height, role: 'img', 'aria-label': title,
  });
  el('title', {}, svg).textContent = title;
  rows.forEach((r, i) => {
    const y = PAD + i * ROW;
    el('text', { x: PAD, y: y + 15 }, svg).textContent = r.label;
    const x = LABEL + ((r.start - t0) / (t1 - t0)) * W;
    const w = Math.max(3, ((r.end - r.start) / (t1 - t0)) * W);
    const bar = el('rect', {
      x, y: y + 3, width: w, height: ROW - 6, rx: 3,
      fill: STATE_COLOURS[r.state] || STATE_COLOURS.pending,
    }, svg);
    el('title', {}, bar).textContent = r.tip;
  });
  el('text', { x: LABEL, y: height - 4 }, svg).textContent = '0 ms';
  el('text', { x: LABEL + W - 70, y: height - 4 }, svg).textContent = `${Math.round(t1 - t0)} ms`;
  return svg;
}

// `buckets`: [{ label, a, b }]: `a` (throughput) and `b` (errors) side by side.
export function bars(buckets, title, names) {
  const W = 720; const H = 170; const PAD = 24;
  const max = Math.max(1, ...buckets.map((b) => Math.max(b.a, b.b)));
  const slot = (W - PAD * 2) / Math.max(1, buckets.length);
  const svg = el('svg', { class: 'chart', width: W, height: H + 30, role: 'img', 'aria-label': title });
  el('title', {}, svg).textContent = title;
  el('line', { x1: PAD, y1: H, x2: W - PAD, y2: H, stroke: '#8892a0' }, svg);
  buckets.forEach((b, i) => {
    const x = PAD + i * slot;
    const ha = (b.a / max) * (H - PAD);
    const hb = (b.b / max) * (H - PAD);
    el('rect', { x: x + 2, y: H - ha, width: slot / 2 - 3, height: ha, fill: '#1a7f37' }, svg)
      .append(Object.assign(document.createElementNS(NS, 'title'), { textContent: `${b.label}: ${b.a} ${names[0]}` }));
    el('rect', { x: x + slot / 2, y: H - hb, width: slot / 2 - 3, height: hb, fill: '#c62828' }, svg)
      .append(Object.assign(document.createElementNS(NS, 'title'), { textContent: `${b.label}: ${b.b} ${names[1]}` }));
    if (i % 2 === 0) el('text', { x: x + 2, y: H + 14 }, svg).textContent = b.label;
  });
  el('text', { x: PAD, y: 12 }, svg).textContent = `max ${max}`;
  return svg;
}
