import { LineConnection, Target, TlsFacts, TlsOptions } from "./conn";

export interface SmtpReply {
  code: number;
  /** Every line's text after the code and separator. */
  lines: string[];
  text: string;
}

/** Reads one reply: `NNN-` continuation lines, then `NNN ` (RFC 5321 §4.2). */
export async function readReply(conn: LineConnection): Promise<SmtpReply> {
  const lines: string[] = [];
  for (;;) {
    const line = await conn.readLine();
    const m = /^(\d{3})([ -]?)(.*)$/.exec(line);
    if (!m) throw new Error(`not an SMTP reply: ${JSON.stringify(line.slice(0, 80))}`);
    lines.push(m[3]);
    if (m[2] !== "-") return { code: Number(m[1]), lines, text: `${m[1]} ${lines.join(" / ")}` };
  }
}

export async function command(conn: LineConnection, line: string): Promise<SmtpReply> {
  conn.write(`${line}\r\n`);
  return readReply(conn);
}

export interface SmtpGreeting {
  conn: LineConnection;
  banner: SmtpReply;
  ehlo: SmtpReply;
  /** Present when the connection is TLS now: implicit TLS, or STARTTLS done. */
  tls?: TlsFacts;
}

/**
 * Connects, reads the banner and says EHLO; with `startTls` upgrades and says EHLO again (RFC 3207 §4.2), with
 * `implicitTls` (port 465) the TLS comes first. Throws with what the server said when a step is refused.
 */
export async function smtpGreet(
  target: Target,
  ehloName: string,
  timeoutMs: number,
  tls?: { mode: "starttls" | "implicit"; options: TlsOptions },
): Promise<SmtpGreeting> {
  const { conn, tls: implicit } = await LineConnection.open(target, timeoutMs, tls?.mode === "implicit" ? tls.options : undefined);
  try {
    const banner = await readReply(conn);
    if (banner.code !== 220) throw new Error(`banner: ${banner.text}`);
    let ehlo = await command(conn, `EHLO ${ehloName}`);
    if (ehlo.code !== 250) throw new Error(`EHLO: ${ehlo.text}`);
    if (tls?.mode !== "starttls") return { conn, banner, ehlo, tls: implicit };
    if (!ehlo.lines.some((l) => /^STARTTLS\b/i.test(l))) throw new Error("STARTTLS is not offered");
    const go = await command(conn, "STARTTLS");
    if (go.code !== 220) throw new Error(`STARTTLS: ${go.text}`);
    const facts = await conn.startTls(tls.options);
    ehlo = await command(conn, `EHLO ${ehloName}`);
    if (ehlo.code !== 250) throw new Error(`EHLO after STARTTLS: ${ehlo.text}`);
    return { conn, banner, ehlo, tls: facts };
  } catch (e) {
    conn.close();
    throw e;
  }
}

/** Ends a session politely; a server that already hung up is fine. */
export async function quit(conn: LineConnection): Promise<void> {
  await command(conn, "QUIT").catch(() => undefined);
  conn.close();
}
