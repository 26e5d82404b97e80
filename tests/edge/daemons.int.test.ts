// Real Postfix and Dovecot (our images) behind what the edge sends them: the mounted certificate on every TLS port,
// certificate swaps picked up without a restart, and PROXY v1 headers on the PROXY-only ports.
import * as fs from "fs";
import * as path from "path";
import { ChildProcess, execFileSync, spawn } from "child_process";
import { DOVECOT_LISTENERS, renderDovecot } from "../../components/dovecot/config";
import { POSTFIX_LISTENERS, renderPostfix } from "../../components/postfix/config";
import { Pod, buildImage, selfSignedCert, tempDir, writeConfigMapVolume } from "../kit/images";
import { dovecotTestSettings, postfixTestSettings } from "../kit/settings";

jest.setTimeout(180_000);

const HOST = "mail.example.test";
/** A source address inside the trusted network (10.0.0.0/8), added to the pod's loopback. */
const TRUSTED_SOURCE = "10.250.9.1";
const TRUSTED = ["10.0.0.0/8"];

let dir: string;
let tlsDir: string;

/** SHA-256 fingerprint of a PEM certificate. */
function fingerprint(pem: string): string {
    return execFileSync("openssl", ["x509", "-noout", "-fingerprint", "-sha256"], { input: pem, encoding: "utf8" }).trim().split("=")[1];
}

/** The certificate a port serves, as seen by a TLS client inside the pod's network (STARTTLS where given). */
function servedFingerprint(pod: Pod, port: number, starttls?: "smtp" | "imap"): string {
    const r = pod.inNetns([
        "bash",
        "-c",
        `openssl s_client -connect 127.0.0.1:${port} -servername ${HOST} ${starttls ? `-starttls ${starttls}` : ""} </dev/null 2>/dev/null | openssl x509 -noout -fingerprint -sha256`,
    ]);
    return r.stdout.trim().split("=")[1] ?? `none (${r.stderr.trim()})`;
}

/**
 * A raw TCP client run by node inside the pod's network namespace: sends `steps` (text to write, or a wait for a
 * regexp), returns the transcript of what the server said and whether it closed the connection.
 */
/** Whether a TLS 1.2 handshake offering only `ciphers` succeeds on a port (STARTTLS where given), from inside the pod. */
function negotiates(pod: Pod, port: number, ciphers: string, starttls?: "smtp" | "imap"): boolean {
    const r = pod.inNetns([
        "bash",
        "-c",
        `openssl s_client -connect 127.0.0.1:${port} -tls1_2 -cipher '${ciphers}' ${starttls ? `-starttls ${starttls}` : ""} </dev/null 2>&1`,
    ]);
    return /^\s*Cipher\s*:\s*[A-Z0-9-]+$/m.test(r.stdout) && !/Cipher\s*:\s*0000/.test(r.stdout);
}

/**
 * Ports where clients send passwords offer Mozilla's intermediate TLS 1.2 suites only: an anonymous suite (a MITM
 * needs no certificate), RSA key exchange (no forward secrecy) and CBC suites are refused.
 */
function expectIntermediateTlsOnly(pod: Pod, port: number, starttls?: "smtp" | "imap"): void {
    expect({ port, ecdhe: negotiates(pod, port, "ECDHE-RSA-AES128-GCM-SHA256", starttls) }).toEqual({ port, ecdhe: true });
    for (const refused of ["aNULL:@SECLEVEL=0", "AES128-GCM-SHA256", "ECDHE-RSA-AES128-SHA"]) {
        expect({ port, refused, negotiated: negotiates(pod, port, refused, starttls) }).toEqual({ port, refused, negotiated: false });
    }
}

/**
 * The daemon serves the mounted certificate on a STARTTLS port and an implicit-TLS port, and after a Secret-style
 * swap of the files it serves the renewed one on both, with the same master process (reloaded, not restarted).
 */
async function expectCertificateSwapServed(pod: Pod, tlsDir: string, plain: { port: number; starttls: "smtp" | "imap" }, implicitPort: number): Promise<void> {
    const first = fingerprint(fs.readFileSync(path.join(tlsDir, "tls.crt"), "utf8"));
    expect(servedFingerprint(pod, plain.port, plain.starttls)).toBe(first);
    expect(servedFingerprint(pod, implicitPort)).toBe(first);
    const master = pod.appPid();

    const mark = pod.logs.length;
    const renewed = selfSignedCert(HOST);
    writeConfigMapVolume(tlsDir, renewed, 0o600);
    await pod.waitForLog(/reloaded with config/, 30_000, mark);
    const second = fingerprint(renewed["tls.crt"]);
    expect(second).not.toBe(first);
    expect(servedFingerprint(pod, plain.port, plain.starttls)).toBe(second);
    expect(servedFingerprint(pod, implicitPort)).toBe(second);
    expect(pod.appPid()).toBe(master);
}

function talk(
    pod: Pod,
    port: number,
    steps: ({ send: string } | { expect: string })[],
    opts: { from?: string; timeoutMs?: number } = {},
): { said: string; closed: boolean } {
    const script = `
const net = require("net");
const [port, from, timeoutMs, steps] = JSON.parse(process.argv[1]);
let said = "", closed = false, i = 0;
const s = net.connect({ port, host: "127.0.0.1", localAddress: from || undefined });
const done = () => { process.stdout.write(JSON.stringify({ said, closed })); process.exit(0); };
const next = () => {
  while (i < steps.length) {
    const st = steps[i];
    if (st.send !== undefined) { s.write(st.send); i++; continue; }
    if (new RegExp(st.expect, "m").test(said)) { i++; continue; }
    return;
  }
  s.end(); setTimeout(done, 300);
};
s.on("connect", next);
s.on("data", (d) => { said += d; next(); });
s.on("close", () => { closed = true; done(); });
s.on("error", (e) => { said += "ERROR " + e.code; closed = true; done(); });
setTimeout(done, timeoutMs);
`;
    const r = pod.inNetns([process.execPath, "-e", script, JSON.stringify([port, opts.from ?? "", opts.timeoutMs ?? 15_000, steps])]);
    return JSON.parse(r.stdout || `{"said":"${r.stderr.replace(/\W/g, " ")}","closed":true}`);
}

beforeAll(() => {
    buildImage("postfix");
    buildImage("dovecot");
    dir = tempDir("edge-int");
    tlsDir = path.join(dir, "tls");
    writeConfigMapVolume(tlsDir, selfSignedCert(HOST), 0o600);
}, 600_000);

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** Submission smtpd exits without SASL mechanisms: a stand-in for Dovecot's auth listener that offers PLAIN and denies everyone. */
const FAKE_AUTH_PORT = 12345;
const FAKE_AUTH = `require("net").createServer((c) => {
  c.write("VERSION\\t1\\t2\\nMECH\\tPLAIN\\tplaintext\\nSPID\\t1\\nCUID\\t1\\nCOOKIE\\t${"0".repeat(32)}\\nDONE\\n");
  c.on("data", (d) => { const m = /^AUTH\\t(\\d+)/m.exec(String(d)); if (m) c.write("FAIL\\t" + m[1] + "\\n"); });
}).listen(${FAKE_AUTH_PORT}, "127.0.0.1");`;

describe("Postfix", () => {
    let pod: Pod;
    let fakeAuth: ChildProcess | undefined;
    beforeAll(async () => {
        const cfg = path.join(dir, "postfix");
        writeConfigMapVolume(
            cfg,
            renderPostfix({
                ...postfixTestSettings,
                hostname: HOST,
                // Nothing to reach in this pod: no DNSBLs, no milter.
                dnsbls: [],
                milters: [],
                saslEndpoint: `inet:127.0.0.1:${FAKE_AUTH_PORT}`,
                proxyProtocol: true,
                // Policing by client address: this one address is refused, wherever its connection arrives.
                mainCfOverrides: { smtpd_client_restrictions: "check_client_access inline:{ { 198.51.100.66 = REJECT banned by address } }" },
            }),
        );
        pod = new Pod(buildImage("postfix"), ["/usr/local/bin/postfix-entrypoint"], {
            mounts: [
                { host: cfg, ctr: "/etc/mail/defaults/postfix" },
                { host: tlsDir, ctr: "/etc/mail/tls" },
            ],
            env: { WATCH_INTERVAL: "1" },
        });
        fakeAuth = spawn("nsenter", [`--net=/run/netns/${pod.netns}`, process.execPath, "-e", FAKE_AUTH], { stdio: "ignore" });
        await pod.waitForLog(/daemon started/, 60_000);
    });
    afterAll(async () => {
        fakeAuth?.kill();
        await pod?.remove();
    });

    it("serves the mounted certificate on 587 (STARTTLS) and 465, and a swapped one without a restart", async () => {
        await expectCertificateSwapServed(pod, tlsDir, { port: POSTFIX_LISTENERS.submission.port, starttls: "smtp" }, POSTFIX_LISTENERS.submissions.port);
    });

    it("offers only intermediate TLS suites on 587 and 465; port 25 stays broad for opportunistic TLS", () => {
        expectIntermediateTlsOnly(pod, POSTFIX_LISTENERS.submission.port, "smtp");
        expectIntermediateTlsOnly(pod, POSTFIX_LISTENERS.submissions.port);
        expect(negotiates(pod, POSTFIX_LISTENERS.smtp.port, "AES128-GCM-SHA256", "smtp")).toBe(true);
    });

    const smtp = (proxy?: string) => [
        ...(proxy ? [{ send: proxy }] : []),
        { expect: "^220 " },
        { send: "EHLO client.example\r\n" },
        { expect: "^250 " },
        { send: "MAIL FROM:<a@example.net>\r\n" },
        { expect: "^250 " },
        { send: "RCPT TO:<b@example.test>\r\n" },
        { expect: "^[45]\\d\\d " },
        { send: "QUIT\r\n" },
    ];

    it("takes the client address from a PROXY v1 header on the PROXY-only port: logged and policed by it", async () => {
        const mark = pod.logs.length;
        const banned = talk(pod, POSTFIX_LISTENERS.smtp.proxy.port, smtp("PROXY TCP4 198.51.100.66 10.0.0.5 40001 25\r\n"));
        expect(banned.said).toMatch(/^554 5\.7\.1 <unknown\[198\.51\.100\.66\]>: Client host rejected: banned by address/m);
        await pod.waitForLog(/postfix\/smtp-proxy\/smtpd\[\d+\]: connect from unknown\[198\.51\.100\.66\]/, 10_000, mark);

        const other = talk(pod, POSTFIX_LISTENERS.smtp.proxy.port, smtp("PROXY TCP4 198.51.100.67 10.0.0.5 40002 25\r\n"));
        expect(other.said).toMatch(/^250 /m);
        expect(other.said).not.toMatch(/banned by address/);
        await pod.waitForLog(/connect from unknown\[198\.51\.100\.67\]/, 10_000, mark);
    });

    it("refuses a plain connection on the PROXY-only port", async () => {
        const mark = pod.logs.length;
        const plain = talk(pod, POSTFIX_LISTENERS.smtp.proxy.port, [{ send: "EHLO client.example\r\n" }, { expect: "^220 " }], { timeoutMs: 10_000 });
        expect(plain.said).not.toMatch(/^220 /m);
        expect(plain.closed).toBe(true);
        await pod.waitForLog(/haproxy/i, 10_000, mark);
    });

    it("still serves the plain port, with the real peer as client", async () => {
        const mark = pod.logs.length;
        const plain = talk(pod, POSTFIX_LISTENERS.smtp.port, smtp());
        expect(plain.said).toMatch(new RegExp(`^220 ${HOST.replace(/\./g, "\\.")} ESMTP`, "m"));
        expect(plain.said).not.toMatch(/banned by address/);
        await pod.waitForLog(/connect from localhost\[127\.0\.0\.1\]/, 10_000, mark);
    });
});

describe("Dovecot", () => {
    let pod: Pod;
    beforeAll(async () => {
        const cfg = path.join(dir, "dovecot");
        writeConfigMapVolume(cfg, renderDovecot({ ...dovecotTestSettings, hostname: HOST, proxyProtocol: true, haproxyTrustedNetworks: TRUSTED }));
        const lua = path.join(dir, "lua");
        fs.mkdirSync(lua);
        // Logins are not under test: an auth script that knows nobody.
        fs.writeFileSync(
            path.join(lua, "auth.lua"),
            "function auth_passdb_lookup(req) return dovecot.auth.PASSDB_RESULT_USER_UNKNOWN, '' end\nfunction auth_userdb_lookup(req) return dovecot.auth.USERDB_RESULT_USER_UNKNOWN, '' end\n",
        );
        pod = new Pod(buildImage("dovecot"), ["/usr/local/bin/dovecot-entrypoint"], {
            mounts: [
                { host: cfg, ctr: "/etc/mail/defaults/dovecot" },
                { host: tlsDir, ctr: "/etc/mail/tls" },
                { host: lua, ctr: path.dirname(dovecotTestSettings.luaFile) },
            ],
            env: { WATCH_INTERVAL: "1" },
        });
        execFileSync("ip", ["-n", pod.netns, "addr", "add", `${TRUSTED_SOURCE}/32`, "dev", "lo"]);
        await pod.waitForLog(/starting up for imap/, 60_000);
    });
    afterAll(async () => {
        await pod?.remove();
    });

    it("serves the mounted certificate on 143 (STARTTLS) and 993, and a swapped one without a restart", async () => {
        await expectCertificateSwapServed(pod, tlsDir, { port: DOVECOT_LISTENERS.imap.port, starttls: "imap" }, DOVECOT_LISTENERS.imaps.port);
    });

    it("offers only intermediate TLS suites on 143 and 993", () => {
        expectIntermediateTlsOnly(pod, DOVECOT_LISTENERS.imap.port, "imap");
        expectIntermediateTlsOnly(pod, DOVECOT_LISTENERS.imaps.port);
    });

    it("takes the client address from a PROXY v1 header sent by a trusted source", async () => {
        const mark = pod.logs.length;
        const r = talk(
            pod,
            DOVECOT_LISTENERS.imap.proxy.port,
            [{ send: `PROXY TCP4 198.51.100.66 ${TRUSTED_SOURCE} 40001 143\r\n` }, { expect: "^\\* OK" }, { send: "a LOGOUT\r\n" }, { expect: "^a OK" }],
            { from: TRUSTED_SOURCE },
        );
        expect(r.said).toMatch(/^\* OK/m);
        await pod.waitForLog(/imap-login: .*rip=198\.51\.100\.66/, 10_000, mark);
    });

    it("refuses a PROXY header from an untrusted source, and a connection without one", () => {
        const untrusted = talk(pod, DOVECOT_LISTENERS.imap.proxy.port, [{ send: "PROXY TCP4 198.51.100.66 127.0.0.1 40001 143\r\n" }, { expect: "^\\* OK" }], {
            timeoutMs: 10_000,
        });
        expect(untrusted.said).not.toMatch(/^\* OK/m);
        expect(untrusted.closed).toBe(true);
        const plain = talk(pod, DOVECOT_LISTENERS.imap.proxy.port, [{ send: "a CAPABILITY\r\n" }, { expect: "^\\* OK" }], {
            from: TRUSTED_SOURCE,
            timeoutMs: 10_000,
        });
        expect(plain.said).not.toMatch(/^\* OK/m);
        expect(plain.closed).toBe(true);
    });

    it("still serves the plain port, with the real peer as client", async () => {
        const mark = pod.logs.length;
        const r = talk(pod, DOVECOT_LISTENERS.imap.port, [{ expect: "^\\* OK" }, { send: "a LOGOUT\r\n" }, { expect: "^a OK" }]);
        expect(r.said).toMatch(/^\* OK/m);
        await pod.waitForLog(/imap-login: .*rip=127\.0\.0\.1/, 10_000, mark);
    });
});
