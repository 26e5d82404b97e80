// The e2e kubelet's runtime against the running stack: every container of the program's pods runs with what its
// spec asks for (checked from inside, through the runtime's exec), memory limits are enforced by the kernel and an
// OOM-killed container comes back after the kubelet's back-off, liveness failures restart a container, and an
// image that would run as root is refused under runAsNonRoot.
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { COUCHMAIL } from "../../components/couchmail";
import { WEBMAIL_UID } from "../../components/webmail";
import { COUCHDB_SUBSTITUTE } from "./layout";
import { ALL_CAPS, cgroupPids, effectiveCaps } from "./runtime";
import { cluster, sleep, stack, waitFor } from "./suite";
import { quantityBytes } from "./volumes";

/* eslint-disable @typescript-eslint/no-explicit-any -- pod specs as the program declared them */
type Spec = any;

/** The capability bitmask /proc/PID/status shows for a set of capability names; a wrong order in ALL_CAPS fails the checks below. */
const capMask = (caps: string[]) => caps.reduce((m, c) => m | (1n << BigInt(ALL_CAPS.indexOf(c))), 0n);

/** The containers of the program's long-running pods (a Job's pod has finished by now: there is nothing to exec into). */
function mailContainers(): { pod: string; spec: Spec; podSpec: Spec }[] {
    const c = cluster();
    return Object.keys(c.status())
        .filter((p) => c.workload(p).namespace === "mail" && c.workload(p).kind !== "Job" && p !== COUCHDB_SUBSTITUTE)
        .flatMap((p) => {
            const podSpec = c.workload(p).template.spec;
            return [...(podSpec.initContainers ?? []), ...podSpec.containers].map((spec: Spec) => ({ pod: p, spec, podSpec }));
        });
}

describe("the runtime gives each container what its spec says", () => {
    test("own PID namespace, exact capabilities, no_new_privs, seccomp, fsGroup as a supplementary group, memory limit", () => {
        const failures: string[] = [];
        for (const { pod, spec, podSpec } of mailContainers()) {
            const r = cluster().exec(pod, spec.name, ["cat", "/proc/1/status", "/proc/1/cmdline", "/sys/fs/cgroup/memory/memory.limit_in_bytes"]);
            assert.equal(r.code, 0, `${pod}/${spec.name}: ${r.stderr}`);
            const field = (name: string) => new RegExp(`^${name}:[ \\t]*(.*)$`, "m").exec(r.stdout)?.[1].trim();
            const sc = spec.securityContext ?? {};
            const where = `${pod}/${spec.name}`;
            if (BigInt(`0x${field("CapBnd")}`) !== capMask(effectiveCaps(sc)))
                failures.push(`${where}: CapBnd ${field("CapBnd")} ≠ ${capMask(effectiveCaps(sc)).toString(16)}`);
            if (field("NoNewPrivs") !== (sc.allowPrivilegeEscalation === false ? "1" : "0")) failures.push(`${where}: NoNewPrivs ${field("NoNewPrivs")}`);
            const seccomp = (sc.seccompProfile ?? podSpec.securityContext?.seccompProfile)?.type === "RuntimeDefault" ? "2" : "0";
            if (field("Seccomp") !== seccomp) failures.push(`${where}: Seccomp mode ${field("Seccomp")}, want ${seccomp}`);
            const fsGroup = podSpec.securityContext?.fsGroup;
            // The runtime's exec joins the container's PID namespace: its PID 1 is the container's own entrypoint.
            if (!/^PPid:\s+0$/m.test(r.stdout)) failures.push(`${where}: PID 1 has a parent inside the container`);
            if (fsGroup !== undefined && !(field("Groups") ?? "").split(/\s+/).includes(String(fsGroup)))
                failures.push(`${where}: fsGroup ${fsGroup} not in Groups "${field("Groups")}"`);
            const limit = spec.resources?.limits?.memory;
            if (limit && !r.stdout.trim().endsWith(String(quantityBytes(limit)))) failures.push(`${where}: memory limit is not ${limit}`);
        }
        assert.deepEqual(failures, []);
    });

    test("readOnlyRootFilesystem: the root is read-only, and the container still runs", () => {
        for (const { pod, spec } of mailContainers().filter((x) => x.spec.securityContext?.readOnlyRootFilesystem)) {
            const r = cluster().exec(pod, spec.name, ["sh", "-c", "touch /.e2e-probe"]);
            assert.notEqual(r.code, 0, `${pod}/${spec.name} could write its root`);
            assert.match(r.stderr, /Read-only file system/, `${pod}/${spec.name}`);
        }
    });
});

/** uid, gid and groups of a process (effective IDs). */
function credentials(pid: number): { uid: number; gid: number; groups: number[]; comm: string } | undefined {
    try {
        const st = fs.readFileSync(`/proc/${pid}/status`, "utf8");
        const ids = (k: string) => (new RegExp(`^${k}:[ \t]*(.*)$`, "m").exec(st)?.[1] ?? "").split(/\s+/).filter(Boolean).map(Number);
        return { uid: ids("Uid")[1], gid: ids("Gid")[1], groups: ids("Groups"), comm: /^Name:\s+(.*)$/m.exec(st)![1] };
    } catch {
        return undefined;
    }
}

/** Whether the kernel's permission check lets these credentials read a file (owner, then group, then other bits). */
function canRead(st: fs.Stats, who: { uid: number; gid: number; groups: number[] }): boolean {
    if (st.uid === who.uid) return (st.mode & 0o400) !== 0;
    if (st.gid === who.gid || who.groups.includes(st.gid)) return (st.mode & 0o040) !== 0;
    return (st.mode & 0o004) !== 0;
}

/**
 * The unprivileged servers that read a private key because they terminate TLS themselves, each by design and each a
 * known exposure: a compromise of that process (or, for the webmail, of PHP-FPM, which shares nginx's user in the
 * one restricted container) reads the key. Every other unprivileged reader fails the test.
 */
const KEY_READERS_BY_DESIGN: { pod: string; volume: string; uid: number }[] = [
    // nginx serves HTTPS as the webmail pod's only user (Pod Security restricted: nothing starts as root to drop it).
    { pod: "webmail-0", volume: "tls", uid: WEBMAIL_UID },
    // couchmail serves the webmail's password change over TLS; the volume is mounted in its container only.
    { pod: "dovecot-0", volume: "couchmail-password-tls", uid: COUCHMAIL.uid },
];

describe("Secrets in the pods", () => {
    test("private keys in Secret volumes are readable by no unprivileged process of their pod but the TLS servers made so, a logged-in IMAP session included", async () => {
        const c = cluster();
        const user = "keyreader@example.test";
        const password = `pw-${Date.now()}`;
        c.exec("dovecot", "couchmail", ["couchmail", "domain", "add", "example.test"]);
        assert.equal(c.exec("dovecot", "couchmail", ["couchmail", "user", "add", user, "--password-stdin"], { input: `${password}\n` }).code, 0);
        const imap = stack.endpoints.imap;
        // A user's own IMAP process is what an attacker with a password controls: it must not get at the TLS key.
        const session = spawn(
            "nsenter",
            [
                `--net=/run/netns/${stack.clientNetns}`,
                "/usr/bin/python3",
                path.join(__dirname, "clients.py"),
                "imap-hold",
                imap.host,
                String(imap.port),
                stack.caFile,
                stack.hostname,
                user,
                password,
                "10",
            ],
            { stdio: ["ignore", "pipe", "inherit"] },
        );
        try {
            await new Promise<void>((resolve, reject) => {
                session.stdout.once("data", (d) => (/"login": true/.test(String(d)) ? resolve() : reject(new Error(`IMAP login: ${d}`))));
                session.once("exit", (code) => reject(new Error(`IMAP session ended (${code})`)));
            });
            await sleep(500);
            const readable: string[] = [];
            for (const name of Object.keys(c.status())) {
                const w = c.workload(name);
                const secretVolumes = (w.template.spec.volumes ?? []).filter((v: Spec) => v.secret || v.projected?.sources.some((x: Spec) => x.secret));
                const containers = [...(w.template.spec.initContainers ?? []), ...w.template.spec.containers];
                for (const v of secretVolumes) {
                    // The processes of the containers that mount the volume (others do not see it).
                    const procs = containers
                        .filter((ct: Spec) => (ct.volumeMounts ?? []).some((m: Spec) => m.name === v.name))
                        .flatMap((ct: Spec) => cgroupPids(c.status()[name].containers[ct.name]?.cgroup ?? "/none"))
                        .map((pid: number) => ({ pid, ...credentials(pid)! }))
                        .filter((p: { comm?: string; uid: number }) => p.comm && p.uid !== 0);
                    const dir = c.volumePath(w, v.name);
                    for (const file of fs.readdirSync(dir).filter((f) => !f.startsWith("..") && /(key|private)$/i.test(f))) {
                        const st = fs.statSync(path.join(dir, file));
                        const byDesign = (x: { uid: number }) =>
                            KEY_READERS_BY_DESIGN.some((r) => r.pod === w.podName && r.volume === v.name && r.uid === x.uid);
                        for (const p of procs.filter((x) => canRead(st, x) && !byDesign(x))) {
                            readable.push(
                                `${w.podName}: volume ${v.name}, ${file} (${(st.mode & 0o777).toString(8)} ${st.uid}:${st.gid}) readable by ${p.comm} (pid ${p.pid}, uid ${p.uid}, gid ${p.gid}, groups ${p.groups.join(",") || "-"})`,
                            );
                        }
                    }
                }
            }
            assert.deepEqual(readable, []);
        } finally {
            session.kill();
            c.exec("dovecot", "couchmail", ["couchmail", "user", "rm", user]);
        }
    });
});

describe("the kubelet keeps containers running", () => {
    test("over its memory limit a container is OOM-killed and restarted after the kubelet's back-off (0 s, then 10 s)", async () => {
        const c = cluster();
        await c.startPod("memhog");
        try {
            const first = await waitFor(
                "the first OOM kill and restart",
                () => {
                    const s = c.status().memhog?.containers.hog;
                    return s?.lastState?.reason === "OOMKilled" && s.restartCount >= 1 && s.running ? s : undefined;
                },
                20_000,
                100,
            );
            // The first restart is immediate; after the second exit the kubelet waits out a 10 s back-off.
            assert.ok(first.startedAt! - first.lastState!.finishedAt < 3000, JSON.stringify(first));
            const waiting = await waitFor("the crash-loop back-off", () => c.status().memhog?.containers.hog.waiting, 20_000, 100);
            assert.match(waiting.message, /^back-off 10s restarting failed container=hog pod=memhog-e2e$/);
            const second = await waitFor(
                "the second restart",
                () => {
                    const s = c.status().memhog?.containers.hog;
                    return s && s.restartCount >= 2 && s.running ? s : undefined;
                },
                20_000,
                100,
            );
            assert.equal(second.lastState!.reason, "OOMKilled");
            assert.ok(second.startedAt! - second.lastState!.finishedAt >= 10_000, JSON.stringify(second));
        } finally {
            await c.stopPod("memhog");
        }
    });

    test("a failing liveness probe restarts the container", async () => {
        const c = cluster();
        await c.startPod("liveness");
        try {
            assert.equal(c.exec("liveness", "app", ["rm", "/tmp/healthy"]).code, 0);
            const s = await waitFor(
                "the liveness restart",
                () => {
                    const st = cluster().status().liveness?.containers.app;
                    return st && st.restartCount === 1 && st.running ? st : undefined;
                },
                15_000,
                100,
            );
            // sleep as PID 1 ignores SIGTERM: the kubelet killed it after the 2 s grace period.
            assert.equal(s.lastState!.exitCode, 137);
            await waitFor("the restarted container's health file", () => cluster().exec("liveness", "app", ["test", "-e", "/tmp/healthy"]).code === 0, 5000);
        } finally {
            await c.stopPod("liveness");
        }
    });

    test("a pod whose disk emptyDir outgrows its sizeLimit is evicted with the eviction manager's message", async () => {
        const c = cluster();
        await c.startPod("evictee");
        try {
            const reason = await waitFor("the eviction", () => c.status().evictee?.reason, 20_000, 200);
            assert.equal(reason, 'Usage of EmptyDir volume "scratch" exceeds the limit "1Mi".');
        } finally {
            await c.stopPod("evictee");
        }
    });

    test("runAsNonRoot: an image that runs as root is refused with the kubelet's message", async () => {
        const c = cluster();
        try {
            await assert.rejects(
                c.startPod("rootimage"),
                /CreateContainerConfigError: container has runAsNonRoot and image will run as root \(pod: "rootimage-e2e", container: app\)/,
            );
        } finally {
            await c.stopPod("rootimage");
        }
    });
});
