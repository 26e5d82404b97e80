// The mail clients the e2e suites share: the couchmail CLI in the Dovecot pod, inbound SMTP as an external MTA sends
// it (greylisting retried), authenticated submission, and IMAP through Python's imaplib — all from the pseudo-internet.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import assert from "node:assert/strict";
import { GREYLIST_DELAY_SECONDS } from "./program";
import { execIn, run, stack, waitFor } from "./suite";

const ep = stack.endpoints;
const HOST = stack.hostname;
export const CLIENTS = path.join(__dirname, "clients.py");
/** The couchmail CLI in the Dovecot pod's sidecar, as the program's addFirstUser output says (kubectl exec). */
export function couchmail(args: string[], input?: string): string {
    const r = execIn("dovecot", "couchmail", ["couchmail", ...args], { input });
    assert.equal(r.code, 0, `couchmail ${args.join(" ")}: ${r.stdout}${r.stderr}`);
    return r.stdout;
}

/** Adds a domain unless an earlier suite file already did (node's test runner orders the files itself). */
export function ensureDomain(domain: string): void {
    const r = execIn("dovecot", "couchmail", ["couchmail", "domain", "add", domain]);
    assert.ok(r.code === 0 || /already exists/.test(r.stderr + r.stdout), `couchmail domain add ${domain}: ${r.stdout}${r.stderr}`);
}

export const PASSWORDS: Record<string, string> = {};
export function addUser(address: string): string {
    PASSWORDS[address] = `pw-${Math.random().toString(36).slice(2)}-${address.length}`;
    couchmail(["user", "add", address, "--password-stdin"], PASSWORDS[address] + "\n");
    return PASSWORDS[address];
}

let seq = 0;
export const uniqueSubject = (what: string) => `e2e ${what} ${process.pid}-${++seq}-${Date.now()}`;

export interface SmtpOptions {
    /** Envelope sender (also the From: header unless `headers` sets one). */
    from?: string;
    body?: string;
    /** Extra header lines, e.g. "From: A <a@example.test>". */
    headers?: string[];
}

/** swaks as an external mail server talking to port 25 (postscreen + smtpd). */
function fromOutside(to: string, from: string, args: string[]) {
    return run("swaks", ["--server", ep.smtp.host, "--port", String(ep.smtp.port), "--ehlo", "mx.external.test", "--from", from, "--to", to, ...args]);
}

/** Whether port 25 accepts a recipient: the session ends after RCPT TO, so nothing is delivered. */
export function rcptProbe(to: string) {
    return fromOutside(to, "sender@external.test", ["--quit-after", "RCPT", "--timeout", "10"]);
}

/** One inbound SMTP session on port 25 from an external sender. */
export function smtpOnce(to: string, subject: string, opts: SmtpOptions = {}) {
    return fromOutside(to, opts.from ?? "sender@external.test", [
        "--header",
        `Subject: ${subject}`,
        ...(opts.headers ?? []).flatMap((h) => ["--header", h]),
        "--body",
        opts.body ?? `body of ${subject}`,
        "--timeout",
        "30",
    ]);
}

/** Postgrey's deferral of a sender/recipient pair it has not seen (or not for long enough). */
export const greylisted = (out: string) => /<\*\* +450 4\.2\.0 .*Greylisted/.test(out);

/** Inbound as a sending MTA does it: a greylisting 450 is retried after the delay (the greylisting test checks the 450). */
export function smtpIn(to: string, subject: string, opts: SmtpOptions = {}) {
    return retryGreylisted(
        () => smtpOnce(to, subject, opts),
        (r) => greylisted(r.out),
    );
}

/** An inbound attempt repeated, as a sending MTA would, while it is greylisted (at most 3 more times, after the delay). */
export function retryGreylisted<T>(attempt: () => T, isGreylisted: (result: T) => boolean): T {
    let r = attempt();
    for (let i = 0; i < 3 && isGreylisted(r); i++) {
        spawnSync("sleep", [String(GREYLIST_DELAY_SECONDS + 1)]);
        r = attempt();
    }
    return r;
}

/** Authenticated submission with the certificate checked against the mail host name. */
export function submit(port: "submission" | "submissions", user: string, password: string, from: string, to: string, subject: string) {
    return run("swaks", [
        "--server",
        ep[port].host,
        "--port",
        String(ep[port].port),
        port === "submission" ? "--tls" : "--tlsc",
        "--tls-verify",
        "--tls-ca-path",
        stack.caFile,
        "--tls-sni",
        HOST,
        "--ehlo",
        "client.example.net",
        "--auth",
        "PLAIN",
        "--auth-user",
        user,
        "--auth-password",
        password,
        "--from",
        from,
        "--to",
        to,
        "--header",
        `Subject: ${subject}`,
        "--body",
        `body of ${subject}`,
        "--timeout",
        "30",
    ]);
}

export function imap(
    cmd: "imap-find" | "imap-list",
    user: string,
    password: string,
    text?: string,
): { login: boolean; folder?: string | null; headers?: string; folders?: { name: string; attributes: string[] }[] } {
    const r = run("/usr/bin/python3", [CLIENTS, cmd, ep.imap.host, String(ep.imap.port), stack.caFile, HOST, user, password, ...(text ? [text] : [])]);
    assert.equal(r.code, 0, r.out);
    return JSON.parse(r.out.trim().split("\n").pop()!);
}

/** Submits as `user` to an external address and waits for the message at the external MX; returns its file. */
export async function submitOutbound(user: string, subject: string): Promise<string> {
    const r = submit("submission", user, PASSWORDS[user], user, "someone@external.test", subject);
    assert.equal(r.code, 0, r.out);
    return waitFor("the message at the external MX", () => externalMessages(subject)[0], 30_000);
}

/** The messages at the external MX (the pseudo-internet's sink) whose text contains `text`. */
export function externalMessages(text: string): string[] {
    return fs
        .readdirSync(stack.externalMx.mailDir)
        .filter((f) => f.endsWith(".eml"))
        .map((f) => path.join(stack.externalMx.mailDir, f))
        .filter((f) => fs.readFileSync(f, "utf8").includes(text));
}

/** The message (by subject) in the user's mailbox over IMAP; the folder it was filed into. */
export const delivered = (user: string, subject: string, timeoutMs = 20_000) =>
    waitFor(
        `"${subject}" for ${user}`,
        () => {
            const r = imap("imap-find", user, PASSWORDS[user], subject);
            return r.folder ? r : undefined;
        },
        timeoutMs,
        500,
    );
