// Builds the Dovecot image, runs doveconf/sievec on the rendered config inside it, and drives the
// entrypoint's watcher like a pod would see a ConfigMap update.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { DOVECOT_LISTENERS, DovecotSettings, renderDovecot } from "../../components/dovecot/config";
import { Pod, buildImage, selfSignedCert, shInImage, tempDir, writeConfigMapVolume } from "../kit/images";
import { dovecotTestSettings } from "../kit/settings";

jest.setTimeout(120_000);

const settings: DovecotSettings = { ...dovecotTestSettings, hostname: "mail.example.test" };
const withHooks: DovecotSettings = {
    ...settings,
    spamToJunk: true,
    imapsieveTraining: { pipeBinDir: "/usr/local/lib/mail/learn" },
    proxyProtocol: true,
    haproxyTrustedNetworks: ["10.0.0.0/8"],
};
// Stand-in for couchmail's script: enough for Dovecot's auth process to load it.
const STUB_LUA = `function script_init(args) return 0 end
function auth_passdb_lookup(req) return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, "" end
function auth_userdb_lookup(req) return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, "" end
`;
let image: string;
let dir: string;

function mounts(config: string) {
    return [
        { host: config, ctr: "/etc/mail/defaults/dovecot" },
        { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
        { host: path.join(dir, "lua"), ctr: "/etc/mail/couchmail" },
    ];
}

beforeAll(() => {
    image = buildImage("dovecot");
    dir = tempDir("dovecot-int");
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert("mail.example.test"), 0o600);
    writeConfigMapVolume(path.join(dir, "lua"), { "auth.lua": STUB_LUA });
}, 600_000);

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** doveconf -n, then sievec on every shipped script; the live dir is where the renderer points. */
const CHECK = `set -e
mkdir -p /run/mail/dovecot/gen && cp -L /etc/mail/defaults/dovecot/* /run/mail/dovecot/gen/ && ln -s gen /run/mail/dovecot/live
doveconf -c /run/mail/dovecot/live/dovecot.conf -n
echo "--cleartext: $(doveconf -c /run/mail/dovecot/live/dovecot.conf -h auth_allow_cleartext)"
for f in /run/mail/dovecot/live/*.sieve; do [ -e "$f" ] || continue; sievec -c /run/mail/dovecot/live/dovecot.conf "$f"; echo "--compiled $(basename "$f")"; done`;

function check(files: Record<string, string>) {
    const cfg = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}`);
    writeConfigMapVolume(cfg, files);
    return shInImage(image, CHECK, { mounts: mounts(cfg) });
}

/** The body of `inet_listener NAME { … }` in doveconf -n output. */
const listenerPort = (out: string, name: string) => /port = (\d+)/.exec(new RegExp(`inet_listener ${name} \\{([^}]*)\\}`).exec(out)?.[1] ?? "")?.[1];

test("doveconf accepts the default rendering; listeners, TLS and auth as rendered", () => {
    const r = check(renderDovecot(settings));
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(/^dovecot_config_version = 2\.4\.1$/m);
    expect(listenerPort(r.stdout, "imap")).toBe(String(DOVECOT_LISTENERS.imap.port));
    expect(listenerPort(r.stdout, "imaps")).toBe(String(DOVECOT_LISTENERS.imaps.port));
    expect(listenerPort(r.stdout, "lmtp")).toBe(String(DOVECOT_LISTENERS.lmtp.port));
    expect(listenerPort(r.stdout, "sieve")).toBe(String(DOVECOT_LISTENERS.sieve.port));
    expect(listenerPort(r.stdout, "auth_sasl")).toBe(String(DOVECOT_LISTENERS.authSasl.port));
    expect(r.stdout).toMatch(/^ssl = required$/m);
    expect(r.stdout).toMatch(/^--cleartext: no$/m);
    expect(r.stdout).toMatch(/passdb lua \{\n\s*lua_file = \/etc\/mail\/couchmail\/auth\.lua/);
    expect(r.stdout).not.toMatch(/port = 2000/);
});

test("with spam scanning, training and PROXY listeners on, doveconf accepts it and every shipped sieve script compiles", () => {
    const files = renderDovecot(withHooks);
    const r = check(files);
    expect(r.stderr).toBe("");
    expect(r.code).toBe(0);
    expect(listenerPort(r.stdout, "imaps_proxy")).toBe(String(DOVECOT_LISTENERS.imaps.proxy.port));
    expect(r.stdout).toMatch(/inet_listener imaps_proxy \{[^}]*haproxy = yes/);
    const scripts = Object.keys(files).filter((f) => f.endsWith(".sieve"));
    expect(scripts.sort()).toEqual(["learn-ham.sieve", "learn-spam.sieve", "spam.sieve"]);
    for (const s of scripts) expect(r.stdout).toContain(`--compiled ${s}`);
});

test("negative controls: doveconf rejects a 2.3 setting and sievec rejects a broken script", () => {
    const files = renderDovecot(withHooks);
    const bad = check({ ...files, "dovecot.conf": files["dovecot.conf"] + "mail_location = maildir:~/Maildir\n" });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/mail_location: Unknown setting/);
    const badSieve = check({ ...files, "spam.sieve": 'require ["fileinto"];\nfileinto "Junk"\n' });
    expect(badSieve.code).not.toBe(0);
    expect(badSieve.stderr + badSieve.stdout).toMatch(/error/i);
});

/** The IMAP greeting, read from inside the pod's network namespace. */
function greeting(pod: Pod): string {
    return pod.inNetns(["bash", "-c", `exec 3<>/dev/tcp/127.0.0.1/${DOVECOT_LISTENERS.imap.port}; read -t 5 -r l <&3; echo "$l"`]).stdout;
}

test("watcher: a ConfigMap swap is validated and reloaded, a bad one refused, SIGTERM stops cleanly", async () => {
    const cfg = path.join(dir, "live");
    writeConfigMapVolume(cfg, renderDovecot({ ...settings, spamToJunk: true }));
    const pod = new Pod(image, ["/usr/local/bin/dovecot-entrypoint"], { mounts: mounts(cfg), env: { WATCH_INTERVAL: "1" } });
    try {
        await pod.waitForLog(/starting up for imap, lmtp, sieve/);
        await pod.waitForLog(/config [0-9a-f]{12} active/);
        expect(greeting(pod)).toMatch(/^\* OK .*Dovecot .*ready/);

        let mark = pod.logs.length;
        writeConfigMapVolume(cfg, renderDovecot({ ...settings, spamToJunk: true, settingsOverrides: { login_greeting: "Reloaded mail" } }));
        await pod.waitForLog(/SIGHUP received - reloading configuration/, 30_000, mark);
        await pod.waitForLog(/reloaded with config/, 10_000, mark);
        expect(greeting(pod)).toMatch(/^\* OK .*Reloaded mail/);

        // A renewed certificate (Secret update) is picked up without a restart.
        const served = () =>
            pod.inNetns([
                "bash",
                "-c",
                `openssl s_client -connect 127.0.0.1:${DOVECOT_LISTENERS.imaps.port} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
            ]).stdout;
        const before = served();
        expect(before).toMatch(/Fingerprint/);
        const renewed = selfSignedCert("mail.example.test");
        mark = pod.logs.length;
        writeConfigMapVolume(path.join(dir, "tls"), renewed, 0o600);
        await pod.waitForLog(/reloaded with config/, 30_000, mark);
        const fp = execFileSync("openssl", ["x509", "-noout", "-fingerprint", "-sha256"], { input: renewed["tls.crt"], encoding: "utf8" });
        expect(served()).toBe(fp);
        expect(fp).not.toBe(before);

        mark = pod.logs.length;
        writeConfigMapVolume(cfg, renderDovecot({ ...settings, spamToJunk: true, settingsOverrides: { login_greeting: "Broken", mail_debug: "maybe" } }));
        await pod.waitForLog(/config REJECTED, keeping the running one: .*mail_debug/, 30_000, mark);
        expect(greeting(pod)).toMatch(/^\* OK .*Reloaded mail/);

        mark = pod.logs.length;
        expect(await pod.stop()).toBe(0);
        expect(pod.logs.slice(mark)).toMatch(/SIGTERM: stopping Dovecot[\s\S]*Dovecot stopped/);
    } finally {
        await pod.remove();
    }
});
