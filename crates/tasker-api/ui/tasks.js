// The task list: filters (namespace, template, state, creation time, correlation id) in the
// address, so a view can be linked; keyset pages of at most 50 tasks, refreshed as task events
// arrive.

import * as api from './api.js';
import { h, onLeave, stateBadge, when } from './dom.js';

const STATES = ['', 'pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually'];
const RANGES = { '': 'Any time', '1h': 'Last hour', '24h': 'Last 24 hours', '7d': 'Last 7 days' };
const RANGE_MS = { '1h': 3600e3, '24h': 86400e3, '7d': 7 * 86400e3 };
export const PAGE_SIZE = 50;

function field(id, label, control) {
  return h('div', {}, h('label', { for: id }, label), control);
}

function select(id, options, value) {
  const node = h('select', { id, name: id });
  for (const [v, text] of options) {
    const option = h('option', { value: v }, text);
    if (v === value) option.selected = true;
    node.append(option);
  }
  return node;
}

function listQuery(params) {
  const range = params.get('range') || '';
  return api.query({
    namespace: params.get('namespace'),
    name: params.get('name'),
    state: params.get('state'),
    correlation_id: params.get('correlation_id'),
    created_after: RANGE_MS[range] ? new Date(Date.now() - RANGE_MS[range]).toISOString() : '',
    limit: PAGE_SIZE,
    cursor: params.get('cursor'),
  });
}

function row(task) {
  return h('tr', { 'data-task-id': task.task_id },
    h('td', {}, h('a', { href: `#/task/${task.task_id}` }, `${task.namespace}/${task.name}`),
      h('div', { class: 'muted' }, task.task_id)),
    h('td', {}, stateBadge(task.state)),
    h('td', {}, `${task.done_steps}/${task.total_steps}`),
    h('td', {}, when(task.created_at)),
    h('td', {}, when(task.completed_at)),
    h('td', { class: 'muted' }, task.correlation_id));
}

export async function taskListPage(params) {
  const page = await api.get(`/tasks${listQuery(params)}`);
  const namespace = h('input', { id: 'f-namespace', value: params.get('namespace') || '' });
  const name = h('input', { id: 'f-name', value: params.get('name') || '' });
  const state = select('f-state', STATES.map((s) => [s, s || 'Any state']), params.get('state') || '');
  const range = select('f-range', Object.entries(RANGES), params.get('range') || '');
  const correlation = h('input', {
    id: 'f-correlation', value: params.get('correlation_id') || '', pattern: '[A-Za-z0-9_-]{1,100}',
  });
  const filters = h('form', {
    class: 'filters', role: 'search', 'aria-label': 'Filter tasks',
    onsubmit: (event) => {
      event.preventDefault();
      const next = new URLSearchParams();
      for (const [key, control] of [['namespace', namespace], ['name', name], ['state', state], ['range', range], ['correlation_id', correlation]]) {
        if (control.value.trim()) next.set(key, control.value.trim());
      }
      location.hash = `#/tasks?${next}`;
    },
  },
  field('f-namespace', 'Namespace', namespace),
  field('f-name', 'Template', name),
  field('f-state', 'State', state),
  field('f-range', 'Created', range),
  field('f-correlation', 'Correlation id', correlation),
  h('div', {}, h('button', { type: 'submit', id: 'f-apply' }, 'Filter')));
  const body = h('tbody', {}, page.items.map(row));
  const table = h('table', { id: 'task-table' },
    h('caption', { class: 'muted' }, `${page.total} task(s) match; showing ${page.items.length}`),
    h('thead', {}, h('tr', {}, ['Task', 'State', 'Steps', 'Created', 'Finished', 'Correlation id']
      .map((t) => h('th', { scope: 'col' }, t)))),
    body);
  const pager = h('div', { class: 'pager' });
  if (params.get('cursor')) {
    const first = new URLSearchParams(params);
    first.delete('cursor');
    pager.append(h('a', { href: `#/tasks?${first}` }, 'First page'));
  }
  if (page.next_cursor) {
    const next = new URLSearchParams(params);
    next.set('cursor', page.next_cursor);
    pager.append(h('a', { href: `#/tasks?${next}`, id: 'next-page' }, 'Next page'));
  }
  const live = h('p', { class: 'muted', 'aria-live': 'polite', id: 'live' }, 'Live: connecting…');
  // Task events refresh the page (at most once a second); the stream keeps the filters.
  let pending = null;
  const stream = api.listen(`/events/stream${api.query({
    namespace: params.get('namespace'), name: params.get('name'), category: 'task',
  })}`, () => {
    if (!pending) pending = setTimeout(refresh, 1000);
  }, (status) => {
    live.textContent = status === 'live' ? 'Live: updating as tasks change' : 'Live: reconnecting…';
  });
  const refresh = async () => {
    pending = null;
    try {
      const fresh = await api.get(`/tasks${listQuery(params)}`);
      body.replaceChildren(...fresh.items.map(row));
      table.querySelector('caption').textContent = `${fresh.total} task(s) match; showing ${fresh.items.length}`;
    } catch (err) {
      live.textContent = `Live: ${err.message}`;
    }
  };
  onLeave(() => {
    stream.close();
    if (pending) clearTimeout(pending);
  });
  return h('section', {}, h('h1', {}, 'Tasks'), filters, live, table, pager);
}
