import * as net from "node:net";
import * as tls from "node:tls";
import { sleepUntilWoken } from "../sleep";

export interface Target {
  host: string;
  port: number;
}

export interface TlsFacts {
  authorized: boolean;
  authorizationError?: string;
  certificate?: import("node:crypto").X509Certificate;
  protocol: string | null;
}

export interface TlsOptions {
  /** Name the certificate must carry (SNI too). */
  servername: string;
  /** Extra trusted CA certificates (PEM), e.g. a self-signed stack's. */
  ca?: string;
}

/**
 * A line-oriented client connection (SMTP, IMAP) where every read and the connect itself have a deadline. The
 * certificate is never enforced at the handshake: it is read and judged afterwards, so a bad one is reported
 * instead of hiding what comes after it. Nothing here logs what is sent.
 */
export class LineConnection {
  private buffer = Buffer.alloc(0);
  private waiter?: () => void;
  private closed?: Error;

  private constructor(
    private socket: net.Socket,
    private readonly timeoutMs: number,
  ) {
    this.listen(socket);
  }

  static async open(target: Target, timeoutMs: number, implicitTls?: TlsOptions): Promise<{ conn: LineConnection; tls?: TlsFacts }> {
    const socket = net.connect({ host: target.host, port: target.port });
    await withDeadline(
      new Promise<void>((resolve, reject) => {
        socket.once("connect", resolve);
        socket.once("error", reject);
      }),
      timeoutMs,
      `connect to ${target.host}:${target.port}`,
      () => socket.destroy(),
    );
    socket.removeAllListeners("error");
    if (!implicitTls) return { conn: new LineConnection(socket, timeoutMs) };
    const { secure, facts } = await handshake(socket, implicitTls, timeoutMs);
    return { conn: new LineConnection(secure, timeoutMs), tls: facts };
  }

  private listen(socket: net.Socket): void {
    socket.on("data", (chunk: Buffer) => {
      this.buffer = Buffer.concat([this.buffer, chunk]);
      this.waiter?.();
    });
    const end = (e?: Error) => {
      this.closed ??= e ?? new Error("connection closed by the server");
      this.waiter?.();
    };
    socket.on("error", end);
    socket.on("close", () => end());
  }

  /** Waits for `n` bytes (or a line when `n` is undefined) and takes it from the buffer. */
  private async take(n?: number): Promise<Buffer> {
    const deadline = Date.now() + this.timeoutMs;
    for (;;) {
      const end = n === undefined ? this.buffer.indexOf("\n") + 1 : this.buffer.length >= n ? n : 0;
      if (end > 0) {
        const out = this.buffer.subarray(0, end);
        this.buffer = this.buffer.subarray(end);
        return out;
      }
      if (this.closed) throw this.closed;
      const left = deadline - Date.now();
      if (left <= 0) throw new Error(`no answer within ${this.timeoutMs} ms`);
      await sleepUntilWoken(left, (wake) => (this.waiter = wake));
      this.waiter = undefined;
    }
  }

  async readLine(): Promise<string> {
    return (await this.take()).toString("utf8").replace(/\r?\n$/, "");
  }

  readBytes(n: number): Promise<Buffer> {
    return this.take(n);
  }

  write(text: string | Buffer): void {
    this.socket.write(text);
  }

  /** Upgrades the connection in place after the server agreed to STARTTLS. */
  async startTls(options: TlsOptions): Promise<TlsFacts> {
    this.socket.removeAllListeners("data");
    this.socket.removeAllListeners("error");
    this.socket.removeAllListeners("close");
    const { secure, facts } = await handshake(this.socket, options, this.timeoutMs);
    this.socket = secure;
    this.buffer = Buffer.alloc(0);
    this.listen(secure);
    return facts;
  }

  close(): void {
    this.socket.destroy();
  }
}

/** OpenSSL's and Node's verification codes, in words. */
const TLS_ERRORS: Record<string, (name: string) => string> = {
  DEPTH_ZERO_SELF_SIGNED_CERT: () => "the certificate is self-signed",
  SELF_SIGNED_CERT_IN_CHAIN: () => "the chain ends in a CA nobody trusts",
  UNABLE_TO_VERIFY_LEAF_SIGNATURE: () => "the issuer is unknown (intermediate certificate missing?)",
  UNABLE_TO_GET_ISSUER_CERT_LOCALLY: () => "the issuer is unknown (intermediate certificate missing?)",
  CERT_HAS_EXPIRED: () => "the certificate has expired",
  ERR_TLS_CERT_ALTNAME_INVALID: (name) => `the certificate does not name ${name}`,
};

async function handshake(socket: net.Socket, options: TlsOptions, timeoutMs: number): Promise<{ secure: tls.TLSSocket; facts: TlsFacts }> {
  return withDeadline(
    new Promise((resolve, reject) => {
      const secure = tls.connect({
        socket,
        servername: options.servername,
        rejectUnauthorized: false,
        ...(options.ca ? { ca: [...tls.rootCertificates, options.ca] } : {}),
      });
      secure.once("error", (e: Error) => {
        socket.destroy();
        reject(e);
      });
      // With rejectUnauthorized false, Node still verifies chain and name (tls.checkServerIdentity against
      // servername) and records the first error's code in authorizationError (node lib/_tls_wrap.js onConnectSecure).
      secure.once("secureConnect", () => {
        secure.removeAllListeners("error");
        const code = secure.authorizationError ? String(secure.authorizationError) : undefined;
        resolve({
          secure,
          facts: {
            authorized: secure.authorized,
            authorizationError: code && `${code}${TLS_ERRORS[code] ? `: ${TLS_ERRORS[code](options.servername)}` : ""}`,
            certificate: secure.getPeerX509Certificate(),
            protocol: secure.getProtocol(),
          },
        });
      });
    }),
    timeoutMs,
    "TLS handshake",
    () => socket.destroy(),
  );
}

async function withDeadline<T>(promise: Promise<T>, ms: number, what: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  try {
    return await Promise.race([
      promise,
      new Promise<never>((_, reject) => {
        timer = setTimeout(() => {
          onTimeout?.();
          reject(new Error(`${what}: no answer within ${ms} ms`));
        }, ms);
      }),
    ]);
  } finally {
    clearTimeout(timer);
  }
}
