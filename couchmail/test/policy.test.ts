/**
 * The auth policy's decisions on a fake clock: what Dovecot would be told for each attempt as it
 * begins (allow / tarpit N / reject) and how reports change it.
 */
import { AuthPolicy, DEFAULT_POLICY_LIMITS, PolicyRequest, parsePolicyRequest, sourceKey } from "../src/policy";

class Clock {
  t = 1_000_000;
  now = () => this.t;
  advance(ms: number): void {
    this.t += ms;
  }
}

let sessions = 0;
const attempt = (login: string, remote: string): PolicyRequest => ({ login, remote, protocol: "imap", session: `s${++sessions}` });
const report = (req: PolicyRequest, success: boolean, failType = success ? "" : "credentials"): PolicyRequest => ({
  ...req,
  success,
  failType,
  policyReject: false,
});

function setup() {
  const clock = new Clock();
  return { clock, policy: new AuthPolicy(DEFAULT_POLICY_LIMITS, clock.now) };
}

describe("one address guessing one account", () => {
  it("20 guesses begun in parallel: the pair's burst of 5 is checked, the other 15 refused before any failure is reported", () => {
    const { policy } = setup();
    const decisions = Array.from({ length: 20 }, () => policy.allow(attempt("alice@example.org", "192.0.2.7")));
    expect(decisions.slice(0, 5).map((d) => d.status)).toEqual([0, 0, 0, 0, 0]);
    expect(decisions.slice(5).every((d) => d.decision === "reject" && d.limit === "guess")).toBe(true);
  });

  it("then one guess a minute; a refused attempt does not push the next one further out", () => {
    const { clock, policy } = setup();
    for (let i = 0; i < 5; i++) policy.allow(attempt("alice@example.org", "192.0.2.7"));
    for (let i = 0; i < 50; i++) expect(policy.allow(attempt("alice@example.org", "192.0.2.7")).decision).toBe("reject");
    clock.advance(45_000);
    // 15 s before the next slot: tarpitted for exactly that long, so it is checked on time.
    expect(policy.allow(attempt("alice@example.org", "192.0.2.7"))).toEqual({ decision: "tarpit", status: 15, limit: "guess" });
    expect(policy.allow(attempt("alice@example.org", "192.0.2.7")).decision).toBe("reject");
    clock.advance(75_000);
    expect(policy.allow(attempt("alice@example.org", "192.0.2.7")).status).toBe(0);
  });

  it("does not lock out a new address of the user: a single attacker does not make the account limit apply", () => {
    const { policy } = setup();
    for (let i = 0; i < 40; i++) policy.allow(attempt("alice@example.org", "192.0.2.7"));
    expect(policy.allow(attempt("alice@example.org", "198.51.100.9")).status).toBe(0);
  });
});

describe("one address spraying many accounts", () => {
  it("10 at once, then one per 10 s with a tarpit of up to 15 s, then refused", () => {
    const { policy } = setup();
    const statuses = Array.from({ length: 14 }, (_, i) => policy.allow(attempt(`user${i}@example.org`, "192.0.2.7")).status);
    expect(statuses).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, -1, -1, -1]);
  });

  it("parallel tarpits are spaced one interval apart, so checks never come faster than the limit", () => {
    const { clock, policy } = setup();
    for (let i = 0; i < 10; i++) policy.allow(attempt(`user${i}@example.org`, "192.0.2.7"));
    clock.advance(20_000);
    // Two slots have come back: used at once; the next waits 10 s.
    const statuses = [10, 11, 12, 13].map((i) => policy.allow(attempt(`user${i}@example.org`, "192.0.2.7")).status);
    expect(statuses).toEqual([0, 0, 10, -1]);
  });
});

describe("successes", () => {
  it("a success is refunded, so a user's correct logins never use up their address's budget", () => {
    const { policy } = setup();
    for (let i = 0; i < 30; i++) {
      const req = attempt(`user${i % 3}@example.org`, "192.0.2.7");
      expect(policy.allow(req).status).toBe(0);
      policy.report(report(req, true));
    }
  });

  it("an internal failure (couchmail down) is refunded; a wrong password is not", () => {
    const { policy } = setup();
    for (let i = 0; i < 10; i++) {
      const req = attempt("alice@example.org", "192.0.2.7");
      policy.allow(req);
      policy.report(report(req, false, "internal"));
    }
    for (let i = 0; i < 5; i++) {
      const req = attempt("alice@example.org", "192.0.2.7");
      expect(policy.allow(req).status).toBe(0);
      policy.report(report(req, false));
    }
    expect(policy.allow(attempt("alice@example.org", "192.0.2.7")).decision).toBe("reject");
  });

  it("an address that logged in is exempt from the guessing limits, with a bucket of its own", () => {
    const { policy } = setup();
    const ok = attempt("alice@example.org", "192.0.2.7");
    policy.allow(ok);
    policy.report(report(ok, true));
    // Someone else behind the same address guesses another account: refused…
    for (let i = 0; i < 30; i++) policy.allow(attempt(`victim${i}@example.org`, "192.0.2.7"));
    expect(policy.allow(attempt("carol@example.org", "192.0.2.7")).decision).toBe("reject");
    // …while alice from there is not (and is limited by her own bucket: 10 at once, then one per 10 s).
    const statuses = Array.from({ length: 12 }, () => policy.allow(attempt("alice@example.org", "192.0.2.7")).status);
    expect(statuses).toEqual([0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 10, -1]);
    const d = policy.allow(attempt("alice@example.org", "192.0.2.7"));
    expect(d.decision === "reject" && d.limit).toBe("known");
  });

  it("a known address is forgotten after 30 days without a login", () => {
    const { clock, policy } = setup();
    const ok = attempt("alice@example.org", "192.0.2.7");
    policy.allow(ok);
    policy.report(report(ok, true));
    clock.advance(DEFAULT_POLICY_LIMITS.knownForMs + 1000);
    for (let i = 0; i < 5; i++) policy.allow(attempt("alice@example.org", "192.0.2.7"));
    expect(policy.allow(attempt("alice@example.org", "192.0.2.7")).decision).toBe("reject");
  });
});

describe("a distributed attack on one account", () => {
  it("from 3 or more addresses the account limit applies to every unknown address, the user's known one is exempt", () => {
    const { policy } = setup();
    const home = attempt("bob@example.org", "203.0.113.4");
    policy.allow(home);
    policy.report(report(home, true));
    const bots = Array.from({ length: 12 }, (_, i) => `192.0.2.${10 + i}`);
    let checked = 0;
    for (const bot of bots) for (let i = 0; i < 3; i++) if (policy.allow(attempt("bob@example.org", bot)).status === 0) checked++;
    // The first two addresses' 6 attempts before the third address made it "distributed", at most.
    expect(checked).toBeLessThanOrEqual(6);
    const fresh = policy.allow(attempt("bob@example.org", "198.51.100.9"));
    expect(fresh.decision === "reject" && fresh.limit).toBe("account");
    expect(policy.allow(attempt("bob@example.org", "203.0.113.4")).status).toBe(0);
  });

  it("the account limit stops applying an hour after the addresses went quiet", () => {
    const { clock, policy } = setup();
    for (const bot of ["192.0.2.10", "192.0.2.11", "192.0.2.12"]) for (let i = 0; i < 3; i++) policy.allow(attempt("bob@example.org", bot));
    clock.advance(DEFAULT_POLICY_LIMITS.distinctWindowMs + 1000);
    expect(policy.allow(attempt("bob@example.org", "198.51.100.9")).status).toBe(0);
  });
});

describe("state", () => {
  it("stays within maxKeys under a flood of addresses and accounts, and sweeps what no longer matters", () => {
    const clock = new Clock();
    const policy = new AuthPolicy({ ...DEFAULT_POLICY_LIMITS, maxKeys: 50 }, clock.now);
    for (let i = 0; i < 1000; i++) policy.allow(attempt(`u${i}@example.org`, `10.0.${i >> 8}.${i & 255}`));
    const t = policy.tracked;
    expect(Math.max(t.buckets, t.accounts, t.sessions, t.known)).toBeLessThanOrEqual(50);
    clock.advance(DEFAULT_POLICY_LIMITS.distinctWindowMs + 200_000);
    policy.allow(attempt("x@example.org", "10.9.9.9"));
    expect(policy.tracked).toEqual({ buckets: 3, known: 0, accounts: 1, sessions: 1 });
  });

  it("refused attempts change nothing: a flood of them cannot evict the record of an account under attack", () => {
    const clock = new Clock();
    const policy = new AuthPolicy({ ...DEFAULT_POLICY_LIMITS, maxKeys: 50 }, clock.now);
    for (const bot of ["192.0.2.10", "192.0.2.11", "192.0.2.12"]) for (let i = 0; i < 3; i++) policy.allow(attempt("bob@example.org", bot));
    for (let i = 0; i < 5000; i++) policy.allow(attempt(`random${i}@example.org`, "192.0.2.99"));
    expect(policy.tracked.accounts).toBeLessThanOrEqual(12);
    const fresh = policy.allow(attempt("bob@example.org", "198.51.100.9"));
    expect(fresh.decision === "reject" && fresh.limit).toBe("account");
  });

  it("keys IPv6 sources by their /64 and IPv4-mapped ones as IPv4", () => {
    expect(sourceKey("2001:db8:1:2:aaaa::1")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:db8:1:2:bbbb:cccc:dddd:eeee")).toBe("2001:db8:1:2::/64");
    expect(sourceKey("2001:db8::1")).toBe("2001:db8:0:0::/64");
    expect(sourceKey("::1")).toBe("0:0:0:0::/64");
    expect(sourceKey("::ffff:192.0.2.1")).toBe("192.0.2.1");
    expect(sourceKey("192.0.2.1")).toBe("192.0.2.1");
    const { policy } = setup();
    for (let i = 0; i < 5; i++) policy.allow(attempt("alice@example.org", `2001:db8:1:2::${i + 1}`));
    expect(policy.allow(attempt("alice@example.org", "2001:db8:1:2:ffff::9")).decision).toBe("reject");
  });
});

describe("parsePolicyRequest", () => {
  it("reads Dovecot's attributes, lower-cases the login, names a field of the wrong type", () => {
    expect(
      parsePolicyRequest({
        login: " Alice@Example.org",
        remote: "192.0.2.7",
        protocol: "imap",
        session_id: "abc",
        fail_type: "",
        tls: true,
        success: true,
        policy_reject: false,
      }),
    ).toEqual({
      login: "alice@example.org",
      remote: "192.0.2.7",
      protocol: "imap",
      session: "abc",
      success: true,
      failType: "",
      policyReject: false,
    });
    expect(() => parsePolicyRequest({ login: 5 })).toThrow("login must be a string");
    expect(() => parsePolicyRequest({ login: "a", success: "yes" })).toThrow("success must be a boolean");
    expect(() => parsePolicyRequest([])).toThrow("expected a JSON object");
  });
});
