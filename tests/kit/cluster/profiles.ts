// The clusters a stack deploys to, as the scheduler, the storage provisioner and the cloud controller see them:
// nodes (allocatable after the provider's published reservations, minus the system pods that run there),
// StorageClasses, whether Services of type LoadBalancer get an address, and the namespaces that already exist.
import { DEFAULT_NODE_SIZE } from "../../../components/config/types";
import type { KubeObject, Labels } from "./objects";
import { GI, MI, Resources } from "./quantity";

export interface Taint {
    key: string;
    value?: string;
    effect: "NoSchedule" | "NoExecute" | "PreferNoSchedule";
}

export interface NodeModel {
    name: string;
    labels: Labels;
    taints: Taint[];
    allocatable: Resources & { pods: number };
    /** Requests of the system pods (kube-system and the provider's agents) already on this node. */
    systemPods: { name: string; requests: Resources }[];
}

export interface StorageClassModel {
    bindingMode: "Immediate" | "WaitForFirstConsumer";
    /** The volume lives on one node (local-path): the scheduler pins its users there (volume node affinity). */
    nodeLocal: boolean;
}

export interface ClusterProfile {
    /** What the model stands for, for messages. */
    description: string;
    nodes: NodeModel[];
    /** A controller that gives LoadBalancer Services an address (the cloud's, MetalLB, cloud-provider-kind, …). */
    loadBalancer: boolean;
    storageClasses: Record<string, StorageClassModel>;
    defaultStorageClass: string;
    /** Namespaces present before the program runs. */
    namespaces: string[];
    /** Objects the user created before the deploy (e.g. the Secret tlsMode secret names). */
    existingObjects: KubeObject[];
}

const BUILT_IN_NAMESPACES = ["default", "kube-system", "kube-public", "kube-node-lease"];

/**
 * The cluster's namespaces before the program runs: the built-in ones, and with metricsEnabled the scraper's, since
 * the stack presumes the Prometheus that scrapes it (e.g. kube-prometheus-stack) is installed there already.
 */
function clusterNamespaces(config: Record<string, unknown>): string[] {
    const metricsNamespace = typeof config.metricsNamespace === "string" ? config.metricsNamespace : "monitoring";
    return [...BUILT_IN_NAMESPACES, ...(config.metricsEnabled === true || config.metricsEnabled === "true" ? [metricsNamespace] : [])];
}

const pod = (name: string, cpuMilli: number, memoryMi: number) => ({ name, requests: { cpuMilli, memory: memoryMi * MI } });

/**
 * DigitalOcean droplet sizes (vCPUs, memory) and the allocatable memory DOKS documents per memory size
 * (docs.digitalocean.com/products/kubernetes/details/managed/ "Allocatable Memory": what remains after the
 * kubelet, the OS and the eviction threshold). DigitalOcean publishes no CPU reservation: all vCPUs count.
 */
const DO_SIZES: Record<string, { vcpus: number; allocatableMemory: number }> = {
    "s-1vcpu-2gb": { vcpus: 1, allocatableMemory: 1 * GI },
    "s-2vcpu-2gb": { vcpus: 2, allocatableMemory: 1 * GI },
    "s-2vcpu-4gb": { vcpus: 2, allocatableMemory: 2.5 * GI },
    "s-4vcpu-8gb": { vcpus: 4, allocatableMemory: 6 * GI },
    "s-8vcpu-16gb": { vcpus: 8, allocatableMemory: 13 * GI },
};

/**
 * kube-system on a DOKS node: Cilium's agent, CoreDNS (two replicas; on one node both land there), DigitalOcean's
 * node agent. Typical requests as seen in `kubectl describe node` on DOKS 1.3x — estimates, not published numbers.
 */
const DOKS_SYSTEM_PODS = [pod("cilium", 300, 300), pod("coredns", 100, 70), pod("coredns", 100, 70), pod("do-node-agent", 102, 80)];

/** GCE machine types: vCPUs, memory, and whether the vCPUs are shared-core (E2 micro/small/medium). */
const GCE_TYPES: Record<string, { vcpus: number; memory: number; sharedCore: boolean }> = {
    "e2-small": { vcpus: 2, memory: 2 * GI, sharedCore: true },
    "e2-medium": { vcpus: 2, memory: 4 * GI, sharedCore: true },
    "e2-standard-2": { vcpus: 2, memory: 8 * GI, sharedCore: false },
    "e2-standard-4": { vcpus: 4, memory: 16 * GI, sharedCore: false },
};

/**
 * GKE Standard's reservations (cloud.google.com/kubernetes-engine/docs/concepts/plan-node-sizes, "Memory and CPU
 * reservations"): memory 25 % of the first 4 GiB, 20 % of the next 4, 10 % of the next 8, 6 % of the next 112,
 * 2 % above 128 GiB (255 MiB below 1 GiB), plus a 100 MiB eviction threshold; CPU 6 % of the first core, 1 % of
 * the second, 0.5 % of the next two, 0.25 % above four — and shared-core E2 types have 940m allocatable CPU.
 */
export function gkeAllocatable(type: { vcpus: number; memory: number; sharedCore: boolean }): Resources {
    const bands: [number, number][] = [
        [4 * GI, 0.25],
        [4 * GI, 0.2],
        [8 * GI, 0.1],
        [112 * GI, 0.06],
        [Infinity, 0.02],
    ];
    let rest = type.memory;
    let reserved = 0;
    if (type.memory < GI) reserved = 255 * MI;
    else
        for (const [size, share] of bands) {
            const part = Math.min(rest, size);
            reserved += part * share;
            rest -= part;
        }
    const cpuBands: [number, number][] = [
        [1000, 0.06],
        [1000, 0.01],
        [2000, 0.005],
        [Infinity, 0.0025],
    ];
    let cpuRest = type.vcpus * 1000;
    let cpuReserved = 0;
    for (const [size, share] of cpuBands) {
        const part = Math.min(cpuRest, size);
        cpuReserved += part * share;
        cpuRest -= part;
    }
    return {
        cpuMilli: type.sharedCore ? 940 : Math.floor(type.vcpus * 1000 - cpuReserved),
        memory: Math.floor(type.memory - reserved - 100 * MI),
    };
}

/**
 * kube-system on a GKE Dataplane V2 node: anetd, kube-dns (+ its autoscaler), fluentbit-gke, gke-metrics-agent,
 * the PD CSI node plugin, konnectivity-agent, metrics-server. Typical requests; estimates, not published numbers.
 */
const GKE_SYSTEM_PODS = [
    pod("anetd", 100, 100),
    pod("kube-dns", 260, 110),
    pod("kube-dns-autoscaler", 20, 10),
    pod("fluentbit-gke", 100, 200),
    pod("gke-metrics-agent", 8, 60),
    pod("pdcsi-node", 10, 20),
    pod("konnectivity-agent", 10, 30),
    pod("metrics-server", 48, 105),
];

/**
 * A kind cluster (the dev stack's first suggestion): one node that is also the control plane, so etcd, the API
 * server, the controller manager, the scheduler, CoreDNS and kindnet run beside the mail pods (requests from
 * kind's kubeadm manifests). Assumed to be a 2-CPU / 4 GiB machine or VM, no kubelet reservations (kind sets none).
 */
const KIND_SYSTEM_PODS = [
    pod("etcd", 100, 100),
    pod("kube-apiserver", 250, 0),
    pod("kube-controller-manager", 200, 0),
    pod("kube-scheduler", 100, 0),
    pod("coredns", 100, 70),
    pod("coredns", 100, 70),
    pod("kindnet", 100, 50),
];

const nodes = (count: number, prefix: string, labels: Labels, allocatable: Resources, systemPods: NodeModel["systemPods"]): NodeModel[] =>
    Array.from({ length: count }, (_, i) => ({
        name: `${prefix}-${i}`,
        labels: { ...labels, "kubernetes.io/hostname": `${prefix}-${i}` },
        taints: [],
        allocatable: { ...allocatable, pods: 110 },
        systemPods,
    }));

export interface ProfileOptions {
    /** kubeconfig clusters: a load balancer implementation is installed (MetalLB, cloud-provider-kind, k3s ServiceLB). */
    kubeconfigLoadBalancer?: boolean;
    /** Objects the user created before the deploy. */
    existingObjects?: KubeObject[];
}

/** The cluster a stack config deploys to (keys as in Pulumi.yaml, without the `mail:` prefix). */
export function clusterProfile(config: Record<string, unknown>, opts: ProfileOptions = {}): ClusterProfile {
    const provider = typeof config.clusterProvider === "string" ? config.clusterProvider : "kubeconfig";
    const count = Number(config.clusterNodeCount ?? 1);
    const size = typeof config.clusterNodeSize === "string" ? config.clusterNodeSize : "";
    switch (provider) {
        case "digitalocean": {
            const slug = size || DEFAULT_NODE_SIZE.digitalocean;
            const droplet = DO_SIZES[slug];
            if (!droplet) throw new Error(`the cluster model has no DigitalOcean size ${slug}; add it to DO_SIZES in tests/kit/cluster/profiles.ts`);
            return {
                description: `DOKS, ${count} × ${slug}`,
                nodes: nodes(
                    count,
                    "doks",
                    { "mail.stack/pool": "mail", "node.kubernetes.io/instance-type": slug },
                    { cpuMilli: droplet.vcpus * 1000, memory: droplet.allocatableMemory },
                    DOKS_SYSTEM_PODS,
                ),
                loadBalancer: true,
                storageClasses: { "do-block-storage": { bindingMode: "Immediate", nodeLocal: false } },
                defaultStorageClass: "do-block-storage",
                namespaces: clusterNamespaces(config),
                existingObjects: opts.existingObjects ?? [],
            };
        }
        case "gke": {
            const machine = size || DEFAULT_NODE_SIZE.gke;
            const type = GCE_TYPES[machine];
            if (!type) throw new Error(`the cluster model has no GCE machine type ${machine}; add it to GCE_TYPES in tests/kit/cluster/profiles.ts`);
            return {
                description: `GKE Standard, ${count} × ${machine}`,
                nodes: nodes(count, "gke", { "mail.stack/pool": "mail", "node.kubernetes.io/instance-type": machine }, gkeAllocatable(type), GKE_SYSTEM_PODS),
                loadBalancer: true,
                storageClasses: {
                    "standard-rwo": { bindingMode: "WaitForFirstConsumer", nodeLocal: false },
                    standard: { bindingMode: "Immediate", nodeLocal: false },
                },
                defaultStorageClass: "standard-rwo",
                namespaces: [...clusterNamespaces(config), "gmp-public", "gmp-system"],
                existingObjects: opts.existingObjects ?? [],
            };
        }
        case "kubeconfig":
            return {
                description: `kind (one 2-CPU/4 GiB node)${opts.kubeconfigLoadBalancer ? " with a load balancer implementation" : ", no load balancer implementation"}`,
                nodes: nodes(1, "kind-control-plane", {}, { cpuMilli: 2000, memory: 4 * GI }, KIND_SYSTEM_PODS),
                loadBalancer: opts.kubeconfigLoadBalancer ?? false,
                storageClasses: { standard: { bindingMode: "WaitForFirstConsumer", nodeLocal: true } },
                defaultStorageClass: "standard",
                namespaces: [...clusterNamespaces(config), "local-path-storage"],
                existingObjects: opts.existingObjects ?? [],
            };
        default:
            throw new Error(`no cluster model for clusterProvider ${provider}`);
    }
}
