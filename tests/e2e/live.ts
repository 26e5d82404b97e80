// The engine model's cluster with the loopback node behind it: every object the program creates is admitted and
// scheduled by the model (ClusterModel: Pod Security admission, the scheduler, volumes), then applied to the e2e
// node, and a workload's pod is started there by the real kubelet once the model says the kubelet could create its
// containers (every ConfigMap/Secret it mounts or reads exists). The provider's await rules and messages stay the
// engine's (tests/kit/cluster/engine.ts awaitFor/fail); only the pod status they read comes from the node.
// Jobs run on the node too: the kubelet runs their pods to completion and the node's Job controller
// (jobcontroller.ts) keeps their status, which decides the provider's Job await: complete once the Job has the
// Complete condition, failed at once with its Failed condition's "[BackoffLimitExceeded] …" (the provider's
// initialization error), pending while its pod runs or waits out the pod-failure back-off.
// What the node cannot run stays modelled, and is said where it happens: bare Pods and DaemonSets, kinds the node
// has no use for (ServiceAccounts, RBAC, disruption budgets, CronJobs — nothing awaits those; a test runs one's
// Job with Cluster.runJobFromCronJob), LoadBalancer addresses (the e2e's kubeconfig profile skips that await).
import type * as pulumi from "@pulumi/pulumi";
import { ClusterModel, PodModel, PodStatus as ModelPodStatus } from "../kit/cluster/cluster";
import { settle } from "../kit/cluster/deploy";
import { ClusterEngine } from "../kit/cluster/engine";
import type { KubeObject as ModelObject } from "../kit/cluster/objects";
import type { ClusterProfile } from "../kit/cluster/profiles";
import { finished, jobFailure, JobStatus } from "./jobcontroller";
import type { PodStatus as NodePodStatus } from "./kubelet";
import type { KubeObject } from "./program";

/**
 * The kinds the loopback node uses: pods' sources (ConfigMaps, Secrets, standalone claims it provisions), the network
 * (Services, policies), the workloads it runs, and CronJobs (whose Jobs a test creates).
 */
export const NODE_KINDS = new Set([
    "Namespace",
    "ConfigMap",
    "Secret",
    "PersistentVolumeClaim",
    "Service",
    "NetworkPolicy",
    "StatefulSet",
    "Deployment",
    "Job",
    "CronJob",
]);
const RUN_ON_NODE = new Set(["StatefulSet", "Deployment", "Job"]);

/**
 * What the runner needs of the e2e node: apply objects, start a workload's pod (a Job: run it), read the kubelet's
 * pod status and the Job controller's Job status.
 */
export interface LiveNode {
    apply(obj: KubeObject): Promise<void>;
    /** Starts the workload's pod; settles when it is Ready (a Job: finished) or the kubelet gives up on it (it may keep retrying). */
    startPod(workload: string): Promise<void>;
    status(): Record<string, Pick<NodePodStatus, "phase" | "ready" | "containers">>;
    jobs(): Record<string, JobStatus>;
}

/** A point in the deploy, for the suite's order checks (`.e2e/deploy-events.json`). */
export interface DeployEvent {
    at: number;
    what: "created" | "ready" | "failed" | "podStarting" | "podReady";
    kind: string;
    namespace?: string;
    name: string;
    /** For pod events: the workload it belongs to (the node names pods by workload). */
    workload?: string;
}

export class LiveClusterModel extends ClusterModel {
    /** Workload name → when its pod was handed to the kubelet. */
    private readonly started = new Map<string, number>();
    private readonly seenReady = new Set<string>();
    private readonly startErrors = new Map<string, string>();
    private queue: Promise<void> = Promise.resolve();
    private queued = 0;
    private applyError?: Error;

    constructor(
        profile: ClusterProfile,
        private readonly node: LiveNode,
        private readonly record: (e: DeployEvent) => void,
    ) {
        super(profile);
    }

    /** One at a time and in order, as the API server would see them: an object reaches the node before its dependants. */
    private enqueue(step: () => Promise<void>): void {
        this.queued++;
        this.queue = this.queue
            .then(step)
            .catch((e) => {
                this.applyError ??= e instanceof Error ? e : new Error(String(e));
            })
            .finally(() => this.queued--);
    }

    override create(obj: ModelObject): ModelObject {
        const stored = super.create(obj);
        if (NODE_KINDS.has(stored.kind)) this.enqueue(() => this.node.apply(stored as unknown as KubeObject));
        if (podOwnerKinds.has(stored.kind) && !RUN_ON_NODE.has(stored.kind)) {
            this.warnings.push(
                `${stored.kind} ${stored.metadata.namespace}/${stored.metadata.name}: the loopback node runs StatefulSet, Deployment and Job pods only; this one's readiness is the model's`,
            );
        }
        this.startPods();
        return stored;
    }

    override applied(): Promise<void> {
        return this.queue.then(() => {
            if (this.applyError) throw this.applyError;
        });
    }

    /** Hands every pod the model says could now run to the kubelet (retried on every poll until it can). */
    startPods(): void {
        for (const pod of this.pods) {
            const workload = workloadOf(pod);
            if (!RUN_ON_NODE.has(pod.ownerKind) || this.started.has(workload)) continue;
            if (this.podsOf({ kind: pod.ownerKind, metadata: { name: workload, namespace: pod.namespace } } as ModelObject).length > 1) {
                throw new Error(
                    `${pod.ownerKind} ${pod.namespace}/${workload}: the loopback node runs one pod per workload; give it replicas: 1 in the e2e stack`,
                );
            }
            if (!super.podStatus(pod).ready) continue;
            this.started.set(workload, Date.now());
            this.enqueue(() => {
                this.record({ at: Date.now(), what: "podStarting", kind: "Pod", namespace: pod.namespace, name: pod.name, workload });
                // Not awaited: the await rules read the kubelet's status; a start the kubelet gives up on says why.
                this.node.startPod(workload).catch((e) => this.startErrors.set(workload, e instanceof Error ? e.message : String(e)));
                return Promise.resolve();
            });
        }
    }

    /**
     * The model's verdict while the model blocks the pod (Pod Security, scheduling, volumes, env references: the
     * kubelet never gets it); once the node runs it, the kubelet's: Running when its sandbox is up, Ready when every
     * container's readiness passed. Unready containers are reported as the kubelet's Ready condition words them
     * (kubernetes pkg/kubelet/status/generate.go "containers with unready status: [...]") with each waiting
     * container's reason, which the provider's pod checks print (pulumi-kubernetes provider/pkg/await/awaiters.go).
     */
    override podStatus(pod: PodModel): ModelPodStatus {
        const modelled = super.podStatus(pod);
        if (!modelled.ready || !RUN_ON_NODE.has(pod.ownerKind)) return modelled;
        const workload = workloadOf(pod);
        const status = this.node.status()[workload];
        const prefix = `[Pod ${pod.namespace}/${pod.name}]:`;
        if (!status || !this.started.has(workload)) return { running: false, ready: false, problems: [`${prefix} Pod is being created`] };
        // A Job's await reads the Job's conditions, not its pod's readiness: "ready" once the Job is complete.
        if (pod.ownerKind === "Job") {
            if (finished(this.node.jobs()[workload]) === "Complete") return { running: false, ready: true, problems: [] };
            if (status.ready && status.phase === "Running") return { running: true, ready: false, problems: [] };
        }
        if (status.ready && status.phase === "Running") {
            if (!this.seenReady.has(workload)) {
                this.seenReady.add(workload);
                this.record({ at: Date.now(), what: "podReady", kind: "Pod", namespace: pod.namespace, name: pod.name, workload });
            }
            return { running: true, ready: true, problems: [] };
        }
        const unready = Object.entries(status.containers).filter(([, c]) => !c.ready);
        const problems = [
            ...(unready.length ? [`${prefix} containers with unready status: [${unready.map(([n]) => n).join(" ")}]`] : []),
            ...unready.flatMap(([n, c]) => (c.waiting ? [`${prefix} container "${n}": [${c.waiting.reason}] ${c.waiting.message}`] : [])),
            ...unready.flatMap(([n, c]) =>
                c.lastState && c.restartCount > 0
                    ? [`${prefix} container "${n}" restarted ${c.restartCount} times; last state ${c.lastState.reason} (exit code ${c.lastState.exitCode})`]
                    : [],
            ),
            ...(this.startErrors.has(workload) ? [`${prefix} ${this.startErrors.get(workload)}`] : []),
        ];
        return { running: status.phase === "Running", ready: false, problems: problems.length ? problems : [`${prefix} Pod is ${status.phase}`] };
    }

    override jobFailure(job: ModelObject): string | undefined {
        return jobFailure(this.node.jobs()[job.metadata.name!]);
    }

    /** Objects still on their way to the node, or pods it is starting, or Jobs it runs: the engine must not call that a deadlock. */
    override settling(): boolean {
        if (this.queued > 0) return true;
        const status = this.node.status();
        const jobs = this.node.jobs();
        return [...this.started.keys()].some((w) => (this.isJob(w) ? !finished(jobs[w]) : !status[w]?.ready));
    }

    private isJob(workload: string): boolean {
        return this.pods.some((p) => p.ownerKind === "Job" && workloadOf(p) === workload);
    }
}

const podOwnerKinds = new Set(["StatefulSet", "Deployment", "DaemonSet", "ReplicaSet", "Job", "Pod"]);

/** The model's owner key is `Kind/namespace/name`; the kubelet knows a pod by its workload's name. */
function workloadOf(pod: PodModel): string {
    return pod.owner.split("/").slice(2).join("/");
}

export interface LiveDeployOptions {
    profile: ClusterProfile;
    node: LiveNode;
    /** Stack config (`key: value`, `mail:` prefix implied). */
    config: Record<string, unknown>;
    stack: string;
    /** Real milliseconds standing for the provider's default 10-minute create timeout (customTimeouts scale with it). */
    timeoutMs: number;
    /** Milliseconds without progress (and no pod starting) after which pending resources count as stuck. */
    quietMs: number;
    record: (event: DeployEvent) => void;
    /** Loads the program (after the engine is installed as the mock monitor); returns its exports. */
    load: () => Record<string, pulumi.Input<unknown>>;
}

/**
 * Runs a program under the engine model with the node behind it, until nothing is pending: the engine's failures
 * (API refusals, awaits that timed out or can never pass), the API server's warnings, the program's exports.
 */
export async function deployLive(opts: LiveDeployOptions) {
    const cluster = new LiveClusterModel(opts.profile, opts.node, opts.record);
    const engine = new ClusterEngine({
        profile: opts.profile,
        cluster,
        timeoutMs: opts.timeoutMs,
        quietMs: opts.quietMs,
        onEvent: (e) => opts.record({ at: e.at, what: e.what, kind: e.object.kind, namespace: e.object.metadata.namespace, name: e.object.metadata.name! }),
    });
    await engine.install(opts.config, opts.stack);
    // The node changes on its own (pods start, probes pass): look again, as the provider's watch would be told.
    const watch = setInterval(
        () => {
            cluster.startPods();
            engine.poll();
        },
        Math.min(100, opts.quietMs),
    );
    // The SDK captures a stack trace per resource; nothing here reads them (as in the kit's deployProgram).
    const stackTraceLimit = Error.stackTraceLimit;
    Error.stackTraceLimit = 0;
    try {
        const exports = opts.load();
        await settle(engine, opts.quietMs);
        await cluster.applied();
        engine.checkCronJobs();
        return { failures: engine.failures, warnings: cluster.warnings, exports, cluster };
    } finally {
        clearInterval(watch);
        Error.stackTraceLimit = stackTraceLimit;
    }
}
