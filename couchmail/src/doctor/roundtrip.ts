import { randomBytes } from "node:crypto";
import { authenticate } from "mailauth";
import { Target, TlsOptions } from "./conn";
import { ImapClient } from "./imap";
import { CheckResult, fail, pass, warn } from "./report";
import { DoctorResolver } from "./resolver";
import { command, quit, smtpGreet } from "./smtp";

export interface RoundTripOptions {
  user: string;
  password: string;
  /** Recipient mailbox (default: the user's own), fetched with the same credentials. */
  submission: Target;
  imaps: Target;
  tls: TlsOptions;
  ehloName: string;
  /** What a receiver would see: the address mail leaves from and our HELO name. */
  outboundAddress: string;
  hostname: string;
  resolver: DoctorResolver;
  timeoutMs: number;
  /** How long to wait for the message to arrive. */
  arrivalMs: number;
}

/**
 * The message's authentication as a receiver would judge it on arrival from `ip` (SPF of the envelope sender, the
 * DKIM signatures with the keys in DNS, DMARC alignment), computed by mailauth with the doctor's resolver.
 */
export async function judgeArrival(
  message: Buffer,
  opts: { ip: string; helo: string; sender: string; resolver: DoctorResolver["forMailauth"] },
): Promise<CheckResult[]> {
  const auth = await authenticate(message, {
    ip: opts.ip,
    helo: opts.helo,
    sender: opts.sender,
    mta: "couchmail-doctor",
    resolver: opts.resolver,
    disableArc: true,
    disableBimi: true,
  });
  const domain = opts.sender.split("@")[1].toLowerCase();
  const results: CheckResult[] = [];
  const dkim = auth.dkim.results.find((r) => r.signingDomain?.toLowerCase() === domain);
  const others = auth.dkim.results.map((r) => `${r.signingDomain}: ${r.status.result}`).join(", ") || "no signature";
  if (dkim?.status.result === "pass") results.push(pass("arrival DKIM", `d=${domain} s=${dkim.selector} pass`));
  else
    results.push(
      fail(
        "arrival DKIM",
        dkim ? `d=${domain}: ${dkim.status.result}${dkim.status.comment ? ` (${dkim.status.comment})` : ""}` : `no signature for ${domain} (${others})`,
        "OpenDKIM must sign submitted mail with the key published in DNS (see the DKIM line above)",
      ),
    );
  const spf = auth.spf ? auth.spf.status : undefined;
  if (spf && spf.result === "pass") results.push(pass("arrival SPF", `${opts.sender} from ${opts.ip}: pass`));
  else
    results.push(
      fail(
        "arrival SPF",
        `${opts.sender} from ${opts.ip}: ${spf ? spf.result : "not evaluated"}${spf?.comment ? ` (${spf.comment})` : ""}`,
        "the SPF record must allow the address mail leaves from (see the SPF line above)",
      ),
    );
  const dmarc = auth.dmarc ? auth.dmarc.status : undefined;
  if (dmarc && dmarc.result === "pass") results.push(pass("arrival DMARC", `header.from=${domain}: pass`));
  else
    results.push(
      fail(
        "arrival DMARC",
        `header.from=${domain}: ${dmarc ? dmarc.result : "not evaluated"}${dmarc?.comment ? ` (${dmarc.comment})` : ""}`,
        "DMARC needs an aligned DKIM pass or SPF pass (see the lines above)",
      ),
    );
  return results;
}

function testMessage(user: string, token: string, hostname: string): string {
  return [
    `From: <${user}>`,
    `To: <${user}>`,
    `Subject: couchmail doctor ${token}`,
    `Date: ${new Date().toUTCString().replace("GMT", "+0000")}`,
    `Message-ID: <${token}@${hostname}>`,
    "MIME-Version: 1.0",
    "Content-Type: text/plain; charset=utf-8",
    "",
    "Sent by couchmail doctor to check delivery and authentication; it deletes this message once read.",
    "",
  ].join("\r\n");
}

/** Submits a message to the user's own mailbox, fetches it over IMAP, judges its authentication, deletes it. */
export async function roundTrip(o: RoundTripOptions): Promise<CheckResult[]> {
  const check = "round trip";
  const untrusted = (where: string, why: unknown) => [
    fail(check, `${where}: certificate not trusted (${String(why)}); the password was not sent`, "fix the TLS lines above, or give --ca FILE"),
  ];
  const token = `rt-${randomBytes(6).toString("hex")}`;
  const sent = Date.now();
  try {
    const session = await smtpGreet(o.submission, o.ehloName, o.timeoutMs, { mode: "starttls", options: o.tls });
    try {
      // The password goes only over a connection whose certificate checked out.
      if (!session.tls?.authorized) return untrusted(`submission ${o.submission.port}`, session.tls?.authorizationError);
      const auth = await command(session.conn, `AUTH PLAIN ${Buffer.from(`\0${o.user}\0${o.password}`, "utf8").toString("base64")}`);
      if (auth.code !== 235) return [fail(check, `submission AUTH: ${auth.text}`, `check the credentials of ${o.user}`)];
      for (const [verb, want] of [
        [`MAIL FROM:<${o.user}>`, 250],
        [`RCPT TO:<${o.user}>`, 250],
        ["DATA", 354],
      ] as const) {
        const r = await command(session.conn, verb);
        if (r.code !== want) return [fail(check, `submission ${verb.split(":")[0]}: ${r.text}`, "see the server's reply")];
      }
      const done = await command(session.conn, `${testMessage(o.user, token, o.hostname)}.`);
      if (done.code !== 250) return [fail(check, `submission end of DATA: ${done.text}`, "see the server's reply")];
    } finally {
      await quit(session.conn);
    }
  } catch (e) {
    return [
      fail(check, `submission ${o.submission.host}:${o.submission.port}: ${(e as Error).message}`, "check that port 587 is reachable and offers STARTTLS"),
    ];
  }
  const imap = await ImapClient.open(o.imaps, o.tls, o.timeoutMs).catch((e: Error) => e);
  if (imap instanceof Error) return [fail(check, `IMAP ${o.imaps.host}:${o.imaps.port}: ${imap.message}`, "check that port 993 is reachable")];
  try {
    if (!imap.tls?.authorized) return untrusted(`IMAP ${o.imaps.port}`, imap.tls?.authorizationError);
    await imap.login(o.user, o.password);
    const deadline = Date.now() + o.arrivalMs;
    for (;;) {
      for (const folder of ["INBOX", "Junk"]) {
        const [uid] = await imap.searchSubject(folder, token);
        if (uid === undefined) continue;
        const message = await imap.fetchMessage(uid);
        await imap.remove(uid);
        const seconds = ((Date.now() - sent) / 1000).toFixed(1);
        const delivered =
          folder === "INBOX"
            ? pass(check, `submitted on ${o.submission.port}, in INBOX after ${seconds} s`)
            : warn(
                check,
                `submitted on ${o.submission.port}, filed into ${folder} after ${seconds} s`,
                "our own mail scored as spam: check SpamAssassin's report headers in the message",
              );
        return [delivered, ...(await judgeArrival(message, { ip: o.outboundAddress, helo: o.hostname, sender: o.user, resolver: o.resolver.forMailauth }))];
      }
      if (Date.now() > deadline)
        return [fail(check, `submitted, but not in INBOX or Junk after ${o.arrivalMs / 1000} s`, "check Postfix's queue (postqueue -p) and logs")];
      await new Promise((r) => setTimeout(r, 1000));
    }
  } catch (e) {
    return [fail(check, (e as Error).message, `check the credentials of ${o.user} and Dovecot's logs`)];
  } finally {
    await imap.logout();
  }
}
