// The API client: every call goes to the API's prefix with the session cookie, and every
// change carries the session's CSRF token.

const prefix = document.querySelector('meta[name="tasker-api"]').content.replace(/\/$/, '');
let csrf = null;
let session = null;

export class ApiError extends Error {
  constructor(status, body) {
    const error = (body && body.error) || {};
    super(error.message || `HTTP ${status}`);
    this.status = status;
    this.code = error.code || 'http_error';
  }
}

export function apiUrl(path) {
  return prefix + path;
}

export async function call(method, path, body) {
  const headers = { Accept: 'application/json' };
  if (method !== 'GET' && csrf) headers['X-CSRF-Token'] = csrf;
  const init = { method, headers, credentials: 'same-origin' };
  if (body !== undefined) {
    headers['Content-Type'] = 'application/json';
    init.body = JSON.stringify(body);
  }
  const response = await fetch(apiUrl(path), init);
  const text = await response.text();
  let json = null;
  if (text) {
    try { json = JSON.parse(text); } catch { json = null; }
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

export const get = (path) => call('GET', path);
export const post = (path, body) => call('POST', path, body);

function remember(view) {
  session = view;
  csrf = view ? view.csrf_token : null;
  return view;
}

// The current session, or null when signed out.
export async function currentSession() {
  try {
    return remember(await get('/session'));
  } catch (err) {
    if (err.status === 401) return remember(null);
    throw err;
  }
}

export async function signIn(kind, secret) {
  const body = kind === 'api_key' ? { api_key: secret } : { token: secret };
  return remember(await post('/session', body));
}

export async function signOut() {
  await call('DELETE', '/session');
  remember(null);
}

// Whether the signed-in principal holds `permission` (the server checks every call again).
export function can(permission) {
  return !!session && session.permissions.includes(permission);
}

export function who() {
  return session;
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== '') search.set(key, value);
  }
  const text = search.toString();
  return text ? `?${text}` : '';
}

// The lifecycle events the pages refresh on. Server-Sent Events arrive under their own names,
// so each is listened to by name.
const EVENT_NAMES = [
  'task.initialize_requested', 'task.start_requested', 'task.started', 'task.completed',
  'task.failed', 'task.cancelled', 'task.resolved_manually', 'task.retry_requested',
  'step.initialize_requested', 'step.execution_requested', 'step.handle', 'step.completed',
  'step.failed', 'step.cancelled', 'step.resolved_manually', 'step.retry_requested',
];

// Opens an event stream at `path`; `status(text)` hears of its connection, `onEvent(name)`
// of each event (and of each of `extra`, such as a task stream's replayed `transition`s).
// Returns the EventSource (close it on leaving the page).
export function listen(path, onEvent, status, extra = []) {
  const stream = new EventSource(apiUrl(path), { withCredentials: true });
  stream.onopen = () => status('live');
  stream.onerror = () => status('reconnecting');
  stream.onmessage = () => onEvent('message');
  for (const name of [...EVENT_NAMES, ...extra]) stream.addEventListener(name, () => onEvent(name));
  return stream;
}
