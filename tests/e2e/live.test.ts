// The engine model with a node behind it (live.ts), against a fake kubelet: registrations complete on the node's
// pod status, pods start only once what they mount was created, and a pod that never gets Ready fails the deploy
// with the provider's await timeout message while what depends on it is never created. Jobs run on the node: their
// registration completes when the node's Job controller says Complete, and fails at once on its Failed condition.
import type * as k8sType from "@pulumi/kubernetes";
import { afterPod, finished, JobStatus } from "./jobcontroller";
import type { DeployEvent, LiveNode } from "./live";
import type { PodStatus } from "./kubelet";
import type { KubeObject } from "./program";

jest.setTimeout(30_000);

/**
 * A kubelet that records what it is given; a started pod turns Ready after `readyAfterMs`, or never. A Job's pods
 * end after `readyAfterMs` as `jobPods` says, one after the other, and the real Job controller's rules give its status.
 */
class FakeNode implements LiveNode {
    readonly applied: string[] = [];
    readonly pods: Record<string, PodStatus> = {};
    readonly jobStatus: Record<string, JobStatus> = {};
    private readonly specs: Record<string, KubeObject> = {};

    constructor(
        private readonly readyAfterMs: number | "never",
        private readonly jobPods: ("Succeeded" | "Failed")[] = ["Succeeded"],
    ) {}

    apply(obj: KubeObject): Promise<void> {
        this.applied.push(`${obj.kind}/${obj.metadata.name}`);
        this.specs[obj.metadata.name] = obj;
        return Promise.resolve();
    }

    async startPod(workload: string): Promise<void> {
        const obj = this.specs[workload];
        if (obj.kind === "Job") {
            this.jobStatus[workload] = { startTime: Date.now(), active: 1, succeeded: 0, failed: 0, conditions: [] };
            for (const outcome of this.jobPods) {
                const container = { id: workload, cgroup: "", sidecar: false, running: true, started: true, ready: true, restartCount: 0, log: "" };
                this.pods[workload] = { name: workload, ip: "10.0.0.2", netns: "", phase: "Running", ready: true, containers: { sync: container } };
                await new Promise((r) => setTimeout(r, this.readyAfterMs as number));
                const exitCode = outcome === "Succeeded" ? 0 : 1;
                Object.assign(container, {
                    running: false,
                    ready: false,
                    lastState: { reason: exitCode ? "Error" : "Completed", exitCode, finishedAt: Date.now(), startedAt: 0 },
                });
                this.pods[workload] = { ...this.pods[workload], phase: outcome, ready: false };
                this.jobStatus[workload] = afterPod(obj.spec, this.jobStatus[workload], outcome);
                if (finished(this.jobStatus[workload])) return;
            }
            return;
        }
        const container = { id: workload, cgroup: "", sidecar: false, running: true, started: true, ready: false, restartCount: 0, log: "" };
        this.pods[workload] = { name: workload, ip: "10.0.0.1", netns: "", phase: "Running", ready: false, containers: { app: container } };
        if (this.readyAfterMs === "never") return;
        setTimeout(() => {
            container.ready = true;
            this.pods[workload].ready = true;
        }, this.readyAfterMs);
    }

    status() {
        return this.pods;
    }

    jobs() {
        return this.jobStatus;
    }
}

/** A Job (one container, run to completion) and a Service that needs it done first. */
function jobProgram(k8s: typeof k8sType, backoffLimit: number): Record<string, never> {
    const job = new k8s.batch.v1.Job("sync", {
        metadata: { name: "sync", namespace: "default" },
        spec: { backoffLimit, template: { spec: { restartPolicy: "Never", containers: [{ name: "sync", image: "mail/couchmail:dev", args: ["sync"] }] } } },
    });
    new k8s.core.v1.Service(
        "after-sync",
        { metadata: { name: "after-sync", namespace: "default" }, spec: { clusterIP: "None", selector: { app: "x" }, ports: [{ port: 80 }] } },
        { dependsOn: [job] },
    );
    return {};
}

/**
 * A ConfigMap, a StatefulSet mounting it (pod Ready by its probe), a Service created only once the StatefulSet is
 * ready — or, `deadlocked`, a StatefulSet mounting a ConfigMap that is created only once the StatefulSet is ready.
 */
function program(k8s: typeof k8sType, deadlocked = false): Record<string, never> {
    const labels = { app: "web" };
    const config = deadlocked
        ? undefined
        : new k8s.core.v1.ConfigMap("web-config", { metadata: { name: "web-config", namespace: "default" }, data: { "a.conf": "x" } });
    const web = new k8s.apps.v1.StatefulSet("web", {
        metadata: { name: "web", namespace: "default" },
        spec: {
            serviceName: "web",
            replicas: 1,
            selector: { matchLabels: labels },
            template: {
                metadata: { labels },
                spec: {
                    containers: [
                        { name: "app", image: "mail/postgrey:dev", ports: [{ name: "http", containerPort: 80 }], readinessProbe: { tcpSocket: { port: 80 } } },
                    ],
                    volumes: [{ name: "config", configMap: { name: config?.metadata.name ?? "web-config" } }],
                },
            },
        },
    });
    if (deadlocked)
        new k8s.core.v1.ConfigMap("web-config", { metadata: { name: "web-config", namespace: "default" }, data: { "a.conf": "x" } }, { dependsOn: [web] });
    new k8s.core.v1.Service(
        "after-web",
        { metadata: { name: "after-web", namespace: "default" }, spec: { clusterIP: "None", selector: labels, ports: [{ port: 80 }] } },
        { dependsOn: [web] },
    );
    return {};
}

async function deploy(node: FakeNode, timeoutMs: number, deadlocked = false, load?: (k8s: typeof k8sType) => Record<string, never>) {
    let result: { failures: string[]; events: DeployEvent[] } | undefined;
    await jest.isolateModulesAsync(async () => {
        const { deployLive } = await import("./live");
        const { clusterProfile } = await import("../kit/cluster/profiles");
        const k8s = await import("@pulumi/kubernetes");
        const events: DeployEvent[] = [];
        const config = { clusterProvider: "kubeconfig" };
        const r = await deployLive({
            profile: clusterProfile(config),
            node,
            config,
            stack: "test",
            timeoutMs,
            quietMs: 25,
            record: (e) => events.push(e),
            load: () => (load ? load(k8s) : program(k8s, deadlocked)),
        });
        result = { failures: r.failures, events };
    });
    return result!;
}

const when = (events: DeployEvent[], what: DeployEvent["what"], name: string) =>
    events.find((e) => e.what === what && (e.name === name || e.workload === name))?.at;

describe("engine model on a node (live.ts)", () => {
    test("the pod starts after its ConfigMap completed; the StatefulSet completes after its pod is Ready, its dependant after that", async () => {
        const node = new FakeNode(300);
        const { failures, events } = await deploy(node, 5000);
        expect(failures).toEqual([]);
        expect(node.applied).toEqual(["ConfigMap/web-config", "StatefulSet/web", "Service/after-web"]);
        expect(when(events, "podStarting", "web-0")!).toBeGreaterThanOrEqual(when(events, "ready", "web-config")!);
        const podReady = when(events, "podReady", "web-0")!;
        expect(podReady).toBeGreaterThanOrEqual(when(events, "podStarting", "web-0")! + 250);
        expect(when(events, "ready", "web")!).toBeGreaterThanOrEqual(podReady);
        expect(when(events, "created", "after-web")!).toBeGreaterThanOrEqual(when(events, "ready", "web")!);
    });

    test("a pod that never gets Ready fails the deploy with the await timeout, and its dependant is never created", async () => {
        const node = new FakeNode("never");
        const started = Date.now();
        const { failures, events } = await deploy(node, 1200);
        expect(failures).toEqual([
            [
                "kubernetes:apps/v1:StatefulSet (web): resource default/web was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live: 'web' timed out waiting to be Ready (after the 10m0s create timeout)",
                "    * Minimum number of live Pods was not attained",
                "    * [Pod default/web-0]: containers with unready status: [app]",
            ].join("\n"),
        ]);
        // The timeout (not the deadlock watchdog) ended it: a starting pod is progress.
        expect(Date.now() - started).toBeGreaterThanOrEqual(1200);
        expect(node.applied).toEqual(["ConfigMap/web-config", "StatefulSet/web"]);
        expect(events.some((e) => e.name === "after-web")).toBe(false);
    });

    test("a Job runs on the node: its registration completes when the Job is Complete, its dependant is created after that", async () => {
        const node = new FakeNode(400);
        const started = Date.now();
        const { failures, events } = await deploy(node, 5000, false, (k8s) => jobProgram(k8s, 6));
        expect(failures).toEqual([]);
        expect(node.applied).toEqual(["Job/sync", "Service/after-sync"]);
        expect(node.jobStatus.sync).toMatchObject({ succeeded: 1, conditions: [{ type: "Complete" }] });
        expect(when(events, "ready", "sync")! - started).toBeGreaterThanOrEqual(400);
        expect(when(events, "created", "after-sync")!).toBeGreaterThanOrEqual(when(events, "ready", "sync")!);
    });

    test("a Job that reaches its backoff limit fails the deploy at once with the provider's message; its dependant is never created", async () => {
        const node = new FakeNode(100, ["Failed", "Failed", "Succeeded"]);
        const started = Date.now();
        const { failures, events } = await deploy(node, 20_000, false, (k8s) => jobProgram(k8s, 1));
        expect(failures).toEqual([
            [
                "kubernetes:batch/v1:Job (sync): resource default/sync was successfully created, but the Kubernetes API server reported that it failed to fully initialize or become live: Resource 'sync' was created but failed to initialize",
                "    * [BackoffLimitExceeded] Job has reached the specified backoff limit",
                "    * Job has not completed",
                "    * [Pod default/sync-a0x7k]: containers with unready status: [sync]",
            ].join("\n"),
        ]);
        expect(Date.now() - started).toBeLessThan(5000);
        expect(node.jobStatus.sync).toMatchObject({ failed: 2, succeeded: 0 });
        expect(events.some((e) => e.name === "after-sync")).toBe(false);
    });

    test("a deadlock fails at once (no pod is starting), naming what the stuck resource holds back", async () => {
        const node = new FakeNode(0);
        const started = Date.now();
        const { failures } = await deploy(node, 20_000, true);
        expect(Date.now() - started).toBeLessThan(5000);
        expect(failures).toHaveLength(1);
        expect(failures[0]).toContain("'web' timed out waiting to be Ready (no pending resource can make progress");
        expect(failures[0]).toContain(`[Pod default/web-0]: MountVolume.SetUp failed for volume "config" : configmap "web-config" not found`);
        expect(failures[0]).toContain("deadlock: kubernetes:core/v1:ConfigMap (web-config) would provide what this waits for");
        expect(node.applied).toEqual(["StatefulSet/web"]);
    });
});
