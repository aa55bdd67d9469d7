// The operator API with the signed-in token, and the live event stream read with fetch():
// EventSource cannot send an Authorization header, so the stream is parsed here instead.

const TOKEN_KEY = "switchboard.token";

export const token = {
  get: () => sessionStorage.getItem(TOKEN_KEY),
  set: (value) => sessionStorage.setItem(TOKEN_KEY, value),
  clear: () => sessionStorage.removeItem(TOKEN_KEY),
};

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

/** Listeners told when the token stops working (401), so the app can ask for it again. */
export const unauthorized = new Set();

/** Paths are written from the root ("/api/turns") but fetched relative to the page, so the
 * console works mounted under a reverse proxy's prefix (`serve --root-path /prefix`). */
function relative(path) {
  return path.replace(/^\//, "");
}

export async function api(path, { method = "GET", body, secret } = {}) {
  const headers = { Accept: "application/json" };
  const bearer = secret || token.get();
  if (bearer) headers.Authorization = `Bearer ${bearer}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  const response = await fetch(relative(path), {
    method, headers, cache: "no-store",
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    const message = (data && (data.detail || data.error)) || `${response.status} ${response.statusText}`;
    if (response.status === 401 && !secret) unauthorized.forEach((fn) => fn(message));
    throw new ApiError(response.status, typeof message === "string" ? message : JSON.stringify(message));
  }
  return data;
}

/** `path` with the non-empty entries of `params` as its query string. */
export function withQuery(path, params) {
  const query = new URLSearchParams();
  for (const [key, value] of Object.entries(params)) {
    if (value !== undefined && value !== null && value !== "" && value !== false) {
      query.set(key, String(value));
    }
  }
  const text = query.toString();
  return text ? `${path}?${text}` : path;
}

/** Server-Sent Events from `/api/events`, resumed with Last-Event-ID after a drop. */
export class LiveEvents {
  constructor({ onEvent, onState, lastId = 0 }) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = lastId;
    this.retry = 2000;
    this.controller = null;
    this.stopped = false;
  }

  start() {
    this.stopped = false;
    this.loop();
  }

  stop() {
    this.stopped = true;
    if (this.controller) this.controller.abort();
  }

  async loop() {
    while (!this.stopped) {
      this.controller = new AbortController();
      try {
        await this.read(this.controller.signal);
      } catch (error) {
        if (this.stopped) return;
        if (error instanceof ApiError && error.status === 401) {
          unauthorized.forEach((fn) => fn(error.message));
          return;
        }
      }
      if (this.stopped) return;
      this.onState("reconnecting");
      await new Promise((resolve) => setTimeout(resolve, this.retry));
    }
  }

  async read(signal) {
    const headers = { Accept: "text/event-stream", Authorization: `Bearer ${token.get()}` };
    if (this.lastId) headers["Last-Event-ID"] = String(this.lastId);
    const response = await fetch(relative("/api/events"), { headers, signal, cache: "no-store" });
    if (!response.ok) throw new ApiError(response.status, `live events: ${response.status}`);
    this.onState("live");
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value.replace(/\r\n?/g, "\n");
      let end;
      while ((end = buffer.indexOf("\n\n")) >= 0) {
        this.dispatch(buffer.slice(0, end));
        buffer = buffer.slice(end + 2);
      }
    }
  }

  /** One SSE block: `id:`, `event:`, `data:` and `retry:` lines; `:` lines are comments. */
  dispatch(block) {
    let name = "message";
    let id = null;
    const data = [];
    for (const line of block.split("\n")) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "event") name = value;
      else if (field === "data") data.push(value);
      else if (field === "id") id = value;
      else if (field === "retry" && /^\d+$/.test(value)) this.retry = Number(value);
    }
    if (id !== null && /^\d+$/.test(id)) this.lastId = Number(id);
    if (!data.length) return;
    let payload;
    try {
      payload = JSON.parse(data.join("\n"));
    } catch {
      return;
    }
    this.onEvent({ name, data: payload });
  }
}
