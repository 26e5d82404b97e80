// The deploy followed the engine's order on the real node (`.e2e/deploy-events.json`, written by `up` as the engine
// model created objects, completed their awaits and handed pods to the kubelet): no pod started before the
// ConfigMaps and Secrets it uses were created, and no workload's registration completed before its pod was Ready
// by its real readiness probes — so everything created after it (dependsOn, output references) came after that.
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "fs";
import * as path from "path";
import type { DeployEvent } from "./live";
import { Cluster } from "./cluster";
import { E2E_DIR } from "./layout";

/* eslint-disable @typescript-eslint/no-explicit-any -- pod specs as the program declared them */
type Spec = any;

const events = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "deploy-events.json"), "utf8")) as DeployEvent[];
const at = (what: DeployEvent["what"], kind: string, name: string) => events.find((e) => e.what === what && e.kind === kind && e.name === name)?.at;
const podEvent = (what: "podStarting" | "podReady", workload: string) => events.find((e) => e.what === what && e.workload === workload)?.at;

/** The ConfigMaps and Secrets a pod template needs before its containers can be created. */
function sourcesOf(spec: Spec): { kind: "ConfigMap" | "Secret"; name: string }[] {
    const out: { kind: "ConfigMap" | "Secret"; name: string }[] = [];
    for (const v of spec.volumes ?? []) {
        if (v.configMap && !v.configMap.optional) out.push({ kind: "ConfigMap", name: v.configMap.name });
        if (v.secret && !v.secret.optional) out.push({ kind: "Secret", name: v.secret.secretName });
        for (const s of v.projected?.sources ?? []) {
            if (s.configMap && !s.configMap.optional) out.push({ kind: "ConfigMap", name: s.configMap.name });
            if (s.secret && !s.secret.optional) out.push({ kind: "Secret", name: s.secret.name });
        }
    }
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        for (const e of c.env ?? []) {
            const s = e.valueFrom?.secretKeyRef;
            const m = e.valueFrom?.configMapKeyRef;
            if (s && !s.optional) out.push({ kind: "Secret", name: s.name });
            if (m && !m.optional) out.push({ kind: "ConfigMap", name: m.name });
        }
    }
    return out;
}

/** The workloads the deploy created: not the suite's test pods, nor Jobs a suite created later (create job --from=cronjob). */
const programWorkloads = () =>
    Cluster.load()
        .workloads()
        .filter((w) => w.template.metadata?.labels?.["app.kubernetes.io/part-of"] !== "e2e-tests" && at("created", w.kind, w.name) !== undefined);

describe("deploy order (engine model on the loopback node)", () => {
    test("every program workload's pod started only after the ConfigMaps and Secrets it uses were created and completed", () => {
        const workloads = programWorkloads();
        assert.ok(workloads.length >= 5, `expected the program's workloads, got ${workloads.map((w) => w.name).join(", ")}`);
        for (const w of workloads) {
            const started = podEvent("podStarting", w.name);
            assert.ok(started, `no pod start recorded for ${w.podName}`);
            for (const s of sourcesOf(w.template.spec)) {
                const ready = at("ready", s.kind, s.name);
                assert.ok(ready, `${w.podName} uses ${s.kind} ${s.name}, whose registration never completed`);
                assert.ok(ready <= started, `${w.podName} was started ${started - ready} ms before ${s.kind} ${s.name} completed`);
            }
        }
    });

    test("each workload's registration completed only after its pod was Ready (Postfix's StatefulSet included), each Job's after it completed", () => {
        const workloads = programWorkloads();
        assert.ok(
            workloads.some((w) => w.kind === "StatefulSet" && w.name === "postfix"),
            "the program has a postfix StatefulSet",
        );
        const jobs = Cluster.load().jobs();
        for (const w of workloads) {
            if (w.kind === "Job") {
                const completed = at("ready", w.kind, w.name);
                const completion = jobs[w.name]?.completionTime;
                assert.ok(
                    completion && completed && completion <= completed,
                    `Job ${w.name}: completed at ${completion}, registration completed at ${completed}`,
                );
                continue;
            }
            const podReady = podEvent("podReady", w.name);
            const completed = at("ready", w.kind, w.name);
            assert.ok(podReady && completed, `${w.kind} ${w.name}: pod Ready at ${podReady}, registration completed at ${completed}`);
            assert.ok(podReady <= completed, `${w.kind} ${w.name} completed ${podReady - completed} ms before its pod was Ready`);
        }
    });
});
