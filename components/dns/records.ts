import { createHash } from "crypto";
import * as net from "net";
import { domainOf } from "../config/checks";

/** A DNS record the user publishes (or the program manages) for the mail domains. */
export interface DnsRecord {
    /** Fully qualified owner name, without the trailing dot. */
    name: string;
    type: "MX" | "TXT" | "A" | "AAAA" | "CNAME";
    /** For MX: `<preference> <host>`; for TXT: the unquoted text. */
    value: string;
    ttl: number;
}

export interface MailDnsArgs {
    hostname: string;
    domains: string[];
    dkimSelector: string;
    /** domain → `v=DKIM1; k=rsa; p=…`. */
    dkimTxt: Record<string, string>;
    /** Where DMARC aggregate and TLS-RPT reports go. */
    postmaster: string;
    /** Public addresses of the mail host (A/AAAA); none yet ⇒ no address records. */
    addresses: string[];
    /** MTA-STS policy mode; "off" publishes no _mta-sts record. */
    mtaSts: "off" | "testing" | "enforce";
    ttl?: number;
}

/** MTA-STS policy (RFC 8461) to serve at https://mta-sts.<domain>/.well-known/mta-sts.txt; CRLF lines per the RFC. */
export function mtaStsPolicy(mode: "testing" | "enforce", hostname: string, maxAgeSeconds = 7 * 24 * 3600): string {
    return [`version: STSv1`, `mode: ${mode}`, `mx: ${hostname}`, `max_age: ${maxAgeSeconds}`].map((l) => `${l}\r\n`).join("");
}

/** The policy id senders compare to refetch: changes whenever the policy does. */
export function mtaStsId(policy: string): string {
    return createHash("sha256").update(policy).digest("hex").slice(0, 20);
}

/**
 * The records mail needs: A/AAAA for the mail host, and for each domain MX at our host, SPF allowing only it
 * (`-all`: nobody else sends for these domains), the DKIM key, DMARC starting at `p=quarantine` with reports to
 * the postmaster, TLS-RPT reports to the postmaster, and the MTA-STS policy id when MTA-STS is on. When the
 * postmaster's domain is one of ours, it also consents to receive the other domains' DMARC reports (RFC 7489 §7.1:
 * a receiver sends reports to an address outside the domain only if `<domain>._report._dmarc.<its domain>` says so).
 */
export function mailDnsRecords(args: MailDnsArgs): DnsRecord[] {
    const ttl = args.ttl ?? 3600;
    const hostRecords = args.addresses.map((ip): DnsRecord => {
        if (!net.isIP(ip)) throw new Error(`not an IP address: ${ip}`);
        return { name: args.hostname, type: net.isIPv6(ip) ? "AAAA" : "A", value: ip, ttl };
    });
    const stsId = args.mtaSts === "off" ? undefined : mtaStsId(mtaStsPolicy(args.mtaSts, args.hostname));
    const reportDomain = domainOf(args.postmaster);
    const reportConsent = args.domains.includes(reportDomain)
        ? args.domains
              .filter((d) => d !== reportDomain)
              .map((d): DnsRecord => ({ name: `${d}._report._dmarc.${reportDomain}`, type: "TXT", value: "v=DMARC1", ttl }))
        : [];
    return hostRecords.concat(
        args.domains.flatMap((domain): DnsRecord[] => {
            const dkim = args.dkimTxt[domain];
            if (!dkim) throw new Error(`no DKIM key for ${domain}`);
            return [
                { name: domain, type: "MX", value: `10 ${args.hostname}`, ttl },
                { name: domain, type: "TXT", value: `v=spf1 mx -all`, ttl },
                { name: `${args.dkimSelector}._domainkey.${domain}`, type: "TXT", value: dkim, ttl },
                { name: `_dmarc.${domain}`, type: "TXT", value: `v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:${args.postmaster}`, ttl },
                { name: `_smtp._tls.${domain}`, type: "TXT", value: `v=TLSRPTv1; rua=mailto:${args.postmaster}`, ttl },
                ...(stsId ? [{ name: `_mta-sts.${domain}`, type: "TXT" as const, value: `v=STSv1; id=${stsId}`, ttl }] : []),
            ];
        }),
        reportConsent,
    );
}

/** TXT data as zone-file strings: quoted, escaped, and split into the 255-byte pieces DNS allows. */
export function zoneTxt(text: string): string {
    const pieces: string[] = [];
    for (let i = 0; i < text.length; i += 255) pieces.push(text.slice(i, i + 255));
    return pieces.map((p) => `"${p.replace(/["\\]/g, "\\$&")}"`).join(" ");
}

/** The records as a zone-file snippet (absolute names), ready to paste into a DNS provider's import. */
export function zoneSnippet(records: DnsRecord[]): string {
    return (
        records
            .map((r) => {
                const data = r.type === "TXT" ? zoneTxt(r.value) : r.type === "MX" || r.type === "CNAME" ? `${r.value}.` : r.value;
                return `${r.name}.\t${r.ttl}\tIN\t${r.type}\t${data}`;
            })
            .join("\n") + "\n"
    );
}
