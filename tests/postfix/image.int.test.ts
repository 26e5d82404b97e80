// Builds the Postfix image and runs Postfix's own checks on the rendered config inside it,
// then runs the entrypoint like a pod and drives its config watcher through a ConfigMap swap.
import * as fs from "fs";
import * as path from "path";
import { POSTFIX_LISTENERS, PostfixSettings, renderPostfix } from "../../components/postfix/config";
import { Pod, RunResult, buildImage, selfSignedCert, shInImage, tempDir, writeConfigMapVolume } from "../kit/images";
import { postfixTestSettings } from "../kit/settings";

jest.setTimeout(120_000);

const settings: PostfixSettings = {
    ...postfixTestSettings,
    hostname: "mail.example.test",
    ownDomains: ["example.test"],
    postmaster: "postmaster@example.test",
};
let image: string;
let dir: string;

/** Mounts like the pod: rendered ConfigMap + TLS Secret. */
function mounts(config: string, overrides?: string) {
    return [
        { host: config, ctr: "/etc/mail/defaults/postfix" },
        ...(overrides ? [{ host: overrides, ctr: "/etc/mail/overrides/postfix" }] : []),
        { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
    ];
}

/** Postfix prints its complaints only on a terminal: run the checks under script(1). */
const CHECK = `set -e
mkdir -p /run/mail/postfix/gen && cp -L /etc/mail/defaults/postfix/* /run/mail/postfix/gen/ && ln -s gen /run/mail/postfix/live
script -qec "postfix check" /dev/null
postconf -n >/tmp/n 2>/tmp/warn; postconf -M >/dev/null 2>>/tmp/warn
echo "--postconf-stderr--"; cat /tmp/warn; echo "--main--"; cat /tmp/n; echo "--master--"; postconf -P`;

beforeAll(() => {
    image = buildImage("postfix");
    dir = tempDir("postfix-int");
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert("mail.example.test"), 0o600);
}, 600_000);

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** What postfix check and postconf said, without the printed configuration. */
const complaints = (r: RunResult) => r.stderr + r.stdout.split("--main--")[0];

function check(s: PostfixSettings) {
    const cfg = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}`);
    writeConfigMapVolume(cfg, renderPostfix(s));
    return shInImage(image, CHECK, { mounts: mounts(cfg) });
}

test("postfix check and postconf accept the default rendering without warnings", () => {
    const r = check(settings);
    expect(complaints(r)).not.toMatch(/warning|fatal|error/i);
    expect(r.code).toBe(0);
    const main = r.stdout.split("--main--")[1].split("--master--")[0];
    expect(main).toMatch(/^myhostname = mail\.example\.test$/m);
    expect(main).toMatch(/^smtpd_relay_restrictions = reject_unauth_destination$/m);
    expect(main).toMatch(/^virtual_alias_domains = \$myhostname$/m);
    expect(main).toMatch(/^inbound_header_checks = regexp:\$config_directory\/inbound_header_checks$/m);
    expect(main).toMatch(/^smtpd_forbid_bare_newline = normalize$/m);
    expect(main).toMatch(/^virtual_mailbox_domains = socketmap:inet:couchmail:10101:domains$/m);
    expect(main).toMatch(/^maillog_file = \/dev\/stdout$/m);
    const master = r.stdout.split("--master--")[1];
    expect(master).toMatch(new RegExp(`^${POSTFIX_LISTENERS.submission.port}/inet/smtpd_sasl_auth_enable = yes$`, "m"));
    expect(master).toMatch(new RegExp(`^${POSTFIX_LISTENERS.submissions.port}/inet/smtpd_tls_wrappermode = yes$`, "m"));
});

test("every optional hook renders a config Postfix accepts", () => {
    const r = check({
        ...settings,
        policyService: "inet:postgrey:10023",
        relay: { host: "smtp.relay.example", port: 587, passwordMapFile: "/etc/mail/relay/password" },
        proxyProtocol: true,
        trustedNetworks: ["10.244.0.0/16", "fd00::/8"],
        mainCfOverrides: { smtpd_tls_loglevel: "2" },
    });
    expect(complaints(r)).not.toMatch(/warning|fatal|error/i);
    expect(r.code).toBe(0);
    expect(r.stdout).toMatch(new RegExp(`^${POSTFIX_LISTENERS.smtp.proxy.port}/inet/postscreen_upstream_proxy_protocol = haproxy$`, "m"));
});

test("the same checks fail on a broken config (negative control)", () => {
    const cfg = path.join(dir, "broken");
    const files = renderPostfix(settings);
    writeConfigMapVolume(cfg, { ...files, "main.cf": files["main.cf"] + "this line has no equals sign\n" });
    const r = shInImage(image, CHECK, { mounts: mounts(cfg) });
    expect(r.code).not.toBe(0);
    expect(r.stdout + r.stderr).toMatch(/missing '=' after attribute name/);
});

/** EHLO on the submission port from inside the pod's network namespace; returns the reply. */
function ehlo(pod: Pod): string {
    const script = `exec 3<>/dev/tcp/127.0.0.1/${POSTFIX_LISTENERS.submission.port}; read -t 5 -r l <&3; echo "$l"
printf 'EHLO probe.example.test\\r\\n' >&3; sleep 0.5; timeout 1 cat <&3; printf 'QUIT\\r\\n' >&3`;
    return pod.inNetns(["bash", "-c", script]).stdout;
}

test("watcher: a swapped ConfigMap is validated and reloaded; a bad one is refused; SIGTERM stops cleanly", async () => {
    const cfg = path.join(dir, "live");
    writeConfigMapVolume(cfg, renderPostfix(settings));
    // A user override ConfigMap: its main.cf parameters replace the rendered ones.
    const overrides = path.join(dir, "overrides");
    writeConfigMapVolume(overrides, { "main.cf": "# mine\nsmtpd_banner = $myhostname ESMTP\n  overridden\n" });
    const pod = new Pod(image, ["/usr/local/bin/postfix-entrypoint"], { mounts: mounts(cfg, overrides), env: { WATCH_INTERVAL: "1" } });
    try {
        await pod.waitForLog(/daemon started/);
        expect(ehlo(pod)).toMatch(/^220 mail\.example\.test ESMTP overridden/m);
        expect(ehlo(pod)).toMatch(/^250-SIZE 26214400\r?$/m);

        let mark = pod.logs.length;
        writeConfigMapVolume(cfg, renderPostfix({ ...settings, messageSizeLimit: 30_000_000 }));
        await pod.waitForLog(/reloaded with config/, 30_000, mark);
        await pod.waitForLog(/postfix\/master\[\d+\]: reload/, 10_000, mark);
        expect(ehlo(pod)).toMatch(/^250-SIZE 30000000\r?$/m);

        mark = pod.logs.length;
        const good = renderPostfix({ ...settings, messageSizeLimit: 30_000_000 });
        writeConfigMapVolume(cfg, { ...good, "main.cf": good["main.cf"] + "broken line\n" });
        await pod.waitForLog(/config REJECTED, keeping the running one: .*missing '='/, 30_000, mark);
        expect(ehlo(pod)).toMatch(/^250-SIZE 30000000\r?$/m);

        mark = pod.logs.length;
        expect(await pod.stop()).toBe(0);
        expect(pod.logs.slice(mark)).toMatch(/SIGTERM: stopping Postfix[\s\S]*Postfix stopped/);
    } finally {
        await pod.remove();
    }
});

test("real postmap: the inbound From: check rejects our domains only, and the mail host's aliases reach the postmaster", () => {
    const cfg = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}`);
    writeConfigMapVolume(cfg, renderPostfix(settings));
    const q = (key: string, table: string) => `out=$(postmap -c /etc/mail/defaults/postfix -q '${key}' '${table}'); echo "$out rc=$?"`;
    const checks = "regexp:/etc/mail/defaults/postfix/inbound_header_checks";
    const r = shInImage(
        image,
        [
            q('From: "Boss" <boss@example.test>', checks),
            q("From: x@sub.example.test", checks),
            q("From: x@example.test.evil", checks),
            q("From: x@external.test", checks),
            `aliases=$(postconf -c /etc/mail/defaults/postfix -h virtual_alias_maps | sed 's/, socketmap:.*//')`,
            `out=$(postmap -c /etc/mail/defaults/postfix -q postmaster@mail.example.test "$aliases"); echo "$out rc=$?"`,
            `out=$(postmap -c /etc/mail/defaults/postfix -q abuse@mail.example.test "$aliases"); echo "$out rc=$?"`,
            `out=$(postmap -c /etc/mail/defaults/postfix -q nobody@mail.example.test "$aliases"); echo "$out rc=$?"`,
        ].join("\n"),
        { mounts: [{ host: cfg, ctr: "/etc/mail/defaults/postfix" }] },
    );
    expect(r.stderr).toBe("");
    const rejected = "REJECT 5.7.1 Mail from our own domains is accepted only from authenticated users (submission) rc=0";
    expect(r.stdout.trim().split("\n")).toEqual([
        rejected,
        rejected,
        " rc=1",
        " rc=1",
        "postmaster@example.test rc=0",
        "postmaster@example.test rc=0",
        " rc=1",
    ]);
});

test("policyd-spf, which master.cf spawns as nobody, answers Postfix's policy protocol", () => {
    const request = [
        "request=smtpd_access_policy",
        "protocol_state=RCPT",
        "protocol_name=ESMTP",
        "client_address=192.0.2.1",
        "client_name=unknown",
        "helo_name=mx.example.invalid",
        "sender=a@example.invalid",
        "recipient=b@example.test",
        "instance=1",
        "",
        "",
    ].join("\n");
    const r = shInImage(image, `printf '%s' '${request}' | timeout 30 /usr/bin/policyd-spf`, { user: "nobody" });
    expect(r.stderr).toBe("");
    // No DNS inside the test container: the result is "None", recorded in a header, never a rejection.
    expect(r.stdout).toMatch(/^action=prepend Received-SPF: None \(mailfrom\) identity=mailfrom; client-ip=192\.0\.2\.1;/);
});
