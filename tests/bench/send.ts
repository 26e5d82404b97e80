// The benchmark's sending side, run in the pseudo-internet's network namespace (mail.ts starts it with nsenter): a
// burst of messages over `sessions` parallel SMTP sessions, several transactions per session, as an MTA or a mail
// client sends them. Reads a SendJob (JSON) on stdin, prints one SendResult per message (JSON lines) on stdout.
import * as fs from "fs";
import * as net from "net";
import * as tls from "tls";

export interface SendJob {
    host: string;
    port: number;
    /** "plain": port 25 as an MTA sends (no TLS); "starttls": 587; "implicit": 465. */
    security: "plain" | "starttls" | "implicit";
    /** Submission's login (AUTH PLAIN over TLS); absent on port 25. */
    auth?: { user: string; password: string };
    /** The name the certificate is checked against, and its CA. */
    tlsName: string;
    caFile: string;
    from: string;
    sessions: number;
    messages: { id: string; to: string; body: string }[];
}

export interface SendResult {
    id: string;
    /** Milliseconds since the epoch: DATA's reply arrived (accepted) or the failure happened. */
    at: number;
    startedAt: number;
    /** The server's final reply to the transaction (e.g. "250 2.0.0 Ok: queued as …" or a 4xx/5xx). */
    reply: string;
    accepted: boolean;
}

type Reply = { code: number; text: string };

/** One SMTP connection: replies are read line by line; a multi-line reply ends at "NNN " (RFC 5321 §4.2.1). */
class SmtpConnection {
    private buffer = "";
    private waiting: ((r: Reply) => void) | undefined;
    private replies: Reply[] = [];
    private lines: string[] = [];
    private failure: Error | undefined;

    constructor(private socket: net.Socket | tls.TLSSocket) {
        this.attach(socket);
    }

    private attach(socket: net.Socket | tls.TLSSocket): void {
        socket.setEncoding("utf8");
        socket.on("data", (chunk: string) => this.receive(chunk));
        socket.on("error", (e) => this.fail(e));
        socket.on("close", () => this.fail(new Error("connection closed")));
        // A client's longest wait for a reply (RFC 5321 §4.5.3.2: 5 min for most commands): a hung server fails the
        // message instead of the burst.
        socket.setTimeout(300_000, () => {
            this.fail(new Error("no reply within 300 s"));
            socket.destroy();
        });
    }

    private fail(e: Error): void {
        this.failure ??= e;
        const w = this.waiting;
        this.waiting = undefined;
        w?.({ code: 0, text: this.failure.message });
    }

    private receive(chunk: string): void {
        this.buffer += chunk;
        let nl: number;
        while ((nl = this.buffer.indexOf("\n")) >= 0) {
            const line = this.buffer.slice(0, nl).replace(/\r$/, "");
            this.buffer = this.buffer.slice(nl + 1);
            this.lines.push(line);
            if (/^\d{3}(?: |$)/.test(line)) {
                this.replies.push({ code: Number(line.slice(0, 3)), text: this.lines.join("\n") });
                this.lines = [];
            }
        }
        if (this.waiting && this.replies.length) {
            const w = this.waiting;
            this.waiting = undefined;
            w(this.replies.shift()!);
        }
    }

    reply(): Promise<Reply> {
        if (this.replies.length) return Promise.resolve(this.replies.shift()!);
        if (this.failure) return Promise.resolve({ code: 0, text: this.failure.message });
        return new Promise((resolve) => (this.waiting = resolve));
    }

    async command(line: string): Promise<Reply> {
        this.socket.write(`${line}\r\n`);
        return this.reply();
    }

    /** STARTTLS: the same TCP connection wrapped in TLS, the certificate checked against the mail host name. */
    async startTls(servername: string, ca: string): Promise<void> {
        this.socket.removeAllListeners("data");
        this.socket.removeAllListeners("close");
        this.socket.removeAllListeners("error");
        const secure = tls.connect({ socket: this.socket, servername, ca });
        await new Promise<void>((resolve, reject) => {
            secure.once("secureConnect", resolve);
            secure.once("error", reject);
        });
        this.socket = secure;
        this.attach(secure);
    }

    close(): void {
        this.socket.end("QUIT\r\n");
        const socket = this.socket;
        setTimeout(() => socket.destroy(), 5000).unref();
    }
}

async function connect(job: SendJob, ca: string): Promise<SmtpConnection> {
    const socket =
        job.security === "implicit"
            ? tls.connect({ host: job.host, port: job.port, servername: job.tlsName, ca })
            : net.connect({ host: job.host, port: job.port });
    await new Promise<void>((resolve, reject) => {
        socket.once(job.security === "implicit" ? "secureConnect" : "connect", resolve);
        socket.once("error", reject);
    });
    const smtp = new SmtpConnection(socket);
    // A session refused on the way in is closed at once, so no half-open session keeps the sender alive.
    const expect = (r: Reply, code: number, what: string) => {
        if (r.code === code) return;
        smtp.close();
        throw new Error(`${what}: ${r.text}`);
    };
    expect(await smtp.reply(), 220, "greeting");
    expect(await smtp.command("EHLO bench.external.test"), 250, "EHLO");
    if (job.security === "starttls") {
        expect(await smtp.command("STARTTLS"), 220, "STARTTLS");
        await smtp.startTls(job.tlsName, ca);
        expect(await smtp.command("EHLO bench.external.test"), 250, "EHLO after STARTTLS");
    }
    if (job.auth) {
        const token = Buffer.from(`\0${job.auth.user}\0${job.auth.password}`).toString("base64");
        expect(await smtp.command(`AUTH PLAIN ${token}`), 235, "AUTH PLAIN");
    }
    return smtp;
}

/** One transaction; the message's lines are dot-stuffed (RFC 5321 §4.5.2). */
async function transaction(smtp: SmtpConnection, from: string, m: SendJob["messages"][number]): Promise<Reply> {
    for (const [line, code] of [
        [`MAIL FROM:<${from}>`, 250],
        [`RCPT TO:<${m.to}>`, 250],
        ["DATA", 354],
    ] as const) {
        const r = await smtp.command(line);
        if (r.code !== code) {
            if (r.code !== 0) await smtp.command("RSET");
            return r;
        }
    }
    const data = m.body.replace(/\r?\n/g, "\r\n").replace(/^\./gm, "..");
    return smtp.command(`${data}\r\n.`);
}

async function session(job: SendJob, queue: SendJob["messages"], ca: string, out: (r: SendResult) => void, opened?: SmtpConnection): Promise<void> {
    let smtp = opened;
    for (let m = queue.shift(); m; m = queue.shift()) {
        const startedAt = Date.now();
        try {
            smtp ??= await connect(job, ca);
            const r = await transaction(smtp, job.from, m);
            out({ id: m.id, startedAt, at: Date.now(), reply: r.text, accepted: r.code === 250 });
            if (r.code === 0 || r.code === 421) smtp = undefined;
        } catch (e) {
            out({ id: m.id, startedAt, at: Date.now(), reply: e instanceof Error ? e.message : String(e), accepted: false });
            smtp = undefined;
        }
    }
    smtp?.close();
}

async function main(): Promise<void> {
    const job = JSON.parse(fs.readFileSync(0, "utf8")) as SendJob;
    const ca = fs.readFileSync(job.caFile, "utf8");
    const queue = [...job.messages];
    const out = (r: SendResult) => process.stdout.write(JSON.stringify(r) + "\n");
    // One session logs in before the others open, as a mail client does: parallel first logins from an address the
    // account has not used yet are throttled as guesses by the auth policy (couchmail/src/policy.ts).
    let first: SmtpConnection | undefined;
    try {
        first = await connect(job, ca);
    } catch {
        // the first message's own attempt reports the failure
    }
    await Promise.all(Array.from({ length: job.sessions }, (_, i) => session(job, queue, ca, out, i === 0 ? first : undefined)));
}

main().catch((e) => {
    process.stderr.write(`send: ${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
});
