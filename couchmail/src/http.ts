import { timingSafeEqual, createHash } from "node:crypto";
import http from "node:http";
import type { Cache } from "./cache";
import { GuardContext, guarded, handlerFailed } from "./guard";
import { errText, type Logger } from "./log";
import { AuthResult, DovecotOptions, passdb, userdb } from "./lookups";
import type { Metrics } from "./metrics";
import { AuthPolicy, Decision, PolicyRequest, parsePolicyRequest } from "./policy";

export interface HttpOptions extends DovecotOptions {
  token?: string; // when set, /dovecot/* requires "Authorization: Bearer <token>"
  /** Answers Dovecot's auth policy requests (POST /dovecot/policy?command=allow|report). */
  policy?: AuthPolicy;
}

/** Dovecot's policy requests are a few short attributes; anything bigger is not Dovecot. */
const MAX_POLICY_BODY = 16 * 1024;

function reportResult(r: PolicyRequest): string {
  if (r.success) return "success";
  if (r.policyReject) return "refused";
  return r.failType === "internal" ? "internal" : "failure";
}

/**
 * POST /dovecot/policy?command=allow|report. Any error answers 503: Dovecot then logs
 * "Policy server HTTP error" and, with auth_policy_reject_on_fail = no, goes on without the policy
 * (components/dovecot/config.ts says why that is the safe side).
 */
function handlePolicy(req: http.IncomingMessage, res: http.ServerResponse, policy: AuthPolicy, metrics: Metrics, log: Logger): void {
  const command = new URL(req.url ?? "/", "http://policy").searchParams.get("command");
  if (command !== "allow" && command !== "report") return send(res, 400, { error: "command must be allow or report" });
  const chunks: Buffer[] = [];
  let size = 0;
  req.on("data", (c: Buffer) => {
    size += c.length;
    if (size <= MAX_POLICY_BODY) chunks.push(c);
  });
  req.on("end", () => {
    if (size > MAX_POLICY_BODY) {
      metrics.protocolErrors.inc({ protocol: "policy" });
      return send(res, 413, { error: "policy request too large" });
    }
    let r: PolicyRequest;
    try {
      r = parsePolicyRequest(JSON.parse(Buffer.concat(chunks).toString("utf8")));
    } catch (e) {
      metrics.protocolErrors.inc({ protocol: "policy" });
      log.warn({ event: "policy_bad_request", err: errText(e) }, "malformed auth policy request");
      return send(res, 400, { error: "malformed policy request" });
    }
    try {
      // Dovecot also sends a hash of the password when asked to; it is never asked, and the body
      // is never logged: only the fields named here are.
      const who = { remote: r.remote, login: r.login, protocol: r.protocol };
      if (command === "report") {
        policy.report(r);
        metrics.policyReports.inc({ result: reportResult(r) });
        return send(res, 200, { status: 0 });
      }
      const d: Decision = policy.allow(r);
      metrics.policyDecisions.inc({ decision: d.decision, limit: d.decision === "allow" ? "none" : d.limit });
      if (d.decision === "tarpit") log.info({ event: "policy_tarpit", ...who, limit: d.limit, seconds: d.status }, "login attempt delayed");
      if (d.decision === "reject") log.warn({ event: "policy_reject", ...who, limit: d.limit }, "login attempt refused");
      return send(res, 200, d.decision === "reject" ? { status: d.status, msg: d.msg } : { status: d.status });
    } catch (e) {
      metrics.lookupFailures.inc({ map: "policy" });
      log.error({ event: "policy_failed", err: errText(e) }, "auth policy handler threw; Dovecot goes on without the policy");
      return send(res, 503, { error: "internal error" });
    }
  });
  req.on("error", () => res.destroy());
}

export function send(res: http.ServerResponse, status: number, body: unknown, type = "application/json"): void {
  const text = typeof body === "string" ? body : JSON.stringify(body);
  res.writeHead(status, { "content-type": type, "cache-control": "no-store", "content-length": Buffer.byteLength(text) });
  res.end(text);
}

export function sameSecret(a: string, b: string): boolean {
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

function sendMetrics(res: http.ServerResponse, metrics: Metrics): void {
  metrics.registry.metrics().then(
    (text) => send(res, 200, text, metrics.registry.contentType),
    () => send(res, 500, { error: "metrics failed" }),
  );
}

/**
 * The scraper's listener: `GET /metrics` and nothing else. It may listen where other pods reach it, so it
 * never serves the lookups (the passdb hands out password hashes), the auth policy or anything added later.
 */
export function createMetricsServer(metrics: Metrics, log: Logger): http.Server {
  const server = http.createServer((req, res) => {
    try {
      const path = (req.url ?? "/").split("?")[0];
      if (path === "/metrics" && (req.method === "GET" || req.method === "HEAD")) return sendMetrics(res, metrics);
      return send(res, 404, { error: "not found" });
    } catch (e) {
      handlerFailed({ metrics, log }, "http", e);
      if (!res.headersSent) send(res, 503, { error: "internal error" });
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 60_000;
  return server;
}

export function createHttpServer(cache: Cache, metrics: Metrics, log: Logger, opts: HttpOptions): http.Server {
  const ctx: GuardContext = { cache, metrics, log };
  const authorized = (req: http.IncomingMessage, path: string): boolean => {
    if (opts.token === undefined || sameSecret(req.headers.authorization ?? "", `Bearer ${opts.token}`)) return true;
    log.warn({ event: "http_unauthorized", path }, "request without the right token");
    return false;
  };
  const handle = (req: http.IncomingMessage, res: http.ServerResponse): void => {
    const path = (req.url ?? "/").split("?")[0];
    if (path === "/dovecot/policy" && opts.policy) {
      if (req.method !== "POST") return send(res, 405, { error: "method not allowed" });
      if (!authorized(req, "/dovecot/policy")) return send(res, 401, { error: "unauthorized" });
      return handlePolicy(req, res, opts.policy, metrics, log);
    }
    if (req.method !== "GET" && req.method !== "HEAD") return send(res, 405, { error: "method not allowed" });
    if (path === "/healthz") return send(res, 200, health(cache));
    if (path === "/readyz") return send(res, cache.loaded ? 200 : 503, health(cache));
    if (path === "/metrics") return sendMetrics(res, metrics);
    const m = /^\/dovecot\/(passdb|userdb)\/([^/]+)$/.exec(path);
    if (!m) return send(res, 404, { error: "not found" });
    if (!authorized(req, `/dovecot/${m[1]}`)) return send(res, 401, { error: "unauthorized" });
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
      // A bug outside the lookups: 503 is a temporary failure to Dovecot's Lua script, never "unknown user".
      handlerFailed(ctx, "http", e);
      if (!res.headersSent) send(res, 503, { error: "internal error" });
      else res.destroy();
    }
  });
  server.keepAliveTimeout = 60_000;
  return server;
}
