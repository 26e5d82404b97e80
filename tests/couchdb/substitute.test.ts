// The CouchDB substitute (couchmail/test/couchdb-front.ts in front of express-pouchdb) must answer as CouchDB 3.4
// does with the config the program renders: require_valid_user(_except_for_up), database _security,
// validate_doc_update's JavaScript rules, _changes longpoll timeout/heartbeat and opaque sequences.
import * as fs from "fs";
import * as http from "http";
import type { AddressInfo } from "net";
import * as os from "os";
import * as path from "path";
import { COUCHDB_INI_NAME, renderCouchDbIni } from "../../components/couchdb/config";
import { TestCouch, startCouch } from "../../couchmail/test/couchdb";
import { anonymousAccess, loadIni, opaqueSeq, parseSince, settingsFromIni } from "../../couchmail/test/couchdb-front";

const ADMIN = { admin: "admin-password" };
const basic = (user: string, password: string) => ({ authorization: "Basic " + Buffer.from(`${user}:${password}`).toString("base64") });
const asAdmin = basic("admin", ADMIN.admin);

function iniDir(files: Record<string, string>): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "couchdb-ini-"));
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), text);
    return dir;
}

/** The program's rendered ini, or the one it rendered before `require_valid_user_except_for_up` was added. */
const renderedIni = () => renderCouchDbIni()[COUCHDB_INI_NAME];
const iniBeforeExceptForUp = () => renderedIni().replace(/^require_valid_user_except_for_up = true\n/m, "");

async function call(couch: TestCouch, method: string, p: string, opts: { headers?: Record<string, string>; body?: unknown } = {}) {
    const res = await fetch(`${couch.url}${p}`, {
        method,
        headers: { "content-type": "application/json", ...opts.headers },
        body: opts.body === undefined ? undefined : JSON.stringify(opts.body),
    });
    const text = await res.text();
    let json: any; // eslint-disable-line @typescript-eslint/no-explicit-any
    try {
        json = JSON.parse(text);
    } catch {
        json = text;
    }
    return { status: res.status, json, text };
}

describe("CouchDB config the substitute applies", () => {
    it("reads ini files in CouchDB's order: later files override, an empty value deletes, a directory gives its *.ini by name", () => {
        const dir = iniDir({
            "20-b.ini": "[chttpd]\nrequire_valid_user = false\n",
            "10-a.ini": "[chttpd]\nrequire_valid_user = true ; comment\n[admins]\nroot = pw\n",
        });
        const last = iniDir({ "x.ini": "[admins]\nroot =\n" });
        expect(settingsFromIni(loadIni([dir]))).toMatchObject({ requireValidUser: false, admins: { root: "pw" } });
        expect(settingsFromIni(loadIni([dir, path.join(last, "x.ini")])).admins).toEqual({});
    });

    it("refuses values CouchDB cannot use, naming the key and what is allowed", () => {
        expect(() => settingsFromIni(loadIni([iniDir({ "a.ini": "[chttpd]\nrequire_valid_user = yes\n" })]))).toThrow(
            "[chttpd] require_valid_user = yes: CouchDB accepts only true or false",
        );
        expect(() => settingsFromIni(loadIni([iniDir({ "a.ini": "[couchdb]\ndefault_security = open\n" })]))).toThrow(
            /default_security = open: CouchDB accepts admin_only or everyone/,
        );
    });

    // The truth table of apache/couchdb src/chttpd/test/eunit/chttpd_auth_tests.erl.
    it.each([
        [false, false, 200, 200],
        [false, true, 200, 401],
        [true, false, 401, 401],
        [true, true, 200, 401],
    ])("require_valid_user=%s, _except_for_up=%s: anonymous /_up %i, anything else %i", (rvu, except, up, other) => {
        const s = { requireValidUser: rvu, requireValidUserExceptForUp: except, adminOnlyByDefault: true, admins: ADMIN };
        const status = (segments: string[]) => {
            const r = anonymousAccess(s, "GET", segments);
            return "status" in r ? r.status : 200;
        };
        expect(status(["_up"])).toBe(up);
        expect(status(["mail"])).toBe(other);
        expect(status([])).toBe(other);
        expect(anonymousAccess(s, "POST", ["_session"])).toEqual({ name: null, roles: [] });
    });
});

describe("the program's rendered CouchDB ini", () => {
    let couch: TestCouch;
    beforeAll(async () => {
        couch = await startCouch(0, "127.0.0.1", { ini: [iniDir({ [COUCHDB_INI_NAME]: renderedIni() })], admins: ADMIN });
    });
    afterAll(() => couch.stop());

    it("lets the kubelet's anonymous /_up probe through and nothing else; a wrong password is 401 even on /_up", async () => {
        expect(await call(couch, "GET", "/_up")).toMatchObject({ status: 200, json: { status: "ok" } });
        expect(await call(couch, "GET", "/")).toMatchObject({ status: 401, json: { error: "unauthorized", reason: "Authentication required." } });
        expect((await call(couch, "GET", "/mail")).status).toBe(401);
        expect(await call(couch, "GET", "/_up", { headers: basic("admin", "wrong") })).toMatchObject({
            status: 401,
            json: { reason: "Name or password is incorrect." },
        });
        expect((await call(couch, "GET", "/_up", { headers: asAdmin })).status).toBe(200);
        expect((await call(couch, "GET", "/_all_dbs", { headers: asAdmin })).status).toBe(200);
    });
});

describe("the rendered ini with the metrics port open", () => {
    let couch: TestCouch;
    let port: number;
    beforeAll(async () => {
        // A free port for the Prometheus listener, as the program renders a fixed one.
        const probe = http.createServer().listen(0, "127.0.0.1");
        await new Promise((r) => probe.once("listening", r));
        port = (probe.address() as AddressInfo).port;
        await new Promise((r) => probe.close(r));
        const ini = renderCouchDbIni({ metricsPort: port })[COUCHDB_INI_NAME].replace("bind_address = 0.0.0.0\nport", "bind_address = 127.0.0.1\nport");
        couch = await startCouch(0, "127.0.0.1", { ini: [iniDir({ [COUCHDB_INI_NAME]: ini })], admins: ADMIN });
    });
    afterAll(() => couch.stop());
    const scrape = async (p = "/_node/_local/_prometheus") => {
        const res = await fetch(`http://127.0.0.1:${port}${p}`);
        return { status: res.status, type: res.headers.get("content-type"), text: await res.text() };
    };
    const sample = (text: string, series: string) =>
        Number(
            text
                .split("\n")
                .find((l) => l.startsWith(series + " "))
                ?.split(" ")[1] ?? NaN,
        );

    it("serves CouchDB's Prometheus text without credentials, on that path only", async () => {
        const first = await scrape();
        expect(first).toMatchObject({ status: 200, type: "text/plain; version=2.0" });
        expect(first.text).toMatch(/^# TYPE couchdb_database_writes_total counter$/m);
        expect((await scrape("/_node/_local/_all_dbs")).status).toBe(404);
        expect((await scrape("/_node/couchdb@elsewhere/_prometheus")).status).toBe(404);
    });

    it("counts requests, statuses and document writes as they happen", async () => {
        const before = (await scrape()).text;
        expect((await call(couch, "PUT", "/mail", { headers: asAdmin })).status).toBe(201);
        expect((await call(couch, "PUT", "/mail/doc-1", { headers: asAdmin, body: { a: 1 } })).status).toBe(201);
        expect((await call(couch, "POST", "/mail/_bulk_docs", { headers: asAdmin, body: { docs: [{ _id: "doc-2" }, { _id: "doc-3" }] } })).status).toBe(201);
        expect((await call(couch, "GET", "/mail/doc-1")).status).toBe(401);
        const after = (await scrape()).text;
        expect(sample(after, "couchdb_database_writes_total") - sample(before, "couchdb_database_writes_total")).toBe(3);
        expect(sample(after, 'couchdb_httpd_request_methods{method="PUT"}') - (sample(before, 'couchdb_httpd_request_methods{method="PUT"}') || 0)).toBe(2);
        expect(sample(after, 'couchdb_httpd_status_codes{code="401"}')).toBeGreaterThanOrEqual(1);
        expect(sample(after, "couchdb_open_databases")).toBeGreaterThanOrEqual(1);
    });
});

describe("the CouchDB ini rendered without require_valid_user_except_for_up", () => {
    it("answers the kubelet's anonymous /_up probe with 401, so CouchDB would never become Ready", async () => {
        const couch = await startCouch(0, "127.0.0.1", { ini: [iniDir({ [COUCHDB_INI_NAME]: iniBeforeExceptForUp() })], admins: ADMIN });
        try {
            expect(await call(couch, "GET", "/_up")).toMatchObject({ status: 401, json: { error: "unauthorized", reason: "Authentication required." } });
        } finally {
            await couch.stop();
        }
    });
});

describe("databases, _security and validate_doc_update", () => {
    let couch: TestCouch;
    const asBob = basic("bob", "bob-password");
    beforeAll(async () => {
        // Anonymous requests allowed by config, so that _security is what refuses them.
        couch = await startCouch(0, "127.0.0.1", { admins: ADMIN });
        expect(
            (
                await call(couch, "PUT", "/_users/org.couchdb.user:bob", {
                    headers: asAdmin,
                    body: { name: "bob", password: "bob-password", roles: [], type: "user" },
                })
            ).status,
        ).toBe(201);
        expect((await call(couch, "PUT", "/db", { headers: asAdmin })).status).toBe(201);
    });
    afterAll(() => couch.stop());

    it("creates databases admin-only (CouchDB 3's default_security): anonymous 401, another user 403, reads and writes alike", async () => {
        expect((await call(couch, "GET", "/db/_security", { headers: asAdmin })).json).toEqual({
            members: { roles: ["_admin"] },
            admins: { roles: ["_admin"] },
        });
        expect(await call(couch, "GET", "/db")).toMatchObject({
            status: 401,
            json: { error: "unauthorized", reason: "You are not authorized to access this db." },
        });
        expect(await call(couch, "GET", "/db", { headers: asBob })).toMatchObject({
            status: 403,
            json: { error: "forbidden", reason: "You are not allowed to access this db." },
        });
        expect((await call(couch, "PUT", "/db/x", { headers: asBob, body: { a: 1 } })).status).toBe(403);
        expect((await call(couch, "GET", "/db/_changes", { headers: asBob })).status).toBe(403);
        expect(await call(couch, "PUT", "/db2", { headers: asBob })).toMatchObject({ status: 401, json: { reason: "You are not a server admin." } });
        expect((await call(couch, "GET", "/db/_all_docs", { headers: basic("bob", "wrong") })).status).toBe(401);
    });

    it("lets members in, but only database admins change _security or design documents", async () => {
        expect(
            (await call(couch, "PUT", "/db/_security", { headers: asAdmin, body: { members: { names: ["bob"] }, admins: { roles: ["_admin"] } } })).status,
        ).toBe(200);
        expect((await call(couch, "GET", "/db", { headers: asBob })).status).toBe(200);
        expect(await call(couch, "PUT", "/db/_design/x", { headers: asBob, body: {} })).toMatchObject({
            status: 403,
            json: { reason: "You are not a db or server admin." },
        });
        expect((await call(couch, "PUT", "/db/_security", { headers: asBob, body: {} })).status).toBe(403);
        expect((await call(couch, "PUT", "/db/bobs", { headers: asBob, body: { a: 1 } })).status).toBe(201);
    });

    it("stores a named validate_doc_update, then fails every write with 500 compilation_error as QuickJS does", async () => {
        const named = "function validate(newDoc) { if (newDoc.bad) throw({forbidden: 'bad'}); }";
        expect((await call(couch, "PUT", "/db/_design/named", { headers: asAdmin, body: { validate_doc_update: named } })).status).toBe(201);
        const write = await call(couch, "PUT", "/db/doc1", { headers: asAdmin, body: { a: 1 } });
        expect(write).toMatchObject({ status: 500, json: { error: "compilation_error", reason: `Expression does not eval to a function. (${named})` } });
        const bulk = await call(couch, "POST", "/db/_bulk_docs", { headers: asAdmin, body: { docs: [{ _id: "doc1" }] } });
        expect(bulk).toMatchObject({ status: 500, json: { error: "compilation_error" } });
        // Design documents skip validate_doc_update: the way out is replacing it.
        const rev = (await call(couch, "GET", "/db/_design/named", { headers: asAdmin })).json._rev;
        const anonymous =
            "function (newDoc, oldDoc, userCtx, secObj) { if (newDoc.bad) throw({forbidden: 'bad ' + userCtx.name + ' ' + secObj.members.names[0]}); if (newDoc.who) throw({unauthorized: 'who'}); if (newDoc.oops) null.x; }";
        expect((await call(couch, "PUT", "/db/_design/named", { headers: asAdmin, body: { _rev: rev, validate_doc_update: anonymous } })).status).toBe(201);
        expect((await call(couch, "PUT", "/db/doc1", { headers: asAdmin, body: { a: 1 } })).status).toBe(201);
    });

    it("maps throw({forbidden}) to 403, throw({unauthorized}) to 401 and an error to 500, per document in _bulk_docs", async () => {
        expect(await call(couch, "PUT", "/db/doc2", { headers: asBob, body: { bad: true } })).toMatchObject({
            status: 403,
            json: { error: "forbidden", reason: "bad bob bob" },
        });
        expect(await call(couch, "PUT", "/db/doc2", { headers: asBob, body: { who: true } })).toMatchObject({
            status: 401,
            json: { error: "unauthorized", reason: "who" },
        });
        expect(await call(couch, "PUT", "/db/doc2", { headers: asBob, body: { oops: true } })).toMatchObject({ status: 500, json: { error: "TypeError" } });
        const bulk = await call(couch, "POST", "/db/_bulk_docs", {
            headers: asAdmin,
            body: { docs: [{ _id: "ok1" }, { _id: "no1", bad: true }, { _id: "ok2" }] },
        });
        expect(bulk.status).toBe(201);
        expect(bulk.json).toEqual([
            { ok: true, id: "ok1", rev: expect.any(String) },
            { id: "no1", error: "forbidden", reason: "bad admin bob" },
            { ok: true, id: "ok2", rev: expect.any(String) },
        ]);
        expect((await call(couch, "GET", "/db/no1", { headers: asAdmin })).status).toBe(404);
    });

    it("accepts the anonymous forms both engines accept, and refuses what QuickJS does not evaluate to a function", async () => {
        const cases: [string, number][] = [
            ["  // leading comment\n function(newDoc) {}", 201],
            ["(function named(newDoc) {})", 201],
            ["function(newDoc) {};", 201],
            ["'a string'", 500],
            ["function (newDoc) {", 500],
        ];
        for (const [source, status] of cases) {
            const db = `vdu${cases.findIndex((c) => c[0] === source)}`;
            await call(couch, "PUT", `/${db}`, { headers: asAdmin });
            await call(couch, "PUT", `/${db}/_design/v`, { headers: asAdmin, body: { validate_doc_update: source } });
            const r = await call(couch, "PUT", `/${db}/d`, { headers: asAdmin, body: {} });
            expect([source, r.status, r.status === 500 ? r.json.error : "stored"]).toEqual([source, status, status === 500 ? "compilation_error" : "stored"]);
        }
    });
});

describe("_changes", () => {
    let couch: TestCouch;
    beforeAll(async () => {
        couch = await startCouch(0, "127.0.0.1", { admins: ADMIN });
        await call(couch, "PUT", "/feed", { headers: asAdmin });
        await call(couch, "PUT", "/feed/a", { headers: asAdmin, body: {} });
    });
    afterAll(() => couch.stop());

    it("gives opaque string sequences and refuses a number as since (clients must hand back what they got)", async () => {
        const normal = await call(couch, "GET", "/feed/_changes", { headers: asAdmin });
        expect(normal.json.last_seq).toMatch(/^1-g1AAAA[A-Za-z0-9_-]+$/);
        expect(normal.json.results[0].seq).toBe(normal.json.last_seq);
        expect((await call(couch, "GET", "/feed", { headers: asAdmin })).json.update_seq).toBe(normal.json.last_seq);
        expect((await fetch(`${couch.url}/feed`, { method: "HEAD", headers: asAdmin })).status).toBe(200);
        expect(await call(couch, "GET", "/feed/_changes?since=1", { headers: asAdmin })).toMatchObject({
            status: 400,
            json: { reason: "Malformed sequence supplied in 'since' parameter." },
        });
        const since = await call(couch, "GET", `/feed/_changes?since=${encodeURIComponent(normal.json.last_seq)}`, { headers: asAdmin });
        expect(since.json).toEqual({ results: [], last_seq: normal.json.last_seq, pending: 0 });
        expect(parseSince(opaqueSeq(12))).toBe(12);
        expect(parseSince("12-g1AAAAforged")).toBeNull();
    });

    it("longpoll: answers after `timeout` ms without a change", async () => {
        const t0 = Date.now();
        const r = await call(couch, "GET", "/feed/_changes?feed=longpoll&since=now&timeout=700", { headers: asAdmin });
        const took = Date.now() - t0;
        expect(took).toBeGreaterThanOrEqual(650);
        expect(took).toBeLessThan(3000);
        expect(r.json).toEqual({ results: [], last_seq: expect.stringMatching(/^1-/), pending: 0 });
    });

    it("longpoll: with a heartbeat it stays open past `timeout`, sending newlines, and returns the change", async () => {
        const t0 = Date.now();
        const pending = call(couch, "GET", "/feed/_changes?feed=longpoll&since=now&timeout=200&heartbeat=150", { headers: asAdmin });
        await new Promise((r) => setTimeout(r, 700));
        await call(couch, "PUT", "/feed/b", { headers: asAdmin, body: {} });
        const r = await pending;
        expect(Date.now() - t0).toBeGreaterThanOrEqual(700);
        expect(r.text).toMatch(/^\{"results":\[\n\n+/);
        expect(r.json.results.map((c: { id: string }) => c.id)).toEqual(["b"]);
        expect(r.json.last_seq).toMatch(/^2-g1AAAA/);
    });

    it("continuous: heartbeats as newlines; without a heartbeat the feed ends after `timeout` with last_seq", async () => {
        const ac = new AbortController();
        const res = await fetch(`${couch.url}/feed/_changes?feed=continuous&heartbeat=100`, { headers: asAdmin, signal: ac.signal });
        const reader = res.body!.getReader();
        let text = "";
        const until = Date.now() + 2000;
        while ((text.match(/\n\n/g) ?? []).length < 2 && Date.now() < until) text += new TextDecoder().decode((await reader.read()).value);
        ac.abort();
        expect(text).toMatch(/^\{"id":"a",.*"seq":"1-g1AAAA[^"]+"\}\n/);
        expect((text.match(/\n\n/g) ?? []).length).toBeGreaterThanOrEqual(2);

        const t0 = Date.now();
        const ended = await call(couch, "GET", "/feed/_changes?feed=continuous&since=now&timeout=300", { headers: asAdmin });
        expect(Date.now() - t0).toBeLessThan(3000);
        expect(JSON.parse(ended.text.trim().split("\n").pop()!)).toEqual({ last_seq: expect.stringMatching(/^[0-9]+-g1AAAA/), pending: 0 });
    });

    it("continuous: deleting the database ends its feeds cleanly with last_seq, as CouchDB does (couchdb-fabric#68)", async () => {
        await call(couch, "PUT", "/doomed", { headers: asAdmin });
        await call(couch, "PUT", "/doomed/a", { headers: asAdmin, body: {} });
        const feed = call(couch, "GET", "/doomed/_changes?feed=continuous&heartbeat=100", { headers: asAdmin });
        await new Promise((r) => setTimeout(r, 300));
        expect((await call(couch, "DELETE", "/doomed", { headers: asAdmin })).status).toBe(200);
        const ended = await Promise.race([feed, new Promise<null>((r) => setTimeout(() => r(null), 3000))]);
        expect(ended).not.toBeNull();
        expect(JSON.parse(ended!.text.trim().split("\n").pop()!)).toEqual({ last_seq: expect.stringMatching(/^1-g1AAAA/), pending: 0 });
    });
});
