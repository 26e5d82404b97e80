import type { Cache, Snapshot } from "./cache";
import { errText, type Logger } from "./log";
import type { Metrics } from "./metrics";

export type Temp = { kind: "temp"; why: string };

export interface GuardContext {
  cache: Cache;
  metrics: Metrics | null;
  log: Logger | null;
}

/**
 * Every lookup — socketmap, dict and HTTP alike — runs through here. Mail rule: when in doubt,
 * answer a temporary failure (Postfix defers with 451, Dovecot reports INTERNAL_FAILURE,
 * Pigeonhole retries), never "not found" (a bounce). Not loaded yet ⇒ temporary failure; a
 * lookup that throws ⇒ temporary failure, logged and counted. The result is recorded in the
 * lookup metrics either way.
 */
export function guarded<R extends { kind: string }>(ctx: GuardContext, map: string, lookup: (snapshot: Snapshot) => R): R | Temp {
  const started = process.hrtime.bigint();
  let result: R | Temp;
  const snapshot = ctx.cache.snapshot;
  if (!snapshot) result = { kind: "temp", why: "datastore not loaded yet" };
  else {
    try {
      result = lookup(snapshot);
    } catch (e) {
      ctx.metrics?.lookupFailures.inc({ map });
      // The error text only: keys and documents stay out of the log.
      ctx.log?.error({ event: "lookup_failed", map, err: errText(e) }, "lookup handler threw; answered a temporary failure");
      result = { kind: "temp", why: "internal error" };
    }
  }
  ctx.metrics?.observe(map, result.kind, started);
  return result;
}

/**
 * A failure outside the lookups — a bug of ours in a connection or request handler — is logged and
 * counted as an internal error, never as the client breaking the protocol. The caller answers a
 * temporary failure for this one connection or request (TEMP, F, 503); the process keeps serving.
 */
export function handlerFailed(ctx: Pick<GuardContext, "metrics" | "log">, protocol: "socketmap" | "dict" | "http", e: unknown): void {
  ctx.metrics?.internalErrors.inc({ protocol });
  ctx.log?.error({ event: "internal_error", protocol, err: errText(e) }, `${protocol} handler failed; answered a temporary failure`);
}

/** Exit code for "restart me": EX_SOFTWARE, an internal error. */
export const EXIT_INTERNAL = 70;

/**
 * The last resort, for an exception that escaped every guard (which wrap every lookup and every
 * connection handler). Such an exception left the process in a state nobody reasoned about, and
 * Node documents that resuming after 'uncaughtException' is unsafe; a wrong answer could be a
 * "not found" and bounce mail. Exiting is safe instead: while Kubernetes restarts the container
 * Postfix's lookups fail (451, mail deferred) and Dovecot's fail (INTERNAL_FAILURE, its auth cache
 * keeps known users logged in). So: log it, then exit for a restart.
 */
export function installLastResort(proc: NodeJS.EventEmitter, log: Logger, exit: (code: number) => void): void {
  proc.on("uncaughtException", (e: unknown) => {
    log.fatal({ event: "uncaught_exception", err: errText(e) }, "an exception escaped every guard; exiting for a restart");
    exit(EXIT_INTERNAL);
  });
  proc.on("unhandledRejection", (e: unknown) => {
    log.fatal({ event: "unhandled_rejection", err: errText(e) }, "a rejection escaped every guard; exiting for a restart");
    exit(EXIT_INTERNAL);
  });
}
