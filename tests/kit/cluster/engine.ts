// A Pulumi mock monitor that deploys like `pulumi up` against a modelled cluster: a Kubernetes resource's
// registration completes only once the API server accepted it (ClusterModel.create) and the pulumi-kubernetes
// provider's await for its kind passed, so the SDK creates dependents (dependsOn and output references) only then
// — exactly the order the engine would follow.
// Await rules: pulumi/pulumi-kubernetes provider/pkg/await/{service,statefulset,deployment,daemonset,job,pod}.go
// and awaiters.go (kinds without an awaiter are ready once created; `pulumi.com/skipAwait: "true"` skips the await);
// messages: provider/pkg/provider/provider.go and await/error.go. Default create timeout 10 minutes per kind
// (Service: DefaultServiceTimeoutMins), overridden by customTimeouts.create — in the model both are scaled down to
// `timeoutMs`. When nothing pending can make progress any more, the model fails them at once (the provider would
// wait out the timeout) and says what each one waits for.
// A failed resource's registration never completes: like the engine, the model creates nothing that depends on
// it, and carries on with everything else (as `pulumi up --continue-on-error` would), so one run shows every
// failure. The failures are collected in `failures`, not thrown into the program.
import * as pulumi from "@pulumi/pulumi";
import { unwrapSecrets } from "../k8s-schema";
import { FAKE_ADDRESSES, MockRecorder, RecordedResource } from "../mocks";
import { isHook, renderChart, RenderedObject } from "./charts";
import { ApiError, ClusterModel, keyOf } from "./cluster";
import { DeclaredResources, providesFor } from "./declared";
import { KubeObject, podTemplateOf, qualifiedName } from "./objects";
import type { ClusterProfile } from "./profiles";

export interface EngineOptions {
    profile: ClusterProfile;
    /**
     * Real milliseconds standing for the provider's default 10-minute create timeout (customTimeouts scale with it).
     * A safety net: an await that cannot complete is failed as soon as nothing makes progress (quietMs), so this
     * only fires for one that keeps waiting while other work goes on; keep it well above a run's synchronous work
     * (key generation) so a busy machine does not time awaits out.
     */
    timeoutMs?: number;
    /** Milliseconds without any registration or progress after which pending resources count as stuck. */
    quietMs?: number;
    /**
     * Diagnosis only: after recording a failed await, let the resource complete anyway, so the failures behind it
     * show in the same run (the real engine stops there).
     */
    keepGoing?: boolean;
    /**
     * The cluster behind the engine (default: a ClusterModel of the profile). The e2e runner passes one whose pods
     * run on its loopback node, so awaits pass on the real pods' state.
     */
    cluster?: ClusterModel;
    /** Told when a Kubernetes object was created, when its await passed (or it has none) and when it failed. */
    onEvent?: (event: EngineEvent) => void;
}

export interface EngineEvent {
    what: "created" | "ready" | "failed";
    label: string;
    object: KubeObject;
    at: number;
}

const PROVIDER_DEFAULT_TIMEOUT_S = 600;

/** What a failed registration returns to the SDK: nothing, ever (its dependents are never created). */
const never = <T>() => new Promise<T>(() => undefined);

class ResourceFailed extends Error {}

/** Pulumi's wire form of a resource reference (@pulumi/pulumi runtime/rpc.ts specialSigKey, specialResourceSig). */
const RESOURCE_REFERENCE = { key: "4dabf18193072939515e22adb298388d", sig: "5cf8f73096256a8f31e491e813e4eb8e" };

/** `failure`: the await ends at once with the provider's initialization error (a Job's Failed condition). */
interface AwaitState {
    ready: boolean;
    messages: string[];
    failure?: string;
}

interface Pending {
    label: string;
    /** `type::name` of the program's resource (undefined for a chart's children). */
    key?: string;
    object: KubeObject;
    check: () => AwaitState;
    timeoutSeconds: number;
    resolve: () => void;
    fail: (message: string) => void;
    timer: NodeJS.Timeout;
}

/** "10m", "1h30m", "45s" (Go durations, as customTimeouts are given) in seconds. */
export function durationSeconds(text: string): number | undefined {
    if (!text) return undefined;
    const units: Record<string, number> = { h: 3600, m: 60, s: 1, ms: 0.001 };
    let total = 0;
    for (const [, n, unit] of text.matchAll(/(\d+(?:\.\d+)?)(ms|h|m|s)/g)) total += Number(n) * units[unit];
    return total || undefined;
}

const formatDuration = (s: number) => (s % 60 === 0 ? `${s / 60}m0s` : `${s}s`);

/** The provider's await for an object of this kind, or undefined when it has none (ready once created). */
export function awaitFor(cluster: ClusterModel, obj: KubeObject): (() => AwaitState) | undefined {
    if (obj.metadata.annotations?.["pulumi.com/skipAwait"] === "true") return undefined;
    const workload = (): AwaitState => {
        const pods = cluster.podsOf(obj);
        const statuses = pods.map((p) => cluster.podStatus(p));
        const ready = statuses.every((s) => s.ready);
        const pvcs =
            obj.kind === "Deployment"
                ? (podTemplateOf(obj)!.spec.volumes ?? [])
                      .flatMap((v) => (v.persistentVolumeClaim ? [v.persistentVolumeClaim.claimName] : []))
                      .filter((c) => !cluster.claims.get(`${obj.metadata.namespace}/${c}`)?.bound)
                : [];
        return {
            ready: ready && pvcs.length === 0,
            messages: [
                ...(pvcs.length ? [`Failed to bind PersistentVolumeClaim(s): "${pvcs.join(",")}"`] : []),
                ...(ready ? [] : [obj.kind === "Job" ? "Job has not completed" : "Minimum number of live Pods was not attained"]),
                ...statuses.flatMap((s) => s.problems),
            ],
        };
    };
    switch (obj.kind) {
        case "Deployment":
        case "StatefulSet":
        case "DaemonSet":
        case "ReplicaSet":
        case "Pod":
            return workload;
        case "Job":
            // provider/pkg/await/states/job.go: a Failed=True condition (BackoffLimitExceeded, DeadlineExceeded) fails the await at once.
            return () => {
                const failure = cluster.jobFailure(obj);
                return failure ? { ...workload(), ready: false, failure } : workload();
            };
        case "Service": {
            const type = obj.spec?.type ?? "ClusterIP";
            if (type === "ExternalName" || obj.spec?.clusterIP === "None") return undefined;
            return () => {
                const endpoints = cluster.endpointsOf(obj);
                const address = type !== "LoadBalancer" || cluster.profile.loadBalancer;
                return {
                    ready: endpoints && address,
                    messages: [
                        ...(endpoints
                            ? []
                            : ["Service does not target any Pods. Selected Pods may not be ready, or field '.spec.selector' may not match labels on any Pods"]),
                        ...(address ? [] : ["Service was not allocated an IP address; does your cloud provider support this?"]),
                    ],
                };
            };
        }
        case "PersistentVolumeClaim":
            return () => {
                const claim = cluster.claims.get(`${obj.metadata.namespace}/${obj.metadata.name}`)!;
                // A WaitForFirstConsumer claim is left Pending by design; the provider does not wait for it.
                const ready = claim.bound || claim.storageClass.bindingMode === "WaitForFirstConsumer";
                return { ready, messages: ready ? [] : ["PersistentVolumeClaim is not Bound"] };
            };
        default:
            return undefined;
    }
}

/**
 * Mocks for `pulumi.runtime.setMocks`: records every resource like MockRecorder (whose provider-computed state it
 * reuses for everything but Kubernetes objects) and deploys the Kubernetes objects into a ClusterModel, resolving each registration when the provider
 * would. `failures` holds every error the engine would print; `cluster.warnings` the API server's warnings.
 */
export class ClusterEngine implements pulumi.runtime.Mocks {
    /** Answers invokes and gives non-Kubernetes resources their provider-computed state. */
    private readonly recorder = new MockRecorder();
    /** Every resource the program registered, in registration order. */
    readonly resources: RecordedResource[] = [];
    readonly cluster: ClusterModel;
    readonly failures: string[] = [];
    /** Bumped on every registration and every await that completes: the watchdog's measure of progress. */
    progress = 0;
    private readonly pending = new Set<Pending>();
    private readonly timeoutMs: number;
    private readonly quietMs: number;
    private readonly keepGoing: boolean;
    private readonly createTimeouts = new Map<string, string>();
    private readonly parents = new Map<string, string>();
    private readonly declared = new DeclaredResources();
    private watchdog?: NodeJS.Timeout;
    private readonly onEvent: (event: EngineEvent) => void;

    constructor(opts: EngineOptions) {
        this.cluster = opts.cluster ?? new ClusterModel(opts.profile);
        this.onEvent = opts.onEvent ?? (() => undefined);
        this.timeoutMs = opts.timeoutMs ?? 20000;
        this.quietMs = opts.quietMs ?? 25;
        this.keepGoing = opts.keepGoing ?? false;
    }

    /** Sets the stack config (`key: value`, `mail:` prefix implied) and installs this engine as the mock monitor. */
    async install(config: Record<string, unknown>, stack = "test"): Promise<void> {
        const all: Record<string, string> = {};
        for (const [key, value] of Object.entries(config)) {
            all[key.includes(":") ? key : `mail:${key}`] = typeof value === "string" ? value : JSON.stringify(value);
        }
        pulumi.runtime.setAllConfig(all);
        await pulumi.runtime.setMocks(this, "mail", stack, false);
        this.declared.install();
        // The mock monitor does not pass customTimeouts to newResource: read them off the request.
        type Req = { getType(): string; getName(): string; getParent(): string; getCustomtimeouts(): { getCreate(): string } | undefined };
        const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource(req: Req, cb: unknown): Promise<void> };
        const register = monitor.registerResource.bind(monitor);
        monitor.registerResource = (req, cb) => {
            const create = req.getCustomtimeouts()?.getCreate();
            if (create) this.createTimeouts.set(`${req.getType()}::${req.getName()}`, create);
            this.parents.set(`${req.getType()}::${req.getName()}`, req.getParent());
            return register(req, cb);
        };
    }

    get pendingCount(): number {
        return this.pending.size;
    }

    call(args: pulumi.runtime.MockCallArgs): pulumi.runtime.MockCallResult {
        return this.recorder.call(args);
    }

    async newResource(args: pulumi.runtime.MockResourceArgs): Promise<pulumi.runtime.MockResourceResult> {
        try {
            return await this.register(args);
        } catch (e) {
            if (e instanceof ResourceFailed) return never();
            throw e;
        }
    }

    private async register(args: pulumi.runtime.MockResourceArgs): Promise<pulumi.runtime.MockResourceResult> {
        this.progress++;
        this.declared.markRegistered(args.type, args.name);
        if (!args.type.startsWith("kubernetes:")) return this.recordElsewhere(args);
        // Kubernetes objects are recorded and given their live state here: the cluster model is their provider.
        this.resources.push({ type: args.type, name: args.name, inputs: args.inputs, custom: args.custom ?? false, parent: "", provider: args.provider ?? "" });
        const label = `${args.type} (${args.name})`;
        const id = args.custom ? `${args.name}-id` : undefined;
        if (args.type === "kubernetes:helm.sh/v4:Chart") {
            const children = await this.deployChart(label, unwrapSecrets(args.inputs) as Record<string, unknown>);
            return { id, state: { ...args.inputs, resources: this.chartResources(args, children) } };
        }
        const obj = unwrapSecrets(args.inputs) as KubeObject;
        if (!args.custom || typeof obj.kind !== "string") return { id, state: args.inputs };
        if (args.id) return this.read(label, args);

        const stored = this.createOrFail(label, obj, args.type.endsWith("Patch"));
        // Where a real node backs the cluster, the object has reached it before the provider's await begins.
        await this.cluster.applied();
        this.onEvent({ what: "created", label, object: stored, at: Date.now() });
        const timeout = durationSeconds(this.createTimeouts.get(`${args.type}::${args.name}`) ?? "") ?? PROVIDER_DEFAULT_TIMEOUT_S;
        await this.awaitReady(label, stored, timeout, `${args.type}::${args.name}`);
        this.onEvent({ what: "ready", label, object: stored, at: Date.now() });
        return { id, state: { ...args.inputs, ...this.status(stored) } };
    }

    /**
     * Every other provider (clouds, random, tls) as MockRecorder answers it, except that an RSA key of a given name
     * and size is generated once per test process: key generation would otherwise dominate a matrix of deploys.
     */
    private recordElsewhere(args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
        const cache: Map<string, pulumi.runtime.MockResourceResult> = ((globalThis as Record<string, unknown>).__clusterModelKeys ??= new Map()) as Map<
            string,
            pulumi.runtime.MockResourceResult
        >;
        const key = `${args.type}/${args.name}/${JSON.stringify(args.inputs)}`;
        const cached = args.type === "tls:index/privateKey:PrivateKey" ? cache.get(key) : undefined;
        this.resources.push({ type: args.type, name: args.name, inputs: args.inputs, custom: args.custom ?? false, parent: "", provider: args.provider ?? "" });
        try {
            const result = cached ?? this.recorder.newResource(args);
            if (args.type === "tls:index/privateKey:PrivateKey") cache.set(key, result);
            return result;
        } catch (e) {
            // A mocked cloud API refused the resource (as the provider would report it).
            const message = `${args.type} (${args.name}): ${(e as Error).message}`;
            this.failures.push(message);
            throw new ResourceFailed(message);
        }
    }

    /** `Resource.get`: reads the live object; the API server's 404 when it does not exist (yet). */
    private read(label: string, args: pulumi.runtime.MockResourceArgs): pulumi.runtime.MockResourceResult {
        const [namespace, name] = String(args.id).includes("/") ? String(args.id).split("/") : ["default", String(args.id)];
        const kind = args.type.split(":").pop()!;
        const live = this.cluster.get(kind, namespace, name);
        if (!live) {
            const message = `${label}: reading ${namespace}/${name}: ${kind.toLowerCase()}s "${name}" not found`;
            this.failures.push(message);
            throw new ResourceFailed(message);
        }
        return { id: String(args.id), state: { ...live, ...this.status(live) } };
    }

    /** What the provider reads back after its await: a LoadBalancer Service's address, where the cluster gives one. */
    private status(obj: KubeObject): Record<string, unknown> {
        if (obj.kind !== "Service" || obj.spec?.type !== "LoadBalancer" || !this.cluster.profile.loadBalancer) return {};
        return { status: { loadBalancer: { ingress: [{ ip: FAKE_ADDRESSES.serviceLb }] } } };
    }

    private createOrFail(label: string, obj: KubeObject, patch = false): KubeObject {
        try {
            const stored = patch ? this.cluster.upsert(obj) : this.cluster.create(obj);
            // The new object may be what a pending await was waiting for (a Secret a pod mounts, pods for a Service).
            this.poll();
            return stored;
        } catch (e) {
            if (!(e instanceof ApiError)) throw e;
            const message = `${label}: resource ${qualifiedName(obj)} was not successfully created by the Kubernetes API server : ${e.message}`;
            this.failures.push(message);
            throw new ResourceFailed(message);
        }
    }

    /** Chart v4: render, drop hooks, create namespaces and CRDs first, then the rest; ready when every child is. */
    private async deployChart(label: string, inputs: Record<string, unknown>): Promise<KubeObject[]> {
        let rendered: RenderedObject[];
        try {
            rendered = renderChart({
                chart: String(inputs.chart),
                version: String(inputs.version),
                name: String(inputs.name),
                namespace: String(inputs.namespace),
                values: inputs.values,
            });
        } catch (e) {
            const message = `${label}: ${(e as Error).message}`;
            this.failures.push(message);
            throw new ResourceFailed(message);
        }
        for (const r of rendered.filter((x) => isHook(x.object))) {
            for (const created of r.creates ?? []) {
                this.cluster.onlyFromDroppedHooks.set(
                    keyOf(created.kind, created.metadata.namespace, created.metadata.name!),
                    `${r.object.kind} ${qualifiedName(r.object)}`,
                );
            }
        }
        const kept = rendered.map((r) => r.object).filter((o) => !isHook(o));
        const first = (o: KubeObject) => (o.kind === "Namespace" || o.kind === "CustomResourceDefinition" ? 0 : 1);
        const children = [...kept].sort((a, b) => first(a) - first(b));
        const results = await Promise.allSettled(
            children.map(async (child) => {
                const childLabel = `kubernetes:${child.kind} (${qualifiedName(child)}, of ${label})`;
                await this.awaitReady(childLabel, this.createOrFail(childLabel, child), PROVIDER_DEFAULT_TIMEOUT_S);
            }),
        );
        const failed = results.filter((r): r is PromiseRejectedResult => r.status === "rejected");
        if (failed.length) throw new ResourceFailed(`${label}: ${failed.length} of its resources failed`);
        return children;
    }

    /**
     * The Chart's `resources` output: references to its children, registered under the chart as
     * `<chart name>:<namespace>/<name>` (the default resourcePrefix; pulumi-kubernetes sdk/nodejs/helm/v4/chart.ts),
     * so the program can take objects from it. The mock monitor answers a reference from its resource table.
     */
    private chartResources(args: pulumi.runtime.MockResourceArgs, children: KubeObject[]): Record<string, unknown>[] {
        const monitor = pulumi.runtime.getMonitor() as unknown as { resources: Map<string, { urn: string; id: string; state: unknown }> };
        const parent = this.parents.get(`${args.type}::${args.name}`) ?? "";
        const chartType = parent ? `${parent.split("::")[2]}$${args.type}` : args.type;
        return children.map((child) => {
            const [group, version] = child.apiVersion.includes("/") ? child.apiVersion.split("/") : ["core", child.apiVersion];
            const type = `kubernetes:${group.replace(/\.k8s\.io$/, "").replace(/^rbac\.authorization$/, "rbac")}/${version}:${child.kind}`;
            const name = `${args.name}:${qualifiedName(child)}`;
            const urn = `urn:pulumi:${pulumi.getStack()}::${pulumi.getProject()}::${chartType}$${type}::${name}`;
            const id = qualifiedName(child);
            // Not recorded in `resources`: those are what the program declares; these are the model's renderings.
            monitor.resources.set(urn, { urn, id, state: { ...child, ...this.status(child) } });
            return { [RESOURCE_REFERENCE.key]: RESOURCE_REFERENCE.sig, urn, id };
        });
    }

    private awaitReady(label: string, obj: KubeObject, timeoutSeconds: number, key?: string): Promise<void> {
        const check = awaitFor(this.cluster, obj);
        if (!check) return Promise.resolve();
        return new Promise<void>((resolve, reject) => {
            const pending: Pending = {
                label,
                key,
                object: obj,
                check,
                timeoutSeconds,
                resolve,
                fail: (message: string) => reject(new ResourceFailed(message)),
                timer: setTimeout(() => this.fail(pending, "timeout"), (this.timeoutMs * timeoutSeconds) / PROVIDER_DEFAULT_TIMEOUT_S),
            };
            this.pending.add(pending);
            this.poll();
        });
    }

    /** Completes every pending await whose condition now holds (called after every change to the cluster). */
    poll(): void {
        let changed = true;
        while (changed) {
            changed = false;
            for (const p of [...this.pending]) {
                const state = p.check();
                if (state.failure) {
                    this.fail(p, "failed");
                    changed = true;
                    continue;
                }
                if (!state.ready) continue;
                this.pending.delete(p);
                clearTimeout(p.timer);
                this.progress++;
                changed = true;
                p.resolve();
            }
        }
        this.watch();
    }

    /** Fails everything still pending once nothing registers and nothing completes for a while. */
    private watch(): void {
        if (this.watchdog || this.pending.size === 0) return;
        let last = this.progress;
        let quietRounds = 0;
        const tick = () => {
            this.watchdog = undefined;
            if (this.pending.size === 0) return;
            // Pods a real node is still starting are progress the model cannot count.
            quietRounds = this.progress === last && !this.cluster.settling() ? quietRounds + 1 : 0;
            last = this.progress;
            if (quietRounds >= 2) {
                for (const p of [...this.pending]) this.fail(p, "stuck");
                return;
            }
            this.watchdog = setTimeout(tick, this.quietMs);
        };
        this.watchdog = setTimeout(tick, this.quietMs);
    }

    private fail(p: Pending, why: "timeout" | "stuck" | "failed"): void {
        if (!this.pending.delete(p)) return;
        clearTimeout(p.timer);
        const others = [...this.pending].map((o) => o.label);
        const { messages, failure } = p.check();
        const note =
            why === "stuck"
                ? `(no pending resource can make progress${others.length ? `; also waiting: ${others.join(", ")}` : ""} — the provider would give up after its ${formatDuration(p.timeoutSeconds)} create timeout)`
                : `(after the ${formatDuration(p.timeoutSeconds)} create timeout)`;
        // Name the cycle: what the SDK holds back until this resource is ready, and which of those it waits for.
        const held = why === "stuck" && p.key ? this.declared.heldBackBy(p.key, providesFor(p.object)) : [];
        // provider/pkg/await/error.go: initializationError when the object reported a failure, timeoutError otherwise.
        const awaitError =
            why === "failed"
                ? `Resource '${p.object.metadata.name}' was created but failed to initialize`
                : `'${p.object.metadata.name}' timed out waiting to be Ready ${note}`;
        const message = [
            `${p.label}: resource ${qualifiedName(p.object)} was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live: ${awaitError}`,
            ...(failure ? [`    * ${failure}`] : []),
            ...messages.map((m) => `    * ${m}`),
            ...held
                .filter((h) => h.provides)
                .map(
                    (h) =>
                        `    deadlock: ${h.label} would provide what this waits for, but is created only once this is ready (it takes this resource's outputs or depends on it)`,
                ),
            ...(held.length ? [`    held back until this is ready: ${held.map((h) => h.label).join(", ")}`] : []),
        ].join("\n");
        this.failures.push(message);
        this.progress++;
        this.onEvent({ what: "failed", label: p.label, object: p.object, at: Date.now() });
        if (this.keepGoing) p.resolve();
        else p.fail(message);
    }

    /** After the deploy: what each CronJob's next Job would run into (nothing awaits CronJobs, so nothing else tells). */
    checkCronJobs(): void {
        for (const obj of this.cluster.objects.values()) {
            if (obj.kind !== "CronJob") continue;
            const problems = this.cluster.wouldRun(obj);
            if (problems.length)
                this.failures.push([`CronJob ${qualifiedName(obj)}: the pod of its next Job would not run:`, ...problems.map((m) => `    * ${m}`)].join("\n"));
        }
    }
}
