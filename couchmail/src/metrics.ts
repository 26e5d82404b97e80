import { Counter, Gauge, Histogram, Registry, collectDefaultMetrics } from "prom-client";
import type { Cache } from "./cache";
import { socketmapMaps } from "./lookups";
import type { AuthPolicy } from "./policy";

export const PASSWORD_CHANGE_RESULTS = ["changed", "refused", "limited", "invalid", "unauthorized", "failed"] as const;
export type PasswordChangeResult = (typeof PASSWORD_CHANGE_RESULTS)[number];

export class Metrics {
  readonly registry = new Registry();
  readonly lookups: Counter<"map" | "result">;
  readonly latency: Histogram<"map">;
  readonly protocolErrors: Counter<"protocol">;
  readonly lookupFailures: Counter<"map">;
  readonly internalErrors: Counter<"protocol">;
  readonly policyDecisions: Counter<"decision" | "limit">;
  readonly policyReports: Counter<"result">;
  readonly passwordChanges: Counter<"result">;

  constructor(cache: Cache, policy?: AuthPolicy) {
    const registers = [this.registry];
    collectDefaultMetrics({ register: this.registry });
    const counter = <L extends string>(name: string, help: string, labelNames: L[]) => new Counter<L>({ name, help, labelNames, registers });
    this.lookups = counter("couchmail_lookups_total", "Lookups answered, by map (socketmap name, passdb, userdb, sieve) and result (ok, notfound, temp)", [
      "map",
      "result",
    ]);
    // A labelled counter has no series until its first increment: rate() would miss that increment and an
    // absent() alert would fire on an idle, healthy service. Every map and result a lookup can have starts at 0.
    for (const map of [...Object.keys(socketmapMaps), "passdb", "userdb", "sieve"]) {
      for (const result of ["ok", "notfound", "temp"]) this.lookups.inc({ map, result }, 0);
    }
    this.latency = new Histogram({
      name: "couchmail_lookup_duration_seconds",
      help: "Time to answer one lookup, from request parsed to reply queued",
      labelNames: ["map"],
      buckets: [0.00001, 0.000025, 0.00005, 0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.01],
      registers,
    });
    this.protocolErrors = counter("couchmail_protocol_errors_total", "Connections closed because the client broke the protocol", ["protocol"]);
    this.lookupFailures = counter(
      "couchmail_lookup_failures_total",
      "Lookups whose handler threw, answered as a temporary failure (also counted in couchmail_lookups_total as temp)",
      ["map"],
    );
    this.internalErrors = counter(
      "couchmail_internal_errors_total",
      "Requests that failed outside the lookups (a bug of ours), answered as a temporary failure; socketmap and dict also close the connection",
      ["protocol"],
    );
    this.policyDecisions = counter(
      "couchmail_policy_decisions_total",
      "Dovecot auth policy answers before a password check: allow, tarpit or reject, by the limit that decided (none, source, guess, account, known)",
      ["decision", "limit"],
    );
    this.policyReports = counter(
      "couchmail_policy_reports_total",
      "Dovecot auth policy reports after a login: success, failure (a verified wrong guess or unknown user), refused (by this policy), internal",
      ["result"],
    );
    this.passwordChanges = counter(
      "couchmail_password_changes_total",
      "Password changes asked of the password endpoint, by result: changed, refused (wrong current password, unknown or disabled user), limited (rate limit), invalid (malformed request or new password), unauthorized (token), failed (datastore or our error)",
      ["result"],
    );
    for (const result of PASSWORD_CHANGE_RESULTS) this.passwordChanges.inc({ result }, 0);
    if (policy) {
      new Gauge({
        name: "couchmail_policy_tracked",
        help: "Entries the auth policy holds in memory, by kind (buckets, known, accounts, sessions)",
        labelNames: ["kind"],
        registers,
        collect() {
          for (const [kind, n] of Object.entries(policy.tracked)) this.set({ kind }, n);
        },
      });
    }
    new Gauge({
      name: "couchmail_cache_documents",
      help: "Documents held in memory",
      registers,
      collect() {
        this.set(cache.snapshot?.size ?? 0);
      },
    });
    new Gauge({
      name: "couchmail_cache_broken_documents",
      help: "Malformed documents (lookups touching them answer TEMP)",
      registers,
      collect() {
        this.set(cache.snapshot?.broken.size ?? 0);
      },
    });
    new Gauge({
      name: "couchmail_cache_loaded",
      help: "1 once the first full load has completed",
      registers,
      collect() {
        this.set(cache.loaded ? 1 : 0);
      },
    });
    new Gauge({
      name: "couchmail_cache_stale",
      help: "1 when the changes feed has been lost for longer than the configured bound",
      registers,
      collect() {
        this.set(cache.stale ? 1 : 0);
      },
    });
    new Gauge({
      name: "couchmail_feed_lag_seconds",
      help: "Seconds since the changes feed was last heard from (data or heartbeat)",
      registers,
      collect() {
        this.set(cache.lastFeedAliveAt ? (Date.now() - cache.lastFeedAliveAt) / 1000 : -1);
      },
    });
    new Gauge({
      name: "couchmail_last_change_age_seconds",
      help: "Seconds since the last change was applied (or the full load)",
      registers,
      collect() {
        this.set(cache.lastChangeAt ? (Date.now() - cache.lastChangeAt) / 1000 : -1);
      },
    });
  }

  /** Records one lookup; `started` is from process.hrtime.bigint(). */
  observe(map: string, result: string, started: bigint): void {
    this.lookups.inc({ map, result });
    this.latency.observe({ map }, Number(process.hrtime.bigint() - started) / 1e9);
  }
}
