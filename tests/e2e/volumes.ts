// Pod volumes on the host the way the kubelet lays them out: ConfigMap/Secret volumes through the atomic writer,
// emptyDirs (tmpfs with the size limit for `medium: Memory`), claims that outlive the pod, and fsGroup ownership.
import * as fs from "fs";
import * as path from "path";
import { sh } from "./procs";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes volume sources as the program declared them */
type Spec = any;

/**
 * Writes a ConfigMap/Secret volume the way the kubelet's atomic writer does (pkg/volume/util/atomic_writer.go):
 * files in a `..<timestamp>` directory, `..data` pointing at it (swapped by rename), per-key symlinks through `..data`.
 * Keys are `path\0mode`.
 */
export function writeAtomicVolume(dir: string, files: Record<string, Buffer>): void {
    fs.mkdirSync(dir, { recursive: true });
    const version = `..${new Date().toISOString().replace(/[:.]/g, "_")}.${process.hrtime.bigint()}`;
    const vdir = path.join(dir, version);
    fs.mkdirSync(vdir, { mode: 0o755 });
    const tops = new Set<string>();
    for (const [rel, content] of Object.entries(files)) {
        const [p, modeText] = rel.split("\0");
        fs.mkdirSync(path.dirname(path.join(vdir, p)), { recursive: true });
        fs.writeFileSync(path.join(vdir, p), content);
        fs.chmodSync(path.join(vdir, p), Number(modeText));
        tops.add(p.split("/")[0]);
    }
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

const RW_MASK = 0o660;
const RO_MASK = 0o440;
const EXEC_MASK = 0o110;
const SETGID_BIT = 0o2000;

/**
 * The kubelet's SetVolumeOwnership (pkg/volume/volume_linux.go): every file and directory gets the fsGroup as its
 * group and group read (+write unless the volume is read-only, as Secrets/ConfigMaps/projected are), directories
 * also group-execute and set-gid; symlinks only change group. With `fsGroupChangePolicy: OnRootMismatch` nothing
 * is walked when the volume's root already has that group and those bits (skipPermissionChange).
 */
export function setVolumeOwnership(dir: string, fsGroup: number, readOnly: boolean, changePolicy: string | undefined): void {
    const mask = readOnly ? RO_MASK : RW_MASK;
    if (changePolicy === "OnRootMismatch") {
        const root = fs.statSync(dir);
        if (root.gid === fsGroup && (root.mode & mask) === mask && (root.mode & SETGID_BIT) !== 0) return;
    }
    const walk = (p: string) => {
        const st = fs.lstatSync(p);
        fs.lchownSync(p, st.uid, fsGroup);
        if (st.isSymbolicLink()) return;
        let mode = (st.mode & 0o7777) | mask;
        if (st.isDirectory()) {
            mode |= SETGID_BIT | EXEC_MASK;
            fs.chmodSync(p, mode);
            for (const e of fs.readdirSync(p)) walk(path.join(p, e));
        } else {
            fs.chmodSync(p, mode);
        }
    };
    walk(dir);
}

/**
 * A claim's volume on this node, as the pod mounts it. A StatefulSet's claims were made by its pod (kept across
 * restarts); a standalone PersistentVolumeClaim is provisioned here on its first consumer, as kind's default class
 * `standard` does it (rancher/local-path-provisioner, WaitForFirstConsumer): provisioner.go refuses access modes other
 * than ReadWriteOnce/ReadWriteOncePod and block volumes (the claim stays Pending, so the pod never starts), and the
 * setup script of deploy/local-path-storage.yaml makes the node directory with `mkdir -m 0777 -p`; the requested
 * size is not enforced (a host directory). One node: ReadWriteOnce lets every pod here mount it, as on a real node.
 */
export function claimVolume(dir: string, claimName: string, podName: string, claim?: Spec): void {
    if (fs.existsSync(dir)) return;
    if (!claim) throw new Error(`pod ${podName}: persistentvolumeclaim "${claimName}" not found`);
    const className = claim.spec?.storageClassName ?? "standard";
    const refused = (why: string) =>
        new Error(`pod ${podName}: persistentvolumeclaim "${claimName}" is Pending: failed to provision volume with StorageClass "${className}": ${why}`);
    if (claim.spec?.volumeMode === "Block") throw refused("rancher.io/local-path does not support block volume provisioning");
    const modes: string[] = claim.spec?.accessModes ?? [];
    if (!modes.length || modes.some((m) => m !== "ReadWriteOnce" && m !== "ReadWriteOncePod"))
        throw refused("NodePath only supports ReadWriteOnce and ReadWriteOncePod (1.22+) access modes");
    fs.mkdirSync(dir, { recursive: true });
    fs.chmodSync(dir, 0o777);
}

/** Bytes of a Kubernetes quantity ("64Mi", "1G", "512k", "1e3"). */
export function quantityBytes(q: string | number): number {
    if (typeof q === "number") return q;
    const m = /^([0-9.]+(?:e[0-9]+)?)(Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(q);
    if (!m) throw new Error(`not a Kubernetes quantity: ${q}`);
    const unit: Record<string, number> = { "": 1, Ki: 1024, Mi: 1024 ** 2, Gi: 1024 ** 3, Ti: 1024 ** 4, k: 1e3, M: 1e6, G: 1e9, T: 1e12 };
    return Math.round(Number(m[1]) * unit[m[2] ?? ""]);
}

function mountedAt(dir: string): boolean {
    return fs
        .readFileSync("/proc/self/mountinfo", "utf8")
        .split("\n")
        .some((l) => l.split(" ")[4] === dir);
}

/**
 * A fresh emptyDir: 0777 (pkg/volume/emptydir/empty_dir.go); `medium: Memory` is a tmpfs sized by `sizeLimit`
 * (SizeMemoryBackedVolumes), so writes beyond it fail with ENOSPC as in a cluster.
 */
export function createEmptyDir(dir: string, source: Spec): void {
    removeEmptyDir(dir);
    fs.mkdirSync(dir, { recursive: true });
    if (source.medium === "Memory") {
        const size = source.sizeLimit ? `,size=${quantityBytes(source.sizeLimit)}` : "";
        sh("mount", ["-t", "tmpfs", "-o", `mode=0777,nosuid,nodev${size}`, "tmpfs", dir]);
    }
    fs.chmodSync(dir, 0o777);
}

export function removeEmptyDir(dir: string): void {
    if (fs.existsSync(dir) && mountedAt(fs.realpathSync(dir))) sh("umount", [dir]);
    fs.rmSync(dir, { recursive: true, force: true });
}

/** Bytes used below dir (what the eviction manager compares with an emptyDir's sizeLimit). */
export function diskUsage(dir: string): number {
    const out = sh("du", ["-sb", dir], { allowFail: true });
    return Number(out.split("\t")[0]) || 0;
}
