// A task: its DAG coloured by step state (redrawn as events arrive), a timeline of attempts,
// its context and results, the transition history, and the operator actions the principal
// may take. And one step: each attempt with its duration and error.

import * as api from './api.js';
import { actionButton, h, onLeave, showError, stateBadge, when } from './dom.js';
import { jsonView } from './json.js';
import { dag, gantt } from './svg.js';

const FINAL = ['complete', 'cancelled', 'resolved_manually'];

// Attempts from the step transitions of a history: each `→ in_progress` starts one, the
// step's next transition ends it.
export function attempts(transitions) {
  const byStep = new Map();
  for (const t of transitions) {
    if (!t.step_id) continue;
    if (!byStep.has(t.step_id)) byStep.set(t.step_id, []);
    byStep.get(t.step_id).push(t);
  }
  const out = [];
  for (const [stepId, list] of byStep) {
    list.forEach((t, i) => {
      if (t.to_state !== 'in_progress') return;
      const end = list[i + 1];
      const meta = (end && end.metadata) || {};
      out.push({
        stepId,
        step: t.step_name,
        number: t.metadata.attempt_number || meta.attempt_number || null,
        start: Date.parse(t.created_at),
        end: end ? Date.parse(end.created_at) : Date.now(),
        outcome: end ? end.to_state : 'in_progress',
        error: meta.error_message || null,
        code: meta.error_code || null,
        backoff: meta.backoff_until || null,
        owner: t.metadata.claim_owner || null,
      });
    });
  }
  return out.sort((a, b) => a.start - b.start);
}

function historyTable(transitions) {
  return h('table', { id: 'history' },
    h('thead', {}, h('tr', {}, ['When', 'Step', 'Change', 'Actor', 'Reason', 'Note']
      .map((t) => h('th', { scope: 'col' }, t)))),
    h('tbody', {}, transitions.map((t) => h('tr', {},
      h('td', {}, when(t.created_at)),
      h('td', {}, t.step_name || h('em', {}, 'task')),
      h('td', {}, `${t.from_state || '—'} → `, stateBadge(t.to_state)),
      h('td', {}, t.actor || ''),
      h('td', {}, (t.metadata && t.metadata.reason) || ''),
      h('td', { class: 'note' }, (t.metadata && t.metadata.note) || '')))));
}

function taskActions(task) {
  const id = task.task_id;
  const buttons = [];
  // Shown only where the engine allows them (docs/api.md): cancel while pending or running,
  // retry and resolve in error.
  if (['pending', 'in_progress'].includes(task.state)) {
    buttons.push(actionButton('tasker.task:cancel', 'Cancel task', {
      id: 'cancel-task', title: 'Cancel this task', text: 'Unfinished steps are cancelled.', danger: true,
    }, (reason) => api.post(`/tasks/${id}/cancel`, { reason })));
  }
  if (task.state === 'error') {
    buttons.push(actionButton('tasker.task:retry', 'Retry task', {
      id: 'retry-task', title: 'Retry this task', text: 'Failed steps get a fresh attempt budget.',
    }, (reason) => api.post(`/tasks/${id}/retry`, { reason })));
    buttons.push(actionButton('tasker.task:resolve', 'Resolve task', {
      id: 'resolve-task', title: 'Resolve this task by hand', text: 'The task ends as resolved manually.',
    }, (reason) => api.post(`/tasks/${id}/resolve`, { reason })));
  }
  return h('div', { class: 'actions', id: 'task-actions' }, buttons);
}

function stepActions(step) {
  const path = `/tasks/${step.task_id}/workflow_steps/${step.step_id}`;
  const buttons = [];
  if (['pending', 'error'].includes(step.state)) {
    buttons.push(actionButton('tasker.workflow_step:resolve', 'Resolve', {
      id: `resolve-step-${step.name}`, title: `Resolve ${step.name} by hand`,
      text: 'Give the results its dependants will see.', withResults: true,
    }, (reason, results) => api.post(`${path}/resolve`, { reason, results })));
  }
  if (step.state === 'error') {
    buttons.push(actionButton('tasker.workflow_step:retry', 'Retry', {
      id: `retry-step-${step.name}`, title: `Retry ${step.name}`, text: 'The step gets another attempt.',
    }, (reason) => api.post(`${path}/retry`, { reason })));
  }
  if (['pending', 'in_progress'].includes(step.state)) {
    buttons.push(actionButton('tasker.workflow_step:cancel', 'Cancel', {
      id: `cancel-step-${step.name}`, title: `Cancel ${step.name}`, text: 'A cancelled step is final.', danger: true,
    }, (reason) => api.post(`${path}/cancel`, { reason })));
  }
  return h('div', { class: 'actions' }, buttons);
}

async function taskContent(id) {
  const [task, history] = await Promise.all([
    api.get(`/tasks/${id}?include=steps,graph`),
    api.get(`/tasks/${id}/transitions`),
  ]);
  const steps = new Map(task.steps.map((s) => [s.name, {
    state: s.state, href: `#/task/${id}/step/${s.step_id}`,
    label: `${s.state.replace('_', ' ')} · ${s.attempts}/${s.retry_limit}`,
  }]));
  const runs = attempts(history.transitions);
  const results = Object.fromEntries(task.steps.filter((s) => s.results !== null)
    .map((s) => [s.name, s.results]));
  const node = h('div', { 'data-task-state': task.state },
    h('h1', {}, `${task.namespace}/${task.name} `, h('span', { class: 'muted' }, `v${task.version}`)),
    h('p', {}, 'State: ', h('span', { id: 'task-state' }, stateBadge(task.state)),
      ` · ${task.done_steps}/${task.total_steps} steps done · created ${when(task.created_at)}`,
      ` · correlation id `, h('code', {}, task.correlation_id)),
    taskActions(task),
    h('h2', {}, 'Workflow'),
    h('div', { class: 'svgbox', id: 'dag' }, dag(task.graph.nodes, task.graph.edges, steps, `Steps of ${task.name}`)),
    h('div', { class: 'grid2' },
      h('div', {},
        h('h2', {}, 'Steps'),
        h('table', { id: 'steps' },
          h('thead', {}, h('tr', {}, ['Step', 'State', 'Attempts', 'Last error', 'Actions']
            .map((t) => h('th', { scope: 'col' }, t)))),
          h('tbody', {}, task.steps.map((s) => h('tr', { 'data-step': s.name },
            h('td', {}, h('a', { href: `#/task/${id}/step/${s.step_id}` }, s.name)),
            h('td', {}, stateBadge(s.state)),
            h('td', {}, `${s.attempts}/${s.retry_limit}`),
            h('td', {}, s.last_error ? (s.last_error.message || JSON.stringify(s.last_error)) : ''),
            h('td', {}, stepActions(s)))))),
        h('h2', {}, 'Timeline of attempts'),
        runs.length
          ? h('div', { class: 'svgbox', id: 'gantt' }, gantt(runs.map((r) => ({
            label: `${r.step}${r.number ? ` #${r.number}` : ''}`, start: r.start, end: r.end,
            state: r.outcome, tip: `${r.step}: ${r.outcome}, ${Math.round(r.end - r.start)} ms${r.error ? `: ${r.error}` : ''}`,
          })), 'Attempts over time'))
          : h('p', { class: 'muted' }, 'No attempt yet.')),
      h('div', {},
        h('h2', {}, 'Context'), jsonView(task.context),
        h('h2', {}, 'Results'), jsonView(results))),
    h('h2', {}, 'History'),
    historyTable(history.transitions));
  return { node, state: task.state };
}

export async function taskPage(id) {
  const first = await taskContent(id);
  const box = h('section', { id: 'task', 'data-task-id': id }, first.node);
  const live = h('p', { class: 'muted', 'aria-live': 'polite', id: 'live' });
  if (FINAL.includes(first.state)) {
    live.textContent = 'Finished: nothing more will change.';
    return h('div', {}, h('p', {}, h('a', { href: '#/tasks' }, '← Tasks')), live, box);
  }
  live.textContent = 'Live: connecting…';
  let pending = null;
  let stream = null;
  let latest = 0;
  const refresh = async () => {
    pending = null;
    const mine = ++latest;
    try {
      const next = await taskContent(id);
      // A slower, older refresh never overwrites a newer one.
      if (mine !== latest) return;
      box.replaceChildren(next.node);
      if (FINAL.includes(next.state) && stream) {
        // The server ends a finished task's stream; stop the browser reconnecting to it.
        stream.close();
        live.textContent = 'Finished: nothing more will change.';
      }
    } catch (err) {
      box.replaceChildren(showError(err));
    }
  };
  // The stream replays the history (`transition` events) and then follows the task live:
  // anything it sends may change the picture, so the page is redrawn (at most every 250 ms).
  stream = api.listen(`/tasks/${id}/events`, () => {
    if (!pending) pending = setTimeout(refresh, 250);
  }, (status) => {
    live.textContent = status === 'live' ? 'Live: the picture follows the task' : 'Live: reconnecting…';
  }, ['transition']);
  onLeave(() => {
    stream.close();
    if (pending) clearTimeout(pending);
  });
  return h('div', {}, h('p', {}, h('a', { href: '#/tasks' }, '← Tasks')), live, box);
}

export async function stepPage(taskId, stepId) {
  const [step, history] = await Promise.all([
    api.get(`/tasks/${taskId}/workflow_steps/${stepId}`),
    api.get(`/tasks/${taskId}/transitions`),
  ]);
  const runs = attempts(history.transitions).filter((r) => r.stepId === stepId);
  const lastError = step.last_error || {};
  return h('section', { id: 'step' },
    h('p', {}, h('a', { href: `#/task/${taskId}` }, '← Task')),
    h('h1', {}, `Step ${step.name}`),
    h('p', {}, 'State: ', stateBadge(step.state), ` · attempts ${step.attempts} of ${step.retry_limit}`,
      ` · ${step.retryable ? 'retryable' : 'not retryable'}`,
      step.next_attempt_at ? ` · next attempt ${when(step.next_attempt_at)}` : ''),
    stepActions(step),
    h('h2', {}, 'Attempts'),
    h('table', { id: 'attempts' },
      h('thead', {}, h('tr', {}, ['#', 'Started', 'Duration', 'Outcome', 'Error', 'Code', 'Next attempt']
        .map((t) => h('th', { scope: 'col' }, t)))),
      h('tbody', {}, runs.map((r, i) => h('tr', {},
        h('td', {}, r.number || i + 1),
        h('td', {}, when(new Date(r.start).toISOString())),
        h('td', {}, `${Math.round(r.end - r.start)} ms`),
        h('td', {}, stateBadge(r.outcome)),
        h('td', {}, r.error || ''),
        h('td', {}, r.code || ''),
        h('td', {}, r.backoff ? when(r.backoff) : ''))))),
    h('h2', {}, 'Last error'),
    step.last_error
      ? h('dl', {},
        h('dt', {}, 'Message'), h('dd', {}, lastError.message || ''),
        h('dt', {}, 'Code'), h('dd', {}, lastError.error_code || lastError.code || ''),
        h('dt', {}, 'Retry after'), h('dd', {}, lastError.retry_after !== undefined && lastError.retry_after !== null ? `${lastError.retry_after}` : '—'),
        h('dt', {}, 'Next attempt'), h('dd', {}, when(step.next_attempt_at)))
      : h('p', { class: 'muted' }, 'None.'),
    h('h2', {}, 'Results'), jsonView(step.results),
    h('h2', {}, 'Error details'), jsonView(step.last_error));
}
