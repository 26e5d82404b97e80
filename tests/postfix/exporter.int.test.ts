// Real Postfix (our image) and Debian's postfix exporter (our image) as one pod: Postfix logs to a file on a shared
// folder, the exporter follows it and reads the queue through the showq socket on a read-only view of the queue.
// One message is delivered (LMTP), one rejected (unknown user), one deferred (its LMTP target is down); the scrape
// must show each of those, and the container log must keep showing Postfix's lines, also after the
// entrypoint empties the file at its size bound.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { POSTFIX_LOG, PostfixSettings, renderPostfix } from "../../components/postfix/config";
import { POSTFIX_EXPORTER_METRICS, POSTFIX_EXPORTER_PORT, postfixExporterSidecar } from "../../components/postfix/exporter";
import { Mount, Pod, buildImage, selfSignedCert, tempDir, writeConfigMapVolume } from "../kit/images";
import { postfixTestSettings } from "../kit/settings";

jest.setTimeout(180_000);

const LMTP_PORT = 2424;
const DOWN_LMTP_PORT = 2525;
// The entrypoint empties the log file past this many bytes (checked every second here): the test pushes it over once.
const LOG_LIMIT_BYTES = 65536;

// No DNS and no couchmail in this pod: static tables stand in for couchmail's, the sender's domain is not looked up,
// and deferred.test goes to an LMTP port nobody listens on.
const settings: PostfixSettings = {
    ...postfixTestSettings,
    logToFile: true,
    dnsbls: [],
    milters: [],
    spf: false,
    lmtpEndpoint: `inet:127.0.0.1:${LMTP_PORT}`,
    mainCfOverrides: {
        virtual_mailbox_domains: "example.test, deferred.test",
        virtual_mailbox_maps: "inline:{ { user@example.test = ok }, { user@deferred.test = ok } }",
        virtual_alias_maps: "",
        transport_maps: `inline:{ { deferred.test = lmtp:inet:127.0.0.1:${DOWN_LMTP_PORT} } }`,
        smtpd_sender_restrictions: "reject_non_fqdn_sender",
    },
};

// A minimal LMTP server after RFC 2033 (https://www.rfc-editor.org/rfc/rfc2033): LHLO instead of EHLO, and after the
// final "." one reply per accepted recipient. It prints one line per delivered recipient.
const LMTP_SERVER = `
const net = require("net");
net.createServer((s) => {
    let buf = "", inData = false, rcpts = [];
    s.on("error", () => {});
    s.write("220 lmtp.test LMTP ready\\r\\n");
    s.on("data", (d) => {
        buf += d.toString("latin1");
        for (let i; (i = buf.indexOf("\\r\\n")) >= 0; ) {
            const line = buf.slice(0, i);
            buf = buf.slice(i + 2);
            if (inData) {
                if (line !== ".") continue;
                inData = false;
                for (const r of rcpts) { s.write("250 2.0.0 <" + r + "> delivered\\r\\n"); console.log("delivered " + r); }
                rcpts = [];
                continue;
            }
            const verb = line.slice(0, 4).toUpperCase();
            if (verb === "LHLO") s.write("250-lmtp.test\\r\\n250-PIPELINING\\r\\n250 ENHANCEDSTATUSCODES\\r\\n");
            else if (verb === "MAIL") s.write("250 2.1.0 ok\\r\\n");
            else if (verb === "RCPT") { rcpts.push(/<([^>]*)>/.exec(line)[1]); s.write("250 2.1.5 ok\\r\\n"); }
            else if (verb === "DATA") { inData = true; s.write("354 go ahead\\r\\n"); }
            else if (verb === "RSET") { rcpts = []; s.write("250 2.0.0 ok\\r\\n"); }
            else if (verb === "NOOP") s.write("250 2.0.0 ok\\r\\n");
            else if (verb === "QUIT") s.end("221 2.0.0 bye\\r\\n");
            else s.write("500 5.5.1 unknown command\\r\\n");
        }
    });
}).listen(${LMTP_PORT}, "127.0.0.1", () => console.log("listening"));
`;

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** The sum of a metric's samples over all label sets (a histogram by its _count), optionally only matching labels. */
function metricValue(text: string, name: string, labels: Record<string, string> = {}): number | undefined {
    let sum: number | undefined;
    for (const line of text.split("\n")) {
        const m = /^([A-Za-z_:][\w:]*)(?:\{([^}]*)\})? (\S+)$/.exec(line);
        if (!m || (m[1] !== name && m[1] !== `${name}_count`)) continue;
        const have = Object.fromEntries([...(m[2] ?? "").matchAll(/(\w+)="([^"]*)"/g)].map((l) => [l[1], l[2]]));
        if (Object.entries(labels).some(([k, v]) => have[k] !== v)) continue;
        sum = (sum ?? 0) + Number(m[3]);
    }
    return sum;
}

/** Proportional set size of one process in KiB. */
function pssKiB(pid: number): number {
    const rollup = fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8");
    return Number(/^Pss:\s+(\d+) kB/m.exec(rollup)![1]);
}

let dir: string;
let postfix: Pod | undefined;
let exporter: Pod | undefined;
let lmtp: ChildProcess | undefined;
let lmtpOut = "";

function scrape(): string {
    const r = postfix!.inNetns(["curl", "-sS", "--max-time", "5", `http://127.0.0.1:${POSTFIX_EXPORTER_PORT}/metrics`]);
    if (r.code !== 0) throw new Error(`scrape failed: ${r.stderr}\nexporter log:\n${exporter?.logs}`);
    return r.stdout;
}

function swaks(to: string): string {
    const r = postfix!.inNetns([
        "swaks",
        "--server",
        "127.0.0.1",
        "--port",
        "25",
        "--helo",
        "client.example.org",
        "--from",
        "sender@example.org",
        "--to",
        to,
        "--timeout",
        "20",
    ]);
    return r.stdout + r.stderr;
}

async function waitFor<T>(what: string, probe: () => T | undefined, timeoutMs = 30_000): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = probe();
        if (v !== undefined) return v;
        if (Date.now() > end) throw new Error(`timed out waiting for ${what}\npostfix log:\n${postfix?.logs}\nexporter log:\n${exporter?.logs}`);
        await sleep(300);
    }
}

beforeAll(async () => {
    const postfixImage = buildImage("postfix");
    const exporterImage = buildImage("postfix-exporter");
    dir = tempDir("postfix-exporter-int");
    const cfg = path.join(dir, "config");
    writeConfigMapVolume(cfg, renderPostfix(settings));
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert("mail.example.test"), 0o600);
    // Like the pod's volumes: the queue's claim (root-owned, Postfix makes its folders) and an emptyDir (0777).
    for (const [name, mode] of [
        ["queue", 0o755],
        ["maillog", 0o777],
    ] as const) {
        fs.mkdirSync(path.join(dir, name));
        fs.chmodSync(path.join(dir, name), mode);
    }

    const sidecar = postfixExporterSidecar({ image: exporterImage, imagePullPolicy: "Never", queueVolume: "queue", queueDirectory: settings.queueDirectory });
    const hostDir: Record<string, string> = { queue: path.join(dir, "queue"), [sidecar.volumes[0].name as string]: path.join(dir, "maillog") };
    const postfixMounts: Mount[] = [
        { host: cfg, ctr: "/etc/mail/defaults/postfix" },
        { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
        { host: hostDir.queue, ctr: settings.queueDirectory, ro: false },
        ...(sidecar.postfixMounts as { name: string; mountPath: string }[]).map((m) => ({ host: hostDir[m.name], ctr: m.mountPath, ro: false })),
    ];
    postfix = new Pod(postfixImage, ["/usr/local/bin/postfix-entrypoint"], {
        mounts: postfixMounts,
        env: { MAILLOG_MAX_BYTES: String(LOG_LIMIT_BYTES), MAILLOG_CHECK_INTERVAL: "1" },
    });
    await postfix.waitForLog(/postfix\/master\[\d+\]: daemon started/, 60_000);

    lmtp = spawn("nsenter", [`--net=/run/netns/${postfix.netns}`, "node", "-e", LMTP_SERVER], { stdio: ["ignore", "pipe", "pipe"] });
    lmtp.stdout?.on("data", (d) => (lmtpOut += d));
    lmtp.stderr?.on("data", (d) => (lmtpOut += d));
    await waitFor("the LMTP server", () => (lmtpOut.includes("listening") ? true : undefined));

    // The sidecar as its spec says: its arguments after the image's entrypoint, its user and group, read-only mounts.
    const sc = sidecar.container;
    const env = Object.fromEntries((sc.env as { name: string; value: string }[]).map((e) => [e.name, e.value]));
    const mounts = (sc.volumeMounts as { name: string; mountPath: string; readOnly?: boolean }[]).map((m) => {
        expect(m.readOnly).toBe(true);
        return { host: hostDir[m.name], ctr: m.mountPath };
    });
    const { runAsUser, runAsGroup } = sc.securityContext as { runAsUser: number; runAsGroup: number };
    exporter = new Pod(exporterImage, ["/usr/local/bin/postfix-exporter-entrypoint", ...(sc.args as string[])], {
        network: postfix,
        user: `${runAsUser}:${runAsGroup}`,
        env,
        mounts,
    });
    await waitFor("the exporter's /metrics", () => {
        const r = postfix!.inNetns(["curl", "-sf", "--max-time", "2", `http://127.0.0.1:${POSTFIX_EXPORTER_PORT}/metrics`]);
        return r.code === 0 ? true : undefined;
    });
}, 600_000);

afterAll(async () => {
    lmtp?.kill();
    await exporter?.remove();
    await postfix?.remove();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("delivered, rejected and deferred mail move the exporter's counters and queue gauge; the container log keeps Postfix's lines", async () => {
    await sleep(2000);
    const idleKiB = pssKiB(exporter!.appPid()!);
    const before = scrape();
    // The showq socket answers through the read-only queue mount, as the exporter's user (group postdrop).
    expect(metricValue(before, "postfix_up", { path: `${settings.queueDirectory}/public/showq` })).toBe(1);
    expect(metricValue(before, "postfix_showq_message_size_bytes", { queue: "deferred" })).toBe(0);

    expect(swaks("user@example.test")).toMatch(/<- +250 2\.0\.0 Ok: queued as/);
    expect(swaks("nobody@example.test")).toMatch(/<\*\* +550 5\.1\.1 <nobody@example\.test>: Recipient address rejected/);
    expect(swaks("user@deferred.test")).toMatch(/<- +250 2\.0\.0 Ok: queued as/);

    await waitFor("the LMTP delivery", () => (lmtpOut.includes("delivered user@example.test") ? true : undefined));
    // `kubectl logs`: Postfix's own lines reach the container's output through the entrypoint's follower.
    await postfix!.waitForLog(/postfix\/lmtp\[\d+\]: \w+: to=<user@example\.test>, relay=127\.0\.0\.1\[127\.0\.0\.1\]:2424,.* status=sent/);
    await postfix!.waitForLog(
        /postfix\/lmtp\[\d+\]: \w+: to=<user@deferred\.test>,.* status=deferred \(connect to 127\.0\.0\.1\[127\.0\.0\.1\]:2525: Connection refused\)/,
    );
    await postfix!.waitForLog(/NOQUEUE: reject: RCPT from \S+: 550 5\.1\.1 <nobody@example\.test>/);

    const after = await waitFor("every metric to move", () => {
        const now = scrape();
        return POSTFIX_EXPORTER_METRICS.every((m) => (metricValue(now, m) ?? 0) > (metricValue(before, m) ?? 0)) ? now : undefined;
    });
    for (const m of POSTFIX_EXPORTER_METRICS) expect({ m, moved: (metricValue(after, m) ?? 0) > (metricValue(before, m) ?? 0) }).toEqual({ m, moved: true });
    expect(metricValue(after, "postfix_smtpd_messages_rejected_total", { code: "550" })).toBe(1);
    expect(metricValue(after, "postfix_showq_message_size_bytes", { queue: "deferred" })).toBe(1);
    expect(metricValue(after, "postfix_smtpd_messages_processed_total")).toBe(2);

    // Past the size bound the entrypoint empties the file; the exporter and the container log reread it from its start.
    const mark = postfix!.logs.length;
    fs.appendFileSync(path.join(dir, "maillog", path.basename(POSTFIX_LOG.file)), "padding line for the size bound\n".repeat(LOG_LIMIT_BYTES / 16));
    await postfix!.waitForLog(/log file emptied at \d+ bytes/, 30_000, mark);
    expect(swaks("user@example.test")).toMatch(/<- +250 2\.0\.0 Ok: queued as/);
    await postfix!.waitForLog(/postfix\/lmtp\[\d+\]: \w+: to=<user@example\.test>,.* status=sent/, 30_000, mark);
    const emptied = await waitFor("the exporter to count the delivery after the file was emptied", () => {
        const now = scrape();
        return (metricValue(now, "postfix_qmgr_messages_removed_total") ?? 0) > (metricValue(after, "postfix_qmgr_messages_removed_total") ?? 0)
            ? now
            : undefined;
    });
    expect(metricValue(emptied, "postfix_lmtp_delivery_delay_seconds", { stage: "transmission" })).toBeGreaterThan(
        metricValue(after, "postfix_lmtp_delivery_delay_seconds", { stage: "transmission" })!,
    );
    // Only the live file remains on the volume, and it is small again.
    expect(fs.readdirSync(path.join(dir, "maillog"))).toEqual([path.basename(POSTFIX_LOG.file)]);
    expect(fs.statSync(path.join(dir, "maillog", path.basename(POSTFIX_LOG.file))).size).toBeLessThan(LOG_LIMIT_BYTES);

    const busyKiB = pssKiB(exporter!.appPid()!);
    console.log(`postfix exporter PSS: idle ${idleKiB} KiB, after the mail and scrapes ${busyKiB} KiB`);
    expect(busyKiB).toBeLessThan(48 * 1024);
});

test("without a writable log folder (no volume on a read-only root) Postfix still starts and logs to stdout", async () => {
    const readOnlyLog = path.join(dir, "readonly-maillog");
    fs.mkdirSync(readOnlyLog);
    const pod = new Pod(buildImage("postfix"), ["/usr/local/bin/postfix-entrypoint"], {
        mounts: [
            { host: path.join(dir, "config"), ctr: "/etc/mail/defaults/postfix" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            { host: readOnlyLog, ctr: POSTFIX_LOG.directory },
        ],
    });
    try {
        await pod.waitForLog(/WARNING: \/var\/log\/postfix is not writable \(no log volume\?\): Postfix logs to stdout only/);
        await pod.waitForLog(/postfix\/master\[\d+\]: daemon started/, 60_000);
    } finally {
        await pod.remove();
    }
});
