// Real Postgrey (our image) as Postfix's policy service on port 25, in one network namespace like a Service would
// connect them: a new triplet gets 450, its retry after the delay is accepted, whitelisted recipients pass at once.
import * as fs from "fs";
import * as path from "path";
import { POSTFIX_LISTENERS, renderPostfix } from "../../components/postfix/config";
import { POSTGREY_LISTENERS, PostgreySettings, postgreyArgs, renderPostgrey } from "../../components/postgrey/config";
import { Pod, buildImage, selfSignedCert, tempDir, writeConfigMapVolume } from "../kit/images";
import { postfixTestSettings, postgreyTestSettings } from "../kit/settings";

jest.setTimeout(180_000);

const HOST = "mail.example.test";
const DELAY = 4;
const settings: PostgreySettings = { ...postgreyTestSettings, delaySeconds: DELAY, whitelistRecipients: ["postmaster@example.test"] };

let dir: string;
let postgrey: Pod;
let postfix: Pod;

/** One SMTP transaction up to RCPT on port 25 (python smtplib inside the pods' network); returns the RCPT reply. */
function rcpt(from: string, to: string): string {
    const py = `import smtplib, sys
s = smtplib.SMTP("127.0.0.1", ${POSTFIX_LISTENERS.smtp.port}, timeout=30)
s.ehlo("client.example.net")
code, msg = s.mail(sys.argv[1])
if code == 250:
    code, msg = s.rcpt(sys.argv[2])
print(code, msg.decode())
s.quit()`;
    const r = postgrey.inNetns(["python3", "-c", py, from, to]);
    if (r.code !== 0) throw new Error(`smtp client failed: ${r.stderr}`);
    return r.stdout.trim();
}

beforeAll(async () => {
    dir = tempDir("postgrey-int");
    const cfg = path.join(dir, "postgrey");
    writeConfigMapVolume(cfg, renderPostgrey(settings));
    // The pod's volumes: the database PVC (fsGroup postgrey) and the /run/mail emptyDir.
    for (const d of ["data", "run"]) {
        fs.mkdirSync(path.join(dir, d));
        fs.chownSync(path.join(dir, d), 0, 5002);
        fs.chmodSync(path.join(dir, d), 0o2775);
    }
    postgrey = new Pod(buildImage("postgrey"), ["/usr/local/bin/postgrey-entrypoint", ...postgreyArgs(settings)], {
        mounts: [
            { host: cfg, ctr: "/etc/mail/defaults/postgrey" },
            { host: path.join(dir, "data"), ctr: settings.dataDir, ro: false },
            { host: path.join(dir, "run"), ctr: "/run/mail", ro: false },
        ],
        env: { WATCH_INTERVAL: "1" },
    });
    await postgrey.waitForLog(/Binding to TCP port 10023/, 60_000);

    const pcfg = path.join(dir, "postfix");
    writeConfigMapVolume(
        pcfg,
        renderPostfix({
            ...postfixTestSettings,
            hostname: HOST,
            dnsbls: [],
            milters: [],
            policyService: `inet:127.0.0.1:${POSTGREY_LISTENERS.policy.port}`,
            // No couchmail, OpenDKIM or DNS here: static recipients, and no sender-domain lookups that would defer on their own.
            mainCfOverrides: {
                virtual_mailbox_domains: "example.test",
                virtual_mailbox_maps: "inline:{ {bob@example.test=ok}, {postmaster@example.test=ok} }",
                virtual_alias_maps: "",
                smtpd_sender_restrictions: "",
            },
        }),
    );
    const tls = path.join(dir, "tls");
    writeConfigMapVolume(tls, selfSignedCert(HOST), 0o600);
    postfix = new Pod(buildImage("postfix"), ["/usr/local/bin/postfix-entrypoint"], {
        network: postgrey,
        mounts: [
            { host: pcfg, ctr: "/etc/mail/defaults/postfix" },
            { host: tls, ctr: "/etc/mail/tls" },
        ],
    });
    await postfix.waitForLog(/daemon started/, 60_000);
}, 600_000);

afterAll(async () => {
    if (process.env.DEBUG_LOGS) fs.writeFileSync("/tmp/postgrey-int.log", postgrey?.logs + "\n----\n" + postfix?.logs);
    await postfix?.remove();
    await postgrey?.remove();
    fs.rmSync(dir, { recursive: true, force: true });
});

test("a new triplet is greylisted with 450, and its retry after the delay is accepted", async () => {
    expect(rcpt("alice@sender.example", "bob@example.test")).toMatch(/^450 4\.2\.0 .*Recipient address rejected: Greylisted, please try again later/);
    // Too early: still greylisted.
    expect(rcpt("alice@sender.example", "bob@example.test")).toMatch(/^450 /);
    await new Promise((r) => setTimeout(r, (DELAY + 1) * 1000));
    expect(rcpt("alice@sender.example", "bob@example.test")).toMatch(/^250 /);
    // Another sender is a new triplet.
    expect(rcpt("carol@sender.example", "bob@example.test")).toMatch(/^450 /);
    expect(postgrey.logs).toMatch(/action=greylist, reason=new, .*sender=alice@sender\.example, recipient=bob@example\.test/);
});

test("a whitelisted recipient from stack config passes on the first attempt", () => {
    expect(rcpt("dave@sender.example", "postmaster@example.test")).toMatch(/^250 /);
});

test("a changed whitelist is picked up without a restart (SIGHUP); a malformed one is refused", async () => {
    const pid = postgrey.appPid();
    let mark = postgrey.logs.length;
    writeConfigMapVolume(path.join(dir, "postgrey"), renderPostgrey({ ...settings, whitelistClients: ["127.0.0.1"] }));
    await postgrey.waitForLog(/reloaded with config/, 30_000, mark);
    await postgrey.waitForLog(/HUP received: reloading whitelists/, 30_000, mark);
    expect(rcpt("erin@sender.example", "bob@example.test")).toMatch(/^250 /);
    expect(postgrey.appPid()).toBe(pid);

    mark = postgrey.logs.length;
    writeConfigMapVolume(path.join(dir, "postgrey"), { ...renderPostgrey(settings), "whitelist_clients.local": "two words\n" });
    await postgrey.waitForLog(/config REJECTED, keeping the running one: whitelist_clients\.local: bad entry/, 30_000, mark);
});

test("the database is on the volume, in a directory postgrey owns", () => {
    const db = path.join(dir, "data", "db");
    expect(fs.statSync(db).uid).toBe(5002);
    expect(fs.readdirSync(db)).toContain("postgrey.db");
});
