/**
 * Socketmap throughput and latency: couchmail (answers from memory) vs the seed's design
 * (one CouchDB GET per lookup), over 1 and 10 persistent connections, in one run.
 * Each connection sends one request and waits for its reply, as Postfix does.
 *
 *   npm run bench -w couchmail        (BENCH_SECONDS=3 per cell by default)
 *
 * Both servers run as separate processes; CouchDB is the express-pouchdb test server.
 */
import { ChildProcess, fork } from "node:child_process";
import net from "node:net";
import { Couch } from "../src/couch";
import { NetstringDecoder, encodeNetstring } from "../src/netstring";
import { startCouch } from "../test/couchdb";
import { HASH } from "../test/fixtures";

const SECONDS = Number(process.env.BENCH_SECONDS || 3);
const USERS = 2000;

/** The seed's design, for comparison: a socketmap server doing a CouchDB GET per lookup. */
function perLookupGetServer(couchUrl: string, port: number): void {
  const couch = new Couch({ url: couchUrl, db: "mail" });
  net
    .createServer((sock) => {
      sock.setNoDelay(true);
      const dec = new NetstringDecoder(4096);
      let chain = Promise.resolve();
      sock.on("data", (c) => {
        for (const f of dec.push(c).frames) {
          const key = f.toString().split(" ")[1];
          chain = chain.then(async () => {
            const doc = await couch.get(`mailbox:${key}`).catch(() => "error");
            sock.write(encodeNetstring(doc === "error" ? "TEMP error" : doc ? `OK ${key}` : "NOTFOUND "));
          });
        }
      });
      sock.on("error", () => sock.destroy());
    })
    .listen(port, "127.0.0.1", () => process.send?.("ready"));
}

async function freePort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, "127.0.0.1", r));
  const p = (s.address() as net.AddressInfo).port;
  await new Promise((r) => s.close(r));
  return p;
}

/** One connection: request, wait, repeat until the deadline. Returns latencies in µs. */
function worker(port: number, keys: string[], until: number): Promise<number[]> {
  return new Promise((resolve, reject) => {
    const sock = net.connect(port, "127.0.0.1");
    sock.setNoDelay(true);
    const dec = new NetstringDecoder(100000);
    const lat: number[] = [];
    let sent = 0n;
    let i = Math.floor(Math.random() * keys.length);
    const send = () => {
      i = (i + 7) % keys.length;
      sent = process.hrtime.bigint();
      sock.write(encodeNetstring(`mailboxes ${keys[i]}`));
    };
    sock.on("connect", send);
    sock.on("error", reject);
    sock.on("data", (c) => {
      const { frames, error } = dec.push(c);
      if (error) return reject(new Error(error));
      for (const f of frames) {
        if (f.toString().startsWith("TEMP")) return reject(new Error(`server answered ${f.toString()}`));
        lat.push(Number(process.hrtime.bigint() - sent) / 1000);
        if (Date.now() >= until) {
          sock.destroy();
          return resolve(lat);
        }
        send();
      }
    });
  });
}

async function measure(port: number, conns: number, keys: string[]): Promise<{ rate: number; p50: number; p99: number }> {
  await Promise.all(Array.from({ length: conns }, () => worker(port, keys, Date.now() + 300))); // warm-up
  const t0 = Date.now();
  const all = (await Promise.all(Array.from({ length: conns }, () => worker(port, keys, t0 + SECONDS * 1000)))).flat();
  const secs = (Date.now() - t0) / 1000;
  all.sort((a, b) => a - b);
  return { rate: all.length / secs, p50: all[Math.floor(all.length * 0.5)], p99: all[Math.floor(all.length * 0.99)] };
}

function waitReady(child: ChildProcess, check: () => Promise<boolean>): Promise<void> {
  return new Promise((resolve, reject) => {
    child.once("exit", (code) => reject(new Error(`server exited early (${code})`)));
    const poll = async () => ((await check().catch(() => false)) ? resolve() : setTimeout(() => void poll(), 100));
    void poll();
  });
}

async function main(): Promise<void> {
  const couchServer = await startCouch();
  const couch = new Couch({ url: couchServer.url, db: "mail" });
  await couch.ensureDatabase();
  const docs = [{ _id: "domain:example.org", type: "domain", name: "example.org" }];
  const keys: string[] = [];
  for (let i = 0; i < USERS; i++) {
    const address = `user${i}@example.org`;
    docs.push({ _id: `mailbox:${address}`, type: "mailbox", address, password: HASH, enabled: true } as never);
    keys.push(i % 10 === 9 ? `nobody${i}@example.org` : address); // 10% misses
  }
  await couch.json("POST", "/_bulk_docs", { body: { docs } });

  const smPort = await freePort();
  const httpPort = await freePort();
  const couchmail = fork(__filename.replace(/bench\.js$/, "cli.js"), ["serve"], {
    env: {
      ...process.env,
      COUCHDB_URL: couchServer.url,
      COUCHMAIL_SOCKETMAP_LISTEN: `127.0.0.1:${smPort}`,
      COUCHMAIL_HTTP_LISTEN: `127.0.0.1:${httpPort}`,
      COUCHMAIL_LOG_LEVEL: "warn",
    },
    stdio: "inherit",
  });
  const getPort = await freePort();
  const seed = fork(__filename, ["--per-lookup-get", couchServer.url, String(getPort)], { stdio: "inherit" });
  try {
    await waitReady(couchmail, async () => (await fetch(`http://127.0.0.1:${httpPort}/readyz`)).ok);
    await new Promise((r) => seed.once("message", r));

    const rows: string[][] = [];
    const results: Record<string, { rate: number; p50: number; p99: number }> = {};
    for (const [name, port] of [
      ["couchmail (memory)", smPort],
      ["GET per lookup (seed)", getPort],
    ] as const) {
      for (const conns of [1, 10]) {
        const r = await measure(port, conns, keys);
        results[`${name}/${conns}`] = r;
        rows.push([name, String(conns), r.rate.toFixed(0), r.p50.toFixed(0), r.p99.toFixed(0)]);
      }
    }
    const head = ["design", "connections", "lookups/s", "p50 µs", "p99 µs"];
    const widths = head.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    console.log(`\n${SECONDS}s per cell, ${USERS} mailboxes, 10% misses, node ${process.version}\n`);
    console.log(line(head));
    for (const r of rows) console.log(line(r));
    for (const c of [1, 10]) {
      console.log(`speed-up at ${c} connection(s): ${(results[`couchmail (memory)/${c}`].rate / results[`GET per lookup (seed)/${c}`].rate).toFixed(1)}x`);
    }
  } finally {
    couchmail.kill("SIGTERM");
    seed.kill("SIGTERM");
    await couchServer.stop();
  }
}

if (process.argv[2] === "--per-lookup-get") perLookupGetServer(process.argv[3], Number(process.argv[4]));
else
  main().then(
    () => process.exit(0),
    (e) => {
      console.error(e);
      process.exit(1);
    },
  );
