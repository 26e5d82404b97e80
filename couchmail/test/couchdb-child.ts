/**
 * The test CouchDB's process (started by startCouch): express-pouchdb over PouchDB's in-memory
 * adapter as storage on a loopback port of its own, and the CouchDB front (couchdb-front.ts) on
 * the requested address. Being a separate process makes stopping it a real outage, and the timers
 * express-pouchdb leaves behind (continuous-feed heartbeats) die with it.
 *   argv: PORT HOST; the CouchSettings arrive as the first IPC message.
 */
import { randomBytes } from "node:crypto";
import { createRequire } from "node:module";
import type { AddressInfo } from "node:net";
import { CouchSettings, createFront, createPrometheusListener, newStats } from "./couchdb-front";

const load = createRequire(__filename);

async function main(): Promise<void> {
  const [port, host] = process.argv.slice(2);
  const settings = await new Promise<CouchSettings>((resolve) => process.once("message", (m) => resolve(m as CouchSettings)));
  const PouchDB = load("pouchdb-core")
    .plugin(load("pouchdb-adapter-memory"))
    .plugin(load("pouchdb-adapter-http"))
    .plugin(load("pouchdb-mapreduce"))
    .plugin(load("pouchdb-replication"));
  const app = load("express")();
  // validate_doc_update is the front's job (with CouchDB's compile rules), not express-pouchdb's.
  const storage = load("express-pouchdb")(PouchDB.defaults({ adapter: "memory" }), {
    inMemoryConfig: true,
    logPath: "/dev/null",
    overrideMode: { exclude: ["validation"] },
  });
  app.use("/", storage);
  const innerServer = app.listen(0, "127.0.0.1");
  await new Promise((resolve, reject) => innerServer.once("listening", resolve).once("error", reject));
  const innerUrl = `http://127.0.0.1:${(innerServer.address() as AddressInfo).port}`;
  // The storage's own admin, known only to the front: every forwarded request carries it.
  const password = randomBytes(24).toString("hex");
  const made = await fetch(`${innerUrl}/_config/admins/substitute`, {
    method: "PUT",
    body: JSON.stringify(password),
    headers: { "content-type": "application/json" },
  });
  if (!made.ok) throw new Error(`creating the storage admin: HTTP ${made.status}`);
  const innerAuth = "Basic " + Buffer.from(`substitute:${password}`).toString("base64");
  const stats = newStats();
  const front = createFront({ settings, innerUrl, innerAuth, stats });
  if (settings.prometheus) {
    const openDatabases = async () => ((await (await fetch(`${innerUrl}/_all_dbs`, { headers: { authorization: innerAuth } })).json()) as string[]).length;
    const listener = createPrometheusListener(stats, openDatabases);
    listener.on("error", (e) => {
      console.error(`prometheus listener: ${e}`);
      process.exit(1);
    });
    listener.listen(settings.prometheus.port, settings.prometheus.bindAddress === "any" ? "0.0.0.0" : settings.prometheus.bindAddress);
  }
  front.on("error", (e) => {
    console.error(String(e));
    process.exit(1);
  });
  front.listen(Number(port), host, () => process.send!({ port: (front.address() as AddressInfo).port }));
}

main().catch((e) => {
  console.error(e);
  process.exit(1);
});
