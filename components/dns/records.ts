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
    /** Where DMARC aggregate reports go. */
    postmaster: string;
    ttl?: number;
}

/**
 * The records mail for each domain needs: MX at our host, SPF allowing only it (`-all`: nobody else sends for
 * these domains), the DKIM key, and DMARC starting at `p=quarantine` with reports to the postmaster.
 */
export function mailDnsRecords(args: MailDnsArgs): DnsRecord[] {
    const ttl = args.ttl ?? 3600;
    return args.domains.flatMap((domain): DnsRecord[] => {
        const dkim = args.dkimTxt[domain];
        if (!dkim) throw new Error(`no DKIM key for ${domain}`);
        return [
            { name: domain, type: "MX", value: `10 ${args.hostname}`, ttl },
            { name: domain, type: "TXT", value: `v=spf1 mx -all`, ttl },
            { name: `${args.dkimSelector}._domainkey.${domain}`, type: "TXT", value: dkim, ttl },
            { name: `_dmarc.${domain}`, type: "TXT", value: `v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:${args.postmaster}`, ttl },
        ];
    });
}

/** TXT data as zone-file strings: quoted, escaped, and split into the 255-byte pieces DNS allows. */
export function zoneTxt(text: string): string {
    const pieces: string[] = [];
    for (let i = 0; i < text.length; i += 255) pieces.push(text.slice(i, i + 255));
    return pieces.map((p) => `"${p.replace(/["\\]/g, "\\$&")}"`).join(" ");
}

/** The records as a zone-file snippet (absolute names), ready to paste into a DNS provider's import. */
export function zoneSnippet(records: DnsRecord[]): string {
    return records.map((r) => {
        const data = r.type === "TXT" ? zoneTxt(r.value) : r.type === "MX" || r.type === "CNAME" ? `${r.value}.` : r.value;
        return `${r.name}.\t${r.ttl}\tIN\t${r.type}\t${data}`;
    }).join("\n") + "\n";
}
