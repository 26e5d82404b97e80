// Records already in a zone that the mail records would collide with. The program cannot see which records an earlier
// run of this stack created, so "ours" is judged by value: what this program publishes at a name, whatever its config.
import { ConfigError } from "../config/checks";
import { DnsRecord } from "./records";

/** Records of one name and type found in a zone, in DnsRecord's value form (MX `<pref> <host>`, TXT unquoted). */
export interface ExistingRecordSet {
    name: string;
    type: string;
    values: string[];
}

export interface DnsCollision {
    name: string;
    type: string;
    value: string;
    why: string;
}

/** The tag a mail TXT record starts with; a name holding two records with the same tag breaks that mechanism. */
function txtTag(value: string): string | undefined {
    return /^v=(spf1|DKIM1|DMARC1|TLSRPTv1|STSv1)\b/i.exec(value)?.[0].toLowerCase();
}

/** Where the config-dependent part of each of our TXT records starts (records.ts mailDnsRecords). */
const CONFIGURABLE_TAIL = [/^(v=DKIM1; k=rsa; p=)/, /^(v=DMARC1;.*? rua=mailto:)/, /^(v=TLSRPTv1; rua=mailto:)/, /^(v=STSv1; id=)/];

/** Whether `value` is one this program publishes for the planned record (any config of it: keys, postmaster, mode). */
function publishedByUs(planned: DnsRecord, value: string, hostname: string): boolean {
    switch (planned.type) {
        case "MX":
            return value.replace(/\.$/, "") === `10 ${hostname}`;
        case "TXT": {
            // DKIM key, DMARC/TLS-RPT report address and MTA-STS id change with config; the part before them does not.
            const fixed = CONFIGURABLE_TAIL.map((tail) => tail.exec(planned.value)).find((m) => m)?.[1];
            return fixed ? value.startsWith(fixed) : value === planned.value;
        }
        default:
            return value === planned.value;
    }
}

/**
 * Existing records the planned ones collide with. A/AAAA are not judged: the edge's address (a load balancer's or a
 * reserved IP) is unknown until it exists, so an earlier run's record cannot be told from someone else's.
 * `oneSetPerType`: Cloud DNS, where a name and type hold one record set, so an existing set with none of our values
 * cannot be created (HTTP 409) — unlike DigitalOcean, which adds records beside the ones there.
 */
export function dnsCollisions(existing: ExistingRecordSet[], planned: DnsRecord[], opts: { hostname: string; oneSetPerType: boolean }): DnsCollision[] {
    const collisions: DnsCollision[] = [];
    const plannedNames = new Set(planned.map((r) => r.name));
    for (const set of existing) {
        if (set.type === "CNAME" && plannedNames.has(set.name)) {
            for (const value of set.values) collisions.push({ name: set.name, type: set.type, value, why: "a CNAME allows no other record at its name" });
            continue;
        }
        const ours = planned.filter((r) => r.name === set.name && r.type === set.type);
        if (ours.length === 0) continue;
        if (set.type === "A" || set.type === "AAAA") continue;
        const foreign = set.values.filter((v) => !ours.some((r) => publishedByUs(r, v, opts.hostname)));
        for (const value of foreign) {
            if (set.type === "MX") collisions.push({ name: set.name, type: set.type, value, why: `mail for ${set.name} would also go to that host` });
            else if (ours.some((r) => txtTag(r.value) === txtTag(value))) {
                collisions.push({
                    name: set.name,
                    type: set.type,
                    value,
                    why: `a second ${txtTag(value)} record at one name makes receivers ignore both (SPF: permerror)`,
                });
            }
        }
        if (opts.oneSetPerType && foreign.length === set.values.length && !collisions.some((c) => c.name === set.name && c.type === set.type)) {
            collisions.push({
                name: set.name,
                type: set.type,
                value: set.values.join(" | "),
                why: "Cloud DNS holds one record set per name and type and this one was not made by this stack (creating ours fails with 409); adopt it with pulumi import (its other values are kept) or delete it",
            });
        }
    }
    return collisions;
}

/** Values of an existing set that are neither ours nor colliding: kept beside ours when we own the set (Cloud DNS). */
export function keptValues(set: ExistingRecordSet | undefined, planned: DnsRecord[], hostname: string): string[] {
    if (!set || set.type !== "TXT") return [];
    const ours = planned.filter((r) => r.name === set.name && r.type === "TXT");
    return set.values.filter((v) => !ours.some((r) => publishedByUs(r, v, hostname) || (txtTag(v) !== undefined && txtTag(r.value) === txtTag(v))));
}

/** The preview-time refusal naming every collision and the ways out. */
export function collisionError(provider: string, collisions: DnsCollision[]): ConfigError {
    const list = collisions.map((c) => `${c.name} ${c.type} "${c.value}": ${c.why}`).join("; ");
    return new ConfigError(
        `mail:dnsManage = true, but ${provider} already holds records the mail records collide with: ${list}. Remove or merge them by hand (the dnsZone output has our values), or set dnsManage false and publish dnsZone yourself`,
    );
}
