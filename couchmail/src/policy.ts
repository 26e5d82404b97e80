/**
 * Dovecot's authentication policy server (https://doc.dovecot.org/2.4.1/core/config/auth/policy.html):
 * rate limits password guessing per source address and per account, in memory.
 *
 * Dovecot asks `command=allow` before it verifies a password and waits for the answer: status 0
 * lets it verify now, N > 0 makes it wait N seconds first (a tarpit; Dovecot holds the request on
 * a timer, src/auth/auth-request.c auth_request_policy_check_callback), N < 0 fails the login
 * without verifying the password. After the verification it sends `command=report` with
 * `success` (and `fail_type`, `policy_reject`). The answer is computed at once: holding the HTTP
 * reply would hit Dovecot's 2 s request timeout, which fails open.
 *
 * Why this and not Dovecot's own penalty: anvil's penalty is read when a request begins, so
 * parallel guesses that all begin before the first failure is recorded are not slowed at all.
 * Here every attempt is charged *when it begins*, so the 20th of 20 parallel guesses sees the 19
 * before it.
 *
 * Each limit is a GCRA bucket (a leaky bucket without timers: one "theoretical arrival time" per
 * key): `burst` attempts at once, then one per `interval`. An attempt that would have to wait up to
 * `maxTarpitSeconds` is tarpitted that long (so parallel guesses are verified one interval apart);
 * one that would wait longer is refused and not charged. A login that succeeds (or fails on our
 * side: fail_type "internal") is refunded, so what stays charged is failed guesses.
 *
 * Who is charged:
 *  - an address that logged in to this account successfully within `knownForMs` (a "known" pair)
 *    is limited only by its own, generous bucket: guessing from elsewhere never locks the real user
 *    out of the devices and networks they use;
 *  - any other attempt is charged to its source address (`source`: password spraying across
 *    accounts), to the pair (`guess`: one address hammering one account) and to the account
 *    (`account`). The account limit is *enforced* only while `distinctSources` or more unknown
 *    addresses attempted the account within `distinctWindowMs` (a distributed attack): a single
 *    attacking address is held by its own limits and never locks a new address of the user out.
 *    While a distributed attack lasts, a new address of the user is refused too — the price of
 *    refusing the attacker's possibly correct guess; known addresses keep working.
 *
 * IPv6 sources are keyed by their /64 (one customer's allocation). State is bounded: fresh buckets
 * are swept, and past `maxKeys` the oldest entries are dropped (forgetting, i.e. failing open).
 */

export const POLICY_REFUSAL = "Too many failed logins, try again later";

export interface BucketLimit {
  burst: number;
  intervalMs: number;
}

export interface PolicyLimits {
  source: BucketLimit;
  guess: BucketLimit;
  account: BucketLimit;
  known: BucketLimit;
  maxTarpitSeconds: number;
  knownForMs: number;
  distinctSources: number;
  distinctWindowMs: number;
  maxKeys: number;
}

const MINUTE = 60_000;

export const DEFAULT_POLICY_LIMITS: PolicyLimits = {
  source: { burst: 10, intervalMs: 10_000 },
  guess: { burst: 5, intervalMs: MINUTE },
  account: { burst: 5, intervalMs: MINUTE },
  known: { burst: 10, intervalMs: 10_000 },
  // Dovecot's own penalty waits up to 15 s as well: IMAP and SMTP clients tolerate it.
  maxTarpitSeconds: 15,
  knownForMs: 30 * 24 * 60 * MINUTE,
  distinctSources: 3,
  distinctWindowMs: 60 * MINUTE,
  // Per map (buckets, known pairs, accounts, sessions): about 20 MiB at most in all (measured), within the sidecar's memory.
  maxKeys: 20_000,
};

/** What Dovecot sends (the attributes components/dovecot/config.ts renders, plus its own fields). */
export interface PolicyRequest {
  login: string;
  remote: string;
  protocol: string;
  session: string;
  /** report only */
  success?: boolean;
  failType?: string;
  policyReject?: boolean;
}

export type Limit = "source" | "guess" | "account" | "known";

export type Decision =
  { decision: "allow"; status: 0 } | { decision: "tarpit"; status: number; limit: Limit } | { decision: "reject"; status: -1; limit: Limit; msg: string };

/** Parses Dovecot's JSON body; throws with the field at fault. */
export function parsePolicyRequest(body: unknown): PolicyRequest {
  if (typeof body !== "object" || body === null || Array.isArray(body)) throw new Error("policy request: expected a JSON object");
  const o = body as Record<string, unknown>;
  const str = (k: string): string => {
    const v = o[k] ?? "";
    if (typeof v !== "string") throw new Error(`policy request: ${k} must be a string`);
    return v;
  };
  const bool = (k: string): boolean | undefined => {
    const v = o[k];
    if (v === undefined) return undefined;
    if (typeof v !== "boolean") throw new Error(`policy request: ${k} must be a boolean`);
    return v;
  };
  return {
    login: str("login").trim().toLowerCase(),
    remote: str("remote").trim(),
    protocol: str("protocol"),
    session: str("session_id"),
    success: bool("success"),
    failType: str("fail_type"),
    policyReject: bool("policy_reject"),
  };
}

/** The key for a source address: IPv4 as is, IPv6 by its /64. */
export function sourceKey(remote: string): string {
  if (!remote.includes(":")) return remote;
  const v4 = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(remote);
  if (v4) return v4[1];
  const [head, tail] = remote.toLowerCase().split("::");
  const left = head ? head.split(":") : [];
  const right = tail !== undefined && tail !== "" ? tail.split(":") : [];
  const groups = tail === undefined ? left : [...left, ...Array(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return (
    groups
      .slice(0, 4)
      .map((g) => g.replace(/^0+(?=.)/, ""))
      .join(":") + "::/64"
  );
}

/** A Map with insertion order as age: touching moves a key to the end; the oldest go first past the cap. */
class Bounded<V> extends Map<string, V> {
  constructor(private readonly cap: number) {
    super();
  }
  put(k: string, v: V): void {
    this.delete(k);
    this.set(k, v);
    if (this.size > this.cap) this.delete(this.keys().next().value as string);
  }
}

export class AuthPolicy {
  /** Theoretical arrival time per bucket key ("source:…", "guess:…", "account:…", "known:…"). */
  private readonly tat: Bounded<number>;
  /** login|source → last successful login. */
  private readonly known: Bounded<number>;
  /** login → unknown source → last attempt. */
  private readonly sources: Bounded<Map<string, number>>;
  /** session → limits charged by its allow, refunded when the report says success. */
  private readonly sessions: Bounded<{ at: number; charges: Limit[] }>;
  private lastSweep = 0;

  constructor(
    readonly limits: PolicyLimits = DEFAULT_POLICY_LIMITS,
    private readonly now: () => number = Date.now,
  ) {
    this.tat = new Bounded(limits.maxKeys);
    this.known = new Bounded(limits.maxKeys);
    this.sources = new Bounded(limits.maxKeys);
    this.sessions = new Bounded(limits.maxKeys);
  }

  /** Entries held, for the metrics. */
  get tracked(): { buckets: number; known: number; accounts: number; sessions: number } {
    return { buckets: this.tat.size, known: this.known.size, accounts: this.sources.size, sessions: this.sessions.size };
  }

  /** `command=allow`: charge the attempt as it begins, or refuse it. */
  allow(req: PolicyRequest): Decision {
    const now = this.now();
    this.sweep(now);
    const src = sourceKey(req.remote);
    const pair = `${req.login}|${src}`;
    const knownAt = this.known.get(pair);
    const checks: { limit: Limit; key: string; bucket: BucketLimit; enforced: boolean }[] = [];
    if (knownAt !== undefined && now - knownAt <= this.limits.knownForMs) {
      checks.push({ limit: "known", key: this.bucketKey("known", req.login, src), bucket: this.limits.known, enforced: true });
    } else {
      const seen = this.sources.get(req.login);
      let distinct = seen && seen.has(src) ? 0 : 1;
      for (const at of seen?.values() ?? []) if (now - at <= this.limits.distinctWindowMs) distinct++;
      checks.push(
        { limit: "source", key: this.bucketKey("source", req.login, src), bucket: this.limits.source, enforced: true },
        { limit: "guess", key: this.bucketKey("guess", req.login, src), bucket: this.limits.guess, enforced: true },
        { limit: "account", key: this.bucketKey("account", req.login, src), bucket: this.limits.account, enforced: distinct >= this.limits.distinctSources },
      );
    }
    let worst: { limit: Limit; waitMs: number } | null = null;
    for (const c of checks) {
      if (!c.enforced) continue;
      const waitMs = this.waitMs(c.key, c.bucket, now);
      if (worst === null || waitMs > worst.waitMs) worst = { limit: c.limit, waitMs };
    }
    if (worst && worst.waitMs > this.limits.maxTarpitSeconds * 1000) {
      return { decision: "reject", status: -1, limit: worst.limit, msg: POLICY_REFUSAL };
    }
    // Only charged attempts change state (a refused flood cannot evict anything), and they are charged even where a
    // limit is not enforced: an account's count is ready when a distributed attack begins.
    for (const c of checks) this.tat.put(c.key, Math.max(this.tat.get(c.key) ?? now, now) + c.bucket.intervalMs);
    if (checks[0].limit !== "known") this.rememberSource(req.login, src, now);
    if (req.session) this.sessions.put(req.session, { at: now, charges: checks.map((c) => c.limit) });
    if (worst && worst.waitMs > 0) return { decision: "tarpit", status: Math.ceil(worst.waitMs / 1000), limit: worst.limit };
    return { decision: "allow", status: 0 };
  }

  /** `command=report`: a success makes the pair known and refunds its attempt; a failure stays charged. */
  report(req: PolicyRequest): void {
    const now = this.now();
    const session = req.session ? this.sessions.get(req.session) : undefined;
    if (req.session) this.sessions.delete(req.session);
    const refund = req.success === true || req.failType === "internal";
    const src = sourceKey(req.remote);
    if (session && refund) {
      for (const limit of session.charges) {
        const key = this.bucketKey(limit, req.login, src);
        const t = this.tat.get(key);
        if (t !== undefined) this.tat.set(key, t - this.limits[limit].intervalMs);
      }
    }
    if (req.success === true) {
      this.known.put(`${req.login}|${src}`, now);
      this.sources.get(req.login)?.delete(src);
    }
  }

  private bucketKey(limit: Limit, login: string, src: string): string {
    if (limit === "source") return `source:${src}`;
    if (limit === "account") return `account:${login}`;
    return `${limit}:${login}|${src}`;
  }

  private rememberSource(login: string, src: string, now: number): void {
    const seen = this.sources.get(login) ?? new Map<string, number>();
    seen.delete(src);
    seen.set(src, now);
    // Oldest first: drop what left the window, and keep a few: the count only has to reach distinctSources.
    for (const [s, at] of seen) {
      if (now - at <= this.limits.distinctWindowMs && seen.size <= Math.max(this.limits.distinctSources, 8)) break;
      seen.delete(s);
    }
    this.sources.put(login, seen);
  }

  /** How long an attempt now would have to wait in this bucket (≤ 0: not at all). */
  private waitMs(key: string, b: BucketLimit, now: number): number {
    const tat = Math.max(this.tat.get(key) ?? now, now);
    return tat - now - (b.burst - 1) * b.intervalMs;
  }

  /** Drops what no longer changes a decision; at most once a second. */
  private sweep(now: number): void {
    if (now - this.lastSweep < 1000) return;
    this.lastSweep = now;
    for (const [k, t] of this.tat) if (t <= now) this.tat.delete(k);
    for (const [k, at] of this.known) if (now - at > this.limits.knownForMs) this.known.delete(k);
    for (const [login, seen] of this.sources) {
      for (const [s, at] of seen) if (now - at > this.limits.distinctWindowMs) seen.delete(s);
      if (seen.size === 0) this.sources.delete(login);
    }
    const sessionTtl = (this.limits.maxTarpitSeconds + 120) * 1000;
    for (const [k, s] of this.sessions) if (now - s.at > sessionTtl) this.sessions.delete(k);
  }
}
