// The overview (counts, the last hour's throughput and errors, slow and retried steps) and
// the templates (each one's graph and schema, pause and resume, starting a task).

import * as api from './api.js';
import { actionButton, h, stateBadge, when } from './dom.js';
import { jsonView } from './json.js';
import { bars, dag } from './svg.js';

const STATES = ['pending', 'in_progress', 'complete', 'error', 'cancelled', 'resolved_manually'];

async function counts() {
  // One count per state from the paged listing (limit 1): never a full read of the tasks.
  const totals = await Promise.all(STATES.map((state) => api.get(`/tasks${api.query({ state, limit: 1 })}`)
    .then((page) => page.total)));
  return h('div', { class: 'cards', id: 'counts' }, STATES.map((state, i) => h('a', {
    class: 'card', href: `#/tasks?state=${state}`, 'data-state': state,
  }, h('div', { class: 'n' }, totals[i]), stateBadge(state))));
}

async function lastHour() {
  const now = Date.now();
  const step = 5 * 60e3;
  const start = now - 12 * step;
  const windows = Array.from({ length: 12 }, (_, i) => [start + i * step, start + (i + 1) * step]);
  const reports = await Promise.all(windows.map(([since, until]) => api.get(`/analytics/performance${api.query({
    since: new Date(since).toISOString(), until: new Date(until).toISOString(),
  })}`)));
  const buckets = reports.map((r, i) => ({
    label: new Date(windows[i][1]).toLocaleTimeString([], { hour: '2-digit', minute: '2-digit' }),
    a: r.totals.completed, b: r.totals.failed,
  }));
  const table = h('table', { class: 'visually-compact' },
    h('caption', { class: 'muted' }, 'Tasks finished per 5 minutes (green: complete, red: error)'),
    h('thead', {}, h('tr', {}, ['Until', 'Complete', 'Error'].map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, buckets.map((b) => h('tr', {}, h('td', {}, b.label), h('td', {}, b.a), h('td', {}, b.b)))));
  const details = h('details', {}, h('summary', {}, 'The numbers'), table);
  return h('div', { id: 'throughput' },
    bars(buckets, 'Tasks completed and failed per 5 minutes over the last hour', ['complete', 'error']), details);
}

function stepTable(id, caption, columns, rows) {
  return h('table', { id },
    h('caption', { class: 'muted' }, caption),
    h('thead', {}, h('tr', {}, columns.map(([title]) => h('th', { scope: 'col' }, title)))),
    h('tbody', {}, rows.length
      ? rows.map((r) => h('tr', {}, columns.map(([, get]) => h('td', {}, get(r)))))
      : h('tr', {}, h('td', { colspan: columns.length, class: 'muted' }, 'Nothing in this window.'))));
}

async function bottlenecks() {
  const until = new Date();
  const since = new Date(until.getTime() - 3600e3);
  const report = await api.get(`/analytics/bottlenecks${api.query({
    since: since.toISOString(), until: until.toISOString(), limit: 5,
  })}`);
  const where = (r) => `${r.namespace}/${r.name} · ${r.step}`;
  return h('div', { class: 'grid2' },
    stepTable('slowest', 'Slowest steps (mean attempt)', [
      ['Step', where], ['Mean', (r) => `${Math.round(r.mean_ms)} ms`], ['Max', (r) => `${Math.round(r.max_ms)} ms`],
      ['Attempts', (r) => r.attempts]], report.slowest_steps),
    stepTable('retried', 'Most retried steps', [
      ['Step', where], ['Retries', (r) => r.retries], ['Highest attempt', (r) => r.max_attempt]],
    report.most_retried_steps));
}

export async function overviewPage() {
  const sections = [h('h1', {}, 'Overview'), h('h2', {}, 'Tasks by state'), await counts()];
  if (api.can('tasker.analytics:index')) {
    sections.push(h('h2', {}, 'The last hour'), await lastHour(),
      h('h2', {}, 'Bottlenecks (last hour)'), await bottlenecks());
  } else {
    sections.push(h('p', { class: 'muted' }, 'Analytics need the tasker.analytics:index permission.'));
  }
  return h('section', { id: 'overview' }, sections);
}

async function switches() {
  if (!api.can('tasker.runtime_switch:index')) return null;
  return api.get('/runtime/switches');
}

function paused(state, namespace, name) {
  return !!state && state.switches.some((s) => s.kind === 'pause' && s.namespace === namespace
    && (s.name === null || s.name === undefined || s.name === name));
}

function pauseControl(state, t) {
  const isPaused = paused(state, t.namespace, t.name);
  const body = (reason) => ({ namespace: t.namespace, template: { name: t.name }, reason });
  return actionButton('tasker.runtime_switch:update', isPaused ? 'Resume' : 'Pause', {
    id: `${isPaused ? 'resume' : 'pause'}-${t.namespace}-${t.name}`,
    title: `${isPaused ? 'Resume' : 'Pause'} ${t.namespace}/${t.name}`,
    text: isPaused ? 'Its steps are claimed again.' : 'No new step of its tasks starts until it is resumed.',
  }, (reason) => api.post(`/runtime/switches/${isPaused ? 'resume' : 'pause'}`, body(reason)));
}

export async function templatesPage() {
  const [templates, state] = await Promise.all([api.get('/templates'), switches()]);
  return h('section', { id: 'templates' }, h('h1', {}, 'Templates'),
    h('table', {},
      h('thead', {}, h('tr', {}, ['Template', 'Version', 'Steps', 'Description', 'Running']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, templates.map((t) => h('tr', { 'data-template': `${t.namespace}/${t.name}` },
        h('td', {}, h('a', { href: `#/templates/${encodeURIComponent(t.namespace)}/${encodeURIComponent(t.name)}` },
          `${t.namespace}/${t.name}`)),
        h('td', {}, t.version),
        h('td', {}, t.steps),
        h('td', {}, t.description || ''),
        h('td', {}, state ? (paused(state, t.namespace, t.name) ? 'paused' : 'yes') : '—', ' ',
          pauseControl(state, t)))))));
}

function startForm(template) {
  if (!api.can('tasker.task:create')) return null;
  const context = h('textarea', { id: 'start-context', rows: 6 }, '{}');
  const reason = h('input', { id: 'start-reason', value: 'started from the dashboard' });
  const error = h('p', { class: 'error', role: 'alert' });
  return h('form', {
    id: 'start-task',
    onsubmit: async (event) => {
      event.preventDefault();
      let parsed;
      try {
        parsed = JSON.parse(context.value);
      } catch (err) {
        error.textContent = `The context is not valid JSON: ${err.message}`;
        return;
      }
      try {
        const task = await api.post('/tasks', {
          namespace: template.namespace, name: template.name, context: parsed, reason: reason.value,
        });
        location.hash = `#/task/${task.task_id}`;
      } catch (err) {
        error.textContent = err.message;
      }
    },
  }, h('h2', {}, 'Start a task'),
  h('label', { for: 'start-context' }, 'Context (JSON, checked against the schema)'), context,
  h('label', { for: 'start-reason' }, 'Reason'), reason,
  h('p', {}, h('button', { type: 'submit', id: 'start-submit' }, 'Start')), error);
}

export async function templatePage(namespace, name) {
  const ns = decodeURIComponent(namespace);
  const n = decodeURIComponent(name);
  const [template, state] = await Promise.all([
    api.get(`/templates/${encodeURIComponent(ns)}/${encodeURIComponent(n)}`), switches()]);
  const steps = new Map(template.graph.nodes.map((s) => [s, { state: 'template', label: 'step' }]));
  return h('section', { id: 'template' },
    h('p', {}, h('a', { href: '#/templates' }, '← Templates')),
    h('h1', {}, `${template.namespace}/${template.name} `, h('span', { class: 'muted' }, `v${template.version}`)),
    h('p', {}, `Versions: ${template.versions.join(', ')} · `,
      state ? (paused(state, ns, n) ? 'paused ' : 'running ') : '', pauseControl(state, template),
      ' ', h('a', { href: `#/tasks?namespace=${encodeURIComponent(ns)}&name=${encodeURIComponent(n)}` }, 'Its tasks')),
    h('h2', {}, 'Graph'),
    h('div', { class: 'svgbox' }, dag(template.graph.nodes, template.graph.edges, steps, `Steps of ${n}`)),
    startForm(template),
    h('h2', {}, 'Context schema'), jsonView(template.template.schema || null),
    h('h2', {}, 'Template'), jsonView(template.template),
    state && state.recent_changes.length
      ? h('div', {}, h('h2', {}, 'Recent switch changes'), h('ul', {}, state.recent_changes.slice(0, 10)
        .map((c) => h('li', {}, `${when(c.changed_at)}: ${c.action} ${c.target} by ${c.changed_by}: ${c.reason}`))))
      : null);
}
