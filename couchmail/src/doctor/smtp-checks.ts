import { isIP } from "node:net";
import { LineConnection, Target, TlsFacts, TlsOptions } from "./conn";
import { CheckResult, fail, pass, warn } from "./report";
import { DoctorResolver, describeEmpty } from "./resolver";
import { command, quit, smtpGreet } from "./smtp";

const CERT_WARN_DAYS = 14;
const DAY_MS = 24 * 3600 * 1000;

/**
 * A certificate as a client sees it: chain (against the system's CAs and any --ca), name, expiry. Expiry is
 * judged first, so an expired certificate reads as expired rather than as the handshake's generic error.
 */
export function judgeCertificate(check: string, facts: TlsFacts, hostname: string, now: Date): CheckResult {
  const fix = `install a certificate for ${hostname} from a CA mail clients trust (tlsMode acme), or give --ca FILE when you use your own CA`;
  const cert = facts.certificate;
  if (!cert) return fail(check, "the server sent no certificate", fix);
  const validTo = new Date(cert.validTo);
  const days = Math.floor((validTo.getTime() - now.getTime()) / DAY_MS);
  const names = cert.subjectAltName ?? cert.subject;
  if (validTo <= now)
    return fail(check, `expired on ${validTo.toISOString().slice(0, 10)} (${names})`, "renew it: check the certificate issuer (cert-manager) and its logs");
  if (new Date(cert.validFrom) > now) return fail(check, `not valid before ${new Date(cert.validFrom).toISOString()}`, fix);
  if (!facts.authorized) return fail(check, `${facts.authorizationError ?? "not trusted"} (${names})`, fix);
  if (days < CERT_WARN_DAYS)
    return warn(
      check,
      `expires in ${days} days (${validTo.toISOString().slice(0, 10)}); renewal should have happened by now`,
      "check the certificate issuer (cert-manager) and its logs",
    );
  return pass(check, `${facts.protocol}, trusted, ${names}, expires in ${days} days`);
}

export interface TlsEndpoint {
  name: string;
  target: Target;
  kind: "smtp-starttls" | "smtp-implicit" | "imap-implicit";
}

/** The TLS offered on one port, judged. */
export async function checkTlsEndpoint(endpoint: TlsEndpoint, tls: TlsOptions, ehloName: string, timeoutMs: number, now: Date): Promise<CheckResult> {
  const mode = endpoint.kind === "smtp-starttls" ? "STARTTLS" : "TLS";
  const check = `${mode} ${endpoint.name} ${endpoint.target.port}`;
  let facts: TlsFacts | undefined;
  try {
    if (endpoint.kind === "imap-implicit") {
      const { conn, tls: f } = await LineConnection.open(endpoint.target, timeoutMs, tls);
      try {
        const greeting = await conn.readLine();
        if (!/^\* (OK|PREAUTH)/.test(greeting)) throw new Error(`IMAP greeting: ${greeting.slice(0, 80)}`);
      } finally {
        conn.close();
      }
      facts = f;
    } else {
      const session = await smtpGreet(endpoint.target, ehloName, timeoutMs, {
        mode: endpoint.kind === "smtp-starttls" ? "starttls" : "implicit",
        options: tls,
      });
      await quit(session.conn);
      facts = session.tls;
    }
  } catch (e) {
    return fail(
      check,
      `${endpoint.target.host}:${endpoint.target.port}: ${(e as Error).message}`,
      `check that ${endpoint.name} is reachable from the internet and offers ${mode}`,
    );
  }
  return judgeCertificate(check, facts!, tls.servername, now);
}

/** The banner and EHLO name of port 25 against the mail host name (what receivers and our own HELO show). */
export async function checkBannerName(target: Target, hostname: string, ehloName: string, timeoutMs: number): Promise<CheckResult> {
  const check = `SMTP banner ${target.port}`;
  const fix = `set Postfix's myhostname to ${hostname} (the stack's mailHostname)`;
  try {
    const { conn, banner, ehlo } = await smtpGreet(target, ehloName, timeoutMs);
    await quit(conn);
    const bannerName = (banner.lines[0] ?? "").split(/\s+/)[0].toLowerCase();
    const ehloHost = (ehlo.lines[0] ?? "").split(/\s+/)[0].toLowerCase();
    if (bannerName !== hostname || ehloHost !== hostname) return fail(check, `banner says "${bannerName}", EHLO says "${ehloHost}"; expected ${hostname}`, fix);
    return pass(check, `banner and EHLO name ${hostname}`);
  } catch (e) {
    return fail(
      check,
      `${target.host}:${target.port}: ${(e as Error).message}`,
      `make port 25 of ${hostname} reachable from the internet (edge Service / firewall)`,
    );
  }
}

/**
 * An open-relay probe as a stranger: MAIL FROM and RCPT TO both foreign, no authentication. A 5xx for the
 * recipient is a pass, a 2xx a failure; a 4xx proves nothing (greylisting, a busy server) and is a warning. The
 * transaction never reaches DATA.
 */
export async function checkOpenRelay(target: Target, from: string, to: string, ehloName: string, timeoutMs: number): Promise<CheckResult> {
  const check = `open relay ${target.port}`;
  try {
    const { conn } = await smtpGreet(target, ehloName, timeoutMs);
    try {
      const mail = await command(conn, `MAIL FROM:<${from}>`);
      if (mail.code >= 500) return pass(check, `refused MAIL FROM:<${from}>: ${mail.text}`);
      if (mail.code >= 400) return warn(check, `MAIL FROM:<${from}> deferred: ${mail.text}`, "run the doctor again later");
      const rcpt = await command(conn, `RCPT TO:<${to}>`);
      await command(conn, "RSET").catch(() => undefined);
      if (rcpt.code >= 500) return pass(check, `refused <${from}> → <${to}>: ${rcpt.text}`);
      if (rcpt.code >= 400) return warn(check, `deferred <${from}> → <${to}>: ${rcpt.text}; inconclusive`, "run the doctor again later");
      return fail(
        check,
        `ACCEPTED <${from}> → <${to}> without authentication: ${rcpt.text}`,
        "keep reject_unauth_destination in Postfix's smtpd_relay_restrictions and remove the network from mynetworks",
      );
    } finally {
      await quit(conn);
    }
  } catch (e) {
    return warn(check, `${target.host}:${target.port}: ${(e as Error).message}`, "port 25 must be reachable for this probe");
  }
}

/** Addresses receivers never see: RFC 1918, CGNAT, loopback, link-local, unspecified, IPv6 loopback/link-local/ULA. */
export function isPrivateAddress(ip: string): boolean {
  if (isIP(ip) === 4) {
    const [a, b] = ip.split(".").map(Number);
    return (
      a === 10 ||
      a === 127 ||
      a === 0 ||
      (a === 172 && b >= 16 && b < 32) ||
      (a === 192 && b === 168) ||
      (a === 100 && b >= 64 && b < 128) ||
      (a === 169 && b === 254)
    );
  }
  return /^(::1?$|fe[89ab]|f[cd])/i.test(ip);
}

const PRIVATE_FIX = "give --outbound-address with the public address mail leaves the cluster from";

/** PTR of the address mail leaves from must name the mail host, and the name must lead back (FCrDNS). */
export async function checkPtr(resolver: DoctorResolver, address: string, hostname: string): Promise<CheckResult> {
  const check = `PTR ${address}`;
  if (isPrivateAddress(address)) return warn(check, `${address} is a private address: receivers see another one, whose PTR this cannot check`, PRIVATE_FIX);
  const fix = `ask the owner of ${address} (your cloud provider) to set its reverse DNS (PTR) to ${hostname}`;
  const got = await resolver.ptr(address);
  if (got.kind !== "records" || !got.records.length)
    return fail(check, `${describeEmpty(got)}: many receivers refuse mail from addresses without reverse DNS`, fix);
  const names = got.records.map((n) => n.toLowerCase().replace(/\.$/, ""));
  if (!names.includes(hostname)) return fail(check, `names ${names.join(", ")}, not ${hostname} (our HELO name)`, fix);
  const forward = await resolver.a(hostname);
  if (forward.kind !== "records" || !forward.records.includes(address))
    return warn(check, `${hostname} does not resolve back to ${address}`, `publish ${hostname}. A ${address}`);
  return pass(check, `${hostname}, and back`);
}

/**
 * One line per address, each list queried as `<reversed address>.<zone>` (RFC 5782 §2.1). Answers in 127.255.255.0/24 are the list refusing the query (Spamhaus: 127.255.255.254
 * "query via public/open resolver", .255 "excessive number of queries" — spamhaus.org/news/article/788), not a
 * listing: reported as unknown.
 */
export async function checkDnsbl(resolver: DoctorResolver, address: string, zones: string[]): Promise<CheckResult> {
  const check = `DNSBL ${address}`;
  if (isPrivateAddress(address)) return warn(check, `${address} is a private address: lists hold public ones only`, PRIVATE_FIX);
  if (isIP(address) !== 4) return warn(check, "IPv6 listing not checked", "check the address by hand at the lists' lookup pages");
  const reversed = address.split(".").reverse().join(".");
  const listed: string[] = [];
  const unknown: string[] = [];
  for (const zone of zones) {
    const got = await resolver.a(`${reversed}.${zone}`);
    if (got.kind === "nxdomain" || got.kind === "nodata") continue;
    if (got.kind === "error") unknown.push(`${zone} (${got.message})`);
    else if (got.records.every((r) => r.startsWith("127.255.255.")))
      unknown.push(`${zone} refused the query (${got.records.join(", ")}: e.g. asked through a public resolver)`);
    else listed.push(`${zone} (${got.records.join(", ")})`);
  }
  if (listed.length)
    return fail(
      check,
      `listed on ${listed.join(", ")}`,
      "find the cause (an open relay, a compromised account), fix it, then request delisting at each list's removal page",
    );
  if (unknown.length)
    return warn(
      check,
      `not listed on ${zones.length - unknown.length} of ${zones.length}; unknown: ${unknown.join("; ")}`,
      "run the doctor with --resolver pointing at your own recursive resolver",
    );
  return pass(check, `not listed on ${zones.join(", ")}`);
}

/**
 * Whether mail can leave: a relay configured (the stack's warnings say when the provider blocks port 25 and none
 * is), or a TCP connection to port 25 of a foreign MX from where the doctor runs.
 */
export async function checkOutbound(stackWarnings: string[], probe: Target | undefined, relay: Target | undefined, timeoutMs: number): Promise<CheckResult> {
  const check = "outbound port 25";
  const blocked = stackWarnings.find((w) => /outbound port 25/.test(w));
  if (blocked) return fail(check, blocked, "set relayHost, relayUsername and relayPassword (a smarthost on 587/465)");
  const target = relay ?? probe;
  if (!target) return warn(check, "no probe target", "give --outbound-probe HOST[:PORT] (an MX outside your network)");
  const what = relay ? `relay ${target.host}:${target.port}` : `${target.host}:${target.port} from here`;
  try {
    const { conn, banner } = await smtpGreet(target, "doctor.invalid", timeoutMs);
    await quit(conn);
    return pass(check, `${what}: ${banner.text.slice(0, 60)}`);
  } catch (e) {
    return fail(
      check,
      `${what}: ${(e as Error).message}`,
      relay ? "check relayHost and relayPort" : "ask your provider to open outbound port 25, or configure relayHost (a smarthost)",
    );
  }
}
