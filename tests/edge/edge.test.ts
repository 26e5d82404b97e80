import { schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { stackObjectLookup } from "../kit/stack-objects";
import { FAKE_ADDRESSES, FAKE_RESERVED_IP } from "../kit/mocks";
import { clusterTargets, ProgramRun, runProgram } from "../kit/program";
import { edgeNodeTag } from "../../components/edge/cloud";
import { INGRESS_NGINX_CHART, ingressNginxTcpServices } from "../../components/edge/ingress-nginx";
import { EDGE_PORTS, edgePlan } from "../../components/edge/plan";

/* eslint-disable @typescript-eslint/no-explicit-any -- the Helm chart's inputs and values as the program declares them */
type Port = { name: string; containerPort: number; hostPort?: number };

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };
const TARGETS = clusterTargets();
const kubeconfigFile = TARGETS.kubeconfig.clusterKubeconfig;

const { objects, find } = stackObjectLookup();
const containerPorts = (run: ProgramRun, workload: string): Port[] =>
    find(run, "StatefulSet", workload)!.spec.template.spec.containers.find((c: { name: string }) => c.name === workload).ports;
const config = (run: ProgramRun, name: string, file: string) => find(run, "ConfigMap", name)!.data![file];
const DO_PROXY = "service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol";

/** Every container port a named targetPort can resolve to, across the mail workloads. */
function resolveTarget(run: ProgramRun, name: string): { workload: string; port: number }[] {
    return ["postfix", "dovecot"].flatMap((w) =>
        containerPorts(run, w)
            .filter((p) => p.name === name)
            .map((p) => ({ workload: w, port: p.containerPort })),
    );
}

/** Checks that Postfix/Dovecot listen on a backend port, with PROXY exactly when expected. */
function expectListener(run: ProgramRun, workload: string, port: number, proxy: boolean) {
    if (workload === "postfix") {
        const master = config(run, "postfix-config", "master.cf");
        const entry = new RegExp(`^${port}\\s+inet\\b[^\\n]*(\\n  [^\\n]*)*`, "m").exec(master)?.[0] ?? "";
        expect({ port, entry: !!entry }).toEqual({ port, entry: true });
        expect({ port, proxy: /upstream_proxy_protocol=haproxy/.test(entry) }).toEqual({ port, proxy });
    } else {
        const conf = config(run, "dovecot-config", "dovecot.conf");
        const listener = new RegExp(`inet_listener \\w+ \\{\\s*port = ${port}\\n[^}]*\\}`).exec(conf)?.[0] ?? "";
        expect({ port, listener: !!listener }).toEqual({ port, listener: true });
        expect({ port, proxy: /haproxy = yes/.test(listener) }).toEqual({ port, proxy });
    }
}

const ALLOWED: [string, string][] = [
    ["loadbalancer", "digitalocean"],
    ["loadbalancer", "gke"],
    ["loadbalancer", "kubeconfig"],
    ["ingress-nginx", "digitalocean"],
    ["ingress-nginx", "gke"],
    ["ingress-nginx", "kubeconfig"],
    ["hostport", "digitalocean"],
];

describe.each(ALLOWED)("edgeMode %s on %s", (mode, target) => {
    let run: ProgramRun;
    const plan = edgePlan(mode as "loadbalancer", target as "gke");
    const doProxy = target === "digitalocean" && mode !== "hostport";
    beforeAll(async () => {
        run = await runProgram({ ...mail, ...TARGETS[target], edgeMode: mode });
    });

    it("creates only schema-valid Kubernetes objects, under one edge component", () => {
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        const token = { loadbalancer: "LoadBalancerEdge", "ingress-nginx": "IngressNginxEdge", hostport: "HostPortEdge" }[mode]!;
        expect(run.recorder.one(`mail:index:${token}`).parent).toBe(run.recorder.urnOf(run.recorder.one("mail:index:MailStack")));
    });

    it("turns on PROXY ports exactly where the edge sends PROXY, trusting only the configured networks", () => {
        const backendProxy = mode === "ingress-nginx" || doProxy;
        expect(plan.backendProxy).toBe(backendProxy);
        expect(containerPorts(run, "postfix").some((p) => p.name === "smtp-proxy")).toBe(backendProxy);
        expect(containerPorts(run, "dovecot").some((p) => p.name === "imap-proxy")).toBe(backendProxy);
        const dovecotConf = config(run, "dovecot-config", "dovecot.conf");
        if (backendProxy) expect(dovecotConf).toMatch(/^haproxy_trusted_networks = 10\.0\.0\.0\/8$/m);
        else expect(dovecotConf).not.toMatch(/haproxy/);
        // Plain ports stay for in-cluster clients either way.
        for (const p of EDGE_PORTS) expectListener(run, p.service, p.plain, false);
    });

    if (mode === "loadbalancer") {
        it("exposes the six mail ports on one LoadBalancer Service whose named targets reach the right listeners", () => {
            const svc = find(run, "Service", "mail-edge")!;
            expect(svc.spec.type).toBe("LoadBalancer");
            expect(svc.spec.ports.map((p: { port: number }) => p.port)).toEqual([25, 587, 465, 143, 993, 4190]);
            for (const p of svc.spec.ports as { name: string; port: number; targetPort: string }[]) {
                const targets = resolveTarget(run, p.targetPort);
                expect({ port: p.port, targets: targets.length }).toEqual({ port: p.port, targets: 1 });
                expect(targets[0].workload).toBe(EDGE_PORTS.find((e) => e.public === p.port)!.service);
                expectListener(run, targets[0].workload, targets[0].port, doProxy);
            }
            // The selector must reach both workloads' pods.
            for (const w of ["postfix", "dovecot"]) {
                const podLabels = find(run, "StatefulSet", w)!.spec.template.metadata.labels;
                expect(podLabels).toMatchObject(svc.spec.selector);
            }
        });

        it("sets the cloud's annotations and traffic policy", () => {
            const svc = find(run, "Service", "mail-edge")!;
            if (target === "digitalocean") {
                expect(svc.metadata.annotations).toEqual({
                    [DO_PROXY]: "true",
                    "service.beta.kubernetes.io/do-loadbalancer-type": "REGIONAL",
                    "service.beta.kubernetes.io/do-loadbalancer-protocol": "tcp",
                    "service.beta.kubernetes.io/do-loadbalancer-hostname": "mail.example.com",
                    "service.beta.kubernetes.io/do-loadbalancer-name": "mail.example.com",
                });
                expect(svc.spec.externalTrafficPolicy).toBe("Cluster");
                expect(find(run, "StatefulSet", "dovecot")!.spec.template.spec.affinity).toBeUndefined();
            } else {
                expect(svc.metadata.annotations ?? {}).toEqual(target === "kubeconfig" ? { "pulumi.com/skipAwait": "true" } : {});
                expect(svc.spec.externalTrafficPolicy).toBe("Local");
                // With Local, a node answers only for its own pods: Dovecot must run beside Postfix.
                const affinity = find(run, "StatefulSet", "dovecot")!.spec.template.spec.affinity;
                const term = affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0];
                expect(term.topologyKey).toBe("kubernetes.io/hostname");
                expect(find(run, "StatefulSet", "postfix")!.spec.template.metadata.labels).toMatchObject(term.labelSelector.matchLabels);
            }
        });
    }

    if (mode === "ingress-nginx") {
        it("installs the pinned chart with tcp-services to the PROXY-only ports", () => {
            const chart = run.recorder.one("kubernetes:helm.sh/v4:Chart");
            const inputs = unwrapSecrets(chart.inputs) as { chart: string; version: string; namespace: string; values: any };
            expect([inputs.chart, inputs.version, inputs.namespace]).toEqual(["ingress-nginx", "4.15.1", "ingress-nginx"]);
            const suffix = target === "digitalocean" ? ":PROXY:PROXY" : "::PROXY";
            expect(inputs.values.tcp).toEqual({
                "25": `mail/postfix:10025${suffix}`,
                "587": `mail/postfix:10587${suffix}`,
                "465": `mail/postfix:10465${suffix}`,
                "143": `mail/dovecot:10143${suffix}`,
                "993": `mail/dovecot:10993${suffix}`,
                "4190": `mail/dovecot:14190${suffix}`,
            });
            for (const [, value] of Object.entries(inputs.values.tcp as Record<string, string>)) {
                const [svc, port] = value.split(":");
                const workload = svc.split("/")[1];
                const servicePorts = find(run, "Service", workload)!.spec.ports as { port: number }[];
                expect(servicePorts.map((p) => p.port)).toContain(Number(port));
                expectListener(run, workload, Number(port), true);
            }
            const service = inputs.values.controller.service;
            expect(service.type).toBe("LoadBalancer");
            expect(service.externalTrafficPolicy).toBe(target === "digitalocean" ? "Cluster" : "Local");
            expect(service.annotations[DO_PROXY]).toBe(target === "digitalocean" ? "true" : undefined);
            expect(inputs.values.controller.config["use-proxy-protocol"]).toBe(target === "digitalocean" ? "true" : undefined);
            expect(find(run, "Service", "mail-edge")).toBeUndefined();
        });

        it("installs no admission webhook: its certificate comes from hook Jobs, which helm.v4.Chart drops", () => {
            const values = (unwrapSecrets(run.recorder.one("kubernetes:helm.sh/v4:Chart").inputs) as { values: any }).values;
            expect(values.controller.admissionWebhooks).toEqual({ enabled: false });
        });

        it("takes the controller Service from the chart's resources instead of reading the cluster", async () => {
            // The mocked cluster is fresh: a read (`Service.get`) of the controller would fail, as it does at preview.
            const addresses = (await run.resolve(run.outputs.publicAddresses as string[])).value;
            expect(addresses).toEqual(target === "gke" ? [FAKE_ADDRESSES.serviceLb] : target === "digitalocean" ? [FAKE_ADDRESSES.digitaloceanLb] : []);
        });
    }

    if (mode === "hostport") {
        it("binds the plain mail ports on the node and opens exactly those in the cloud firewall", () => {
            const hostPorts = [...containerPorts(run, "postfix"), ...containerPorts(run, "dovecot")].filter((p) => p.hostPort !== undefined);
            expect(hostPorts.map((p) => [p.name, p.hostPort, p.containerPort]).sort()).toEqual(EDGE_PORTS.map((p) => [p.plainName, p.public, p.plain]).sort());
            const open = [25, 587, 465, 143, 993, 4190];
            const tag = "mail-edge-mail-test";
            const fw = run.recorder.one("digitalocean:index/firewall:Firewall").inputs as {
                tags: string[];
                inboundRules: { protocol: string; portRange: string; sourceAddresses: string[] }[];
            };
            expect(fw.tags).toEqual([tag]);
            expect(fw.inboundRules).toEqual(open.map((p) => ({ protocol: "tcp", portRange: String(p), sourceAddresses: ["0.0.0.0/0", "::/0"] })));
            const pool = run.recorder.one("digitalocean:index/kubernetesCluster:KubernetesCluster").inputs.nodePool as { tags: string[] };
            expect(pool.tags).toContain(tag);
            expect(objects(run).filter((o) => o.kind === "Service" && o.spec.type === "LoadBalancer")).toEqual([]);
        });
    }

    if (target === "kubeconfig") {
        it("creates its LoadBalancer Service without waiting for an address an existing cluster may never give", () => {
            const annotations =
                mode === "loadbalancer"
                    ? find(run, "Service", "mail-edge")!.metadata.annotations
                    : (unwrapSecrets(run.recorder.one("kubernetes:helm.sh/v4:Chart").inputs) as { values: any }).values.controller.service.annotations;
            expect(annotations).toEqual({ "pulumi.com/skipAwait": "true" });
        });
    }

    if (mode === "hostport") {
        it("publishes a reserved IP the program owns, assigned to this stack's node, not the node's own address", () => {
            // The node's address goes with the node when DOKS replaces it; the reserved IP stays with the stack.
            const reserved = run.recorder.one("digitalocean:index/reservedIp:ReservedIp");
            expect(reserved.inputs).toEqual({ region: "nyc3" });
            expect(run.recorder.one("digitalocean:index/reservedIpAssignment:ReservedIpAssignment").inputs).toEqual({
                ipAddress: FAKE_RESERVED_IP,
                dropletId: 4242,
            });
            expect(edgeNodeTag()).toBe("mail-edge-mail-test");
        });
    }

    it("outputs the public addresses and A/AAAA records for the mail host", async () => {
        // The mocked existing cluster (like kind) gives LoadBalancer Services no address.
        const expected =
            mode === "hostport"
                ? [FAKE_RESERVED_IP]
                : target === "kubeconfig"
                  ? []
                  : [target === "digitalocean" ? FAKE_ADDRESSES.digitaloceanLb : FAKE_ADDRESSES.serviceLb];
        expect((await run.resolve(run.outputs.publicAddresses as string[])).value).toEqual(expected);
        const zone = (await run.resolve(run.outputs.dnsZone as string)).value;
        const host = zone
            .split("\n")
            .filter((l) => l.startsWith("mail.example.com.\t"))
            .map((l) => l.split("\t").slice(3).join(" "));
        expect(host).toEqual(expected.map((ip) => `${ip.includes(":") ? "AAAA" : "A"} ${ip}`));
    });
});

describe("disallowed edge combinations", () => {
    it.each([
        [
            { clusterProvider: "kubeconfig", clusterKubeconfig: kubeconfigFile, edgeMode: "hostport" },
            'mail:edgeMode = "hostport" is not allowed with clusterProvider kubeconfig',
        ],
        [{ clusterProvider: "digitalocean", clusterNodeCount: 2, edgeMode: "hostport" }, 'mail:edgeMode = "hostport" is not allowed with clusterNodeCount = 2'],
        [{ clusterProvider: "gke", edgeMode: "traefik" }, 'mail:edgeMode = "traefik" is not allowed: expected one of loadbalancer, ingress-nginx, hostport'],
        [
            { clusterProvider: "gke", edgeProxyTrustedNetworks: ["10.0.0.0/33"] },
            'mail:edgeProxyTrustedNetworks[0] = "10.0.0.0/33" is not allowed: expected a CIDR network',
        ],
    ])("%j fails preview naming the key, the value and what is allowed", async (bad, message) => {
        await expect(runProgram({ ...mail, ...bad })).rejects.toThrow(message);
    });
});

describe("hostport on GKE (pure: the edge plan refuses it before any edge resource)", () => {
    it("is refused: a GKE node's public address is ephemeral and cannot be pinned", () => {
        expect(() => edgePlan("hostport", "gke")).toThrow(
            'mail:edgeMode = "hostport" is not allowed with clusterProvider gke: GKE replaces its nodes and their ephemeral public addresses, and a node cannot hold a static address; use loadbalancer',
        );
    });
});

describe("ingress-nginx tcp-services (pure)", () => {
    it("decodes PROXY only where the cloud load balancer sends it, and always encodes it to the backend", () => {
        const args = (provider: "digitalocean" | "gke" | "kubeconfig") => ({
            namespace: "mx",
            hostname: "mail.example.com",
            plan: edgePlan("ingress-nginx", provider),
        });
        expect(ingressNginxTcpServices(args("digitalocean"))["25"]).toBe("mx/postfix:10025:PROXY:PROXY");
        expect(ingressNginxTcpServices(args("gke"))["993"]).toBe("mx/dovecot:10993::PROXY");
        expect(ingressNginxTcpServices(args("kubeconfig"))["4190"]).toBe("mx/dovecot:14190::PROXY");
        expect(INGRESS_NGINX_CHART.version).toBe("4.15.1");
    });
});
