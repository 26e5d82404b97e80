import { EventEmitter } from "node:events";
import { Couch } from "./couch";
import { AliasDoc, DomainDoc, MailboxDoc, ROLES_ID, RolesDoc, invalidReason, parseDocId } from "./model";
import { errText, type Logger } from "./log";
import { sleepUntilWoken } from "./sleep";

interface Change {
  id: string;
  seq: unknown;
  deleted?: boolean;
  doc?: Record<string, unknown>;
}

/** The in-memory copy of the datastore. Lookups read it synchronously. */
export class Snapshot {
  readonly domains = new Map<string, DomainDoc>();
  readonly mailboxes = new Map<string, MailboxDoc>();
  readonly aliases = new Map<string, AliasDoc>();
  /** Where role addresses go; null until `couchmail sync` has written it. */
  roles: RolesDoc | null = null;
  /** Ids of documents of ours that failed validation: lookups touching them answer "temporary failure". */
  readonly broken = new Set<string>();

  get size(): number {
    return this.domains.size + this.mailboxes.size + this.aliases.size;
  }

  /** Applies one change; returns a reason when the document was malformed. */
  apply(id: string, deleted: boolean, doc: Record<string, unknown> | undefined): string | null {
    const parsed = parseDocId(id);
    if (!parsed) return null; // design docs and anything that is not ours
    const { type, key } = parsed;
    const map = type === "domain" ? this.domains : type === "mailbox" ? this.mailboxes : type === "alias" ? this.aliases : null;
    map?.delete(key);
    if (id === ROLES_ID) this.roles = null;
    this.broken.delete(id);
    if (deleted || !doc) return null;
    const why = invalidReason(doc);
    if (why !== null) {
      this.broken.add(id);
      return why;
    }
    if (map) (map as Map<string, unknown>).set(key, doc);
    else this.roles = doc as unknown as RolesDoc;
    return null;
  }
}

export interface CacheOptions {
  heartbeatMs?: number; // asked of CouchDB; silence for 2× this means the feed is dead
  staleAfterMs?: number; // feed lost longer than this ⇒ "stale" in health and metrics
  backoffMinMs?: number;
  backoffMaxMs?: number;
}

/**
 * Loads the whole database, then follows `_changes` (continuous, with heartbeats).
 * The sequence is kept opaque. A lost feed is retried with exponential backoff while
 * the last snapshot keeps answering.
 */
export class Cache extends EventEmitter {
  snapshot: Snapshot | null = null;
  private seq: unknown = undefined;
  private abort: AbortController | null = null;
  private stopped = false;
  private wake: (() => void) | null = null;
  lastFeedAliveAt = 0; // ms epoch: last byte or successful (re)connect
  lastChangeAt = 0;
  feedConnected = false;
  private readonly heartbeatMs: number;
  readonly staleAfterMs: number;
  private readonly backoffMinMs: number;
  private readonly backoffMaxMs: number;

  constructor(
    private readonly couch: Couch,
    private readonly log: Logger,
    opts: CacheOptions = {},
  ) {
    super();
    this.heartbeatMs = opts.heartbeatMs ?? 10_000;
    this.staleAfterMs = opts.staleAfterMs ?? 60_000;
    this.backoffMinMs = opts.backoffMinMs ?? 250;
    this.backoffMaxMs = opts.backoffMaxMs ?? 30_000;
  }

  get loaded(): boolean {
    return this.snapshot !== null;
  }

  /** Loaded, but the feed has been gone longer than the bound. */
  get stale(): boolean {
    return this.loaded && !this.feedConnected && Date.now() - this.lastFeedAliveAt > this.staleAfterMs;
  }

  /**
   * Runs until stop(): a full load (retried until it succeeds), then the feed from there. Every reconnection starts
   * with a full load again. CouchDB ends a continuous feed only when something happened — the database deleted
   * (apache/couchdb-fabric#68), a node in maintenance, a restart — and after a delete and a restore from backup the
   * old sequence means nothing: resuming from it would miss the restored documents and keep ones the backup lacks. A
   * personal datastore loads in well under a second, and lookups keep the old snapshot until the new one is in.
   */
  async run(): Promise<void> {
    let backoff = this.backoffMinMs;
    while (!this.stopped) {
      try {
        await this.fullLoad();
        backoff = this.backoffMinMs;
        await this.follow();
        // The feed ended cleanly (CouchDB sent last_seq): load again and follow at once.
      } catch (e) {
        if (this.stopped) break;
        this.feedConnected = false;
        this.log.warn({ event: "feed_error", err: errText(e), retry_ms: backoff }, "CouchDB feed lost; retrying");
        await sleepUntilWoken(backoff, (wake) => (this.wake = wake));
        this.wake = null;
        backoff = Math.min(backoff * 2, this.backoffMaxMs);
      }
    }
  }

  stop(): void {
    this.stopped = true;
    this.abort?.abort();
    this.wake?.();
  }

  private async fullLoad(): Promise<void> {
    const started = Date.now();
    const body = await this.couch.json<{ results: Change[]; last_seq: unknown }>("GET", "/_changes", {
      query: { include_docs: "true", style: "main_only" },
    });
    const snap = new Snapshot();
    for (const c of body.results) this.applyOne(snap, c);
    this.seq = body.last_seq;
    this.snapshot = snap;
    this.lastFeedAliveAt = Date.now();
    this.lastChangeAt = Date.now();
    this.log.info({ event: "loaded", documents: snap.size, broken: snap.broken.size, ms: Date.now() - started }, "datastore loaded");
    this.emit("loaded");
  }

  private applyOne(snap: Snapshot, c: Change): void {
    const why = snap.apply(c.id, c.deleted === true, c.doc);
    // The id is ours (type:key, validated grammar or not); log it, never the document.
    if (why !== null) this.log.error({ event: "bad_document", id: c.id.slice(0, 300), reason: why }, "malformed document: lookups touching it answer TEMP");
  }

  private async follow(): Promise<void> {
    const ac = new AbortController();
    this.abort = ac;
    let watchdog: NodeJS.Timeout | undefined;
    const arm = () => {
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ac.abort(new Error("no heartbeat from CouchDB")), this.heartbeatMs * 2 + 1000);
    };
    try {
      arm();
      const query: Record<string, string> = {
        feed: "continuous",
        include_docs: "true",
        style: "main_only",
        heartbeat: String(this.heartbeatMs),
      };
      if (this.seq !== undefined) query.since = typeof this.seq === "string" ? this.seq : JSON.stringify(this.seq);
      const res = await this.couch.request("GET", "/_changes", { query, signal: ac.signal });
      if (!res.ok || !res.body) {
        await res.text().catch(() => undefined);
        throw new Error(`_changes feed: HTTP ${res.status}`);
      }
      this.feedConnected = true;
      this.lastFeedAliveAt = Date.now();
      this.emit("feed_connected");
      const decoder = new TextDecoder();
      let pending = "";
      for await (const chunk of res.body as unknown as AsyncIterable<Uint8Array>) {
        arm();
        this.lastFeedAliveAt = Date.now();
        pending += decoder.decode(chunk, { stream: true });
        let nl: number;
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl).trim();
          pending = pending.slice(nl + 1);
          if (!line) continue; // heartbeat
          const msg = JSON.parse(line) as Change & { last_seq?: unknown };
          if (msg.last_seq !== undefined) {
            this.seq = msg.last_seq;
            continue;
          }
          if (this.snapshot) this.applyOne(this.snapshot, msg);
          this.seq = msg.seq;
          this.lastChangeAt = Date.now();
          this.emit("change", msg.id);
        }
      }
    } finally {
      clearTimeout(watchdog);
      this.feedConnected = false;
      this.abort = null;
    }
  }
}
