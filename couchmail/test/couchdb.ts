/**
 * A CouchDB-protocol server for tests and the benchmark: express-pouchdb over PouchDB's
 * in-memory adapter, in a child process — stopping it is a real outage, and timers that
 * express-pouchdb leaves behind (continuous-feed heartbeats) die with it.
 * Its full mode runs validate_doc_update. Known gaps (see NOTES): longpoll ignores
 * `timeout`, no `filter=_selector`, numeric sequences.
 */
import { spawn } from "node:child_process";

export interface TestCouch {
  url: string;
  port: number;
  stop(): Promise<void>;
}

const CHILD = `
const [port, host, mods] = [Number(process.argv[1]), process.argv[2], JSON.parse(process.argv[3])];
const PouchDB = require(mods.core).plugin(require(mods.memory)).plugin(require(mods.http))
  .plugin(require(mods.mapreduce)).plugin(require(mods.replication));
const app = require(mods.express)();
// CouchDB 3's health endpoint (Kubernetes probes use it); express-pouchdb predates it.
app.get("/_up", (_req, res) => res.json({ status: "ok" }));
app.use("/", require(mods.expressPouch)(PouchDB.defaults({ adapter: "memory" }), { inMemoryConfig: true, logPath: "/dev/null" }));
const server = app.listen(port, host, () => process.send({ port: server.address().port }));
server.on("error", (e) => { console.error(String(e)); process.exit(1); });
`;

export async function startCouch(port = 0, host = "127.0.0.1"): Promise<TestCouch> {
  const mods = {
    core: require.resolve("pouchdb-core"),
    memory: require.resolve("pouchdb-adapter-memory"),
    http: require.resolve("pouchdb-adapter-http"),
    mapreduce: require.resolve("pouchdb-mapreduce"),
    replication: require.resolve("pouchdb-replication"),
    express: require.resolve("express"),
    expressPouch: require.resolve("express-pouchdb"),
  };
  const child = spawn(process.execPath, ["-e", CHILD, String(port), host, JSON.stringify(mods)], { stdio: ["ignore", "ignore", "inherit", "ipc"] });
  const exited = new Promise<void>((r) => child.once("exit", () => r()));
  const p = await new Promise<number>((resolve, reject) => {
    child.once("message", (m: { port: number }) => resolve(m.port));
    child.once("exit", (code) => reject(new Error(`test CouchDB exited (${code})`)));
  });
  child.disconnect();
  return {
    url: `http://${host}:${p}`,
    port: p,
    async stop() {
      child.kill("SIGKILL");
      await exited;
    },
  };
}
