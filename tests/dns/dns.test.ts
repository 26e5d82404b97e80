import { FAKE_ADDRESSES } from "../kit/mocks";
import { ProgramRun, runProgram } from "../kit/program";
import { collisionError, dnsCollisions, ExistingRecordSet, keptValues } from "../../components/dns/collisions";
import { cloudDnsRrdata, relativeName, zoneFor } from "../../components/dns/manage";
import { mailDnsRecords, mtaStsId, mtaStsPolicy, zoneSnippet } from "../../components/dns/records";

const DKIM = `v=DKIM1; k=rsa; p=${"A".repeat(392)}`;
const args = {
    hostname: "mail.example.com",
    domains: ["example.com", "example.org"],
    dkimSelector: "mail",
    postmaster: "postmaster@example.com",
    dkimTxt: { "example.com": DKIM, "example.org": DKIM },
    addresses: ["203.0.113.9", "2001:db8::9"],
    mtaSts: "enforce" as const,
};

/** A small zone-file reader: name → type → data strings (TXT strings joined as DNS joins them). */
function parseZone(text: string): Map<string, Map<string, string[]>> {
    const zone = new Map<string, Map<string, string[]>>();
    for (const line of text.trim().split("\n")) {
        const m = /^(\S+)\.\t(\d+)\tIN\t(A|AAAA|MX|TXT|CNAME)\t(.+)$/.exec(line);
        if (!m) throw new Error(`not a zone line: ${line}`);
        const [, name, , type, data] = m;
        const value = type === "TXT" ? [...data.matchAll(/"((?:[^"\\]|\\.)*)"/g)].map((s) => s[1].replace(/\\(.)/g, "$1")).join("") : data;
        if (!zone.has(name)) zone.set(name, new Map());
        const byType = zone.get(name)!;
        byType.set(type, [...(byType.get(type) ?? []), value]);
    }
    return zone;
}

describe("DNS record set (pure)", () => {
    const zone = parseZone(zoneSnippet(mailDnsRecords(args)));
    const get = (name: string, type: string) => zone.get(name)?.get(type) ?? [];

    it("has A and AAAA for the mail host", () => {
        expect(get("mail.example.com", "A")).toEqual(["203.0.113.9"]);
        expect(get("mail.example.com", "AAAA")).toEqual(["2001:db8::9"]);
    });

    it.each(["example.com", "example.org"])("has MX, SPF, DKIM, DMARC, TLS-RPT and MTA-STS for %s", (domain) => {
        expect(get(domain, "MX")).toEqual(["10 mail.example.com."]);
        expect(get(domain, "TXT")).toEqual(["v=spf1 mx -all"]);
        expect(get(`mail._domainkey.${domain}`, "TXT")).toEqual([DKIM]);
        expect(get(`_dmarc.${domain}`, "TXT")).toEqual(["v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:postmaster@example.com"]);
        expect(get(`_smtp._tls.${domain}`, "TXT")).toEqual(["v=TLSRPTv1; rua=mailto:postmaster@example.com"]);
        expect(get(`_mta-sts.${domain}`, "TXT")).toEqual([`v=STSv1; id=${mtaStsId(mtaStsPolicy("enforce", "mail.example.com"))}`]);
    });

    it("lets the postmaster's domain receive the other domains' DMARC reports (RFC 7489 §7.1), and only those", () => {
        expect(get("example.org._report._dmarc.example.com", "TXT")).toEqual(["v=DMARC1"]);
        expect([...zone.keys()].filter((n) => n.includes("._report._dmarc."))).toEqual(["example.org._report._dmarc.example.com"]);
        const foreign = mailDnsRecords({ ...args, postmaster: "reports@elsewhere.example" });
        expect(foreign.filter((r) => r.name.includes("._report._dmarc."))).toEqual([]);
    });

    it("splits long TXT data into ≤255-byte strings", () => {
        const line = zoneSnippet(mailDnsRecords(args))
            .split("\n")
            .find((l) => l.startsWith("mail._domainkey.example.com."))!;
        const strings = [...line.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
        expect(strings.length).toBeGreaterThan(1);
        expect(strings.every((s) => s.length <= 255)).toBe(true);
    });

    it("publishes no _mta-sts record when MTA-STS is off, and a new id when the policy changes", () => {
        expect(mailDnsRecords({ ...args, mtaSts: "off" }).some((r) => r.name.startsWith("_mta-sts."))).toBe(false);
        expect(mtaStsId(mtaStsPolicy("testing", "mail.example.com"))).not.toBe(mtaStsId(mtaStsPolicy("enforce", "mail.example.com")));
        expect(mtaStsPolicy("enforce", "mail.example.com")).toBe("version: STSv1\r\nmode: enforce\r\nmx: mail.example.com\r\nmax_age: 604800\r\n");
    });

    it("rejects an address that is not an IP", () => {
        expect(() => mailDnsRecords({ ...args, addresses: ["mail.example.com"] })).toThrow("not an IP address: mail.example.com");
    });

    it("finds the zone of a name by longest suffix, and says which zone is missing", () => {
        expect(zoneFor("mail._domainkey.example.com", ["com.example", "example.com", "mail.example.com."], "X")).toBe("example.com");
        expect(zoneFor("example.com", ["example.com."], "X")).toBe("example.com");
        expect(relativeName("example.com", "example.com")).toBe("@");
        expect(relativeName("_dmarc.example.com", "example.com")).toBe("_dmarc");
        expect(() => zoneFor("mail.example.net", ["example.com"], "Cloud DNS")).toThrow("mail:dnsManage = true, but no Cloud DNS zone holds mail.example.net");
        expect(cloudDnsRrdata("MX", "10 mail.example.com")).toBe("10 mail.example.com.");
        expect(cloudDnsRrdata("TXT", 'say "hi"')).toBe('"say \\"hi\\""');
    });
});

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com", "example.org"] };

describe("dnsManage on digitalocean", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, clusterProvider: "digitalocean", dnsManage: true, dnsMtaSts: "testing" });
    });

    it("creates every output record in its DigitalOcean zone, relative to the zone", async () => {
        const records = (await run.resolve(run.outputs.dnsRecords as { name: string; type: string; value: string }[])).value;
        const created = run.recorder.ofType("digitalocean:index/dnsRecord:DnsRecord").map((r) => {
            const i = r.inputs;
            return { domain: i.domain, name: i.name, type: i.type, value: i.value, priority: i.priority };
        });
        expect(created).toHaveLength(records.length);
        expect(created).toContainEqual({ domain: "example.com", name: "mail", type: "A", value: FAKE_ADDRESSES.digitaloceanLb, priority: undefined });
        expect(created).toContainEqual({ domain: "example.org", name: "@", type: "MX", value: "mail.example.com.", priority: 10 });
        expect(created).toContainEqual({ domain: "example.org", name: "@", type: "TXT", value: "v=spf1 mx -all", priority: undefined });
        const dkim = records.find((r) => r.name === "mail._domainkey.example.com")!.value;
        expect(created).toContainEqual({ domain: "example.com", name: "mail._domainkey", type: "TXT", value: dkim, priority: undefined });
        expect(created.filter((c) => c.name === "_mta-sts")).toHaveLength(2);
    });
});

describe("dnsManage on gke", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, clusterProvider: "gke", dnsManage: true });
    });

    it("creates one Cloud DNS record set per name and type, in the zone that holds it", () => {
        const sets = run.recorder
            .ofType("gcp:dns/recordSet:RecordSet")
            .map((r) => r.inputs as { managedZone: string; name: string; type: string; rrdatas: string[] });
        expect(sets).toContainEqual(
            expect.objectContaining({ managedZone: "example-com", name: "mail.example.com.", type: "A", rrdatas: [FAKE_ADDRESSES.serviceLb] }),
        );
        expect(sets).toContainEqual(
            expect.objectContaining({ managedZone: "example-org", name: "example.org.", type: "MX", rrdatas: ["10 mail.example.com."] }),
        );
        expect(sets).toContainEqual(
            expect.objectContaining({
                managedZone: "example-org",
                name: "_dmarc.example.org.",
                type: "TXT",
                rrdatas: ['"v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:postmaster@example.com"'],
            }),
        );
        const dkim = sets.find((s) => s.name === "mail._domainkey.example.com.")!;
        expect(dkim.rrdatas).toHaveLength(1);
        expect(dkim.rrdatas[0]).toMatch(/^"v=DKIM1; k=rsa; p=[^"]{200,}" "[^"]+"/);
    });
});

describe("collisions with records already in the zone (pure)", () => {
    const planned = mailDnsRecords({ ...args, domains: ["example.com"], addresses: ["203.0.113.9"] });
    const ourDkim = planned.find((r) => r.name === "mail._domainkey.example.com")!.value;
    const opts = { hostname: "mail.example.com", oneSetPerType: false };
    const set = (name: string, type: string, ...values: string[]): ExistingRecordSet => ({ name, type, values });

    it("finds a second SPF record, a foreign MX, a second DMARC record and a CNAME", () => {
        const existing = [
            set("example.com", "TXT", "google-site-verification=abc", "v=spf1 include:_spf.google.com ~all"),
            set("example.com", "MX", "1 aspmx.l.google.com"),
            set("_dmarc.example.com", "TXT", "v=DMARC1; p=none"),
            set("_smtp._tls.example.com", "CNAME", "tlsrpt.example.net"),
        ];
        expect(dnsCollisions(existing, planned, opts).map((c) => `${c.name} ${c.type} ${c.value}`)).toEqual([
            "example.com TXT v=spf1 include:_spf.google.com ~all",
            "example.com MX 1 aspmx.l.google.com",
            "_dmarc.example.com TXT v=DMARC1; p=none",
            "_smtp._tls.example.com CNAME tlsrpt.example.net",
        ]);
        expect(collisionError("DigitalOcean DNS", dnsCollisions(existing, planned, opts).slice(0, 1)).message).toBe(
            'mail:dnsManage = true, but DigitalOcean DNS already holds records the mail records collide with: example.com TXT "v=spf1 include:_spf.google.com ~all": a second v=spf1 record at one name makes receivers ignore both (SPF: permerror). Remove or merge them by hand (the dnsZone output has our values), or set dnsManage false and publish dnsZone yourself',
        );
    });

    it("takes what this program publishes under any config for its own (an earlier run's records)", () => {
        const earlierRun = [
            set("example.com", "TXT", "v=spf1 mx -all", "google-site-verification=abc"),
            set("example.com", "MX", "10 mail.example.com."),
            set("mail._domainkey.example.com", "TXT", "v=DKIM1; k=rsa; p=OLDKEY"),
            set("_dmarc.example.com", "TXT", "v=DMARC1; p=quarantine; adkim=s; aspf=s; rua=mailto:old@example.com"),
            set("_mta-sts.example.com", "TXT", "v=STSv1; id=0123"),
            set("mail.example.com", "A", "203.0.113.9"),
        ];
        expect(dnsCollisions(earlierRun, planned, opts)).toEqual([]);
        expect(dnsCollisions(earlierRun, planned, { ...opts, oneSetPerType: true })).toEqual([]);
        expect(ourDkim.startsWith("v=DKIM1; k=rsa; p=")).toBe(true);
    });

    it("on Cloud DNS refuses an existing set with none of our values, and keeps the unrelated values of ours", () => {
        const existing = [set("example.com", "TXT", "google-site-verification=abc")];
        expect(dnsCollisions(existing, planned, opts)).toEqual([]);
        const [collision] = dnsCollisions(existing, planned, { ...opts, oneSetPerType: true });
        expect(collision).toMatchObject({ name: "example.com", type: "TXT", value: "google-site-verification=abc" });
        expect(collision.why).toContain("409");
        expect(keptValues(set("example.com", "TXT", "v=spf1 mx -all", "google-site-verification=abc"), planned, "mail.example.com")).toEqual([
            "google-site-verification=abc",
        ]);
    });

    it("does not judge A/AAAA: the edge's address is unknown until it exists", () => {
        expect(dnsCollisions([set("mail.example.com", "A", "198.51.100.1")], planned, { ...opts, oneSetPerType: true })).toEqual([]);
    });
});

describe("dnsManage reads the zones before writing to them", () => {
    it.each([
        ["digitalocean", "digitalocean:index/getRecords:getRecords", "domain"],
        ["gke", "gcp:dns/getRecordSets:getRecordSets", "managedZone"],
    ])("on %s: reads every zone it writes to", async (provider, token, zoneArg) => {
        const run = await runProgram({ ...mail, clusterProvider: provider, dnsManage: true });
        const zones = run.recorder.invokes
            .filter((i) => i.token === token)
            .map((i) => i.inputs[zoneArg])
            .sort();
        expect(zones).toEqual(provider === "gke" ? ["example-com", "example-org"] : ["example.com", "example.org"]);
    });
});
