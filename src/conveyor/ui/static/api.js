// The REST API (docs/api.md) from the browser: JSON in and out, errors as ApiError.

export const BASE = "/api/v1";

/** What the API refused: `status`, a one-line `message`, and per field (422) `fields`: name -> message. */
export class ApiError extends Error {
  constructor(status, message, fields = {}) {
    super(message);
    this.name = "ApiError";
    this.status = status;
    this.fields = fields;
  }

  /** From an answer's body: {"detail": "..."} or FastAPI's list of bad fields. */
  static of(status, body) {
    const detail = body && typeof body === "object" ? body.detail : body;
    if (Array.isArray(detail)) {
      const fields = {};
      const lines = [];
      for (const problem of detail) {
        const loc = Array.isArray(problem.loc) ? problem.loc : [];
        const name = String(loc.length ? loc[loc.length - 1] : "");
        fields[name] = fields[name] ? `${fields[name]}; ${problem.msg}` : String(problem.msg);
        lines.push(`${name || "request"}: ${problem.msg}`);
      }
      return new ApiError(status, lines.join("\n") || `invalid request (${status})`, fields);
    }
    const text = typeof detail === "string" && detail ? detail : `the server answered ${status}`;
    return new ApiError(status, text);
  }
}

/** Call the API: api("/runs?limit=5"), api("/runs/ID/cancel", {method: "POST"}). A 401 (not
 * signed in, or the session ended) goes to the sign-in page, unless `signIn` is false. */
export async function api(path, { method = "GET", body, signal, signIn = true } = {}) {
  const init = { method, headers: { accept: "application/json" }, signal };
  if (body !== undefined) {
    init.headers["content-type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await send(BASE + path, init);
  const text = await response.text();
  let data = null;
  if (text) {
    try {
      data = JSON.parse(text);
    } catch {
      data = text;
    }
  }
  if (response.status === 401 && signIn) location.assign("/ui/signin");
  if (!response.ok) throw ApiError.of(response.status, data);
  return data;
}

/** fetch, with "the server does not answer" as an ApiError (status 0); an abort stays an abort. */
export async function send(url, init = {}) {
  try {
    return await fetch(url, init);
  } catch (err) {
    if (err && err.name === "AbortError") throw err;
    throw new ApiError(0, "the server does not answer; is conveyor server running?");
  }
}

/** A path segment from a value (a run id, a pipeline name). */
export const seg = (value) => encodeURIComponent(String(value));

/** A query string from an object, leaving out empty values. */
export function query(params) {
  const q = new URLSearchParams();
  for (const [k, v] of Object.entries(params)) if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
  const text = q.toString();
  return text ? `?${text}` : "";
}

export const isAbort = (err) => err && err.name === "AbortError";
