/**
 * Fakes for the doctor's tests, only where the protocol is trivial: an authoritative DNS server (RFC 1035 §4.1
 * message format, UDP and TCP with the 2-byte length prefix of §4.2.2; NXDOMAIN for unknown names, an empty
 * NOERROR answer for a known name without that type — what c-ares reports as ENOTFOUND and ENODATA), and an SMTP
 * server (RFC 5321 replies, RFC 3207 STARTTLS) whose answers the test chooses.
 */
import { spawnSync } from "node:child_process";
import * as dgram from "node:dgram";
import { mkdtempSync, readFileSync, rmSync } from "node:fs";
import * as net from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as tls from "node:tls";

export interface ZoneNode {
  A?: string[];
  MX?: [number, string][];
  TXT?: string[];
  PTR?: string[];
}
/** Owner name (lowercase, no trailing dot) → records. */
export type Zone = Record<string, ZoneNode>;

const TYPES: Record<number, keyof ZoneNode> = { 1: "A", 15: "MX", 16: "TXT", 12: "PTR" };

function encodeName(name: string): Buffer {
  return Buffer.concat([
    ...name
      .split(".")
      .filter(Boolean)
      .map((l) => Buffer.concat([Buffer.from([l.length]), Buffer.from(l)])),
    Buffer.from([0]),
  ]);
}

function rdata(type: keyof ZoneNode, value: string | [number, string]): Buffer {
  if (type === "A") return Buffer.from((value as string).split(".").map(Number));
  if (type === "MX") {
    const [pref, host] = value as [number, string];
    const p = Buffer.alloc(2);
    p.writeUInt16BE(pref);
    return Buffer.concat([p, encodeName(host)]);
  }
  if (type === "PTR") return encodeName(value as string);
  // TXT: character-strings of at most 255 bytes each.
  const text = Buffer.from(value as string);
  const parts: Buffer[] = [];
  for (let i = 0; i < text.length; i += 255) {
    const chunk = text.subarray(i, i + 255);
    parts.push(Buffer.from([chunk.length]), chunk);
  }
  return Buffer.concat(parts);
}

export function answer(query: Buffer, zone: Zone): Buffer {
  let off = 12;
  const labels: string[] = [];
  while (query[off] !== 0) {
    labels.push(query.subarray(off + 1, off + 1 + query[off]).toString());
    off += query[off] + 1;
  }
  const question = query.subarray(12, off + 5);
  const qtype = query.readUInt16BE(off + 1);
  const node = zone[labels.join(".").toLowerCase()];
  const type = TYPES[qtype];
  const values = (node && type ? (node[type] ?? []) : []) as (string | [number, string])[];
  const header = Buffer.alloc(12);
  header.writeUInt16BE(query.readUInt16BE(0), 0);
  // QR, AA, RD copied; RCODE 3 (NXDOMAIN) for an unknown name.
  header.writeUInt16BE(0x8400 | (query.readUInt16BE(2) & 0x0100) | (node ? 0 : 3), 2);
  header.writeUInt16BE(1, 4);
  header.writeUInt16BE(values.length, 6);
  const answers = values.map((v) => {
    const data = rdata(type, v);
    const fixed = Buffer.alloc(12);
    fixed.writeUInt16BE(0xc00c, 0);
    fixed.writeUInt16BE(qtype, 2);
    fixed.writeUInt16BE(1, 4);
    fixed.writeUInt32BE(300, 6);
    fixed.writeUInt16BE(data.length, 10);
    return Buffer.concat([fixed, data]);
  });
  return Buffer.concat([header, question, ...answers]);
}

export interface FakeDns {
  server: string;
  zone: Zone;
  /** Names asked, in order. */
  asked: string[];
  close(): Promise<void>;
}

export async function startDns(zone: Zone): Promise<FakeDns> {
  const asked: string[] = [];
  const record = (q: Buffer) => {
    let off = 12;
    const labels: string[] = [];
    while (q[off] !== 0) {
      labels.push(q.subarray(off + 1, off + 1 + q[off]).toString());
      off += q[off] + 1;
    }
    asked.push(labels.join("."));
  };
  const tcp = net.createServer((s) => {
    let buf = Buffer.alloc(0);
    s.on("data", (c) => {
      buf = Buffer.concat([buf, c]);
      while (buf.length >= 2 && buf.length >= 2 + buf.readUInt16BE(0)) {
        const q = buf.subarray(2, 2 + buf.readUInt16BE(0));
        buf = buf.subarray(2 + q.length);
        record(q);
        const a = answer(q, zone);
        const len = Buffer.alloc(2);
        len.writeUInt16BE(a.length);
        s.write(Buffer.concat([len, a]));
      }
    });
    s.on("error", () => undefined);
  });
  await new Promise<void>((r) => tcp.listen(0, "127.0.0.1", r));
  const port = (tcp.address() as net.AddressInfo).port;
  const udp = dgram.createSocket("udp4");
  udp.on("message", (q, from) => {
    record(q);
    udp.send(answer(q, zone), from.port, from.address);
  });
  await new Promise<void>((r) => udp.bind(port, "127.0.0.1", r));
  return {
    server: `127.0.0.1:${port}`,
    zone,
    asked,
    close: () => new Promise<void>((r) => udp.close(() => tcp.close(() => r()))),
  };
}

export interface Certificate {
  key: string;
  cert: string;
}

/** A self-signed certificate for `names` from openssl (the first name is the CN). */
export function selfSigned(names: string[], days = 30): Certificate {
  const dir = mkdtempSync(join(tmpdir(), "doctor-cert-"));
  try {
    const r = spawnSync(
      "openssl",
      [
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        join(dir, "key.pem"),
        "-out",
        join(dir, "cert.pem"),
        "-days",
        String(days),
        "-subj",
        `/CN=${names[0]}`,
        "-addext",
        `subjectAltName=${names.map((n) => `DNS:${n}`).join(",")}`,
      ],
      { encoding: "utf8" },
    );
    if (r.status !== 0) throw new Error(`openssl: ${r.stderr}`);
    return { key: readFileSync(join(dir, "key.pem"), "utf8"), cert: readFileSync(join(dir, "cert.pem"), "utf8") };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export interface FakeSmtpOptions {
  /** The name in the 220 banner and the EHLO reply. */
  name: string;
  ehloName?: string;
  /** Offer STARTTLS with this certificate. */
  starttls?: Certificate;
  /** Implicit TLS (port 465 style). */
  implicitTls?: Certificate;
  /** Reply to every RCPT TO. */
  rcptReply?: string;
}

export interface FakeSmtp {
  port: number;
  /** Every command line received (AUTH lines included, to prove nothing leaks elsewhere). */
  commands: string[];
  close(): Promise<void>;
}

export async function startSmtp(o: FakeSmtpOptions): Promise<FakeSmtp> {
  const commands: string[] = [];
  const sockets = new Set<net.Socket>();
  const serve = (socket: net.Socket, greet: boolean) => {
    const say = (l: string) => socket.write(`${l}\r\n`);
    if (greet) say(`220 ${o.name} ESMTP fake`);
    let buf = "";
    const onData = (c: Buffer) => {
      buf += c.toString();
      let nl: number;
      while ((nl = buf.indexOf("\n")) >= 0) {
        const line = buf.slice(0, nl).replace(/\r$/, "");
        buf = buf.slice(nl + 1);
        commands.push(line);
        const verb = line.slice(0, 4).toUpperCase();
        if (verb === "EHLO") {
          say(`250-${o.ehloName ?? o.name}`);
          if (o.starttls && !(socket instanceof tls.TLSSocket)) say("250-STARTTLS");
          say("250 8BITMIME");
        } else if (verb === "STAR" && o.starttls) {
          say("220 go ahead");
          socket.off("data", onData);
          const secure = new tls.TLSSocket(socket, { isServer: true, key: o.starttls.key, cert: o.starttls.cert });
          secure.on("error", () => undefined);
          serve(secure, false);
          return;
        } else if (verb === "MAIL" || verb === "RSET" || verb === "NOOP") say("250 ok");
        else if (verb === "RCPT") say(o.rcptReply ?? "554 5.7.1 Relay access denied");
        else if (verb === "QUIT") {
          say("221 bye");
          socket.end();
        } else say("502 not implemented");
      }
    };
    socket.on("data", onData);
  };
  const onConnection = (s: net.Socket) => {
    sockets.add(s);
    s.on("close", () => sockets.delete(s));
    s.on("error", () => undefined);
    serve(s, true);
  };
  const server = o.implicitTls ? tls.createServer({ key: o.implicitTls.key, cert: o.implicitTls.cert }, onConnection) : net.createServer(onConnection);
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return {
    port: (server.address() as net.AddressInfo).port,
    commands,
    close: () =>
      new Promise<void>((r) => {
        for (const s of sockets) s.destroy();
        server.close(() => r());
      }),
  };
}

/** An IMAP server that only greets (for the TLS check on 993). */
export async function startImapGreeter(cert: Certificate): Promise<{ port: number; close(): Promise<void> }> {
  const server = tls.createServer({ key: cert.key, cert: cert.cert }, (s) => {
    s.on("error", () => undefined);
    s.write("* OK [CAPABILITY IMAP4rev1] fake ready\r\n");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", r));
  return { port: (server.address() as net.AddressInfo).port, close: () => new Promise<void>((r) => server.close(() => r())) };
}
