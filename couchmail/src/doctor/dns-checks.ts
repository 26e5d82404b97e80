import { createHash } from "node:crypto";
import { spf } from "mailauth";
import { Expected } from "./expect";
import { CheckResult, fail, pass, skip, warn } from "./report";
import { DoctorResolver, describeEmpty } from "./resolver";

/** `k=v; k=v` tag lists (DKIM RFC 6376 §3.2, DMARC RFC 7489 §6.4, TLS-RPT, MTA-STS) as a map, keys lowercased. */
export function parseTags(text: string): Record<string, string> {
  const tags: Record<string, string> = {};
  for (const part of text.split(";")) {
    const eq = part.indexOf("=");
    if (eq > 0) tags[part.slice(0, eq).trim().toLowerCase()] = part.slice(eq + 1).replace(/\s+/g, "");
  }
  return tags;
}

const normalise = (txt: string) =>
  txt
    .replace(/\s*;\s*/g, ";")
    .replace(/;$/, "")
    .trim()
    .toLowerCase();
const expectedValues = (expected: Expected, name: string, type: string) =>
  expected.records.filter((r) => r.name === name && r.type === type).map((r) => r.value);
const zoneLine = (name: string, type: string, value: string) => `${name}. ${type} ${type === "TXT" ? JSON.stringify(value) : value}`;

export async function checkMx(expected: Expected, resolver: DoctorResolver, domain: string): Promise<CheckResult> {
  const check = `MX ${domain}`;
  const want = expectedValues(expected, domain, "MX");
  const fix = `publish ${want.map((v) => zoneLine(domain, "MX", `${v}.`)).join(" and ")} (and remove other MX records)`;
  const got = await resolver.mx(domain);
  if (got.kind !== "records" || !got.records.length) return fail(check, describeEmpty(got), fix);
  const published = got.records.map((r) => `${r.priority} ${r.exchange.toLowerCase().replace(/\.$/, "")}`).sort();
  const hostsWanted = want.map((v) => v.split(/\s+/)[1].toLowerCase());
  const stray = got.records.filter((r) => !hostsWanted.includes(r.exchange.toLowerCase().replace(/\.$/, "")));
  if (stray.length)
    return fail(check, `published ${published.join(", ")}: mail goes to ${stray.map((r) => r.exchange).join(", ")}, not ${hostsWanted.join(", ")}`, fix);
  if (published.join() !== [...want].sort().join()) return warn(check, `published ${published.join(", ")}; expected ${want.join(", ")}`, fix);
  return pass(check, published.join(", "));
}

export async function checkSpf(expected: Expected, resolver: DoctorResolver, domain: string, outbound: string[]): Promise<CheckResult> {
  const check = `SPF ${domain}`;
  const want = expectedValues(expected, domain, "TXT").find((v) => /^v=spf1(\s|$)/i.test(v));
  const fix = want ? `publish ${zoneLine(domain, "TXT", want)} as the domain's only SPF record` : "publish an SPF record that allows the mail host";
  const got = await resolver.txt(domain);
  if (got.kind === "error") return fail(check, describeEmpty(got), fix);
  const records = got.kind === "records" ? got.records.filter((t) => /^v=spf1(\s|$)/i.test(t)) : [];
  if (!records.length) return fail(check, "no SPF record (receivers see SPF none; DMARC then rests on DKIM alone)", fix);
  if (records.length > 1) return fail(check, `${records.length} SPF records (RFC 7208 §4.5: a permerror): ${records.join(" | ")}`, fix);
  if (!outbound.length)
    return warn(check, `published "${records[0]}"; no outbound address known to evaluate it`, "give --outbound-address IP (the address mail leaves from)");
  const refused: string[] = [];
  for (const ip of outbound) {
    const r = await spf({ ip, sender: `postmaster@${domain}`, helo: expected.hostname, mta: "couchmail-doctor", resolver: resolver.forMailauth });
    if (r.status.result !== "pass") refused.push(`${ip}: ${r.status.result}${r.status.comment ? ` (${r.status.comment})` : ""}`);
  }
  if (refused.length) {
    // The expected record itself refusing means its mechanisms (mx, a) lead elsewhere: the fix is in those records.
    const cause =
      want && normalise(want) === normalise(records[0])
        ? `the record is the expected one, but its mechanisms resolve elsewhere: fix the MX/A records of ${domain}, or give --outbound-address if mail leaves from another address`
        : fix;
    return fail(check, `"${records[0]}" does not allow the outbound address: ${refused.join("; ")}`, cause);
  }
  if (want && normalise(want) !== normalise(records[0]))
    return warn(check, `"${records[0]}" allows ${outbound.join(", ")} but differs from the expected "${want}"`, fix);
  return pass(check, `"${records[0]}" allows ${outbound.join(", ")}`);
}

export async function checkDkim(expected: Expected, resolver: DoctorResolver, domain: string): Promise<CheckResult> {
  const selector = expected.dkimSelector[domain];
  const inUse = expected.dkimTxt[domain];
  if (!selector || !inUse)
    return fail(`DKIM ${domain}`, "the stack outputs name no DKIM key for this domain", "give the whole `pulumi stack output --json` (dnsRecords and dkimTxt)");
  const name = `${selector}._domainkey.${domain}`;
  const check = `DKIM ${name}`;
  const fix = `publish ${name}. TXT with the stack's dkimTxt value for ${domain} (the key OpenDKIM signs with)`;
  const got = await resolver.txt(name);
  if (got.kind !== "records" || !got.records.length) return fail(check, `${describeEmpty(got)}: receivers cannot verify our signatures`, fix);
  const wantKey = parseTags(inUse).p;
  const keys = got.records.map((t) => parseTags(t).p).filter((p) => p !== undefined);
  if (!keys.length) return fail(check, `no p= tag in "${got.records[0].slice(0, 60)}…"`, fix);
  if (keys.length > 1) return fail(check, `${keys.length} DKIM records at one name: receivers pick one at random`, fix);
  if (keys[0] !== wantKey) {
    return fail(check, `the key in DNS (${fingerprint(keys[0])}) is not the key in use (${fingerprint(wantKey)}): signatures fail`, fix);
  }
  return pass(check, `key in DNS = key in use (${fingerprint(wantKey)})`);
}

/** A short, distinct name for a public key: every RSA-2048 key's base64 starts with the same characters. */
function fingerprint(base64Key: string): string {
  return `sha256:${createHash("sha256").update(Buffer.from(base64Key, "base64")).digest("hex").slice(0, 16)}`;
}

/**
 * Report addresses outside the policy's domain receive reports only if their domain agrees (RFC 7489 §7.1): a TXT
 * `v=DMARC1` at `<policy domain>._report._dmarc.<report domain>`. The domains of those that have not agreed.
 */
async function unauthorizedReportDomains(resolver: DoctorResolver, domain: string, rua: string): Promise<string[]> {
  const external = [
    ...new Set(
      rua
        .split(",")
        .map((uri) => /^mailto:[^@]+@([^!]+)/i.exec(uri)?.[1].toLowerCase())
        .filter((d): d is string => !!d),
    ),
  ].filter((d) => d !== domain && !d.endsWith(`.${domain}`) && !domain.endsWith(`.${d}`));
  const missing: string[] = [];
  for (const d of external) {
    const got = await resolver.txt(`${domain}._report._dmarc.${d}`);
    if (got.kind !== "records" || !got.records.some((t) => /^v=DMARC1\s*(;|$)/i.test(t))) missing.push(d);
  }
  return missing;
}

const DMARC_POLICIES = ["none", "quarantine", "reject"];

export async function checkDmarc(expected: Expected, resolver: DoctorResolver, domain: string): Promise<CheckResult> {
  const name = `_dmarc.${domain}`;
  const check = `DMARC ${name}`;
  const want = expectedValues(expected, name, "TXT")[0];
  const fix = want ? `publish ${zoneLine(name, "TXT", want)}` : `publish ${name}. TXT "v=DMARC1; p=quarantine; rua=mailto:postmaster@${domain}"`;
  const got = await resolver.txt(name);
  const records = got.kind === "records" ? got.records.filter((t) => /^v=DMARC1\s*(;|$)/i.test(t)) : [];
  if (!records.length)
    return fail(
      check,
      `${got.kind === "records" ? "no v=DMARC1 record" : describeEmpty(got)}: big receivers (Gmail, Yahoo) require DMARC from bulk senders and distrust mail without it`,
      fix,
    );
  if (records.length > 1) return fail(check, `${records.length} DMARC records (RFC 7489 §6.6.3: none applies)`, fix);
  const tags = parseTags(records[0]);
  if (!DMARC_POLICIES.includes(tags.p ?? "")) return fail(check, `p=${tags.p ?? "(missing)"}; allowed: ${DMARC_POLICIES.join(", ")}`, fix);
  if (tags.p === "none") return warn(check, `"${records[0]}": p=none only monitors`, fix);
  if (!tags.rua) return warn(check, `"${records[0]}": no rua=, so nobody receives the aggregate reports`, fix);
  const unauthorized = await unauthorizedReportDomains(resolver, domain, tags.rua);
  if (unauthorized.length) {
    return warn(
      check,
      `rua=${tags.rua}: ${unauthorized.join(", ")} has not agreed to receive ${domain}'s reports, so receivers send none (RFC 7489 §7.1)`,
      unauthorized.map((d) => `publish ${zoneLine(`${domain}._report._dmarc.${d}`, "TXT", "v=DMARC1")}`).join(" and "),
    );
  }
  if (want && normalise(want) !== normalise(records[0])) return warn(check, `"${records[0]}" differs from the expected "${want}"`, fix);
  return pass(check, `"${records[0]}"`);
}

/** A TXT record that is good to have but not needed for delivery (TLS-RPT, MTA-STS): missing or different ⇒ warn. */
export async function checkOptionalTxt(expected: Expected, resolver: DoctorResolver, label: string, name: string, prefix: RegExp): Promise<CheckResult> {
  const check = `${label} ${name}`;
  const want = expectedValues(expected, name, "TXT")[0];
  if (!want) return skip(check, "the stack publishes none");
  const fix = `publish ${zoneLine(name, "TXT", want)}`;
  const got = await resolver.txt(name);
  const records = got.kind === "records" ? got.records.filter((t) => prefix.test(t)) : [];
  if (!records.length) return warn(check, got.kind === "records" ? "not published" : describeEmpty(got), fix);
  if (records.length > 1 || normalise(records[0]) !== normalise(want)) return warn(check, `published "${records.join(" | ")}", expected "${want}"`, fix);
  return pass(check, `"${records[0]}"`);
}

/** The mail host's A records against the addresses the stack knows (its A records or publicAddresses). */
export async function checkHostAddress(expected: Expected, resolver: DoctorResolver): Promise<{ result: CheckResult; addresses: string[] }> {
  const check = `A ${expected.hostname}`;
  const want = expectedValues(expected, expected.hostname, "A");
  const wanted = want.length ? want : expected.publicAddresses.filter((a) => !a.includes(":"));
  const got = await resolver.a(expected.hostname);
  const fix = wanted.length
    ? `publish ${wanted.map((a) => zoneLine(expected.hostname, "A", a)).join(" and ")}`
    : `publish an A record for ${expected.hostname} with the mail edge's public address`;
  if (got.kind !== "records" || !got.records.length) return { result: fail(check, describeEmpty(got), fix), addresses: [] };
  const published = [...got.records].sort();
  if (wanted.length && published.join() !== [...wanted].sort().join()) {
    return { result: fail(check, `published ${published.join(", ")}; the stack's address is ${wanted.join(", ")}`, fix), addresses: published };
  }
  return { result: pass(check, published.join(", ")), addresses: published };
}
