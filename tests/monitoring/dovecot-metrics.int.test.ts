// Dovecot's OpenMetrics exporter with the live rendering plus the metrics blocks, in the real image: doveconf accepts
// it, /metrics answers with every metric, the failed-login counter moves, and an LMTP delivery moves the delivery
// histogram under the names and units the metrics contract (components/monitoring/metrics.ts) declares.
import { ChildProcess, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { DOVECOT_LISTENERS, DovecotSettings, renderDovecot } from "../../components/dovecot/config";
import { COUCHMAIL } from "../../components/couchmail";
import { DOVECOT_METRICS, DOVECOT_METRICS_PORT, dovecotMetricsConf } from "../../components/monitoring/dovecot";
import { SCRAPE_TARGETS } from "../../components/monitoring/metrics";
import { Pod, buildImage, selfSignedCert, tempDir, writeConfigMapVolume } from "../kit/images";
import { dovecotTestSettings } from "../kit/settings";

jest.setTimeout(180_000);

// No couchmail here to answer the auth policy requests.
const settings: DovecotSettings = { ...dovecotTestSettings, luaFile: "/etc/mail/couchmail/auth.lua", settingsOverrides: { auth_policy_server_url: "" } };
// Stands in for couchmail's script: one user with a known password (no spaces: passdb fields are space-separated),
// everyone else unknown.
const STUB_LUA = `function script_init(args) return 0 end
function auth_passdb_lookup(req)
  if req.user == "alice@example.test" then return dovecot.auth.PASSDB_RESULT_OK, "password={PLAIN}correct-horse" end
  return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, ""
end
function auth_userdb_lookup(req)
  if req.user == "alice@example.test" then return dovecot.auth.USERDB_RESULT_OK, {} end
  return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, ""
end
`;
/**
 * Stands in for couchmail's dict proxy, which serves the CouchDB sieve script at delivery (couchmail/src/dict.ts):
 * no reply to the hello, `O<id>` for the script's name, `O<script>` for its data (one line per lookup, in order).
 */
const DICT_SERVER = `
import os, socket, sys, threading
path = sys.argv[1]
srv = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
srv.bind(path); os.chmod(path, 0o666); srv.listen(8)
def serve(conn):
    buf = b""
    while True:
        data = conn.recv(4096)
        if not data: return
        buf += data
        while b"\\n" in buf:
            line, buf = buf.split(b"\\n", 1)
            if line.startswith(b"Lpriv/sieve/name/"): conn.sendall(b"O1\\n")
            elif line.startswith(b"Lpriv/sieve/data/"): conn.sendall(b"Okeep;\\n")
            elif line.startswith(b"L"): conn.sendall(b"N\\n")
while True:
    conn, _ = srv.accept()
    threading.Thread(target=serve, args=(conn,), daemon=True).start()
`;
/** One message to alice over LMTP from inside the pod's network. */
const DELIVER = `
import smtplib
c = smtplib.LMTP("127.0.0.1", ${DOVECOT_LISTENERS.lmtp.port})
c.sendmail("sender@example.org", ["alice@example.test"], "From: sender@example.org\\r\\nTo: alice@example.test\\r\\nSubject: metrics\\r\\n\\r\\nhello\\r\\n")
c.quit(); print("delivered")
`;
let image: string;
let dir: string;
let pod: Pod;
let dictServer: ChildProcess | undefined;

/** IMAPS logins from inside the pod's network (the certificate is self-signed). */
const LOGIN = `
import imaplib, ssl, sys
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
for user, password in [a.split(":", 1) for a in sys.argv[1:]]:
    m = imaplib.IMAP4_SSL("127.0.0.1", ${DOVECOT_LISTENERS.imaps.port}, ssl_context=ctx)
    try:
        m.login(user, password); m.select("INBOX"); m.logout(); print("ok", user)
    except imaplib.IMAP4.error as e:
        print("refused", user, e, file=sys.stderr)
        print("refused", user)
`;

const scrape = () => pod.inNetns(["curl", "-sS", "--max-time", "5", `http://127.0.0.1:${DOVECOT_METRICS_PORT}/metrics`]);
const value = (metrics: string, series: string): number => {
    const line = metrics.split("\n").find((l) => l.startsWith(series + " "));
    return line ? Number(line.split(" ")[1]) : 0;
};

beforeAll(async () => {
    image = buildImage("dovecot");
    dir = tempDir("dovecot-metrics");
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert("mail.example.test"), 0o600);
    writeConfigMapVolume(path.join(dir, "lua"), { "auth.lua": STUB_LUA });
    const files = renderDovecot(settings);
    writeConfigMapVolume(path.join(dir, "config"), {
        ...files,
        "dovecot.conf": files["dovecot.conf"] + dovecotMetricsConf(DOVECOT_METRICS_PORT).join("\n") + "\n",
    });
    fs.mkdirSync(path.join(dir, "mail"));
    // The mail volume belongs to vmail (the image's uid 5000), as the pod's fsGroup makes it.
    fs.chownSync(path.join(dir, "mail"), 5000, 5000);
    fs.mkdirSync(path.join(dir, "couchmail-run"), { mode: 0o755 });
    dictServer = spawn("python3", ["-c", DICT_SERVER, path.join(dir, "couchmail-run", path.basename(COUCHMAIL.dictSocket))], { stdio: "inherit" });
    pod = new Pod(image, ["/usr/local/bin/dovecot-entrypoint"], {
        mounts: [
            { host: path.join(dir, "config"), ctr: "/etc/mail/defaults/dovecot" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            { host: path.join(dir, "lua"), ctr: "/etc/mail/couchmail" },
            { host: path.join(dir, "mail"), ctr: settings.mailRoot, ro: false },
            { host: path.join(dir, "couchmail-run"), ctr: COUCHMAIL.socketDir, ro: false },
        ],
    });
    await pod.waitForLog(/config [0-9a-f]{12} active/, 60_000);
}, 600_000);

afterAll(async () => {
    await pod?.remove();
    dictServer?.kill();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("doveconf accepts the metrics blocks; /metrics serves every metric with its description", () => {
    expect(pod.logs).not.toMatch(/REJECTED|Fatal/);
    const r = scrape();
    expect(r.code).toBe(0);
    for (const m of DOVECOT_METRICS) {
        // A quantized group_by makes a histogram.
        const histogram = m.groupBy?.some((g) => typeof g.method !== "string");
        expect(r.stdout).toContain(`# HELP dovecot_${m.name} ${histogram ? "Histogram of" : "Total number of all events of this kind of"} ${m.description}\n`);
    }
});

test("failed logins are counted", () => {
    const before = scrape().stdout;
    const logins = pod.inNetns(["python3", "-c", LOGIN, "alice@example.test:wrong", "mallory@example.test:guess"]);
    expect(logins.stdout).toBe("refused alice@example.test\nrefused mallory@example.test\n");
    const after = scrape().stdout;
    expect(value(after, "dovecot_auth_failures_total") - value(before, "dovecot_auth_failures_total")).toBe(2);
});

test("an LMTP delivery moves the delivery histogram: dovecot_mail_delivery_{bucket,sum,count}, in seconds", () => {
    const before = scrape().stdout;
    const delivery = pod.inNetns(["python3", "-c", DELIVER]);
    expect({ stdout: delivery.stdout, stderr: delivery.stderr, log: delivery.code === 0 ? "" : pod.logs.slice(-3000) }).toEqual({
        stdout: "delivered\n",
        stderr: "",
        log: "",
    });
    const after = scrape().stdout;
    const histogram = SCRAPE_TARGETS.dovecot.metrics.find((m) => m.type === "histogram" && m.moves)!.name;
    expect(value(after, `${histogram}_count`) - value(before, `${histogram}_count`)).toBe(1);
    // min_magnitude 4 .. max_magnitude 7 of base 10 over `duration` (µs), exported in seconds: 10 ms .. 10 s, then +Inf.
    const buckets = after
        .split("\n")
        .filter((l) => l.startsWith(`${histogram}_bucket{`))
        .map((l) => /le="([^"]+)"/.exec(l)?.[1]);
    expect(buckets).toEqual(["0.010000", "0.100000", "1.000000", "10.000000", "+Inf"]);
    // The sum is in seconds too: one delivery, well under 10 s.
    const sum = value(after, `${histogram}_sum`) - value(before, `${histogram}_sum`);
    expect(sum).toBeGreaterThan(0);
    expect(sum).toBeLessThan(10);
});
