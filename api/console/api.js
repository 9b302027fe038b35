// Every call to the server goes through here: the session's tokens, one
// refresh on a 401, problem+json errors, and the consistency token that
// makes this tab read its own writes.

const STORE = "crm.session";
let session = readStored();
// The newest X-Consistency-Token of this tab's writes, sent on later reads
// so a list shows what was just created.
let consistency = null;
// One refresh at a time: refresh tokens rotate, and spending the same one
// twice would be taken as theft and end the login.
let refreshing = null;
const listeners = new Set();

/** A failed request: the problem document's `detail` and `errors[]`. */
export class Problem extends Error {
  constructor(status, body) {
    super((body && body.detail) || `request failed (${status})`);
    this.status = status;
    this.detail = this.message;
    this.errors = (body && Array.isArray(body.errors)) ? body.errors : [];
  }
}

function readStored() {
  try {
    return JSON.parse(localStorage.getItem(STORE));
  } catch {
    return null;
  }
}

function store(next) {
  session = next;
  if (next) localStorage.setItem(STORE, JSON.stringify(next));
  else localStorage.removeItem(STORE);
  listeners.forEach((listener) => listener(next));
}

export const currentSession = () => session;
export const onSessionChange = (listener) => listeners.add(listener);
export const isAdmin = () => Boolean(session && session.user && session.user.role === "admin");

/** Keeps the tokens of a signup, login or refresh answer. */
function keepTokens(answer, user) {
  store({
    access: answer.access_token,
    refresh: answer.refresh_token,
    user: user || (session && session.user) || null,
  });
}

export async function signup(fields) {
  const { data } = await request("POST", "/v1/signup", { body: fields, anonymous: true });
  consistency = null;
  keepTokens(data, data.user);
  return data;
}

export async function login(email, password) {
  const { data } = await request("POST", "/v1/auth/token", {
    body: { email, password },
    anonymous: true,
  });
  consistency = null;
  keepTokens(data, null);
  return refreshMe();
}

/** Reads the calling user again (its role decides what the console shows). */
export async function refreshMe() {
  const { data } = await request("GET", "/v1/me");
  store({ ...session, user: data });
  return data;
}

export async function logout() {
  const refresh = session && session.refresh;
  try {
    // Read at send time: a refresh on the way (expired access token) spends
    // the refresh token this started with.
    if (refresh) await request("POST", "/v1/auth/logout", { body: () => ({ refresh_token: session.refresh }) });
  } finally {
    consistency = null;
    store(null);
  }
}

async function refreshTokens() {
  if (!refreshing) {
    const spent = session && session.refresh;
    refreshing = (async () => {
      if (!spent) return false;
      try {
        const { data } = await request("POST", "/v1/auth/refresh", {
          body: { refresh_token: spent },
          anonymous: true,
        });
        keepTokens(data, null);
        return true;
      } catch {
        return false;
      }
    })().finally(() => {
      refreshing = null;
    });
  }
  return refreshing;
}

/**
 * Sends a request. Options: `body` (JSON, or a function giving it), `form` (FormData), `ifMatch`
 * (a version number), `headers`, `anonymous` (no token), `text` (read the
 * body as text). Resolves to `{status, data, etag, version}`; rejects with
 * a Problem.
 */
export async function request(method, path, options = {}, retried = false) {
  const headers = new Headers(options.headers || {});
  if (!options.anonymous && session) headers.set("Authorization", `Bearer ${session.access}`);
  if (options.ifMatch !== undefined) headers.set("If-Match", `"${options.ifMatch}"`);
  if (method === "GET" && consistency && path.startsWith("/v1/")) {
    headers.set("X-Consistency-Token", consistency);
  }
  let body;
  if (options.body !== undefined) {
    headers.set("Content-Type", "application/json");
    body = JSON.stringify(typeof options.body === "function" ? options.body() : options.body);
  } else if (options.form) {
    body = options.form;
  }
  let response;
  try {
    response = await fetch(path, { method, headers, body });
  } catch {
    throw new Problem(0, { detail: "The server cannot be reached. Check the connection and try again." });
  }
  if (response.status === 401 && !options.anonymous && !retried && session) {
    if (await refreshTokens()) return request(method, path, options, true);
    store(null);
    throw new Problem(401, { detail: "Your session has ended. Log in again." });
  }
  const token = response.headers.get("X-Consistency-Token");
  if (token && method !== "GET") consistency = token;
  const type = response.headers.get("Content-Type") || "";
  let data = null;
  if (response.status !== 204) {
    if (type.includes("json")) data = await response.json().catch(() => null);
    else data = await response.text();
  }
  if (!response.ok) throw new Problem(response.status, typeof data === "object" ? data : null);
  const etag = response.headers.get("ETag");
  const version = etag ? Number(etag.replace(/^W\//, "").replaceAll('"', "")) : undefined;
  return { status: response.status, data, etag, version };
}
