// A collapsible JSON viewer built from <details> elements (keyboard operable as is).

function scalar(value) {
  const span = document.createElement('span');
  if (typeof value === 'string') {
    span.className = 's';
    span.textContent = JSON.stringify(value);
  } else {
    span.className = 'v';
    span.textContent = String(value);
  }
  return span;
}

function node(key, value, depth) {
  const isObject = value !== null && typeof value === 'object';
  if (!isObject) {
    const line = document.createElement('div');
    if (key !== null) {
      const k = document.createElement('span');
      k.className = 'k';
      k.textContent = `${key}: `;
      line.append(k);
    }
    line.append(scalar(value));
    return line;
  }
  const entries = Array.isArray(value) ? value.map((v, i) => [i, v]) : Object.entries(value);
  const details = document.createElement('details');
  details.open = depth < 2;
  const summary = document.createElement('summary');
  const label = Array.isArray(value) ? `[${entries.length}]` : `{${entries.length}}`;
  summary.textContent = key === null ? label : `${key}: ${label}`;
  details.append(summary);
  for (const [k, v] of entries) details.append(node(k, v, depth + 1));
  return details;
}

export function jsonView(value) {
  const box = document.createElement('div');
  box.className = 'json';
  box.append(node(null, value === undefined ? null : value, 0));
  return box;
}
