// The program deployed like `pulumi up` (engine await order, Pod Security admission, scheduling; no pods run) for
// every clusterProvider × edgeMode × tlsMode × dnsManage combination the config reader accepts. The reader itself
// decides which combinations are refused; those are listed as skipped, with its reason.
import * as pulumi from "@pulumi/pulumi";
import { ConfigError } from "../../components/config/checks";
import { loadConfig } from "../../components/config/load";
import { allProfiles, Profile, profileValues } from "../config/profiles";
import { deployProgram } from "../kit/cluster/deploy";
import type { KubeObject } from "../kit/cluster/objects";
import { clusterProfile } from "../kit/cluster/profiles";
import { schemaErrors } from "../kit/k8s-schema";
import { fakeKubeconfig } from "../kit/program";

const kubeconfigFile = fakeKubeconfig();

/** The stack config for a profile, as the program reads it (`--secret` values in plain text under mocks). */
function stackConfig(p: Profile): Record<string, unknown> {
    const values = Object.fromEntries(Object.entries(profileValues(p)).map(([k, v]) => [k, v && typeof v === "object" && "secret" in v ? v.secret : v]));
    return {
        ...values,
        ...(p.clusterProvider === "kubeconfig" ? { clusterKubeconfig: kubeconfigFile } : {}),
        // The cloud providers' own credentials, as `pulumi config set --secret <cloud>:token` would give them.
        ...(p.clusterProvider === "digitalocean" ? { "digitalocean:token": "mock-do-token" } : {}),
    };
}

/** Why the config reader refuses the profile, or undefined when it accepts it. */
function refusal(config: Record<string, unknown>): string | undefined {
    pulumi.runtime.setAllConfig(
        Object.fromEntries(Object.entries(config).map(([k, v]) => [k.includes(":") ? k : `mail:${k}`, typeof v === "string" ? v : JSON.stringify(v)])),
    );
    try {
        loadConfig();
        return undefined;
    } catch (e) {
        if (e instanceof ConfigError) return e.message;
        throw e;
    }
}

/**
 * What the user made before `pulumi up`: tlsMode secret names "your kubernetes.io/tls Secret in the mail namespace"
 * (README), so that namespace and the Secret exist first.
 */
function existingObjects(p: Profile, config: Record<string, unknown>): KubeObject[] {
    if (p.tlsMode !== "secret") return [];
    const namespace = typeof config.mailNamespace === "string" ? config.mailNamespace : "mail";
    return [
        { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
        {
            apiVersion: "v1",
            kind: "Secret",
            type: "kubernetes.io/tls",
            metadata: { name: String(config.tlsSecretName), namespace },
            data: { "tls.crt": "", "tls.key": "" },
        },
    ];
}

const name = (p: Profile) => `${p.clusterProvider} + ${p.edgeMode} + tls ${p.tlsMode} + dnsManage ${p.dnsManage}`;
const profiles = allProfiles()
    .map((p) => ({ p, config: stackConfig(p) }))
    .map((x) => ({ ...x, refused: refusal(x.config) }));

async function expectDeploys(p: Profile, config: Record<string, unknown>): Promise<void> {
    // HTTP-01 on an existing cluster presumes what the README asks for: a load balancer implementation giving the
    // ingress controller a public address (without one, Let's Encrypt cannot reach the cluster at all).
    const kubeconfigLoadBalancer = p.clusterProvider === "kubeconfig" && p.tlsMode === "acme";
    const result = await deployProgram(config, {
        profile: clusterProfile(config, { existingObjects: existingObjects(p, config), kubeconfigLoadBalancer }),
        quietMs: 20,
    });
    expect(result.programErrors).toEqual([]);
    expect(result.failures).toEqual([]);
    expect(schemaErrors(result.resources)).toEqual([]);
}

describe("deploy matrix (engine await order, Pod Security admission, scheduling)", () => {
    for (const { p, config, refused } of profiles) {
        if (refused) {
            it.skip(`${name(p)} — refused by the config reader: ${refused}`, () => undefined);
            continue;
        }
        it(`${name(p)} deploys: every await completes, no admission or scheduling error, every object schema-valid`, () => expectDeploys(p, config));
    }
});

// Two nodes: pods spread (the scheduler's least-allocated choice), so volume topology and pod affinity matter.
describe("deploy matrix on two nodes", () => {
    for (const clusterProvider of ["digitalocean", "gke"] as const) {
        const p: Profile = { clusterProvider, edgeMode: "loadbalancer", tlsMode: "selfsigned", dnsManage: false };
        it(`${name(p)} + clusterNodeCount 2 deploys`, () => expectDeploys(p, { ...stackConfig(p), clusterNodeCount: 2 }));
    }
});

/** kube-prometheus-stack's CRDs, as a cluster where the Prometheus Operator is installed has them. */
const PROMETHEUS_OPERATOR_CRDS: KubeObject[] = [
    ["ServiceMonitor", "servicemonitors"],
    ["PrometheusRule", "prometheusrules"],
].map(([kind, plural]) => ({
    apiVersion: "apiextensions.k8s.io/v1",
    kind: "CustomResourceDefinition",
    metadata: { name: `${plural}.monitoring.coreos.com` },
    spec: { group: "monitoring.coreos.com", names: { kind, plural } },
}));

// The optional services on: metrics with the Operator's objects, and the webmail through every edge that carries it.
describe("deploy matrix with metricsEnabled (Prometheus Operator) and webmailEnabled", () => {
    const cases: Profile[] = [
        { clusterProvider: "digitalocean", edgeMode: "loadbalancer", tlsMode: "selfsigned", dnsManage: false },
        { clusterProvider: "digitalocean", edgeMode: "hostport", tlsMode: "selfsigned", dnsManage: false },
        { clusterProvider: "digitalocean", edgeMode: "ingress-nginx", tlsMode: "acme", dnsManage: false },
        { clusterProvider: "gke", edgeMode: "loadbalancer", tlsMode: "selfsigned", dnsManage: false },
        { clusterProvider: "kubeconfig", edgeMode: "loadbalancer", tlsMode: "secret", dnsManage: false },
    ];
    const optional = { metricsEnabled: true, metricsPrometheusOperator: true, webmailEnabled: true };
    for (const p of cases) {
        it(`${name(p)} deploys with metrics and webmail`, async () => {
            const config = { ...stackConfig(p), ...optional };
            const result = await deployProgram(config, {
                profile: clusterProfile(config, { existingObjects: [...existingObjects(p, config), ...PROMETHEUS_OPERATOR_CRDS] }),
                quietMs: 20,
            });
            expect(result.programErrors).toEqual([]);
            expect(result.failures).toEqual([]);
            expect(schemaErrors(result.resources)).toEqual([]);
        });
    }

    it("fails like `pulumi up` where the Operator's CRDs are missing", async () => {
        const p: Profile = { clusterProvider: "digitalocean", edgeMode: "loadbalancer", tlsMode: "selfsigned", dnsManage: false };
        const config = { ...stackConfig(p), ...optional };
        const result = await deployProgram(config, { profile: clusterProfile(config), quietMs: 20 });
        expect(result.failures.join("\n")).toMatch(/no matches for kind "ServiceMonitor" in version "monitoring.coreos.com\/v1"/);
    });
});
