/**
 * The metrics-only listener the scraper reaches (COUCHMAIL_METRICS_LISTEN): `GET /metrics` and nothing else,
 * so a scraper's network access never reaches the passdb (password hashes), the userdb or the auth policy.
 */
import { serveConfigFromEnv } from "../src/serveconfig";
import { SocketmapClient, Stack, startStack, waitFor } from "./harness";

/** The series the dashboard and alerts are built on: lookups by map and result, feed lag, load state. */
const LOOKUP_MAPS = ["domains", "mailboxes", "aliases", "senders", "passdb", "userdb", "sieve"];
const LOOKUP_RESULTS = ["ok", "notfound", "temp"];

describe("metrics listener", () => {
  let st: Stack;
  let metricsUrl: string;
  beforeAll(async () => {
    st = await startStack({ serve: { metrics: { kind: "tcp", host: "127.0.0.1", port: 0 } } });
    metricsUrl = `http://${st.running.addresses.metrics[0]}`;
    await waitFor(() => st.running.cache.loaded);
  });
  afterAll(() => st.stop());

  it("serves the metrics the dashboard needs, every lookup series at 0 before the first lookup", async () => {
    const res = await fetch(`${metricsUrl}/metrics`);
    expect(res.status).toBe(200);
    expect(res.headers.get("content-type")).toMatch(/^text\/plain/);
    const text = await res.text();
    // A labelled counter has no series until its first increment: rate() then misses that increment and an
    // alert on "absent" fires on a healthy, idle service. Every map/result pair is exported from the start.
    for (const map of LOOKUP_MAPS) {
      for (const result of LOOKUP_RESULTS) expect(text).toContain(`couchmail_lookups_total{map="${map}",result="${result}"} 0`);
    }
    expect(text).toMatch(/^couchmail_cache_loaded 1$/m);
    expect(text).toMatch(/^couchmail_cache_stale 0$/m);
    expect(text).toMatch(/^couchmail_feed_lag_seconds [0-9.e-]+$/m);
    expect(text).toMatch(/^couchmail_last_change_age_seconds [0-9.e-]+$/m);
    expect(text).toMatch(/^couchmail_cache_documents [1-9]/m);
    expect(text).toContain('couchmail_password_changes_total{result="changed"} 0');
  });

  it("counts lookups made on the other listeners", async () => {
    const sm = await SocketmapClient.connect(st.socketmapPort);
    try {
      expect(await sm.query("mailboxes", "alice@example.org")).toBe("OK alice@example.org");
    } finally {
      sm.close();
    }
    const text = await (await fetch(`${metricsUrl}/metrics`)).text();
    expect(text).toContain('couchmail_lookups_total{map="mailboxes",result="ok"} 1');
    expect(text).toMatch(/^couchmail_lookup_duration_seconds_bucket\{le="0.01",map="mailboxes"\} 1$/m);
  });

  it("answers 404 to everything else: no passdb, userdb, policy, health", async () => {
    for (const path of ["/dovecot/passdb/alice%40example.org", "/dovecot/userdb/alice%40example.org", "/healthz", "/readyz", "/", "/metrics/x"]) {
      const res = await fetch(`${metricsUrl}${path}`);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
      expect(await res.text()).not.toMatch(/BLF-CRYPT|\$2[aby]\$|home/);
    }
    const policy = await fetch(`${metricsUrl}/dovecot/policy?command=allow`, { method: "POST", body: JSON.stringify({ login: "a", remote: "192.0.2.1" }) });
    expect(policy.status).toBe(404);
    expect((await fetch(`${metricsUrl}/metrics`, { method: "POST", body: "" })).status).toBe(404);
    expect((await fetch(`${metricsUrl}/metrics`, { method: "HEAD" })).status).toBe(200);
  });

  it("the lookup listener keeps serving its own paths (loopback only)", async () => {
    expect((await fetch(`${st.httpUrl}/dovecot/userdb/alice%40example.org`)).status).toBe(200);
  });
});

describe("COUCHMAIL_METRICS_LISTEN", () => {
  const couch = { url: "http://127.0.0.1:5984", db: "mail" };

  it("is off unless set, and off when empty", () => {
    expect(serveConfigFromEnv(couch, {}).metrics).toBeUndefined();
    expect(serveConfigFromEnv(couch, { COUCHMAIL_METRICS_LISTEN: "" }).metrics).toBeUndefined();
  });

  it("takes one TCP address, the wildcard included (the scraper comes from another pod), never a unix socket", () => {
    expect(serveConfigFromEnv(couch, { COUCHMAIL_METRICS_LISTEN: "0.0.0.0:9101" }).metrics).toEqual({ kind: "tcp", host: "0.0.0.0", port: 9101 });
    expect(() => serveConfigFromEnv(couch, { COUCHMAIL_METRICS_LISTEN: "unix:/run/m.sock" })).toThrow(/COUCHMAIL_METRICS_LISTEN.*IP:PORT/);
    expect(() => serveConfigFromEnv(couch, { COUCHMAIL_METRICS_LISTEN: "127.0.0.1:1,127.0.0.1:2" })).toThrow(/COUCHMAIL_METRICS_LISTEN/);
  });

  it("the lookup listeners still refuse the wildcard", () => {
    expect(() => serveConfigFromEnv(couch, { COUCHMAIL_HTTP_LISTEN: "0.0.0.0:8080" })).toThrow(/wildcard/);
  });
});
