import { PodSpec } from "../kit/cluster/objects";
import { clusterProfile, gkeAllocatable, NodeModel } from "../kit/cluster/profiles";
import { GI, MI } from "../kit/cluster/quantity";
import { ClaimState, PlacedPod, podRequests, schedule, SchedulerView } from "../kit/cluster/scheduler";

const node = (name: string, memoryMi = 1024, labels: Record<string, string> = {}): NodeModel => ({
    name,
    labels: { "kubernetes.io/hostname": name, ...labels },
    taints: [],
    allocatable: { cpuMilli: 1000, memory: memoryMi * MI, pods: 110 },
    systemPods: [],
});
const spec = (memory: string, extra: Partial<PodSpec> = {}): PodSpec => ({
    containers: [{ name: "c", resources: { requests: { memory, cpu: "10m" } } }],
    ...extra,
});
const view = (nodes: NodeModel[], placed: PlacedPod[] = [], claims = new Map<string, ClaimState>()): SchedulerView => ({ nodes, placed, claims });
const toPlace = (name: string, s: PodSpec, labels: Record<string, string> = {}) => ({ namespace: "mail", name, labels, spec: s });

describe("effective pod requests (native sidecars)", () => {
    it("adds sidecars to the regular containers, and takes an init container's peak with the sidecars started before it", () => {
        const s: PodSpec = {
            initContainers: [
                { name: "sidecar", restartPolicy: "Always", resources: { requests: { memory: "48Mi", cpu: "10m" } } },
                { name: "migrate", resources: { requests: { memory: "512Mi", cpu: "10m" } } },
            ],
            containers: [{ name: "app", resources: { requests: { memory: "64Mi", cpu: "20m" } } }],
        };
        // max(64 + 48, 512 + 48) = 560 MiB; cpu max(20 + 10, 10 + 10) = 30m
        expect(podRequests(s)).toEqual({ cpuMilli: 30, memory: 560 * MI });
        expect(podRequests({ ...s, initContainers: [s.initContainers![0]] })).toEqual({ cpuMilli: 30, memory: 112 * MI });
    });
});

describe("scheduling", () => {
    it("fits requests into allocatable, and says Insufficient memory when they do not", () => {
        expect(schedule(toPlace("a", spec("512Mi")), view([node("n1")]))).toEqual({ node: "n1" });
        const placed = [{ ...toPlace("big", spec("768Mi")), node: "n1" }];
        expect(schedule(toPlace("a", spec("512Mi")), view([node("n1")], placed))).toEqual({ unschedulable: "0/1 nodes are available: 1 Insufficient memory." });
    });

    it("puts a pod on the least allocated node that fits", () => {
        const placed = [{ ...toPlace("big", spec("512Mi")), node: "n1" }];
        expect(schedule(toPlace("a", spec("64Mi")), view([node("n1"), node("n2")], placed))).toEqual({ node: "n2" });
    });

    it("counts the system pods already on the node", () => {
        const n = { ...node("n1"), systemPods: [{ name: "cilium", requests: { cpuMilli: 995, memory: 0 } }] };
        expect(schedule(toPlace("a", spec("1Mi")), view([n]))).toEqual({ unschedulable: "0/1 nodes are available: 1 Insufficient cpu." });
    });

    it("honours nodeSelector and taints", () => {
        const tainted = { ...node("n2"), taints: [{ key: "dedicated", value: "db", effect: "NoSchedule" as const }] };
        expect(schedule(toPlace("a", spec("1Mi", { nodeSelector: { pool: "mail" } })), view([node("n1"), tainted]))).toEqual({
            unschedulable: "0/2 nodes are available: 1 node(s) had untolerated taint {dedicated: db}, 2 node(s) didn't match Pod's node affinity/selector.",
        });
        const tolerating = spec("1Mi", { tolerations: [{ key: "dedicated", operator: "Equal", value: "db", effect: "NoSchedule" }] });
        expect(schedule(toPlace("a", tolerating), view([tainted]))).toEqual({ node: "n2" });
    });

    it("honours required node affinity and the node's pod limit", () => {
        const zoned = spec("1Mi", {
            affinity: {
                nodeAffinity: {
                    requiredDuringSchedulingIgnoredDuringExecution: {
                        nodeSelectorTerms: [{ matchExpressions: [{ key: "zone", operator: "In", values: ["b"] }] }],
                    },
                },
            },
        });
        expect(schedule(toPlace("a", zoned), view([node("n1", 1024, { zone: "a" }), node("n2", 1024, { zone: "b" })]))).toEqual({ node: "n2" });
        expect(schedule(toPlace("a", zoned), view([node("n1", 1024, { zone: "a" })]))).toEqual({
            unschedulable: "0/1 nodes are available: 1 node(s) didn't match Pod's node affinity/selector.",
        });
        const full = { ...node("n1"), allocatable: { ...node("n1").allocatable, pods: 1 } };
        expect(schedule(toPlace("b", spec("1Mi")), view([full], [{ ...toPlace("a", spec("1Mi")), node: "n1" }]))).toEqual({
            unschedulable: "0/1 nodes are available: 1 Too many pods.",
        });
    });

    it("requires pod affinity targets to run (the first pod of a self-selecting group goes anywhere)", () => {
        const affine = spec("1Mi", {
            affinity: {
                podAffinity: {
                    requiredDuringSchedulingIgnoredDuringExecution: [
                        { labelSelector: { matchLabels: { app: "dovecot" } }, topologyKey: "kubernetes.io/hostname" },
                    ],
                },
            },
        });
        expect(schedule(toPlace("train", affine), view([node("n1")]))).toEqual({
            unschedulable: "0/1 nodes are available: 1 node(s) didn't match pod affinity rules.",
        });
        expect(
            schedule(toPlace("train", affine), view([node("n1"), node("n2")], [{ ...toPlace("dovecot-0", spec("1Mi"), { app: "dovecot" }), node: "n2" }])),
        ).toEqual({ node: "n2" });
        expect(schedule(toPlace("dovecot-0", affine, { app: "dovecot" }), view([node("n1")]))).toEqual({ node: "n1" });
    });

    it("keeps anti-affine pods apart, both ways", () => {
        const anti = spec("1Mi", {
            affinity: {
                podAntiAffinity: {
                    requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: { app: "x" } }, topologyKey: "kubernetes.io/hostname" }],
                },
            },
        });
        const placed = [{ ...toPlace("x-0", anti, { app: "x" }), node: "n1" }];
        expect(schedule(toPlace("x-1", anti, { app: "x" }), view([node("n1")], placed))).toEqual({
            unschedulable:
                "0/1 nodes are available: 1 node(s) didn't match pod anti-affinity rules, 1 node(s) didn't satisfy existing pods anti-affinity rules.",
        });
        expect(schedule(toPlace("x-1", anti, { app: "x" }), view([node("n1"), node("n2")], placed))).toEqual({ node: "n2" });
    });

    it("refuses a second pod with the same hostPort on a node", () => {
        const hp = spec("1Mi", { containers: [{ name: "c", ports: [{ containerPort: 25, hostPort: 25 }] }] });
        expect(schedule(toPlace("b", hp), view([node("n1")], [{ ...toPlace("a", hp), node: "n1" }]))).toEqual({
            unschedulable: "0/1 nodes are available: 1 node(s) didn't have free ports for the requested pod ports.",
        });
    });

    it("pins users of a node-local claim to its node, and waits for claims that do not exist or are unbound", () => {
        const mounting = spec("1Mi", { volumes: [{ name: "mail", persistentVolumeClaim: { claimName: "mail-dovecot-0" } }] });
        const claims = new Map<string, ClaimState>([
            ["mail/mail-dovecot-0", { bound: true, storageClass: { bindingMode: "WaitForFirstConsumer", nodeLocal: true }, node: "n1" }],
        ]);
        expect(schedule(toPlace("train", mounting), view([node("n1", 0), node("n2")], [], claims))).toEqual({
            unschedulable: "0/2 nodes are available: 1 Insufficient memory, 1 node(s) had volume node affinity conflict.",
        });
        expect(schedule(toPlace("train", mounting), view([node("n1"), node("n2")], [], claims))).toEqual({ node: "n1" });
        expect(schedule(toPlace("train", mounting), view([node("n1")]))).toEqual({
            unschedulable: '0/1 nodes are available: persistentvolumeclaim "mail-dovecot-0" not found.',
        });
        const unbound = new Map<string, ClaimState>([["mail/mail-dovecot-0", { bound: false, storageClass: { bindingMode: "Immediate", nodeLocal: false } }]]);
        expect(schedule(toPlace("train", mounting), view([node("n1")], [], unbound))).toEqual({
            unschedulable: "0/1 nodes are available: pod has unbound immediate PersistentVolumeClaims.",
        });
    });
});

describe("cluster profiles", () => {
    it("derives GKE allocatable from the published reservations (e2-medium: 940m, 4 GiB − 1 GiB − 100 MiB)", () => {
        expect(gkeAllocatable({ vcpus: 2, memory: 4 * GI, sharedCore: true })).toEqual({ cpuMilli: 940, memory: 4 * GI - GI - 100 * MI });
        // e2-standard-4: 6% + 1% + 0.5% × 2 of the cores; 25% of 4 + 20% of 4 + 10% of 8 GiB
        expect(gkeAllocatable({ vcpus: 4, memory: 16 * GI, sharedCore: false })).toEqual({ cpuMilli: 3920, memory: Math.floor(16 * GI - 2.6 * GI - 100 * MI) });
    });

    it("models each provider's default node, load balancers and storage", () => {
        const doks = clusterProfile({ clusterProvider: "digitalocean" });
        expect(doks.nodes.map((n) => n.allocatable.memory)).toEqual([2.5 * GI]);
        expect([doks.loadBalancer, clusterProfile({ clusterProvider: "gke", clusterNodeCount: 2 }).nodes.length]).toEqual([true, 2]);
        const kind = clusterProfile({ clusterProvider: "kubeconfig" });
        expect([kind.loadBalancer, kind.storageClasses[kind.defaultStorageClass].nodeLocal]).toEqual([false, true]);
        expect(clusterProfile({ clusterProvider: "kubeconfig" }, { kubeconfigLoadBalancer: true }).loadBalancer).toBe(true);
        expect(() => clusterProfile({ clusterProvider: "digitalocean", clusterNodeSize: "c-32" })).toThrow(/no DigitalOcean size c-32/);
    });
});
