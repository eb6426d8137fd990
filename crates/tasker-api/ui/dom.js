// DOM helpers shared by the pages, and the action dialog.

import * as api from './api.js';

let cleanup = [];
let rerender = () => {};

// What runs after an action succeeds (the router's current page again).
export function setRerender(fn) {
  rerender = fn;
}

// Runs and forgets the leave handlers of the previous page.
export function leave() {
  for (const fn of cleanup.splice(0)) fn();
}

// Closes what the previous page opened (event streams, timers).
export function onLeave(fn) {
  cleanup.push(fn);
}

export function h(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith('on')) node.addEventListener(k.slice(2), v);
    else if (k === 'text') node.textContent = v;
    else node.setAttribute(k, v === true ? '' : v);
  }
  for (const child of children.flat()) {
    if (child === null || child === undefined || child === false) continue;
    node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return node;
}

export function stateBadge(state) {
  return h('span', { class: `state ${state}`, 'data-state': state }, state.replace('_', ' '));
}

export function when(iso) {
  return iso ? new Date(iso).toLocaleString() : '—';
}

export function showError(err) {
  return h('p', { class: 'error', role: 'alert' }, err.message || String(err));
}

// Asks for a reason (and, for a resolution, results JSON), then runs `act(reason, results)`.
export function confirmAction({ title, text, withResults = false }, act) {
  const dialog = document.getElementById('action-dialog');
  const form = document.getElementById('action-form');
  const reason = document.getElementById('action-reason');
  const resultsRow = document.getElementById('action-results-row');
  const results = document.getElementById('action-results');
  const error = document.getElementById('action-error');
  document.getElementById('action-title').textContent = title;
  document.getElementById('action-text').textContent = text;
  resultsRow.hidden = !withResults;
  reason.value = '';
  results.value = '{}';
  error.textContent = '';
  const close = () => dialog.close();
  document.getElementById('action-cancel').onclick = close;
  form.onsubmit = async (event) => {
    event.preventDefault();
    let parsed;
    if (withResults) {
      try {
        parsed = JSON.parse(results.value);
      } catch (err) {
        error.textContent = `Results are not valid JSON: ${err.message}`;
        return;
      }
    }
    try {
      await act(reason.value.trim(), parsed);
      close();
      rerender();
    } catch (err) {
      error.textContent = err.message;
    }
  };
  dialog.showModal();
  reason.focus();
}

// A button shown only when the principal holds `permission`.
export function actionButton(permission, label, options, act) {
  if (!api.can(permission)) return null;
  return h('button', {
    type: 'button', class: options.danger ? 'danger' : '',
    'data-action': options.id, onclick: () => confirmAction(options, act),
  }, label);
}
