/**
 * couchmail end to end over its real sockets, against a CouchDB-protocol server
 * (express-pouchdb, in memory). Needs only node.
 */
import { statSync } from "node:fs";
import * as admin from "../src/admin";
import { Couch } from "../src/couch";
import { DESIGN_ID, EMPTY_SIEVE_ID, sieveId } from "../src/model";
import { encodeNetstring } from "../src/netstring";
import { parseListen } from "../src/serveconfig";
import { validateDocUpdate } from "../src/validate";
import { startCouch } from "./couchdb";
import { SocketmapClient, Stack, dictExchange, freePort, rawExchange, startStack, waitFor } from "./harness";

describe("with a loaded datastore", () => {
  let st: Stack;
  let sm: SocketmapClient;
  beforeAll(async () => {
    st = await startStack();
    await waitFor(() => st.running.cache.loaded);
    sm = await SocketmapClient.connect(st.socketmapPort);
  });
  afterAll(async () => {
    sm.close();
    await st.stop();
  });

  it("serves every Postfix map over TCP", async () => {
    expect(await sm.query("domains", "example.org")).toBe("OK example.org");
    expect(await sm.query("domains", "else.net")).toBe("NOTFOUND ");
    expect(await sm.query("mailboxes", "alice+x@example.org")).toBe("OK alice@example.org");
    expect(await sm.query("mailboxes", "nobody@else.net")).toBe("NOTFOUND ");
    expect(await sm.query("aliases", "info@example.org")).toBe("OK alice@example.org,bob@example.org");
    expect(await sm.query("aliases", "bob@example.org")).toBe("NOTFOUND ");
    expect(await sm.query("aliases", "whatever@example.org")).toBe("OK alice@example.org");
    expect(await sm.query("senders", "info@example.org")).toBe("OK alice@example.org,bob@example.org");
    expect(await sm.query("senders", "whatever@example.org")).toBe("NOTFOUND ");
    expect(await sm.query("nosuchmap", "x")).toMatch(/^PERM unknown map/);
  });

  it("serves the same over the unix socket, created 0660", async () => {
    expect(statSync(st.socketmapPath).mode & 0o777).toBe(0o660);
    expect(statSync(st.dictPath).mode & 0o777).toBe(0o660);
    const c = await SocketmapClient.connect(st.socketmapPath);
    expect(await c.query("domains", "example.org")).toBe("OK example.org");
    c.close();
  });

  it("answers pipelined requests in order", async () => {
    const keys = Array.from({ length: 200 }, (_, i) => (i % 3 === 0 ? "alice@example.org" : i % 3 === 1 ? "bob@example.org" : `n${i}@else.net`));
    sm.sock.write(Buffer.concat(keys.map((k) => encodeNetstring(`mailboxes ${k}`))));
    const got = [];
    for (let i = 0; i < keys.length; i++) got.push(await sm.next());
    expect(got).toEqual(keys.map((k) => (k.endsWith("else.net") ? "NOTFOUND " : `OK ${k}`)));
  });

  it("answers what came before a malformed netstring, then a protocol error, then closes", async () => {
    const r = await rawExchange(st.socketmapPort, Buffer.concat([encodeNetstring("domains example.org"), Buffer.from("12:domains x")]));
    expect(r.closedByServer).toBe(false); // incomplete frame: the server waits
    const bad = await rawExchange(st.socketmapPort, Buffer.concat([encodeNetstring("domains example.org"), Buffer.from("3:abc;")]));
    expect(bad.closedByServer).toBe(true);
    expect(bad.data).toMatch(/^14:OK example\.org,40:PERM netstring not terminated by a comma,$/);
  });

  it("refuses an oversized request with an error and closes, and keeps serving others", async () => {
    const r = await rawExchange(st.socketmapPort, `100000:${"a".repeat(5000)}`);
    expect(r.closedByServer).toBe(true);
    expect(r.data).toMatch(/PERM netstring longer than 4096 bytes,$/);
    expect(await sm.query("domains", "example.org")).toBe("OK example.org");
  });

  it("shows a change within one second", async () => {
    const t0 = Date.now();
    await admin.userAdd(st.couch, "dave@example.org", "a long password", {});
    const added = Date.now();
    while ((await sm.query("mailboxes", "dave@example.org")) !== "OK dave@example.org") {
      if (Date.now() - added > 1000) throw new Error("change not visible within 1 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(Date.now() - added).toBeLessThan(1000);
    await admin.userRm(st.couch, "dave@example.org");
    const removed = Date.now();
    while ((await sm.query("mailboxes", "dave@example.org")) !== "NOTFOUND ") {
      if (Date.now() - removed > 1000) throw new Error("removal not visible within 1 s");
      await new Promise((r) => setTimeout(r, 5));
    }
    expect(Date.now() - t0).toBeLessThan(3000);
  });

  it("dict: two connections for different users never mix, and ids follow revisions", async () => {
    const snap = st.running.cache.snapshot!;
    const aliceId = sieveId(snap.mailboxes.get("alice@example.org")!.sieve!.default);
    const [a, b] = await Promise.all([
      dictExchange(st.dictPath, ["H4\t0\t0\t\tsieve", "Lpriv/sieve/name/default\talice@example.org", `Lpriv/sieve/data/${aliceId}\talice@example.org`], 2),
      dictExchange(
        st.dictPath,
        ["H3\t2\t0\tbob@example.org\tsieve", "Lpriv/sieve/name/default", `Lpriv/sieve/data/${aliceId}`, "Lpriv/sieve/name/default\tnobody@example.org"],
        3,
      ),
    ]);
    expect(a).toEqual([`O${aliceId}`, 'Orequire ["fileinto", "mailbox"];\x01nfileinto :create "Alice";\x01n']);
    expect(b).toEqual([`O${EMPTY_SIEVE_ID}`, "Fsieve script changed; retry", "N"]);

    await admin.sievePut(st.couch, "alice@example.org", "default", "keep;\n");
    await waitFor(() => st.running.cache.snapshot!.mailboxes.get("alice@example.org")!.sieve!.default.rev === 2, 1000);
    const [newId] = await dictExchange(st.dictPath, ["H4\t0\t0\t\tsieve", "Lpriv/sieve/name/default\talice@example.org"], 1);
    expect(newId).not.toBe(`O${aliceId}`);
  });

  it("dict: a protocol error is answered and closes only that connection", async () => {
    const r = await rawExchange(st.dictPath, "Lpriv/sieve/name/default\talice@example.org\n");
    expect(r).toEqual({ data: "Fcommand before hello\n", closedByServer: true });
    const long = await rawExchange(st.dictPath, "H4\t0\t0\t\tsieve\n" + "L".repeat(70000));
    expect(long.data).toMatch(/^Fline longer than/);
  });

  it("HTTP passdb/userdb for Dovecot's Lua script", async () => {
    const pass = await fetch(`${st.httpUrl}/dovecot/passdb/${encodeURIComponent("Alice@Example.org")}`);
    expect(pass.status).toBe(200);
    const body = await pass.json();
    expect(body).toEqual({
      user: "alice@example.org",
      password: expect.stringMatching(/^\{BLF-CRYPT\}\$2b\$12\$/),
      userdb_home: "/var/mail/vhosts/example.org/alice",
      userdb_quota_storage_size: "1G",
    });
    expect((await fetch(`${st.httpUrl}/dovecot/passdb/nobody%40example.org`)).status).toBe(404);
    expect((await fetch(`${st.httpUrl}/dovecot/userdb/bob%40example.org`)).status).toBe(200);
    // The seed crashed on a bad %-escape.
    expect((await fetch(`${st.httpUrl}/dovecot/passdb/%E0%A4%A`)).status).toBe(400);
    expect((await fetch(`${st.httpUrl}/dovecot/passdb/%`)).status).toBe(400);
    expect((await fetch(`${st.httpUrl}/healthz`)).status).toBe(200);
  });

  it("disabling a mailbox refuses logins but keeps delivery", async () => {
    await admin.userSet(st.couch, "bob@example.org", { enabled: false });
    await waitFor(() => st.running.cache.snapshot!.mailboxes.get("bob@example.org")!.enabled === false, 1000);
    expect((await fetch(`${st.httpUrl}/dovecot/passdb/bob%40example.org`)).status).toBe(404);
    expect((await fetch(`${st.httpUrl}/dovecot/userdb/bob%40example.org`)).status).toBe(200);
    expect(await sm.query("mailboxes", "bob@example.org")).toBe("OK bob@example.org");
    expect(await sm.query("senders", "bob@example.org")).toBe("NOTFOUND ");
    await admin.userSet(st.couch, "bob@example.org", { enabled: true });
  });

  it("the datastore itself enforces validate_doc_update (403 forbidden, as CouchDB answers)", async () => {
    const res = await st.couch.request("PUT", st.couch.docPath("mailbox:eve@example.org"), {
      body: { type: "mailbox", address: "eve@example.org", password: "{PLAIN}secret", enabled: true },
    });
    expect(res.status).toBe(403);
    expect(await res.json()).toMatchObject({ error: "forbidden", reason: expect.stringContaining("password") });
  });

  it("a malformed document that got in anyway answers TEMP, never NOTFOUND", async () => {
    // Documents written before the design document existed are never re-validated by CouchDB.
    const design = (await st.couch.get<{ _rev: string }>(DESIGN_ID))!;
    await st.couch.remove(DESIGN_ID, design._rev);
    await st.couch.put({ _id: "mailbox:eve@example.org", type: "mailbox", address: "eve@example.org", password: "{PLAIN}secret", enabled: true } as never);
    expect(await st.couch.installDesign()).toBe("created");
    await waitFor(() => st.running.cache.snapshot!.broken.has("mailbox:eve@example.org"), 1000);
    expect(await sm.query("mailboxes", "eve@example.org")).toMatch(/^TEMP /);
    expect(await sm.query("aliases", "eve@example.org")).toMatch(/^TEMP /);
    expect((await fetch(`${st.httpUrl}/dovecot/passdb/eve%40example.org`)).status).toBe(503);
    expect(st.log.lines.some((l) => l.includes('"bad_document"'))).toBe(true);
  });

  it("init replaces the named validate_doc_update an older couchmail installed, with which every write failed", async () => {
    const d = (await st.couch.get<Record<string, unknown>>(DESIGN_ID))!;
    await st.couch.put({ ...d, validate_doc_update: validateDocUpdate.toString() } as never);
    await expect(admin.domainAdd(st.couch, "old.example")).rejects.toThrow(/HTTP 500 compilation_error: Expression does not eval to a function/);
    expect(await admin.init(st.couch)).toBe("updated");
    await admin.domainAdd(st.couch, "old.example");
    await admin.domainRm(st.couch, "old.example");
  });

  it("installs the design document idempotently", async () => {
    expect(await st.couch.installDesign()).toBe("unchanged");
    const d = (await st.couch.get<Record<string, unknown>>(DESIGN_ID))!;
    await st.couch.put({ ...d, validate_doc_update: "function(){}" } as never);
    expect(await st.couch.installDesign()).toBe("updated");
    expect(await st.couch.installDesign()).toBe("unchanged");
  });

  it("exports metrics", async () => {
    const text = await (await fetch(`${st.httpUrl}/metrics`)).text();
    expect(text).toMatch(/couchmail_lookups_total\{map="mailboxes",result="ok"\} [1-9]/);
    expect(text).toMatch(/couchmail_lookup_duration_seconds_bucket/);
    expect(text).toMatch(/couchmail_cache_documents [1-9]/);
    expect(text).toMatch(/couchmail_cache_stale 0/);
    expect(text).toMatch(/couchmail_feed_lag_seconds /);
    expect(text).toMatch(/couchmail_last_change_age_seconds /);
  });

  it("never logs passwords or hashes", () => {
    const all = st.log.lines.join("\n");
    expect(all).not.toMatch(/\$2[aby]\$|correct horse|battery staple|\{PLAIN\}/);
    for (const l of st.log.lines) expect(() => JSON.parse(l)).not.toThrow();
  });
});

describe("datastore replaced under a running couchmail", () => {
  it("a database deleted and restored (a restore from backup) is loaded afresh, not resumed from the old sequence", async () => {
    const st = await startStack();
    const sm = await SocketmapClient.connect(st.socketmapPort);
    const until = async (map: string, key: string, want: string) => {
      const t0 = Date.now();
      let got = "";
      while ((got = await sm.query(map, key)) !== want && Date.now() - t0 < 5000) await new Promise((r) => setTimeout(r, 20));
      return got;
    };
    try {
      await waitFor(() => st.running.cache.loaded && st.running.cache.feedConnected);
      // The old database's sequence runs well past what the restored one will reach.
      for (let i = 0; i < 15; i++) await admin.userAdd(st.couch, `user${i}@example.org`, "a long password", {});
      expect(await until("mailboxes", "user14@example.org", "OK user14@example.org")).toBe("OK user14@example.org");

      expect((await st.couch.request("DELETE", "")).status).toBe(200);
      await admin.init(st.couch);
      await admin.domainAdd(st.couch, "example.org");
      await admin.userAdd(st.couch, "erin@example.org", "a long password", {});

      expect(await until("mailboxes", "erin@example.org", "OK erin@example.org")).toBe("OK erin@example.org");
      // What the restored database does not hold is gone too.
      expect(await sm.query("mailboxes", "alice@example.org")).toBe("NOTFOUND ");
    } finally {
      sm.close();
      await st.stop();
    }
  });
});

describe("datastore down", () => {
  it("before the first load: TEMP / F / 503 everywhere, never NOTFOUND; ready once it appears", async () => {
    const st = await startStack({ couchUp: false });
    try {
      const sm = await SocketmapClient.connect(st.socketmapPort);
      for (const map of ["domains", "mailboxes", "aliases", "senders"]) {
        expect(await sm.query(map, "alice@example.org")).toBe("TEMP datastore not loaded yet");
      }
      expect(await dictExchange(st.dictPath, ["H4\t0\t0\t\tsieve", "Lpriv/sieve/name/default\talice@example.org"], 1)).toEqual(["Fdatastore not loaded yet"]);
      expect((await fetch(`${st.httpUrl}/dovecot/passdb/alice%40example.org`)).status).toBe(503);
      expect((await fetch(`${st.httpUrl}/readyz`)).status).toBe(503);

      // The datastore comes up on the address couchmail keeps retrying.
      const port = Number(new URL(st.couch.config.url).port);
      const couch = await startCouch(port);
      try {
        const { seed } = await import("./harness");
        await seed(new Couch({ url: couch.url, db: "mail" }));
        await waitFor(() => st.running.cache.loaded, 5000);
        expect(await sm.query("mailboxes", "alice@example.org")).toBe("OK alice@example.org");
        expect((await fetch(`${st.httpUrl}/readyz`)).status).toBe(200);
      } finally {
        sm.close();
        await st.running.close();
        await couch.stop();
      }
    } finally {
      await st.stop();
    }
  });

  it("after the first load: keeps serving the snapshot and reports stale past the bound", async () => {
    const st = await startStack();
    try {
      await waitFor(() => st.running.cache.loaded && st.running.cache.feedConnected);
      await st.couchServer!.stop();
      const sm = await SocketmapClient.connect(st.socketmapPort);
      expect(await sm.query("mailboxes", "alice@example.org")).toBe("OK alice@example.org");
      expect(((await (await fetch(`${st.httpUrl}/healthz`)).json()) as { stale: boolean }).stale).toBe(false);
      await waitFor(() => st.running.cache.stale, 4000);
      const h = await (await fetch(`${st.httpUrl}/healthz`)).json();
      expect(h).toMatchObject({ status: "stale", stale: true, loaded: true });
      expect((await fetch(`${st.httpUrl}/readyz`)).status).toBe(200);
      expect(await (await fetch(`${st.httpUrl}/metrics`)).text()).toMatch(/couchmail_cache_stale 1/);
      expect(await sm.query("aliases", "info@example.org")).toBe("OK alice@example.org,bob@example.org");
      sm.close();
    } finally {
      await st.stop();
    }
  });
});

describe("listeners", () => {
  it("refuse wildcard addresses and accept loopback, pod IPs and unix paths", () => {
    expect(() => parseListen("0.0.0.0:7000")).toThrow(/wildcard/);
    expect(() => parseListen("[::]:7000")).toThrow(/wildcard/);
    expect(() => parseListen(":7000")).toThrow();
    expect(() => parseListen("localhost:7000")).toThrow();
    expect(parseListen("10.1.2.3:7000")).toEqual({ kind: "tcp", host: "10.1.2.3", port: 7000 });
    expect(parseListen("[::1]:8080")).toEqual({ kind: "tcp", host: "::1", port: 8080 });
    expect(parseListen("unix:/run/couchmail/dict.sock")).toEqual({ kind: "unix", path: "/run/couchmail/dict.sock" });
    expect(() => parseListen("127.0.0.1:7000", { tcp: false, unix: true, wildcard: false })).toThrow(/unix/);
  });

  it("require the token on /dovecot/* when one is configured", async () => {
    const st = await startStack({ serve: { httpToken: "s3cret-token" } });
    try {
      await waitFor(() => st.running.cache.loaded);
      expect((await fetch(`${st.httpUrl}/dovecot/passdb/alice%40example.org`)).status).toBe(401);
      const ok = await fetch(`${st.httpUrl}/dovecot/passdb/alice%40example.org`, { headers: { authorization: "Bearer s3cret-token" } });
      expect(ok.status).toBe(200);
      expect((await fetch(`${st.httpUrl}/healthz`)).status).toBe(200);
    } finally {
      await st.stop();
    }
  });

  it("fail to start on a port already taken instead of running half-bound", async () => {
    const port = await freePort();
    const a = await startStack({ serve: { http: [{ kind: "tcp", host: "127.0.0.1", port }] } });
    try {
      await expect(startStack({ serve: { http: [{ kind: "tcp", host: "127.0.0.1", port }] } })).rejects.toThrow(/EADDRINUSE/);
    } finally {
      await a.stop();
    }
  });
});
