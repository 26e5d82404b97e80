import { chmodSync, chownSync, lstatSync, readFileSync, unlinkSync } from "node:fs";
import net from "node:net";
import type { Server } from "node:net";
import type { Listen } from "./serveconfig";

/** Who may connect to a unix socket: its mode (owner/group only) and, optionally, its group. */
export interface SocketAccess {
  socketMode: number;
  socketGroup?: string;
}

function groupId(group: string): number {
  if (/^[0-9]+$/.test(group)) return Number(group);
  for (const line of readFileSync("/etc/group", "utf8").split("\n")) {
    const f = line.split(":");
    if (f[0] === group && f[2]) return Number(f[2]);
  }
  throw new Error(`unknown group ${group}`);
}

/** Resolves once `start` has the server listening, rejects with the error that stopped it. */
function listenOn(server: Server, start: (listening: () => void) => void): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    start(() => {
      server.off("error", reject);
      resolve();
    });
  });
}

/** Starts one server on one address; resolves to the address as logged (`IP:PORT`, `[V6]:PORT`, `unix:/path`). */
async function listen(server: Server, l: Listen, access: SocketAccess): Promise<string> {
  if (l.kind === "tcp") {
    await listenOn(server, (listening) => server.listen(l.port, l.host, listening));
    const a = server.address() as net.AddressInfo;
    return a.family === "IPv6" ? `[${a.address}]:${a.port}` : `${a.address}:${a.port}`;
  }
  try {
    // Replace a stale socket from a previous run, never any other kind of file.
    if (lstatSync(l.path).isSocket()) unlinkSync(l.path);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
  // The socket is born owner-only (no window where others could connect), then opened to the group.
  const old = process.umask(0o177);
  try {
    await listenOn(server, (listening) => server.listen(l.path, listening));
  } finally {
    process.umask(old);
  }
  if (access.socketGroup !== undefined) chownSync(l.path, -1, groupId(access.socketGroup));
  chmodSync(l.path, access.socketMode);
  return `unix:${l.path}`;
}

/** Every server couchmail listens with, and their open connections, so that one close ends them all. */
export class Listeners {
  private readonly servers: Server[] = [];
  private readonly sockets = new Set<net.Socket>();

  constructor(private readonly access: SocketAccess) {}

  /** Starts `server` on `l`; on failure the servers started so far are closed and the error is thrown. */
  async add(server: Server, l: Listen): Promise<string> {
    this.servers.push(server);
    server.on("connection", (c: net.Socket) => {
      this.sockets.add(c);
      c.on("close", () => this.sockets.delete(c));
    });
    try {
      return await listen(server, l, this.access);
    } catch (e) {
      for (const s of this.servers) s.close();
      throw e;
    }
  }

  async close(): Promise<void> {
    await Promise.all([...this.servers.map((s) => new Promise<void>((r) => s.close(() => r()))), this.dropConnections()]);
  }

  private async dropConnections(): Promise<void> {
    // Let replies already written flush, then drop idle persistent connections.
    await new Promise((r) => setTimeout(r, 50));
    for (const c of this.sockets) c.destroy();
  }
}
