// The container runtime of the e2e kubelet: what containerd's CRI plugin does with a pod's container, as an OCI
// runtime spec for runc (Debian's runc), plus the runc calls. The spec follows, in order of precedence:
//   - kubelet: pkg/kubelet/kuberuntime/kuberuntime_container_linux.go (resources, security context → CRI),
//     pkg/kubelet/kuberuntime/security_context.go (fsGroup and supplementalGroups as supplementary groups,
//     no_new_privs only for an explicit allowPrivilegeEscalation: false, seccomp Unconfined unless set),
//     pkg/kubelet/kuberuntime/security_context_others.go (verifyRunAsNonRoot and its messages);
//   - containerd: pkg/oci/spec.go populateDefaultUnixSpec (default capabilities, mounts, masked and read-only
//     paths), pkg/cri/opts/spec_linux.go WithCapabilities (add, then drop; "ALL" in either; internal/cri in 2.x),
//     pkg/oci/spec_opts.go WithUserID/WithAdditionalGIDs (primary group and groups from the image's files),
//     contrib/seccomp/seccomp_default.go (RuntimeDefault; Debian's containers-common ships a moby-lineage profile
//     as /usr/share/containers/seccomp.json, which we filter the way that code does and narrow to containerd's
//     capability gates, see CONTAINERD_GATES).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { quantityBytes } from "./volumes";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes container specs and OCI JSON */
type Spec = any;

export const RUNC_ROOT = "/run/mail-e2e-runc";
export const CGROUP_PARENT = "mail-e2e";
export const SECCOMP_PROFILE_FILE = "/usr/share/containers/seccomp.json";

/** containerd's default capability set for a container (pkg/oci/spec.go). */
export const DEFAULT_CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "FSETID",
    "FOWNER",
    "MKNOD",
    "NET_RAW",
    "SETGID",
    "SETUID",
    "SETFCAP",
    "SETPCAP",
    "NET_BIND_SERVICE",
    "SYS_CHROOT",
    "KILL",
    "AUDIT_WRITE",
];
/** Every capability, in bit order (capability(7)): index = the bit in /proc/PID/status masks. */
export const ALL_CAPS = [
    "CHOWN",
    "DAC_OVERRIDE",
    "DAC_READ_SEARCH",
    "FOWNER",
    "FSETID",
    "KILL",
    "SETGID",
    "SETUID",
    "SETPCAP",
    "LINUX_IMMUTABLE",
    "NET_BIND_SERVICE",
    "NET_BROADCAST",
    "NET_ADMIN",
    "NET_RAW",
    "IPC_LOCK",
    "IPC_OWNER",
    "SYS_MODULE",
    "SYS_RAWIO",
    "SYS_CHROOT",
    "SYS_PTRACE",
    "SYS_PACCT",
    "SYS_ADMIN",
    "SYS_BOOT",
    "SYS_NICE",
    "SYS_RESOURCE",
    "SYS_TIME",
    "SYS_TTY_CONFIG",
    "MKNOD",
    "LEASE",
    "AUDIT_WRITE",
    "AUDIT_CONTROL",
    "SETFCAP",
    "MAC_OVERRIDE",
    "MAC_ADMIN",
    "SYSLOG",
    "WAKE_ALARM",
    "BLOCK_SUSPEND",
    "AUDIT_READ",
    "PERFMON",
    "BPF",
    "CHECKPOINT_RESTORE",
];

/** The capability set of a container: containerd's default, "ALL" in add/drop first, then added, then dropped. */
export function effectiveCaps(sc: Spec): string[] {
    const add: string[] = (sc?.capabilities?.add ?? []).map((c: string) => c.toUpperCase().replace(/^CAP_/, ""));
    const drop: string[] = (sc?.capabilities?.drop ?? []).map((c: string) => c.toUpperCase().replace(/^CAP_/, ""));
    if (sc?.privileged) return [...ALL_CAPS];
    let caps = [...DEFAULT_CAPS];
    if (add.includes("ALL")) caps = [...ALL_CAPS];
    if (drop.includes("ALL")) caps = [];
    for (const c of add.filter((x) => x !== "ALL")) if (!caps.includes(c)) caps.push(c);
    return caps.filter((c) => !drop.includes(c));
}

/** The image's runtime config (OCI image config), as `buildah inspect` reports it. */
export interface ImageConfig {
    user: string;
    entrypoint: string[];
    cmd: string[];
    env: string[];
    workingDir: string;
}

export function imageConfig(image: string): ImageConfig {
    const r = spawnSync("buildah", ["inspect", "--type", "image", image], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`image ${image} is not in the local store: ${r.stderr}`);
    const cfg = JSON.parse(r.stdout).OCIv1?.config ?? {};
    return { user: cfg.User ?? "", entrypoint: cfg.Entrypoint ?? [], cmd: cfg.Cmd ?? [], env: cfg.Env ?? [], workingDir: cfg.WorkingDir ?? "" };
}

/** Kubernetes rules: `command` replaces ENTRYPOINT (and drops CMD), `args` replaces CMD. */
export function containerArgv(c: Spec, image: ImageConfig): string[] {
    const entrypoint: string[] = c.command ?? image.entrypoint;
    const args: string[] = c.args ?? (c.command ? [] : image.cmd);
    const argv = [...entrypoint, ...args];
    if (!argv.length) throw new Error(`container ${c.name}: no command, no ENTRYPOINT/CMD in ${c.image}`);
    return argv;
}

interface PasswdEntry {
    name: string;
    uid: number;
    gid: number;
}

function readPasswd(rootfs: string): PasswdEntry[] {
    try {
        return fs
            .readFileSync(path.join(rootfs, "etc/passwd"), "utf8")
            .split("\n")
            .filter(Boolean)
            .map((l) => {
                const f = l.split(":");
                return { name: f[0], uid: Number(f[2]), gid: Number(f[3]) };
            });
    } catch {
        return [];
    }
}

function readGroups(rootfs: string): { name: string; gid: number; members: string[] }[] {
    try {
        return fs
            .readFileSync(path.join(rootfs, "etc/group"), "utf8")
            .split("\n")
            .filter(Boolean)
            .map((l) => {
                const f = l.split(":");
                return { name: f[0], gid: Number(f[2]), members: (f[3] ?? "").split(",").filter(Boolean) };
            });
    } catch {
        return [];
    }
}

export interface ProcessUser {
    uid: number;
    gid: number;
    additionalGids: number[];
}

/**
 * The container's user: runAsUser/runAsGroup override the image's USER; a uid alone takes its primary group from
 * the image's /etc/passwd (0 when absent); the groups that list the user in the image's /etc/group are added, then
 * supplementalGroups and the fsGroup (the kubelet passes fsGroup as a supplemental group).
 */
export function processUser(podSc: Spec, sc: Spec, image: ImageConfig, rootfs: string): ProcessUser {
    const passwd = readPasswd(rootfs);
    const groups = readGroups(rootfs);
    const runAsUser: number | undefined = sc?.runAsUser ?? podSc?.runAsUser;
    const runAsGroup: number | undefined = sc?.runAsGroup ?? podSc?.runAsGroup;
    let uid = 0;
    let gid = 0;
    if (runAsUser !== undefined) {
        uid = runAsUser;
        gid = passwd.find((p) => p.uid === uid)?.gid ?? 0;
    } else if (image.user) {
        const [u, g] = image.user.split(":");
        const entry = /^\d+$/.test(u) ? passwd.find((p) => p.uid === Number(u)) : passwd.find((p) => p.name === u);
        if (!/^\d+$/.test(u) && !entry) throw new Error(`image user ${u} is not in the image's /etc/passwd`);
        uid = /^\d+$/.test(u) ? Number(u) : entry!.uid;
        gid = entry?.gid ?? 0;
        if (g !== undefined) gid = /^\d+$/.test(g) ? Number(g) : (groups.find((x) => x.name === g)?.gid ?? 0);
    }
    if (runAsGroup !== undefined) gid = runAsGroup;
    const name = passwd.find((p) => p.uid === uid)?.name;
    const additional = new Set<number>(name ? groups.filter((g) => g.members.includes(name)).map((g) => g.gid) : []);
    for (const g of podSc?.supplementalGroups ?? []) additional.add(g);
    if (podSc?.fsGroup !== undefined) additional.add(podSc.fsGroup);
    return { uid, gid, additionalGids: [...additional] };
}

/**
 * The kubelet's verifyRunAsNonRoot: with runAsNonRoot, a container must not run as uid 0, and an image user that
 * is not numeric cannot be verified. Returns the kubelet's error (CreateContainerConfigError) or undefined.
 */
export function runAsNonRootError(podSc: Spec, sc: Spec, image: ImageConfig, podName: string, container: string): string | undefined {
    if (!(sc?.runAsNonRoot ?? podSc?.runAsNonRoot)) return undefined;
    const runAsUser: number | undefined = sc?.runAsUser ?? podSc?.runAsUser;
    const where = `(pod: "${podName}", container: ${container})`;
    if (runAsUser !== undefined) return runAsUser === 0 ? `container's runAsUser breaks non-root policy ${where}` : undefined;
    const u = image.user.split(":")[0];
    if (u && !/^\d+$/.test(u)) return `container has runAsNonRoot and image has non-numeric user (${u}), cannot verify user is non-root ${where}`;
    if (!u || Number(u) === 0) return `container has runAsNonRoot and image will run as root ${where}`;
    return undefined;
}

const ARCH = { amd64: "SCMP_ARCH_X86_64" };
/**
 * Debian's containers-common profile lets everyone call these (podman's rootless containers need them); containerd's
 * RuntimeDefault allows them only with the capability (keyctl never), which is what a cluster's pods get.
 */
const CONTAINERD_GATES: Record<string, string | undefined> = {
    mount: "SYS_ADMIN",
    umount: "SYS_ADMIN",
    umount2: "SYS_ADMIN",
    unshare: "SYS_ADMIN",
    setns: "SYS_ADMIN",
    name_to_handle_at: "SYS_ADMIN",
    fsconfig: "SYS_ADMIN",
    fsmount: "SYS_ADMIN",
    fsopen: "SYS_ADMIN",
    fspick: "SYS_ADMIN",
    mount_setattr: "SYS_ADMIN",
    move_mount: "SYS_ADMIN",
    open_tree: "SYS_ADMIN",
    clone: "SYS_ADMIN",
    clone3: "SYS_ADMIN",
    process_vm_readv: "SYS_PTRACE",
    process_vm_writev: "SYS_PTRACE",
    reboot: "SYS_BOOT",
    syslog: "SYSLOG",
    keyctl: undefined,
};
/** CLONE_NEWNS|NEWUTS|NEWIPC|NEWUSER|NEWPID|NEWNET|NEWCGROUP: without CAP_SYS_ADMIN clone may not set them. */
const CLONE_NAMESPACE_FLAGS = 0x7e020000;
const ENOSYS = 38;

/**
 * containerd's RuntimeDefault profile for this machine (x86_64) and the container's capabilities: rules whose
 * `includes` name an architecture or capability we lack are skipped, as are rules whose `excludes` we match; the
 * syscalls containerd gates on a capability are removed without it (clone keeps its namespace-flag filter, clone3
 * answers ENOSYS so libc falls back to clone, as containerd's profile does).
 */
export function seccompRuntimeDefault(profile: Spec, caps: string[]): Spec {
    const capSet = new Set(caps.map((c) => `CAP_${c}`));
    const denied = new Set(
        Object.entries(CONTAINERD_GATES)
            .filter(([, cap]) => !cap || !capSet.has(`CAP_${cap}`))
            .map(([name]) => name),
    );
    const syscalls = [];
    for (const s of profile.syscalls) {
        const inc = s.includes ?? {};
        const exc = s.excludes ?? {};
        if (inc.arches?.length && !inc.arches.includes("amd64")) continue;
        if (exc.arches?.includes("amd64")) continue;
        if (inc.caps?.length && !inc.caps.every((c: string) => capSet.has(c))) continue;
        if (exc.caps?.some((c: string) => capSet.has(c))) continue;
        const names = s.action === "SCMP_ACT_ALLOW" ? s.names.filter((n: string) => !denied.has(n)) : s.names;
        if (!names.length) continue;
        syscalls.push({
            names,
            action: s.action,
            ...(s.args?.length ? { args: s.args.map((a: Spec) => ({ index: a.index, value: a.value, valueTwo: a.valueTwo, op: a.op })) } : {}),
            ...(s.errnoRet !== undefined ? { errnoRet: s.errnoRet } : {}),
        });
    }
    if (denied.has("clone")) {
        syscalls.push({
            names: ["clone"],
            action: "SCMP_ACT_ALLOW",
            args: [{ index: 0, value: CLONE_NAMESPACE_FLAGS, valueTwo: 0, op: "SCMP_CMP_MASKED_EQ" }],
        });
        syscalls.push({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: ENOSYS });
    }
    const arch = profile.archMap.find((a: Spec) => a.architecture === ARCH.amd64);
    return {
        defaultAction: profile.defaultAction,
        ...(profile.defaultErrnoRet !== undefined ? { defaultErrnoRet: profile.defaultErrnoRet } : {}),
        architectures: [arch.architecture, ...arch.subArchitectures],
        syscalls,
    };
}

/** Millicores of a CPU quantity ("50m", "0.5", "2"). */
export function cpuMillis(q: string | number): number {
    const m = /^([0-9.]+)(m?)$/.exec(String(q));
    if (!m) throw new Error(`not a CPU quantity: ${q}`);
    return Math.round(Number(m[1]) * (m[2] ? 1 : 1000));
}

/**
 * The kubelet's CPU mapping (pkg/kubelet/cm/helpers_linux.go MilliCPUToShares/MilliCPUToQuota): requests become
 * cpu.shares (1024 per core, at least 2), limits a CFS quota over a 100 ms period.
 */
export function cpuResources(resources: Spec): Spec {
    const request = resources?.requests?.cpu ?? resources?.limits?.cpu;
    const limit = resources?.limits?.cpu;
    if (request === undefined && limit === undefined) return undefined;
    return {
        ...(request !== undefined ? { shares: Math.max(2, Math.floor((cpuMillis(request) * 1024) / 1000)) } : {}),
        ...(limit !== undefined ? { quota: Math.max(1000, cpuMillis(limit) * 100), period: 100_000 } : {}),
    };
}

export interface Mount {
    source: string;
    destination: string;
    readOnly: boolean;
}

export interface ContainerSpecInput {
    podName: string;
    podSpec: Spec;
    container: Spec;
    image: ImageConfig;
    rootfs: string;
    env: [string, string][];
    mounts: Mount[];
    /** Namespaces the pod's containers share (the sandbox's network, IPC and UTS). */
    netns: string;
    ipcns: string;
    utsns: string;
    /** The pod's /dev/shm (shared by its containers, as the sandbox's is). */
    shm: string;
    cgroupsPath: string;
    seccompProfile: Spec;
}

/** The OCI runtime spec (config.json) for one container of a pod. */
export function ociSpec(input: ContainerSpecInput): Spec {
    const { container: c, podSpec, image } = input;
    const podSc = podSpec.securityContext ?? {};
    const sc = c.securityContext ?? {};
    const caps = effectiveCaps(sc).map((x) => `CAP_${x}`);
    const user = processUser(podSc, sc, image, input.rootfs);
    // The image's ENV first; the container's env overrides it (kubelet appends, the runtime keeps the last).
    const env = new Map<string, string>();
    for (const e of image.env) env.set(e.slice(0, e.indexOf("=")), e.slice(e.indexOf("=") + 1));
    for (const [k, v] of input.env) env.set(k, v);
    const seccomp = sc.seccompProfile ?? podSc.seccompProfile;
    if (seccomp && !["RuntimeDefault", "Unconfined"].includes(seccomp.type))
        throw new Error(`container ${c.name}: seccompProfile ${seccomp.type} is not supported by the e2e runtime`);
    const memoryLimit = c.resources?.limits?.memory;
    const readOnlyRoot = sc.readOnlyRootFilesystem === true;
    const ro = (o: string[]) => (readOnlyRoot ? [...o, "ro"] : o);
    return {
        ociVersion: "1.0.2",
        process: {
            terminal: false,
            user,
            args: containerArgv(c, image),
            env: [...env].map(([k, v]) => `${k}=${v}`),
            cwd: c.workingDir || image.workingDir || "/",
            capabilities: { bounding: caps, effective: caps, permitted: caps },
            noNewPrivileges: sc.allowPrivilegeEscalation === false,
        },
        root: { path: input.rootfs, readonly: readOnlyRoot },
        mounts: [
            { destination: "/proc", type: "proc", source: "proc", options: ["nosuid", "noexec", "nodev"] },
            { destination: "/dev", type: "tmpfs", source: "tmpfs", options: ["nosuid", "strictatime", "mode=755", "size=65536k"] },
            { destination: "/dev/pts", type: "devpts", source: "devpts", options: ["nosuid", "noexec", "newinstance", "ptmxmode=0666", "mode=0620", "gid=5"] },
            { destination: "/dev/mqueue", type: "mqueue", source: "mqueue", options: ["nosuid", "noexec", "nodev"] },
            { destination: "/sys", type: "sysfs", source: "sysfs", options: ["nosuid", "noexec", "nodev", "ro"] },
            { destination: "/sys/fs/cgroup", type: "cgroup", source: "cgroup", options: ["nosuid", "noexec", "nodev", "relatime", "ro"] },
            { destination: "/dev/shm", type: "bind", source: input.shm, options: ["rbind", "rprivate", "nosuid", "nodev", "noexec"] },
            ...input.mounts.map((m) => ({
                destination: m.destination,
                type: "bind",
                source: m.source,
                options: ["rbind", "rprivate", m.readOnly ? "ro" : "rw"],
            })),
        ].map((m) => (["/etc/hosts", "/etc/resolv.conf", "/etc/hostname"].includes(m.destination) ? { ...m, options: ro(m.options) } : m)),
        linux: {
            namespaces: [
                { type: "pid" },
                { type: "mount" },
                { type: "network", path: input.netns },
                { type: "ipc", path: input.ipcns },
                { type: "uts", path: input.utsns },
            ],
            cgroupsPath: input.cgroupsPath,
            resources: {
                devices: [{ allow: false, access: "rwm" }],
                ...(memoryLimit ? { memory: { limit: quantityBytes(memoryLimit), swap: quantityBytes(memoryLimit) } } : {}),
                ...(cpuResources(c.resources) ? { cpu: cpuResources(c.resources) } : {}),
            },
            ...(seccomp?.type === "RuntimeDefault" ? { seccomp: seccompRuntimeDefault(input.seccompProfile, effectiveCaps(sc)) } : {}),
            maskedPaths: [
                "/proc/acpi",
                "/proc/asound",
                "/proc/kcore",
                "/proc/keys",
                "/proc/latency_stats",
                "/proc/timer_list",
                "/proc/timer_stats",
                "/proc/sched_debug",
                "/proc/scsi",
                "/sys/firmware",
                "/sys/devices/virtual/powercap",
            ],
            readonlyPaths: ["/proc/bus", "/proc/fs", "/proc/irq", "/proc/sys", "/proc/sysrq-trigger"],
        },
    };
}

// ---- runc ---------------------------------------------------------------------------------------------------

export function runc(args: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    const r = spawnSync("runc", ["--root", RUNC_ROOT, ...args], { encoding: "utf8", input: opts.input, timeout: opts.timeoutMs, killSignal: "SIGKILL" });
    return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
}

/** The container's init process on the host, if it runs. */
export function containerInitPid(id: string): number | undefined {
    const r = runc(["state", id]);
    if (r.code !== 0) return undefined;
    const st = JSON.parse(r.stdout);
    return st.status === "running" ? st.pid : undefined;
}

/** The memory cgroup of a container (cgroup v1). */
export function memoryCgroup(cgroupsPath: string): string {
    return path.join("/sys/fs/cgroup/memory", cgroupsPath);
}

/** Whether the kernel's OOM killer killed a process in the container's memory cgroup (memory.oom_control). */
export function oomKilled(cgroupsPath: string): boolean {
    try {
        const m = /^oom_kill (\d+)$/m.exec(fs.readFileSync(path.join(memoryCgroup(cgroupsPath), "memory.oom_control"), "utf8"));
        return !!m && Number(m[1]) > 0;
    } catch {
        return false;
    }
}

/** PIDs in a container's cgroup (its processes, exec'd ones included). */
export function cgroupPids(cgroupsPath: string): number[] {
    try {
        return fs
            .readFileSync(path.join(memoryCgroup(cgroupsPath), "cgroup.procs"), "utf8")
            .split("\n")
            .filter(Boolean)
            .map(Number);
    } catch {
        return [];
    }
}
