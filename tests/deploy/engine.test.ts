import type * as k8sType from "@pulumi/kubernetes";
import type * as pulumiType from "@pulumi/pulumi";
import { settle } from "../kit/cluster/deploy";
import type { ClusterEngine, EngineOptions } from "../kit/cluster/engine";
import { clusterProfile } from "../kit/cluster/profiles";

type Program = (k8s: typeof k8sType, pulumi: typeof pulumiType) => void;

/** Runs a small hand-written program under the engine (fresh module registry) until nothing is pending. */
async function deploy(program: Program, opts: Partial<EngineOptions> = {}): Promise<ClusterEngine> {
    let engine: ClusterEngine | undefined;
    await jest.isolateModulesAsync(async () => {
        const { ClusterEngine } = await import("../kit/cluster/engine");
        engine = new ClusterEngine({ profile: clusterProfile({ clusterProvider: "digitalocean" }), ...opts });
        await engine.install({});
        program(await import("@pulumi/kubernetes"), await import("@pulumi/pulumi"));
        await settle(engine, 25);
        engine.checkCronJobs();
    });
    return engine!;
}

const labels = { app: "web" };
const podSpec = (extra: Record<string, unknown> = {}) => ({
    containers: [{ name: "web", image: "web:1", ports: [{ name: "http", containerPort: 8080 }], resources: { requests: { cpu: "10m", memory: "32Mi" } } }],
    ...extra,
});
const ns = (k8s: typeof k8sType, labels2: Record<string, string> = {}) => new k8s.core.v1.Namespace("ns", { metadata: { name: "app", labels: labels2 } });
const service = (k8s: typeof k8sType, namespace: k8sType.core.v1.Namespace, spec: Record<string, unknown> = {}, annotations?: Record<string, string>) =>
    new k8s.core.v1.Service("svc", {
        metadata: { name: "web", namespace: namespace.metadata.name, annotations },
        spec: { selector: labels, ports: [{ port: 80, targetPort: "http" }], ...spec },
    });
const statefulSet = (
    k8s: typeof k8sType,
    namespace: k8sType.core.v1.Namespace,
    serviceName: pulumiType.Input<string>,
    spec: Record<string, unknown> = {},
    opts: pulumiType.CustomResourceOptions = {},
) =>
    new k8s.apps.v1.StatefulSet(
        "sts",
        {
            metadata: { name: "web", namespace: namespace.metadata.name },
            spec: { serviceName, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec(spec) } },
        },
        opts,
    );
/** A StatefulSet "web" whose pods each claim a 1Gi ReadWriteOnce volume "data" (claim data-web-N). */
const statefulSetWithDataClaim = (k8s: typeof k8sType, namespace: k8sType.core.v1.Namespace) =>
    new k8s.apps.v1.StatefulSet("sts", {
        metadata: { name: "web", namespace: namespace.metadata.name },
        spec: {
            serviceName: "web",
            selector: { matchLabels: labels },
            template: { metadata: { labels }, spec: podSpec() },
            volumeClaimTemplates: [{ metadata: { name: "data" }, spec: { accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } } }],
        },
    });
/** A Deployment whose pods mount the Secret `secretName` as volume "tls", awaited for at most `createTimeout`. */
const deploymentMountingSecret = (k8s: typeof k8sType, namespace: k8sType.core.v1.Namespace, secretName: string, createTimeout: string) =>
    new k8s.apps.v1.Deployment(
        "dep",
        {
            metadata: { name: "web", namespace: namespace.metadata.name },
            spec: {
                selector: { matchLabels: labels },
                template: { metadata: { labels }, spec: podSpec({ volumes: [{ name: "tls", secret: { secretName } }] }) },
            },
        },
        { customTimeouts: { create: createTimeout } },
    );
const kinds = (engine: ClusterEngine) => engine.resources.map((r) => r.type.split(":").pop());

describe("engine await order", () => {
    it("completes a Service with a selector once a workload's pods are running, whatever was declared first", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            service(k8s, n);
            statefulSet(k8s, n, "web");
        });
        expect(engine.failures).toEqual([]);
        expect(engine.pendingCount).toBe(0);
    });

    it("deadlocks a StatefulSet that takes its Service's name output: the Service waits for pods that come only after it", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            const s = service(k8s, n);
            statefulSet(k8s, n, s.metadata.name);
        });
        expect(engine.failures).toHaveLength(1);
        expect(engine.failures[0]).toMatch(
            /^kubernetes:core\/v1:Service \(svc\): resource app\/web was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live: 'web' timed out waiting to be Ready \(no pending resource can make progress/,
        );
        expect(engine.failures[0]).toContain(
            "* Service does not target any Pods. Selected Pods may not be ready, or field '.spec.selector' may not match labels on any Pods",
        );
        expect(engine.failures[0]).toContain(
            "deadlock: kubernetes:apps/v1:StatefulSet (sts) would provide what this waits for, but is created only once this is ready",
        );
        // Like the engine, nothing that depends on the failed Service is ever created.
        expect(kinds(engine)).not.toContain("StatefulSet");
    });

    it("names a deadlock through a component's dependsOn: its children wait for their parent", async () => {
        const engine = await deploy((k8s, pulumi) => {
            const n = ns(k8s);
            const affine = {
                affinity: {
                    podAffinity: {
                        requiredDuringSchedulingIgnoredDuringExecution: [
                            { labelSelector: { matchLabels: { app: "mta" } }, topologyKey: "kubernetes.io/hostname" },
                        ],
                    },
                },
            };
            const imap = new pulumi.ComponentResource("test:index:Imap", "imap");
            statefulSet(k8s, n, "web", affine, { parent: imap });
            const mta = new pulumi.ComponentResource("test:index:Mta", "mta", {}, { dependsOn: [imap] });
            new k8s.apps.v1.StatefulSet(
                "mta",
                {
                    metadata: { name: "mta", namespace: n.metadata.name },
                    spec: {
                        serviceName: "mta",
                        selector: { matchLabels: { app: "mta" } },
                        template: { metadata: { labels: { app: "mta" } }, spec: podSpec() },
                    },
                },
                { parent: mta },
            );
        });
        expect(engine.failures).toHaveLength(1);
        expect(engine.failures[0]).toContain("* [Pod app/web-0]: Pod unschedulable: 0/1 nodes are available: 1 node(s) didn't match pod affinity rules.");
        expect(engine.failures[0]).toContain("deadlock: kubernetes:apps/v1:StatefulSet (mta) would provide what this waits for");
    });

    it("does not wait for headless Services", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            const s = service(k8s, n, { clusterIP: "None" });
            statefulSet(k8s, n, s.metadata.name);
        });
        expect(engine.failures).toEqual([]);
    });

    it("creates dependsOn targets first and waits for them to be ready", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            const sts = statefulSet(k8s, n, "web");
            new k8s.core.v1.ConfigMap("after", { metadata: { name: "after", namespace: n.metadata.name }, data: {} }, { dependsOn: [sts] });
        });
        expect(engine.failures).toEqual([]);
        expect(kinds(engine)).toEqual(["Namespace", "StatefulSet", "ConfigMap"]);
    });

    it("waits for a LoadBalancer address only where the cluster has a load balancer, unless skipAwait", async () => {
        const lb =
            (annotations?: Record<string, string>): Program =>
            (k8s) => {
                const n = ns(k8s);
                service(k8s, n, { type: "LoadBalancer" }, annotations);
                statefulSet(k8s, n, "web");
            };
        expect((await deploy(lb())).failures).toEqual([]);
        const kind = await deploy(lb(), { profile: clusterProfile({ clusterProvider: "kubeconfig" }) });
        expect(kind.failures).toEqual([expect.stringContaining("* Service was not allocated an IP address; does your cloud provider support this?")]);
        expect((await deploy(lb({ "pulumi.com/skipAwait": "true" }), { profile: clusterProfile({ clusterProvider: "kubeconfig" }) })).failures).toEqual([]);
    });

    it("times an await out after its (scaled) create timeout while other work still goes on", async () => {
        const engine = await deploy(
            (k8s) => {
                const n = ns(k8s);
                deploymentMountingSecret(k8s, n, "late", "1m");
                // Keeps the engine busy (a registration every 10 ms) past the 1m timeout, scaled to 100 ms.
                const tick = (i: number): void => {
                    if (i < 30)
                        setTimeout(() => {
                            new k8s.core.v1.ConfigMap(`tick-${i}`, { metadata: { name: `tick-${i}`, namespace: n.metadata.name } });
                            tick(i + 1);
                        }, 10);
                };
                tick(0);
            },
            { timeoutMs: 1000 },
        );
        expect(engine.failures).toEqual([expect.stringContaining("'web' timed out waiting to be Ready (after the 1m0s create timeout)")]);
    });

    it("names the customTimeouts create timeout the provider would wait", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            deploymentMountingSecret(k8s, n, "absent", "2m");
        });
        expect(engine.failures).toEqual([expect.stringContaining("the provider would give up after its 2m0s create timeout")]);
        expect(engine.failures[0]).toContain('* [Pod app/web-a0x7k]: MountVolume.SetUp failed for volume "tls" : secret "absent" not found');
    });

    it("starts pods once the Secret they mount exists, when something they depend on creates it", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            const secret = new k8s.core.v1.Secret("tls", { metadata: { name: "tls", namespace: n.metadata.name }, stringData: { k: "v" } });
            statefulSet(k8s, n, "web", { volumes: [{ name: "tls", secret: { secretName: secret.metadata.name } }] });
        });
        expect(engine.failures).toEqual([]);
    });

    it("applies Patch resources to live objects (a StatefulSet's claim) and creates them when absent", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            const sts = statefulSetWithDataClaim(k8s, n);
            new k8s.core.v1.PersistentVolumeClaimPatch(
                "resize",
                { metadata: { name: "data-web-0", namespace: n.metadata.name }, spec: { resources: { requests: { storage: "2Gi" } } } },
                { dependsOn: [sts] },
            );
            new k8s.core.v1.ConfigMapPatch("cm", { metadata: { name: "fresh", namespace: n.metadata.name }, data: { a: "b" } });
        });
        expect(engine.failures).toEqual([]);
        expect(engine.cluster.get("ConfigMap", "app", "fresh")?.data).toEqual({ a: "b" });
    });

    it("waits for a Job to complete, and reports why its pod cannot start", async () => {
        const job =
            (env: k8sType.types.input.core.v1.EnvVar[]): Program =>
            (k8s) => {
                const n = ns(k8s);
                new k8s.batch.v1.Job("job", {
                    metadata: { name: "init", namespace: n.metadata.name },
                    spec: { template: { spec: { restartPolicy: "Never", containers: [{ name: "init", image: "i:1", env }] } } },
                });
            };
        expect((await deploy(job([]))).failures).toEqual([]);
        const missing = await deploy(job([{ name: "X", valueFrom: { configMapKeyRef: { name: "absent", key: "x" } } }]));
        expect(missing.failures).toEqual([
            expect.stringContaining(
                '* Job has not completed\n    * [Pod app/init-a0x7k]: container "init": CreateContainerConfigError: configmap "absent" not found',
            ),
        ]);
    });

    it("does not wait for a WaitForFirstConsumer claim, and waits forever for one whose StorageClass does not exist", async () => {
        const claim =
            (storageClassName?: string): Program =>
            (k8s) => {
                const n = ns(k8s);
                new k8s.core.v1.PersistentVolumeClaim("pvc", {
                    metadata: { name: "data", namespace: n.metadata.name },
                    spec: { storageClassName, accessModes: ["ReadWriteOnce"], resources: { requests: { storage: "1Gi" } } },
                });
            };
        expect((await deploy(claim(), { profile: clusterProfile({ clusterProvider: "gke" }) })).failures).toEqual([]);
        expect((await deploy(claim())).failures).toEqual([]);
        const unknown = await deploy(claim("fast"));
        expect(unknown.failures).toEqual([expect.stringContaining("* PersistentVolumeClaim is not Bound")]);
        expect(unknown.cluster.warnings).toEqual(['PersistentVolumeClaim app/data: storageclass.storage.k8s.io "fast" not found (the claim stays Pending)']);
    });

    it("keepGoing lets a failed await complete so the failures behind it show in one run", async () => {
        const program: Program = (k8s) => {
            const n = ns(k8s);
            const s = service(k8s, n);
            statefulSet(k8s, n, s.metadata.name, { volumes: [{ name: "tls", secret: { secretName: "absent" } }] });
        };
        expect((await deploy(program)).failures).toHaveLength(1);
        const all = await deploy(program, { keepGoing: true });
        expect(all.failures.map((f) => f.split(" ")[0])).toEqual(["kubernetes:core/v1:Service", "kubernetes:apps/v1:StatefulSet"]);
        expect(all.failures[1]).toContain('secret "absent" not found');
    });
});

describe("engine: admission and scheduling", () => {
    it("creates a workload whose pods break the namespace's enforce level, and fails its await naming namespace, workload, container, field and rule", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s, { "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted" });
            statefulSet(k8s, n, "web", { containers: [{ name: "smtp", image: "smtp:1", ports: [{ containerPort: 25, hostPort: 25 }] }] });
        });
        expect(engine.failures).toEqual([
            expect.stringContaining(
                'create Pod web-0 in StatefulSet web failed error: pods "web-0" is forbidden: violates PodSecurity "baseline:latest": hostPort (container "smtp" uses hostPort 25)',
            ),
        ]);
        expect(engine.cluster.warnings).toEqual([expect.stringMatching(/^StatefulSet app\/web: would violate PodSecurity "restricted:latest"/)]);
    });

    it("refuses a bare Pod outright at the API server", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s, { "pod-security.kubernetes.io/enforce": "baseline" });
            new k8s.core.v1.Pod("pod", {
                metadata: { name: "p", namespace: n.metadata.name },
                spec: { hostNetwork: true, containers: [{ name: "c", image: "c:1" }] },
            });
        });
        expect(engine.failures).toEqual([
            'kubernetes:core/v1:Pod (pod): resource app/p was not successfully created by the Kubernetes API server : pods "p" is forbidden: violates PodSecurity "baseline:latest": host namespaces (hostNetwork=true)',
        ]);
    });

    it("fails pods that do not fit the node with the scheduler's reason", async () => {
        const engine = await deploy((k8s) => {
            const n = ns(k8s);
            statefulSet(k8s, n, "web", { containers: [{ name: "web", image: "web:1", resources: { requests: { memory: "3Gi" } } }] });
        });
        expect(engine.failures).toEqual([expect.stringContaining("* [Pod app/web-0]: Pod unschedulable: 0/1 nodes are available: 1 Insufficient memory.")]);
    });

    it("refuses objects in a namespace that does not exist", async () => {
        const engine = await deploy((k8s) => {
            new k8s.core.v1.ConfigMap("cm", { metadata: { name: "c", namespace: "nowhere" }, data: {} });
        });
        expect(engine.failures).toEqual([
            'kubernetes:core/v1:ConfigMap (cm): resource nowhere/c was not successfully created by the Kubernetes API server : namespaces "nowhere" not found',
        ]);
    });

    it("refuses to create what already exists (here a namespace the user made first)", async () => {
        const existing = [{ apiVersion: "v1", kind: "Namespace", metadata: { name: "app" } }];
        const engine = await deploy((k8s) => ns(k8s), { profile: clusterProfile({ clusterProvider: "digitalocean" }, { existingObjects: existing }) });
        expect(engine.failures).toEqual([
            'kubernetes:core/v1:Namespace (ns): resource app was not successfully created by the Kubernetes API server : namespaces "app" already exists',
        ]);
    });

    it("checks a CronJob's next pod: pod affinity to a workload that is not there, and a claim it cannot reach", async () => {
        const cron = (k8s: typeof k8sType, n: k8sType.core.v1.Namespace) =>
            new k8s.batch.v1.CronJob("cron", {
                metadata: { name: "train", namespace: n.metadata.name },
                spec: {
                    schedule: "0 3 * * *",
                    jobTemplate: {
                        spec: {
                            template: {
                                spec: {
                                    restartPolicy: "Never",
                                    affinity: {
                                        podAffinity: {
                                            requiredDuringSchedulingIgnoredDuringExecution: [
                                                { labelSelector: { matchLabels: labels }, topologyKey: "kubernetes.io/hostname" },
                                            ],
                                        },
                                    },
                                    containers: [{ name: "train", image: "t:1" }],
                                    volumes: [{ name: "data", persistentVolumeClaim: { claimName: "data-web-0" } }],
                                },
                            },
                        },
                    },
                },
            });
        const alone = await deploy((k8s) => cron(k8s, ns(k8s)));
        expect(alone.failures).toEqual([expect.stringContaining('0/1 nodes are available: persistentvolumeclaim "data-web-0" not found.')]);
        const beside = await deploy((k8s) => {
            const n = ns(k8s);
            statefulSetWithDataClaim(k8s, n);
            cron(k8s, n);
        });
        expect(beside.failures).toEqual([]);
    });
});

describe("engine: Helm charts (v4)", () => {
    const ingressNginx =
        (values: Record<string, unknown>): Program =>
        (k8s) => {
            const n = new k8s.core.v1.Namespace("ns", { metadata: { name: "ingress-nginx" } });
            new k8s.helm.v4.Chart("chart", { name: "ingress-nginx", namespace: n.metadata.name, chart: "ingress-nginx", version: "4.15.1", values });
        };

    it("drops hooks, so ingress-nginx's admission Secret (made by a hook Job) never exists and the controller never starts", async () => {
        const engine = await deploy(ingressNginx({}));
        expect(engine.failures.join("\n")).toContain(
            'MountVolume.SetUp failed for volume "webhook-cert" : secret "ingress-nginx-admission" not found (only the Helm hook Job ingress-nginx/ingress-nginx-admission-create creates it, and Chart v4 drops hooks)',
        );
    });

    it("deploys ingress-nginx without its admission webhook", async () => {
        expect((await deploy(ingressNginx({ controller: { admissionWebhooks: { enabled: false } } }))).failures).toEqual([]);
    });

    it("refuses cert-manager resources until the chart's CRDs exist", async () => {
        const engine = await deploy((k8s) => {
            new k8s.apiextensions.CustomResource("issuer", {
                apiVersion: "cert-manager.io/v1",
                kind: "Issuer",
                metadata: { name: "le", namespace: "default" },
                spec: {},
            });
        });
        expect(engine.failures).toEqual([expect.stringContaining('no matches for kind "Issuer" in version "cert-manager.io/v1"')]);
    });

    it("lets cert-manager write a Certificate's Secret when its challenge can be answered (DNS-01 yes; HTTP-01 not without a load balancer)", async () => {
        const acme =
            (solver: Record<string, unknown>): Program =>
            (k8s) => {
                const cm = new k8s.core.v1.Namespace("cm", { metadata: { name: "cert-manager" } });
                const chart = new k8s.helm.v4.Chart("cert-manager", {
                    name: "cert-manager",
                    namespace: cm.metadata.name,
                    chart: "cert-manager",
                    version: "v1.21.2",
                    values: { crds: { enabled: true } },
                });
                const n = ns(k8s);
                const issuer = new k8s.apiextensions.CustomResource(
                    "issuer",
                    {
                        apiVersion: "cert-manager.io/v1",
                        kind: "Issuer",
                        metadata: { name: "le", namespace: n.metadata.name },
                        spec: { acme: { solvers: [solver] } },
                    },
                    { dependsOn: [chart] },
                );
                const cert = new k8s.apiextensions.CustomResource(
                    "cert",
                    {
                        apiVersion: "cert-manager.io/v1",
                        kind: "Certificate",
                        metadata: { name: "tls", namespace: n.metadata.name },
                        spec: { secretName: "tls", issuerRef: { name: "le" } },
                    },
                    { dependsOn: [issuer] },
                );
                statefulSet(k8s, n, "web", { volumes: [{ name: "tls", secret: { secretName: cert.metadata.apply(() => "tls") } }] });
            };
        expect((await deploy(acme({ dns01: { digitalocean: {} } }))).failures).toEqual([]);
        const kind = await deploy(acme({ http01: { ingress: { ingressClassName: "nginx" } } }), { profile: clusterProfile({ clusterProvider: "kubeconfig" }) });
        expect(kind.failures).toEqual([
            expect.stringContaining(
                'MountVolume.SetUp failed for volume "tls" : secret "tls" not found (cert-manager writes it when Certificate app/tls is issued; its HTTP-01 challenge needs a running ingress controller of class nginx behind a load balancer address)',
            ),
        ]);
    });

    it("fails for a chart or version it has no rendering of", async () => {
        const engine = await deploy((k8s) => {
            new k8s.helm.v4.Chart("chart", { chart: "unknown", version: "1.0.0", namespace: "default" });
        });
        expect(engine.failures).toEqual([expect.stringContaining("the cluster model cannot render chart unknown 1.0.0")]);
    });
});
