import * as digitalocean from "@pulumi/digitalocean";
import * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../config/reader";
import { DnsRecord, zoneTxt } from "./records";

/** The zone (longest suffix match) a record name belongs to; a config error when none of the zones holds it. */
export function zoneFor(name: string, zones: string[], where: string): string {
    const zone = zones
        .map((z) => z.replace(/\.$/, ""))
        .filter((z) => name === z || name.endsWith(`.${z}`))
        .sort((a, b) => b.length - a.length)[0];
    if (!zone) throw new ConfigError(`mail:dnsManage = true, but no ${where} zone holds ${name} (zones: ${zones.join(", ") || "none"}); create the zone or set dnsManage false`);
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
    /** The record set's shape, known at preview: names, types and how many values each has. */
    shape: DnsRecord[];
    /** The same records with their real values (DKIM keys, load balancer address). */
    records: pulumi.Output<DnsRecord[]>;
}

/** Creates the mail records in DigitalOcean DNS or Cloud DNS, in zones that must already exist there. */
export class ManagedDns extends pulumi.ComponentResource {
    constructor(name: string, args: ManagedDnsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:ManagedDns", name, {}, opts);
        const sets = groupRecords(args.shape);
        const valuesOf = (set: { name: string; type: string }) =>
            args.records.apply((rs) => rs.filter((r) => r.name === set.name && r.type === set.type).map((r) => r.value));
        if (args.provider === "digitalocean") {
            const zones = digitalocean.getDomainsOutput({}, { parent: this }).domains.apply((ds) => ds.map((d) => d.name));
            for (const set of sets) {
                const zone = zones.apply((zs) => zoneFor(set.name, zs, "DigitalOcean DNS"));
                set.values.forEach((_, i) => {
                    const value = valuesOf(set).apply((vs) => vs[i]);
                    new digitalocean.DnsRecord(`${name}-${set.type.toLowerCase()}-${set.name}-${i}`, {
                        domain: zone,
                        name: zone.apply((z) => relativeName(set.name, z)),
                        type: set.type,
                        ttl: set.ttl,
                        // DigitalOcean wants MX targets absolute and the preference on its own.
                        ...(set.type === "MX"
                            ? { priority: value.apply((v) => Number(v.split(" ")[0])), value: value.apply((v) => `${v.split(" ")[1]}.`) }
                            : { value }),
                    }, { parent: this });
                });
            }
        } else {
            const zones = gcp.dns.getManagedZonesOutput({}, { parent: this }).managedZones;
            for (const set of sets) {
                const zone = zones.apply((zs) => {
                    const dnsName = zoneFor(set.name, zs.map((z) => z.dnsName), "Cloud DNS");
                    return zs.find((z) => z.dnsName.replace(/\.$/, "") === dnsName)!.name!;
                });
                new gcp.dns.RecordSet(`${name}-${set.type.toLowerCase()}-${set.name}`, {
                    managedZone: zone,
                    name: `${set.name}.`,
                    type: set.type,
                    ttl: set.ttl,
                    rrdatas: valuesOf(set).apply((vs) => vs.map((v) => cloudDnsRrdata(set.type, v))),
                }, { parent: this });
            }
        }
        this.registerOutputs({});
    }
}
