// The e2e kubelet's container runtime, checked without running anything: the OCI spec it gives runc for a pod's
// container, and the kubelet's volume ownership rules.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import {
    cpuResources,
    DEFAULT_CAPS,
    effectiveCaps,
    ImageConfig,
    ociSpec,
    processUser,
    runAsNonRootError,
    seccompRuntimeDefault,
    SECCOMP_PROFILE_FILE,
} from "./runtime";
import { quantityBytes, setVolumeOwnership } from "./volumes";

const image: ImageConfig = { user: "", entrypoint: ["/entry"], cmd: ["serve"], env: ["PATH=/usr/bin", "A=image"], workingDir: "" };
const profile = JSON.parse(fs.readFileSync(SECCOMP_PROFILE_FILE, "utf8"));

function rootfs(passwd: string, group: string): string {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rootfs-"));
    fs.mkdirSync(path.join(dir, "etc"));
    fs.writeFileSync(path.join(dir, "etc/passwd"), passwd);
    fs.writeFileSync(path.join(dir, "etc/group"), group);
    return dir;
}

describe("capabilities (containerd's default set, ALL first, then add, then drop)", () => {
    test("no securityContext: containerd's 14 defaults", () => {
        expect(effectiveCaps(undefined)).toEqual(DEFAULT_CAPS);
        expect(DEFAULT_CAPS).not.toContain("SYS_ADMIN");
        expect(DEFAULT_CAPS).not.toContain("DAC_READ_SEARCH");
    });
    test("drop ALL + add: exactly the added ones", () => {
        expect(effectiveCaps({ capabilities: { drop: ["ALL"], add: ["CHOWN", "NET_BIND_SERVICE"] } })).toEqual(["CHOWN", "NET_BIND_SERVICE"]);
    });
    test("a drop wins over the default set, an add extends it", () => {
        const caps = effectiveCaps({ capabilities: { drop: ["NET_RAW"], add: ["SYS_PTRACE"] } });
        expect(caps).not.toContain("NET_RAW");
        expect(caps).toContain("SYS_PTRACE");
    });
});

describe("process user", () => {
    const fsRoot = rootfs("root:x:0:0::/root:/bin/sh\nvmail:x:5000:5000::/var/mail:/bin/false\n", "root:x:0:\nvmail:x:5000:\nmail:x:8:vmail\n");
    test("runAsUser takes its primary group from the image's passwd, groups listing it, supplementalGroups and fsGroup", () => {
        expect(processUser({ fsGroup: 7000, supplementalGroups: [42] }, { runAsUser: 5000 }, image, fsRoot)).toEqual({
            uid: 5000,
            gid: 5000,
            additionalGids: [8, 42, 7000],
        });
        expect(processUser({ fsGroup: 5000 }, { runAsUser: 5000 }, image, fsRoot).additionalGids).toEqual([8, 5000]);
    });
    test("a uid the image does not know gets group 0 unless runAsGroup", () => {
        expect(processUser({}, { runAsUser: 10101 }, image, fsRoot)).toEqual({ uid: 10101, gid: 0, additionalGids: [] });
        expect(processUser({ runAsGroup: 9 }, { runAsUser: 10101 }, image, fsRoot)).toEqual({ uid: 10101, gid: 9, additionalGids: [] });
    });
    test("the image's USER uid:gid when no runAsUser", () => {
        expect(processUser({}, {}, { ...image, user: "5002:5002" }, fsRoot)).toEqual({ uid: 5002, gid: 5002, additionalGids: [] });
    });
});

describe("runAsNonRoot (the kubelet's verifyRunAsNonRoot)", () => {
    test("an image that runs as root is refused with the kubelet's message", () => {
        expect(runAsNonRootError({ runAsNonRoot: true }, {}, image, "p-0", "c")).toBe(
            'container has runAsNonRoot and image will run as root (pod: "p-0", container: c)',
        );
    });
    test("a named image user cannot be verified", () => {
        expect(runAsNonRootError({}, { runAsNonRoot: true }, { ...image, user: "app" }, "p-0", "c")).toMatch(
            /image has non-numeric user \(app\), cannot verify user is non-root/,
        );
    });
    test("runAsUser 0 breaks the policy; a numeric non-root user passes", () => {
        expect(runAsNonRootError({}, { runAsNonRoot: true, runAsUser: 0 }, image, "p-0", "c")).toMatch(/runAsUser breaks non-root policy/);
        expect(runAsNonRootError({}, { runAsNonRoot: true }, { ...image, user: "10101:10101" }, "p-0", "c")).toBeUndefined();
    });
});

describe("seccomp RuntimeDefault", () => {
    test("capability-gated syscalls follow the container's capabilities; other architectures are left out", () => {
        const allowed = (s: ReturnType<typeof seccompRuntimeDefault>, name: string) =>
            s.syscalls.some((r: { names: string[]; action: string; args?: unknown }) => r.names.includes(name) && r.action === "SCMP_ACT_ALLOW" && !r.args);
        const withChroot = seccompRuntimeDefault(profile, ["SYS_CHROOT"]);
        const without = seccompRuntimeDefault(profile, []);
        expect(allowed(withChroot, "chroot")).toBe(true);
        expect(allowed(without, "chroot")).toBe(false);
        // Debian's containers-common profile allows these to everyone; containerd only with CAP_SYS_ADMIN.
        expect(allowed(without, "mount")).toBe(false);
        expect(allowed(without, "unshare")).toBe(false);
        expect(allowed(seccompRuntimeDefault(profile, ["SYS_ADMIN"]), "mount")).toBe(true);
        expect(without.syscalls).toContainEqual({ names: ["clone3"], action: "SCMP_ACT_ERRNO", errnoRet: 38 });
        expect(allowed(without, "read")).toBe(true);
        expect(allowed(without, "arm_fadvise64_64")).toBe(false);
        expect(without.defaultAction).toBe("SCMP_ACT_ERRNO");
        expect(without.architectures).toContain("SCMP_ARCH_X86_64");
    });
});

describe("OCI spec of a container", () => {
    const fsRoot = rootfs("root:x:0:0::/root:/bin/sh\n", "root:x:0:\n");
    const base = {
        podName: "p-0",
        image,
        rootfs: fsRoot,
        env: [
            ["A", "pod"],
            ["HOSTNAME", "p-0"],
        ] as [string, string][],
        mounts: [],
        netns: "/run/netns/n",
        ipcns: "/proc/1/ns/ipc",
        utsns: "/proc/1/ns/uts",
        shm: "/dev/shm/x",
        cgroupsPath: "/mail-e2e/p/c",
        seccompProfile: profile,
    };
    test("restricted container: read-only root, no_new_privs, exact caps, seccomp, memory limit, own PID namespace, pod's network", () => {
        const spec = ociSpec({
            ...base,
            podSpec: { securityContext: { fsGroup: 5000, seccompProfile: { type: "RuntimeDefault" } } },
            container: {
                name: "c",
                args: ["run"],
                resources: { limits: { memory: "64Mi" } },
                securityContext: {
                    readOnlyRootFilesystem: true,
                    allowPrivilegeEscalation: false,
                    runAsUser: 10101,
                    capabilities: { drop: ["ALL"], add: ["NET_BIND_SERVICE"] },
                },
            },
        });
        expect(spec.root.readonly).toBe(true);
        expect(spec.process.noNewPrivileges).toBe(true);
        expect(spec.process.capabilities.bounding).toEqual(["CAP_NET_BIND_SERVICE"]);
        expect(spec.process.user).toEqual({ uid: 10101, gid: 0, additionalGids: [5000] });
        expect(spec.process.args).toEqual(["/entry", "run"]);
        expect(spec.process.env).toEqual(["PATH=/usr/bin", "A=pod", "HOSTNAME=p-0"]);
        expect(spec.linux.resources.memory.limit).toBe(64 * 1024 * 1024);
        expect(spec.linux.seccomp.defaultAction).toBe("SCMP_ACT_ERRNO");
        expect(spec.linux.namespaces).toEqual(expect.arrayContaining([{ type: "pid" }, { type: "network", path: "/run/netns/n" }]));
        expect(spec.mounts.find((m: { destination: string }) => m.destination === "/dev").type).toBe("tmpfs");
    });
    test("defaults: writable root, privilege escalation allowed, unconfined seccomp, no memory limit", () => {
        const spec = ociSpec({ ...base, podSpec: {}, container: { name: "c" } });
        expect(spec.root.readonly).toBe(false);
        expect(spec.process.noNewPrivileges).toBe(false);
        expect(spec.linux.seccomp).toBeUndefined();
        expect(spec.linux.resources.memory).toBeUndefined();
        expect(spec.process.args).toEqual(["/entry", "serve"]);
    });
    test("CPU requests become cpu.shares, limits a CFS quota", () => {
        expect(cpuResources({ requests: { cpu: "50m" } })).toEqual({ shares: 51 });
        expect(cpuResources({ requests: { cpu: "1m" }, limits: { cpu: "0.5" } })).toEqual({ shares: 2, quota: 50_000, period: 100_000 });
        expect(cpuResources({})).toBeUndefined();
    });
    test("quantities", () => {
        expect(quantityBytes("1Mi")).toBe(1048576);
        expect(quantityBytes("500M")).toBe(500e6);
        expect(() => quantityBytes("12 parsecs")).toThrow(/not a Kubernetes quantity/);
    });
});

describe("fsGroup on volumes (the kubelet's SetVolumeOwnership)", () => {
    test("a read-only volume's 0400 key becomes 0440 with the fsGroup; directories get setgid", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vol-"));
        fs.writeFileSync(path.join(dir, "tls.key"), "k", { mode: 0o400 });
        setVolumeOwnership(dir, 5000, true, undefined);
        const st = fs.statSync(path.join(dir, "tls.key"));
        expect([st.gid, st.mode & 0o7777]).toEqual([5000, 0o440]);
        expect(fs.statSync(dir).mode & 0o2000).toBe(0o2000);
    });
    test("OnRootMismatch leaves the tree alone when the root already matches", () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "vol-"));
        fs.writeFileSync(path.join(dir, "f"), "x", { mode: 0o600 });
        fs.chownSync(dir, 0, 5000);
        fs.chmodSync(dir, 0o2770);
        setVolumeOwnership(dir, 5000, false, "OnRootMismatch");
        expect(fs.statSync(path.join(dir, "f")).mode & 0o777).toBe(0o600);
        setVolumeOwnership(dir, 5000, false, "Always");
        expect(fs.statSync(path.join(dir, "f")).mode & 0o777).toBe(0o660);
    });
});
