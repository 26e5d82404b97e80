// The stack plan is pure: how services find each other, which ports each pod may open and accept, and what the
// edge sends where are checked here for every accepted profile and option, without an engine.
import * as pulumi from "@pulumi/pulumi";
import fc from "fast-check";
import { loadConfig } from "../../components/config/load";
import { COUCHDB_LISTENERS } from "../../components/couchdb";
import { COUCHMAIL } from "../../components/couchmail";
import { DOVECOT_LISTENERS } from "../../components/dovecot/config";
import { OPENDKIM_LISTENERS } from "../../components/opendkim/config";
import { parseEndpoint, Listener } from "../../components/render";
import { StackPlan, stackPlan } from "../../components/plan";
import { POSTGREY_LISTENERS } from "../../components/postgrey/config";
import { SPAMD_LISTENERS } from "../../components/spamassassin/config";
import { allProfiles, mockConfig, profileValues, refusal, StackValues } from "../config/profiles";

function planFor(values: StackValues): StackPlan {
    pulumi.runtime.setAllConfig(mockConfig(values));
    const config = loadConfig();
    return stackPlan({ ...config, clusterProvider: config.cluster.provider });
}

const LISTENERS: Record<string, readonly Listener[]> = {
    couchdb: Object.values(COUCHDB_LISTENERS),
    dovecot: Object.values(DOVECOT_LISTENERS),
    opendkim: Object.values(OPENDKIM_LISTENERS),
    postgrey: Object.values(POSTGREY_LISTENERS),
    spamassassin: Object.values(SPAMD_LISTENERS),
};

/** Each workload's egress rules, by app name. */
const egressOf = (plan: StackPlan) => ({ postfix: plan.postfix.egress, dovecot: plan.dovecot.egress });

const port = (endpoint: string) => {
    const e = parseEndpoint("endpoint", endpoint);
    if (e.kind !== "inet") throw new Error(`${endpoint} is not inet`);
    return e;
};

const options = fc.record({ spamEnabled: fc.boolean(), greylistEnabled: fc.boolean() });
const profiles = allProfiles().filter((p) => !refusal(p));

/** Checks `property` on the plans of 60 drawn cluster profiles, spam filtering and greylisting each on or off. */
const forEveryPlan = (property: (plan: StackPlan, opts: { spamEnabled: boolean; greylistEnabled: boolean }) => void): void =>
    fc.assert(
        fc.property(fc.constantFrom(...profiles), options, (profile, opts) => property(planFor({ ...profileValues(profile), ...opts }), opts)),
        { numRuns: 60 },
    );

describe("stack plan", () => {
    it("Postfix reaches Dovecot's SASL and LMTP, OpenDKIM's milter, Postgrey and couchmail where they listen", () => {
        forEveryPlan((plan, opts) => {
            const s = plan.postfix.settings;
            expect(port(s.saslEndpoint)).toEqual({ kind: "inet", host: "dovecot", port: DOVECOT_LISTENERS.authSasl.port });
            expect(port(s.lmtpEndpoint)).toEqual({ kind: "inet", host: "dovecot", port: DOVECOT_LISTENERS.lmtp.port });
            expect(s.milters.map(port)).toEqual([{ kind: "inet", host: "opendkim", port: OPENDKIM_LISTENERS.milter.port }]);
            expect(port(s.socketmap)).toEqual({ kind: "inet", host: "127.0.0.1", port: COUCHMAIL.socketmapPort });
            expect(s.policyService && port(s.policyService)).toEqual(
                opts.greylistEnabled ? { kind: "inet", host: "postgrey", port: POSTGREY_LISTENERS.policy.port } : undefined,
            );
            expect(plan.postgrey !== undefined).toBe(opts.greylistEnabled);
        });
    });

    it("Dovecot reaches couchmail in its pod and spamd where it listens, only with spam scanning on", () => {
        forEveryPlan((plan, opts) => {
            const s = plan.dovecot.settings;
            expect(s.couchmailUrl).toBe(`http://127.0.0.1:${COUCHMAIL.httpPort}`);
            expect(s.dictSocket).toBe(COUCHMAIL.dictSocket);
            expect(s.luaFile).toBe(`${COUCHMAIL.luaMountDir}/${COUCHMAIL.luaFile}`);
            expect(s.spamScan && { host: s.spamScan.spamdHost, port: s.spamScan.spamdPort }).toEqual(
                opts.spamEnabled ? { host: "spamassassin", port: SPAMD_LISTENERS.spamd.port } : undefined,
            );
            expect(s.spamToJunk).toBe(opts.spamEnabled);
            expect(plan.spamassassin !== undefined).toBe(opts.spamEnabled);
        });
    });

    it("every connection a pod may open is one its peer accepts from it, and every peer exists", () => {
        forEveryPlan((plan) => {
            const deployed = new Set([
                "postfix",
                "dovecot",
                "couchdb",
                "opendkim",
                ...(plan.postgrey ? ["postgrey"] : []),
                ...(plan.spamassassin ? ["spamassassin"] : []),
            ]);
            for (const [app, rules] of Object.entries(egressOf(plan))) {
                for (const rule of rules) {
                    for (const peer of rule.peers ?? []) {
                        if (!("apps" in peer)) continue;
                        for (const target of peer.apps) {
                            expect(deployed.has(target)).toBe(true);
                            for (const p of rule.ports) {
                                const listener = LISTENERS[target].find((l) => l.port === p);
                                expect({ app, target, port: p, accepted: listener !== undefined && (listener.clients ?? [app]).includes(app) }).toEqual({
                                    app,
                                    target,
                                    port: p,
                                    accepted: true,
                                });
                            }
                        }
                    }
                }
            }
        });
    });

    it("PROXY twins and node ports follow the edge: PROXY only where the edge sends it, trusted only from the edge", () => {
        for (const profile of profiles) {
            const plan = planFor(profileValues(profile));
            expect(plan.postfix.settings.proxyProtocol).toBe(plan.edge.backendProxy);
            expect(plan.dovecot.settings.proxyProtocol).toBe(plan.edge.backendProxy);
            expect(plan.dovecot.settings.haproxyTrustedNetworks.length > 0).toBe(plan.edge.backendProxy);
            expect(plan.postfix.hostPorts).toBe(profile.edgeMode === "hostport");
            expect(plan.dovecot.hostPorts).toBe(profile.edgeMode === "hostport");
            expect(plan.podSecurity).toBe(profile.edgeMode === "hostport" ? "privileged" : "baseline");
            expect(plan.proxySources).toEqual(
                profile.edgeMode === "ingress-nginx"
                    ? [{ namespace: "ingress-nginx", podLabels: { "app.kubernetes.io/name": "ingress-nginx" } }]
                    : [{ cidrs: ["10.0.0.0/8"] }],
            );
        }
    });

    it("takes every configurable value from the stack config, whose defaults live in Pulumi.yaml only", () => {
        const plan = planFor({
            ...profileValues(profiles[0]),
            postfixMessageSizeLimit: 10485760,
            postfixDnsbls: ["bl.example.net*2"],
            dovecotJunkAutoexpunge: "7d",
            dovecotMaxUserIpConnections: 9,
            spamRequiredScore: "6.5",
            spamMaxChildren: 3,
            greylistDelay: 60,
            dkimSelector: "k2",
        });
        expect(plan.postfix.settings).toMatchObject({ messageSizeLimit: 10485760, dnsbls: ["bl.example.net*2"] });
        expect(plan.dovecot.settings).toMatchObject({ junkAutoexpunge: "7d", maxUserIpConnections: 9 });
        expect(plan.dovecot.delivery.messageSizeLimit).toBe(10485760);
        expect(plan.spamassassin?.settings).toMatchObject({ requiredScore: 6.5, maxChildren: 3 });
        expect(plan.postgrey?.settings.delaySeconds).toBe(60);
        expect(plan.opendkim.settings.selector).toBe("k2");
        expect(plan.dns.dkimSelector).toBe("k2");
    });

    it("warns when the postmaster's domain is not ours: other domains' DMARC reports then need its consent record", () => {
        const ours = planFor({ ...profileValues(profiles[0]), mailDomains: ["example.com", "example.org"] });
        expect(ours.warnings.filter((w) => w.includes("_report._dmarc"))).toEqual([]);
        const foreign = planFor({ ...profileValues(profiles[0]), mailDomains: ["example.com", "example.org"], mailPostmaster: "me@elsewhere.example" });
        expect(foreign.warnings.filter((w) => w.includes("_report._dmarc"))).toEqual([
            expect.stringContaining("example.com._report._dmarc.elsewhere.example, example.org._report._dmarc.elsewhere.example"),
        ]);
    });

    it("couchmail's clients reach CouchDB at its listener", () => {
        const plan = planFor(profileValues(profiles[0]));
        expect(plan.postfix.egress).toContainEqual({ ports: [COUCHDB_LISTENERS.http.port], peers: [{ apps: ["couchdb"] }] });
        expect(plan.dovecot.egress).toContainEqual({ ports: [COUCHDB_LISTENERS.http.port], peers: [{ apps: ["couchdb"] }] });
    });
});
