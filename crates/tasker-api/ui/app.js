// The dashboard: a hash router over the pages, the sign-in form, and the action dialog.

import * as api from './api.js';
import { h, leave, setRerender, showError } from './dom.js';
import { overviewPage, templatesPage, templatePage } from './pages.js';
import { taskListPage } from './tasks.js';
import { taskPage, stepPage } from './task.js';

const main = document.getElementById('main');

function signInPage(message) {
  const kind = h('select', { id: 'signin-kind' },
    h('option', { value: 'token' }, 'Token (JWT)'),
    h('option', { value: 'api_key' }, 'API key'));
  const secret = h('input', {
    id: 'signin-secret', type: 'password', required: true, autocomplete: 'off',
  });
  const error = h('p', { class: 'error', role: 'alert', id: 'signin-error' }, message || '');
  const form = h('form', {
    class: 'signin',
    onsubmit: async (event) => {
      event.preventDefault();
      error.textContent = '';
      try {
        await api.signIn(kind.value, secret.value.trim());
        secret.value = '';
        route();
      } catch (err) {
        error.textContent = err.status === 401 ? 'Those credentials were refused.' : err.message;
      }
    },
  },
  h('h1', {}, 'Sign in'),
  h('p', { class: 'muted' }, 'Paste a token from `tasker token mint` or an API key from `tasker keys create`. It is exchanged for a session; the browser never stores it.'),
  h('label', { for: 'signin-kind' }, 'Credential'), kind,
  h('label', { for: 'signin-secret' }, 'Secret'), secret,
  h('p', {}, h('button', { type: 'submit', id: 'signin-submit' }, 'Sign in')),
  error);
  return form;
}

function header(session) {
  document.getElementById('nav').hidden = !session;
  document.getElementById('sign-out').hidden = !session;
  document.getElementById('who').textContent = session
    ? `Signed in as ${session.subject}` : '';
  const hash = location.hash || '#/';
  for (const a of document.querySelectorAll('#nav a')) {
    const target = a.getAttribute('href');
    const current = target === '#/' ? hash === '#/' : hash.startsWith(target);
    if (current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
  }
}

async function route() {
  leave();
  let session;
  try {
    session = await api.currentSession();
  } catch (err) {
    main.replaceChildren(showError(err));
    return;
  }
  header(session);
  if (!session) {
    main.replaceChildren(signInPage());
    return;
  }
  const [path, search] = (location.hash.slice(1) || '/').split('?');
  const params = new URLSearchParams(search || '');
  const parts = path.split('/').filter(Boolean);
  let page;
  try {
    if (parts.length === 0) page = await overviewPage();
    else if (parts[0] === 'tasks') page = await taskListPage(params);
    else if (parts[0] === 'task' && parts[2] === 'step') page = await stepPage(parts[1], parts[3]);
    else if (parts[0] === 'task') page = await taskPage(parts[1]);
    else if (parts[0] === 'templates' && parts.length === 3) page = await templatePage(parts[1], parts[2]);
    else if (parts[0] === 'templates') page = await templatesPage();
    else page = h('p', {}, 'No such page. ', h('a', { href: '#/' }, 'Overview'));
  } catch (err) {
    if (err.status === 401) {
      main.replaceChildren(signInPage('Your session has ended; sign in again.'));
      return;
    }
    page = showError(err);
  }
  main.replaceChildren(page);
}

document.getElementById('sign-out').addEventListener('click', async () => {
  try {
    await api.signOut();
  } finally {
    location.hash = '#/';
    route();
  }
});

setRerender(route);
window.addEventListener('hashchange', route);
route();
