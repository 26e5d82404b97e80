// The e2e cluster as the runner sees it: the program's objects (workloads, Services, ConfigMaps/Secrets,
// NetworkPolicies), the private network on this machine, and a client of the e2e kubelet (kubelet.ts), which runs
// the pods with runc. Pod status is the kubelet's .e2e/status.json; `exec` is `kubectl exec` (runc exec).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { selects } from "../kit/cluster/objects";
import { NetNamespace, NetPod, podFirewall } from "./netpol";
import type { PodStatus } from "./kubelet";
import { sh } from "./procs";
import { cgroupPids, RUNC_ROOT } from "./runtime";
import type { KubeObject } from "./program";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes pod specs as the program declared them */
type Spec = any;

export const REPO = path.resolve(__dirname, "../..");
export const E2E_DIR = path.join(REPO, ".e2e");
export const KUBELET_SOCKET = path.join(E2E_DIR, "kubelet.sock");
export const STATUS_FILE = path.join(E2E_DIR, "status.json");
/** The private bridge: no uplink, no NAT, no default route in any pod — traffic cannot leave this machine. */
export const BRIDGE = { name: "mail-e2e0", prefix: "10.77.0", hostIp: "10.77.0.1" };
/** The pseudo-internet: the external MX sink and the address the suite's clients connect from (outside.py). */
export const OUTSIDE = { name: "outside", ip: `${BRIDGE.prefix}.2` };
/**
 * The cluster's DNS, served by outside.py on a second address of its namespace and known to NetworkPolicies as
 * CoreDNS is in a cluster: pod `kube-dns` in `kube-system`, label `k8s-app: kube-dns`, ports 53 UDP and TCP.
 */
export const CLUSTER_DNS = { ip: `${BRIDGE.prefix}.3`, namespace: "kube-system", labels: { "k8s-app": "kube-dns" } };
/** The one substitution: CouchDB's pod runs the CouchDB-protocol test server (express-pouchdb, in memory). */
export const COUCHDB_SUBSTITUTE = "couchdb";

export interface Workload {
    kind: string;
    name: string;
    namespace: string;
    template: Spec;
    claims: Spec[];
    /** StatefulSet pods are `<name>-0`; Deployment pods get a generated suffix (here a fixed one). */
    podName: string;
}

interface HelperState { helpers: Record<string, { leader: number; log: string }> }

export class Cluster {
    constructor(readonly objects: KubeObject[]) {}

    static load(): Cluster {
        const saved = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "objects.json"), "utf8"));
        return new Cluster(saved.objects);
    }

    /** Stores an object as the API server would: a new one is appended (pod addresses follow that order), a known one replaced. */
    upsert(obj: KubeObject): void {
        const same = (o: KubeObject) => o.kind === obj.kind && o.metadata.name === obj.metadata.name && (o.metadata.namespace ?? "default") === (obj.metadata.namespace ?? "default");
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

    /** Workloads in the order they were created. */
    workloads(): Workload[] {
        return this.objects.filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment").map((o) => ({
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
        return this.objects.filter((o) => o.kind === "Service").map((svc) => {
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
        return path.join(E2E_DIR, "pods", w.name, "volumes", volume);
    }

    /** The container's environment as the kubelet builds it (HOSTNAME, env with secretKeyRef/configMapKeyRef). */
    env(w: Workload, c: Spec): [string, string][] {
        const env: [string, string][] = [["HOSTNAME", w.podName]];
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
        return env;
    }

    // ---- network -------------------------------------------------------------------------------------------

    createBridge(): void {
        if (sh("ip", ["link", "show", BRIDGE.name], { allowFail: true })) return;
        sh("ip", ["link", "add", BRIDGE.name, "type", "bridge"]);
        sh("ip", ["addr", "add", `${BRIDGE.hostIp}/24`, "dev", BRIDGE.name]);
        sh("ip", ["link", "set", BRIDGE.name, "up"]);
    }

    /** A network namespace on the bridge with one address, loopback up and no default route. */
    createNetns(key: string, ip: string): { netns: string; veth: string } {
        const netns = `mail-e2e-${key}`;
        const veth = `me2e-${key}`.slice(0, 15);
        if (!fs.existsSync(`/run/netns/${netns}`)) {
            sh("ip", ["link", "del", veth], { allowFail: true });
            sh("ip", ["netns", "add", netns]);
            sh("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
            sh("ip", ["link", "set", veth, "master", BRIDGE.name, "up"]);
            sh("ip", ["-n", netns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
            sh("ip", ["-n", netns, "link", "set", "eth0", "up"]);
            sh("ip", ["-n", netns, "link", "set", "lo", "up"]);
        }
        return { netns, veth };
    }

    /** Every pod NetworkPolicies can name: the workloads (fixed IPs) and the cluster DNS. */
    netPods(): NetPod[] {
        return [
            ...this.workloads().map((w) => ({
                name: w.podName, namespace: w.namespace, labels: w.template.metadata?.labels ?? {}, ip: this.podIp(w.name),
                ports: [...(w.template.spec.initContainers ?? []), ...w.template.spec.containers].flatMap((c: Spec) => c.ports ?? []),
            })),
            { name: "kube-dns", namespace: CLUSTER_DNS.namespace, labels: CLUSTER_DNS.labels, ip: CLUSTER_DNS.ip,
                ports: [{ name: "dns", containerPort: 53, protocol: "UDP" }, { name: "dns-tcp", containerPort: 53, protocol: "TCP" }] },
        ];
    }

    namespaces(): NetNamespace[] {
        return this.objects.filter((o) => o.kind === "Namespace").map((o) => ({ name: o.metadata.name, labels: o.metadata.labels ?? {} }));
    }

    policies(): KubeObject[] {
        return this.objects.filter((o) => o.kind === "NetworkPolicy");
    }

    /** The pod's NetworkPolicy firewall and the Service-port DNAT (kube-proxy for in-cluster clients), in its netns. */
    applyFirewall(w: Workload): void {
        const netns = `mail-e2e-${w.name}`;
        const me = this.netPods().find((p) => p.ip === this.podIp(w.name))!;
        const rules = podFirewall(me, this.policies(), this.netPods(), this.namespaces(), BRIDGE.hostIp);
        sh("ip", ["netns", "exec", netns, "iptables-restore"], { input: rules });
        const nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"];
        for (const s of this.services()) {
            for (const p of s.ports.filter((x) => x.port !== x.target)) {
                const ip = this.podIp(p.workload.name);
                nat.push(`-A OUTPUT -p tcp -d ${ip} --dport ${p.port} -j DNAT --to-destination ${ip}:${p.target}`);
            }
        }
        sh("ip", ["netns", "exec", netns, "iptables-restore"], { input: [...nat, "COMMIT", ""].join("\n") });
    }

    // ---- the kubelet ---------------------------------------------------------------------------------------

    /** Pods as the kubelet last reported them. */
    status(): Record<string, PodStatus> {
        try {
            return JSON.parse(fs.readFileSync(STATUS_FILE, "utf8"));
        } catch {
            return {};
        }
    }

    private call(op: string, args: Record<string, unknown>): Promise<void> {
        return new Promise((resolve, reject) => {
            const req = http.request({ socketPath: KUBELET_SOCKET, path: `/${op}`, method: "POST" }, (res) => {
                let body = "";
                res.on("data", (d) => (body += d));
                res.on("end", () => {
                    const r = JSON.parse(body);
                    if (r.ok) resolve();
                    else reject(new Error(r.error));
                });
            });
            req.on("error", reject);
            req.end(JSON.stringify(args));
        });
    }

    /** Starts a pod; resolves when it is Ready. */
    startPod(name: string): Promise<void> {
        return this.call("startPod", { name });
    }

    /** Deletes a pod (grace period, main containers first, then sidecars); its claims stay. */
    stopPod(name: string): Promise<void> {
        return this.call("stopPod", { name });
    }

    /** A container crashes (SIGKILL to its init); the kubelet restarts it per restartPolicy and back-off. */
    crashContainer(pod: string, container: string): Promise<void> {
        return this.call("crash", { pod, container });
    }

    /** Creates or replaces an object on the node (the kubelet refreshes running pods' names and firewalls). */
    applyToNode(obj: KubeObject): Promise<void> {
        return this.call("apply", { object: obj });
    }

    /** Replaces a ConfigMap's data; the kubelet rewrites every volume that mounts it (the `..data` swap). */
    updateConfigMap(name: string, data: Record<string, string>): Promise<void> {
        this.setConfigMap(name, data);
        return this.call("updateConfigMap", { name, data });
    }

    shutdownKubelet(): Promise<void> {
        return this.call("shutdown", {});
    }

    /** `kubectl exec`: the runtime's exec (runc exec: the container's namespaces, cgroup, user, capabilities, seccomp, env). */
    exec(pod: string, ctr: string, argv: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}) {
        const c = this.status()[pod]?.containers[ctr];
        if (!c?.running) return { code: -1, stdout: "", stderr: `container ${pod}/${ctr} is not running` };
        const env = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
        const r = spawnSync("runc", ["--root", RUNC_ROOT, "exec", ...env, c.id, ...argv],
            { encoding: "utf8", input: opts.input ?? "", timeout: opts.timeoutMs ?? 30_000, killSignal: "SIGKILL" });
        return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
    }

    /** The processes of a pod's containers (their cgroups), for memory accounting. */
    podProcesses(pod: string): number[] {
        return Object.values(this.status()[pod]?.containers ?? {}).flatMap((c) => cgroupPids(c.cgroup));
    }

    // ---- helpers outside the pods (the pseudo-internet, the kubelet) ---------------------------------------

    helperState(): HelperState {
        const file = path.join(E2E_DIR, "helpers.json");
        return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : { helpers: {} };
    }

    saveHelper(name: string, leader: number | undefined, log: string): void {
        const st = this.helperState();
        if (leader === undefined) delete st.helpers[name];
        else st.helpers[name] = { leader, log };
        fs.mkdirSync(E2E_DIR, { recursive: true });
        fs.writeFileSync(path.join(E2E_DIR, "helpers.json"), JSON.stringify(st, null, 2));
    }
}
