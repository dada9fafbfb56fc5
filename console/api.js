// The console's only way to the server: the public API, with the account key kept in
// sessionStorage (never a cookie, never localStorage).

const KEY = "herald.console.key";
const EMAIL = "herald.console.email";

export const session = {
  key: () => sessionStorage.getItem(KEY),
  email: () => sessionStorage.getItem(EMAIL),
  signIn(key, email) {
    sessionStorage.setItem(KEY, key);
    if (email) sessionStorage.setItem(EMAIL, email);
    else sessionStorage.removeItem(EMAIL);
  },
  signOut() {
    sessionStorage.removeItem(KEY);
    sessionStorage.removeItem(EMAIL);
  },
};

// An API answer that was not 2xx. `detail` is the general message; `fields` maps a field name
// to its messages (docs/api.md §2.4: a list, or for a few errors a plain string).
export class ApiError extends Error {
  constructor(status, body) {
    const detail = errorDetail(status, body);
    super(detail);
    this.status = status;
    this.detail = detail;
    this.fields = {};
    if (body && typeof body === "object" && !Array.isArray(body) && !("detail" in body)) {
      for (const [name, value] of Object.entries(body)) {
        this.fields[name] = Array.isArray(value) ? value.map(String) : [String(value)];
      }
      this.detail = null;
      this.message = Object.entries(this.fields)
        .map(([name, messages]) => `${name}: ${messages.join(" ")}`)
        .join("; ");
    }
  }
}

function errorDetail(status, body) {
  if (body && typeof body === "object" && typeof body.detail === "string") return body.detail;
  if (status === 0) return "The server did not answer. Is it running?";
  return `The server answered ${status}.`;
}

// `path` starts with /v1.1/ (or is a `next`/`prev` link, which are relative paths too).
export async function api(method, path, body, { key = session.key() } = {}) {
  const headers = {};
  if (key) headers["X-API-KEY"] = key;
  const init = { method, headers, cache: "no-store", credentials: "omit" };
  if (body !== undefined) {
    headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  let response;
  try {
    response = await fetch(path, init);
  } catch {
    throw new ApiError(0, null);
  }
  const text = await response.text();
  let json = null;
  if (text) {
    try {
      json = JSON.parse(text);
    } catch {
      json = null;
    }
  }
  if (!response.ok) throw new ApiError(response.status, json);
  return json;
}

export const get = (path) => api("GET", path);
export const post = (path, body = {}) => api("POST", path, body);
export const patch = (path, body) => api("PATCH", path, body);
export const del = (path) => api("DELETE", path);

// Every page of a list, following `next` (for the small lists a console shows).
export async function all(path, limit = 1000) {
  const items = [];
  let next = path;
  while (next && items.length < limit) {
    const page = await get(next);
    items.push(...page.objects);
    next = page.next;
    if (page.objects.length === 0) break;
  }
  return items;
}

export const enc = encodeURIComponent;

export function instancePath(instance, rest = "") {
  return `/v1.1/instances/${enc(instance)}/${rest}`;
}
