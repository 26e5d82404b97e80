import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { loadConfig } from "../../components/config/load";
import type { StackConfig } from "../../components/config/types";
import { ConfigReader, declaredKeys, SECRET_KEYS } from "../../components/config/reader";
import { configKeysTable, DOCS_BEGIN, DOCS_END } from "../../components/config/docs";

const valid = { mailHostname: "mail.example.com", mailDomains: ["example.com", "example.org"] };

function withConfig(values: Record<string, unknown>): void {
    const all: Record<string, string> = {};
    for (const [k, v] of Object.entries(values)) all[`mail:${k}`] = typeof v === "string" ? v : JSON.stringify(v);
    pulumi.runtime.setAllConfig(all);
}

function load(values: Record<string, unknown>): StackConfig {
    withConfig(values);
    return loadConfig();
}

describe("stack config", () => {
    it("applies Pulumi.yaml's defaults and derives the rest", () => {
        const config = load(valid);
        expect(config.cluster).toEqual({ provider: "kubeconfig", kubeconfigPath: "", context: "" });
        expect(config.mail).toEqual({
            namespace: "mail",
            hostname: "mail.example.com",
            domains: ["example.com", "example.org"],
            postmaster: "postmaster@example.com",
        });
        expect(config.images).toEqual({ registry: "mail", tag: "dev", digests: {}, pullPolicy: "IfNotPresent" });
    });

    it("picks the provider's default node size", () => {
        expect(load({ ...valid, clusterProvider: "digitalocean" }).cluster).toMatchObject({ nodeSize: "s-2vcpu-4gb", region: "nyc3", nodeCount: 1 });
        expect(load({ ...valid, clusterProvider: "gke" }).cluster).toMatchObject({ machineType: "e2-small", zone: "us-central1-a", deletionProtection: true });
        expect(load({ ...valid, clusterProvider: "gke", clusterNodeSize: "e2-standard-2" }).cluster).toMatchObject({ machineType: "e2-standard-2" });
    });

    it("metrics and webmail are off unless enabled; the webmail defaults to the mail host name", () => {
        expect(load(valid)).toMatchObject({ metrics: undefined, webmail: undefined });
        expect(load({ ...valid, metricsEnabled: true, webmailEnabled: true })).toMatchObject({
            metrics: { namespace: "monitoring", prometheusOperator: false, monitorLabels: { release: "kube-prometheus-stack" } },
            webmail: { hostname: "mail.example.com" },
        });
        expect(load({ ...valid, webmailEnabled: true, webmailHostname: "webmail.example.com" }).webmail).toEqual({ hostname: "webmail.example.com" });
    });

    it("is deeply frozen", () => {
        const config = load(valid);
        expect(Object.isFrozen(config)).toBe(true);
        expect(Object.isFrozen(config.mail.domains)).toBe(true);
    });

    it.each([
        [{ clusterProvider: "aws" }, 'mail:clusterProvider = "aws" is not allowed: expected one of digitalocean, gke, kubeconfig'],
        [
            { clusterProvider: "digitalocean", clusterRegion: "new-york" },
            'mail:clusterRegion = "new-york" is not allowed: expected a DigitalOcean region slug such as nyc3, ams3 or fra1',
        ],
        [
            { clusterProvider: "gke", clusterZone: "us-central1" },
            'mail:clusterZone = "us-central1" is not allowed: that is a region; a zonal cluster needs a zone such as us-central1-a',
        ],
        [{ clusterProvider: "gke", clusterZone: "mars" }, 'mail:clusterZone = "mars" is not allowed: expected a GCP zone such as us-central1-a'],
        [{ clusterProvider: "digitalocean", clusterNodeCount: 0 }, 'mail:clusterNodeCount = "0" is not allowed: expected a whole number from 1 to 100'],
        [{ clusterProvider: "gke", clusterNodeCount: "two" }, 'mail:clusterNodeCount = "two" is not allowed: expected a whole number from 1 to 100'],
        [{ clusterProvider: "gke", clusterDeletionProtection: "yes" }, 'mail:clusterDeletionProtection = "yes" is not allowed: expected true or false'],
        [
            { clusterProvider: "digitalocean", clusterVersionPrefix: "latest" },
            'mail:clusterVersionPrefix = "latest" is not allowed: expected empty (newest) or a version prefix such as 1.34',
        ],
        [
            { clusterProvider: "digitalocean", clusterMaintenanceStartTime: "4am" },
            'mail:clusterMaintenanceStartTime = "4am" is not allowed: expected a UTC time HH:MM such as 04:00',
        ],
        [
            { clusterProvider: "digitalocean", clusterName: "Mail_1" },
            'mail:clusterName = "Mail_1" is not allowed: expected lowercase letters, digits and dashes',
        ],
        [{ mailHostname: "mail" }, 'mail:mailHostname = "mail" is not allowed: expected a fully qualified lowercase host name such as mail.example.com'],
        [{ mailHostname: "-mail.example.com" }, 'mail:mailHostname = "-mail.example.com" is not allowed: expected a fully qualified'],
        [{ mailDomains: ["example.com", "bad domain"] }, 'mail:mailDomains[1] = "bad domain" is not allowed: expected a fully qualified'],
        [{ mailDomains: ["example.com", "example.com"] }, "mail:mailDomains lists example.com twice"],
        [{ mailDomains: "example.com" }, 'mail:mailDomains = "example.com" is not allowed: expected a list'],
        [
            { mailPostmaster: "postmaster" },
            'mail:mailPostmaster = "postmaster" is not allowed: expected a lowercase email address such as postmaster@example.com',
        ],
        [{ mailPostmaster: "Postmaster@example.com" }, 'mail:mailPostmaster = "Postmaster@example.com" is not allowed: expected a lowercase email address'],
        [{ edgeProxyTrustedNetworks: ["fff:/64"] }, 'mail:edgeProxyTrustedNetworks[0] = "fff:/64" is not allowed: expected a CIDR network'],
        [{ couchdbImage: "couchdb:latest" }, 'mail:couchdbImage = "couchdb:latest" is not allowed: expected an image pinned by version'],
        [{ imagesPullPolicy: "sometimes" }, 'mail:imagesPullPolicy = "sometimes" is not allowed: expected one of Always, IfNotPresent, Never'],
        [{ imagesTag: "a b" }, 'mail:imagesTag = "a b" is not allowed: expected an image tag'],
        [{ mailHostName: "mail.example.com" }, "mail:mailHostName is not a known key; did you mean mailHostname?"],
        [{ metricsNamespace: "Monitoring" }, 'mail:metricsNamespace = "Monitoring" is not allowed: expected lowercase letters'],
        [{ metricsMonitorLabels: { "bad key!": "x" } }, "mail:metricsMonitorLabels.bad key! is not allowed: expected a label key"],
        [
            { metricsMonitorLabels: { release: "kube prometheus" } },
            'mail:metricsMonitorLabels.release = "kube prometheus" is not allowed: expected a label value',
        ],
        [{ webmailHostname: "webmail" }, 'mail:webmailHostname = "webmail" is not allowed: expected a fully qualified'],
    ])("rejects %j naming the key, the value and what is allowed", (bad, message) => {
        expect(() => load({ ...valid, ...bad })).toThrow(message);
    });

    it("requires the mail hostname and at least one domain", () => {
        expect(() => load({ mailDomains: ["example.com"] })).toThrow(/^mail:mailHostname is required/);
        expect(() => load({ mailHostname: "mail.example.com" })).toThrow(/^mail:mailDomains is required/);
        expect(() => load({ ...valid, mailDomains: [] })).toThrow("mail:mailDomains needs at least 1 item(s)");
    });
});

describe("declared keys", () => {
    const declared = declaredKeys();

    it("every key the program reads is declared, and every declared key is read by some stack", () => {
        const read = new Set<string>();
        const readAsSecret = new Set<string>();
        const variants: Record<string, unknown>[] = [
            { clusterProvider: "digitalocean" },
            { clusterProvider: "gke" },
            { clusterProvider: "kubeconfig" },
            { clusterProvider: "kubeconfig", tlsMode: "secret", tlsSecretName: "my-cert" },
            { clusterProvider: "digitalocean", tlsMode: "acme", dnsManage: true, tlsAcmeDigitaloceanToken: "t" },
        ];
        for (const variant of variants) {
            withConfig({ ...valid, ...variant });
            const reader = new ConfigReader();
            loadConfig(reader);
            reader.read.forEach((k) => read.add(k));
            reader.readAsSecret.forEach((k) => readAsSecret.add(k));
        }
        expect([...read].sort()).toEqual(Object.keys(declared).sort());
        expect([...readAsSecret].sort()).toEqual([...SECRET_KEYS].sort());
    });

    it("every declared key has a type, a description, and a default that matches the type", () => {
        for (const [key, d] of Object.entries(declared)) {
            expect({ key, description: typeof d.description }).toEqual({ key, description: "string" });
            expect(["string", "integer", "boolean", "array", "object"]).toContain(d.type);
            if (d.default !== undefined) {
                const actual = Array.isArray(d.default) ? "array" : Number.isInteger(d.default) ? "integer" : typeof d.default;
                expect({ key, type: actual }).toEqual({ key, type: d.type });
            }
        }
    });

    it("README documents exactly the declared keys", () => {
        const readmePath = path.join(__dirname, "..", "..", "README.md");
        const readme = fs.readFileSync(readmePath, "utf8");
        const table = configKeysTable(declared);
        const start = readme.indexOf(DOCS_BEGIN);
        const end = readme.indexOf(DOCS_END);
        expect(start).toBeGreaterThanOrEqual(0);
        expect(end).toBeGreaterThan(start);
        const current = readme.slice(start, end + DOCS_END.length);
        if (current !== table && process.env.UPDATE_DOCS === "1") {
            fs.writeFileSync(readmePath, readme.replace(current, table));
            return;
        }
        expect(current).toBe(table);
    });
});
