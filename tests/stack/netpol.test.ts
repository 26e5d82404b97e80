// The NetworkPolicies the program declares, evaluated with the NetworkPolicy API's rules: every path the mail
// system needs is allowed, and every listener without credentials of its own refuses everyone else.
import { selects } from "../kit/cluster/objects";
import { kubernetesObjects, unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";
import { COUCHDB_LISTENERS } from "../../components/couchdb";
import { COUCHMAIL } from "../../components/couchmail";
import { SCRAPE_TARGETS } from "../../components/monitoring/metrics";
import { DOVECOT_LISTENERS } from "../../components/dovecot/config";
import { OPENDKIM_LISTENERS } from "../../components/opendkim/config";
import { POSTFIX_LISTENERS } from "../../components/postfix/config";
import { POSTGREY_LISTENERS } from "../../components/postgrey/config";
import { SPAMD_LISTENERS } from "../../components/spamassassin/config";

/* eslint-disable @typescript-eslint/no-explicit-any -- NetworkPolicy objects as declared */
type Labels = Record<string, string>;
/** A pod (namespace + labels + address) or an address outside the cluster. */
interface Endpoint {
    namespace?: string;
    labels?: Labels;
    ip: string;
}

function inCidr(ip: string, cidr: string): boolean {
    const [net, bits] = cidr.split("/");
    const n = (a: string) => a.split(".").reduce((acc, o) => acc * 256 + Number(o), 0);
    const mask = Number(bits) === 0 ? 0 : 2 ** 32 - 2 ** (32 - Number(bits));
    return (n(ip) & mask) >>> 0 === (n(net) & mask) >>> 0;
}

/**
 * A peer of a rule matches the other end (kubernetes.io/docs/concepts/services-networking/network-policies):
 * podSelector alone = pods of the policy's namespace; namespaceSelector (+ podSelector) = pods of matching
 * namespaces; ipBlock = addresses (meant for outside the cluster; pods are matched by selectors).
 */
function peerMatches(peer: any, policyNs: string, other: Endpoint): boolean {
    if (peer.ipBlock)
        return other.namespace === undefined && inCidr(other.ip, peer.ipBlock.cidr) && !(peer.ipBlock.except ?? []).some((c: string) => inCidr(other.ip, c));
    if (other.namespace === undefined) return false;
    const nsOk = peer.namespaceSelector ? selects(peer.namespaceSelector, { "kubernetes.io/metadata.name": other.namespace }) : other.namespace === policyNs;
    return nsOk && (peer.podSelector ? selects(peer.podSelector, other.labels) : true);
}

/** Whether `pod` lets this direction's traffic with `other` on `port` through: isolated only once a policy of that type selects it. */
function allows(policies: any[], pod: Endpoint, other: Endpoint, port: number, direction: "Ingress" | "Egress"): boolean {
    const selecting = policies.filter(
        (p) =>
            p.metadata.namespace === pod.namespace && selects(p.spec.podSelector ?? {}, pod.labels) && (p.spec.policyTypes ?? ["Ingress"]).includes(direction),
    );
    if (selecting.length === 0) return true;
    return selecting.some((p) =>
        ((direction === "Ingress" ? p.spec.ingress : p.spec.egress) ?? []).some((rule: any) => {
            const portOk = !rule.ports || rule.ports.some((rp: any) => rp.port === port && (rp.protocol ?? "TCP") === "TCP");
            const peers = direction === "Ingress" ? rule.from : rule.to;
            return portOk && (!peers || peers.some((peer: any) => peerMatches(peer, p.metadata.namespace, other)));
        }),
    );
}

const connects = (policies: any[], from: Endpoint, to: Endpoint, port: number) =>
    allows(policies, from, to, port, "Egress") && allows(policies, to, from, port, "Ingress");

/** The NetworkPolicies the program declares for a stack config (beside the mail host name and domain). */
async function networkPolicies(config: Record<string, unknown>): Promise<any[]> {
    const run = await runProgram({ mailHostname: "mail.example.com", mailDomains: ["example.com"], ...config });
    return kubernetesObjects(run.recorder.resources)
        .map((r) => unwrapSecrets(r.inputs) as any)
        .filter((o) => o.kind === "NetworkPolicy");
}

const pod = (app: string, ip: string): Endpoint => ({ namespace: "mail", labels: { "app.kubernetes.io/name": app, "app.kubernetes.io/instance": "mail" }, ip });

describe.each([
    ["digitalocean", "loadbalancer"],
    ["digitalocean", "ingress-nginx"],
    ["gke", "loadbalancer"],
])("NetworkPolicies on %s with edge %s", (provider, edgeMode) => {
    let policies: any[];
    beforeAll(async () => {
        policies = await networkPolicies({ clusterProvider: provider, edgeMode });
    });
    const postfix = pod("postfix", "10.244.0.10");
    const dovecot = pod("dovecot", "10.244.0.11");
    const couchdb = pod("couchdb", "10.244.0.12");
    const opendkim = pod("opendkim", "10.244.0.13");
    const postgrey = pod("postgrey", "10.244.0.14");
    const spamd = pod("spamassassin", "10.244.0.15");
    const train = pod("spam-train", "10.244.0.16");
    const intruder = pod("something-else", "10.244.0.99");
    const otherNamespace: Endpoint = { namespace: "default", labels: { app: "x" }, ip: "10.244.1.5" };
    const internet: Endpoint = { ip: "198.51.100.7" };
    const ingressNginx: Endpoint = { namespace: "ingress-nginx", labels: { "app.kubernetes.io/name": "ingress-nginx" }, ip: "10.244.2.2" };
    const loadBalancer: Endpoint = { ip: "10.110.0.5" };

    it("allows every path the mail system needs", () => {
        const needed: [string, Endpoint, Endpoint, number][] = [
            ["internet → postfix:25", internet, postfix, POSTFIX_LISTENERS.smtp.port],
            ["internet → postfix:587", internet, postfix, POSTFIX_LISTENERS.submission.port],
            ["internet → dovecot:993", internet, dovecot, DOVECOT_LISTENERS.imaps.port],
            ["postfix → dovecot LMTP", postfix, dovecot, DOVECOT_LISTENERS.lmtp.port],
            ["postfix → dovecot SASL", postfix, dovecot, DOVECOT_LISTENERS.authSasl.port],
            ["postfix → opendkim", postfix, opendkim, OPENDKIM_LISTENERS.milter.port],
            ["postfix → postgrey", postfix, postgrey, POSTGREY_LISTENERS.policy.port],
            ["postfix's couchmail → couchdb", postfix, couchdb, COUCHDB_LISTENERS.http.port],
            ["dovecot's couchmail → couchdb", dovecot, couchdb, COUCHDB_LISTENERS.http.port],
            ["dovecot → spamd", dovecot, spamd, SPAMD_LISTENERS.spamd.port],
            ["spam-train → spamd", train, spamd, SPAMD_LISTENERS.spamd.port],
            ["postfix → another MX:25", postfix, internet, 25],
            ["postfix → smarthost:587", postfix, internet, 587],
        ];
        const edgeSource = edgeMode === "ingress-nginx" ? ingressNginx : loadBalancer;
        if (provider === "digitalocean" || edgeMode === "ingress-nginx") {
            needed.push(
                ["edge → postfix PROXY 25", edgeSource, postfix, POSTFIX_LISTENERS.smtp.proxy.port],
                ["edge → dovecot PROXY 993", edgeSource, dovecot, DOVECOT_LISTENERS.imaps.proxy.port],
            );
        }
        for (const [what, from, to, port] of needed) expect({ what, allowed: connects(policies, from, to, port) }).toEqual({ what, allowed: true });
        // Every pod resolves names.
        for (const p of [postfix, dovecot, couchdb, opendkim, postgrey, spamd, train, intruder]) expect(allows(policies, p, internet, 53, "Egress")).toBe(true);
    });

    it("refuses everyone else at the listeners without credentials, and limits what each pod may reach", () => {
        const forbidden: [string, Endpoint, Endpoint, number][] = [
            ["another pod → couchdb", intruder, couchdb, COUCHDB_LISTENERS.http.port],
            ["another namespace → couchdb", otherNamespace, couchdb, COUCHDB_LISTENERS.http.port],
            ["another pod → dovecot LMTP", intruder, dovecot, DOVECOT_LISTENERS.lmtp.port],
            ["another pod → dovecot SASL", intruder, dovecot, DOVECOT_LISTENERS.authSasl.port],
            ["another pod → opendkim", intruder, opendkim, OPENDKIM_LISTENERS.milter.port],
            ["another pod → spamd", intruder, spamd, SPAMD_LISTENERS.spamd.port],
            ["another pod → postgrey", intruder, postgrey, POSTGREY_LISTENERS.policy.port],
            ["another pod → postfix PROXY port", intruder, postfix, POSTFIX_LISTENERS.smtp.proxy.port],
            ["another namespace → dovecot PROXY port", otherNamespace, dovecot, DOVECOT_LISTENERS.imaps.proxy.port],
            ["internet → couchdb", internet, couchdb, COUCHDB_LISTENERS.http.port],
            ["dovecot → opendkim", dovecot, opendkim, OPENDKIM_LISTENERS.milter.port],
            ["couchdb → the internet", couchdb, internet, 443],
            ["spamd → the internet", spamd, internet, 80],
            ["dovecot → another MX:25", dovecot, internet, 25],
            ["an unlisted pod → couchdb", intruder, couchdb, COUCHDB_LISTENERS.http.port],
            ["an unlisted pod → the internet", intruder, internet, 443],
            ["anyone → an unlisted pod", internet, intruder, 8080],
        ];
        for (const [what, from, to, port] of forbidden) expect({ what, allowed: connects(policies, from, to, port) }).toEqual({ what, allowed: false });
    });
});

describe("NetworkPolicies with metricsEnabled", () => {
    let policies: any[];
    beforeAll(async () => {
        policies = await networkPolicies({ clusterProvider: "digitalocean", metricsEnabled: true });
    });
    const postfix = pod("postfix", "10.244.0.10");
    const dovecot = pod("dovecot", "10.244.0.11");
    const couchdb = pod("couchdb", "10.244.0.12");
    const prometheus: Endpoint = { namespace: "monitoring", labels: { "app.kubernetes.io/name": "prometheus" }, ip: "10.244.3.3" };
    const intruder = pod("something-else", "10.244.0.99");
    const otherNamespace: Endpoint = { namespace: "default", labels: { app: "x" }, ip: "10.244.1.5" };
    const metricsPorts: [string, Endpoint, number][] = [
        ["dovecot", dovecot, SCRAPE_TARGETS.dovecot.port.number],
        ["dovecot's couchmail", dovecot, SCRAPE_TARGETS.couchmail.port.number],
        ["postfix's couchmail", postfix, SCRAPE_TARGETS.couchmail.port.number],
        ["postfix's exporter", postfix, SCRAPE_TARGETS.postfix.port.number],
        ["couchdb", couchdb, SCRAPE_TARGETS.couchdb.port.number],
    ];

    it("admits the scraper's namespace to every metrics port", () => {
        for (const [what, target, port] of metricsPorts)
            expect({ what, allowed: connects(policies, prometheus, target, port) }).toEqual({ what, allowed: true });
    });

    it("admits no one else to them, and the scraper to nothing else", () => {
        for (const [what, target, port] of metricsPorts) {
            for (const [who, from] of [
                ["a pod of the mail namespace", intruder],
                ["another namespace", otherNamespace],
            ] as const) {
                expect({ what, who, allowed: connects(policies, from, target, port) }).toEqual({ what, who, allowed: false });
            }
        }
        const closed: [string, Endpoint, number][] = [
            ["couchdb's API", couchdb, COUCHDB_LISTENERS.http.port],
            ["dovecot LMTP", dovecot, DOVECOT_LISTENERS.lmtp.port],
            ["dovecot SASL", dovecot, DOVECOT_LISTENERS.authSasl.port],
            ["couchmail's lookups", dovecot, COUCHMAIL.httpPort],
        ];
        for (const [what, target, port] of closed) expect({ what, allowed: connects(policies, prometheus, target, port) }).toEqual({ what, allowed: false });
    });
});
