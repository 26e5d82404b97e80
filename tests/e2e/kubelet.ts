// The e2e node's kubelet: a long-lived process (started by `cli.ts up`) that runs the pods with runc, one pod
// sandbox per pod (network namespace on the bridge, a pause process holding the pod's IPC and UTS namespaces and
// hostname, the pod's NetworkPolicy firewall), and keeps them running the way the kubelet does:
//   - start order: native sidecars (init containers with restartPolicy Always) one by one, each awaited through
//     its startupProbe, then the containers (pkg/kubelet/kuberuntime/kuberuntime_manager.go computePodActions);
//   - a container that exits is restarted per the pod's restartPolicy (sidecars always), after the kubelet's
//     crash-loop back-off: the first restart at once, then 10 s doubling up to 300 s (doBackOff in
//     kuberuntime_manager.go with pkg/kubelet/kubelet.go backOffPeriod/MaxContainerBackOff);
//     its last state says OOMKilled when the kernel OOM-killed a process of its memory cgroup;
//   - startup, liveness and readiness probes (pkg/kubelet/prober/worker.go): a liveness or startup failure
//     `failureThreshold` times in a row kills the container (SIGTERM, the pod's grace period, SIGKILL) and the
//     restart policy applies; readiness gates the pod's Ready condition;
//   - emptyDirs with a sizeLimit on disk are watched by the eviction manager: over the limit the pod is evicted
//     (pkg/kubelet/eviction/eviction_manager.go localStorageEviction, "Usage of EmptyDir volume ... exceeds the limit");
//   - a Job's pod (restartPolicy Never or OnFailure) runs to completion: once its containers are done (Never: exited;
//     OnFailure: exited 0) the pod is Succeeded when every one exited 0, else Failed (pkg/kubelet/kubelet_pods.go
//     getPhase), and its native sidecars are stopped (KEP-753). The Job controller's part — new pods after a
//     failure, back-off, backoffLimit, the Job's conditions — is jobcontroller.ts; its status is .e2e/jobs.json.
// Deliberate difference: before a startup/readiness probe first passes it is tried every 300 ms instead of every
// periodSeconds (the budget to pass is still the kubelet's), so the stack comes up in seconds.
// Control: HTTP on the unix socket .e2e/kubelet.sock (cluster.ts is its client: apply objects, start/stop pods, …);
// status in .e2e/status.json.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as net from "net";
import * as os from "os";
import * as path from "path";
import type { Workload } from "./apiobjects";
import { Cluster } from "./cluster";
import { afterPod, finished, jobRestartPolicy, JobStatus, pastBackoffLimitOnFailure, podFailureBackoffMs } from "./jobcontroller";
import { COUCHDB_SUBSTITUTE, E2E_DIR, JOBS_FILE, KUBELET_SOCKET, STATUS_FILE } from "./layout";
import type { KubeObject } from "./program";
import { alive, log, sh, sleep } from "./procs";
import {
    CGROUP_PARENT,
    containerInitPid,
    cpuMillis,
    imageConfig,
    ImageConfig,
    Mount,
    ociSpec,
    oomKilled,
    runAsNonRootError,
    runc,
    RUNC_ROOT,
    SECCOMP_PROFILE_FILE,
} from "./runtime";
import { claimVolume, createEmptyDir, diskUsage, projectKeys, quantityBytes, removeEmptyDir, setVolumeOwnership, writeAtomicVolume } from "./volumes";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes pod specs as the program declared them */
type Spec = any;

const INITIAL_BACKOFF_MS = 10_000;
const MAX_BACKOFF_MS = 300_000;
const FAST_PROBE_MS = 300;

export interface ContainerStatus {
    id: string;
    cgroup: string;
    sidecar: boolean;
    running: boolean;
    started: boolean;
    ready: boolean;
    restartCount: number;
    startedAt?: number;
    pid?: number;
    waiting?: { reason: string; message: string };
    lastState?: { reason: string; exitCode: number; finishedAt: number; startedAt: number };
    log: string;
}

export interface PodStatus {
    name: string;
    ip: string;
    netns: string;
    phase: "Pending" | "Running" | "Terminating" | "Evicted" | "Succeeded" | "Failed";
    ready: boolean;
    sandboxPid?: number;
    reason?: string;
    containers: Record<string, ContainerStatus>;
}

class ConfigError extends Error {}

class ContainerWorker {
    status: ContainerStatus;
    proc?: ChildProcess;
    private exited?: Promise<void>;
    private stopRequested = false;
    private generation = 0;
    private backoffMs = 0;
    private lastExit = 0;

    constructor(
        readonly pod: PodWorker,
        readonly spec: Spec,
        readonly sidecar: boolean,
    ) {
        const id = `mail-e2e-${pod.w.name}-${spec.name}`;
        this.status = {
            id,
            cgroup: `/${CGROUP_PARENT}/${pod.w.name}/${spec.name}`,
            sidecar,
            running: false,
            started: false,
            ready: false,
            restartCount: 0,
            log: path.join(E2E_DIR, "logs", `${pod.w.name}.${spec.name}.log`),
        };
    }

    private get bundle(): string {
        return path.join(this.pod.dir, "containers", this.spec.name);
    }

    /**
     * Creates and starts the container; resolves once its process runs (runc reports it running). An error leaves
     * it Waiting with the kubelet's reason, and the pod does not become Ready.
     */
    async start(): Promise<void> {
        const gen = ++this.generation;
        this.stopRequested = false;
        fs.mkdirSync(path.dirname(this.status.log), { recursive: true });
        fs.appendFileSync(this.status.log, `--- ${new Date().toISOString()} start ${this.pod.w.podName}/${this.spec.name}\n`);
        try {
            if (this.pod.w.name === COUCHDB_SUBSTITUTE) this.proc = this.startSubstitute();
            else this.proc = this.startRunc();
        } catch (e) {
            const message = e instanceof Error ? e.message : String(e);
            this.status.waiting = { reason: e instanceof ConfigError ? "CreateContainerConfigError" : "CreateContainerError", message };
            fs.appendFileSync(this.status.log, `${this.status.waiting.reason}: ${message}\n`);
            this.pod.publish();
            return;
        }
        const proc = this.proc;
        let gone = false;
        this.exited = new Promise((resolve) =>
            proc.on("exit", (code, signal) => {
                gone = true;
                this.onExit(gen, code ?? (signal ? 128 + (os.constants.signals[signal] ?? 9) : 255));
                resolve();
            }),
        );
        // runc run returns only when the container ends: wait until its init runs (runc state), as CRI's StartContainer does.
        while (!gone && this.pod.w.name !== COUCHDB_SUBSTITUTE && !containerInitPid(this.status.id)) await sleep(50);
        if (gone) return;
        this.status.waiting = undefined;
        this.status.running = true;
        this.status.started = !this.spec.startupProbe;
        this.status.ready = false;
        this.status.startedAt = Date.now();
        this.status.pid = this.pod.w.name === COUCHDB_SUBSTITUTE ? proc.pid : containerInitPid(this.status.id);
        this.pod.publish();
        void this.probeLoops(gen);
    }

    private startRunc(): ChildProcess {
        const { w } = this.pod;
        const c = this.spec;
        runc(["delete", "--force", this.status.id]);
        sh("buildah", ["rm", this.status.id], { allowFail: true });
        sh("buildah", ["from", "--pull=never", "--dns=none", "--name", this.status.id, c.image]);
        const rootfs = sh("buildah", ["mount", this.status.id]).trim();
        const image = this.pod.kubelet.image(c.image);
        const podSc = w.template.spec.securityContext ?? {};
        const refusal = runAsNonRootError(podSc, c.securityContext, image, w.podName, c.name);
        if (refusal) throw new ConfigError(refusal);
        const spec = ociSpec({
            podName: w.podName,
            podSpec: w.template.spec,
            container: c,
            image,
            rootfs,
            env: this.pod.kubelet.cluster.env(w, c),
            mounts: this.pod.mounts(c),
            netns: `/run/netns/${this.pod.status.netns}`,
            ipcns: `/proc/${this.pod.status.sandboxPid}/ns/ipc`,
            utsns: `/proc/${this.pod.status.sandboxPid}/ns/uts`,
            shm: this.pod.shm,
            cgroupsPath: this.status.cgroup,
            seccompProfile: this.pod.kubelet.seccompProfile,
        });
        fs.mkdirSync(this.bundle, { recursive: true });
        fs.writeFileSync(path.join(this.bundle, "config.json"), JSON.stringify(spec, null, 1));
        const fd = fs.openSync(this.status.log, "a");
        const p = spawn("runc", ["--root", RUNC_ROOT, "run", "--keep", "--bundle", this.bundle, this.status.id], { stdio: ["ignore", fd, fd], detached: true });
        fs.closeSync(fd);
        return p;
    }

    /** The one substitution: CouchDB's pod runs the CouchDB-protocol test server, as the pod's user, in its cgroup. */
    private startSubstitute(): ChildProcess {
        const { w } = this.pod;
        const c = this.spec;
        log(`SUBSTITUTION: pod ${w.podName} runs the CouchDB-protocol test server (express-pouchdb, in-memory, state kept in its PVC) instead of ${c.image}`);
        const port = (c.ports ?? []).find((p: Spec) => p.name === "http")?.containerPort;
        const sc = { ...(w.template.spec.securityContext ?? {}), ...(c.securityContext ?? {}) };
        const groups = [
            ...new Set(
                [sc.runAsGroup, w.template.spec.securityContext?.fsGroup, ...(w.template.spec.securityContext?.supplementalGroups ?? [])].filter(
                    (g) => g !== undefined,
                ),
            ),
        ];
        const cg = path.join("/sys/fs/cgroup/memory", this.status.cgroup);
        fs.mkdirSync(cg, { recursive: true });
        const limit = c.resources?.limits?.memory;
        if (limit) fs.writeFileSync(path.join(cg, "memory.limit_in_bytes"), String(quantityBytes(limit)));
        const fd = fs.openSync(this.status.log, "a");
        // The ini files mounted into CouchDB's config folders, in CouchDB's load order (default.d, then local.d; by name).
        const ini = this.pod
            .mounts(c)
            .filter((m) => /^\/opt\/couchdb\/etc\/(default|local)\.d\/.+\.ini$/.test(m.destination))
            .sort((a, b) => a.destination.localeCompare(b.destination))
            .map((m) => m.source);
        const env = { ...process.env, ...Object.fromEntries(this.pod.kubelet.cluster.env(w, c)), COUCHDB_INI: ini.join(":") };
        // The cgroup is joined before exec, so the server's memory counts (and is limited) like the container's.
        const p = spawn(
            "sh",
            [
                "-c",
                `echo $$ > "$0/cgroup.procs" && exec "$@"`,
                cg,
                "nsenter",
                `--net=/run/netns/${this.pod.status.netns}`,
                "setpriv",
                `--reuid=${sc.runAsUser ?? 0}`,
                `--regid=${sc.runAsGroup ?? 0}`,
                groups.length ? `--groups=${groups.join(",")}` : "--clear-groups",
                ...(sc.allowPrivilegeEscalation === false ? ["--no-new-privs"] : []),
                process.execPath,
                require.resolve("tsx/cli"),
                path.join(__dirname, "couchdb-server.ts"),
                `${this.pod.status.ip}:${port}`,
                this.pod.volumePath("data"),
            ],
            { stdio: ["ignore", fd, fd], detached: true, env, cwd: "/" },
        );
        fs.closeSync(fd);
        return p;
    }

    private onExit(gen: number, code: number): void {
        if (gen !== this.generation) return;
        const oom = oomKilled(this.status.cgroup);
        if (this.pod.w.name !== COUCHDB_SUBSTITUTE) {
            runc(["delete", "--force", this.status.id]);
            sh("buildah", ["rm", this.status.id], { allowFail: true });
        } else {
            try {
                fs.rmdirSync(path.join("/sys/fs/cgroup/memory", this.status.cgroup));
            } catch {
                // a process of it still runs
            }
        }
        const finishedAt = Date.now();
        this.status.lastState = {
            reason: oom ? "OOMKilled" : code === 0 ? "Completed" : "Error",
            exitCode: code,
            finishedAt,
            startedAt: this.status.startedAt ?? finishedAt,
        };
        this.status.running = false;
        this.status.ready = false;
        this.status.started = false;
        this.status.pid = undefined;
        fs.appendFileSync(this.status.log, `--- ${new Date().toISOString()} exited ${code} (${this.status.lastState.reason})\n`);
        this.pod.publish();
        if (this.stopRequested || this.pod.terminating) return;
        const policy = this.sidecar ? "Always" : (this.pod.w.template.spec.restartPolicy ?? "Always");
        if (policy === "Never" || (policy === "OnFailure" && code === 0)) return;
        // doBackOff: not in back-off after the first exit; later exits wait out the current back-off, which doubles.
        const delay = this.backoffMs && finishedAt - this.lastExit < 2 * MAX_BACKOFF_MS ? this.backoffMs : 0;
        this.backoffMs = delay ? Math.min(delay * 2, MAX_BACKOFF_MS) : INITIAL_BACKOFF_MS;
        this.lastExit = finishedAt;
        if (delay) {
            this.status.waiting = {
                reason: "CrashLoopBackOff",
                message: `back-off ${delay / 1000}s restarting failed container=${this.spec.name} pod=${this.pod.w.podName}`,
            };
            this.pod.publish();
        }
        setTimeout(() => {
            if (gen !== this.generation || this.stopRequested || this.pod.terminating) return;
            this.status.restartCount++;
            void this.start();
        }, delay);
    }

    /** SIGTERM, then SIGKILL after the grace period (the kubelet's killContainer). */
    async stop(graceMs: number, why: string): Promise<void> {
        this.stopRequested = true;
        if (!this.status.running || !this.proc) return;
        fs.appendFileSync(this.status.log, `--- ${new Date().toISOString()} stopping: ${why}\n`);
        this.signal("TERM");
        const done = await Promise.race([this.exited!.then(() => true), sleep(graceMs).then(() => false)]);
        if (!done) {
            this.signal("KILL");
            await this.exited;
        }
    }

    /** A signal to the container's init, as runc kill sends it (for the substitute: its server process; KILL: all of it). */
    signal(sig: "TERM" | "KILL"): void {
        if (this.pod.w.name !== COUCHDB_SUBSTITUTE) {
            runc(["kill", this.status.id, sig]);
            return;
        }
        const pids =
            sig === "TERM"
                ? [this.proc?.pid]
                : fs
                      .readFileSync(path.join("/sys/fs/cgroup/memory", this.status.cgroup, "cgroup.procs"), "utf8")
                      .split("\n")
                      .filter(Boolean)
                      .map(Number);
        for (const pid of pids) {
            try {
                if (pid) process.kill(pid, `SIG${sig}`);
            } catch {
                // gone
            }
        }
    }

    /** A liveness/startup failure: killed with the pod's grace period, then the restart policy decides. */
    private async killForRestart(why: string): Promise<void> {
        log(`${this.pod.w.podName}/${this.spec.name}: ${why}, will be restarted`);
        fs.appendFileSync(this.status.log, `--- ${new Date().toISOString()} ${why}, will be restarted\n`);
        this.signal("TERM");
        const done = await Promise.race([this.exited!.then(() => true), sleep(this.pod.graceMs).then(() => false)]);
        if (!done) this.signal("KILL");
    }

    private async probeLoops(gen: number): Promise<void> {
        const c = this.spec;
        const current = () => gen === this.generation && this.status.running && !this.pod.terminating && !this.stopRequested;
        if (c.startupProbe) {
            const ok = await this.untilPass(c.startupProbe, current);
            if (!current()) return;
            if (!ok) return this.killForRestart(`Container ${c.name} failed startup probe`);
            this.status.started = true;
            this.pod.publish();
        }
        if (c.livenessProbe) void this.livenessLoop(c.livenessProbe, current);
        if (!c.readinessProbe) {
            this.status.ready = true;
            this.pod.publish();
            return;
        }
        const ok = await this.untilPass(c.readinessProbe, current);
        if (!current()) return;
        if (ok) {
            this.status.ready = true;
            this.pod.publish();
        }
        // After it first passed, readiness runs at its period (failureThreshold failures make the pod unready).
        let failures = 0;
        while (current()) {
            await sleep((c.readinessProbe.periodSeconds ?? 10) * 1000);
            if (!current()) return;
            const pass = await this.pod.probe(this, c.readinessProbe);
            failures = pass ? 0 : failures + 1;
            const ready = pass || failures < (c.readinessProbe.failureThreshold ?? 3) ? (pass ? true : this.status.ready) : false;
            if (ready !== this.status.ready) {
                this.status.ready = ready;
                this.pod.publish();
            }
        }
    }

    /** Tries a probe until it passes, within initialDelay + failureThreshold × period (the kubelet's budget). */
    private async untilPass(probe: Spec, current: () => boolean): Promise<boolean> {
        const budget = ((probe.initialDelaySeconds ?? 0) + (probe.failureThreshold ?? 3) * (probe.periodSeconds ?? 10)) * 1000;
        const end = Date.now() + budget;
        await sleep((probe.initialDelaySeconds ?? 0) * 1000);
        while (current()) {
            if (await this.pod.probe(this, probe)) return true;
            if (Date.now() > end) return false;
            await sleep(FAST_PROBE_MS);
        }
        return false;
    }

    private async livenessLoop(probe: Spec, current: () => boolean): Promise<void> {
        await sleep((probe.initialDelaySeconds ?? 0) * 1000);
        let failures = 0;
        while (current()) {
            const pass = await this.pod.probe(this, probe);
            if (!current()) return;
            failures = pass ? 0 : failures + 1;
            if (failures >= (probe.failureThreshold ?? 3)) return this.killForRestart(`Container ${this.spec.name} failed liveness probe`);
            await sleep((probe.periodSeconds ?? 10) * 1000);
        }
    }
}

class PodWorker {
    containers = new Map<string, ContainerWorker>();
    terminating = false;
    /** Deleted through the API (not evicted): nothing brings it back. */
    deleted = false;
    status: PodStatus;

    constructor(
        readonly kubelet: Kubelet,
        readonly w: Workload,
    ) {
        const ip = kubelet.cluster.podIp(w.name);
        this.status = { name: w.name, ip, netns: `mail-e2e-${w.name}`, phase: "Pending", ready: false, containers: {} };
        for (const c of w.template.spec.initContainers ?? []) {
            if (c.restartPolicy !== "Always") throw new Error(`pod ${w.podName}: run-to-completion init containers are not supported by the e2e kubelet`);
            this.containers.set(c.name, new ContainerWorker(this, c, true));
        }
        for (const c of w.template.spec.containers) this.containers.set(c.name, new ContainerWorker(this, c, false));
    }

    get dir(): string {
        return path.join(E2E_DIR, "pods", this.w.name);
    }

    get shm(): string {
        return `/dev/shm/mail-e2e-${this.w.name}`;
    }

    get graceMs(): number {
        return (this.w.template.spec.terminationGracePeriodSeconds ?? 30) * 1000;
    }

    volumePath(volume: string): string {
        return this.kubelet.cluster.volumePath(this.w, volume);
    }

    /** A Job's pod: its containers run to completion instead of being restarted forever. */
    get runsToCompletion(): boolean {
        return this.w.kind === "Job";
    }

    /** Container restarts, which the Job controller counts against backoffLimit under OnFailure. */
    get restarts(): number {
        return [...this.containers.values()].reduce((n, c) => n + c.status.restartCount, 0);
    }

    /**
     * A run-to-completion pod's phase once none of its main containers will run again (getPhase): Succeeded when
     * every one exited 0, Failed otherwise; undefined while one runs or will be restarted.
     */
    private completedPhase(): "Succeeded" | "Failed" | undefined {
        if (!this.runsToCompletion || this.status.phase !== "Running") return undefined;
        const policy = jobRestartPolicy({ template: this.w.template });
        const main = [...this.containers.values()].filter((c) => !c.sidecar);
        const done = (c: ContainerWorker) => !c.status.running && c.status.lastState !== undefined && (policy === "Never" || c.status.lastState.exitCode === 0);
        if (!main.every(done)) return undefined;
        return main.every((c) => c.status.lastState!.exitCode === 0) ? "Succeeded" : "Failed";
    }

    publish(): void {
        this.status.containers = Object.fromEntries([...this.containers].map(([n, c]) => [n, c.status]));
        this.status.ready = this.status.phase === "Running" && [...this.containers.values()].every((c) => c.status.ready);
        const completed = this.completedPhase();
        if (completed) {
            this.status.phase = completed;
            this.status.ready = false;
            void this.finish(completed);
        }
        this.kubelet.publish();
    }

    /** After a run-to-completion pod's main containers are done: its sidecars stop, then the sandbox. */
    private async finish(phase: "Succeeded" | "Failed"): Promise<void> {
        this.terminating = true;
        for (const c of [...this.containers.values()].filter((x) => x.sidecar).reverse()) await c.stop(this.graceMs, `pod ${phase}`);
        this.removeSandbox();
        log(`pod ${this.w.podName} ${phase}`);
        this.kubelet.publish();
    }

    /** The sandbox: network namespace, firewall, and a pause process holding IPC/UTS (with the pod's hostname). */
    private createSandbox(): void {
        const cluster = this.kubelet.cluster;
        cluster.createNetns(this.w.name, this.status.ip);
        cluster.applyFirewall(this.w);
        fs.mkdirSync(this.shm, { recursive: true, mode: 0o1777 });
        fs.chmodSync(this.shm, 0o1777);
        podCgroups(this.w.name, this.w.template.spec);
        const p = spawn(
            "nsenter",
            [`--net=/run/netns/${this.status.netns}`, "unshare", "--ipc", "--uts", "sh", "-c", 'hostname "$1" && exec sleep infinity', "pause", this.w.podName],
            { stdio: "ignore", detached: true },
        );
        p.unref();
        this.status.sandboxPid = p.pid;
    }

    /** Volumes on the host: ConfigMaps/Secrets (atomic writer), emptyDirs, claims; fsGroup as the kubelet applies it. */
    private prepareVolumes(): void {
        const spec = this.w.template.spec;
        const fsGroup: number | undefined = spec.securityContext?.fsGroup;
        const policy: string | undefined = spec.securityContext?.fsGroupChangePolicy;
        const cluster = this.kubelet.cluster;
        for (const v of spec.volumes ?? []) {
            const dir = this.volumePath(v.name);
            if (v.configMap || v.secret || v.projected) {
                this.writeSourceVolume(v);
            } else if (v.emptyDir) {
                createEmptyDir(dir, v.emptyDir);
                if (fsGroup !== undefined) setVolumeOwnership(dir, fsGroup, false, policy);
            } else if (v.persistentVolumeClaim) {
                const claimName: string = v.persistentVolumeClaim.claimName;
                claimVolume(dir, claimName, this.w.podName, cluster.claim(this.w.namespace, claimName));
                if (fsGroup !== undefined) setVolumeOwnership(dir, fsGroup, false, policy);
            } else {
                throw new Error(`pod ${this.w.podName}: volume ${v.name} has a type the e2e kubelet does not support`);
            }
        }
        for (const c of this.w.claims) {
            const dir = this.volumePath(c.metadata.name);
            fs.mkdirSync(dir, { recursive: true });
            if (fsGroup !== undefined) setVolumeOwnership(dir, fsGroup, false, policy);
        }
        fs.mkdirSync(path.join(this.dir, "etc"), { recursive: true });
        fs.writeFileSync(path.join(this.dir, "etc", "hosts"), cluster.hostsFile(this.w));
        fs.writeFileSync(path.join(this.dir, "etc", "resolv.conf"), cluster.resolvConf(this.w));
        fs.writeFileSync(path.join(this.dir, "etc", "hostname"), `${this.w.podName}\n`);
    }

    /** A ConfigMap, Secret or projected (of ConfigMaps/Secrets) volume, written by the atomic writer. */
    writeSourceVolume(v: Spec): void {
        const cluster = this.kubelet.cluster;
        const sources: Spec[] = v.projected
            ? v.projected.sources.map((s: Spec) => {
                  if (!s.configMap && !s.secret)
                      throw new ConfigError(
                          `pod ${this.w.podName}: projected volume ${v.name}: only configMap and secret sources are supported by the e2e kubelet`,
                      );
                  return { configMap: s.configMap, secret: s.secret && { ...s.secret, secretName: s.secret.name }, defaultMode: v.projected.defaultMode };
              })
            : [v];
        const files: Record<string, Buffer> = {};
        for (const source of sources) {
            const src = { ...(source.configMap ?? source.secret), defaultMode: (source.configMap ?? source.secret).defaultMode ?? source.defaultMode };
            const name = source.configMap ? src.name : src.secretName;
            const keys = projectKeys(src, cluster.sourceData(source.configMap ? "ConfigMap" : "Secret", name));
            if (!keys)
                throw new ConfigError(
                    `pod ${this.w.podName}: volume ${v.name} needs ${source.configMap ? "ConfigMap" : "Secret"} ${name}, which the program does not create`,
                );
            Object.assign(files, keys);
        }
        const dir = this.volumePath(v.name);
        writeAtomicVolume(dir, files);
        const sc = this.w.template.spec.securityContext ?? {};
        // Secret/ConfigMap/projected volumes are read-only volumes: group read, never group write (atomic_writer + SetVolumeOwnership).
        if (sc.fsGroup !== undefined) setVolumeOwnership(dir, sc.fsGroup, true, undefined);
    }

    /** A container's bind mounts: the pod's hosts/resolv.conf/hostname, then its volumeMounts (subPath = the resolved file). */
    mounts(c: Spec): Mount[] {
        const etc = path.join(this.dir, "etc");
        const out: Mount[] = [
            { source: path.join(etc, "hosts"), destination: "/etc/hosts", readOnly: false },
            { source: path.join(etc, "resolv.conf"), destination: "/etc/resolv.conf", readOnly: false },
            { source: path.join(etc, "hostname"), destination: "/etc/hostname", readOnly: false },
        ];
        for (const m of c.volumeMounts ?? []) {
            const vol = (this.w.template.spec.volumes ?? []).find((v: Spec) => v.name === m.name);
            const isClaim = this.w.claims.some((x: Spec) => x.metadata.name === m.name);
            if (!vol && !isClaim) throw new ConfigError(`pod ${this.w.podName}: container ${c.name} mounts unknown volume ${m.name}`);
            let host = this.volumePath(m.name);
            if (m.subPath) host = fs.realpathSync(path.join(host, m.subPath));
            out.push({ source: host, destination: m.mountPath, readOnly: !!(m.readOnly || vol?.configMap || vol?.secret || vol?.projected) });
        }
        return out;
    }

    async probe(cw: ContainerWorker, probe: Spec): Promise<boolean> {
        const timeoutMs = (probe.timeoutSeconds ?? 1) * 1000;
        const c = cw.spec;
        const port = (p: number | string) => (typeof p === "number" ? p : (c.ports ?? []).find((x: Spec) => x.name === p)?.containerPort);
        if (probe.exec) {
            if (this.w.name === COUCHDB_SUBSTITUTE) throw new Error("exec probes on the CouchDB substitute are not supported");
            // The kubelet's exec probe is the runtime's ExecSync: runc exec in the container, with the probe's timeout.
            return new Promise((resolve) => {
                const p = spawn("runc", ["--root", RUNC_ROOT, "exec", cw.status.id, ...probe.exec.command], { stdio: "ignore" });
                const t = setTimeout(() => p.kill("SIGKILL"), timeoutMs);
                p.on("exit", (code) => (clearTimeout(t), resolve(code === 0)));
            });
        }
        if (probe.tcpSocket) {
            return new Promise((resolve) => {
                const s = net.connect({ host: this.status.ip, port: port(probe.tcpSocket.port), timeout: timeoutMs });
                s.once("connect", () => (s.destroy(), resolve(true)));
                s.once("error", () => resolve(false));
                s.once("timeout", () => (s.destroy(), resolve(false)));
            });
        }
        if (probe.httpGet) {
            try {
                const res = await fetch(`http://${this.status.ip}:${port(probe.httpGet.port)}${probe.httpGet.path ?? "/"}`, {
                    signal: AbortSignal.timeout(timeoutMs),
                });
                await res.text();
                return res.status >= 200 && res.status < 400;
            } catch {
                return false;
            }
        }
        throw new Error(`container ${c.name}: unsupported probe ${JSON.stringify(probe)}`);
    }

    /**
     * Starts the pod; resolves when it is Ready — a Job's pod: when it Succeeded or Failed — and rejects with the
     * reason when it cannot get there.
     */
    async start(): Promise<void> {
        const started = Date.now();
        this.terminating = false;
        this.status.phase = "Pending";
        this.createSandbox();
        this.prepareVolumes();
        this.status.phase = "Running";
        this.publish();
        const workers = [...this.containers.values()];
        for (const cw of workers.filter((x) => x.sidecar)) {
            await cw.start();
            // A native sidecar counts as started after its startupProbe; the next init container waits for that.
            await this.until(() => cw.status.started || !!cw.status.waiting, cw);
        }
        await Promise.all(workers.filter((x) => !x.sidecar).map((cw) => cw.start()));
        if (this.runsToCompletion) {
            await this.until(() => this.status.phase === "Succeeded" || this.status.phase === "Failed", undefined);
            return;
        }
        await this.until(() => this.status.ready, undefined);
        log(`pod ${this.w.podName} ready at ${this.status.ip} (${((Date.now() - started) / 1000).toFixed(1)} s)`);
    }

    /**
     * Waits for cond; fails when a container cannot be created or keeps failing (the kubelet would keep retrying).
     * A Job's containers may fail and restart: that is the Job controller's to count, and the Job's await timeout
     * bounds how long it may run.
     */
    private async until(cond: () => boolean, only: ContainerWorker | undefined): Promise<void> {
        const budgetMs = this.runsToCompletion ? Infinity : 180_000;
        const end = Date.now() + budgetMs;
        for (;;) {
            if (cond()) return;
            for (const cw of only ? [only] : this.containers.values()) {
                const s = cw.status;
                if (s.waiting && s.waiting.reason !== "CrashLoopBackOff")
                    throw new Error(`${this.w.podName}/${cw.spec.name}: ${s.waiting.reason}: ${s.waiting.message}`);
                if (!this.runsToCompletion && (s.restartCount >= 2 || s.waiting?.reason === "CrashLoopBackOff")) {
                    throw new Error(
                        `${this.w.podName}/${cw.spec.name} keeps failing (restarts: ${s.restartCount}, last state: ${JSON.stringify(s.lastState)}); log:\n${tailOf(s.log)}`,
                    );
                }
            }
            if (this.terminating) throw new Error(`pod ${this.w.podName} was stopped while starting`);
            if (Date.now() > end) {
                const pending = [...this.containers.values()]
                    .filter((c) => !c.status.ready)
                    .map((c) => `${c.spec.name} (started: ${c.status.started}, running: ${c.status.running})`);
                throw new Error(
                    `pod ${this.w.podName} not Ready after ${budgetMs / 1000} s: ${pending.join(", ")}; logs:\n${pending.map((p) => tailOf(this.containers.get(p.split(" ")[0])!.status.log)).join("\n")}`,
                );
            }
            await sleep(100);
        }
    }

    /** Stops the pod as the kubelet does: main containers first, then sidecars in reverse order; keeps claims. */
    async stop(reason = "deleted"): Promise<void> {
        this.terminating = true;
        this.status.phase = "Terminating";
        this.publish();
        const workers = [...this.containers.values()];
        await Promise.all(workers.filter((c) => !c.sidecar).map((c) => c.stop(this.graceMs, reason)));
        for (const c of workers.filter((x) => x.sidecar).reverse()) await c.stop(this.graceMs, reason);
        this.removeSandbox();
        log(`pod ${this.w.podName} stopped (${reason})`);
    }

    /** The pause process, emptyDirs and shared memory go; the network namespace stays for the pod's next start. */
    private removeSandbox(): void {
        if (this.status.sandboxPid && alive(this.status.sandboxPid)) process.kill(this.status.sandboxPid, "SIGKILL");
        for (const v of this.w.template.spec.volumes ?? []) if (v.emptyDir) removeEmptyDir(this.volumePath(v.name));
        fs.rmSync(this.shm, { recursive: true, force: true });
    }

    /** The eviction manager's emptyDir check: a disk emptyDir over its sizeLimit evicts the pod. */
    async checkEviction(): Promise<void> {
        if (this.terminating) return;
        for (const v of this.w.template.spec.volumes ?? []) {
            if (!v.emptyDir?.sizeLimit || v.emptyDir.medium === "Memory") continue;
            const used = diskUsage(this.volumePath(v.name));
            if (used > quantityBytes(v.emptyDir.sizeLimit)) {
                const reason = `Usage of EmptyDir volume "${v.name}" exceeds the limit "${v.emptyDir.sizeLimit}".`;
                log(`EVICTED pod ${this.w.podName}: ${reason}`);
                this.status.reason = reason;
                await this.stop(`evicted: ${reason}`);
                this.status.phase = "Evicted";
                this.publish();
                // The StatefulSet/Deployment controller replaces an evicted pod (unless it was deleted meanwhile).
                if (!this.deleted) await this.start().catch((e) => log(`pod ${this.w.podName} after eviction: ${e instanceof Error ? e.message : e}`));
                return;
            }
        }
    }
}

/**
 * The node's and the pod's cgroups, as the kubelet's QoS and pod cgroup managers make them (pkg/kubelet/cm/
 * qos_container_manager_linux.go, helpers_linux.go ResourceConfigForPod): all pods below one parent whose CPU weight
 * is the node's allocatable CPU (here: every core of this machine), each pod's CPU shares the sum of its containers'
 * requests, its memory limit the sum of their limits when every container has one.
 */
function podCgroups(pod: string, spec: Spec): void {
    const cpuRoot = path.join("/sys/fs/cgroup/cpu", CGROUP_PARENT);
    fs.mkdirSync(path.join(cpuRoot, pod), { recursive: true });
    fs.writeFileSync(path.join(cpuRoot, "cpu.shares"), String(os.cpus().length * 1024));
    const containers = [...(spec.initContainers ?? []), ...spec.containers];
    const requestMillis = containers.reduce((sum: number, c: Spec) => sum + cpuMillis(c.resources?.requests?.cpu ?? c.resources?.limits?.cpu ?? 0), 0);
    fs.writeFileSync(path.join(cpuRoot, pod, "cpu.shares"), String(Math.max(2, Math.floor((requestMillis * 1024) / 1000))));
    const memRoot = path.join("/sys/fs/cgroup/memory", CGROUP_PARENT, pod);
    fs.mkdirSync(memRoot, { recursive: true });
    if (containers.every((c: Spec) => c.resources?.limits?.memory)) {
        const sum = containers.reduce((total: number, c: Spec) => total + quantityBytes(c.resources.limits.memory), 0);
        fs.writeFileSync(path.join(memRoot, "memory.limit_in_bytes"), String(sum));
    }
}

function tailOf(file: string): string {
    try {
        return fs.readFileSync(file, "utf8").split("\n").slice(-30).join("\n");
    } catch {
        return "(no log)";
    }
}

export class Kubelet {
    pods = new Map<string, PodWorker>();
    /** The Job controller's status of every Job the node ran (.e2e/jobs.json). */
    jobs = new Map<string, JobStatus>();
    private images = new Map<string, ImageConfig>();
    readonly seccompProfile = JSON.parse(fs.readFileSync(SECCOMP_PROFILE_FILE, "utf8"));

    constructor(readonly cluster: Cluster) {}

    image(ref: string): ImageConfig {
        if (!this.images.has(ref)) this.images.set(ref, imageConfig(ref));
        return this.images.get(ref)!;
    }

    publish(): void {
        const status = Object.fromEntries([...this.pods].map(([n, p]) => [n, p.status]));
        fs.writeFileSync(`${STATUS_FILE}.tmp`, JSON.stringify(status, null, 1));
        fs.renameSync(`${STATUS_FILE}.tmp`, STATUS_FILE);
    }

    publishJobs(): void {
        fs.writeFileSync(`${JOBS_FILE}.tmp`, JSON.stringify(Object.fromEntries(this.jobs), null, 1));
        fs.renameSync(`${JOBS_FILE}.tmp`, JOBS_FILE);
    }

    /** Starts a workload's pod; resolves when it is Ready. A Job is run by its controller: resolves when it finished. */
    async startPod(name: string): Promise<void> {
        const w = this.cluster.workload(name);
        if (w.kind === "Job") return this.runJob(w);
        let pod = this.pods.get(name);
        if (pod && !pod.terminating) throw new Error(`pod ${w.podName} is already running`);
        pod = new PodWorker(this, w);
        this.pods.set(name, pod);
        await pod.start();
    }

    /**
     * The Job controller for one Job (jobcontroller.ts): a pod at a time until one Succeeded or the back-off limit is
     * reached, waiting out the pod-failure back-off between pods. Rejects when a pod cannot be created at all (its
     * reason is in the pod's status; the Job stays active, as the provider's await would see it until its timeout).
     */
    private async runJob(w: Workload): Promise<void> {
        if (this.jobs.has(w.name)) throw new Error(`job ${w.name} was already started on this node`);
        const spec = this.cluster.find("Job", w.name)!.spec;
        jobRestartPolicy(spec);
        let status: JobStatus = { startTime: Date.now(), active: 0, succeeded: 0, failed: 0, conditions: [] };
        let failuresInARow = 0;
        const set = (next: JobStatus) => {
            status = next;
            this.jobs.set(w.name, status);
            this.publishJobs();
        };
        set(status);
        while (!finished(status)) {
            const pod = new PodWorker(this, w);
            this.pods.set(w.name, pod);
            set({ ...status, active: 1 });
            let limitReached = false;
            const watch = setInterval(() => {
                if (pastBackoffLimitOnFailure(spec, pod.restarts) && !limitReached) {
                    limitReached = true;
                    void pod.stop("the Job reached its backoff limit");
                }
            }, 200);
            try {
                await pod.start();
            } catch (e) {
                if (!limitReached) throw e;
            } finally {
                clearInterval(watch);
            }
            const outcome = limitReached ? "BackoffLimitOnFailure" : pod.status.phase === "Succeeded" ? "Succeeded" : "Failed";
            set(afterPod(spec, status, outcome));
            log(`job ${w.name}: pod ${outcome}; ${JSON.stringify(status)}`);
            failuresInARow = outcome === "Succeeded" ? 0 : failuresInARow + 1;
            if (!finished(status)) await sleep(podFailureBackoffMs(failuresInARow));
        }
    }

    async stopPod(name: string): Promise<void> {
        const pod = this.pods.get(name);
        if (!pod) return;
        pod.deleted = true;
        await pod.stop();
    }

    /** A container crashing (its init SIGKILLed): the kubelet's restart logic takes over. */
    crash(pod: string, container: string): void {
        const cw = this.pods.get(pod)?.containers.get(container);
        if (!cw?.status.running) throw new Error(`container ${pod}/${container} is not running`);
        cw.signal("KILL");
    }

    /**
     * An object created or replaced in the API: pods see new Service names and addresses (cluster DNS is live), and
     * every running pod's NetworkPolicy firewall is recomputed (the CNI follows policies and the pods they select).
     */
    apply(obj: KubeObject): void {
        this.cluster.upsert(obj);
        if (!["Namespace", "Service", "NetworkPolicy", "StatefulSet", "Deployment", "Job"].includes(obj.kind)) return;
        for (const pod of this.pods.values()) {
            if (pod.terminating || pod.status.phase !== "Running") continue;
            fs.writeFileSync(path.join(pod.dir, "etc", "hosts"), this.cluster.hostsFile(pod.w));
            this.cluster.applyFirewall(pod.w);
        }
    }

    /** A ConfigMap changed in the API: every running pod that mounts it gets the new content (the kubelet's sync). */
    updateConfigMap(name: string, data: Record<string, string>): void {
        this.cluster.setConfigMap(name, data);
        for (const pod of this.pods.values()) {
            if (pod.terminating) continue;
            for (const v of pod.w.template.spec.volumes ?? []) {
                if (v.configMap?.name === name || v.projected?.sources.some((s: Spec) => s.configMap?.name === name)) pod.writeSourceVolume(v);
            }
        }
    }

    async shutdown(): Promise<void> {
        for (const pod of [...this.pods.values()].reverse()) await pod.stop();
        this.publish();
    }

    serve(): void {
        fs.rmSync(KUBELET_SOCKET, { force: true });
        const server = http.createServer((req, res) => {
            let body = "";
            req.on("data", (d) => (body += d));
            req.on("end", () => void this.answer(server, req.url, body, res));
        });
        server.listen(KUBELET_SOCKET);
        setInterval(() => {
            for (const pod of this.pods.values()) void pod.checkEviction();
        }, 5000).unref();
        this.publish();
        log(`kubelet listening on ${KUBELET_SOCKET}`);
    }

    /** One control call: its JSON answer says ok or the error. */
    private async answer(server: http.Server, url: string | undefined, body: string, res: http.ServerResponse): Promise<void> {
        try {
            const args = body ? JSON.parse(body) : {};
            switch (url) {
                case "/startPod":
                    await this.startPod(args.name);
                    break;
                case "/stopPod":
                    await this.stopPod(args.name);
                    break;
                case "/apply":
                    this.apply(args.object);
                    break;
                case "/crash":
                    this.crash(args.pod, args.container);
                    break;
                case "/updateConfigMap":
                    this.updateConfigMap(args.name, args.data);
                    break;
                case "/shutdown":
                    await this.shutdown();
                    res.end(JSON.stringify({ ok: true }));
                    server.close();
                    setTimeout(() => process.exit(0), 100);
                    return;
                default:
                    throw new Error(`unknown call ${url}`);
            }
            res.end(JSON.stringify({ ok: true }));
        } catch (e) {
            res.end(JSON.stringify({ ok: false, error: e instanceof Error ? e.message : String(e) }));
        }
    }
}

if (require.main === module) {
    new Kubelet(Cluster.load()).serve();
}
