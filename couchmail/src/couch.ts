import { readFileSync } from "node:fs";
import { DESIGN_ID, designDoc } from "./model";

export interface CouchConfig {
  url: string; // server URL, without the database
  db: string;
  user?: string;
  password?: string;
}

export class CouchError extends Error {
  constructor(
    message: string,
    readonly status: number,
  ) {
    super(message);
  }
}

/** Reads NAME, or the file named by NAME_FILE (for Kubernetes Secrets). */
export function envOrFile(env: NodeJS.ProcessEnv, name: string): string | undefined {
  const file = env[`${name}_FILE`];
  if (file) return readFileSync(file, "utf8").replace(/\r?\n$/, "");
  return env[name] || undefined;
}

export function couchConfigFromEnv(env: NodeJS.ProcessEnv = process.env): CouchConfig {
  const url = envOrFile(env, "COUCHDB_URL");
  if (!url) throw new Error("COUCHDB_URL (or COUCHDB_URL_FILE) is not set");
  return {
    url: url.replace(/\/+$/, ""),
    db: env.COUCHDB_DATABASE || "mail",
    user: envOrFile(env, "COUCHDB_USER"),
    password: envOrFile(env, "COUCHDB_PASSWORD"),
  };
}

/**
 * A minimal CouchDB client on Node's fetch. Every id is percent-encoded here, always
 * (one official client skips encoding for ids containing `_design`): callers cannot
 * build a path by accident.
 */
export class Couch {
  private readonly base: string;
  private readonly headers: Record<string, string>;

  constructor(readonly config: CouchConfig) {
    const u = new URL(config.url);
    const user = config.user ?? decodeURIComponent(u.username);
    const password = config.password ?? decodeURIComponent(u.password);
    u.username = "";
    u.password = "";
    this.base = `${u.toString().replace(/\/+$/, "")}/${encodeURIComponent(config.db)}`;
    // identity: a compressing proxy (or the test server) would otherwise hold back the feed.
    this.headers = { accept: "application/json", "accept-encoding": "identity" };
    if (user) this.headers.authorization = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");
  }

  /** Where the database lives, without credentials (safe to log). */
  get location(): string {
    return this.base;
  }

  url(docPath: string, query?: Record<string, string>): string {
    const qs = query ? "?" + new URLSearchParams(query).toString() : "";
    return `${this.base}${docPath}${qs}`;
  }

  docPath(id: string): string {
    // Design documents keep their one literal "/"; everything else is a single encoded segment.
    if (id.startsWith("_design/")) return `/_design/${encodeURIComponent(id.slice(8))}`;
    return `/${encodeURIComponent(id)}`;
  }

  async request(method: string, path: string, opts: { query?: Record<string, string>; body?: unknown; signal?: AbortSignal } = {}): Promise<Response> {
    const headers: Record<string, string> = { ...this.headers };
    if (opts.body !== undefined) headers["content-type"] = "application/json";
    return fetch(this.url(path, opts.query), {
      method,
      headers,
      body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
      signal: opts.signal ?? AbortSignal.timeout(10_000),
    });
  }

  async json<T>(method: string, path: string, opts: { query?: Record<string, string>; body?: unknown } = {}): Promise<T> {
    const res = await this.request(method, path, opts);
    const text = await res.text();
    if (!res.ok) {
      let reason = text.slice(0, 200);
      try {
        const j = JSON.parse(text);
        reason = [j.error, j.reason].filter(Boolean).join(": ");
      } catch {
        /* not JSON: keep the text */
      }
      throw new CouchError(`CouchDB ${method} ${path.split("?")[0]}: HTTP ${res.status} ${reason}`, res.status);
    }
    return JSON.parse(text) as T;
  }

  async get<T>(id: string): Promise<T | null> {
    try {
      return await this.json<T>("GET", this.docPath(id));
    } catch (e) {
      if (e instanceof CouchError && e.status === 404) return null;
      throw e;
    }
  }

  async put(doc: { _id: string; _rev?: string }): Promise<{ rev: string }> {
    return this.json("PUT", this.docPath(doc._id), { body: doc });
  }

  async remove(id: string, rev: string): Promise<void> {
    await this.json("DELETE", this.docPath(id), { query: { rev } });
  }

  /** All documents whose id starts with prefix (prefix must be one of ours). */
  async byPrefix<T>(prefix: string): Promise<T[]> {
    const res = await this.json<{ rows: { doc?: T }[] }>("GET", "/_all_docs", {
      query: { include_docs: "true", startkey: JSON.stringify(prefix), endkey: JSON.stringify(prefix + "\ufff0") },
    });
    return res.rows.flatMap((r) => (r.doc ? [r.doc] : []));
  }

  /** Creates the database if missing (needs admin rights; a 412 means it exists). */
  async ensureDatabase(): Promise<void> {
    const res = await fetch(this.base, { method: "PUT", headers: this.headers, signal: AbortSignal.timeout(10_000) });
    await res.text();
    if (!res.ok && res.status !== 412) throw new CouchError(`CouchDB PUT database: HTTP ${res.status}`, res.status);
  }

  /** Installs or upgrades the design document; returns what it did. Safe to race. */
  async installDesign(): Promise<"created" | "updated" | "unchanged"> {
    const want = designDoc();
    for (let attempt = 0; ; attempt++) {
      const have = await this.get<{ _rev: string; validate_doc_update?: string; language?: string }>(DESIGN_ID);
      if (have && have.validate_doc_update === want.validate_doc_update && have.language === want.language) return "unchanged";
      try {
        await this.put(have ? { ...want, _rev: have._rev } : want);
        return have ? "updated" : "created";
      } catch (e) {
        if (!(e instanceof CouchError && e.status === 409) || attempt >= 2) throw e;
      }
    }
  }
}
