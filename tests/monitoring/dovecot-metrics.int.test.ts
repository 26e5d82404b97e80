// Dovecot's OpenMetrics exporter with the live rendering plus the metrics blocks, in the real image: doveconf accepts
// it, /metrics answers with every metric, and the failed-login counter moves.
import * as fs from "fs";
import * as path from "path";
import { DOVECOT_LISTENERS, DovecotSettings, renderDovecot } from "../../components/dovecot/config";
import { DOVECOT_METRICS, DOVECOT_METRICS_PORT, dovecotMetricsConf } from "../../components/monitoring/dovecot";
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
  if req.user == "alice@example.test" then return dovecot.auth.USERDB_RESULT_OK, "" end
  return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, ""
end
`;
let image: string;
let dir: string;
let pod: Pod;

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
    pod = new Pod(image, ["/usr/local/bin/dovecot-entrypoint"], {
        mounts: [
            { host: path.join(dir, "config"), ctr: "/etc/mail/defaults/dovecot" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            { host: path.join(dir, "lua"), ctr: "/etc/mail/couchmail" },
            { host: path.join(dir, "mail"), ctr: settings.mailRoot, ro: false },
        ],
    });
    await pod.waitForLog(/config [0-9a-f]{12} active/, 60_000);
}, 600_000);

afterAll(async () => {
    await pod?.remove();
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
