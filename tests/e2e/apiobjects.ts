// The program's objects as the e2e API server stores them, and what they mean for a pod on the node: workloads,
// fixed pod addresses, Services and the pods behind their ports, /etc/hosts and resolv.conf, env and volume paths.
import * as fs from "fs";
import * as path from "path";
import { selects } from "../kit/cluster/objects";
import { BRIDGE, CLUSTER_DNS, E2E_DIR } from "./layout";
import type { KubeObject } from "./program";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes pod specs as the program declared them */
type Spec = any;

export interface Workload {
    kind: string;
    name: string;
    namespace: string;
    template: Spec;
    claims: Spec[];
    /** StatefulSet pods are `<name>-0`; Deployment and Job pods get a generated suffix (here a fixed one). */
    podName: string;
}

export class ApiObjects {
    constructor(readonly objects: KubeObject[]) {}

    /** Stores an object as the API server would: a new one is appended (pod addresses follow that order), a known one replaced. */
    upsert(obj: KubeObject): void {
        const same = (o: KubeObject) =>
            o.kind === obj.kind && o.metadata.name === obj.metadata.name && (o.metadata.namespace ?? "default") === (obj.metadata.namespace ?? "default");
        const i = this.objects.findIndex(same);
        if (i >= 0) this.objects[i] = obj;
        else this.objects.push(obj);
    }

    /** `.e2e/objects.json`: what `down`, `exec` and the suite read. */
    save(outputs: Record<string, unknown> = {}): void {
        fs.mkdirSync(E2E_DIR, { recursive: true });
        fs.writeFileSync(path.join(E2E_DIR, "objects.json"), JSON.stringify({ objects: this.objects, outputs }, null, 2), { mode: 0o600 });
    }

    find(kind: string, name: string): KubeObject | undefined {
        return this.objects.find((o) => o.kind === kind && o.metadata.name === name);
    }

    /** A PersistentVolumeClaim the program created as an object of its own (not from a StatefulSet's claim templates). */
    claim(namespace: string, name: string): KubeObject | undefined {
        return this.objects.find((o) => o.kind === "PersistentVolumeClaim" && o.metadata.name === name && (o.metadata.namespace ?? "default") === namespace);
    }

    /** Workloads in the order they were created (a Job is one: its pods run on the node one after another). */
    workloads(): Workload[] {
        return this.objects
            .filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment" || o.kind === "Job")
            .map((o) => ({
                kind: o.kind,
                name: o.metadata.name,
                namespace: o.metadata.namespace ?? "default",
                template: o.spec.template,
                claims: o.spec.volumeClaimTemplates ?? [],
                podName: o.kind === "StatefulSet" ? `${o.metadata.name}-0` : `${o.metadata.name}-e2e`,
            }));
    }

    workload(name: string): Workload {
        const w = this.workloads().find((x) => x.name === name);
        if (!w) throw new Error(`no workload ${name}`);
        return w;
    }

    /** Pod IPs are fixed per workload (creation order) so restarts keep them. */
    podIp(name: string): string {
        const i = this.workloads().findIndex((w) => w.name === name);
        if (i < 0) throw new Error(`no workload ${name}`);
        return `${BRIDGE.prefix}.${11 + i}`;
    }

    /**
     * Services and, per port, the workload that serves it: a selector may match several workloads (an edge
     * Service in front of Postfix and Dovecot); the port goes to the selected pod that declares its target port.
     * During the deploy a Service may exist before the workloads it selects: it has no ports yet (the engine's
     * Service await is what requires it to target pods).
     */
    services(): { name: string; namespace: string; workloads: Workload[]; ports: { name?: string; port: number; target: number; workload: Workload }[] }[] {
        return this.objects
            .filter((o) => o.kind === "Service")
            .map((svc) => {
                const selected = this.workloads().filter((x) => selects({ matchLabels: svc.spec.selector ?? {} }, x.template.metadata?.labels ?? {}));
                const ports = (svc.spec.ports as Spec[]).flatMap((p) => {
                    const t = p.targetPort ?? p.port;
                    for (const w of selected) {
                        const declared = [...(w.template.spec.containers ?? []), ...(w.template.spec.initContainers ?? [])].flatMap((c: Spec) => c.ports ?? []);
                        const cp = declared.find((x: Spec) => (typeof t === "number" ? x.containerPort === t : x.name === t));
                        if (cp) return [{ name: p.name, port: p.port, target: cp.containerPort as number, workload: w }];
                    }
                    return [];
                });
                return { name: svc.metadata.name, namespace: svc.metadata.namespace ?? "default", workloads: selected, ports };
            });
    }

    /** `IP svc svc.ns svc.ns.svc svc.ns.svc.cluster.local` for every single-workload Service, plus the pod's own name. */
    hostsFile(w: Workload): string {
        const lines = ["127.0.0.1\tlocalhost", `${this.podIp(w.name)}\t${w.podName}`];
        for (const s of this.services().filter((x) => x.workloads.length === 1)) {
            const n = `${s.name}.${s.namespace}`;
            lines.push(`${this.podIp(s.workloads[0].name)}\t${n}.svc.cluster.local ${n}.svc ${n} ${s.name}`);
        }
        return lines.join("\n") + "\n";
    }

    resolvConf(w: Workload): string {
        return `nameserver ${CLUSTER_DNS.ip}\nsearch ${w.namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n`;
    }

    sourceData(kind: "ConfigMap" | "Secret", name: string): Record<string, Buffer> | undefined {
        const o = this.find(kind, name);
        if (!o) return undefined;
        const out: Record<string, Buffer> = {};
        for (const [k, v] of Object.entries(o.data ?? {})) out[k] = kind === "Secret" ? Buffer.from(v, "base64") : Buffer.from(v);
        for (const [k, v] of Object.entries(o.stringData ?? {})) out[k] = Buffer.from(v);
        return out;
    }

    setConfigMap(name: string, data: Record<string, string>): void {
        const cm = this.find("ConfigMap", name);
        if (!cm) throw new Error(`no ConfigMap ${name}`);
        cm.data = data;
    }

    /** Where a volume lives on the host: claims persist across pod restarts, everything else is per pod start. */
    volumePath(w: Workload, volume: string): string {
        if (w.claims.some((c: Spec) => c.metadata.name === volume)) return path.join(E2E_DIR, "pvc", `${volume}-${w.podName}`);
        // A claim by name (a Job mounting a StatefulSet's volume): the StatefulSet's `<template>-<pod>` claim above.
        const claimName = (w.template.spec.volumes ?? []).find((v: Spec) => v.name === volume)?.persistentVolumeClaim?.claimName;
        if (claimName) return path.join(E2E_DIR, "pvc", claimName);
        return path.join(E2E_DIR, "pods", w.name, "volumes", volume);
    }

    /**
     * The container's environment as the kubelet builds it (pkg/kubelet/kubelet_pods.go makeEnvironmentVariables):
     * HOSTNAME, then every key of each `envFrom` ConfigMap/Secret (with its `prefix`; a missing source fails the
     * container unless `optional`), then `env` (with secretKeyRef/configMapKeyRef), whose entries override those.
     */
    env(w: Workload, c: Spec): [string, string][] {
        const env: [string, string][] = [["HOSTNAME", w.podName]];
        for (const from of c.envFrom ?? []) {
            const ref = from.secretRef ?? from.configMapRef;
            if (!ref) throw new Error(`pod ${w.podName}: envFrom of container ${c.name} has neither secretRef nor configMapRef`);
            const kind = from.secretRef ? "Secret" : "ConfigMap";
            const data = this.sourceData(kind, ref.name);
            if (!data) {
                if (ref.optional) continue;
                throw new Error(`pod ${w.podName}: ${kind === "Secret" ? "secret" : "configmap"} "${ref.name}" not found`);
            }
            for (const [k, v] of Object.entries(data)) env.push([`${from.prefix ?? ""}${k}`, v.toString("utf8")]);
        }
        for (const e of c.env ?? []) {
            if (e.value !== undefined) env.push([e.name, String(e.value)]);
            else if (e.valueFrom?.secretKeyRef || e.valueFrom?.configMapKeyRef) {
                const ref = e.valueFrom.secretKeyRef ?? e.valueFrom.configMapKeyRef;
                const data = this.sourceData(e.valueFrom.secretKeyRef ? "Secret" : "ConfigMap", ref.name);
                if (!data?.[ref.key]) {
                    if (ref.optional) continue;
                    throw new Error(`pod ${w.podName}: env ${e.name} refers to missing ${ref.name}/${ref.key}`);
                }
                env.push([e.name, data[ref.key].toString("utf8")]);
            } else if (e.valueFrom) throw new Error(`pod ${w.podName}: env ${e.name} uses an unsupported valueFrom`);
            else env.push([e.name, ""]);
        }
        // One value per name, the last one given (the kubelet fills a map in that order).
        return [...new Map(env)];
    }
}
