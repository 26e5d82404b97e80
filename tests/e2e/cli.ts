// The e2e stack runner: `up`, `down`, `run` (up, suite, footprint, down) and `exec` (like kubectl exec).
//   npx tsx tests/e2e/cli.ts up|down|run
//   npx tsx tests/e2e/cli.ts exec POD CONTAINER -- ARGV…
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { appProcesses, alive, BRIDGE, Cluster, COUCHDB_SUBSTITUTE, descendants, E2E_DIR, leftoverContainers, OUTSIDE, REPO } from "./pods";
import { DOMAINS, MAIL_HOSTNAME, runStackProgram } from "./program";

const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);

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

async function up(): Promise<Cluster> {
    const t0 = Date.now();
    if (fs.existsSync(path.join(E2E_DIR, "objects.json"))) await down();
    for (const d of ["pods", "pvc", "outside", "logs"]) fs.rmSync(path.join(E2E_DIR, d), { recursive: true, force: true });
    fs.mkdirSync(E2E_DIR, { recursive: true });

    log("running the Pulumi program under mocks (e2e stack config)");
    const { objects, outputs } = await runStackProgram();
    fs.writeFileSync(path.join(E2E_DIR, "objects.json"), JSON.stringify({ objects, outputs }, null, 2), { mode: 0o600 });
    const cluster = new Cluster(objects);
    log(`program declared ${objects.length} Kubernetes objects: ${cluster.workloads().map((w) => `${w.kind}/${w.name}`).join(", ")}`);

    // Our images are `mail/<svc>:dev` (imagesRegistry/imagesTag defaults): build exactly those the pods reference.
    const images = new Set<string>();
    for (const w of cluster.workloads()) {
        for (const c of [...(w.template.spec.initContainers ?? []), ...w.template.spec.containers]) {
            const m = /^mail\/([a-z0-9-]+):dev$/.exec(c.image);
            if (m) images.add(m[1]);
            else if (w.name !== COUCHDB_SUBSTITUTE) throw new Error(`pod ${w.name} references ${c.image}, which is not built from images/`);
        }
    }
    const tb = Date.now();
    log(`building images: ${[...images].join(" ")}`);
    const build = spawnSync(path.join(REPO, "images/build.sh"), [...images], { stdio: "inherit" });
    if (build.status !== 0) throw new Error("images/build.sh failed");
    log(`images built in ${((Date.now() - tb) / 1000).toFixed(0)} s`);

    cluster.createBridge();
    const ep = outputs.endpoints as Record<string, string>;
    const mta = serviceWorkload(cluster, ep.smtp);
    const zone = path.join(E2E_DIR, "outside", "zone");
    fs.mkdirSync(path.dirname(zone), { recursive: true });
    fs.writeFileSync(zone, [
        String(outputs.dnsZone).trim(),
        `${MAIL_HOSTNAME}.\t300\tIN\tA\t${cluster.podIp(mta.workload)}`,
        "external.test.\t300\tIN\tMX\t10 mx.external.test.",
        `mx.external.test.\t300\tIN\tA\t${OUTSIDE.ip}`,
        "",
    ].join("\n"));
    cluster.startHelper(OUTSIDE.name, OUTSIDE.ip, ["/usr/bin/python3", path.join(__dirname, "outside.py"), OUTSIDE.ip, zone, path.join(E2E_DIR, "outside", "mail")]);

    for (const w of cluster.workloads()) await cluster.startPod(w.name);

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
        substitution: "the couchdb pod runs couchmail's CouchDB-protocol test server (express-pouchdb, in memory, saved to its PVC on stop) instead of the CouchDB image",
        hostname: MAIL_HOSTNAME,
        domains: DOMAINS,
        externalTestDomain: "external.test",
        caFile: path.join(E2E_DIR, "ca.crt"),
        endpoints,
        pods: Object.fromEntries(cluster.workloads().map((w) => [w.name, cluster.podIp(w.name)])),
        dns: { host: OUTSIDE.ip, port: 53 },
        externalMx: { host: OUTSIDE.ip, port: 25, mailDir: path.join(E2E_DIR, "outside", "mail") },
        couchmailCli: `npx tsx tests/e2e/cli.ts exec dovecot couchmail -- couchmail user add postmaster@${DOMAINS[0]} --password-stdin`,
        logs: path.join(E2E_DIR, "logs"),
    };
    fs.writeFileSync(path.join(E2E_DIR, "stack.json"), JSON.stringify(stack, null, 2) + "\n");
    log(`stack up in ${((Date.now() - t0) / 1000).toFixed(0)} s; endpoints in ${path.relative(REPO, path.join(E2E_DIR, "stack.json"))}`);
    log(stack.substitution);
    return cluster;
}

async function down(): Promise<void> {
    if (!fs.existsSync(path.join(E2E_DIR, "objects.json"))) {
        log("nothing recorded in .e2e/; nothing to stop");
    } else {
        await Cluster.load().down();
        fs.rmSync(path.join(E2E_DIR, "objects.json"), { force: true });
    }
    for (const name of leftoverContainers()) spawnSync("buildah", ["rm", name], { stdio: "ignore" });
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

/** Each pod's PSS: its containers' own processes (buildah's helpers excluded). */
function podMemory(cluster: Cluster): Record<string, number> {
    const out: Record<string, number> = {};
    for (const [name, pod] of Object.entries(cluster.state.pods)) {
        let kb = 0;
        for (const c of Object.values(pod.containers)) {
            const pids = c.buildahName ? appProcesses(c.leader) : alive(c.leader) ? [c.leader, ...descendants(c.leader)] : [];
            for (const p of pids) kb += pssKb(p);
        }
        out[name] = kb;
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
    return ["Pod memory (PSS, MiB; buildah helpers excluded; peak = highest per pod during the suite)",
        line(["pod", "idle", "peak"]), ...rows.map(line)].join("\n");
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
            const suite = spawn(process.execPath, [require.resolve("tsx/cli"), "--test", "--test-concurrency=1", path.join(__dirname, "mail.e2e.ts")], { stdio: "inherit" });
            suite.on("exit", (c) => resolve(c ?? 1));
        });
        clearInterval(sampler);
        log(`suite ${code === 0 ? "passed" : "FAILED"} in ${((Date.now() - ts) / 1000).toFixed(0)} s`);
        console.log(footprintTable(idle, peak));
    } catch (e) {
        log(`e2e failed: ${e instanceof Error ? e.stack : e}`);
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

main().then((c) => process.exit(c), (e) => {
    log(e instanceof Error ? e.message : String(e));
    process.exit(1);
});
