// kube-scheduler's filter plugins, for the pods of a deploy: NodeResourcesFit (requests vs allocatable, with the
// native-sidecar rules of resourcehelper.PodRequests), NodeAffinity (nodeSelector and required node affinity),
// TaintToleration, InterPodAffinity (required affinity and anti-affinity, incl. existing pods' anti-affinity),
// NodePorts (hostPort clashes) and VolumeBinding (claims that do not exist or are not bound, and volume node
// affinity for node-local volumes). Sources: kubernetes/kubernetes pkg/scheduler/framework/plugins/*, and
// staging/src/k8s.io/component-helpers/resource/helpers.go for the pod's effective requests.
// Among the nodes that fit, the pod goes to the least allocated one (the default score's dominant plugin).
// The message is FitError's: "0/N nodes are available: <count> <reason>, …." with reasons sorted.
import { Labels, PodAffinityTerm, PodSpec, selects } from "./objects";
import type { NodeModel, StorageClassModel } from "./profiles";
import { add, max, NO_RESOURCES, requestsOf, Resources } from "./quantity";

/** One pod to place (a Pod, or one replica of a workload). */
export interface PodToPlace {
    namespace: string;
    name: string;
    labels: Labels;
    spec: PodSpec;
}

export interface PlacedPod extends PodToPlace {
    node: string;
}

/** A claim as the scheduler's VolumeBinding plugin sees it. */
export interface ClaimState {
    /** Bound to a volume (WaitForFirstConsumer claims bind when their first pod is scheduled). */
    bound: boolean;
    storageClass: StorageClassModel;
    /** The node a node-local volume was provisioned on. */
    node?: string;
}

export interface SchedulerView {
    nodes: NodeModel[];
    placed: PlacedPod[];
    /** Claims by `namespace/name`. */
    claims: Map<string, ClaimState>;
}

/**
 * The pod's effective requests: max(sum of regular containers + sidecars, the peak of each init container plus
 * the sidecars started before it), plus overhead (component-helpers/resource PodRequests).
 */
export function podRequests(spec: PodSpec): Resources {
    let regular = spec.containers.map((c) => requestsOf(c.resources?.requests)).reduce(add, NO_RESOURCES);
    let sidecars = NO_RESOURCES;
    let initPeak = NO_RESOURCES;
    for (const init of spec.initContainers ?? []) {
        let request = requestsOf(init.resources?.requests);
        if (init.restartPolicy === "Always") {
            regular = add(regular, request);
            sidecars = add(sidecars, request);
            request = sidecars;
        } else {
            request = add(request, sidecars);
        }
        initPeak = max(initPeak, request);
    }
    return add(max(regular, initPeak), requestsOf(spec.overhead));
}

const hostPortsOf = (spec: PodSpec) =>
    [...(spec.initContainers ?? []), ...spec.containers].flatMap((c) =>
        (c.ports ?? []).filter((p) => (p.hostPort ?? 0) !== 0).map((p) => `${p.protocol ?? "TCP"}/${p.hostPort}`),
    );

const claimsOf = (pod: PodToPlace) =>
    (pod.spec.volumes ?? []).flatMap((v) => (v.persistentVolumeClaim ? [`${pod.namespace}/${v.persistentVolumeClaim.claimName}`] : []));

function termMatches(term: PodAffinityTerm, owner: PodToPlace, other: PodToPlace): boolean {
    const namespaces = term.namespaces?.length ? term.namespaces : [owner.namespace];
    return namespaces.includes(other.namespace) && selects(term.labelSelector, other.labels);
}

const topologyValue = (nodes: NodeModel[], nodeName: string, key: string) => nodes.find((n) => n.name === nodeName)?.labels[key];

/** Why a node cannot take the pod (one reason per failing plugin, in the scheduler's words); empty if it fits. */
function filterNode(pod: PodToPlace, node: NodeModel, view: SchedulerView): string[] {
    const reasons: string[] = [];
    const onNode = view.placed.filter((p) => p.node === node.name);

    // NodeResourcesFit
    const used = [...node.systemPods.map((s) => s.requests), ...onNode.map((p) => podRequests(p.spec))].reduce(add, NO_RESOURCES);
    const want = podRequests(pod.spec);
    if (used.cpuMilli + want.cpuMilli > node.allocatable.cpuMilli) reasons.push("Insufficient cpu");
    if (used.memory + want.memory > node.allocatable.memory) reasons.push("Insufficient memory");
    if (node.systemPods.length + onNode.length + 1 > node.allocatable.pods) reasons.push("Too many pods");

    // NodeAffinity
    const selectorOk = Object.entries(pod.spec.nodeSelector ?? {}).every(([k, v]) => node.labels[k] === v);
    const terms = pod.spec.affinity?.nodeAffinity?.requiredDuringSchedulingIgnoredDuringExecution?.nodeSelectorTerms;
    const affinityOk = !terms || terms.some((t) => selects({ matchExpressions: t.matchExpressions }, node.labels));
    if (!selectorOk || !affinityOk) reasons.push("node(s) didn't match Pod's node affinity/selector");

    // TaintToleration (NoSchedule/NoExecute)
    const untolerated = node.taints.find(
        (t) =>
            t.effect !== "PreferNoSchedule" &&
            !(pod.spec.tolerations ?? []).some(
                (tol) =>
                    (tol.key === undefined || tol.key === t.key) &&
                    (tol.effect === undefined || tol.effect === t.effect) &&
                    (tol.operator === "Exists" || tol.value === t.value),
            ),
    );
    if (untolerated) reasons.push(`node(s) had untolerated taint {${untolerated.key}: ${untolerated.value ?? ""}}`);

    // InterPodAffinity
    const all = view.placed;
    const affinity = pod.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    const affinityFails = affinity.some((term) => {
        const here = topologyValue(view.nodes, node.name, term.topologyKey);
        const matching = all.filter((p) => termMatches(term, pod, p));
        // The first pod of a group that selects itself may go anywhere (the scheduler's special case).
        if (matching.length === 0) return !termMatches(term, pod, pod);
        return here === undefined || !matching.some((p) => topologyValue(view.nodes, p.node, term.topologyKey) === here);
    });
    if (affinityFails) reasons.push("node(s) didn't match pod affinity rules");
    const anti = pod.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    if (
        anti.some((term) => {
            const here = topologyValue(view.nodes, node.name, term.topologyKey);
            return here !== undefined && all.some((p) => termMatches(term, pod, p) && topologyValue(view.nodes, p.node, term.topologyKey) === here);
        })
    )
        reasons.push("node(s) didn't match pod anti-affinity rules");
    if (
        all.some((p) =>
            (p.spec.affinity?.podAntiAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? []).some(
                (term) =>
                    termMatches(term, p, pod) &&
                    topologyValue(view.nodes, p.node, term.topologyKey) !== undefined &&
                    topologyValue(view.nodes, p.node, term.topologyKey) === topologyValue(view.nodes, node.name, term.topologyKey),
            ),
        )
    ) {
        reasons.push("node(s) didn't satisfy existing pods anti-affinity rules");
    }

    // NodePorts
    const taken = new Set(onNode.flatMap((p) => hostPortsOf(p.spec)));
    if (hostPortsOf(pod.spec).some((p) => taken.has(p))) reasons.push("node(s) didn't have free ports for the requested pod ports");

    // VolumeBinding: a node-local volume already provisioned elsewhere
    if (
        claimsOf(pod).some((key) => {
            const c = view.claims.get(key);
            return c?.storageClass.nodeLocal && c.node !== undefined && c.node !== node.name;
        })
    ) {
        reasons.push("node(s) had volume node affinity conflict");
    }
    return reasons;
}

export type ScheduleResult = { node: string } | { unschedulable: string };

/** Where the scheduler would put the pod given what already runs, or its FitError message. */
export function schedule(pod: PodToPlace, view: SchedulerView): ScheduleResult {
    // PreFilter (VolumeBinding): every claim must exist, and an Immediate claim must already be bound.
    for (const key of claimsOf(pod)) {
        const claim = view.claims.get(key);
        const name = key.split("/")[1];
        if (!claim) return { unschedulable: `0/${view.nodes.length} nodes are available: persistentvolumeclaim "${name}" not found.` };
        if (!claim.bound && claim.storageClass.bindingMode === "Immediate") {
            return { unschedulable: `0/${view.nodes.length} nodes are available: pod has unbound immediate PersistentVolumeClaims.` };
        }
    }
    const histogram = new Map<string, number>();
    const feasible: NodeModel[] = [];
    for (const node of view.nodes) {
        const reasons = filterNode(pod, node, view);
        if (reasons.length === 0) feasible.push(node);
        for (const r of reasons) histogram.set(r, (histogram.get(r) ?? 0) + 1);
    }
    if (feasible.length) {
        // Score: NodeResourcesFit's default LeastAllocated strategy (the emptiest node by cpu and memory share).
        const free = (n: NodeModel) => {
            const used = [...n.systemPods.map((s) => s.requests), ...view.placed.filter((p) => p.node === n.name).map((p) => podRequests(p.spec))].reduce(
                add,
                NO_RESOURCES,
            );
            return 1 - used.cpuMilli / n.allocatable.cpuMilli + (1 - used.memory / n.allocatable.memory);
        };
        return { node: feasible.reduce((best, n) => (free(n) > free(best) ? n : best)).name };
    }
    const reasons = [...histogram].map(([r, n]) => `${n} ${r}`).sort();
    return { unschedulable: `0/${view.nodes.length} nodes are available: ${reasons.join(", ")}.` };
}
