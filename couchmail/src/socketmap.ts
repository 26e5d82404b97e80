import net from "node:net";
import type { Cache } from "./cache";
import { GuardContext, guarded, handlerFailed } from "./guard";
import type { Logger } from "./log";
import { Result, socketmapMaps } from "./lookups";
import type { Metrics } from "./metrics";
import { NetstringDecoder, encodeNetstring } from "./netstring";

export interface SocketmapOptions {
  maxRequest?: number; // bytes in one netstring
  idleMs?: number; // Postfix drops idle connections after ~10 s; we clean up after it
}

/** Answers one request body `<map> <key>` with a socketmap reply (without framing). */
export function answer(ctx: GuardContext, request: string): string {
  const sp = request.indexOf(" ");
  const name = sp > 0 ? request.slice(0, sp) : request;
  const fn = Object.hasOwn(socketmapMaps, name) ? socketmapMaps[name] : undefined;
  if (!fn) {
    ctx.metrics?.observe("unknown", "perm", process.hrtime.bigint());
    return sp > 0 ? `PERM unknown map ${name.slice(0, 64)}` : "PERM malformed request";
  }
  const key = request.slice(sp + 1);
  const r: Result = guarded(ctx, name, (snapshot) => (key === "" ? { kind: "notfound" } : fn(snapshot, key)));
  if (r.kind === "ok") return `OK ${r.value}`;
  if (r.kind === "notfound") return "NOTFOUND ";
  return `TEMP ${r.why}`;
}

export function createSocketmapServer(cache: Cache, metrics: Metrics, log: Logger, opts: SocketmapOptions = {}): net.Server {
  const maxRequest = opts.maxRequest ?? 4096;
  const idleMs = opts.idleMs ?? 60_000;
  const ctx: GuardContext = { cache, metrics, log };
  return net.createServer((sock) => {
    sock.setNoDelay(true);
    sock.setTimeout(idleMs, () => sock.destroy());
    sock.on("error", () => sock.destroy());
    const decoder = new NetstringDecoder(maxRequest);
    let closed = false;
    sock.on("data", (chunk: Buffer) => {
      if (closed) return;
      try {
        const { frames, error } = decoder.push(chunk);
        // Replies go out in request order: every lookup is synchronous.
        const out: Buffer[] = frames.map((f) => encodeNetstring(answer(ctx, f.toString("utf8"))));
        if (error !== null) {
          closed = true;
          metrics.protocolErrors.inc({ protocol: "socketmap" });
          log.warn({ event: "protocol_error", protocol: "socketmap", reason: error }, "socketmap client broke the protocol; closing");
          out.push(encodeNetstring(`PERM ${error}`));
          sock.end(Buffer.concat(out));
          return;
        }
        if (out.length) sock.write(out.length === 1 ? out[0] : Buffer.concat(out));
      } catch (e) {
        // A bug outside the lookups: this connection ends with a temporary failure.
        closed = true;
        handlerFailed(ctx, "socketmap", e);
        sock.end(encodeNetstring("TEMP internal error"));
      }
    });
  });
}
