// Browser tests of the dashboard, in Debian's Chromium driven by playwright-core, against a
// live `tasker serve` that `cargo xtask ui-test` starts (which passes the settings below in
// the environment). Each check prints one line; the first failure stops the run with exit 1.
// Screenshots go to TASKER_UI_SCREENSHOTS.

import assert from 'node:assert/strict';
import { mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (cargo xtask ui-test sets it)`);
  return value;
};

const BASE = env('TASKER_UI_BASE'); // http://127.0.0.1:PORT
const ADMIN_TOKEN = env('TASKER_UI_ADMIN_TOKEN');
const VIEWER_KEY = env('TASKER_UI_VIEWER_KEY');
const SHOTS = env('TASKER_UI_SCREENSHOTS');
const SAMPLE = JSON.parse(readFileSync(env('TASKER_UI_SAMPLE'), 'utf8'));
const TEMPLATE = { namespace: 'blog_examples', name: 'process_order' };
const WAIT = 30_000;

mkdirSync(SHOTS, { recursive: true });
const browser = await chromium.launch({
  executablePath: process.env.TASKER_UI_CHROMIUM || '/usr/bin/chromium',
  headless: true,
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
  // Playwright gives the browser a fresh profile directory of its own (`--user-data-dir`)
  // and removes it afterwards.
});

let failures = 0;
async function check(name, body) {
  const started = Date.now();
  try {
    await body();
    console.log(`ok   ${name} (${Date.now() - started} ms)`);
  } catch (err) {
    failures += 1;
    console.log(`FAIL ${name}: ${err.stack || err}`);
    for (const [i, open] of browser.contexts().flatMap((c) => c.pages()).entries()) {
      await open.screenshot({ path: join(SHOTS, `failure-${i}.png`) }).catch(() => {});
    }
    throw err;
  }
}

async function newPage() {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  page.on('pageerror', (err) => console.log(`  page error: ${err.message}`));
  return { context, page };
}

async function shot(page, name) {
  await page.screenshot({ path: join(SHOTS, `${name}.png`), fullPage: false });
}

async function signIn(page, kind, secret) {
  await page.goto(`${BASE}/ui/`);
  await page.locator('#signin-kind').selectOption(kind);
  await page.locator('#signin-secret').fill(secret);
  await page.locator('#signin-submit').click();
  await page.locator('#overview').waitFor({ timeout: WAIT });
}

async function taskState(page) {
  return page.locator('#task-state [data-state]').getAttribute('data-state');
}

async function waitForTaskState(page, states) {
  await page.waitForFunction((wanted) => {
    const node = document.querySelector('#task-state [data-state]');
    return node && wanted.includes(node.dataset.state);
  }, states, { timeout: WAIT });
  return taskState(page);
}

async function confirm(page, reason, results) {
  const dialog = page.locator('#action-dialog');
  await dialog.waitFor({ state: 'visible' });
  await page.locator('#action-reason').fill(reason);
  if (results !== undefined) await page.locator('#action-results').fill(JSON.stringify(results));
  await page.locator('#action-confirm').click();
  await dialog.waitFor({ state: 'hidden', timeout: WAIT });
}

async function startTask(page, context) {
  await page.goto(`${BASE}/ui/#/templates/${TEMPLATE.namespace}/${TEMPLATE.name}`);
  await page.locator('#start-context').fill(JSON.stringify(context, null, 2));
  await page.locator('#start-submit').click();
  await page.waitForURL(/#\/task\//, { timeout: WAIT });
  await page.locator('#dag svg').waitFor({ timeout: WAIT });
  return page.url().split('#/task/')[1];
}

const admin = await newPage();
const { page } = admin;
let watched;

try {
  await check('the sign-in form comes first and refuses a bad token', async () => {
    await page.goto(`${BASE}/ui/`);
    await page.locator('#signin-secret').waitFor();
    await shot(page, 'sign-in');
    await page.locator('#signin-secret').fill('not-a-token');
    await page.locator('#signin-submit').click();
    await page.locator('#signin-error', { hasText: 'refused' }).waitFor({ timeout: WAIT });
  });

  await check('signing in with a token opens the overview, the cookie out of reach of scripts', async () => {
    await signIn(page, 'token', ADMIN_TOKEN);
    const cookies = await admin.context.cookies();
    const session = cookies.find((c) => c.name === 'tasker_session');
    assert.ok(session, 'a session cookie');
    assert.equal(session.httpOnly, true);
    assert.equal(session.sameSite, 'Strict');
    assert.equal(await page.evaluate(() => document.cookie.includes('tasker_session')), false);
    await page.locator('#counts a.card[data-state="complete"]').waitFor();
  });

  await check('pausing the template from its page holds a new task at pending', async () => {
    await page.goto(`${BASE}/ui/#/templates`);
    await page.locator(`[data-template="${TEMPLATE.namespace}/${TEMPLATE.name}"]`).waitFor();
    await shot(page, 'templates');
    await page.goto(`${BASE}/ui/#/templates/${TEMPLATE.namespace}/${TEMPLATE.name}`);
    await page.locator(`[data-action="pause-${TEMPLATE.namespace}-${TEMPLATE.name}"]`).click();
    await confirm(page, 'hold new orders for the browser test');
    await page.locator(`[data-action="resume-${TEMPLATE.namespace}-${TEMPLATE.name}"]`).waitFor({ timeout: WAIT });
    await shot(page, 'template');
    watched = await startTask(page, SAMPLE);
    const states = await page.locator('#dag [data-state]').evaluateAll((nodes) => nodes.map((n) => n.dataset.state));
    assert.ok(states.length >= 5, `the DAG shows every step: ${states}`);
    assert.ok(states.every((s) => s === 'pending'), `paused: every step pending: ${states}`);
    assert.equal(await taskState(page), 'pending');
    await shot(page, 'task-paused');
  });

  await check('a forged request without the CSRF token is refused with 403 and changes nothing', async () => {
    const reply = await page.evaluate(async (id) => {
      const response = await fetch(`/v1/tasks/${id}/cancel`, {
        method: 'POST', credentials: 'same-origin',
        headers: { 'Content-Type': 'application/json' }, body: '{"reason":"forged"}',
      });
      return { status: response.status, body: await response.json() };
    }, watched);
    assert.equal(reply.status, 403);
    assert.equal(reply.body.error.code, 'forbidden');
    const csrf = await page.evaluate(async () => (await (await fetch('/v1/session')).json()).csrf_token);
    const crossSite = await admin.context.request.post(`${BASE}/v1/tasks/${watched}/cancel`, {
      headers: { 'X-CSRF-Token': csrf, Origin: 'http://evil.example', 'Content-Type': 'application/json' },
      data: { reason: 'forged from another site' },
    });
    assert.equal(crossSite.status(), 403, 'a cross-site origin is refused even with the token');
    // A page of another site (localhost is not 127.0.0.1; a page without the dashboard's
    // content security policy) posting to the API: the browser keeps the SameSite=Strict
    // cookie to itself, so the request is anonymous.
    const other = await admin.context.newPage();
    await other.goto(`${BASE.replace('127.0.0.1', 'localhost')}/health/live`);
    await other.evaluate(async ({ target, id }) => {
      await fetch(`${target}/v1/tasks/${id}/cancel`, {
        method: 'POST', mode: 'no-cors', credentials: 'include',
        headers: { 'Content-Type': 'text/plain' }, body: '{"reason":"forged"}',
      });
    }, { target: BASE, id: watched });
    await other.close();
    await page.reload();
    await page.locator('#dag svg').waitFor();
    assert.equal(await taskState(page), 'pending', 'the task was not cancelled');
  });

  await check('resuming from another tab runs the task while its open page redraws the DAG live', async () => {
    // This page shows the paused task and stays open; every state its DAG draws is recorded.
    const seen = [];
    await page.exposeFunction('recordStates', (states) => seen.push(states.join(',')));
    await page.goto(`${BASE}/ui/#/task/${watched}`);
    await page.locator('#dag svg').waitFor();
    await page.locator('#live', { hasText: 'follows the task' }).waitFor({ timeout: WAIT });
    await page.evaluate(() => {
      const record = () => window.recordStates(
        [...document.querySelectorAll('#dag [data-state]')].map((n) => n.dataset.state));
      new MutationObserver(record).observe(document.getElementById('task'), { subtree: true, childList: true });
      record();
    });
    const tab = await admin.context.newPage();
    await tab.goto(`${BASE}/ui/#/templates/${TEMPLATE.namespace}/${TEMPLATE.name}`);
    await tab.locator(`[data-action="resume-${TEMPLATE.namespace}-${TEMPLATE.name}"]`).click();
    await confirm(tab, 'orders may run again');
    await tab.close();
    assert.equal(await waitForTaskState(page, ['complete', 'error']), 'complete');
    await page.waitForFunction(() => [...document.querySelectorAll('#dag [data-state]')]
      .every((n) => n.dataset.state === 'complete'), null, { timeout: WAIT });
    assert.ok(page.url().endsWith(`#/task/${watched}`), 'the page was never left');
    assert.ok(seen[0].split(',').every((s) => s === 'pending'), `first drawn all pending: ${seen[0]}`);
    assert.ok(seen.at(-1).split(',').every((s) => s === 'complete'), `last drawn all complete: ${seen.at(-1)}`);
    console.log(`  the DAG was redrawn ${seen.length - 1} time(s): ${[...new Set(seen)].join(' | ')}`);
    await page.locator('#gantt svg').waitFor();
    await page.locator('#live', { hasText: 'Finished' }).waitFor();
    await shot(page, 'task-complete');
  });

  let failed;
  await check('a task that ended in error is found by the list filter and retried with a reason', async () => {
    const declined = structuredClone(SAMPLE);
    declined.payment_info.amount = 1.0; // does not match the cart: a permanent failure
    failed = await startTask(page, declined);
    assert.equal(await waitForTaskState(page, ['error', 'complete']), 'error');
    await page.goto(`${BASE}/ui/#/tasks?state=error`);
    await page.locator(`#task-table tr[data-task-id="${failed}"] a`).waitFor({ timeout: WAIT });
    await shot(page, 'task-list-errors');
    await page.locator(`#task-table tr[data-task-id="${failed}"] a`).click();
    await page.locator('[data-action="retry-task"]').click();
    await confirm(page, 'payment service fixed, try again');
    await page.locator('#history td.note', { hasText: 'payment service fixed, try again' }).waitFor({ timeout: WAIT });
    assert.equal(await waitForTaskState(page, ['error', 'complete']), 'error', 'the same input fails again');
    await shot(page, 'task-error');
  });

  await check('resolving the failed step by hand with results lets the task finish', async () => {
    await page.locator('tr[data-step="process_payment"] a').click();
    await page.locator('#attempts tbody tr').first().waitFor();
    const attempts = await page.locator('#attempts tbody tr').count();
    assert.ok(attempts >= 2, `each attempt is listed: ${attempts}`);
    await page.locator('#attempts', { hasText: 'PAYMENT_AMOUNT_MISMATCH' }).waitFor();
    await shot(page, 'step');
    await page.locator('[data-action="resolve-step-process_payment"]').click();
    await confirm(page, 'charged by phone', { payment_id: 'pay_by_phone_1', status: 'completed' });
    await page.goto(`${BASE}/ui/#/task/${failed}`);
    assert.equal(await waitForTaskState(page, ['complete', 'resolved_manually']), 'complete');
    await page.locator('#history td.note', { hasText: 'charged by phone' }).waitFor();
    const resolved = await page.locator('#dag [data-step="process_payment"]').getAttribute('data-state');
    assert.equal(resolved, 'resolved_manually');
    await shot(page, 'task-resolved');
  });

  await check('a viewer sees no action buttons and the server refuses its actions', async () => {
    const viewer = await newPage();
    await signIn(viewer.page, 'api_key', VIEWER_KEY);
    await viewer.page.goto(`${BASE}/ui/#/task/${failed}`);
    await viewer.page.locator('#dag svg').waitFor();
    assert.equal(await viewer.page.locator('[data-action]').count(), 0);
    await viewer.page.goto(`${BASE}/ui/#/templates/${TEMPLATE.namespace}/${TEMPLATE.name}`);
    await viewer.page.locator('#template').waitFor();
    assert.equal(await viewer.page.locator('[data-action], #start-task').count(), 0);
    const refused = await viewer.page.evaluate(async (id) => {
      const session = await (await fetch('/v1/session')).json();
      const response = await fetch(`/v1/tasks/${id}/retry`, {
        method: 'POST', headers: { 'X-CSRF-Token': session.csrf_token, 'Content-Type': 'application/json' },
        body: '{"reason":"not mine to do"}',
      });
      return response.status;
    }, failed);
    assert.equal(refused, 403);
    await viewer.page.goto(`${BASE}/ui/#/task/${failed}`);
    await viewer.page.locator('#dag svg').waitFor();
    await shot(viewer.page, 'viewer-task');
    await viewer.context.close();
  });

  await check('the overview counts the tasks by state and charts the last hour', async () => {
    await page.goto(`${BASE}/ui/#/`);
    await page.locator('#throughput svg').waitFor({ timeout: WAIT });
    const complete = await page.locator('#counts a.card[data-state="complete"] .n').textContent();
    assert.ok(Number(complete) >= 2, `two tasks complete: ${complete}`);
    await page.locator('#slowest tbody tr').first().waitFor();
    await shot(page, 'overview');
  });

  await check('the task list pages through every task and finds one by its correlation id', async () => {
    await page.goto(`${BASE}/ui/#/tasks`);
    await page.locator('#task-table tbody tr').first().waitFor();
    assert.equal(await page.locator('#task-table tbody tr').count(), 2);
    await shot(page, 'task-list');
    const task = await page.evaluate(async (id) => (await fetch(`/v1/tasks/${id}`)).json(), watched);
    await page.locator('#f-correlation').fill(task.correlation_id);
    await page.locator('#f-apply').click();
    await page.waitForFunction((id) => {
      const rows = document.querySelectorAll('#task-table tbody tr');
      return rows.length === 1 && rows[0].dataset.taskId === id;
    }, watched, { timeout: WAIT });
    assert.ok(page.url().includes(`correlation_id=${task.correlation_id}`), 'the filter is in the address');
  });

  await check('signing out revokes the session', async () => {
    await page.goto(`${BASE}/ui/#/tasks`);
    await page.locator('#task-table').waitFor();
    await page.locator('#sign-out').click();
    await page.locator('#signin-secret').waitFor({ timeout: WAIT });
    const after = await page.evaluate(async () => (await fetch('/v1/tasks')).status);
    assert.equal(after, 401);
  });
} catch {
  // Reported by `check`.
} finally {
  await browser.close();
}

if (failures > 0) {
  console.log(`ui-test: ${failures} check(s) failed`);
  process.exit(1);
}
console.log('ui-test: every check passed');
