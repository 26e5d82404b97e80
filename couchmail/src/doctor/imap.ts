import { LineConnection, Target, TlsFacts, TlsOptions } from "./conn";

export interface ImapResponse {
  /** Untagged responses, each with its literals (`{n}` + n bytes) inlined. */
  untagged: Buffer[];
  status: string;
}

/**
 * The few IMAP4rev1 commands the round trip needs (RFC 3501): AUTHENTICATE PLAIN, SELECT, UID SEARCH, UID FETCH,
 * UID STORE, UID EXPUNGE (RFC 4315), LOGOUT — over implicit TLS.
 */
export class ImapClient {
  private tag = 0;

  private constructor(
    private readonly conn: LineConnection,
    readonly tls: TlsFacts | undefined,
  ) {}

  static async open(target: Target, tls: TlsOptions, timeoutMs: number): Promise<ImapClient> {
    const { conn, tls: facts } = await LineConnection.open(target, timeoutMs, tls);
    const greeting = await conn.readLine();
    if (!/^\* OK/i.test(greeting)) {
      conn.close();
      throw new Error(`IMAP greeting: ${greeting.slice(0, 80)}`);
    }
    return new ImapClient(conn, facts);
  }

  /** One response line with its literals inlined. */
  private async readResponse(): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      const line = Buffer.from(`${await this.conn.readLine()}\r\n`);
      parts.push(line);
      const literal = /\{(\d+)\}\r\n$/.exec(line.toString("latin1"));
      if (!literal) return Buffer.concat(parts);
      parts.push(await this.conn.readBytes(Number(literal[1])));
    }
  }

  /** Sends a command; `continuation` answers a `+` request (SASL). Throws unless the status is OK. */
  async run(cmd: string, continuation?: string): Promise<ImapResponse> {
    const tag = `d${++this.tag}`;
    this.conn.write(`${tag} ${cmd}\r\n`);
    const untagged: Buffer[] = [];
    for (;;) {
      const resp = await this.readResponse();
      const text = resp.toString("latin1");
      if (text.startsWith("+")) {
        this.conn.write(`${continuation ?? "*"}\r\n`);
        continue;
      }
      if (text.startsWith(`${tag} `)) {
        const status = text.slice(tag.length + 1).trim();
        // Only the verb goes into errors: the command may carry credentials.
        if (!/^OK\b/i.test(status)) throw new Error(`IMAP ${cmd.split(" ")[0]}${cmd.startsWith("UID") ? ` ${cmd.split(" ")[1]}` : ""}: ${status}`);
        return { untagged, status };
      }
      untagged.push(resp);
    }
  }

  async login(user: string, password: string): Promise<void> {
    await this.run("AUTHENTICATE PLAIN", Buffer.from(`\0${user}\0${password}`, "utf8").toString("base64"));
  }

  /** UIDs in `mailbox` whose Subject contains `text`; the mailbox stays selected. */
  async searchSubject(mailbox: string, text: string): Promise<number[]> {
    await this.run(`SELECT ${quote(mailbox)}`);
    const r = await this.run(`UID SEARCH HEADER Subject ${quote(text)}`);
    return r.untagged
      .map((b) => b.toString("latin1"))
      .filter((l) => /^\* SEARCH/i.test(l))
      .flatMap((l) =>
        l
          .replace(/^\* SEARCH/i, "")
          .trim()
          .split(/\s+/),
      )
      .filter(Boolean)
      .map(Number);
  }

  async fetchMessage(uid: number): Promise<Buffer> {
    const r = await this.run(`UID FETCH ${uid} BODY.PEEK[]`);
    for (const resp of r.untagged) {
      const head = resp.toString("latin1");
      const m = /BODY\[\] \{(\d+)\}\r\n/.exec(head);
      if (m) return resp.subarray(m.index + m[0].length, m.index + m[0].length + Number(m[1]));
    }
    throw new Error(`IMAP FETCH of UID ${uid} returned no message`);
  }

  async remove(uid: number): Promise<void> {
    await this.run(`UID STORE ${uid} +FLAGS.SILENT (\\Deleted)`);
    await this.run(`UID EXPUNGE ${uid}`);
  }

  async logout(): Promise<void> {
    await this.run("LOGOUT").catch(() => undefined);
    this.conn.close();
  }
}

/** An IMAP quoted string (RFC 3501 §4.3): backslash and double quote escaped; CR/LF are not allowed. */
export function quote(text: string): string {
  if (/[\r\n]/.test(text)) throw new Error("IMAP quoted strings cannot hold CR or LF");
  return `"${text.replace(/[\\"]/g, "\\$&")}"`;
}
