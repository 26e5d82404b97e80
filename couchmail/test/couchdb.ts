/**
 * A CouchDB-protocol server for tests and the benchmark: express-pouchdb over PouchDB's
 * in-memory adapter. Known gaps (see NOTES): longpoll ignores `timeout`, no
 * `filter=_selector`, numeric sequences.
 */
import type { AddressInfo, Socket } from "node:net";
import http from "node:http";

export interface TestCouch {
  url: string;
  port: number;
  stop(): Promise<void>;
}

/* eslint-disable @typescript-eslint/no-require-imports -- untyped CommonJS test-only packages */
// PouchDB plugins can be registered once per process.
let pouch: { defaults(o: object): unknown } | null = null;
function pouchDB() {
  pouch ??= require("pouchdb-core")
    .plugin(require("pouchdb-adapter-memory"))
    .plugin(require("pouchdb-adapter-http"))
    .plugin(require("pouchdb-mapreduce"))
    .plugin(require("pouchdb-replication"));
  return pouch!;
}
let started = 0;

export async function startCouch(port = 0, host = "127.0.0.1"): Promise<TestCouch> {
  const express = require("express");
  const expressPouch = require("express-pouchdb");
  /* eslint-enable @typescript-eslint/no-require-imports */
  // Each server gets its own in-memory databases. The full mode (not "minimumForPouchDB")
  // is the one that runs validate_doc_update.
  const MemPouch = pouchDB().defaults({ adapter: "memory", prefix: `s${++started}-` });
  const app = express();
  // CouchDB 3's health endpoint (Kubernetes probes use it); express-pouchdb predates it.
  app.get("/_up", (_req: unknown, res: { json(v: unknown): void }) => res.json({ status: "ok" }));
  app.use("/", expressPouch(MemPouch, { inMemoryConfig: true, logPath: "/dev/null" }));
  const server = http.createServer(app);
  const sockets = new Set<Socket>();
  server.on("connection", (s) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
  });
  await new Promise<void>((r) => server.listen(port, host, r));
  const p = (server.address() as AddressInfo).port;
  return {
    url: `http://${host}:${p}`,
    port: p,
    stop: () =>
      new Promise<void>((r) => {
        server.close(() => r());
        for (const s of sockets) s.destroy();
      }),
  };
}
