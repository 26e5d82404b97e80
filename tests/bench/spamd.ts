// `npx tsx tests/bench/spamd.ts` (root; run it under the shared heavy lock): spamd's scan time per message, for one or
// more variants of our spamd image and its mail.cf, measured in one run with the variants interleaved round by round
// so that the load of a shared machine hits them alike. Each round starts each variant's spamd on an empty volume
// (fresh per-user Bayes databases, as for a new user), scans the same corpus once with one client (scan time per
// message) and once with two clients at once for one user (spamd's two children, Bayes autolearn writing the same
// database), and records the container's peak memory.
//   SPAMD_BENCH_VARIANTS: JSON list of {"name", "image", "cf"?: extra mail.cf lines}; default: the image images/build.sh
//     builds from the working tree, as it is.
//   SPAMD_BENCH_ROUNDS (default 3), SPAMD_BENCH_MESSAGES (corpus size, default 60).
//   SPAMD_BENCH_SIZES: comma-separated message sizes in bytes (e.g. "500000,2000000"): instead of the corpus, scans
//     two messages of each size at once (both children busy) and prints the scan time, spamd's peak memory, and
//     whether the result came back scored. SPAMD_BENCH_SHAPE: "attachment" (default) or "text" (see sizedMessage).
import { spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { SPAMD_LISTENERS, SpamAssassinSettings, renderSpamAssassin, spamdArgs } from "../../components/spamassassin/config";
import { Pod, buildImage, tempDir, writeConfigMapVolume } from "../kit/images";
import { spamassassinTestSettings } from "../kit/settings";
import { percentile } from "./measure";
import { corpus, sizedMessage } from "./spamd-corpus";

interface Variant {
    name: string;
    image: string;
    cf?: string[];
}

const positive = (name: string, fallback: number) => {
    const v = process.env[name];
    if (v === undefined || v === "") return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${v}"`);
    return n;
};
const ROUNDS = positive("SPAMD_BENCH_ROUNDS", 3);
const MESSAGES = positive("SPAMD_BENCH_MESSAGES", 60);
const SIZES = (process.env.SPAMD_BENCH_SIZES ?? "")
    .split(",")
    .filter(Boolean)
    .map((s) => {
        const n = Number(s);
        if (!Number.isInteger(n) || n < 1) throw new Error(`SPAMD_BENCH_SIZES lists sizes in bytes, got "${s}"`);
        return n;
    });
const SHAPE = (() => {
    const shape = process.env.SPAMD_BENCH_SHAPE || "attachment";
    if (shape !== "attachment" && shape !== "text") throw new Error(`SPAMD_BENCH_SHAPE is "attachment" or "text", got "${shape}"`);
    return shape;
})();
const settings: SpamAssassinSettings = { ...spamassassinTestSettings, clusterNetworks: ["10.0.0.0/8"] };

const log = (m: string) => process.stdout.write(`[spamd-bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

function variants(): Variant[] {
    const raw = process.env.SPAMD_BENCH_VARIANTS;
    if (!raw) return [{ name: "working tree", image: buildImage("spamassassin") }];
    const list = JSON.parse(raw) as Variant[];
    if (!Array.isArray(list) || list.some((v) => typeof v.name !== "string" || typeof v.image !== "string" || !(v.cf === undefined || Array.isArray(v.cf)))) {
        throw new Error('SPAMD_BENCH_VARIANTS is a JSON list of {"name": string, "image": string, "cf"?: string[]}');
    }
    return list;
}

/** Sums `measure(pid)` over every process in the pod's mount namespace except buildah's helpers. */
function overPod(pod: Pod, measure: (pid: string) => number): number {
    const pid = pod.appPid();
    if (!pid) return 0;
    const ns = fs.readlinkSync(`/proc/${pid}/ns/mnt`);
    let total = 0;
    for (const p of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
        try {
            if (fs.readlinkSync(`/proc/${p}/ns/mnt`) !== ns || /^(buildah|memfd:)/.test(fs.readFileSync(`/proc/${p}/comm`, "utf8"))) continue;
            total += measure(p);
        } catch {
            // exited meanwhile
        }
    }
    return total;
}

/** Proportional set size (KiB) of the pod. */
const podPssKiB = (pod: Pod) => overPod(pod, (p) => Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))?.[1] ?? 0));

/**
 * CPU seconds the pod's processes used so far, reaped children included (proc(5) /proc/pid/stat: utime, stime,
 * cutime, cstime in clock ticks, 100 a second on Linux): unlike wall time, a shared machine's load barely changes it.
 */
const podCpuSeconds = (pod: Pod) =>
    overPod(pod, (p) => {
        const stat = fs.readFileSync(`/proc/${p}/stat`, "utf8");
        const f = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
        return (Number(f[11]) + Number(f[12]) + Number(f[13]) + Number(f[14])) / 100;
    });

/**
 * The SPAMC/1.5 PROCESS exchange spamc makes (spamd(8) "PROTOCOL"; spamassassin spamc/libspamc.c), from `clients`
 * threads that share the message files; prints per message [seconds, scored (an X-Spam-Status came back)].
 */
const CLIENT = `import socket, sys, json, threading, time
port, user, clients = int(sys.argv[1]), sys.argv[2], int(sys.argv[3])
files = sys.argv[4:]
results = [None] * len(files)
lock = threading.Lock()
todo = list(range(len(files)))
def scan(i):
    body = open(files[i], "rb").read()
    t0 = time.monotonic()
    s = socket.create_connection(("127.0.0.1", port))
    s.sendall(b"PROCESS SPAMC/1.5\\r\\nContent-length: %d\\r\\nUser: %s\\r\\n\\r\\n" % (len(body), user.encode()) + body)
    s.shutdown(socket.SHUT_WR)
    out = b""
    while True:
        d = s.recv(65536)
        if not d: break
        out += d
    s.close()
    results[i] = [time.monotonic() - t0, b"X-Spam-Status:" in out]
def worker():
    while True:
        with lock:
            if not todo: return
            i = todo.pop(0)
        scan(i)
ts = [threading.Thread(target=worker) for _ in range(clients)]
t0 = time.monotonic()
[t.start() for t in ts]; [t.join() for t in ts]
print(json.dumps({"wall": time.monotonic() - t0, "scans": results}))`;

interface Pass {
    wall: number;
    scans: [number, boolean][];
}

/** Runs the client in the pod's network namespace without blocking the memory polling. */
function client(pod: Pod, user: string, clients: number, files: string[]): Promise<Pass> {
    return new Promise((resolve, reject) => {
        const p = spawn("nsenter", [
            `--net=/run/netns/${pod.netns}`,
            "python3",
            "-c",
            CLIENT,
            String(SPAMD_LISTENERS.spamd.port),
            user,
            String(clients),
            ...files,
        ]);
        let out = "";
        let err = "";
        p.stdout.on("data", (d) => (out += d));
        p.stderr.on("data", (d) => (err += d));
        p.on("exit", (code) =>
            code === 0 ? resolve(JSON.parse(out) as Pass) : reject(new Error(`spamd client failed (${code}): ${err}\n${pod.logs.slice(-3000)}`)),
        );
    });
}

/** spamd's own account of each scan: `scantime=S` on its result lines. */
const scanTimes = (logs: string) => [...logs.matchAll(/spamd: result: .*?scantime=([\d.]+)/g)].map((m) => Number(m[1]));

async function startSpamd(variant: Variant, dir: string): Promise<Pod> {
    for (const name of ["spamd", "spamd-run"]) {
        fs.mkdirSync(path.join(dir, name));
        fs.chownSync(path.join(dir, name), 5001, 5001);
    }
    const files = renderSpamAssassin(settings);
    writeConfigMapVolume(path.join(dir, "sa"), { "mail.cf": files["mail.cf"] + (variant.cf ?? []).map((l) => `${l}\n`).join("") });
    const pod = new Pod(variant.image, ["/usr/local/bin/spamd-entrypoint", ...spamdArgs(settings)], {
        mounts: [
            { host: path.join(dir, "sa"), ctr: "/etc/mail/defaults/spamassassin" },
            { host: path.join(dir, "spamd"), ctr: settings.dataDir, ro: false },
            { host: path.join(dir, "spamd-run"), ctr: "/run/mail", ro: false },
        ],
    });
    await pod.waitForLog(/spamd: server started on .*:10783/, 180_000);
    return pod;
}

interface Sample {
    /** CPU seconds per message of the serial pass. */
    cpuPerMessage: number;
    serialWall: number[];
    serialScan: number[];
    pairMsgPerS: number;
    peakKiB: number;
    unscored: number;
}

async function measure(variant: Variant, files: string[], warmup: string[]): Promise<Sample> {
    const dir = tempDir("spamd-bench");
    const pod = await startSpamd(variant, dir);
    const peak = { kib: 0 };
    const poll = setInterval(() => (peak.kib = Math.max(peak.kib, podPssKiB(pod))), 200);
    try {
        await client(pod, "warmup@example.test", 1, warmup);
        const mark = pod.logs.length;
        const cpu0 = podCpuSeconds(pod);
        const serial = await client(pod, "alice@example.test", 1, files);
        const cpuPerMessage = (podCpuSeconds(pod) - cpu0) / files.length;
        const serialScan = scanTimes(pod.logs.slice(mark));
        const pair = await client(pod, "bob@example.test", 2, files);
        return {
            cpuPerMessage,
            serialWall: serial.scans.map((s) => s[0]),
            serialScan,
            pairMsgPerS: files.length / pair.wall,
            peakKiB: peak.kib,
            unscored: [...serial.scans, ...pair.scans].filter((s) => !s[1]).length,
        };
    } finally {
        clearInterval(poll);
        if (process.env.SPAMD_BENCH_LOGS) fs.writeFileSync(process.env.SPAMD_BENCH_LOGS, pod.logs);
        await pod.remove();
        fs.rmSync(dir, { recursive: true, force: true });
    }
}

async function corpusRun(list: Variant[]): Promise<void> {
    const dir = tempDir("spamd-corpus");
    const write = (name: string, text: string) => {
        const f = path.join(dir, name);
        fs.writeFileSync(f, text);
        return f;
    };
    const files = corpus(MESSAGES).map((m, i) => write(`m${i}.eml`, m));
    const warmup = corpus(3, 99).map((m, i) => write(`w${i}.eml`, m));
    const bytes = files.reduce((n, f) => n + fs.statSync(f).size, 0);
    log(`corpus: ${files.length} messages, ${(bytes / files.length / 1024).toFixed(1)} KiB average; ${ROUNDS} rounds × ${list.length} variants`);
    const samples = new Map<string, Sample[]>(list.map((v) => [v.name, []]));
    for (let round = 1; round <= ROUNDS; round++) {
        for (const v of list) {
            const load = fs.readFileSync("/proc/loadavg", "utf8").split(" ")[0];
            const s = await measure(v, files, warmup);
            samples.get(v.name)!.push(s);
            log(
                `round ${round} ${v.name} (load ${load}): cpu ${s.cpuPerMessage.toFixed(3)} s/msg; scantime p50 ${percentile(s.serialScan, 50).toFixed(3)} s, mean ${mean(s.serialScan).toFixed(3)} s; ` +
                    `wall p50 ${percentile(s.serialWall, 50).toFixed(3)} s; 2 clients ${s.pairMsgPerS.toFixed(1)} msg/s; peak ${(s.peakKiB / 1024).toFixed(0)} MiB; unscored ${s.unscored}`,
            );
        }
    }
    fs.rmSync(dir, { recursive: true, force: true });
    const rows = list.map((v) => {
        const all = samples.get(v.name)!;
        const scans = all.flatMap((s) => s.serialScan);
        const walls = all.flatMap((s) => s.serialWall);
        return [
            v.name,
            mean(all.map((s) => s.cpuPerMessage)).toFixed(3),
            percentile(scans, 50).toFixed(3),
            percentile(scans, 95).toFixed(3),
            mean(scans).toFixed(3),
            percentile(walls, 50).toFixed(3),
            mean(all.map((s) => s.pairMsgPerS)).toFixed(1),
            (Math.max(...all.map((s) => s.peakKiB)) / 1024).toFixed(0),
            String(all.reduce((n, s) => n + s.unscored, 0)),
        ];
    });
    table(["variant", "cpu s/msg", "scantime p50 s", "p95 s", "mean s", "wall p50 s", "2 clients msg/s", "peak PSS MiB", "unscored"], rows);
}

async function sizeRun(variant: Variant): Promise<void> {
    const rows: string[][] = [];
    for (const size of SIZES) {
        const dir = tempDir("spamd-size");
        const files = [0, 1].map((i) => {
            const f = path.join(dir, `big${i}.eml`);
            fs.writeFileSync(f, sizedMessage(size, i, SHAPE));
            return f;
        });
        fs.mkdirSync(path.join(dir, "pod"));
        const pod = await startSpamd(variant, path.join(dir, "pod"));
        const peak = { kib: podPssKiB(pod) };
        const rest = peak.kib;
        const poll = setInterval(() => (peak.kib = Math.max(peak.kib, podPssKiB(pod))), 100);
        try {
            const pass = await client(pod, "alice@example.test", 2, files);
            rows.push([
                String(size),
                pass.scans.map((s) => s[0].toFixed(2)).join(" / "),
                (rest / 1024).toFixed(0),
                (peak.kib / 1024).toFixed(0),
                pass.scans.every((s) => s[1]) ? "yes" : "NO",
            ]);
            log(`size ${size}: ${rows[rows.length - 1].join(", ")}`);
        } finally {
            clearInterval(poll);
            await pod.remove();
            fs.rmSync(dir, { recursive: true, force: true });
        }
    }
    table(["bytes", "scan s (2 at once)", "PSS at rest MiB", "peak PSS MiB", "scored"], rows);
}

const mean = (xs: number[]) => (xs.length ? xs.reduce((a, b) => a + b, 0) / xs.length : NaN);

function table(header: string[], rows: string[][]): void {
    const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
    for (const r of [header, ...rows]) process.stdout.write(r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ") + "\n");
}

async function main(): Promise<void> {
    const list = variants();
    if (SIZES.length) await sizeRun(list[0]);
    else await corpusRun(list);
}

main().catch((e: unknown) => {
    process.stderr.write(`${e instanceof Error ? e.stack : String(e)}\n`);
    process.exit(1);
});
