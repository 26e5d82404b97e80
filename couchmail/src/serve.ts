import { Cache } from "./cache";
import { Couch, CouchError } from "./couch";
import { createDictServer } from "./dict";
import { createHttpServer, createMetricsServer } from "./http";
import { Listeners } from "./listeners";
import { errText, type Logger } from "./log";
import { Metrics } from "./metrics";
import { passwordServer } from "./password";
import { AuthPolicy } from "./policy";
import type { ServeConfig } from "./serveconfig";
import { createSocketmapServer } from "./socketmap";

export interface Running {
  cache: Cache;
  metrics: Metrics;
  addresses: { socketmap: string[]; dict: string[]; http: string[]; metrics: string[]; passwordChange: string[] };
  close(): Promise<void>;
}

/** Wires `couchmail serve`: the cache and its feed, the lookup servers on their listeners, the datastore's setup. */
export async function serve(cfg: ServeConfig, log: Logger): Promise<Running> {
  const couch = new Couch(cfg.couch);
  const cache = new Cache(couch, log, cfg.cache);
  // One policy for every HTTP listener: limits hold per address and account, whichever port asked.
  const policy = new AuthPolicy();
  const metrics = new Metrics(cache, policy);
  const listeners = new Listeners(cfg);
  const addresses: Running["addresses"] = { socketmap: [], dict: [], http: [], metrics: [], passwordChange: [] };
  for (const l of cfg.socketmap) addresses.socketmap.push(await listeners.add(createSocketmapServer(cache, metrics, log), l));
  for (const l of cfg.dict) addresses.dict.push(await listeners.add(createDictServer(cache, metrics, log), l));
  for (const l of cfg.http) {
    addresses.http.push(await listeners.add(createHttpServer(cache, metrics, log, { mailHome: cfg.mailHome, token: cfg.httpToken, policy }), l));
  }
  if (cfg.metrics) addresses.metrics.push(await listeners.add(createMetricsServer(metrics, log), cfg.metrics));
  if (cfg.password) addresses.passwordChange.push(await listeners.add(passwordServer(cfg.password, couch, metrics, log), cfg.password.listen));
  log.info({ event: "listening", ...addresses, couchdb: couch.location }, "couchmail serving");

  // Listeners answer TEMP until the first load. A fresh CouchDB has no database yet, and the
  // feed cannot load before it exists: create it and the design document, retrying while
  // CouchDB is unreachable. Best effort (the account may lack admin rights): never blocks lookups.
  let closing = false;
  void (async () => {
    for (let delay = 500; !closing; delay = Math.min(delay * 2, 30_000)) {
      try {
        await couch.ensureDatabase();
        const what = await couch.installDesign();
        log.info({ event: "design_doc", result: what }, "database and design document checked");
        return;
      } catch (e) {
        const denied = e instanceof CouchError && (e.status === 401 || e.status === 403);
        log.warn(
          { event: "design_doc_failed", err: errText(e), retry_ms: denied ? null : delay },
          "could not create the database or install the design document",
        );
        if (denied) return;
        await new Promise((r) => setTimeout(r, delay).unref());
      }
    }
  })();
  const feed = cache.run();

  return {
    cache,
    metrics,
    addresses,
    async close() {
      closing = true;
      cache.stop();
      await Promise.all([listeners.close(), feed]);
    },
  };
}
