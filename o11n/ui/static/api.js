// The HTTP API and WebSocket streams, with the token kept in this tab's session storage.

const KEY = "o11n.token";

export function token() { return sessionStorage.getItem(KEY); }
export function setToken(value) { sessionStorage.setItem(KEY, value); }
export function clearToken() { sessionStorage.removeItem(KEY); }

/** An error answer of the API: its HTTP status, error code and message. */
export class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

/** Call the API; resolves to the JSON answer or rejects with an ApiError. */
export async function api(method, path, body) {
  const headers = { Authorization: `Bearer ${token() || ""}` };
  if (body !== undefined) headers["Content-Type"] = "application/json";
  let response;
  try {
    response = await fetch(path, {
      method, headers, body: body === undefined ? undefined : JSON.stringify(body),
    });
  } catch (err) {
    throw new ApiError(0, "unreachable", `the scheduler cannot be reached (${err.message})`);
  }
  const text = await response.text();
  let data = null;
  try { data = text ? JSON.parse(text) : null; } catch { data = null; }
  if (!response.ok) {
    const error = (data && data.error) || {};
    throw new ApiError(response.status, error.code || "http_error", error.message || response.statusText);
  }
  return data;
}

export const get = (path) => api("GET", path);
export const post = (path, body) => api("POST", path, body ?? {});

/**
 * Open a WebSocket stream. Browsers cannot set headers on WebSockets, so the token goes
 * as the `token` parameter the watch routes accept (the scheduler keeps no access log).
 */
export function watch(path, params, onMessage, onClose) {
  const url = new URL(path, location.href);
  url.protocol = location.protocol === "https:" ? "wss:" : "ws:";
  for (const [key, value] of Object.entries(params || {})) url.searchParams.set(key, value);
  url.searchParams.set("token", token() || "");
  const ws = new WebSocket(url);
  ws.onmessage = (event) => onMessage(JSON.parse(event.data));
  ws.onclose = (event) => onClose && onClose(event);
  return ws;
}
