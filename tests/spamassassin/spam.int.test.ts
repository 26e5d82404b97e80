// Real spamd (our image) scoring real Dovecot LMTP deliveries per recipient, imapsieve training on IMAP MOVE,
// the nightly training script, and delivery with spamd down. spamd, Dovecot and the training job share one network
// namespace here (in the cluster they reach spamd through its Service). Memory of spamd is measured and printed.
import { createHash } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { ChildProcess, spawn, spawnSync } from "child_process";
import { DOVECOT_DEFAULTS, DOVECOT_LISTENERS, DOVECOT_SPAM_PROGRAMS, renderDovecot } from "../../components/dovecot/config";
import { BUDGET } from "../../components/kube";
import { SPAMD_LISTENERS, SPAM_SCAN_MAX_BYTES, SpamAssassinSettings, renderSpamAssassin, spamdArgs } from "../../components/spamassassin/config";
import { sizedMessage } from "../bench/spamd-corpus";
import { parseQuantity } from "../kit/cluster/quantity";
import { Pod, buildImage, selfSignedCert, shInImage, tempDir, writeConfigMapVolume } from "../kit/images";
import { dovecotTestSettings, spamassassinTestSettings } from "../kit/settings";

jest.setTimeout(300_000);

const HOST = "mail.example.test";
const PASSWORD = "secret";
const GTUBE = "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X";
const settings: SpamAssassinSettings = { ...spamassassinTestSettings, clusterNetworks: ["10.0.0.0/8"] };
// Stand-in for couchmail's Lua script: two users with one password.
const AUTH_LUA = `local users = { ["alice@example.test"] = true, ["bob@example.test"] = true }
function script_init(args) return 0 end
function auth_passdb_lookup(req)
  if users[req.user] then return dovecot.auth.PASSDB_RESULT_OK, { password = "{PLAIN}${PASSWORD}" } end
  return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "no such user"
end
function auth_userdb_lookup(req)
  if users[req.user] then return dovecot.auth.USERDB_RESULT_OK, {} end
  return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "no such user"
end
`;

let dir: string;
let spamImage: string;
let dovecotImage: string;
let spamd: Pod;
let dovecot: Pod;
let dictStub: ChildProcess;

/**
 * couchmail's dict socket as Dovecot uses it for the per-user sieve script: every user has an empty one. A separate
 * process, because the test's synchronous clients block this one's event loop while Dovecot asks.
 */
const DICT_STUB = `
const net = require("net"), fs = require("fs");
const socket = process.argv[1];
net.createServer((c) => {
  let buf = "";
  c.on("data", (d) => {
    buf += d;
    let nl;
    while ((nl = buf.indexOf("\\n")) >= 0) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      if (line.startsWith("H")) continue;
      const key = line.slice(1).split("\\t")[0];
      c.write(key.startsWith("priv/sieve/name/") ? "O1\\n" : key.startsWith("priv/sieve/data/") ? "O\\n" : "N\\n");
    }
  });
  c.on("error", () => undefined);
}).listen(socket, () => fs.chmodSync(socket, 0o666));
`;

/** Delivers one message over LMTP to each recipient (python smtplib in the pods' network); returns the replies. */
function lmtp(to: string[], subject: string, body: string): string {
    const py = `import smtplib, sys, json
to = json.loads(sys.argv[1])
msg = "From: sender@example.net\\r\\nTo: %s\\r\\nSubject: %s\\r\\nDate: Mon, 16 Nov 2026 10:00:00 +0000\\r\\nMessage-ID: <%s@example.net>\\r\\n\\r\\n%s\\r\\n" % (", ".join(to), sys.argv[2], sys.argv[2].replace(" ", "-"), sys.argv[3])
s = smtplib.LMTP("127.0.0.1", ${DOVECOT_LISTENERS.lmtp.port})
s.ehlo_or_helo_if_needed = lambda: s.docmd("LHLO", "test.example")
refused = s.sendmail("sender@example.net", to, msg)
print(json.dumps(refused))
s.quit()`;
    const t0 = Date.now();
    const r = spawnSync("nsenter", [`--net=/run/netns/${dovecot.netns}`, "python3", "-c", py, JSON.stringify(to), subject, body], {
        encoding: "utf8",
        timeout: 120_000,
    });
    if (r.status !== 0)
        throw new Error(`LMTP delivery failed (${r.status} ${r.signal} after ${Date.now() - t0} ms): ${r.stderr}\n${dovecot.logs.slice(-3000)}`);
    return r.stdout.trim();
}

/** IMAP as `user` over 993 (python imaplib): runs `steps` and prints JSON. */
function imap(user: string, script: string): unknown {
    const py = `import imaplib, ssl, sys, json
ctx = ssl.create_default_context(); ctx.check_hostname = False; ctx.verify_mode = ssl.CERT_NONE
m = imaplib.IMAP4_SSL("127.0.0.1", ${DOVECOT_LISTENERS.imaps.port}, ssl_context=ctx)
m.login(sys.argv[1], "${PASSWORD}")
def uids(box, subject):
    m.select(box)
    typ, data = m.uid("SEARCH", "SUBJECT", '"%s"' % subject)
    return data[0].split()
out = {}
${script}
m.logout()
print(json.dumps(out))`;
    const r = dovecot.inNetns(["python3", "-c", py, user]);
    if (r.code !== 0) throw new Error(`IMAP failed: ${r.stderr}\n${dovecot.logs.slice(-3000)}`);
    return JSON.parse(r.stdout);
}

/** Subjects of the messages in a user's folder, read from the mail volume. */
function subjects(user: string, folder: "INBOX" | "Junk"): string[] {
    const [local, domain] = user.split("@");
    const maildir = path.join(dir, "mail", domain, local, "Maildir", folder === "INBOX" ? "" : ".Junk");
    return ["new", "cur"]
        .flatMap((sub) => {
            const d = path.join(maildir, sub);
            return fs.existsSync(d) ? fs.readdirSync(d).map((f) => fs.readFileSync(path.join(d, f), "utf8")) : [];
        })
        .map((m) => /^Subject: (.*)$/m.exec(m)?.[1] ?? "");
}

function message(user: string, subject: string): string {
    const [local, domain] = user.split("@");
    for (const folder of ["", ".Junk"]) {
        for (const sub of ["new", "cur"]) {
            const d = path.join(dir, "mail", domain, local, "Maildir", folder, sub);
            for (const f of fs.existsSync(d) ? fs.readdirSync(d) : []) {
                const m = fs.readFileSync(path.join(d, f), "utf8");
                if (m.includes(`Subject: ${subject}\n`)) return m;
            }
        }
    }
    throw new Error(`no message "${subject}" for ${user}`);
}

/**
 * nspam/nham of one user's Bayes database (sa-learn --dump magic on the spamd volume), after merging its journal:
 * spamd learns into the journal (bayes_learn_to_journal) and merges it later.
 */
function bayes(user: string): { nspam: number; nham: number } {
    const db = `--dbpath ${settings.dataDir}/users/${user}`;
    const r = shInImage(spamImage, `HOME=/tmp sa-learn ${db} --sync && HOME=/tmp sa-learn ${db} --dump magic`, {
        // With spamd's mail.cf, so the merge takes the lock the way spamd does (lock_method).
        mounts: [
            { host: path.join(dir, "spamd"), ctr: settings.dataDir, ro: false },
            { host: path.join(dir, "sa"), ctr: "/run/mail/spamassassin/live" },
        ],
    });
    const n = (what: string) => Number(new RegExp(`(\\d+)\\s+\\d+\\s+non-token data: ${what}`).exec(r.stdout)?.[1] ?? "0");
    return { nspam: n("nspam"), nham: n("nham") };
}

/** Proportional set size (KiB) of the spamd container's own processes (spamd, its children, the entrypoint). */
function spamdPssKiB(): number {
    const ns = fs.readlinkSync(`/proc/${spamd.appPid()}/ns/mnt`);
    let total = 0;
    for (const p of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
        try {
            if (fs.readlinkSync(`/proc/${p}/ns/mnt`) !== ns || /^(buildah|memfd:)/.test(fs.readFileSync(`/proc/${p}/comm`, "utf8"))) continue;
            total += Number(/^Pss:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${p}/smaps_rollup`, "utf8"))?.[1] ?? 0);
        } catch {
            // exited meanwhile
        }
    }
    return total;
}

/** Runs the nightly training script once, like the CronJob's pod, and returns its log. */
async function train(): Promise<string> {
    const job = new Pod(spamImage, ["/usr/local/bin/spam-train"], {
        network: spamd,
        user: "5000:5000",
        mounts: [{ host: path.join(dir, "mail"), ctr: DOVECOT_DEFAULTS.mailRoot, ro: false }],
        env: { SPAMD_HOST: "127.0.0.1", SPAMD_PORT: String(SPAMD_LISTENERS.spamd.port) },
    });
    try {
        const code = await job.exitCode(120_000);
        if (code !== 0) throw new Error(`spam-train exited ${code}:\n${job.logs}`);
        return job.logs;
    } finally {
        await job.remove();
    }
}

const mib = (kib: number) => `${(kib / 1024).toFixed(0)} MiB`;

beforeAll(async () => {
    spamImage = buildImage("spamassassin");
    dovecotImage = buildImage("dovecot");
    dir = tempDir("spam-int");
    // Volumes: spamd's PVC and /run/mail (fsGroup spamd), the mail PVC (vmail), couchmail's socket dir.
    const volume = (name: string, gid: number) => {
        fs.mkdirSync(path.join(dir, name));
        fs.chownSync(path.join(dir, name), gid, gid);
    };
    volume("spamd", 5001);
    volume("spamd-run", 5001);
    volume("mail", 5000);
    fs.mkdirSync(path.join(dir, "couchmail"));
    writeConfigMapVolume(path.join(dir, "sa"), renderSpamAssassin(settings));
    spamd = new Pod(spamImage, ["/usr/local/bin/spamd-entrypoint", ...spamdArgs(settings)], {
        mounts: [
            { host: path.join(dir, "sa"), ctr: "/etc/mail/defaults/spamassassin" },
            { host: path.join(dir, "spamd"), ctr: settings.dataDir, ro: false },
            { host: path.join(dir, "spamd-run"), ctr: "/run/mail", ro: false },
        ],
        env: { WATCH_INTERVAL: "1" },
    });

    dictStub = spawn(process.execPath, ["-e", DICT_STUB, path.join(dir, "couchmail", "dict.sock")], { stdio: "inherit" });
    writeConfigMapVolume(
        path.join(dir, "dovecot"),
        renderDovecot({
            ...dovecotTestSettings,
            hostname: HOST,
            spamToJunk: true,
            spamScan: { filterBinDir: DOVECOT_SPAM_PROGRAMS.filterBinDir, spamdHost: "127.0.0.1", spamdPort: SPAMD_LISTENERS.spamd.port, timeoutSeconds: 30 },
            imapsieveTraining: { pipeBinDir: DOVECOT_SPAM_PROGRAMS.pipeBinDir },
        }),
    );
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert(HOST), 0o600);
    writeConfigMapVolume(path.join(dir, "lua"), { "auth.lua": AUTH_LUA });
    await spamd.waitForLog(/spamd: server started on .*:10783/, 120_000);
    dovecot = new Pod(dovecotImage, ["/usr/local/bin/dovecot-entrypoint"], {
        network: spamd,
        mounts: [
            { host: path.join(dir, "dovecot"), ctr: "/etc/mail/defaults/dovecot" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            { host: path.join(dir, "lua"), ctr: path.dirname(dovecotTestSettings.luaFile) },
            { host: path.join(dir, "mail"), ctr: DOVECOT_DEFAULTS.mailRoot, ro: false },
            { host: path.join(dir, "couchmail"), ctr: path.dirname(dovecotTestSettings.dictSocket), ro: false },
        ],
    });
    await dovecot.waitForLog(/starting up for imap, lmtp, sieve/, 60_000);
}, 900_000);

afterAll(async () => {
    if (process.env.DEBUG_LOGS) fs.writeFileSync("/tmp/spam-int.log", `${spamd?.logs}\n----\n${dovecot?.logs}`);
    await dovecot?.remove();
    await spamd?.remove();
    dictStub?.kill();
    fs.rmSync(dir, { recursive: true, force: true });
});

test("GTUBE to a user lands in that user's Junk; a clean message in INBOX; each scored for its recipient", () => {
    const atRest = spamdPssKiB();
    expect(lmtp(["alice@example.test"], "gtube for alice", `Buy now.\r\n${GTUBE}`)).toBe("{}");
    expect(
        lmtp(["alice@example.test", "bob@example.test"], "lunch on friday", "Hi both, shall we have lunch on Friday at noon? The usual place near the office."),
    ).toBe("{}");
    expect(subjects("alice@example.test", "Junk")).toEqual(["gtube for alice"]);
    expect(subjects("alice@example.test", "INBOX")).toEqual(["lunch on friday"]);
    expect(subjects("bob@example.test", "INBOX")).toEqual(["lunch on friday"]);
    expect(subjects("bob@example.test", "Junk")).toEqual([]);
    expect(message("alice@example.test", "gtube for alice")).toMatch(/^X-Spam-Flag: YES$/m);
    expect(message("alice@example.test", "lunch on friday")).toMatch(/^X-Spam-Status: No, /m);
    // spamd was asked once per recipient, with that recipient's name: each has its own directory on the volume.
    expect(fs.readdirSync(path.join(dir, "spamd", "users")).sort()).toEqual(["alice@example.test", "bob@example.test"]);
    console.log(`spamd container PSS at rest (spamd master + 1 idle child + entrypoint): ${mib(atRest)}`);
});

test("the package's body rules run compiled: sa-compile's native code in the image, Rule2XSBody loading it", () => {
    const r = shInImage(spamImage, "HOME=/tmp spamassassin -D zoom --lint 2>&1", {
        mounts: [{ host: path.join(dir, "sa"), ctr: "/run/mail/spamassassin/live" }],
    });
    expect(r.stdout).toMatch(/zoom: able to use (\d+)\/\1 'body_0' compiled rules \(100%\)/);
});

test(`the size ceiling: spam-scan scores a message of ${SPAM_SCAN_MAX_BYTES} bytes, passes one byte more through unchanged; two at the ceiling fit spamd's limit`, async () => {
    const work = path.join(dir, "sized");
    fs.mkdirSync(work);
    fs.chownSync(work, 5000, 5000);
    const files = { at1: sizedMessage(SPAM_SCAN_MAX_BYTES, 1), at2: sizedMessage(SPAM_SCAN_MAX_BYTES, 2), over: sizedMessage(SPAM_SCAN_MAX_BYTES + 1, 3) };
    for (const [name, text] of Object.entries(files)) fs.writeFileSync(path.join(work, `${name}.eml`), text);
    expect(Object.values(files).map((m) => Buffer.byteLength(m))).toEqual([SPAM_SCAN_MAX_BYTES, SPAM_SCAN_MAX_BYTES, SPAM_SCAN_MAX_BYTES + 1]);
    // spam-scan as Dovecot's spam.sieve runs it: the vmail user, $USER set by Pigeonhole, the rendered spamc.conf.
    const scan = (name: string) => `USER=alice@example.test /usr/local/lib/mail/filter/spam-scan </work/${name}.eml >/work/${name}.out`;
    const peak = { kib: spamdPssKiB() };
    const poll = setInterval(() => (peak.kib = Math.max(peak.kib, spamdPssKiB())), 100);
    const job = new Pod(dovecotImage, ["bash", "-c", `(${scan("at1")}) & (${scan("at2")}) & wait; ${scan("over")}`], {
        network: spamd,
        user: "5000:5000",
        mounts: [
            { host: path.join(dir, "dovecot"), ctr: "/run/mail/dovecot/live" },
            { host: work, ctr: "/work", ro: false },
        ],
    });
    try {
        expect(await job.exitCode(240_000)).toBe(0);
    } finally {
        clearInterval(poll);
        await job.remove();
    }
    // Compared by header block and digest: a failure would print megabytes otherwise.
    const out = (name: string) => fs.readFileSync(path.join(work, `${name}.out`), "utf8");
    const headerBlock = (m: string) => m.split(/\r?\n\r?\n/)[0];
    const digest = (m: string) => ({ bytes: Buffer.byteLength(m), sha256: createHash("sha256").update(m).digest("hex") });
    expect(headerBlock(out("at1"))).toMatch(/^X-Spam-Status: No, score=/m);
    expect(headerBlock(out("at2"))).toMatch(/^X-Spam-Status: No, score=/m);
    expect(digest(out("over"))).toEqual(digest(files.over));
    console.log(`spamd PSS peak scanning two ${SPAM_SCAN_MAX_BYTES}-byte messages at once: ${mib(peak.kib)}`);
    expect(peak.kib * 1024).toBeLessThan(parseQuantity(BUDGET.spamd.limits.memory));
});

test("moving into Junk teaches spam, out of Junk ham — to that user's Bayes only", () => {
    const alice0 = bayes("alice@example.test");
    const bob0 = bayes("bob@example.test");
    imap(
        "alice@example.test",
        `u = uids("INBOX", "lunch on friday")
out["in"] = m.uid("MOVE", u[0], "Junk")[0]`,
    );
    const alice1 = bayes("alice@example.test");
    expect(subjects("alice@example.test", "Junk")).toContain("lunch on friday");
    expect(alice1.nspam).toBe(alice0.nspam + 1);
    expect(bayes("bob@example.test")).toEqual(bob0);

    imap(
        "alice@example.test",
        `u = uids("Junk", "lunch on friday")
out["out"] = m.uid("MOVE", u[0], "INBOX")[0]`,
    );
    const alice2 = bayes("alice@example.test");
    expect(subjects("alice@example.test", "INBOX")).toContain("lunch on friday");
    expect(alice2.nham).toBe(alice1.nham + 1);
    expect(alice2.nspam).toBe(alice1.nspam - 1);
    expect(bayes("bob@example.test")).toEqual(bob0);
    expect(dovecot.logs).not.toMatch(/learn-(spam|ham):.*failed/);
});

test("the nightly job learns read INBOX mail as ham and Junk as spam, records it, and a second run learns nothing", async () => {
    expect(lmtp(["bob@example.test"], "gtube for bob", `Cheap.\r\n${GTUBE}`)).toBe("{}");
    imap(
        "bob@example.test",
        `u = uids("INBOX", "lunch on friday")
out["seen"] = m.uid("STORE", u[0], "+FLAGS", "(\\\\Seen)")[0]`,
    );
    const bob0 = bayes("bob@example.test");
    const first = await train();
    // GTUBE is never autolearned at delivery, so the job is what teaches it; the read lunch mail is ham.
    expect(first).toMatch(/spam-train: user=bob@example\.test ham=\d+ spam=1 already=\d+ failed=0/);
    const bob1 = bayes("bob@example.test");
    expect(bob1.nspam).toBe(bob0.nspam + 1);
    expect(bob1.nham).toBeGreaterThanOrEqual(1);
    const state = fs.readFileSync(path.join(dir, "mail", "example.test", "bob", ".spam-train"), "utf8");
    expect(state).toMatch(/^since=\d+\.\d+$/m);
    expect(state).toMatch(/^learned=user=bob@example\.test ham=\d+ spam=1 /m);

    const second = await train();
    expect(second).toMatch(/user=bob@example\.test ham=0 spam=0 already=0 failed=0/);
    expect(second).toMatch(/user=alice@example\.test ham=0 spam=0 already=0 failed=0/);
    expect(bayes("bob@example.test")).toEqual(bob1);
});

test("under load: concurrent deliveries are all scored; spamd's memory stays bounded by its children", async () => {
    const peak = { kib: spamdPssKiB() };
    const poll = setInterval(() => (peak.kib = Math.max(peak.kib, spamdPssKiB())), 200);
    const py = `import smtplib, threading, sys
failed = []
def one(i):
    try:
        s = smtplib.LMTP("127.0.0.1", ${DOVECOT_LISTENERS.lmtp.port})
        s.ehlo_or_helo_if_needed = lambda: s.docmd("LHLO", "test.example")
        s.sendmail("sender@example.net", ["alice@example.test", "bob@example.test"], "Subject: load %d\\r\\nMessage-ID: <load%d@example.net>\\r\\n\\r\\n%s\\r\\n" % (i, i, "word%d " % i * 400))
        s.quit()
    except Exception as e:
        failed.append("%d: %r" % (i, e))
ts = [threading.Thread(target=one, args=(i,)) for i in range(8)]
[t.start() for t in ts]; [t.join() for t in ts]
print("\\n".join(failed))
sys.exit(1 if failed else 0)`;
    let out = "";
    const code = await new Promise<number>((resolve) => {
        const p = spawn("nsenter", [`--net=/run/netns/${dovecot.netns}`, "python3", "-c", py], { stdio: ["ignore", "pipe", "inherit"] });
        p.stdout.on("data", (d) => (out += d));
        p.on("exit", (c) => resolve(c ?? -1));
    });
    clearInterval(poll);
    expect(out.trim()).toBe("");
    expect(code).toBe(0);
    for (const u of ["alice@example.test", "bob@example.test"]) {
        const load = subjects(u, "INBOX").filter((s) => s.startsWith("load "));
        expect(load).toHaveLength(8);
    }
    expect(message("bob@example.test", "load 7")).toMatch(/^X-Spam-Status: /m);
    console.log(`spamd PSS peak under 8 concurrent two-recipient deliveries (max ${settings.maxChildren} children): ${mib(peak.kib)}`);
});

test("a changed mail.cf is linted and spamd reloaded without a restart; a broken one is refused", async () => {
    const pid = spamd.appPid();
    let mark = spamd.logs.length;
    // Threshold 1: even the clean test message (scored ~1.1 above) is spam now.
    writeConfigMapVolume(path.join(dir, "sa"), renderSpamAssassin({ ...settings, requiredScore: 1 }));
    await spamd.waitForLog(/reloaded with config/, 60_000, mark);
    await spamd.waitForLog(/spamd: server started on/, 60_000, mark);
    expect(lmtp(["bob@example.test"], "after reload", "Hi both, shall we have lunch on Friday at noon? The usual place near the office.")).toBe("{}");
    expect(subjects("bob@example.test", "Junk")).toContain("after reload");
    expect(message("bob@example.test", "after reload")).toMatch(/^X-Spam-Status: Yes, score=[\d.]+ required=1\.0/m);
    expect(spamd.appPid()).toBe(pid);

    mark = spamd.logs.length;
    writeConfigMapVolume(path.join(dir, "sa"), { "mail.cf": renderSpamAssassin(settings)["mail.cf"] + "no_such_setting 1\n" });
    await spamd.waitForLog(/config REJECTED, keeping the running one/, 60_000, mark);
});

test("spamd down: mail is delivered unscanned to INBOX with a header saying so", async () => {
    expect(await spamd.stop()).toBe(0);
    expect(lmtp(["alice@example.test"], "while spamd was down", `Still here.\r\n${GTUBE}`)).toBe("{}");
    expect(subjects("alice@example.test", "INBOX")).toContain("while spamd was down");
    const m = message("alice@example.test", "while spamd was down");
    expect(m).toMatch(/^X-Spam-Scan: skipped, spamd unavailable/m);
    expect(m).not.toMatch(/^X-Spam-Flag:/m);
});
