/**
 * The server side of Roundcube's password plugin `httpapi` driver (roundcube/roundcubemail,
 * plugins/password/drivers/httpapi.php; options in plugins/password/config.inc.php.dist): the driver POSTs
 * a form (`password_httpapi_var_user` / `_curpass` / `_newpass`, by default `user`, `curpass`, `newpass`),
 * takes a 2xx whose body matches `password_httpapi_expect` (default `/^ok$/i`) as success, a 404 or 5xx as
 * "connection error" and any other answer as "could not save". The client's own options
 * (`password_http_client`: Guzzle's `verify` for the stack's CA, `headers` for the bearer token) are
 * Roundcube's.
 *
 * Narrow on purpose: one path, one method, one form; a user changes only their own password, proving the
 * current one; the new one follows the CLI's rule; attempts are rate limited per user and per source
 * before any hash is computed; every failure gets the same body. Passwords are never logged.
 */
import { randomUUID } from "node:crypto";
import { readFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { changeOwnPassword, checkNewPassword } from "./admin";
import type { Couch } from "./couch";
import { handlerFailed } from "./guard";
import { sameSecret, send } from "./http";
import { errText, type Logger } from "./log";
import type { Metrics, PasswordChangeResult } from "./metrics";
import { AuthPolicy, DEFAULT_POLICY_LIMITS, PolicyLimits, PolicyRequest } from "./policy";
import type { PasswordListenConfig } from "./serveconfig";

export const PASSWORD_PATH = "/password";
/** Three short fields; anything bigger is not the driver. */
const MAX_BODY = 4096;
const FIELDS = ["user", "curpass", "newpass"] as const;

/**
 * The auth policy's buckets, stricter: a password change is rare, and every request reaches us from the
 * webmail pod's one address (the driver does not pass the browser's). `guess`/`known` hold one user from
 * that address, `account` one user whatever the address (enforced from the first source on), `source` the
 * whole webmail pod. No tarpit: an attempt that would have to wait is refused, without computing a hash.
 * A successful change refunds its attempt, a verified wrong password stays charged. A user who changed their
 * password from an address is then held by a bucket of their own there (`known`), as strict as the per-user
 * one, instead of the source's: failures of others do not lock them out.
 */
export const PASSWORD_CHANGE_LIMITS: PolicyLimits = {
  ...DEFAULT_POLICY_LIMITS,
  source: { burst: 10, intervalMs: 60_000 },
  guess: { burst: 5, intervalMs: 5 * 60_000 },
  account: { burst: 5, intervalMs: 5 * 60_000 },
  known: { burst: 5, intervalMs: 5 * 60_000 },
  distinctSources: 1,
  maxTarpitSeconds: 0,
};

const STATUS: Record<PasswordChangeResult, number> = {
  changed: 200,
  refused: 403,
  limited: 429,
  invalid: 400,
  unauthorized: 401,
  // Roundcube reports a 5xx as a connection error: the user may try again later.
  failed: 503,
};

type Form = Record<(typeof FIELDS)[number], string>;

/** The driver's form: exactly the three fields, once each, none empty. Throws saying what is wrong (never with a value). */
export function parsePasswordForm(contentType: string | undefined, body: string): Form {
  if (!/^application\/x-www-form-urlencoded\s*(;|$)/i.test(contentType ?? "")) throw new Error("content-type must be application/x-www-form-urlencoded");
  const params = new URLSearchParams(body);
  const form: Partial<Form> = {};
  for (const [k, v] of params) {
    if (!(FIELDS as readonly string[]).includes(k)) throw new Error(`unexpected field ${JSON.stringify(k.slice(0, 32))} (allowed: ${FIELDS.join(", ")})`);
    if (form[k as keyof Form] !== undefined) throw new Error(`field ${k} given twice`);
    form[k as keyof Form] = v;
  }
  for (const k of FIELDS) if (!form[k]) throw new Error(`field ${k} is missing or empty`);
  return form as Form;
}

export interface PasswordServerOptions {
  token?: string;
  tls?: { cert: string; key: string };
}

export function createPasswordServer(
  couch: Couch,
  metrics: Metrics,
  log: Logger,
  opts: PasswordServerOptions,
  limiter = new AuthPolicy(PASSWORD_CHANGE_LIMITS),
): http.Server {
  const answer = (res: http.ServerResponse, result: PasswordChangeResult, fields: Record<string, unknown> = {}) => {
    metrics.passwordChanges.inc({ result });
    const line = { event: "password_change", result, ...fields };
    if (result === "changed") log.info(line, "password changed");
    else if (result === "failed") log.error(line, "password change failed");
    else log.warn(line, "password change refused");
    send(res, STATUS[result], result === "changed" ? "OK" : "failed", "text/plain; charset=utf-8");
  };

  const change = async (req: http.IncomingMessage, res: http.ServerResponse, body: string) => {
    const remote = req.socket.remoteAddress ?? "";
    let form: Form;
    try {
      form = parsePasswordForm(req.headers["content-type"], body);
      checkNewPassword(form.newpass);
    } catch (e) {
      return answer(res, "invalid", { remote, why: errText(e) });
    }
    const login = form.user.trim().toLowerCase();
    const who = { remote, login: login.slice(0, 320) };
    const attempt: PolicyRequest = { login, remote, protocol: "password", session: randomUUID() };
    const decision = limiter.allow(attempt);
    if (decision.decision !== "allow") return answer(res, "limited", { ...who, limit: decision.limit });
    let outcome: Awaited<ReturnType<typeof changeOwnPassword>> | "error";
    try {
      outcome = await changeOwnPassword(couch, login, form.curpass, form.newpass);
    } catch (e) {
      // Datastore errors carry the request path, our own errors their message: neither holds a password.
      log.error({ event: "password_change_error", ...who, err: errText(e) }, "password change could not be completed");
      outcome = "error";
    }
    // Our own failures are refunded like a success: what stays charged is a wrong password or an unknown user.
    const ours = outcome === "error" || outcome === "unverifiable";
    limiter.report({ ...attempt, success: outcome === "changed", failType: ours ? "internal" : "" });
    if (outcome === "changed" || outcome === "refused") return answer(res, outcome, who);
    return answer(res, "failed", { ...who, why: outcome === "unverifiable" ? "stored hash scheme cannot be verified here" : "datastore or internal error" });
  };

  const handle = (req: http.IncomingMessage, res: http.ServerResponse) => {
    const path = (req.url ?? "/").split("?")[0];
    if (path !== PASSWORD_PATH) return send(res, 404, "not found", "text/plain; charset=utf-8");
    // A query string would put passwords into access logs on the way (the driver's GET mode): never accepted.
    if (req.method !== "POST" || (req.url ?? "").includes("?")) return send(res, 405, "failed", "text/plain; charset=utf-8");
    if (opts.token !== undefined && !sameSecret(req.headers.authorization ?? "", `Bearer ${opts.token}`)) {
      req.resume();
      return answer(res, "unauthorized", { remote: req.socket.remoteAddress });
    }
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (c: Buffer) => {
      size += c.length;
      if (size <= MAX_BODY) chunks.push(c);
    });
    req.on("end", () => {
      if (size > MAX_BODY) return answer(res, "invalid", { remote: req.socket.remoteAddress, why: "request body too large" });
      change(req, res, Buffer.concat(chunks).toString("utf8")).catch((e) => {
        handlerFailed({ metrics, log }, "http", e);
        if (!res.headersSent) send(res, 503, "failed", "text/plain; charset=utf-8");
      });
    });
    req.on("error", () => res.destroy());
  };

  const listener = (req: http.IncomingMessage, res: http.ServerResponse) => {
    try {
      handle(req, res);
    } catch (e) {
      handlerFailed({ metrics, log }, "http", e);
      if (!res.headersSent) send(res, 503, "failed", "text/plain; charset=utf-8");
      else res.destroy();
    }
  };
  const server = opts.tls ? https.createServer({ ...opts.tls, minVersion: "TLSv1.2" }, listener) : http.createServer(listener);
  server.headersTimeout = 10_000;
  server.requestTimeout = 30_000;
  server.keepAliveTimeout = 60_000;
  return server;
}

type PemFiles = NonNullable<PasswordListenConfig["tls"]>;

function readPem(files: PemFiles): { cert: string; key: string } {
  return { cert: readFileSync(files.certFile, "utf8"), key: readFileSync(files.keyFile, "utf8") };
}

/**
 * Serves the certificate and key the files hold whenever they change (cert-manager renews into the mounted
 * Secret; the kubelet swaps the files). A pair that does not load is logged and the one served stays.
 * Stops with the server.
 */
function reloadCertificate(server: https.Server, files: PemFiles, served: { cert: string; key: string }, log: Logger): void {
  let current = served;
  const timer = setInterval(() => {
    try {
      const next = readPem(files);
      if (next.cert === current.cert && next.key === current.key) return;
      server.setSecureContext({ ...next, minVersion: "TLSv1.2" });
      current = next;
      log.info({ event: "tls_reloaded", cert: files.certFile }, "password listener serves the renewed certificate");
    } catch (e) {
      log.error({ event: "tls_reload_failed", cert: files.certFile, err: errText(e) }, "certificate files do not load; the previous certificate stays");
    }
  }, files.reloadMs);
  timer.unref();
  server.once("close", () => clearInterval(timer));
}

/** The listener as `serve` starts it: TLS from the configured files (reloaded when they change), the token. */
export function passwordServer(cfg: PasswordListenConfig, couch: Couch, metrics: Metrics, log: Logger): http.Server {
  if (!cfg.tls) return createPasswordServer(couch, metrics, log, { token: cfg.token });
  const pem = readPem(cfg.tls);
  const server = createPasswordServer(couch, metrics, log, { token: cfg.token, tls: pem }) as https.Server;
  reloadCertificate(server, cfg.tls, pem, log);
  return server;
}
