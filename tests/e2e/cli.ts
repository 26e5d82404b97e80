// The e2e stack runner: `up`, `down`, `run` (up, suite, footprint, down) and `exec` (like kubectl exec).
//   npx tsx tests/e2e/cli.ts up|down|run
//   npx tsx tests/e2e/cli.ts exec POD CONTAINER -- ARGV…
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Cluster } from "./cluster";
import { BRIDGE, CLUSTER_DNS, COUCHDB_SUBSTITUTE, E2E_DIR, KUBELET_SOCKET, OUTSIDE, REPO } from "./layout";
import { alive, descendants, log, sh, sleep } from "./procs";
import type { DeployEvent, LiveNode } from "./live";
import { deployStack, DOMAINS, KubeObject, MAIL_HOSTNAME } from "./program";
import { CGROUP_PARENT, runc } from "./runtime";
import { ON_DEMAND, testObjects } from "./testpods";

/** Starts a process detached (own session) in a network namespace (or the host's), output appended to logFile. */
function startDetached(argv: string[], logFile: string, netns?: string): number {
    fs.mkdirSync(path.dirname(logFile), { recursive: true });
    const fd = fs.openSync(logFile, "a");
    const p = spawn(netns ? "nsenter" : argv[0], netns ? [`--net=/run/netns/${netns}`, ...argv] : argv.slice(1), { detached: true, stdio: ["ignore", fd, fd] });
    fs.closeSync(fd);
    p.unref();
    if (!p.pid) throw new Error(`could not start ${argv.join(" ")}`);
    return p.pid;
}

/** `svc.ns.svc:port` (the program's endpoint outputs) → the Service's workload. */
function serviceWorkload(cluster: Cluster, endpoint: string): { workload: string; port: number } {
    const m = /^([^.]+)\.([^.]+)\.svc:(\d+)$/.exec(endpoint.replace(/^http:\/\//, ""));
    if (!m) throw new Error(`unexpected endpoint ${endpoint}`);
    const svc = cluster.services().find((s) => s.name === m[1] && s.namespace === m[2]);
    if (!svc) throw new Error(`no Service behind ${endpoint}`);
    const port = svc.ports.find((p) => p.port === Number(m[3]));
    if (!port) throw new Error(`Service ${m[1]} has no port ${m[3]}`);
    return { workload: port.workload.name, port: port.target };
}

/**
 * E2E_AWAIT_TIMEOUT_S: real seconds standing for the provider's default 10-minute create timeout during `up`
 * (customTimeouts scale with it): a resource whose await has not passed by then fails the deploy with the provider's
 * timeout message.
 */
function awaitTimeoutSeconds(value: string | undefined): number {
    if (value === undefined || value === "") return 120;
    const seconds = Number(value);
    if (!Number.isFinite(seconds) || seconds <= 0) throw new Error(`E2E_AWAIT_TIMEOUT_S must be a positive number of seconds, got "${value}"`);
    return seconds;
}

/** The pseudo-internet's DNS and SMTP sink (outside.py), serving the zone file as it is now. */
function startOutside(cluster: Cluster, netns: string, zone: string): void {
    const outsideLog = path.join(E2E_DIR, "logs", `${OUTSIDE.name}.log`);
    cluster.saveHelper(
        OUTSIDE.name,
        startDetached(
            ["/usr/bin/python3", path.join(__dirname, "outside.py"), OUTSIDE.ip, CLUSTER_DNS.ip, zone, path.join(E2E_DIR, "outside", "mail")],
            outsideLog,
            netns,
        ),
        outsideLog,
    );
}

async function stopHelper(cluster: Cluster, name: string): Promise<void> {
    const h = cluster.helperState().helpers[name];
    if (!h) return;
    for (const p of [...descendants(h.leader), h.leader]) {
        try {
            process.kill(p, "SIGTERM");
        } catch {
            // gone
        }
    }
    for (let i = 0; i < 50 && alive(h.leader); i++) await sleep(100);
    cluster.saveHelper(name, undefined, h.log);
}

/** Our images are `mail/<svc>:dev` (imagesRegistry/imagesTag defaults); the CouchDB pod is the one substitution. */
function checkImages(obj: KubeObject): void {
    if (obj.kind !== "StatefulSet" && obj.kind !== "Deployment" && obj.kind !== "Job") return;
    const spec = obj.spec.template.spec;
    for (const c of [...(spec.initContainers ?? []), ...spec.containers]) {
        if (!/^mail\/([a-z0-9-]+):dev$/.test(c.image) && obj.metadata.name !== COUCHDB_SUBSTITUTE) {
            throw new Error(`pod ${obj.metadata.name} references ${c.image}, which is not built from images/`);
        }
    }
}

/** The loopback node as the engine model's cluster sees it: objects reach the runner's copy, objects.json and the kubelet. */
function loopbackNode(cluster: Cluster): LiveNode {
    let cached: { at: number; status: ReturnType<Cluster["status"]> } | undefined;
    return {
        async apply(obj) {
            checkImages(obj);
            cluster.upsert(obj);
            cluster.save();
            await cluster.applyToNode(obj);
        },
        startPod: (workload) => cluster.startPod(workload),
        status() {
            if (!cached || Date.now() - cached.at > 50) cached = { at: Date.now(), status: cluster.status() };
            return cached.status;
        },
        jobs: () => cluster.jobs(),
    };
}

async function up(): Promise<Cluster> {
    const t0 = Date.now();
    const awaitTimeoutS = awaitTimeoutSeconds(process.env.E2E_AWAIT_TIMEOUT_S);
    if (fs.existsSync(path.join(E2E_DIR, "objects.json"))) await down();
    for (const d of ["pods", "pvc", "outside", "logs"]) fs.rmSync(path.join(E2E_DIR, d), { recursive: true, force: true });
    fs.rmSync(path.join(E2E_DIR, "deploy-events.json"), { force: true });
    fs.mkdirSync(E2E_DIR, { recursive: true });

    // Pods start while the program runs, so every image is built first.
    const tb = Date.now();
    log("building images: all");
    const build = spawnSync(path.join(REPO, "images/build.sh"), ["all"], { stdio: "inherit" });
    if (build.status !== 0) throw new Error("images/build.sh failed");
    log(`images built in ${((Date.now() - tb) / 1000).toFixed(0)} s`);

    const cluster = new Cluster([]);
    cluster.save();
    cluster.createBridge();
    // The cluster DNS answers from the start; the program's own zone is added once the deploy has given it.
    const zone = path.join(E2E_DIR, "outside", "zone");
    fs.mkdirSync(path.dirname(zone), { recursive: true });
    const externalZone = [
        "external.test.\t300\tIN\tMX\t10 mx.external.test.",
        `mx.external.test.\t300\tIN\tA\t${OUTSIDE.ip}`,
        // A sender domain whose SPF authorizes nobody: Postfix's SPF check must refuse its mail.
        "spf-fail.test.\t300\tIN\tMX\t10 mx.external.test.",
        'spf-fail.test.\t300\tIN\tTXT\t"v=spf1 -all"',
        "",
    ];
    fs.writeFileSync(zone, externalZone.join("\n"));
    const { netns: outsideNetns } = cluster.createNetns(OUTSIDE.name, OUTSIDE.ip);
    sh("ip", ["-n", outsideNetns, "addr", "add", `${CLUSTER_DNS.ip}/24`, "dev", "eth0"], { allowFail: true });
    startOutside(cluster, outsideNetns, zone);

    const kubeletLog = path.join(E2E_DIR, "logs", "kubelet.log");
    fs.rmSync(KUBELET_SOCKET, { force: true });
    cluster.saveHelper("kubelet", startDetached([process.execPath, require.resolve("tsx/cli"), path.join(__dirname, "kubelet.ts")], kubeletLog), kubeletLog);
    for (let i = 0; !fs.existsSync(KUBELET_SOCKET); i++) {
        if (i > 100) throw new Error(`the e2e kubelet did not start; log:\n${fs.readFileSync(kubeletLog, "utf8")}`);
        await sleep(100);
    }

    log(`deploying the Pulumi program through the engine model onto the loopback node (await timeout: ${awaitTimeoutS} s for the provider's 10 min)`);
    const events: DeployEvent[] = [];
    const record = (e: DeployEvent) => {
        events.push(e);
        fs.writeFileSync(path.join(E2E_DIR, "deploy-events.json"), JSON.stringify(events, null, 1));
        if (e.what !== "created") log(`deploy: ${e.what} ${e.kind} ${e.namespace ? `${e.namespace}/` : ""}${e.name} (+${((e.at - t0) / 1000).toFixed(1)} s)`);
    };
    const program = await deployStack(loopbackNode(cluster), { timeoutMs: awaitTimeoutS * 1000, record });
    for (const w of program.warnings) log(`deploy warning: ${w}`);
    const { outputs } = program;
    // The suite's own pods: not part of the program, applied after it (see testpods.ts).
    const tests = testObjects();
    for (const obj of tests) {
        cluster.upsert(obj);
        await cluster.applyToNode(obj);
    }
    cluster.save(outputs);
    for (const obj of tests.filter((o) => o.kind === "Deployment" && !ON_DEMAND.includes(o.metadata.name))) await cluster.startPod(obj.metadata.name);
    const objects = cluster.objects;
    log(
        `deployed ${objects.length} Kubernetes objects: ${cluster
            .workloads()
            .map((w) => `${w.kind}/${w.name}`)
            .join(", ")}`,
    );

    const ep = outputs.endpoints as Record<string, string>;
    const mta = serviceWorkload(cluster, ep.smtp);
    fs.writeFileSync(zone, [String(outputs.dnsZone).trim(), `${MAIL_HOSTNAME}.\t300\tIN\tA\t${cluster.podIp(mta.workload)}`, ...externalZone].join("\n"));
    await stopHelper(cluster, OUTSIDE.name);
    startOutside(cluster, outsideNetns, zone);

    const tlsSecret = objects.find((o) => o.kind === "Secret" && o.stringData?.["tls.crt"]);
    fs.writeFileSync(path.join(E2E_DIR, "ca.crt"), tlsSecret!.stringData!["tls.crt"]);
    const endpoints: Record<string, { host: string; port: number }> = {};
    for (const [name, value] of Object.entries(ep)) {
        const t = serviceWorkload(cluster, value);
        endpoints[name] = { host: cluster.podIp(t.workload), port: t.port };
    }
    // Every other Service port too (e.g. PROXY-only ports when the program enables them).
    for (const s of cluster.services()) {
        for (const p of s.ports) {
            const known = Object.values(endpoints).some((e) => e.host === cluster.podIp(p.workload.name) && e.port === p.target);
            if (!known) endpoints[`${s.name}-${p.name ?? p.port}`] = { host: cluster.podIp(p.workload.name), port: p.target };
        }
    }
    const stack = {
        note: `pods run the images built from images/ on the private bridge ${BRIDGE.name} (${BRIDGE.prefix}.0/24); the host reaches them directly`,
        substitution:
            "the couchdb pod runs couchmail's CouchDB-protocol test server (express-pouchdb, in memory, saved to its PVC on stop) instead of the CouchDB image",
        hostname: MAIL_HOSTNAME,
        domains: DOMAINS,
        externalTestDomain: "external.test",
        caFile: path.join(E2E_DIR, "ca.crt"),
        endpoints,
        pods: Object.fromEntries(cluster.workloads().map((w) => [w.name, cluster.podIp(w.name)])),
        dns: { host: CLUSTER_DNS.ip, port: 53 },
        clientNetns: outsideNetns,
        externalMx: { host: OUTSIDE.ip, port: 25, mailDir: path.join(E2E_DIR, "outside", "mail") },
        couchmailCli: `npx tsx tests/e2e/cli.ts exec dovecot couchmail -- couchmail user add postmaster@${DOMAINS[0]} --password-stdin`,
        logs: path.join(E2E_DIR, "logs"),
    };
    fs.writeFileSync(path.join(E2E_DIR, "stack.json"), JSON.stringify(stack, null, 2) + "\n");
    log(`stack up in ${((Date.now() - t0) / 1000).toFixed(0)} s; endpoints in ${path.relative(REPO, path.join(E2E_DIR, "stack.json"))}`);
    log(stack.substitution);
    return cluster;
}

function rmdirQuiet(dir: string): void {
    try {
        fs.rmdirSync(dir);
    } catch {
        // busy or gone
    }
}

/** Stops everything `up` started: the pods (through the kubelet, or what is left of them), helpers, network. */
async function down(): Promise<void> {
    if (!fs.existsSync(path.join(E2E_DIR, "objects.json"))) {
        log("nothing recorded in .e2e/; nothing to stop");
    } else {
        const cluster = Cluster.load();
        if (fs.existsSync(KUBELET_SOCKET)) await cluster.shutdownKubelet().catch((e) => log(`kubelet shutdown: ${e.message}`));
        for (const name of Object.keys(cluster.helperState().helpers)) await stopHelper(cluster, name);
        fs.rmSync(path.join(E2E_DIR, "objects.json"), { force: true });
    }
    // Whatever an interrupted run left: our runc containers, buildah containers, tmpfs emptyDirs, cgroups, netns.
    const ours = (n: string) => n.startsWith("mail-e2e-");
    for (const c of JSON.parse(runc(["list", "--format", "json"]).stdout || "[]") ?? []) if (ours(c.id)) runc(["delete", "--force", c.id]);
    for (const n of sh("buildah", ["containers", "--format", "{{.ContainerName}}"]).split("\n").filter(ours)) sh("buildah", ["rm", n], { allowFail: true });
    for (const line of fs.readFileSync("/proc/self/mountinfo", "utf8").split("\n").reverse()) {
        const mnt = line.split(" ")[4];
        if (mnt?.startsWith(path.join(E2E_DIR, "pods") + "/")) sh("umount", [mnt], { allowFail: true });
    }
    for (const ctl of fs.readdirSync("/sys/fs/cgroup")) {
        const root = path.join("/sys/fs/cgroup", ctl, CGROUP_PARENT);
        if (!fs.existsSync(root)) continue;
        for (const pod of fs.readdirSync(root, { withFileTypes: true }).filter((d) => d.isDirectory())) {
            for (const ctr of fs.readdirSync(path.join(root, pod.name), { withFileTypes: true }).filter((d) => d.isDirectory())) {
                rmdirQuiet(path.join(root, pod.name, ctr.name));
            }
            rmdirQuiet(path.join(root, pod.name));
        }
        rmdirQuiet(root);
    }
    for (const ns of fs.existsSync("/run/netns") ? fs.readdirSync("/run/netns") : []) if (ours(ns)) sh("ip", ["netns", "del", ns], { allowFail: true });
    sh("ip", ["link", "del", BRIDGE.name], { allowFail: true });
    for (const d of fs.existsSync("/dev/shm") ? fs.readdirSync("/dev/shm") : [])
        if (ours(d)) fs.rmSync(path.join("/dev/shm", d), { recursive: true, force: true });
    log("stack down");
}

// ---- footprint ------------------------------------------------------------------------------------------------

function pssKb(pid: number): number {
    try {
        const m = /^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"));
        return m ? Number(m[1]) : 0;
    } catch {
        return 0;
    }
}

/** Each pod's PSS: the processes in its containers' cgroups (exec'd probes included, as a cluster counts them). */
export function podMemory(cluster: Cluster): Record<string, number> {
    const out: Record<string, number> = {};
    for (const name of Object.keys(cluster.status())) {
        // The program's pods only: the suite's own (attacker, probes) are not part of the mail system.
        if (cluster.workload(name).template.metadata?.labels?.["app.kubernetes.io/part-of"] === "e2e-tests") continue;
        out[name] = cluster.podProcesses(name).reduce((kb, p) => kb + pssKb(p), 0);
    }
    return out;
}

function footprintTable(idle: Record<string, number>, peak: Record<string, number>): string {
    const mib = (kb: number) => (kb / 1024).toFixed(1);
    const rows = Object.keys(idle).map((p) => [p + (p === COUCHDB_SUBSTITUTE ? " (substitute)" : ""), mib(idle[p]), mib(peak[p] ?? idle[p])]);
    const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
    rows.push(["sum", mib(sum(idle)), mib(sum(peak))]);
    const w = [Math.max(...rows.map((r) => r[0].length), 3), 12, 12];
    const line = (r: string[]) => `${r[0].padEnd(w[0])}  ${r[1].padStart(w[1])}  ${r[2].padStart(w[2])}`;
    return [
        "Pod memory (PSS, MiB; processes in the pods' cgroups; peak = highest per pod during the suite)",
        line(["pod", "idle", "peak"]),
        ...rows.map(line),
    ].join("\n");
}

async function run(): Promise<number> {
    const t0 = Date.now();
    let code = 1;
    try {
        let cluster = await up();
        await new Promise((r) => setTimeout(r, 3000));
        const idle = podMemory(cluster);
        const peak: Record<string, number> = { ...idle };
        const sampler = setInterval(() => {
            cluster = Cluster.load();
            for (const [p, kb] of Object.entries(podMemory(cluster))) peak[p] = Math.max(peak[p] ?? 0, kb);
        }, 1000);
        const ts = Date.now();
        code = await new Promise<number>((resolve) => {
            const files = [
                "deploy.e2e.ts",
                "firstrun.e2e.ts",
                "jobs.e2e.ts",
                "mail.e2e.ts",
                "runtime.e2e.ts",
                "netpol.e2e.ts",
                "defects.e2e.ts",
                "doctor.e2e.ts",
                "backup.e2e.ts",
                "metrics.e2e.ts",
                "webmail.e2e.ts",
            ]
                .map((f) => path.join(__dirname, f))
                .filter((f) => fs.existsSync(f));
            const suite = spawn(process.execPath, [require.resolve("tsx/cli"), "--test", "--test-concurrency=1", ...files], { stdio: "inherit" });
            suite.on("exit", (c) => resolve(c ?? 1));
        });
        clearInterval(sampler);
        log(`suite ${code === 0 ? "passed" : "FAILED"} in ${((Date.now() - ts) / 1000).toFixed(0)} s`);
        console.log(footprintTable(idle, peak));
    } catch (e) {
        log(`e2e failed: ${e instanceof Error ? e.stack : String(e)}`);
        code = 1;
    } finally {
        await down();
    }
    log(`e2e wall time ${((Date.now() - t0) / 1000).toFixed(0)} s`);
    return code;
}

async function main(): Promise<number> {
    if (process.getuid?.() !== 0) throw new Error("the e2e runner needs root (buildah, network namespaces)");
    const [cmd, ...rest] = process.argv.slice(2);
    switch (cmd) {
        case "up":
            await up();
            return 0;
        case "down":
            await down();
            return 0;
        case "run":
            return run();
        case "exec": {
            const [pod, ctr, sep, ...argv] = rest;
            if (sep !== "--" || !argv.length) throw new Error("usage: exec POD CONTAINER -- ARGV…");
            const input = process.stdin.isTTY ? undefined : fs.readFileSync(0, "utf8");
            const r = Cluster.load().exec(pod, ctr, argv, { input });
            process.stdout.write(r.stdout);
            process.stderr.write(r.stderr);
            return r.code;
        }
        default:
            process.stderr.write("usage: cli.ts up|down|run|exec POD CONTAINER -- ARGV…\n");
            return 2;
    }
}

// The mail benchmark imports podMemory; run as a script, this is the CLI.
if (require.main === module) {
    main().then(
        (c) => process.exit(c),
        (e) => {
            log(e instanceof Error ? e.message : String(e));
            process.exit(1);
        },
    );
}
