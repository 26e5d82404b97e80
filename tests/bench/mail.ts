// `npm run bench:mail` (root; run it under the shared heavy lock): the end-to-end mail benchmark on the loopback e2e
// stack. Deploys the stack (tests/e2e/cli.ts up) with production queue timers, sends bursts from the pseudo-internet —
// one mailbox and many, inbound 25 and submission 587/465, small and 1 MB messages — and waits until each accepted
// message is in its Maildir; prints accepted and delivered msg/s, p50/p95 latency, 4xx/deferrals per hop, lost and
// duplicated, each pod's peak memory against its limit; then the same with spam scanning off. Always ends with
// `cli.ts down`.
//   BENCH_MESSAGES (small messages per burst, default 40), BENCH_LARGE (1 MB messages per burst, default 8),
//   BENCH_SESSIONS (parallel SMTP sessions on 25, default 10), BENCH_SUBMISSION_SESSIONS (on 587/465, default 3), BENCH_PHASES ("on,off": spam scanning on, then off),
//   BENCH_STACK_CONFIG (a JSON object of stack config keys for a tuning experiment, e.g. {"spamMaxChildren":4}).
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { podMemory } from "../e2e/cli";
import { Cluster } from "../e2e/cluster";
import { E2E_DIR, OUTSIDE, REPO } from "../e2e/layout";
import { quantityBytes } from "../e2e/volumes";
import { burstTable, countHopErrors, Delivery, memoryTable, PhaseMemory, ratioTable, Row, summarize } from "./measure";
import type { SendJob, SendResult } from "./send";

const count = (name: string, fallback: number) => {
    const v = process.env[name];
    if (v === undefined || v === "") return fallback;
    const n = Number(v);
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name} must be a positive integer, got "${v}"`);
    return n;
};
const SMALL = count("BENCH_MESSAGES", 40);
const LARGE = count("BENCH_LARGE", 8);
const SESSIONS = count("BENCH_SESSIONS", 10);
/** A mail client's parallel connections: more first logins at once are throttled as guesses (couchmail/src/policy.ts). */
const SUBMISSION_SESSIONS = count("BENCH_SUBMISSION_SESSIONS", 3);
const PHASES = (process.env.BENCH_PHASES ?? "on,off").split(",").map((p) => {
    if (p !== "on" && p !== "off") throw new Error(`BENCH_PHASES lists "on" and/or "off" (spam scanning), got "${p}"`);
    return p === "on";
});
const EXPERIMENT = JSON.parse(process.env.BENCH_STACK_CONFIG || "{}") as Record<string, unknown>;
/** A burst's wait ends when nothing new arrived for this long (production retries a deferral after 300 s or more). */
const QUIET_MS = 60_000;
/** How long after the last burst each pod's memory at rest is taken. */
const REST_AFTER_MS = 120_000;
const DOMAIN = "example.test";
const MAILBOXES = 10;

const log = (m: string) => process.stdout.write(`[bench ${new Date().toISOString().slice(11, 19)}] ${m}\n`);

interface Scenario {
    name: string;
    port: "smtp" | "submission" | "submissions";
    mailboxes: "one" | "many";
    large: boolean;
}
const SCENARIOS: Scenario[] = [
    { name: "25 one small", port: "smtp", mailboxes: "one", large: false },
    { name: "25 many small", port: "smtp", mailboxes: "many", large: false },
    { name: "25 one 1MB", port: "smtp", mailboxes: "one", large: true },
    { name: "587 many small", port: "submission", mailboxes: "many", large: false },
    { name: "465 one small", port: "submissions", mailboxes: "one", large: false },
    { name: "587 many 1MB", port: "submission", mailboxes: "many", large: true },
];

interface Stack {
    hostname: string;
    caFile: string;
    endpoints: Record<string, { host: string; port: number }>;
    clientNetns: string;
}

function cli(args: string[], env: NodeJS.ProcessEnv = {}): number {
    const r = spawnSync(process.execPath, [require.resolve("tsx/cli"), path.join(REPO, "tests/e2e/cli.ts"), ...args], {
        stdio: "inherit",
        env: { ...process.env, ...env },
    });
    return r.status ?? 1;
}

/** The couchmail CLI in the Dovecot pod (kubectl exec); an exec that died without a word (-1: timed out) is retried. */
function couchmail(cluster: Cluster, args: string[], input?: string): void {
    for (let attempt = 1; ; attempt++) {
        const r = cluster.exec("dovecot", "couchmail", ["couchmail", ...args], { input, timeoutMs: 60_000 });
        if (r.code === 0 || /already exists/.test(r.stdout + r.stderr)) return;
        if (attempt === 3 || r.stdout + r.stderr !== "") throw new Error(`couchmail ${args.join(" ")}: exit ${r.code}: ${r.stdout}${r.stderr}`);
    }
}

/** A message with its id in a header; the 1 MB one is text lines, as a large mail's base64 attachment looks. */
function message(id: string, from: string, to: string, large: boolean): string {
    const line = "Lorem ipsum dolor sit amet, consectetur adipiscing elit, sed do eiusmod tempor incididunt ut labore";
    const body = large
        ? Array.from({ length: Math.ceil(2 ** 20 / (line.length + 2)) }, (_, i) => `${i} ${line}`).join("\n")
        : `Hello,\n\n${line}.\n${line}.\n\n-- \nbench\n`;
    return [
        `From: <${from}>`,
        `To: <${to}>`,
        `Subject: bench ${id}`,
        `Date: ${new Date().toUTCString()}`,
        `Message-ID: <${id}@bench.external.test>`,
        `X-Bench-Id: ${id}`,
        "MIME-Version: 1.0",
        "Content-Type: text/plain; charset=us-ascii",
        "",
        body,
    ].join("\n");
}

function mailRoot(): string {
    const pvc = path.join(E2E_DIR, "pvc");
    const claim = fs.readdirSync(pvc).find((d) => d.startsWith("mail-dovecot"));
    if (!claim) throw new Error(`no Dovecot mail claim under ${pvc}`);
    return path.join(pvc, claim);
}

/** Every Maildir file of the bench's mailboxes that carries an X-Bench-Id, first sighting kept across polls. */
class MaildirWatcher {
    private seen = new Map<string, Delivery>();
    constructor(
        private root: string,
        private users: string[],
    ) {}

    poll(): void {
        const now = Date.now();
        for (const user of this.users) {
            const maildir = path.join(this.root, DOMAIN, user, "Maildir");
            const folders = [
                maildir,
                ...(fs.existsSync(maildir)
                    ? fs
                          .readdirSync(maildir)
                          .filter((f) => f.startsWith("."))
                          .map((f) => path.join(maildir, f))
                    : []),
            ];
            for (const folder of folders) {
                for (const sub of ["new", "cur"]) {
                    const dir = path.join(folder, sub);
                    if (!fs.existsSync(dir)) continue;
                    for (const f of fs.readdirSync(dir)) {
                        const unique = `${user}/${f.split(":")[0]}`;
                        if (this.seen.has(unique)) continue;
                        let head: string;
                        try {
                            const fd = fs.openSync(path.join(dir, f), "r");
                            const buf = Buffer.alloc(8192);
                            head = buf.subarray(0, fs.readSync(fd, buf, 0, buf.length, 0)).toString("latin1");
                            fs.closeSync(fd);
                        } catch {
                            continue; // moved between new/ and cur/ while listed: the next poll sees it
                        }
                        const header = head.split(/\r?\n\r?\n/)[0];
                        const id = /^X-Bench-Id: (\S+)/m.exec(header)?.[1];
                        if (id) this.seen.set(unique, { id, file: unique, seenAt: now, scored: /^X-Spam-Status:/m.test(header) });
                    }
                }
            }
        }
    }

    deliveries(ids: Set<string>): Delivery[] {
        return [...this.seen.values()].filter((d) => ids.has(d.id));
    }
}

function sendBurst(stack: Stack, job: SendJob): Promise<SendResult[]> {
    return new Promise((resolve, reject) => {
        const p = spawn("nsenter", [`--net=/run/netns/${stack.clientNetns}`, process.execPath, require.resolve("tsx/cli"), path.join(__dirname, "send.ts")], {
            stdio: ["pipe", "pipe", "inherit"],
        });
        let out = "";
        p.stdout.setEncoding("utf8").on("data", (d: string) => (out += d));
        p.on("error", reject);
        p.on("exit", (code) =>
            code === 0
                ? resolve(
                      out
                          .trim()
                          .split("\n")
                          .filter(Boolean)
                          .map((l) => JSON.parse(l) as SendResult),
                  )
                : reject(new Error(`send.ts exited ${code}`)),
        );
        p.stdin.end(JSON.stringify(job));
    });
}

const logFile = (name: string) => path.join(E2E_DIR, "logs", name);
const size = (f: string) => (fs.existsSync(f) ? fs.statSync(f).size : 0);
function readFrom(f: string, offset: number): string {
    if (!fs.existsSync(f)) return "";
    const fd = fs.openSync(f, "r");
    const buf = Buffer.alloc(Math.max(0, fs.statSync(f).size - offset));
    fs.readSync(fd, buf, 0, buf.length, offset);
    fs.closeSync(fd);
    return buf.toString("utf8");
}

async function burst(stack: Stack, watcher: MaildirWatcher, users: Record<string, string>, sc: Scenario, spam: boolean, tag: string): Promise<Row> {
    const logs = ["postfix.postfix.log", "dovecot.dovecot.log", "spamassassin.spamd.log"].map(logFile);
    const offsets = logs.map(size);
    const n = sc.large ? LARGE : SMALL;
    const names = Object.keys(users);
    const submitter = names[0];
    const from = sc.port === "smtp" ? "sender@external.test" : `${submitter}@${DOMAIN}`;
    const messages = Array.from({ length: n }, (_, i) => {
        const id = `${tag}-${sc.name.replace(/ /g, "_")}-${i}`;
        const to = `${sc.mailboxes === "one" ? names[0] : names[i % names.length]}@${DOMAIN}`;
        return { id, to, body: message(id, from, to, sc.large) };
    });
    const ep = stack.endpoints[sc.port];
    // Watched while the burst is sent too: a message's latency must not include the sender's own wait.
    const watching = setInterval(() => watcher.poll(), 200);
    const sends = await sendBurst(stack, {
        host: ep.host,
        port: ep.port,
        security: sc.port === "smtp" ? "plain" : sc.port === "submission" ? "starttls" : "implicit",
        auth: sc.port === "smtp" ? undefined : { user: `${submitter}@${DOMAIN}`, password: users[submitter] },
        tlsName: stack.hostname,
        caFile: stack.caFile,
        from,
        sessions: sc.port === "smtp" ? SESSIONS : SUBMISSION_SESSIONS,
        messages,
    }).finally(() => clearInterval(watching));
    const ids = new Set(sends.filter((s) => s.accepted).map((s) => s.id));
    let last = Date.now();
    let delivered = 0;
    while (delivered < ids.size && Date.now() - last < QUIET_MS) {
        await new Promise((r) => setTimeout(r, 200));
        watcher.poll();
        const now = new Set(watcher.deliveries(ids).map((d) => d.id)).size;
        if (now > delivered) last = Date.now();
        delivered = now;
    }
    const [postfix, dovecot, spamd] = logs.map((f, i) => readFrom(f, offsets[i]));
    const row: Row = {
        scenario: sc.name,
        spam,
        summary: summarize(sends, watcher.deliveries(new Set(messages.map((m) => m.id)))),
        hops: countHopErrors(postfix, dovecot, spamd),
    };
    const refusals = sends
        .filter((s) => !s.accepted)
        .slice(0, 3)
        .map((s) => s.reply.split("\n").pop());
    log(
        `${sc.name}, spam ${spam ? "on" : "off"}: ${row.summary.accepted}/${n} accepted, ${row.summary.delivered} delivered, e2e ${row.summary.deliveredPerSecond.toFixed(2)} msg/s, p50 ${row.summary.p50.toFixed(2)} s (load ${os.loadavg()[0].toFixed(2)})${refusals.length ? `; refused e.g. ${refusals.join(" | ")}` : ""}`,
    );
    return row;
}

function podLimits(cluster: Cluster, pods: string[]): Record<string, number | undefined> {
    const out: Record<string, number | undefined> = {};
    for (const pod of pods) {
        const containers = [
            ...(cluster.workload(pod).template.spec.initContainers ?? []).filter((c: { restartPolicy?: string }) => c.restartPolicy === "Always"),
            ...cluster.workload(pod).template.spec.containers,
        ];
        out[pod] = containers.every((c: { resources?: { limits?: { memory?: string } } }) => c.resources?.limits?.memory)
            ? containers.reduce((sum: number, c: { resources: { limits: { memory: string } } }) => sum + quantityBytes(c.resources.limits.memory), 0)
            : undefined;
    }
    return out;
}

async function phase(spam: boolean, tag: string, rows: Row[], memory: Record<string, PhaseMemory>, limits: Record<string, number | undefined>): Promise<void> {
    log(`spam scanning ${spam ? "on" : "off"}: deploying the e2e stack with production queue timers`);
    // Production timers: the stack's own defaults, not the e2e's 5–10 s retries. The pseudo-internet's address is
    // whitelisted at postgrey (as a known MTA is) so the burst measures delivery, not the greylisting delay.
    const config = { postfixMainCf: [], spamEnabled: spam, greylistWhitelistClients: [OUTSIDE.ip], ...EXPERIMENT };
    if (cli(["up"], { E2E_STACK_CONFIG: JSON.stringify(config) }) !== 0) throw new Error("e2e up failed");
    const stack = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "stack.json"), "utf8")) as Stack;
    const cluster = Cluster.load();
    couchmail(cluster, ["domain", "add", DOMAIN]);
    const users: Record<string, string> = {};
    for (let i = 0; i < MAILBOXES; i++) {
        users[`bench${i}`] = `pw-${Math.random().toString(36).slice(2)}-${i}`;
        couchmail(cluster, ["user", "add", `bench${i}@${DOMAIN}`, "--password-stdin"], users[`bench${i}`] + "\n");
    }
    const key = `spam ${spam ? "on" : "off"}`;
    const peak = podMemory(cluster);
    memory[key] = { peak, rest: {} };
    Object.assign(limits, podLimits(cluster, Object.keys(peak)));
    const sampler = setInterval(() => {
        for (const [pod, kb] of Object.entries(podMemory(Cluster.load()))) peak[pod] = Math.max(peak[pod] ?? 0, kb);
    }, 1000);
    try {
        const watcher = new MaildirWatcher(mailRoot(), Object.keys(users));
        for (const sc of SCENARIOS) rows.push(await burst(stack, watcher, users, sc, spam, `${tag}${spam ? "on" : "off"}`));
    } finally {
        clearInterval(sampler);
    }
    // At rest: once the processes a burst started went idle and exited (Postfix's max_idle 100 s, Dovecot's
    // idle_kill 60 s, spamd's spare children), what stays is the pod's steady state, requests are sized from it.
    await new Promise((r) => setTimeout(r, REST_AFTER_MS));
    memory[key].rest = podMemory(Cluster.load());
}

async function main(): Promise<number> {
    if (process.getuid?.() !== 0) throw new Error("the mail benchmark needs root (it runs the e2e stack)");
    // Interrupted, the stack still goes down: it holds the machine's e2e bridge and state.
    for (const signal of ["SIGINT", "SIGTERM"] as const) {
        process.once(signal, () => {
            log(`${signal}: taking the stack down`);
            cli(["down"]);
            process.exit(130);
        });
    }
    const t0 = Date.now();
    const tag = Date.now().toString(36);
    const rows: Row[] = [];
    const memory: Record<string, PhaseMemory> = {};
    const limits: Record<string, number | undefined> = {};
    let code = 0;
    for (const spam of PHASES) {
        try {
            await phase(spam, tag, rows, memory, limits);
        } catch (e) {
            log(`spam ${spam ? "on" : "off"} failed: ${e instanceof Error ? e.stack : String(e)}`);
            code = 1;
        } finally {
            cli(["down"]);
        }
    }
    const uptime = fs.readFileSync("/proc/loadavg", "utf8").split(" ").slice(0, 3).join(" ");
    console.log(
        `\nMail benchmark (${Object.keys(EXPERIMENT).length ? `experiment ${JSON.stringify(EXPERIMENT)}; ` : ""}${SMALL} small / ${LARGE} 1 MB messages per burst, ${SESSIONS}/${SUBMISSION_SESSIONS} sessions on 25/submission; ${os.cpus().length} CPUs, load ${uptime} at the end; ${((Date.now() - t0) / 1000).toFixed(0)} s)`,
    );
    console.log(burstTable(rows));
    if (PHASES.length > 1) console.log(`\n${ratioTable(rows)}`);
    console.log(`\n${memoryTable(memory, limits)}`);
    if (rows.some((r) => r.summary.lost || r.summary.duplicated)) code = 1;
    return code;
}

main().then(
    (c) => process.exit(c),
    (e) => {
        log(e instanceof Error ? e.message : String(e));
        process.exit(1);
    },
);
