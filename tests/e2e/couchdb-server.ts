// The CouchDB pod's substitute: couchmail's CouchDB-protocol test server (express-pouchdb, in memory) on the pod's
// address. Its volume plays the PVC: on SIGTERM the databases are written there, on start they are read back with
// the same revisions, and each database's update sequence is advanced past the saved one (as CouchDB keeps it), so
// a client following `_changes` since an old sequence misses nothing. In front of express-pouchdb runs CouchDB 3.4's
// HTTP semantics (couchmail/test/couchdb-front.ts), applying the ini files the program renders for CouchDB.
//   usage: couchdb-server.ts IP:PORT DATA_DIR
//   env:   COUCHDB_INI       the rendered ini files (or local.d-style directories), ":"-separated, in CouchDB's load order
//          COUCHDB_USER, COUCHDB_PASSWORD  the admin, as the official image's entrypoint adds it to [admins]
import * as fs from "fs";
import * as path from "path";
import { startCouch } from "../../couchmail/test/couchdb";
import { SUBSTITUTE_DIFFERENCES } from "../../couchmail/test/couchdb-front";

interface Dump {
    [db: string]: { updateSeq: number; docs: Record<string, unknown>[] };
}

/** CouchDB 3 sequences are opaque ("12-g1AAAA…"); only this substitute's own dump may read the leading count. */
const seqCount = (seq: unknown): number => parseInt(String(seq), 10);

let auth: string | undefined;

// eslint-disable-next-line @typescript-eslint/no-explicit-any -- CouchDB answers with JSON of many shapes
async function call(base: string, method: string, p: string, body?: unknown): Promise<any> {
    const headers: Record<string, string> = { "content-type": "application/json", ...(auth ? { authorization: auth } : {}) };
    const res = await fetch(`${base}${p}`, { method, headers, body: body === undefined ? undefined : JSON.stringify(body) });
    const json = await res.json();
    if (!res.ok) throw new Error(`${method} ${p}: HTTP ${res.status} ${JSON.stringify(json)}`);
    return json;
}

async function main(): Promise<void> {
    const [listen, dataDir] = process.argv.slice(2);
    const [host, port] = listen.split(":");
    const dumpFile = path.join(dataDir, "e2e-couchdb.json");
    // The official image creates its admin from these (the pod's Secret); without an admin the server is open.
    const user = process.env.COUCHDB_USER;
    const password = process.env.COUCHDB_PASSWORD;
    if (!user || !password) throw new Error("COUCHDB_USER and COUCHDB_PASSWORD must be set");
    const ini = (process.env.COUCHDB_INI ?? "").split(":").filter(Boolean);
    if (!ini.length) throw new Error('COUCHDB_INI must list the ini files rendered for CouchDB (the couchdb-config ConfigMap\'s mail.ini), ":"-separated');
    console.error(`substitute differences: ${SUBSTITUTE_DIFFERENCES}`);
    const couch = await startCouch(Number(port), host, { ini, admins: { [user]: password } });
    const base = couch.url;
    auth = "Basic " + Buffer.from(`${user}:${password}`).toString("base64");
    if (fs.existsSync(dumpFile)) {
        const dump = JSON.parse(fs.readFileSync(dumpFile, "utf8")) as Dump;
        for (const [db, { updateSeq, docs }] of Object.entries(dump)) {
            if (db.startsWith("_")) continue; // system databases: the server makes its own
            const enc = encodeURIComponent(db);
            await call(base, "PUT", `/${enc}`);
            if (docs.length) await call(base, "POST", `/${enc}/_bulk_docs`, { docs, new_edits: false });
            let rev: string | undefined;
            for (let seq = seqCount((await call(base, "GET", `/${enc}`)).update_seq); seq < updateSeq; seq++) {
                rev = (await call(base, "PUT", `/${enc}/_design/e2e-sequence`, { ...(rev ? { _rev: rev } : {}), note: "sequence padding after restore" })).rev;
            }
            console.error(`restored ${db}: ${docs.length} documents, update_seq ${updateSeq}`);
        }
    }
    console.error(`CouchDB-protocol test server (substitute for the CouchDB image) listening on ${base}`);
    let stopping = false;
    process.on("SIGTERM", () => {
        if (stopping) return;
        stopping = true;
        (async () => {
            const dump: Dump = {};
            for (const db of (await call(base, "GET", "/_all_dbs")) as string[]) {
                const enc = encodeURIComponent(db);
                const info = await call(base, "GET", `/${enc}`);
                const all = await call(base, "GET", `/${enc}/_all_docs?include_docs=true`);
                dump[db] = { updateSeq: seqCount(info.update_seq), docs: all.rows.map((r: { doc: Record<string, unknown> }) => r.doc) };
            }
            fs.writeFileSync(dumpFile + ".tmp", JSON.stringify(dump));
            fs.renameSync(dumpFile + ".tmp", dumpFile);
            await couch.stop();
            console.error("saved and stopped");
            process.exit(0);
        })().catch((e) => {
            console.error(`saving failed: ${e}`);
            process.exit(1);
        });
    });
}

main().catch((e) => {
    console.error(e);
    process.exit(1);
});
