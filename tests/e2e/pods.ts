// A tiny kubelet for the e2e stack: runs the program's workloads with `buildah run --isolation chroot`, one network
// namespace per pod on a private bridge that only this machine knows, following the Kubernetes rules the pod specs
// rely on (see README.md). Everything it starts is recorded in .e2e/state.json so another process can stop it.
import { execFileSync, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as net from "net";
import * as path from "path";
import { children } from "../kit/images";
import type { KubeObject } from "./program";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes pod specs as the program declared them */
type Spec = any;

export const REPO = path.resolve(__dirname, "../..");
export const E2E_DIR = path.join(REPO, ".e2e");
/** The private bridge: no uplink, no NAT, no default route in any pod — traffic cannot leave this machine. */
export const BRIDGE = { name: "mail-e2e0", prefix: "10.77.0", hostIp: "10.77.0.1" };
/** The pseudo-internet: test DNS server and external MX sink (tests/e2e/outside.py). */
export const OUTSIDE = { name: "outside", ip: `${BRIDGE.prefix}.2` };
/** The one substitution: CouchDB's pod runs the CouchDB-protocol test server (express-pouchdb, in memory). */
export const COUCHDB_SUBSTITUTE = "couchdb";
const CONTAINER_PREFIX = "mail-e2e-";
const LINUX_CAPS = ["CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP", "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER", "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE",
    "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE", "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE",
    "AUDIT_CONTROL", "SETFCAP", "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE"];

export interface ContainerState { buildahName?: string; leader: number; log: string; sidecar: boolean }
export interface PodState { ip: string; netns: string; veth: string; containers: Record<string, ContainerState> }
export interface ClusterState { pods: Record<string, PodState>; helpers: Record<string, { leader: number; log: string }> }

export interface Workload {
    kind: string;
    name: string;
    namespace: string;
    template: Spec;
    claims: Spec[];
    /** StatefulSet pods are `<name>-0`; Deployment pods get a generated suffix (here a fixed one). */
    podName: string;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);

function sh(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
    const r = spawnSync(cmd, args, { encoding: "utf8", input: opts.input });
    if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
}

// ---- processes ----------------------------------------------------------------------------------------------

function comm(pid: number): string {
    try {
        return fs.readFileSync(`/proc/${pid}/comm`, "utf8").trim();
    } catch {
        return "";
    }
}

/** buildah's own helpers (buildah, buildah-chroot-runtime/-exec re-exec'd from a memfd) and our nsenter. */
const isHelper = (pid: number) => /^(buildah|memfd:|nsenter)/.test(comm(pid));

export function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return !fs.readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
    } catch {
        return false;
    }
}

/** All descendants of pid (breadth first). */
export function descendants(pid: number): number[] {
    const out: number[] = [];
    let frontier = [pid];
    while (frontier.length) {
        const next = frontier.flatMap(children);
        out.push(...next);
        frontier = next;
    }
    return out;
}

/** The container's own top process below buildah's helpers. */
export function appPid(leader: number): number | undefined {
    let frontier = [leader];
    for (let depth = 0; depth < 8 && frontier.length; depth++) {
        const next: number[] = [];
        for (const p of frontier) {
            for (const c of children(p)) {
                if (!isHelper(c)) return c;
                next.push(c);
            }
        }
        frontier = next;
    }
    return undefined;
}

/** The app's processes (everything below the helpers), for memory accounting. */
export function appProcesses(leader: number): number[] {
    const app = appPid(leader);
    return app ? [app, ...descendants(app)] : [];
}

function mountNs(pid: number): string | undefined {
    try {
        return fs.readlinkSync(`/proc/${pid}/ns/mnt`);
    } catch {
        return undefined;
    }
}

/** SIGKILL everything in a container's mount namespace (never the host's). */
function sweep(ns: string | undefined): void {
    if (!ns || ns === mountNs(process.pid)) return;
    for (const p of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
        if (mountNs(Number(p)) === ns) {
            try {
                process.kill(Number(p), "SIGKILL");
            } catch {
                // gone meanwhile
            }
        }
    }
}

/** Starts argv detached (own session) inside a network namespace, output appended to logFile; returns its PID. */
function spawnInNetns(netns: string, argv: string[], logFile: string, env?: NodeJS.ProcessEnv): number {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = fs.openSync(logFile, "a");
    const p = spawn("nsenter", [`--net=/run/netns/${netns}`, ...argv], { detached: true, stdio: ["ignore", fd, fd], env: env ?? process.env });
    fs.closeSync(fd);
    p.unref();
    if (!p.pid) throw new Error(`could not start ${argv.join(" ")}`);
    return p.pid;
}

// ---- files in the Kubernetes volume layout ------------------------------------------------------------------

/**
 * Writes a ConfigMap/Secret volume the way the kubelet's atomic writer does: files in a `..<timestamp>` directory,
 * `..data` pointing at it (swapped by rename), and per-key symlinks through `..data`. Honours items, modes and fsGroup.
 */
export function writeAtomicVolume(dir: string, files: Record<string, Buffer>, fsGroup?: number): void {
    fs.mkdirSync(dir, { recursive: true });
    const version = `..${new Date().toISOString().replace(/[:.]/g, "_")}.${process.hrtime.bigint()}`;
    const vdir = path.join(dir, version);
    fs.mkdirSync(vdir, { mode: 0o755 });
    const tops = new Set<string>();
    for (const [rel, content] of Object.entries(files)) {
        const [p, modeText] = rel.split("\0");
        fs.mkdirSync(path.dirname(path.join(vdir, p)), { recursive: true });
        fs.writeFileSync(path.join(vdir, p), content);
        // Read-only volumes with an fsGroup get the group and group-read (kubelet's SetVolumeOwnership).
        let mode = Number(modeText);
        if (fsGroup !== undefined) {
            fs.chownSync(path.join(vdir, p), 0, fsGroup);
            mode |= 0o440;
        }
        fs.chmodSync(path.join(vdir, p), mode);
        tops.add(p.split("/")[0]);
    }
    if (fsGroup !== undefined) fs.chownSync(vdir, 0, fsGroup);
    const old = fs.existsSync(path.join(dir, "..data")) ? fs.readlinkSync(path.join(dir, "..data")) : undefined;
    fs.symlinkSync(version, path.join(dir, "..data_tmp"));
    fs.renameSync(path.join(dir, "..data_tmp"), path.join(dir, "..data"));
    for (const entry of fs.readdirSync(dir)) {
        if (!entry.startsWith("..") && !tops.has(entry)) fs.rmSync(path.join(dir, entry), { force: true });
    }
    for (const top of tops) {
        if (!fs.existsSync(path.join(dir, top))) fs.symlinkSync(path.join("..data", top), path.join(dir, top));
    }
    if (old) fs.rmSync(path.join(dir, old), { recursive: true, force: true });
}

/** Keys of a ConfigMap or Secret, projected through `items`, each as `path\0mode` → content. */
export function projectKeys(source: Spec, data: Record<string, Buffer> | undefined): Record<string, Buffer> | undefined {
    if (!data) {
        if (source.optional) return {};
        return undefined;
    }
    const defaultMode = source.defaultMode ?? 0o644;
    const out: Record<string, Buffer> = {};
    if (source.items) {
        for (const item of source.items) {
            if (!(item.key in data)) throw new Error(`volume item ${item.key} is not in ${source.name ?? source.secretName}`);
            out[`${item.path}\0${item.mode ?? defaultMode}`] = data[item.key];
        }
    } else {
        for (const [k, v] of Object.entries(data)) out[`${k}\0${defaultMode}`] = v;
    }
    return out;
}

// ---- the cluster --------------------------------------------------------------------------------------------

export class Cluster {
    state: ClusterState;

    constructor(readonly objects: KubeObject[]) {
        const file = path.join(E2E_DIR, "state.json");
        this.state = fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : { pods: {}, helpers: {} };
    }

    static load(): Cluster {
        const saved = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "objects.json"), "utf8"));
        return new Cluster(saved.objects);
    }

    save(): void {
        fs.mkdirSync(E2E_DIR, { recursive: true });
        fs.writeFileSync(path.join(E2E_DIR, "state.json"), JSON.stringify(this.state, null, 2));
    }

    private find(kind: string, name: string): KubeObject | undefined {
        return this.objects.find((o) => o.kind === kind && o.metadata.name === name);
    }

    /** Workloads in the order the program declared them (Pulumi's dependsOn puts dependants later). */
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

    /** Pod IPs are fixed per workload (declaration order) so restarts keep them. */
    podIp(name: string): string {
        const i = this.workloads().findIndex((w) => w.name === name);
        if (i < 0) throw new Error(`no workload ${name}`);
        return `${BRIDGE.prefix}.${11 + i}`;
    }

    private labelsMatch(selector: Record<string, string>, labels: Record<string, string>): boolean {
        return Object.entries(selector).every(([k, v]) => labels?.[k] === v);
    }

    /**
     * Services and, per port, the workload that serves it: a selector may match several workloads (an edge
     * Service in front of Postfix and Dovecot); the port goes to the selected pod that declares its target port.
     */
    services(): { name: string; namespace: string; workloads: Workload[]; ports: { name?: string; port: number; target: number; workload: Workload }[] }[] {
        return this.objects.filter((o) => o.kind === "Service").map((svc) => {
            const selected = this.workloads().filter((x) => this.labelsMatch(svc.spec.selector ?? {}, x.template.metadata?.labels ?? {}));
            if (!selected.length) throw new Error(`Service ${svc.metadata.name} selects no workload`);
            const ports = (svc.spec.ports as Spec[]).map((p) => {
                const t = p.targetPort ?? p.port;
                for (const w of selected) {
                    const declared = [...(w.template.spec.containers ?? []), ...(w.template.spec.initContainers ?? [])].flatMap((c: Spec) => c.ports ?? []);
                    const cp = declared.find((x: Spec) => (typeof t === "number" ? x.containerPort === t : x.name === t));
                    if (cp) return { name: p.name, port: p.port, target: cp.containerPort as number, workload: w };
                }
                throw new Error(`Service ${svc.metadata.name} port ${p.name ?? p.port}: no selected pod declares container port ${t}`);
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
        return `nameserver ${OUTSIDE.ip}\nsearch ${w.namespace}.svc.cluster.local svc.cluster.local cluster.local\noptions ndots:5 timeout:1 attempts:2\n`;
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

    /** Service port ≠ target port: DNAT in the pod's namespace, as kube-proxy would for in-cluster clients. */
    private servicePortRules(netns: string): void {
        for (const s of this.services()) {
            for (const p of s.ports.filter((x) => x.port !== x.target)) {
                const ip = this.podIp(p.workload.name);
                sh("ip", ["netns", "exec", netns, "iptables", "-t", "nat", "-A", "OUTPUT", "-p", "tcp", "-d", ip, "--dport", String(p.port),
                    "-j", "DNAT", "--to-destination", `${ip}:${p.target}`]);
            }
        }
    }

    // ---- pods ----------------------------------------------------------------------------------------------

    podDir(w: Workload): string {
        return path.join(E2E_DIR, "pods", w.name);
    }

    /** Where a volume lives on the host: PVCs persist across pod restarts, everything else is per pod start. */
    volumePath(w: Workload, volume: string): string {
        if (w.claims.some((c: Spec) => c.metadata.name === volume)) return path.join(E2E_DIR, "pvc", `${volume}-${w.podName}`);
        return path.join(this.podDir(w), "volumes", volume);
    }

    private sourceData(kind: "ConfigMap" | "Secret", name: string): Record<string, Buffer> | undefined {
        const o = this.find(kind, name);
        if (!o) return undefined;
        const out: Record<string, Buffer> = {};
        for (const [k, v] of Object.entries(o.data ?? {})) out[k] = kind === "Secret" ? Buffer.from(v, "base64") : Buffer.from(v);
        for (const [k, v] of Object.entries(o.stringData ?? {})) out[k] = Buffer.from(v);
        return out;
    }

    /** Materialises the pod's volumes on the host. */
    private prepareVolumes(w: Workload): void {
        const spec = w.template.spec;
        const fsGroup: number | undefined = spec.securityContext?.fsGroup;
        for (const v of spec.volumes ?? []) {
            const dir = this.volumePath(w, v.name);
            if (v.configMap || v.secret) {
                const src = v.configMap ?? v.secret;
                const name = v.configMap ? src.name : src.secretName;
                const files = projectKeys(src, this.sourceData(v.configMap ? "ConfigMap" : "Secret", name));
                if (!files) throw new Error(`pod ${w.podName}: volume ${v.name} needs ${v.configMap ? "ConfigMap" : "Secret"} ${name}, which the program does not create`);
                writeAtomicVolume(dir, files, fsGroup);
            } else if (v.emptyDir) {
                fs.rmSync(dir, { recursive: true, force: true });
                fs.mkdirSync(dir, { recursive: true });
                fs.chmodSync(dir, 0o777);
                if (fsGroup !== undefined) {
                    fs.chownSync(dir, 0, fsGroup);
                    fs.chmodSync(dir, 0o2777);
                }
            } else {
                throw new Error(`pod ${w.podName}: volume ${v.name} has a type the e2e runner does not support`);
            }
        }
        for (const c of w.claims) {
            const dir = this.volumePath(w, c.metadata.name);
            fs.mkdirSync(dir, { recursive: true });
            // fsGroup on a fresh or reused claim: group-owned, group-writable, set-gid directories (recursively).
            if (fsGroup !== undefined) sh("sh", ["-c", `chgrp -R ${fsGroup} "$1" && chmod -R g+rwX "$1" && find "$1" -type d -exec chmod g+s {} +`, "sh", dir]);
        }
        fs.mkdirSync(path.join(this.podDir(w), "etc"), { recursive: true });
        fs.writeFileSync(path.join(this.podDir(w), "etc", "hosts"), this.hostsFile(w));
        fs.writeFileSync(path.join(this.podDir(w), "etc", "resolv.conf"), this.resolvConf(w));
    }

    private mountArgs(w: Workload, c: Spec): string[] {
        const args = ["--no-hosts", "-v", `${path.join(this.podDir(w), "etc", "hosts")}:/etc/hosts:ro`,
            "-v", `${path.join(this.podDir(w), "etc", "resolv.conf")}:/etc/resolv.conf:ro`];
        for (const m of c.volumeMounts ?? []) {
            const vol = (w.template.spec.volumes ?? []).find((v: Spec) => v.name === m.name);
            const isClaim = w.claims.some((x: Spec) => x.metadata.name === m.name);
            if (!vol && !isClaim) throw new Error(`pod ${w.podName}: container ${c.name} mounts unknown volume ${m.name}`);
            let host = this.volumePath(w, m.name);
            // A subPath is bound to the resolved file, so it never sees later updates (as in Kubernetes).
            if (m.subPath) host = fs.realpathSync(path.join(host, m.subPath));
            const ro = m.readOnly || vol?.configMap || vol?.secret;
            args.push("-v", `${host}:${m.mountPath}${ro ? ":ro" : ""}`);
        }
        return args;
    }

    private envArgs(w: Workload, c: Spec): string[] {
        return this.env(w, c).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
    }

    private env(w: Workload, c: Spec): [string, string][] {
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

    /** Kubernetes rules: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD. */
    argv(c: Spec): string[] {
        const inspect = JSON.parse(sh("buildah", ["inspect", "--type", "image", c.image]));
        const cfg = inspect.OCIv1?.config ?? {};
        const entrypoint: string[] = c.command ?? cfg.Entrypoint ?? [];
        const args: string[] = c.args ?? (c.command ? [] : cfg.Cmd ?? []);
        const argv = [...entrypoint, ...args];
        if (!argv.length) throw new Error(`container ${c.name}: no command, no ENTRYPOINT/CMD in ${c.image}`);
        return argv;
    }

    private securityArgs(w: Workload, c: Spec): string[] {
        const pod = w.template.spec.securityContext ?? {};
        const sc = c.securityContext ?? {};
        const uid = sc.runAsUser ?? pod.runAsUser;
        const gid = sc.runAsGroup ?? pod.runAsGroup;
        const args: string[] = [];
        if (uid !== undefined) args.push("--user", gid !== undefined ? `${uid}:${gid}` : String(uid));
        // buildah applies --cap-drop after --cap-add (so "drop all, add X" ends with nothing): drop by name instead.
        const add: string[] = sc.capabilities?.add ?? [];
        const drop: string[] = sc.capabilities?.drop ?? [];
        for (const cap of drop.includes("ALL") ? LINUX_CAPS.filter((c) => !add.includes(c)) : drop) args.push("--cap-drop", `CAP_${cap}`);
        for (const cap of add) args.push("--cap-add", `CAP_${cap}`);
        return args;
    }

    private startContainer(w: Workload, c: Spec, sidecar: boolean): void {
        const pod = this.state.pods[w.name];
        const logFile = path.join(E2E_DIR, "logs", `${w.name}.${c.name}.log`);
        if (w.name === COUCHDB_SUBSTITUTE) {
            log(`SUBSTITUTION: pod ${w.podName} runs the CouchDB-protocol test server (express-pouchdb, in-memory, state kept in its PVC) instead of ${c.image}`);
            const port = (c.ports ?? []).find((p: Spec) => p.name === "http")?.containerPort;
            const data = this.volumePath(w, "data");
            const leader = spawnInNetns(pod.netns, [process.execPath, require.resolve("tsx/cli"), path.join(__dirname, "couchdb-server.ts"),
                `${pod.ip}:${port}`, data], logFile, { ...process.env, ...Object.fromEntries(this.env(w, c)) });
            pod.containers[c.name] = { leader, log: logFile, sidecar };
            this.save();
            return;
        }
        const buildahName = `${CONTAINER_PREFIX}${w.name}-${c.name}`;
        sh("buildah", ["rm", buildahName], { allowFail: true });
        sh("buildah", ["from", "--pull=never", "--dns=none", "--name", buildahName, c.image]);
        const args = ["run", "--isolation", "chroot", "--hostname", w.podName, ...this.securityArgs(w, c), ...this.envArgs(w, c),
            ...this.mountArgs(w, c), ...(c.workingDir ? ["--workingdir", c.workingDir] : []), buildahName, "--", ...this.argv(c)];
        fs.appendFileSync(logFile, `--- ${new Date().toISOString()} start ${w.podName}/${c.name}\n`);
        const leader = spawnInNetns(pod.netns, ["buildah", ...args], logFile);
        pod.containers[c.name] = { buildahName, leader, log: logFile, sidecar };
        this.save();
    }

    /** The container's main process: buildah's app child, or the substitute's own process. */
    containerPid(pod: string, ctr: string): number | undefined {
        const c = this.state.pods[pod]?.containers[ctr];
        if (!c) return undefined;
        return c.buildahName ? appPid(c.leader) : alive(c.leader) ? c.leader : undefined;
    }

    /** `kubectl exec`: the command in the container's mount and network namespaces, root and working directory, as its user. */
    exec(pod: string, ctr: string, argv: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}) {
        const pid = this.containerPid(pod, ctr);
        if (!pid) return { code: -1, stdout: "", stderr: `container ${pod}/${ctr} is not running` };
        const status = fs.readFileSync(`/proc/${pid}/status`, "utf8");
        const uid = /^Uid:\s+(\d+)/m.exec(status)![1];
        const gid = /^Gid:\s+(\d+)/m.exec(status)![1];
        const environ = fs.readFileSync(`/proc/${pid}/environ`, "utf8").split("\0").filter(Boolean);
        const extra = Object.entries(opts.env ?? {}).map(([k, v]) => `${k}=${v}`);
        const r = spawnSync("nsenter", ["-t", String(pid), "-m", "-n", "-r", "-w", "-S", uid, "-G", gid, "--", "/usr/bin/env", "-i", ...environ, ...extra, ...argv],
            { encoding: "utf8", input: opts.input, timeout: opts.timeoutMs ?? 30_000 });
        return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
    }

    private async probeOnce(w: Workload, c: Spec, probe: Spec): Promise<boolean> {
        const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
        const ip = this.state.pods[w.name].ip;
        const port = (p: number | string) => (typeof p === "number" ? p : (c.ports ?? []).find((x: Spec) => x.name === p)?.containerPort);
        if (probe.exec) return this.exec(w.name, c.name, probe.exec.command, { timeoutMs }).code === 0;
        if (probe.tcpSocket) {
            return new Promise((resolve) => {
                const s = net.connect({ host: ip, port: port(probe.tcpSocket.port), timeout: timeoutMs });
                s.once("connect", () => (s.destroy(), resolve(true)));
                s.once("error", () => resolve(false));
                s.once("timeout", () => (s.destroy(), resolve(false)));
            });
        }
        if (probe.httpGet) {
            try {
                const res = await fetch(`http://${ip}:${port(probe.httpGet.port)}${probe.httpGet.path ?? "/"}`, { signal: AbortSignal.timeout(timeoutMs) });
                await res.text();
                return res.status >= 200 && res.status < 400;
            } catch {
                return false;
            }
        }
        throw new Error(`container ${c.name}: unsupported probe ${JSON.stringify(probe)}`);
    }

    /**
     * Waits for a probe to pass. Kubernetes allows initialDelay + failureThreshold × period; we check more often
     * than the period (to be quick) but never give up earlier than Kubernetes would.
     */
    private async awaitProbe(w: Workload, c: Spec, probe: Spec, what: string): Promise<void> {
        const budget = ((probe.initialDelaySeconds ?? 0) + (probe.failureThreshold ?? 3) * (probe.periodSeconds ?? 10)) * 1000;
        const end = Date.now() + Math.max(budget, 30_000);
        const leader = this.state.pods[w.name].containers[c.name].leader;
        await sleep((probe.initialDelaySeconds ?? 0) * 1000);
        for (;;) {
            if (!alive(leader)) throw new Error(`${w.podName}/${c.name} exited before its ${what} probe passed; log:\n${tail(this.state.pods[w.name].containers[c.name].log)}`);
            if (await this.probeOnce(w, c, probe)) return;
            if (Date.now() > end) throw new Error(`${w.podName}/${c.name}: ${what} probe did not pass in ${Math.round(budget / 1000)} s; log:\n${tail(this.state.pods[w.name].containers[c.name].log)}`);
            await sleep(300);
        }
    }

    /** Starts a pod: sidecars first (each awaited started), then the containers; resolves when the pod is Ready. */
    async startPod(name: string): Promise<void> {
        const w = this.workload(name);
        const started = Date.now();
        const ip = this.podIp(name);
        const { netns, veth } = this.createNetns(name, ip);
        if (!this.state.pods[name]) {
            this.state.pods[name] = { ip, netns, veth, containers: {} };
            this.servicePortRules(netns);
        }
        this.save();
        this.prepareVolumes(w);
        const spec = w.template.spec;
        for (const c of spec.initContainers ?? []) {
            if (c.restartPolicy !== "Always") throw new Error(`pod ${w.podName}: run-to-completion init containers are not supported by the e2e runner`);
            this.startContainer(w, c, true);
            // A native sidecar counts as started after its startupProbe (or at once without one).
            if (c.startupProbe) await this.awaitProbe(w, c, c.startupProbe, "startup");
        }
        for (const c of spec.containers) this.startContainer(w, c, false);
        for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
            if (c.startupProbe && !(spec.initContainers ?? []).includes(c)) await this.awaitProbe(w, c, c.startupProbe, "startup");
            if (c.readinessProbe) await this.awaitProbe(w, c, c.readinessProbe, "readiness");
        }
        log(`pod ${w.podName} ready at ${ip} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }

    /** SIGTERM to the app, wait up to the grace period, then SIGKILL what is left; removes the buildah container. */
    private async stopContainer(w: Workload, ctr: string, graceMs: number): Promise<void> {
        const c = this.state.pods[w.name]?.containers[ctr];
        if (!c) return;
        const app = this.containerPid(w.name, ctr);
        // Taken now: once the app is gone, its orphans are found only by the namespace they share.
        const ns = c.buildahName && app ? mountNs(app) : undefined;
        if (app) process.kill(app, "SIGTERM");
        const end = Date.now() + graceMs;
        while (alive(c.leader) && Date.now() < end) await sleep(100);
        if (alive(c.leader)) {
            log(`${w.podName}/${ctr} did not stop within ${graceMs / 1000} s: SIGKILL`);
            sweep(ns);
            try {
                process.kill(c.leader, "SIGKILL");
            } catch {
                // gone
            }
            while (alive(c.leader)) await sleep(100);
        }
        // As the container runtime does when a container ends: nothing of it outlives its main process.
        sweep(ns);
        if (c.buildahName) sh("buildah", ["rm", c.buildahName], { allowFail: true });
        delete this.state.pods[w.name].containers[ctr];
        this.save();
    }

    /** Stops a pod as the kubelet does: main containers first, then sidecars in reverse order. Keeps its network and PVCs. */
    async stopPod(name: string): Promise<void> {
        const w = this.workload(name);
        if (!this.state.pods[name]) return;
        const graceMs = (w.template.spec.terminationGracePeriodSeconds ?? 30) * 1000;
        const sidecars = (w.template.spec.initContainers ?? []).map((c: Spec) => c.name).reverse();
        await Promise.all(w.template.spec.containers.map((c: Spec) => this.stopContainer(w, c.name, graceMs)));
        for (const s of sidecars) await this.stopContainer(w, s, graceMs);
        log(`pod ${w.podName} stopped`);
    }

    /** A container ending and the kubelet starting it again (restartPolicy Always); does not wait for probes. */
    async restartContainer(name: string, ctr: string): Promise<void> {
        const w = this.workload(name);
        const spec = [...(w.template.spec.initContainers ?? []), ...w.template.spec.containers].find((c: Spec) => c.name === ctr);
        if (!spec) throw new Error(`pod ${w.podName} has no container ${ctr}`);
        await this.stopContainer(w, ctr, (w.template.spec.terminationGracePeriodSeconds ?? 30) * 1000);
        this.startContainer(w, spec, spec.restartPolicy === "Always");
    }

    /** Replaces a ConfigMap's data and rewrites every volume that mounts it (the kubelet's `..data` swap). */
    updateConfigMap(name: string, data: Record<string, string>): void {
        const cm = this.find("ConfigMap", name);
        if (!cm) throw new Error(`no ConfigMap ${name}`);
        cm.data = data;
        for (const w of this.workloads()) {
            if (!this.state.pods[w.name]) continue;
            for (const v of w.template.spec.volumes ?? []) {
                if (v.configMap?.name !== name) continue;
                writeAtomicVolume(this.volumePath(w, v.name), projectKeys(v.configMap, this.sourceData("ConfigMap", name))!, w.template.spec.securityContext?.fsGroup);
            }
        }
    }

    startHelper(name: string, ip: string, argv: string[]): void {
        const { netns } = this.createNetns(name, ip);
        const logFile = path.join(E2E_DIR, "logs", `${name}.log`);
        this.state.helpers[name] = { leader: spawnInNetns(netns, argv, logFile), log: logFile };
        this.save();
    }

    /** Stops everything this runner started (by recorded PID), removes containers, namespaces and the bridge. */
    async down(): Promise<void> {
        for (const name of Object.keys(this.state.pods).reverse()) {
            if (this.workloads().some((w) => w.name === name)) await this.stopPod(name);
        }
        for (const [name, h] of Object.entries(this.state.helpers)) {
            for (const p of [...descendants(h.leader), h.leader]) {
                try {
                    process.kill(p, "SIGTERM");
                } catch {
                    // gone
                }
            }
            for (let i = 0; i < 50 && alive(h.leader); i++) await sleep(100);
            delete this.state.helpers[name];
        }
        for (const ns of fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns") : []) {
            if (ns.startsWith("mail-e2e-")) sh("ip", ["netns", "del", ns], { allowFail: true });
        }
        sh("ip", ["link", "del", BRIDGE.name], { allowFail: true });
        this.state = { pods: {}, helpers: {} };
        this.save();
    }
}

export function tail(file: string, lines = 40): string {
    try {
        return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}

/** Containers left by an interrupted run (ours only, by name prefix). */
export function leftoverContainers(): string[] {
    return execFileSync("buildah", ["containers", "--format", "{{.ContainerName}}"], { encoding: "utf8" })
        .split("\n").filter((n) => n.startsWith(CONTAINER_PREFIX));
}
