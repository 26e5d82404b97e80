import { execFileSync } from "child_process";
import * as crypto from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { unwrapSecrets } from "./k8s-schema";

/** One resource the program registered, as the engine would have seen it. */
export interface RecordedResource {
    type: string;
    name: string;
    inputs: Record<string, unknown>;
    custom: boolean;
    /** URN of the parent resource ("" for the stack). */
    parent: string;
    /** Provider reference (`urn::id`) for custom resources, when one was given. */
    provider: string;
    /** URNs the resource depends on (its `dependsOn` and the resources behind the outputs it was given). */
    dependencies?: string[];
    /** Its `ignoreChanges` option (input property paths). */
    ignoreChanges?: string[];
}

/** What the monitor's registration request says beyond MockResourceArgs. */
type RegistrationDetails = Required<Pick<RecordedResource, "parent" | "dependencies" | "ignoreChanges">>;

/** A DOKS/GKE version list the invokes answer from, newest last. */
export const FAKE_VERSIONS = {
    digitalocean: ["1.32.9-do.0", "1.33.5-do.1", "1.34.1-do.2"],
    gke: ["1.32.9-gke.100", "1.33.5-gke.1200", "1.34.1-gke.1400"],
};

/** GKE release channels: their default version and every version they accept, newest first. */
export const FAKE_GKE_CHANNELS: Record<string, { default: string; valid: string[] }> = {
    RAPID: { default: "1.34.1-gke.1400", valid: ["1.34.1-gke.1400", "1.33.5-gke.1200"] },
    REGULAR: { default: "1.33.5-gke.1200", valid: ["1.33.5-gke.1200", "1.32.9-gke.100"] },
    STABLE: { default: "1.32.9-gke.100", valid: ["1.32.9-gke.100"] },
};

type Invoke = (inputs: Record<string, unknown>) => Record<string, unknown>;

const newest = (list: string[], prefix: unknown) => [...list].reverse().find((v) => v.startsWith(typeof prefix === "string" ? prefix : "")) ?? "";

/** Answers for the invokes the program uses; an invoke not listed here fails the test, naming its token. */
const INVOKES: Record<string, Invoke> = {
    "digitalocean:index/getKubernetesVersions:getKubernetesVersions": ({ versionPrefix }) => ({
        latestVersion: newest(FAKE_VERSIONS.digitalocean, versionPrefix),
        validVersions: FAKE_VERSIONS.digitalocean.filter((v) => v.startsWith(typeof versionPrefix === "string" ? versionPrefix : "")),
        versionPrefix,
    }),
    // GKE's serverConfig: the newest master version is often only in the RAPID channel (Kubernetes Engine API
    // ServerConfig.channels[]; the provider maps each channel's default and newest valid version by channel name).
    "gcp:container/getEngineVersions:getEngineVersions": ({ versionPrefix, location }) => ({
        latestMasterVersion: newest(FAKE_VERSIONS.gke, versionPrefix),
        latestNodeVersion: newest(FAKE_VERSIONS.gke, versionPrefix),
        validMasterVersions: FAKE_VERSIONS.gke,
        releaseChannelDefaultVersion: Object.fromEntries(Object.entries(FAKE_GKE_CHANNELS).map(([c, v]) => [c, v.default])),
        releaseChannelLatestVersion: Object.fromEntries(Object.entries(FAKE_GKE_CHANNELS).map(([c, v]) => [c, v.valid[0]])),
        releaseChannelUpgradeTargetVersion: Object.fromEntries(Object.entries(FAKE_GKE_CHANNELS).map(([c, v]) => [c, v.valid[0]])),
        location,
        project: "mock-project",
    }),
    // The edge reads a DigitalOcean load balancer's address by name (its Service reports the host name).
    "digitalocean:index/getLoadBalancer:getLoadBalancer": ({ name }) => ({ name, ip: FAKE_ADDRESSES.digitaloceanLb, ipv6: "" }),
    "digitalocean:index/getDroplets:getDroplets": ({ filters }) => {
        const wanted = ((filters ?? []) as { key: string; values: string[] }[]).filter((f) => f.key === "tags").flatMap((f) => f.values);
        return { droplets: FAKE_DROPLETS.filter((d) => wanted.every((t) => d.tags.includes(t))), id: "droplets" };
    },
    "digitalocean:index/getDomains:getDomains": () => ({ domains: FAKE_DNS_ZONES.map((name) => ({ name, ttl: 1800, urn: `do:domain:${name}` })) }),
    "gcp:dns/getManagedZones:getManagedZones": () => ({
        managedZones: FAKE_DNS_ZONES.map((zone) => ({
            name: zone.replace(/\./g, "-"),
            dnsName: `${zone}.`,
            id: zone,
            managedZoneId: zone,
            nameServers: [],
            description: "",
            visibility: "public",
        })),
    }),
    // The mocked zones hold only what every new zone holds (Cloud DNS: NS and SOA at the apex; DigitalOcean: NS).
    "digitalocean:index/getRecords:getRecords": ({ domain }) => ({
        domain,
        id: String(domain),
        records: ["ns1", "ns2", "ns3"].map((ns, i) => ({
            id: i + 1,
            domain,
            name: "@",
            type: "NS",
            value: `${ns}.digitalocean.com`,
            priority: 0,
            port: 0,
            ttl: 1800,
            weight: 0,
            flags: 0,
            tag: "",
        })),
    }),
    "gcp:dns/getRecordSets:getRecordSets": ({ managedZone }) => {
        const zone = FAKE_DNS_ZONES.find((z) => z.replace(/\./g, "-") === managedZone)!;
        return {
            id: String(managedZone),
            managedZone,
            project: "mock-project",
            rrsets: [
                { name: `${zone}.`, type: "NS", ttl: 21600, rrdatas: ["ns-cloud-a1.googledomains.com."] },
                {
                    name: `${zone}.`,
                    type: "SOA",
                    ttl: 21600,
                    rrdatas: ["ns-cloud-a1.googledomains.com. cloud-dns-hostmaster.google.com. 1 21600 3600 259200 300"],
                },
            ],
        };
    },
    "gcp:organizations/getClientConfig:getClientConfig": () => ({ project: "mock-project", region: "us-central1", zone: "us-central1-a", accessToken: "mock" }),
};

/** Public addresses the mocked clouds hand out. */
export const FAKE_ADDRESSES = { digitaloceanLb: "203.0.113.30", serviceLb: "203.0.113.25" };
/**
 * Droplets in the mocked DigitalOcean account: the DOKS node of stack "test" of project "mail" (with the tags DOKS
 * adds and the node pool's own), and another stack's node.
 */
export const FAKE_DROPLETS = [
    { id: 4242, name: "mail-pool-abc", region: "nyc3", ipv4Address: "203.0.113.77", tags: ["k8s", "k8s:worker", "mail-edge-mail-test"] },
    { id: 5353, name: "other-pool-xyz", region: "nyc3", ipv4Address: "203.0.113.88", tags: ["k8s", "k8s:worker", "mail-edge-mail-prod"] },
];
/** The address a mocked DigitalOcean reserved IP gets. */
export const FAKE_RESERVED_IP = "203.0.113.50";
/** The short-lived token in a mocked DOKS cluster's kubeconfig. */
export const FAKE_DOKS_SEVEN_DAY_TOKEN = "doks-token-expires-in-7-days";
/** The DigitalOcean API token the mocked runs are started with (DIGITALOCEAN_TOKEN, as the provider needs one). */
export const FAKE_DIGITALOCEAN_TOKEN = "dop_v1_mock_api_token";
/** DNS zones that exist in the mocked DigitalOcean DNS and Cloud DNS. */
export const FAKE_DNS_ZONES = ["example.com", "example.org"];

/** Pulumi's wire form of a resource reference (@pulumi/pulumi runtime/rpc.ts specialSigKey / specialResourceSig). */
const RESOURCE_REF = { key: "4dabf18193072939515e22adb298388d", sig: "5cf8f73096256a8f31e491e813e4eb8e" };

interface MockCluster {
    /** Whether something (a cloud's controller, MetalLB, k3s ServiceLB) gives LoadBalancer Services an address. */
    loadBalancerController: boolean;
}

/** Outputs real providers compute, made the way they make them where tests depend on it. */
function computedState(type: string, name: string, inputs: Record<string, unknown>, cluster: MockCluster): Record<string, unknown> {
    switch (type) {
        case "digitalocean:index/kubernetesCluster:KubernetesCluster": {
            // The cluster's credentials carry a token DigitalOcean issues for 7 days (its API's kubeconfig default).
            const server = `https://${name}.k8s.example`;
            const ca = Buffer.from("mock-doks-ca").toString("base64");
            return {
                endpoint: server,
                kubeConfigs: [
                    {
                        host: server,
                        clusterCaCertificate: ca,
                        token: FAKE_DOKS_SEVEN_DAY_TOKEN,
                        expiresAt: "2026-12-09T00:00:00Z",
                        rawConfig: `apiVersion: v1\nkind: Config\nclusters: [{name: ${name}, cluster: {server: "${server}", certificate-authority-data: ${ca}}}]\nusers: [{name: admin, user: {token: ${FAKE_DOKS_SEVEN_DAY_TOKEN}}}]\n`,
                    },
                ],
            };
        }
        case "gcp:container/cluster:Cluster": {
            // GKE refuses (HTTP 400) a cluster in a release channel whose minMasterVersion that channel does not offer.
            const channel = (inputs.releaseChannel as { channel?: string } | undefined)?.channel;
            const version = typeof inputs.minMasterVersion === "string" ? inputs.minMasterVersion : "";
            if (channel && version && !FAKE_GKE_CHANNELS[channel]?.valid.includes(version)) {
                throw new Error(
                    `gcp:container/cluster:Cluster ${name}: googleapi: Error 400: Master version "${version}" is not available in release channel ${channel}, badRequest`,
                );
            }
            return { endpoint: "203.0.113.10", masterAuth: { clusterCaCertificate: Buffer.from("mock-ca").toString("base64") } };
        }
        case "random:index/randomPassword:RandomPassword":
        case "random:index/randomString:RandomString": {
            const length = Number(inputs.length ?? 32);
            return { result: crypto.randomBytes(length).toString("base64url").slice(0, length) };
        }
        case "tls:index/privateKey:PrivateKey": {
            const { privateKey, publicKey } = crypto.generateKeyPairSync("rsa", { modulusLength: Number(inputs.rsaBits ?? 2048) });
            return {
                privateKeyPem: privateKey.export({ type: "pkcs1", format: "pem" }).toString(),
                privateKeyPemPkcs8: privateKey.export({ type: "pkcs8", format: "pem" }).toString(),
                publicKeyPem: publicKey.export({ type: "spki", format: "pem" }).toString(),
            };
        }
        case "kubernetes:core/v1:Service": {
            // A load balancer Service (or one read back, without inputs) gets an address, as the cloud would give it.
            const spec = inputs.spec as { type?: string } | undefined;
            if (spec && spec.type !== "LoadBalancer") return {};
            if (cluster.loadBalancerController) return { status: { loadBalancer: { ingress: [{ ip: FAKE_ADDRESSES.serviceLb }] } } };
            // pulumi-kubernetes awaits `.status.loadBalancer.ingress` unless skipAwait is set, and fails after its
            // timeout with this message (provider/pkg/await/service.go and its tests).
            const annotations = (inputs.metadata as { annotations?: Record<string, string> } | undefined)?.annotations ?? {};
            if (annotations["pulumi.com/skipAwait"] === "true") return { status: { loadBalancer: {} } };
            throw new Error(
                `kubernetes:core/v1:Service ${name}: timed out waiting to be Ready: Service was not allocated an IP address; does your cloud provider support this?`,
            );
        }
        case "digitalocean:index/reservedIp:ReservedIp":
            return { ipAddress: FAKE_RESERVED_IP, urn: `do:floatingip:${FAKE_RESERVED_IP}` };
        case "gcp:serviceaccount/account:Account":
            return {
                email: `${String(inputs.accountId)}@mock-project.iam.gserviceaccount.com`,
                name: `projects/mock-project/serviceAccounts/${String(inputs.accountId)}`,
            };
        case "gcp:serviceaccount/key:Key":
            return { privateKey: Buffer.from(JSON.stringify({ type: "service_account", project_id: "mock-project" })).toString("base64") };
        case "tls:index/selfSignedCert:SelfSignedCert":
            return { certPem: selfSignedCert(String(inputs.privateKeyPem), (inputs.dnsNames as string[]) ?? []) };
        default:
            return {};
    }
}

/** A real X.509 certificate for the key and names, made by openssl as the tls provider would make one. */
function selfSignedCert(privateKeyPem: string, dnsNames: string[]): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-cert-"));
    try {
        fs.writeFileSync(path.join(dir, "key.pem"), privateKeyPem, { mode: 0o600 });
        const san = dnsNames.map((n) => `DNS:${n}`).join(",");
        execFileSync(
            "openssl",
            [
                "req",
                "-x509",
                "-new",
                "-key",
                "key.pem",
                "-days",
                "365",
                "-subj",
                `/CN=${dnsNames[0] ?? "mail"}`,
                ...(san ? ["-addext", `subjectAltName=${san}`] : []),
                "-out",
                "cert.pem",
            ],
            { cwd: dir, stdio: "pipe" },
        );
        return fs.readFileSync(path.join(dir, "cert.pem"), "utf8");
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

/**
 * Records every resource (type, name, inputs, parent, provider) and answers the invokes we use.
 * Install it with `await MockRecorder.install()` *before* importing the program.
 */
export class MockRecorder implements pulumi.runtime.Mocks {
    readonly resources: RecordedResource[] = [];
    /** Every invoke (data source read) the program made, in order. */
    readonly invokes: { token: string; inputs: Record<string, unknown> }[] = [];
    private pendingDetails = new Map<string, RegistrationDetails>();
    /** The stack config the program runs with (`mail:key` → raw string), for the cloud behaviour that depends on it. */
    private config: Record<string, string> = {};

    static async install(config: Record<string, unknown>, opts: { stack?: string; preview?: boolean } = {}): Promise<MockRecorder> {
        const recorder = new MockRecorder();
        const all: Record<string, string> = {};
        for (const [key, value] of Object.entries(config)) {
            all[key.includes(":") ? key : `mail:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
        }
        // A DigitalOcean stack runs with an API token in the environment or in `digitalocean:token`.
        if (all["mail:clusterProvider"] === "digitalocean" && !("digitalocean:token" in all)) all["digitalocean:token"] = FAKE_DIGITALOCEAN_TOKEN;
        pulumi.runtime.setAllConfig(all);
        recorder.config = all;
        await pulumi.runtime.setMocks(recorder, "mail", opts.stack ?? "test", opts.preview ?? false);
        recorder.captureParents();
        return recorder;
    }

    newResource(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
        const key = `${args.type}::${args.name}`;
        this.resources.push({
            type: args.type,
            name: args.name,
            inputs: args.inputs,
            custom: args.custom ?? false,
            provider: args.provider ?? "",
            ...(this.pendingDetails.get(key) ?? { parent: "", dependencies: [], ignoreChanges: [] }),
        });
        this.pendingDetails.delete(key);
        const inputs = unwrapSecrets(args.inputs) as Record<string, unknown>;
        if (args.id && args.type.startsWith("kubernetes:")) {
            // `Resource.get` reads the live object, at preview too and regardless of dependsOn; the stacks under test
            // deploy to a fresh cluster, which holds none of the objects the program would read.
            throw new Error(`reading ${args.type} ${args.id}: not found (a fresh cluster has no such object, and reads run before anything is created)`);
        }
        if (args.type === "kubernetes:helm.sh/v4:Chart") return { id: undefined, state: { ...args.inputs, resources: this.renderChart(args.name, inputs) } };
        const state = { ...args.inputs, ...computedState(args.type, args.name, inputs, this.cluster()) };
        return { id: args.custom ? `${args.name}-id` : undefined, state };
    }

    call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
        this.invokes.push({ token: args.token, inputs: args.inputs });
        const invoke = INVOKES[args.token];
        if (!invoke) throw new Error(`the test mocks do not answer invoke ${args.token}; add it to tests/kit/mocks.ts`);
        return invoke(args.inputs);
    }

    ofType(type: string): RecordedResource[] {
        return this.resources.filter((r) => r.type === type);
    }

    one(type: string, name?: string): RecordedResource {
        const found = this.ofType(type).filter((r) => name === undefined || r.name === name);
        if (found.length !== 1) throw new Error(`expected one ${type}${name ? ` named ${name}` : ""}, found ${found.map((r) => r.name).join(", ") || "none"}`);
        return found[0];
    }

    /** URN of a recorded resource: parents are matched by it. */
    urnOf(r: Pick<RecordedResource, "type" | "name">): string {
        const monitor = pulumi.runtime.getMonitor() as unknown as { resources: Map<string, unknown> };
        const suffix = `${r.type}::${r.name}`;
        const urns = [...monitor.resources.keys()].filter((urn) => urn.endsWith(suffix) && /[:$]$/.test(urn.slice(0, -suffix.length)));
        if (urns.length !== 1) throw new Error(`no unique URN for ${suffix}`);
        return urns[0];
    }

    /** What kind of cluster the program deploys to, as the mocked clouds behave. */
    private cluster(): MockCluster {
        const provider = this.config["mail:clusterProvider"] ?? "kubeconfig";
        // An existing cluster is modelled as kind/minikube: no controller ever gives a LoadBalancer Service an address.
        return { loadBalancerController: provider !== "kubeconfig" };
    }

    /**
     * A `helm.v4.Chart` as the provider reports it: its `resources` output holds references to the objects it rendered,
     * registered as the chart's children and named `<chart resource name>:<namespace>/<name>` (the default
     * resourcePrefix; pulumi-kubernetes sdk/nodejs/helm/v4/chart.ts). Only the objects the program reads back are
     * rendered here: ingress-nginx's controller Service (chart templates/controller-service.yaml, name
     * `<release>-controller`).
     */
    private renderChart(chartName: string, inputs: Record<string, unknown>): Record<string, unknown>[] {
        if (inputs.chart !== "ingress-nginx") return [];
        const values = (inputs.values ?? {}) as { controller?: { service?: { type?: string; annotations?: Record<string, string> } } };
        const namespace = String(inputs.namespace);
        const service = {
            apiVersion: "v1",
            kind: "Service",
            metadata: { name: `${String(inputs.name)}-controller`, namespace, annotations: values.controller?.service?.annotations ?? {} },
            spec: { type: values.controller?.service?.type ?? "LoadBalancer" },
        };
        const type = "kubernetes:core/v1:Service";
        const name = `${chartName}:${namespace}/${service.metadata.name}`;
        const monitor = pulumi.runtime.getMonitor() as unknown as { resources: Map<string, { urn: string; id: string; state: unknown }> };
        const chartUrn = [...monitor.resources.keys()].find((u) => u.endsWith(`::${chartName}`)) ?? "";
        const parentType = chartUrn ? `${chartUrn.split("::")[2]}$` : "kubernetes:helm.sh/v4:Chart$";
        const urn = `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${parentType}${type}::${name}`;
        const state = { ...service, ...computedState(type, name, service, this.cluster()) };
        // Registered with the monitor (so the reference resolves), not recorded: the provider creates it, not the program.
        monitor.resources.set(urn, { urn, id: `${namespace}/${service.metadata.name}`, state });
        return [{ [RESOURCE_REF.key]: RESOURCE_REF.sig, urn, id: `${namespace}/${service.metadata.name}` }];
    }

    /** The mock monitor passes neither parent, dependencies nor options to newResource; read them off the request. */
    private captureParents(): void {
        type Req = { getType(): string; getName(): string; getParent(): string; getDependenciesList(): string[]; getIgnorechangesList(): string[] };
        const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource(req: Req, cb: unknown): Promise<void> };
        const register = monitor.registerResource.bind(monitor);
        monitor.registerResource = (req, cb) => {
            this.pendingDetails.set(`${req.getType()}::${req.getName()}`, {
                parent: req.getParent(),
                dependencies: req.getDependenciesList(),
                ignoreChanges: req.getIgnorechangesList(),
            });
            return register(req, cb);
        };
    }
}

/** Resolves an Output (or plain value) to its value and whether it is secret; rejects when the output failed. */
export async function resolve<T>(value: pulumi.Input<T>): Promise<{ value: T; secret: boolean }> {
    // `promise()` is internal to Output but, unlike `apply`, it rejects when a dependency failed.
    const output = pulumi.output(value) as unknown as { promise(): Promise<T>; isSecret: Promise<boolean> };
    const [resolved, secret] = await Promise.all([output.promise(), output.isSecret]);
    return { value: resolved, secret };
}
