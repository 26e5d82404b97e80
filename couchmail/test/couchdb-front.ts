/**
 * CouchDB 3.4's HTTP semantics in front of the express-pouchdb test server: the substitute's
 * clients talk to this front, which authenticates, authorizes, validates and reshapes, then
 * forwards to express-pouchdb (storage only) as its internal admin. Each rule cites the CouchDB
 * source it follows; whatever is not modelled is listed in SUBSTITUTE_DIFFERENCES.
 */
import { createHash, pbkdf2Sync, randomUUID, timingSafeEqual } from "node:crypto";
import { readFileSync, readdirSync, statSync } from "node:fs";
import http from "node:http";
import { join } from "node:path";
import { Compiled, CouchHttpError, compileDesignFunction, runValidation } from "./couchdb-js";

/** What the substitute still does differently from a real CouchDB 3.4 (printed at start). */
export const SUBSTITUTE_DIFFERENCES = [
  "storage is express-pouchdb in memory (a single node, no shards, plain revision trees)",
  "only Basic authentication (cookie, proxy and JWT handlers absent; POST /_session answers 501)",
  "system databases (_users, _replicator) are server-admin only (no _users self-signup)",
  "attachment writes, COPY and feed=eventsource answer 501",
  "validate_doc_update runs in Node's vm under QuickJS's compile rule (an anonymous function followed by more top-level statements is refused; QuickJS accepts it)",
  "no filter=_selector",
  "ini keys other than [admins], [chttpd] require_valid_user(_except_for_up), [couchdb] default_security and [prometheus] are read but not applied",
  "the Prometheus listener serves only request, status, read and write counters, open databases and uptime",
].join("; ");

// ---------------------------------------------------------------------------------------------
// Configuration: CouchDB's ini files (apache/couchdb src/config/src/config.erl): `[section]`,
// `key = value`, `;` comments, later files override earlier ones, an empty value deletes the key;
// a local.d-style directory contributes its *.ini files in name order.

export type Ini = Map<string, Map<string, string>>;

export function parseIni(text: string, source: string, into: Ini = new Map()): Ini {
  let section: Map<string, string> | null = null;
  text.split(/\r?\n/).forEach((raw, i) => {
    const line = raw.trim();
    if (line === "" || line.startsWith(";")) return;
    const header = /^\[([^\]]+)\]$/.exec(line);
    if (header) {
      section = into.get(header[1]) ?? new Map();
      into.set(header[1], section);
      return;
    }
    const eq = line.indexOf("=");
    if (!section || eq < 1) throw new Error(`${source}:${i + 1}: expected "[section]" or "key = value", got ${JSON.stringify(raw)}`);
    const key = line.slice(0, eq).trim();
    const value = line
      .slice(eq + 1)
      .replace(/\s;.*$/, "")
      .trim();
    if (value === "") section.delete(key);
    else section.set(key, value);
  });
  return into;
}

/** Reads ini files (or directories of them) in order, as CouchDB reads its config chain. */
export function loadIni(paths: string[]): Ini {
  const ini: Ini = new Map();
  for (const p of paths) {
    const files = statSync(p).isDirectory()
      ? readdirSync(p)
          .filter((f) => f.endsWith(".ini"))
          .sort()
          .map((f) => join(p, f))
      : [p];
    for (const f of files) parseIni(readFileSync(f, "utf8"), f, ini);
  }
  return ini;
}

export interface CouchSettings {
  requireValidUser: boolean;
  requireValidUserExceptForUp: boolean;
  /** `[couchdb] default_security = admin_only` (CouchDB 3's default): new databases are admin-only. */
  adminOnlyByDefault: boolean;
  /** `[admins]`: name → plaintext password or a `-pbkdf2-` hash. */
  admins: Record<string, string>;
  /** `[prometheus] additional_port = true`: the unauthenticated metrics listener's address. */
  prometheus?: { bindAddress: string; port: number };
}

function boolSetting(ini: Ini, section: string, key: string, dflt: boolean): boolean {
  const v = ini.get(section)?.get(key);
  if (v === undefined) return dflt;
  if (v === "true") return true;
  if (v === "false") return false;
  // chttpd_auth:party_mode_handler matches only "true" and "false": anything else is a crash there.
  throw new Error(`[${section}] ${key} = ${v}: CouchDB accepts only true or false`);
}

/**
 * The settings the substitute applies. `extraAdmins` plays the official image's entrypoint, which
 * writes COUCHDB_USER/COUCHDB_PASSWORD into `[admins]` of local.d/docker.ini.
 */
export function settingsFromIni(ini: Ini, extraAdmins: Record<string, string> = {}): CouchSettings {
  const security = ini.get("couchdb")?.get("default_security") ?? "admin_only";
  if (security !== "admin_only" && security !== "everyone") throw new Error(`[couchdb] default_security = ${security}: CouchDB accepts admin_only or everyone`);
  return {
    requireValidUser: boolSetting(ini, "chttpd", "require_valid_user", false),
    requireValidUserExceptForUp: boolSetting(ini, "chttpd", "require_valid_user_except_for_up", false),
    adminOnlyByDefault: security === "admin_only",
    admins: { ...Object.fromEntries(ini.get("admins") ?? []), ...extraAdmins },
    // default.ini of CouchDB 3.4: additional_port = false, bind_address = 127.0.0.1, port = 17986.
    prometheus: boolSetting(ini, "prometheus", "additional_port", false)
      ? { bindAddress: ini.get("prometheus")?.get("bind_address") ?? "127.0.0.1", port: Number(ini.get("prometheus")?.get("port") ?? "17986") }
      : undefined,
  };
}

// ---------------------------------------------------------------------------------------------
// Authentication and authorization.

export interface UserCtx {
  name: string | null;
  roles: string[];
}
const ADMIN_PARTY: UserCtx = { name: null, roles: ["_admin"] };
const unauthorized = (reason: string): CouchHttpError => ({ status: 401, error: "unauthorized", reason });

/**
 * A request without credentials (src/chttpd/src/chttpd_auth.erl party_mode_handler, and the
 * truth table in src/chttpd/test/eunit/chttpd_auth_tests.erl): POST /_session is always allowed;
 * `/_up` needs a user when require_valid_user is set without require_valid_user_except_for_up;
 * every other path needs one when either is set. Otherwise: anonymous, or admin when no admin
 * exists ("admin party").
 */
export function anonymousAccess(s: CouchSettings, method: string, segments: string[]): UserCtx | CouchHttpError {
  if (method === "POST" && segments.length === 1 && segments[0] === "_session") return { name: null, roles: [] };
  const isUp = segments.length === 1 && segments[0] === "_up";
  const required = isUp ? s.requireValidUser && !s.requireValidUserExceptForUp : s.requireValidUser || s.requireValidUserExceptForUp;
  if (required) return unauthorized("Authentication required.");
  return Object.keys(s.admins).length === 0 ? ADMIN_PARTY : { name: null, roles: [] };
}

function sameText(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  return timingSafeEqual(ha, createHash("sha256").update(b).digest());
}

/** `[admins]` values: plaintext (hashed by CouchDB at start) or `-pbkdf2-<derived hex>,<salt>,<iterations>` (SHA-1). */
export function adminPasswordMatches(stored: string, password: string): boolean {
  const m = /^-pbkdf2(?::(sha1|sha256|sha512))?-([0-9a-f]+),([^,]+),([0-9]+)$/.exec(stored);
  if (!m) return sameText(stored, password);
  const derived = pbkdf2Sync(password, m[3], Number(m[4]), m[2].length / 2, m[1] ?? "sha1").toString("hex");
  return sameText(derived, m[2]);
}

/** A `_users` document's password (src/couch/src/couch_passwords.erl): pbkdf2 (prf sha1 unless pbkdf2_prf says) or simple. */
export function userPasswordMatches(doc: Record<string, unknown>, password: string): boolean {
  const salt = typeof doc.salt === "string" ? doc.salt : "";
  if (doc.password_scheme === "pbkdf2" && typeof doc.derived_key === "string") {
    const prf = typeof doc.pbkdf2_prf === "string" ? doc.pbkdf2_prf : "sha1";
    const derived = pbkdf2Sync(password, salt, Number(doc.iterations), doc.derived_key.length / 2, prf).toString("hex");
    return sameText(derived, doc.derived_key);
  }
  if (typeof doc.password_sha === "string")
    return sameText(
      createHash("sha1")
        .update(password + salt)
        .digest("hex"),
      doc.password_sha,
    );
  return false;
}

export interface SecurityObject {
  admins?: { names?: string[]; roles?: string[] };
  members?: { names?: string[]; roles?: string[] };
}

const inGroup = (u: UserCtx, g: { names?: string[]; roles?: string[] } | undefined) =>
  (u.name !== null && (g?.names ?? []).includes(u.name)) || u.roles.some((r) => (g?.roles ?? []).includes(r));

/** src/couch/src/couch_db.erl is_admin / is_member: server admins always; empty members ⇒ public. */
export function isDbAdmin(u: UserCtx, sec: SecurityObject): boolean {
  return u.roles.includes("_admin") || inGroup(u, sec.admins);
}
export function isMember(u: UserCtx, sec: SecurityObject): boolean {
  const m = sec.members;
  const open = (m?.names ?? []).length === 0 && (m?.roles ?? []).length === 0;
  return isDbAdmin(u, sec) || open || inGroup(u, m);
}

/** couch_db.erl throw_security_error: anonymous ⇒ 401 unauthorized, a named user ⇒ 403 forbidden. */
export function securityError(u: UserCtx, reason?: string): CouchHttpError {
  if (u.name === null) return { status: 401, error: "unauthorized", reason: reason ?? "You are not authorized to access this db." };
  return { status: 403, error: "forbidden", reason: reason ?? "You are not allowed to access this db." };
}

/**
 * The security object CouchDB 3 gives a new database under `default_security = admin_only`
 * ("Since CouchDB 3.x newly created databases have by default the _admin role",
 * https://docs.couchdb.org/en/stable/api/database/security.html).
 */
export const ADMIN_ONLY_SECURITY: SecurityObject = { members: { roles: ["_admin"] }, admins: { roles: ["_admin"] } };

// ---------------------------------------------------------------------------------------------
// Sequences: CouchDB 3 sequences are opaque strings, "<sum>-<base64url of an Erlang term>", e.g.
// "12-g1AAAA…" (src/fabric/src/fabric_view_changes.erl pack_seqs/unpack_seqs). Clients must hand
// back what they got; "0" and "now" are the only other accepted `since` values, and anything
// that does not decode is 400 "Malformed sequence supplied in 'since' parameter.".

const SEQ_MARK = "g1AAAA";
export function opaqueSeq(n: number): string {
  return `${n}-${SEQ_MARK}${Buffer.from(`substitute-seq:${n}`).toString("base64url")}`;
}
export function parseSince(since: string): number | "now" | null {
  if (since === "0") return 0;
  if (since === "now") return "now";
  const m = /^([0-9]+)-g1AAAA([A-Za-z0-9_-]+)$/.exec(since);
  if (!m || Buffer.from(m[2], "base64url").toString() !== `substitute-seq:${m[1]}`) return null;
  return Number(m[1]);
}
const MALFORMED_SINCE: CouchHttpError = { status: 400, error: "bad_request", reason: "Malformed sequence supplied in 'since' parameter." };

// ---------------------------------------------------------------------------------------------
// The HTTP front.

/** The counters CouchDB's stats keep that its Prometheus endpoint exports (a subset; see prometheusText). */
export interface CouchStats {
  started: number;
  requestMethods: Map<string, number>;
  statusCodes: Map<number, number>;
  /** `[couchdb, database_writes]`: documents written. */
  databaseWrites: number;
  /** `[couchdb, database_reads]`: documents read. */
  databaseReads: number;
}

export const newStats = (): CouchStats => ({ started: Date.now(), requestMethods: new Map(), statusCodes: new Map(), databaseWrites: 0, databaseReads: 0 });

/**
 * `/_node/_local/_prometheus` as CouchDB 3.4 renders it (apache/couchdb src/couch_prometheus/src/couch_prometheus_util.erl):
 * `couchdb_` names, counters from couch_stats with `_total` appended, httpd_request_methods and httpd_status_codes
 * labelled without `_total` (that module's special cases), open_databases as a gauge, uptime from
 * couch_prometheus_server. Content type "text/plain; version=2.0" (couch_prometheus:version/0).
 */
export function prometheusText(stats: CouchStats, openDatabases: number): string {
  const lines: string[] = [];
  const family = (name: string, type: string, help: string, samples: [string, number][]) => {
    if (!samples.length) return;
    lines.push(`# HELP couchdb_${name} ${help}`, `# TYPE couchdb_${name} ${type}`, ...samples.map(([labels, v]) => `couchdb_${name}${labels} ${v}`));
  };
  family("uptime_seconds", "counter", "couchdb uptime", [["", Math.floor((Date.now() - stats.started) / 1000)]]);
  family("database_reads_total", "counter", "number of times a document was read from a database", [["", stats.databaseReads]]);
  family("database_writes_total", "counter", "number of times a database was changed", [["", stats.databaseWrites]]);
  family("open_databases", "gauge", "number of open databases", [["", openDatabases]]);
  family(
    "httpd_request_methods",
    "counter",
    "number of HTTP requests by method",
    [...stats.requestMethods].map(([m, n]) => [`{method="${m}"}`, n]),
  );
  family(
    "httpd_status_codes",
    "counter",
    "number of HTTP responses by status code",
    [...stats.statusCodes].map(([c, n]) => [`{code="${c}"}`, n]),
  );
  return lines.join("\n") + "\n";
}

/** CouchDB's additional Prometheus listener (couch_prometheus_http.erl): no authentication, `/_node/<node>/_prometheus` only. */
export function createPrometheusListener(stats: CouchStats, openDatabases: () => Promise<number>): http.Server {
  return http.createServer((req, res) => {
    const parts = new URL(req.url ?? "/", "http://substitute").pathname.split("/").filter(Boolean);
    if (parts.length !== 3 || parts[0] !== "_node" || parts[2] !== "_prometheus") return sendError(res, { status: 404, error: "not_found", reason: "" });
    if (parts[1] !== "_local") return sendError(res, { status: 404, error: "not_found", reason: `no such node: ${parts[1]}` });
    openDatabases().then(
      (open) => {
        const text = prometheusText(stats, open);
        res.writeHead(200, { "content-type": "text/plain; version=2.0", server: JSON_HEADERS.server, "content-length": Buffer.byteLength(text) });
        res.end(text);
      },
      (e: unknown) => sendJson(res, 500, { error: "server_error", reason: String(e) }),
    );
  });
}

export interface FrontOptions {
  settings: CouchSettings;
  /** Counted as CouchDB's stats count them; omitted: not counted. */
  stats?: CouchStats;
  /** express-pouchdb's URL and the Authorization header of its internal admin. */
  innerUrl: string;
  innerAuth: string;
}

type Doc = Record<string, unknown> & { _id?: string; _rev?: string };

const JSON_HEADERS = { "content-type": "application/json", "cache-control": "must-revalidate", server: "CouchDB/3.4.3 (substitute)" };
// couch_changes' default when neither timeout nor heartbeat is given ([chttpd] changes_timeout).
const DEFAULT_CHANGES_TIMEOUT_MS = 60_000;

function sendJson(res: http.ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body) + "\n";
  res.writeHead(status, { ...JSON_HEADERS, "content-length": Buffer.byteLength(text) });
  res.end(text);
}
const sendError = (res: http.ServerResponse, e: CouchHttpError) => sendJson(res, e.status, { error: e.error, reason: e.reason });
const notModelled = (what: string): CouchHttpError => ({ status: 501, error: "not_implemented", reason: `the CouchDB substitute does not model ${what}` });

function readBody(req: http.IncomingMessage): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    req.on("data", (c: Buffer) => chunks.push(c));
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

/** Path segments, percent-decoded one by one (a database name may contain an encoded "/"). */
export function pathSegments(rawPath: string): string[] {
  return rawPath
    .split("/")
    .slice(1)
    .filter((s, i, all) => s !== "" || i < all.length - 1)
    .map((s) => decodeURIComponent(s));
}

export function createFront(opts: FrontOptions): http.Server {
  const { settings } = opts;
  const enc = encodeURIComponent;

  async function inner(method: string, path: string, body?: string | Buffer, signal?: AbortSignal, contentType = "application/json"): Promise<Response> {
    const headers: Record<string, string> = { authorization: opts.innerAuth, accept: "application/json", "accept-encoding": "identity" };
    if (body !== undefined) headers["content-type"] = contentType;
    return fetch(`${opts.innerUrl}${path}`, { method, headers, body, signal });
  }
  async function innerJson<T>(method: string, path: string, body?: unknown): Promise<{ status: number; json: T }> {
    const r = await inner(method, path, body === undefined ? undefined : JSON.stringify(body));
    return { status: r.status, json: (await r.json()) as T };
  }

  /** couch_httpd_auth:default_authentication_handler: Basic credentials must be right, else 401, on every path. */
  async function authenticate(req: http.IncomingMessage, segments: string[]): Promise<UserCtx | CouchHttpError> {
    const header = req.headers.authorization ?? "";
    const basic = /^Basic\s+(.+)$/i.exec(header);
    if (!basic) return anonymousAccess(settings, req.method ?? "GET", segments);
    const decoded = Buffer.from(basic[1], "base64").toString("utf8");
    const colon = decoded.indexOf(":");
    const name = colon < 0 ? decoded : decoded.slice(0, colon);
    const password = colon < 0 ? "" : decoded.slice(colon + 1);
    const wrong = unauthorized("Name or password is incorrect.");
    if (Object.hasOwn(settings.admins, name)) return adminPasswordMatches(settings.admins[name], password) ? { name, roles: ["_admin"] } : wrong;
    const user = await innerJson<Record<string, unknown>>("GET", `/_users/${enc(`org.couchdb.user:${name}`)}`);
    if (user.status !== 200 || !userPasswordMatches(user.json, password)) return wrong;
    return { name, roles: Array.isArray(user.json.roles) ? (user.json.roles as string[]) : [] };
  }

  async function security(db: string): Promise<SecurityObject | CouchHttpError> {
    const r = await innerJson<SecurityObject & { error?: string; reason?: string }>("GET", `/${enc(db)}/_security`);
    if (r.status === 404) return { status: 404, error: "not_found", reason: "Database does not exist." };
    if (r.status !== 200) return { status: 500, error: "substitute_error", reason: `reading _security: HTTP ${r.status}` };
    return r.json;
  }

  async function forward(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    body: Buffer,
    transform?: (json: Record<string, unknown>) => unknown,
  ): Promise<void> {
    const r = await inner(req.method ?? "GET", req.url ?? "/", body.length ? body : undefined, undefined, req.headers["content-type"] ?? "application/json");
    const buf = Buffer.from(await r.arrayBuffer());
    if (transform && r.ok && req.method !== "HEAD") return sendJson(res, r.status, transform(JSON.parse(buf.toString("utf8"))));
    const headers: Record<string, string> = { ...JSON_HEADERS, "content-type": r.headers.get("content-type") ?? "application/json" };
    const etag = r.headers.get("etag");
    if (etag) headers.etag = etag;
    res.writeHead(r.status, headers);
    res.end(req.method === "HEAD" ? undefined : buf);
  }

  /** Compiled validate_doc_update functions of a database, in design-document id order. */
  async function validators(db: string): Promise<Compiled[]> {
    const q = `startkey=${enc('"_design/"')}&endkey=${enc('"_design0"')}&include_docs=true`;
    const r = await innerJson<{ rows: { doc?: Doc }[] }>("GET", `/${enc(db)}/_all_docs?${q}`);
    return r.json.rows.flatMap((row) => (row.doc && row.doc.validate_doc_update !== undefined ? [compileDesignFunction(row.doc.validate_doc_update)] : []));
  }

  /**
   * src/couch/src/couch_db.erl validate_doc_update: design documents need a database admin and
   * skip validate_doc_update; _local documents skip both; every other document (admins' and
   * replicated ones included) goes through every validate_doc_update. Compilation happens when
   * the first document needs it, so a broken function fails writes, not the design doc's storage.
   */
  async function checkWrites(db: string, docs: Doc[], u: UserCtx, sec: SecurityObject): Promise<(CouchHttpError | null)[] | CouchHttpError> {
    let compiled: Compiled[] | null = null;
    const out: (CouchHttpError | null)[] = [];
    for (const doc of docs) {
      const id = String(doc._id ?? "");
      if (id.startsWith("_design/")) {
        out.push(isDbAdmin(u, sec) ? null : securityError(u, "You are not a db or server admin."));
        continue;
      }
      if (id.startsWith("_local/")) {
        out.push(null);
        continue;
      }
      compiled ??= await validators(db);
      const failedToCompile = compiled.find((c) => !c.ok);
      if (failedToCompile && !failedToCompile.ok) return failedToCompile.failure;
      const old = await innerJson<Doc>("GET", `/${enc(db)}/${enc(id)}`);
      const oldDoc = old.status === 200 ? old.json : null;
      const userCtx = { db, name: u.name, roles: u.roles };
      let failure: CouchHttpError | null = null;
      for (const c of compiled) if (!failure) failure = runValidation(c, doc, oldDoc, userCtx, sec);
      out.push(failure);
    }
    return out;
  }

  async function writeOne(
    req: http.IncomingMessage,
    res: http.ServerResponse,
    db: string,
    doc: Doc,
    u: UserCtx,
    sec: SecurityObject,
    path: string,
    method: string,
  ): Promise<void> {
    const checked = await checkWrites(db, [doc], u, sec);
    if (!Array.isArray(checked)) return sendError(res, checked);
    if (checked[0]) return sendError(res, checked[0]);
    const query = (req.url ?? "").includes("?") ? (req.url ?? "").slice((req.url ?? "").indexOf("?")) : "";
    const r = await inner(method, path + query, method === "DELETE" ? undefined : JSON.stringify(doc));
    if (r.ok && opts.stats) opts.stats.databaseWrites++;
    res.writeHead(r.status, JSON_HEADERS);
    res.end(Buffer.from(await r.arrayBuffer()));
  }

  async function bulkDocs(res: http.ServerResponse, db: string, body: { docs?: Doc[]; new_edits?: boolean }, u: UserCtx, sec: SecurityObject): Promise<void> {
    const docs = (body.docs ?? []).map((d) => (d._id === undefined ? { ...d, _id: randomUUID().replace(/-/g, "") } : d));
    const checked = await checkWrites(db, docs, u, sec);
    if (!Array.isArray(checked)) return sendError(res, checked);
    const passing = docs.filter((_, i) => checked[i] === null);
    const r = passing.length ? await innerJson<{ id: string }[]>("POST", `/${enc(db)}/_bulk_docs`, { ...body, docs: passing }) : { status: 201, json: [] };
    if (opts.stats) opts.stats.databaseWrites += (r.json as { error?: string }[]).filter((row) => !row.error).length;
    const refused = docs.flatMap((d, i) => (checked[i] ? [{ id: d._id, error: checked[i].error, reason: checked[i].reason }] : []));
    if (body.new_edits === false) return sendJson(res, 201, [...refused, ...r.json]);
    // With new_edits the reply has one row per document, in order.
    const fromInner = [...r.json];
    sendJson(
      res,
      201,
      docs.map((d, i) => (checked[i] ? { id: d._id, error: checked[i].error, reason: checked[i].reason } : fromInner.shift())),
    );
  }

  const withOpaqueSeq = (c: Record<string, unknown>) => ({ ...c, seq: opaqueSeq(Number(c.seq)) });

  // Continuous feeds open per database: deleting a database ends them cleanly with their last_seq, as CouchDB does
  // ("End continuous changes feeds cleanly if database is deleted", apache/couchdb-fabric#68, COUCHDB-3132).
  const openFeeds = new Map<string, Set<() => void>>();

  /** `_changes` with CouchDB's feed semantics (src/couch/src/couch_changes.erl, docs api/database/changes). */
  async function changes(res: http.ServerResponse, db: string, query: URLSearchParams): Promise<void> {
    const feed = query.get("feed") ?? "normal";
    const since = parseSince(query.get("since") ?? "0");
    if (since === null) return sendError(res, MALFORMED_SINCE);
    const hbParam = query.get("heartbeat");
    const heartbeat = hbParam === null ? null : hbParam === "true" ? DEFAULT_CHANGES_TIMEOUT_MS : Number(hbParam);
    const timeout = query.get("timeout") === null ? DEFAULT_CHANGES_TIMEOUT_MS : Number(query.get("timeout"));
    if (heartbeat !== null && !(heartbeat > 0))
      return sendError(res, { status: 400, error: "bad_request", reason: "Invalid heartbeat value. Expecting a positive integer value (or `true`)." });
    if (!(timeout >= 0)) return sendError(res, { status: 400, error: "bad_request", reason: "Invalid timeout value. Expecting a positive integer value." });
    if (!["normal", "longpoll", "continuous"].includes(feed))
      return sendError(
        res,
        feed === "eventsource"
          ? notModelled("feed=eventsource")
          : { status: 400, error: "bad_request", reason: `Supported feeds are normal, longpoll, continuous and eventsource, got ${feed}` },
      );
    const start = since === "now" ? Number((await innerJson<{ update_seq: number }>("GET", `/${enc(db)}`)).json.update_seq) : since;
    const innerQuery = new URLSearchParams(query);
    for (const k of ["feed", "since", "heartbeat", "timeout"]) innerQuery.delete(k);
    innerQuery.set("since", String(start));
    if (feed === "normal") {
      const r = await innerJson<{ results: Record<string, unknown>[]; last_seq: number }>("GET", `/${enc(db)}/_changes?${innerQuery.toString()}`);
      return sendJson(res, 200, { results: r.json.results.map(withOpaqueSeq), last_seq: opaqueSeq(Number(r.json.last_seq)), pending: 0 });
    }
    innerQuery.set("feed", feed);
    const ac = new AbortController();
    let headersSent = false;
    const begin = (first: string) => {
      if (!headersSent) {
        headersSent = true;
        res.writeHead(200, JSON_HEADERS);
        res.write(first);
      }
    };
    let heartbeatTimer: NodeJS.Timeout | undefined;
    let timeoutTimer: NodeJS.Timeout | undefined;
    const stopTimers = () => {
      clearInterval(heartbeatTimer);
      clearTimeout(timeoutTimer);
    };
    res.on("close", () => {
      stopTimers();
      ac.abort();
    });
    const opening = feed === "longpoll" ? '{"results":[\n' : "";
    // A heartbeat keeps the feed open for good (it overrides timeout); without one the feed ends
    // after `timeout` ms without a change.
    if (heartbeat !== null) heartbeatTimer = setInterval(() => (begin(opening), res.write("\n")), heartbeat);
    let lastSeq = start;
    const end = (tail: string) => {
      stopTimers();
      ac.abort();
      begin(opening);
      res.end(tail);
    };
    const armTimeout = (finish: () => void) => {
      if (heartbeat !== null) return;
      clearTimeout(timeoutTimer);
      timeoutTimer = setTimeout(finish, timeout);
    };
    try {
      if (feed === "longpoll") {
        const finish = (rows: Record<string, unknown>[], last: number) =>
          end(
            rows.map((c) => JSON.stringify(withOpaqueSeq(c))).join(",\n") +
              (rows.length ? "\n" : "") +
              `],\n"last_seq":${JSON.stringify(opaqueSeq(last))},"pending":0}\n`,
          );
        armTimeout(() => finish([], lastSeq));
        const r = await inner("GET", `/${enc(db)}/_changes?${innerQuery.toString()}`, undefined, ac.signal);
        const body = (await r.json()) as { results: Record<string, unknown>[]; last_seq: number };
        finish(body.results, Number(body.last_seq));
        return;
      }
      begin("");
      const finish = () => {
        openFeeds.get(db)?.delete(finish);
        end(JSON.stringify({ last_seq: opaqueSeq(lastSeq), pending: 0 }) + "\n");
      };
      if (!openFeeds.has(db)) openFeeds.set(db, new Set());
      openFeeds.get(db)!.add(finish);
      res.on("close", () => openFeeds.get(db)?.delete(finish));
      armTimeout(finish);
      const r = await inner("GET", `/${enc(db)}/_changes?${innerQuery.toString()}`, undefined, ac.signal);
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of r.body as unknown as AsyncIterable<Uint8Array>) {
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (!line) continue; // express-pouchdb's own heartbeat; ours are separate
          const change = JSON.parse(line) as Record<string, unknown>;
          if (change.last_seq !== undefined) {
            lastSeq = Number(change.last_seq);
            return finish();
          }
          lastSeq = Number(change.seq);
          res.write(JSON.stringify(withOpaqueSeq(change)) + "\n");
          armTimeout(finish);
        }
      }
    } catch (e) {
      if (ac.signal.aborted) return;
      throw e;
    }
  }

  async function handle(req: http.IncomingMessage, res: http.ServerResponse): Promise<void> {
    const url = new URL(req.url ?? "/", "http://substitute");
    const method = req.method ?? "GET";
    const segments = pathSegments(url.pathname);
    const u = await authenticate(req, segments);
    if ("status" in u) return sendError(res, u);
    const body = await readBody(req);
    const first = segments[0] ?? "";

    if (first === "_up") return sendJson(res, 200, { status: "ok", seeds: {} });
    if (first === "_session" && segments.length === 1) {
      if (method === "GET")
        return sendJson(res, 200, { ok: true, userCtx: u, info: { authentication_handlers: ["default"], ...(u.name ? { authenticated: "default" } : {}) } });
      return sendError(res, notModelled("cookie sessions"));
    }
    if (first === "" || first === "_uuids") return forward(req, res, body);
    // Server endpoints and system databases: server admins only (chttpd:verify_is_server_admin).
    if (first.startsWith("_")) return u.roles.includes("_admin") ? forward(req, res, body) : sendError(res, unauthorized("You are not a server admin."));

    const db = first;
    if (segments.length === 1 && (method === "PUT" || method === "DELETE")) {
      if (!u.roles.includes("_admin")) return sendError(res, unauthorized("You are not a server admin."));
      const r = await inner(method, `/${enc(db)}`);
      if (r.status === 201 && method === "PUT" && settings.adminOnlyByDefault) await innerJson("PUT", `/${enc(db)}/_security`, ADMIN_ONLY_SECURITY);
      if (r.ok && method === "DELETE") for (const finish of [...(openFeeds.get(db) ?? [])]) finish();
      res.writeHead(r.status, JSON_HEADERS);
      return void res.end(Buffer.from(await r.arrayBuffer()));
    }
    const sec = await security(db);
    if ("status" in sec) return sendError(res, sec);
    if (segments[1] === "_security" && segments.length === 2 && method === "PUT") {
      return isDbAdmin(u, sec) ? forward(req, res, body) : sendError(res, securityError(u, "You are not a db or server admin."));
    }
    if (!isMember(u, sec)) return sendError(res, securityError(u));

    const json = () => JSON.parse(body.toString("utf8") || "{}") as Doc;
    if (segments.length === 1) {
      if (method === "POST") {
        const doc = json();
        return writeOne(req, res, db, { ...doc, _id: doc._id ?? randomUUID().replace(/-/g, "") }, u, sec, `/${enc(db)}/${enc(String(doc._id))}`, "PUT");
      }
      return forward(req, res, body, (info) => ({ ...info, update_seq: opaqueSeq(Number(info.update_seq)) }));
    }
    const second = segments[1];
    if (second === "_changes" && segments.length === 2) return changes(res, db, url.searchParams);
    if (second === "_bulk_docs" && segments.length === 2 && method === "POST") return bulkDocs(res, db, json() as { docs?: Doc[] }, u, sec);
    // Other database endpoints (_all_docs, _find, _revs_diff, …): members may use them.
    if (second.startsWith("_") && second !== "_design" && second !== "_local") return forward(req, res, body);
    const docId = second === "_design" || second === "_local" ? `${second}/${segments[2] ?? ""}` : second;
    const docSegments = second === "_design" || second === "_local" ? 3 : 2;
    const isDocWrite = segments.length === docSegments && (method === "PUT" || method === "DELETE");
    if (method === "COPY") return sendError(res, notModelled("COPY"));
    if (segments.length > docSegments && method !== "GET" && method !== "HEAD" && second !== "_design") return sendError(res, notModelled("attachment writes"));
    if (!isDocWrite) {
      if (second === "_design" && method !== "GET" && method !== "HEAD" && !isDbAdmin(u, sec))
        return sendError(res, securityError(u, "You are not a db or server admin."));
      if (opts.stats && (method === "GET" || method === "HEAD") && segments.length === docSegments) opts.stats.databaseReads++;
      return forward(req, res, body);
    }
    const docPath = `/${enc(db)}/${docId.split("/").map(enc).join("/")}`;
    if (method === "DELETE") {
      const doc: Doc = { _id: docId, _rev: url.searchParams.get("rev") ?? undefined, _deleted: true };
      return writeOne(req, res, db, doc, u, sec, docPath, "DELETE");
    }
    return writeOne(req, res, db, { ...json(), _id: docId }, u, sec, docPath, "PUT");
  }

  return http.createServer((req, res) => {
    const stats = opts.stats;
    if (stats) {
      const method = req.method ?? "GET";
      stats.requestMethods.set(method, (stats.requestMethods.get(method) ?? 0) + 1);
      res.on("finish", () => stats.statusCodes.set(res.statusCode, (stats.statusCodes.get(res.statusCode) ?? 0) + 1));
    }
    handle(req, res).catch((e: unknown) => {
      // The substitute's own failure: visible to the client as a 500, and on stderr.
      console.error(`couchdb substitute: ${req.method} ${req.url}: ${(e as Error)?.stack ?? String(e)}`);
      if (!res.headersSent) sendJson(res, 500, { error: "substitute_error", reason: String((e as Error)?.message ?? e) });
      else res.destroy();
    });
  });
}
