import { timingSafeEqual, createHash } from "node:crypto";
import http from "node:http";
import type { Cache } from "./cache";
import { errText } from "./cache";
import { GuardContext, guarded } from "./guard";
import type { Logger } from "./log";
import { AuthResult, DovecotOptions, passdb, userdb } from "./lookups";
import type { Metrics } from "./metrics";

export interface HttpOptions extends DovecotOptions {
  token?: string; // when set, /dovecot/* requires "Authorization: Bearer <token>"
}

function send(res: http.ServerResponse, status: number, body: unknown, type = "application/json"): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": type, "cache-control": "no-store", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

function sameSecret(a: string, b: string): boolean {
  // Hash first so lengths match and the comparison time says nothing.
  return timingSafeEqual(createHash("sha256").update(a).digest(), createHash("sha256").update(b).digest());
}

export function health(cache: Cache): Record<string, unknown> {
  return {
    status: !cache.loaded ? "loading" : cache.stale ? "stale" : "ok",
    loaded: cache.loaded,
    stale: cache.stale,
    feed_connected: cache.feedConnected,
    documents: cache.snapshot?.size ?? 0,
    feed_lag_seconds: cache.lastFeedAliveAt ? (Date.now() - cache.lastFeedAliveAt) / 1000 : null,
  };
}

export function createHttpServer(cache: Cache, metrics: Metrics, log: Logger, opts: HttpOptions): http.Server {
  const ctx: GuardContext = { cache, metrics, log };
  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0];
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, { error: "method not allowed" });
    if (path === "/healthz") return send(res, 200, health(cache));
    if (path === "/readyz") return send(res, cache.loaded ? 200 : 503, health(cache));
    if (path === "/metrics") {
      metrics.registry.metrics().then(
        (text) => send(res, 200, text, metrics.registry.contentType),
        () => send(res, 500, { error: "metrics failed" }),
      );
      return;
    }
    const m = /^\/dovecot\/(passdb|userdb)\/([^/]+)$/.exec(path);
    if (!m) return send(res, 404, { error: "not found" });
    if (opts.token !== undefined && !sameSecret(req.headers.authorization ?? "", `Bearer ${opts.token}`)) {
      log.warn({ event: "http_unauthorized", path: `/dovecot/${m[1]}` }, "request without the right token");
      return send(res, 401, { error: "unauthorized" });
    }
    let user: string;
    try {
      user = decodeURIComponent(m[2]);
    } catch {
      // A bad %-escape is the client's bug: say so, never crash.
      metrics.observe(m[1], "bad_request", process.hrtime.bigint());
      return send(res, 400, { error: "bad percent-encoding" });
    }
    const kind = m[1];
    const r: AuthResult = guarded(ctx, kind, (snapshot) => (kind === "passdb" ? passdb(snapshot, user, opts) : userdb(snapshot, user, opts)));
    if (r.kind === "ok") return send(res, 200, r.fields);
    if (r.kind === "notfound") return send(res, 404, { error: "unknown user" });
    return send(res, 503, { error: r.why });
  };
  const server = http.createServer((req, res) => {
    try {
      handle(req, res);
    } catch (e) {
      // A bug outside the lookups (they are guarded): 503 is a temporary failure to Dovecot's Lua
      // script, never "unknown user"; the process keeps serving.
      log.error({ event: "internal_error", protocol: "http", err: errText(e) }, "HTTP handler failed");
      if (!res.headersSent) send(res, 503, { error: "internal error" });
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 60_000;
  return server;
}
