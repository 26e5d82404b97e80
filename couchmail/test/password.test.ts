/**
 * The password endpoint as Roundcube's password plugin calls it, against the CouchDB substitute, with a
 * proxy in between that takes CouchDB away (all of it, or its writes only) while the data stays.
 */
import { mkdtempSync, renameSync, rmSync, writeFileSync } from "node:fs";
import http from "node:http";
import https from "node:https";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import * as admin from "../src/admin";
import { Couch } from "../src/couch";
import { createLogger } from "../src/log";
import type { MailboxDoc } from "../src/model";
import { Running, serve } from "../src/serve";
import { PasswordListenConfig, serveConfigFromEnv } from "../src/serveconfig";
import { TestCouch, startCouch } from "./couchdb";
import { selfSigned } from "./doctor-fakes";
import { LogSink, seed, waitFor } from "./harness";

jest.setTimeout(120_000);

type DriverResult = "PASSWORD_SUCCESS" | "PASSWORD_ERROR" | "PASSWORD_CONNECT_ERROR";

/**
 * What Roundcube 1.6's httpapi driver makes of an answer (roundcube/roundcubemail
 * plugins/password/drivers/httpapi.php, save()): a thrown exception is a connection error; a non-2xx is
 * a connection error for 404 and 5xx, else an error; a 2xx body must match password_httpapi_expect
 * (config.inc.php.dist: '/^ok$/i'). Guzzle's default http_errors = true throws on every 4xx/5xx
 * (docs.guzzlephp.org request-options "http_errors"), so with default client options any failure is a
 * "connection error"; with 'http_errors' => false the status codes tell the two apart.
 */
function driverResult(answer: { status: number; body: string } | "exception", httpErrors = true): DriverResult {
  if (answer === "exception" || (httpErrors && answer.status >= 400)) return "PASSWORD_CONNECT_ERROR";
  if (answer.status < 200 || answer.status > 299) return answer.status === 404 || answer.status > 499 ? "PASSWORD_CONNECT_ERROR" : "PASSWORD_ERROR";
  return /^ok$/i.test(answer.body) ? "PASSWORD_SUCCESS" : "PASSWORD_ERROR";
}

/** Sends what the driver sends with its default POST method: Guzzle form_params (an urlencoded form). */
async function driverPost(
  url: string,
  fields: Record<string, string>,
  opts: { headers?: Record<string, string>; ca?: string; servername?: string } = {},
): Promise<{ status: number; body: string } | "exception"> {
  const body = new URLSearchParams(fields).toString();
  const u = new URL(url);
  return new Promise((resolve) => {
    const request = u.protocol === "https:" ? https.request : http.request;
    const req = request(
      u,
      {
        method: "POST",
        headers: { "content-type": "application/x-www-form-urlencoded", "content-length": Buffer.byteLength(body), ...opts.headers },
        ca: opts.ca,
        servername: opts.servername,
        // A connection per request, as PHP's curl makes one per Roundcube request.
        agent: false,
      },
      (res) => {
        let text = "";
        res.on("data", (c) => (text += c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, body: text }));
      },
    );
    req.on("error", () => resolve("exception"));
    req.end(body);
  });
}

const change = (user: string, curpass: string, newpass: string) => ({ user, curpass, newpass });
const status = (a: { status: number; body: string } | "exception") => (a === "exception" ? a : a.status);

/** Forwards to the test CouchDB; "down" drops every request, "no-writes" every one that is not a read. */
class CouchFaults {
  mode: "up" | "down" | "no-writes" = "up";
  private readonly server: http.Server;
  url = "";
  constructor(private readonly target: string) {
    this.server = http.createServer((req, res) => {
      if (this.mode === "down" || (this.mode === "no-writes" && req.method !== "GET" && req.method !== "HEAD")) {
        req.socket.destroy();
        return;
      }
      const upstream = http.request(`${this.target}${req.url}`, { method: req.method, headers: req.headers }, (r) => {
        res.writeHead(r.statusCode ?? 502, r.headers);
        r.pipe(res);
      });
      upstream.on("error", () => res.destroy());
      req.pipe(upstream);
    });
  }
  async start(): Promise<void> {
    await new Promise<void>((r) => this.server.listen(0, "127.0.0.1", r));
    this.url = `http://127.0.0.1:${(this.server.address() as { port: number }).port}`;
  }
  async stop(): Promise<void> {
    this.server.closeAllConnections();
    await new Promise((r) => this.server.close(r));
  }
}

interface PasswordStack {
  couch: Couch; // straight to CouchDB, for the test's own reads and writes
  faults: CouchFaults;
  running: Running;
  url: string;
  httpUrl: string;
  log: LogSink;
  stop(): Promise<void>;
}

async function startPasswordStack(password: Omit<PasswordListenConfig, "listen"> = {}, scheme = "http"): Promise<PasswordStack> {
  const server: TestCouch = await startCouch();
  const couch = new Couch({ url: server.url, db: "mail" });
  await seed(couch);
  const faults = new CouchFaults(server.url);
  await faults.start();
  const log = new LogSink();
  const running = await serve(
    {
      couch: { url: faults.url, db: "mail" },
      socketmap: [],
      dict: [],
      http: [{ kind: "tcp", host: "127.0.0.1", port: 0 }],
      socketMode: 0o660,
      mailHome: "/var/mail/vhosts",
      cache: { heartbeatMs: 200, staleAfterMs: 1000, backoffMinMs: 50, backoffMaxMs: 200 },
      password: { listen: { kind: "tcp", host: "127.0.0.1", port: 0 }, ...password },
    },
    createLogger("debug", log),
  );
  await waitFor(() => running.cache.loaded);
  return {
    couch,
    faults,
    running,
    url: `${scheme}://${running.addresses.passwordChange[0]}/password`,
    httpUrl: `http://${running.addresses.http[0]}`,
    log,
    async stop() {
      await running.close();
      await faults.stop();
      await server.stop();
    },
  };
}

const mailboxDoc = (st: PasswordStack, address: string) => st.couch.get<MailboxDoc & { _rev: string }>(`mailbox:${address}`);
const verifies = (password: string, stored: string) => bcrypt.compare(password, stored.replace("{BLF-CRYPT}", ""));

/** The hash Dovecot gets from the passdb lookup, once the cache followed the change. */
async function passdbHash(st: PasswordStack, address: string, notEqual?: string): Promise<string> {
  if (notEqual !== undefined) await waitFor(() => st.running.cache.snapshot?.mailboxes.get(address)?.password !== notEqual);
  const res = await fetch(`${st.httpUrl}/dovecot/passdb/${encodeURIComponent(address)}`);
  return ((await res.json()) as { password: string }).password;
}

describe("password change", () => {
  let st: PasswordStack;
  beforeAll(async () => {
    st = await startPasswordStack();
  });
  afterAll(() => st.stop());

  it("a successful change answers what the driver expects; the old password then fails and the new one verifies through the passdb", async () => {
    const before = await passdbHash(st, "alice@example.org");
    const answer = await driverPost(st.url, change("alice@example.org", "correct horse", "new horse staple"));
    expect(answer).toEqual({ status: 200, body: "OK" });
    expect(driverResult(answer)).toBe("PASSWORD_SUCCESS");
    const after = await passdbHash(st, "alice@example.org", before);
    expect(await verifies("new horse staple", after)).toBe(true);
    expect(await verifies("correct horse", after)).toBe(false);
    expect(after).toMatch(/^\{BLF-CRYPT\}\$2[aby]\$12\$/);
  });

  it("a wrong current password is refused and nothing is written", async () => {
    const before = await mailboxDoc(st, "bob@example.org");
    const answer = await driverPost(st.url, change("bob@example.org", "not bob's password", "a new long password"));
    expect(answer).toEqual({ status: 403, body: "failed" });
    expect(driverResult(answer)).toBe("PASSWORD_CONNECT_ERROR");
    expect(driverResult(answer, false)).toBe("PASSWORD_ERROR");
    expect((await mailboxDoc(st, "bob@example.org"))?._rev).toBe(before?._rev);
  });

  it("another user's password is untouchable with one's own: same refusal as a wrong password", async () => {
    const before = await mailboxDoc(st, "bob@example.org");
    const answer = await driverPost(st.url, change("bob@example.org", "new horse staple", "alice owns bob now"));
    expect(answer).toEqual({ status: 403, body: "failed" });
    expect(await driverPost(st.url, change("nobody@example.org", "new horse staple", "alice owns bob now"))).toEqual({ status: 403, body: "failed" });
    const after = await mailboxDoc(st, "bob@example.org");
    expect(after?._rev).toBe(before?._rev);
    expect(await verifies("battery staple", after!.password)).toBe(true);
  });

  it("a disabled mailbox, or one without a login yet, cannot change its password (not even with its stored marker)", async () => {
    await admin.userAdd(st.couch, "dave@example.org", "dave's password", { disabled: true });
    const erin: MailboxDoc = { _id: "mailbox:erin@example.org", type: "mailbox", address: "erin@example.org", password: "!", enabled: true };
    await st.couch.put(erin);
    expect(await driverPost(st.url, change("dave@example.org", "dave's password", "dave's new password"))).toEqual({ status: 403, body: "failed" });
    expect(await driverPost(st.url, change("erin@example.org", "!", "erin's first password"))).toEqual({ status: 403, body: "failed" });
    expect((await mailboxDoc(st, "erin@example.org"))?.password).toBe("!");
    expect(await verifies("dave's password", (await mailboxDoc(st, "dave@example.org"))!.password)).toBe(true);
  });

  it("refuses anything but the driver's form, and a new password the CLI would refuse", async () => {
    const post = (body: string, type = "application/x-www-form-urlencoded") =>
      fetch(st.url, { method: "POST", headers: { "content-type": type }, body }).then(async (r) => ({ status: r.status, body: await r.text() }));
    expect(await post("user=bob%40example.org&user=alice%40example.org&curpass=battery+staple&newpass=a+new+long+one")).toEqual({
      status: 400,
      body: "failed",
    });
    expect(await post("user=bob%40example.org&curpass=battery+staple&newpass=a+new+long+one&admin=1")).toEqual({ status: 400, body: "failed" });
    expect(await post("user=bob%40example.org&curpass=battery+staple")).toEqual({ status: 400, body: "failed" });
    expect(await post(JSON.stringify(change("bob@example.org", "battery staple", "a new long one")), "application/json")).toEqual({
      status: 400,
      body: "failed",
    });
    expect(await post(`user=bob%40example.org&curpass=battery+staple&newpass=${"x".repeat(5000)}`)).toEqual({ status: 400, body: "failed" });
    expect(await driverPost(st.url, change("bob@example.org", "battery staple", "short"))).toEqual({ status: 400, body: "failed" });
    expect(await driverPost(st.url, change("bob@example.org", "battery staple", "é".repeat(40)))).toEqual({ status: 400, body: "failed" });
    // The driver's GET mode puts passwords into URLs (and access logs): never accepted.
    expect((await fetch(`${st.url}?user=bob%40example.org&curpass=battery+staple&newpass=a+new+long+one`)).status).toBe(405);
    expect(await verifies("battery staple", (await mailboxDoc(st, "bob@example.org"))!.password)).toBe(true);
  });

  it("serves nothing else: no lookups, no metrics, no health", async () => {
    const base = st.url.replace(/\/password$/, "");
    for (const path of ["/dovecot/passdb/alice%40example.org", "/dovecot/userdb/alice%40example.org", "/metrics", "/healthz", "/"]) {
      const res = await fetch(`${base}${path}`);
      expect({ path, status: res.status }).toEqual({ path, status: 404 });
      expect(await res.text()).not.toMatch(/BLF-CRYPT|couchmail_/);
    }
  });

  it("a concurrent write is retried against the fresh document: kept when it changed something else, refused when it changed the password", async () => {
    // Another writer lands between our read and our write, once: what a second admin or a racing request does.
    // The spy calls through to the real put for every call after the first, the interfering writer's included.
    const interfere = (write: () => Promise<unknown>) => {
      const spy = jest.spyOn(Couch.prototype, "put").mockImplementationOnce(async function (this: Couch, doc) {
        await write();
        return this.put(doc);
      });
      return () => spy.mockRestore();
    };
    let restore = interfere(() => admin.userSet(st.couch, "bob@example.org", { quotaBytes: 2 * 1024 ** 3 }));
    try {
      expect(await driverPost(st.url, change("bob@example.org", "battery staple", "bob's second password"))).toEqual({ status: 200, body: "OK" });
    } finally {
      restore();
    }
    const bob = await mailboxDoc(st, "bob@example.org");
    expect(bob?.quota_bytes).toBe(2 * 1024 ** 3);
    expect(await verifies("bob's second password", bob!.password)).toBe(true);

    restore = interfere(() => admin.userPasswd(st.couch, "bob@example.org", "set by the admin meanwhile"));
    try {
      expect(await driverPost(st.url, change("bob@example.org", "bob's second password", "bob's third password"))).toEqual({ status: 403, body: "failed" });
    } finally {
      restore();
    }
    expect(await verifies("set by the admin meanwhile", (await mailboxDoc(st, "bob@example.org"))!.password)).toBe(true);
  });

  it("CouchDB down, or refusing writes: a failure, and the document untouched", async () => {
    const before = await mailboxDoc(st, "alice@example.org");
    for (const mode of ["down", "no-writes"] as const) {
      st.faults.mode = mode;
      try {
        const answer = await driverPost(st.url, change("alice@example.org", "new horse staple", "never stored anywhere"));
        expect({ mode, answer }).toEqual({ mode, answer: { status: 503, body: "failed" } });
        expect(driverResult(answer, false)).toBe("PASSWORD_CONNECT_ERROR");
      } finally {
        st.faults.mode = "up";
      }
    }
    const after = await mailboxDoc(st, "alice@example.org");
    expect(after?._rev).toBe(before?._rev);
    expect(after?.password).toBe(before?.password);
    expect(await verifies("new horse staple", await passdbHash(st, "alice@example.org"))).toBe(true);
  });

  it("counts every outcome and never logs a password or hash", async () => {
    const metrics = await st.running.metrics.registry.metrics();
    expect(metrics).toMatch(/couchmail_password_changes_total\{result="changed"\} 2/);
    expect(metrics).toMatch(/couchmail_password_changes_total\{result="refused"\} 6/);
    expect(metrics).toMatch(/couchmail_password_changes_total\{result="invalid"\} 7/);
    expect(metrics).toMatch(/couchmail_password_changes_total\{result="failed"\} 2/);
    const all = st.log.lines.join("\n");
    for (const secret of [
      "correct horse",
      "new horse staple",
      "battery staple",
      "not bob's password",
      "alice owns bob",
      "second password",
      "never stored",
      "$2b$",
    ]) {
      expect(all).not.toContain(secret);
    }
    expect(st.log.lines.some((l) => l.includes('"event":"password_change"') && l.includes('"result":"refused"') && l.includes("bob@example.org"))).toBe(true);
    // The address is logged under a key the log's redaction (which hides any "password" field) leaves alone.
    expect(st.log.lines.find((l) => l.includes('"event":"listening"'))).toMatch(/"passwordChange":\["127\.0\.0\.1:[0-9]+"\]/);
  });
});

describe("password change rate limits", () => {
  let st: PasswordStack;
  beforeAll(async () => {
    st = await startPasswordStack();
  });
  afterAll(() => st.stop());

  it("per user: five wrong guesses, then even the right password is refused without a hash computed; other users go on", async () => {
    for (let i = 0; i < 5; i++) expect(status(await driverPost(st.url, change("alice@example.org", `guess ${i} for alice`, "the attacker's pick")))).toBe(403);
    const started = Date.now();
    expect(await driverPost(st.url, change("alice@example.org", "correct horse", "alice's own new one"))).toEqual({ status: 429, body: "failed" });
    // A refusal is answered before any bcrypt work (cost 12 takes far longer than this).
    expect(Date.now() - started).toBeLessThan(150);
    expect(await verifies("correct horse", (await mailboxDoc(st, "alice@example.org"))!.password)).toBe(true);
    expect(status(await driverPost(st.url, change("bob@example.org", "battery staple", "bob's fresh password")))).toBe(200);
  });

  it("per source: ten failures from the webmail pod's address hold every user who has not changed a password from it", async () => {
    await admin.userAdd(st.couch, "carol@example.org", "carol's password", {});
    // Five failures (alice's) are charged already; bob's success was refunded.
    for (let i = 0; i < 5; i++) expect(status(await driverPost(st.url, change(`nobody${i}@example.org`, "whatever it is", "the attacker's pick")))).toBe(403);
    expect(await driverPost(st.url, change("carol@example.org", "carol's password", "carol's next password"))).toEqual({ status: 429, body: "failed" });
    // Bob changed his from here: his own bucket (as strict as the per-user one) holds him instead.
    expect(status(await driverPost(st.url, change("bob@example.org", "bob's fresh password", "bob's next password")))).toBe(200);
    const metrics = await st.running.metrics.registry.metrics();
    expect(metrics).toMatch(/couchmail_password_changes_total\{result="limited"\} 2/);
    expect(st.log.lines.some((l) => l.includes('"result":"limited"') && l.includes('"limit":"source"'))).toBe(true);
  });
});

describe("password listener with TLS and a token", () => {
  let st: PasswordStack;
  let dir: string;
  const first = selfSigned(["dovecot.mail.svc.cluster.local"]);
  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), "couchmail-tls-"));
    writeFileSync(join(dir, "tls.crt"), first.cert);
    writeFileSync(join(dir, "tls.key"), first.key);
    st = await startPasswordStack({ token: "webmail-token", tls: { certFile: join(dir, "tls.crt"), keyFile: join(dir, "tls.key"), reloadMs: 100 } }, "https");
  });
  afterAll(async () => {
    await st.stop();
    rmSync(dir, { recursive: true, force: true });
  });
  const servername = "dovecot.mail.svc.cluster.local";
  const bearer = { authorization: "Bearer webmail-token" };

  it("serves TLS the client verifies, and requires the token", async () => {
    expect(await driverPost(st.url, change("bob@example.org", "battery staple", "over tls now"), { ca: first.cert, servername })).toEqual({
      status: 401,
      body: "failed",
    });
    const ok = await driverPost(st.url, change("bob@example.org", "battery staple", "over tls now"), { ca: first.cert, servername, headers: bearer });
    expect(ok).toEqual({ status: 200, body: "OK" });
    // An unknown CA, or plain HTTP to the TLS port, gets nowhere.
    expect(await driverPost(st.url, change("bob@example.org", "over tls now", "x".repeat(12)), { servername, headers: bearer })).toBe("exception");
    expect(await driverPost(st.url.replace("https:", "http:"), change("bob@example.org", "over tls now", "x".repeat(12)), { headers: bearer })).toBe(
      "exception",
    );
  });

  it("serves a renewed certificate without a restart", async () => {
    const renewed = selfSigned([servername]);
    writeFileSync(join(dir, "tls.key.new"), renewed.key);
    writeFileSync(join(dir, "tls.crt.new"), renewed.cert);
    renameSync(join(dir, "tls.key.new"), join(dir, "tls.key"));
    renameSync(join(dir, "tls.crt.new"), join(dir, "tls.crt"));
    await waitFor(() => st.log.lines.some((l) => l.includes('"event":"tls_reloaded"')));
    const fields = change("bob@example.org", "over tls now", "renewed cert pass");
    expect(await driverPost(st.url, fields, { ca: first.cert, servername, headers: bearer })).toBe("exception");
    expect(await driverPost(st.url, fields, { ca: renewed.cert, servername, headers: bearer })).toEqual({ status: 200, body: "OK" });
  });
});

describe("COUCHMAIL_PASSWORD_LISTEN", () => {
  const couch = { url: "http://127.0.0.1:5984", db: "mail" };

  it("is off unless set", () => {
    expect(serveConfigFromEnv(couch, {}).password).toBeUndefined();
    expect(serveConfigFromEnv(couch, { COUCHMAIL_PASSWORD_LISTEN: "" }).password).toBeUndefined();
  });

  it("needs TLS off loopback: passwords never cross the network in clear", () => {
    expect(() => serveConfigFromEnv(couch, { COUCHMAIL_PASSWORD_LISTEN: "0.0.0.0:8443" })).toThrow(
      /COUCHMAIL_PASSWORD_TLS_CERT and COUCHMAIL_PASSWORD_TLS_KEY/,
    );
    expect(() => serveConfigFromEnv(couch, { COUCHMAIL_PASSWORD_LISTEN: "0.0.0.0:8443", COUCHMAIL_PASSWORD_TLS_CERT: "/tls/tls.crt" })).toThrow(/go together/);
    expect(serveConfigFromEnv(couch, { COUCHMAIL_PASSWORD_LISTEN: "127.0.0.1:8443" }).password).toEqual({
      listen: { kind: "tcp", host: "127.0.0.1", port: 8443 },
      tls: undefined,
      token: undefined,
    });
    expect(
      serveConfigFromEnv(couch, {
        COUCHMAIL_PASSWORD_LISTEN: "0.0.0.0:8443",
        COUCHMAIL_PASSWORD_TLS_CERT: "/tls/tls.crt",
        COUCHMAIL_PASSWORD_TLS_KEY: "/tls/tls.key",
        COUCHMAIL_PASSWORD_TOKEN: "t0ken",
      }).password,
    ).toEqual({
      listen: { kind: "tcp", host: "0.0.0.0", port: 8443 },
      tls: { certFile: "/tls/tls.crt", keyFile: "/tls/tls.key", reloadMs: 60_000 },
      token: "t0ken",
    });
  });
});
