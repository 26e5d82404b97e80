import * as digitalocean from "@pulumi/digitalocean";
import * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../config/checks";
import { collisionError, dnsCollisions, ExistingRecordSet, keptValues } from "./collisions";
import { DnsRecord, zoneTxt } from "./records";

/** The zone (longest suffix match) a record name belongs to; a config error when none of the zones holds it. */
export function zoneFor(name: string, zones: string[], where: string): string {
    const zone = zones
        .map((z) => z.replace(/\.$/, ""))
        .filter((z) => name === z || name.endsWith(`.${z}`))
        .sort((a, b) => b.length - a.length)[0];
    if (!zone)
        throw new ConfigError(
            `mail:dnsManage = true, but no ${where} zone holds ${name} (zones: ${zones.join(", ") || "none"}); create the zone or set dnsManage false`,
        );
    return zone;
}

/** Name relative to its zone, `@` for the apex (DigitalOcean's convention). */
export function relativeName(name: string, zone: string): string {
    return name === zone ? "@" : name.slice(0, -(zone.length + 1));
}

/** Record sets keyed by name and type (Cloud DNS holds all values of one name+type in one set). */
export function groupRecords(records: DnsRecord[]): { name: string; type: DnsRecord["type"]; ttl: number; values: string[] }[] {
    const sets = new Map<string, { name: string; type: DnsRecord["type"]; ttl: number; values: string[] }>();
    for (const r of records) {
        const key = `${r.name} ${r.type}`;
        if (!sets.has(key)) sets.set(key, { name: r.name, type: r.type, ttl: r.ttl, values: [] });
        sets.get(key)!.values.push(r.value);
    }
    return [...sets.values()];
}

/** Cloud DNS rrdata: absolute names get their dot, TXT its quoted ≤255-byte strings. */
export function cloudDnsRrdata(type: DnsRecord["type"], value: string): string {
    if (type === "TXT") return zoneTxt(value);
    if (type === "MX" || type === "CNAME") return `${value}.`;
    return value;
}

export interface ManagedDnsArgs {
    provider: "digitalocean" | "gke";
    /** The mail host (MX target). */
    hostname: string;
    /** The record set's shape, known at preview: names, types and how many values each has. */
    shape: DnsRecord[];
    /** The same records with their real values (DKIM keys, load balancer address). */
    records: pulumi.Output<DnsRecord[]>;
}

/** A DigitalOcean record as DnsRecord's value form: absolute name, MX `<pref> <host>`. */
export function fromDigitalOcean(
    zone: string,
    r: { name: string; type: string; value: string; priority: number },
): { name: string; type: string; value: string } {
    const name = r.name === "@" ? zone : `${r.name}.${zone}`;
    return {
        name,
        type: r.type,
        value: r.type === "MX" ? `${r.priority} ${r.value.replace(/\.$/, "")}` : r.type === "CNAME" ? r.value.replace(/\.$/, "") : r.value,
    };
}

/** Cloud DNS rrdata in DnsRecord's value form: TXT strings unquoted and joined, names without their dot. */
export function fromCloudDnsRrdata(type: string, rrdata: string): string {
    if (type === "TXT") return [...rrdata.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((m) => m[1].replace(/\\(.)/g, "$1")).join("") || rrdata;
    if (type === "MX" || type === "CNAME") return rrdata.replace(/\.$/, "");
    return rrdata;
}

function groupExisting(records: { name: string; type: string; value: string }[]): ExistingRecordSet[] {
    const sets = new Map<string, ExistingRecordSet>();
    for (const r of records) {
        const key = `${r.name} ${r.type}`;
        if (!sets.has(key)) sets.set(key, { name: r.name, type: r.type, values: [] });
        sets.get(key)!.values.push(r.value);
    }
    return [...sets.values()];
}

/**
 * Creates the mail records in DigitalOcean DNS or Cloud DNS, in zones that must already exist there. It first reads
 * those zones and refuses (at preview) records the mail records would collide with.
 */
export class ManagedDns extends pulumi.ComponentResource {
    constructor(name: string, args: ManagedDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:ManagedDns", name, {}, opts);
        const sets = groupRecords(args.shape);
        const valuesOf = (set: { name: string; type: string }) =>
            args.records.apply((rs) => rs.filter((r) => r.name === set.name && r.type === set.type).map((r) => r.value));
        const check = (provider: string, oneSetPerType: boolean) => (existing: ExistingRecordSet[]) => {
            const collisions = dnsCollisions(existing, args.shape, { hostname: args.hostname, oneSetPerType });
            if (collisions.length > 0) throw collisionError(provider, collisions);
            return existing;
        };
        if (args.provider === "digitalocean") {
            const zones = digitalocean.getDomainsOutput({}, { parent: this }).domains.apply((ds) => ds.map((d) => d.name));
            const zoneOf = (set: { name: string }) => zones.apply((zs) => zoneFor(set.name, zs, "DigitalOcean DNS"));
            const existing = pulumi
                .all(sets.map(zoneOf))
                .apply((zs) =>
                    pulumi.all(
                        [...new Set(zs)].map((zone) =>
                            digitalocean.getRecordsOutput({ domain: zone }, { parent: this }).records.apply((rs) => rs.map((r) => fromDigitalOcean(zone, r))),
                        ),
                    ),
                )
                .apply((lists) => groupExisting(lists.flat()))
                .apply(check("DigitalOcean DNS", false));
            for (const set of sets) {
                const zone = pulumi.all([zoneOf(set), existing]).apply(([z]) => z);
                set.values.forEach((_, i) => {
                    const value = valuesOf(set).apply((vs) => vs[i]);
                    new digitalocean.DnsRecord(
                        `${name}-${set.type.toLowerCase()}-${set.name}-${i}`,
                        {
                            domain: zone,
                            name: zone.apply((z) => relativeName(set.name, z)),
                            type: set.type,
                            ttl: set.ttl,
                            // DigitalOcean wants MX targets absolute and the preference on its own.
                            ...(set.type === "MX"
                                ? { priority: value.apply((v) => Number(v.split(" ")[0])), value: value.apply((v) => `${v.split(" ")[1]}.`) }
                                : { value }),
                        },
                        { parent: this },
                    );
                });
            }
        } else {
            const zones = gcp.dns.getManagedZonesOutput({}, { parent: this }).managedZones;
            const zoneOf = (set: { name: string }) =>
                zones.apply((zs) => {
                    const dnsName = zoneFor(
                        set.name,
                        zs.map((z) => z.dnsName),
                        "Cloud DNS",
                    );
                    return zs.find((z) => z.dnsName.replace(/\.$/, "") === dnsName)!.name!;
                });
            const existing = pulumi
                .all(sets.map(zoneOf))
                .apply((zs) =>
                    pulumi.all(
                        [...new Set(zs)].map((zone) =>
                            gcp.dns
                                .getRecordSetsOutput({ managedZone: zone }, { parent: this })
                                .rrsets.apply((rrsets) =>
                                    rrsets.flatMap((s) =>
                                        s.rrdatas.map((d) => ({ name: s.name.replace(/\.$/, ""), type: s.type, value: fromCloudDnsRrdata(s.type, d) })),
                                    ),
                                ),
                        ),
                    ),
                )
                .apply((lists) => groupExisting(lists.flat()))
                .apply(check("Cloud DNS", true));
            for (const set of sets) {
                const zone = pulumi.all([zoneOf(set), existing]).apply(([z]) => z);
                // A set holds every value of its name and type: keep the unrelated ones already there (e.g. site
                // verification TXT at the apex).
                const kept = existing.apply((ex) =>
                    keptValues(
                        ex.find((e) => e.name === set.name && e.type === set.type),
                        args.shape,
                        args.hostname,
                    ),
                );
                new gcp.dns.RecordSet(
                    `${name}-${set.type.toLowerCase()}-${set.name}`,
                    {
                        managedZone: zone,
                        name: `${set.name}.`,
                        type: set.type,
                        ttl: set.ttl,
                        rrdatas: pulumi.all([valuesOf(set), kept]).apply(([vs, others]) => [...vs, ...others].map((v) => cloudDnsRrdata(set.type, v))),
                    },
                    { parent: this },
                );
            }
        }
        this.registerOutputs({});
    }
}
