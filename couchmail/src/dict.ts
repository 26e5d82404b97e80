import net from "node:net";
import type { Cache } from "./cache";
import { GuardContext, guarded, handlerFailed } from "./guard";
import type { Logger } from "./log";
import { Result, sieveLookup } from "./lookups";
import type { Metrics } from "./metrics";

/**
 * Dovecot's dict-proxy protocol, server side, read-only, for Pigeonhole's dict sieve
 * storage. Line based; replies strictly in request order (we never announce async
 * replies). All state — hello, user, transactions — belongs to one connection.
 */

export class DictProtocolError extends Error {}

/** Dovecot's str_tabescape. */
export function tabEscape(s: string): string {
  // eslint-disable-next-line no-control-regex -- \x01 is the protocol's escape byte
  return s.replace(/[\x01\t\r\n]/g, (c) => ({ "\x01": "\x011", "\t": "\x01t", "\r": "\x01r", "\n": "\x01n" })[c]!);
}

/** Dovecot's str_tabunescape; a dangling or unknown escape is a protocol error. */
export function tabUnescape(s: string): string {
  if (!s.includes("\x01")) return s;
  // eslint-disable-next-line no-control-regex -- \x01 is the protocol's escape byte
  return s.replace(/\x01([\s\S]?)/g, (_m, c: string) => {
    const map: Record<string, string> = { "1": "\x01", t: "\t", r: "\r", n: "\n", "0": "\0" };
    if (!Object.hasOwn(map, c)) throw new DictProtocolError("bad escape sequence");
    return map[c];
  });
}

/** Splits a tab-separated, escaped argument list. */
export function splitArgs(s: string): string[] {
  return s.split("\t").map(tabUnescape);
}

export interface DictSession {
  major: number | null;
  user: string;
  transactions: Set<string>;
}

export function newSession(): DictSession {
  return { major: null, user: "", transactions: new Set() };
}

export interface DictReply {
  reply: string | null; // a full line including "\n", or null when the command has no reply
  close: boolean;
}

function replyFor(r: Result): string {
  if (r.kind === "ok") return `O${tabEscape(r.value)}\n`;
  if (r.kind === "notfound") return "N\n";
  return `F${tabEscape(r.why)}\n`;
}

/** Handles one line (without its "\n"). Pure apart from the session it mutates. */
export function handleLine(ctx: GuardContext, session: DictSession, line: string): DictReply {
  const cmd = line.charAt(0);
  const rest = line.slice(1);
  if (cmd === "H") {
    // H<major>\t<minor>\t<value type>\t<user>\t<dict name>
    const args = splitArgs(rest);
    const major = Number(args[0]);
    if (session.major !== null || !(major === 3 || major === 4) || args.length < 2) {
      throw new DictProtocolError(session.major !== null ? "second hello" : `unsupported protocol version ${args[0]?.slice(0, 8)}`);
    }
    session.major = major;
    session.user = (args[3] ?? "").toLowerCase();
    return { reply: null, close: false };
  }
  if (session.major === null) throw new DictProtocolError("command before hello");
  switch (cmd) {
    case "L": {
      const args = splitArgs(rest);
      const user = args.length > 1 ? args[1] : session.user;
      const r: Result = guarded(ctx, "sieve", (snapshot) => sieveLookup(snapshot, user, args[0]));
      return { reply: replyFor(r), close: false };
    }
    case "I":
      // Iteration: nothing here is iterable; fail the iteration (its terminator line).
      return { reply: "Fiteration not supported\n", close: false };
    case "B": {
      if (!/^[0-9]+$/.test(rest) || session.transactions.has(rest)) throw new DictProtocolError("bad transaction id");
      session.transactions.add(rest);
      return { reply: null, close: false };
    }
    case "S":
    case "U":
    case "P":
    case "A":
    case "T": {
      // Writes inside a transaction get no reply of their own; the commit fails.
      const id = rest.split("\t", 1)[0];
      if (!session.transactions.has(id)) throw new DictProtocolError("unknown transaction id");
      return { reply: null, close: false };
    }
    case "C":
    case "D": {
      if (!session.transactions.delete(rest)) throw new DictProtocolError("unknown transaction id");
      // Read-only dict: every commit fails (D is the async form: A<result><id>).
      return { reply: cmd === "C" ? `F${rest}\n` : `AF${rest}\n`, close: false };
    }
    case "R": {
      if (!session.transactions.delete(rest)) throw new DictProtocolError("unknown transaction id");
      return { reply: null, close: false };
    }
    default:
      throw new DictProtocolError("unknown command");
  }
}

export interface DictOptions {
  maxLine?: number;
  idleMs?: number;
}

export function createDictServer(cache: Cache, metrics: Metrics, log: Logger, opts: DictOptions = {}): net.Server {
  const maxLine = opts.maxLine ?? 65536;
  const idleMs = opts.idleMs ?? 300_000;
  const ctx: GuardContext = { cache, metrics, log };
  return net.createServer((sock) => {
    sock.setTimeout(idleMs, () => sock.destroy());
    sock.on("error", () => sock.destroy());
    const session = newSession();
    let pending = "";
    let closed = false;
    sock.setEncoding("utf8");
    sock.on("data", (chunk: string) => {
      if (closed) return;
      pending += chunk;
      const out: string[] = [];
      let nl: number;
      try {
        while ((nl = pending.indexOf("\n")) >= 0) {
          const line = pending.slice(0, nl);
          pending = pending.slice(nl + 1);
          const r = handleLine(ctx, session, line);
          if (r.reply !== null) out.push(r.reply);
        }
        if (pending.length > maxLine) throw new DictProtocolError(`line longer than ${maxLine} bytes`);
      } catch (e) {
        // A protocol error (or a bug of ours) ends this connection, never the process.
        closed = true;
        let reason = "internal error";
        if (e instanceof DictProtocolError) {
          reason = e.message;
          metrics.protocolErrors.inc({ protocol: "dict" });
          log.warn({ event: "protocol_error", protocol: "dict", reason }, "dict client broke the protocol; closing");
        } else handlerFailed(ctx, "dict", e);
        out.push(`F${tabEscape(reason)}\n`);
        sock.end(out.join(""));
        return;
      }
      if (out.length) sock.write(out.join(""));
    });
  });
}
