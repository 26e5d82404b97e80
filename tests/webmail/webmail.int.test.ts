// Roundcube in our webmail image against our Dovecot image, like the two pods of the stack: the webmail container
// joins Dovecot's network namespace (Dovecot on its loopback), couchmail runs in this process with the harness' users.
// A client at its own address logs in through Roundcube's form over HTTPS (curl, keeping cookies like a browser),
// reads a message and opens the filter settings; Dovecot's log must show that client's address, not the pod's.
import { ChildProcess, execFile, execFileSync, spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { pathToFileURL } from "url";
import { COUCHMAIL } from "../../components/couchmail";
import { DovecotSettings, renderDovecot } from "../../components/dovecot/config";
import { WEBMAIL_DEFAULTS, WEBMAIL_HEALTH_PATH, WEBMAIL_LISTENERS, WebmailSettings, renderWebmail } from "../../components/webmail/config";
import { WEBMAIL_UID } from "../../components/webmail";
import { Stack, startStack, waitFor } from "../../couchmail/test/harness";
import { Pod, buildImage, selfSignedCert, tempDir, writeConfigMapVolume } from "../kit/images";
import { dovecotTestSettings } from "../kit/settings";
import { Browser } from "./browser";
import { HttpReply, WebmailClient, containerMemory } from "./client";

jest.setTimeout(300_000);

const HOST = "mail.example.test";
/** The browser's address, on the shared loopback: Roundcube must pass it on to Dovecot. */
const BROWSER = "10.251.0.7";
/** Where the browser's screenshot of the message is kept (a test artifact). */
const SCREENSHOT = path.join(os.tmpdir(), "mail-artifacts", "webmail-int-message.png");
const TOOLS = path.join(__dirname, "../dovecot/netns-tools.ts");
const TSX = pathToFileURL(require.resolve("tsx")).href;

// Roundcube connects from the pod's loopback: trusted to tell the client's address (the stack trusts the pod network).
const dovecot: DovecotSettings = { ...dovecotTestSettings, hostname: HOST, settingsOverrides: { login_trusted_networks: "127.0.0.0/8 ::1/128" } };
const webmail = (over: Partial<WebmailSettings> = {}): WebmailSettings => ({
    ...WEBMAIL_DEFAULTS,
    hostname: HOST,
    mailHostname: HOST,
    imapHost: "localhost",
    smtpHost: "localhost",
    publicHttpsPort: WEBMAIL_LISTENERS.https.port,
    upstreamCaFile: "/etc/mail/tls/tls.crt",
    messageSizeLimit: 26214400,
    ...over,
});

let dir: string;
let st: Stack;
let mailPod: Pod;
let webPod: Pod;
let relay: ChildProcess;
let client: WebmailClient;

/** A directory as the kubelet gives it to a pod with fsGroup: group-owned by the webmail user, group-writable. */
function podVolume(name: string): string {
    const d = path.join(dir, name);
    fs.mkdirSync(d, { recursive: true });
    fs.chownSync(d, 0, WEBMAIL_UID);
    fs.chmodSync(d, 0o2775);
    return d;
}

/** IMAP APPEND of a message to bob's INBOX over TLS, inside the pods' network namespace (asynchronously: see client.ts). */
function appendToBob(subject: string, body: string): Promise<void> {
    const script = `import imaplib, ssl
c = imaplib.IMAP4_SSL("127.0.0.1", 993, ssl_context=ssl._create_unverified_context())
c.login("bob@example.org", "battery staple")
msg = "From: alice@example.org\\r\\nTo: bob@example.org\\r\\nSubject: ${subject}\\r\\n\\r\\n${body}\\r\\n"
print(c.append("INBOX", None, None, msg.encode()))
c.logout()`;
    return new Promise((resolve, reject) =>
        execFile("nsenter", [`--net=/run/netns/${mailPod.netns}`, "python3", "-c", script], (error, _stdout, stderr) =>
            error ? reject(new Error(`APPEND failed: ${stderr}\nDovecot's log:\n${mailPod.logs.slice(-4000)}`)) : resolve(),
        ),
    );
}

beforeAll(async () => {
    buildImage("dovecot");
    const image = buildImage("webmail");
    dir = tempDir("webmail-int");
    st = await startStack({ serve: (d) => ({ http: [{ kind: "unix", path: path.join(d, "http.sock") }] }) });
    await waitFor(() => st.running.cache.loaded, 20_000);
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert(HOST), 0o640);
    execFileSync("chgrp", ["-R", String(WEBMAIL_UID), path.join(dir, "tls")]);
    writeConfigMapVolume(path.join(dir, "lua"), {
        [COUCHMAIL.luaFile]: fs.readFileSync(path.join(__dirname, "../../couchmail/lua/couchmail-auth.lua"), "utf8"),
    });
    writeConfigMapVolume(path.join(dir, "dovecot"), renderDovecot(dovecot));
    mailPod = new Pod("mail/dovecot:dev", ["/usr/local/bin/dovecot-entrypoint"], {
        mounts: [
            { host: path.join(dir, "dovecot"), ctr: "/etc/mail/defaults/dovecot" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            { host: path.join(dir, "lua"), ctr: COUCHMAIL.luaMountDir },
        ],
        env: { WATCH_INTERVAL: "1" },
    });
    execFileSync("ip", ["-n", mailPod.netns, "addr", "add", `${BROWSER}/32`, "dev", "lo"]);
    relay = spawn(
        "nsenter",
        [`--net=/run/netns/${mailPod.netns}`, process.execPath, "--import", TSX, TOOLS, "forward", String(COUCHMAIL.httpPort), path.join(st.dir, "http.sock")],
        {
            stdio: ["ignore", "pipe", "inherit"],
        },
    );
    await new Promise<void>((resolve, reject) => {
        relay.stdout!.on("data", (c: Buffer) => c.toString().includes("forwarding") && resolve());
        relay.on("exit", (code) => reject(new Error(`the couchmail relay exited (${code}); Dovecot's log:\n${mailPod.logs}`)));
    });
    await mailPod.waitForLog(/config [0-9a-f]{12} active/, 60_000);

    writeConfigMapVolume(podVolume("config"), renderWebmail(webmail()));
    webPod = new Pod(image, ["/usr/local/bin/webmail-entrypoint"], {
        network: mailPod,
        user: `${WEBMAIL_UID}:${WEBMAIL_UID}`,
        env: { WATCH_INTERVAL: "1" },
        mounts: [
            { host: path.join(dir, "config"), ctr: "/etc/mail/defaults/webmail" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            // The pod's emptyDirs and its SQLite claim: everything else is the read-only image.
            { host: podVolume("data"), ctr: WEBMAIL_DEFAULTS.dataDir, ro: false },
            { host: podVolume("run"), ctr: "/run/webmail", ro: false },
            { host: podVolume("run-mail"), ctr: "/run/mail", ro: false },
            { host: podVolume("tmp"), ctr: "/tmp", ro: false },
        ],
    });
    client = new WebmailClient({
        netns: mailPod.netns,
        host: HOST,
        port: WEBMAIL_LISTENERS.https.port,
        source: BROWSER,
        caFile: path.join(dir, "tls/tls.crt"),
    });
    await webPod.waitForLog(/config [0-9a-f]{12} active/, 60_000);
    await client.waitForHealth(WEBMAIL_LISTENERS.http.port, WEBMAIL_HEALTH_PATH).catch((e: Error) => {
        throw new Error(`${e.message}; the webmail container's log:\n${webPod.logs}`);
    });
}, 1_200_000);

afterAll(async () => {
    relay?.kill();
    await webPod?.remove();
    await mailPod?.remove();
    await st?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("HTTP only redirects to the HTTPS name; the health path answers through PHP-FPM", async () => {
    const r = await client.plain(WEBMAIL_LISTENERS.http.port, "/?_task=mail&x=1");
    expect(r.status).toBe(308);
    expect(r.headers.location).toBe(`https://${HOST}:${WEBMAIL_LISTENERS.https.port}/?_task=mail&x=1`);
    const health = await client.plain(WEBMAIL_LISTENERS.http.port, WEBMAIL_HEALTH_PATH);
    expect({ status: health.status, body: health.body.trim() }).toEqual({ status: 200, body: "pong" });
});

test("the login page: security headers, and no PHP or nginx version given away", async () => {
    const page = await client.get("/");
    expect(page.status).toBe(200);
    expect(page.body).toMatch(/name="_token"/);
    expect(page.headers["strict-transport-security"]).toMatch(/^max-age=31536000/);
    expect(page.headers["content-security-policy"]).toMatch(/frame-ancestors 'self'/);
    expect(page.headers["x-content-type-options"]).toBe("nosniff");
    expect(page.headers["x-powered-by"]).toBeUndefined();
    expect(page.headers.server).toBe("nginx");
});

test("a wrong password is refused, with the client's address in Dovecot's log", async () => {
    const mark = mailPod.logs.length;
    const r = await client.login("bob@example.org", "not the password");
    expect(r.status).toBe(401);
    await mailPod.waitForLog(new RegExp(`user=<bob@example\\.org>.*rip=${BROWSER.replace(/\./g, "\\.")}`), 20_000, mark);
});

describe("logged in as bob", () => {
    let login: HttpReply;
    beforeAll(async () => {
        await appendToBob("Hello from the int test", "Read me through Roundcube.");
        login = await client.login("bob@example.org", "battery staple");
    });

    test("the session cookie is Secure, HttpOnly and SameSite=Strict; Dovecot saw the browser's address", async () => {
        expect(login.status).toBe(302);
        expect(login.headers.location).toMatch(/_task=mail/);
        const session = login.cookies.find((c) => /^roundcube_sessid=/.test(c) && !/=deleted/.test(c));
        expect(session).toBeDefined();
        expect(session).toMatch(/; secure/i);
        expect(session).toMatch(/; HttpOnly/i);
        expect(session).toMatch(/; SameSite=Strict/i);
        await mailPod.waitForLog(new RegExp(`imap-login: Info: Logged in: user=<bob@example\\.org>.*rip=${BROWSER.replace(/\./g, "\\.")}`), 20_000);
    });

    test("reads the message", async () => {
        const list = await client.get("/?_task=mail&_mbox=INBOX");
        expect(list.status).toBe(200);
        const show = await client.get("/?_task=mail&_mbox=INBOX&_uid=1&_action=show");
        expect(show.status).toBe(200);
        expect(show.body).toContain("Hello from the int test");
        expect(show.body).toContain("Read me through Roundcube.");
    });

    test("in headless Chromium: the login form, the message list, the message; no Content-Security-Policy violation", async () => {
        const browser = await Browser.launch({
            netns: mailPod.netns,
            resolve: { [HOST]: "127.0.0.1" },
            trustedCertPem: fs.readFileSync(path.join(dir, "tls/tls.crt"), "utf8"),
        });
        try {
            const origin = `https://${HOST}:${WEBMAIL_LISTENERS.https.port}`;
            await browser.goto(`${origin}/`);
            await browser.navigating(() =>
                browser.evaluate(`(() => {
                    document.querySelector("#rcmloginuser").value = "bob@example.org";
                    document.querySelector("#rcmloginpwd").value = "battery staple";
                    document.querySelector("#rcmloginsubmit").click();
                })()`),
            );
            await browser.waitUntil(
                `[...document.querySelectorAll("#messagelist tr")].some((tr) => tr.innerText.includes("Hello from the int test"))`,
                "the message in the list",
            );
            await browser.goto(`${origin}/?_task=mail&_mbox=INBOX&_uid=1&_action=show`);
            await browser.waitUntil(`document.body.innerText.includes("Read me through Roundcube.")`, "the message body");
            await browser.screenshot(SCREENSHOT);
            console.log(`webmail screenshot: ${SCREENSHOT}`);
            expect(browser.log.filter((e) => /Content.Security.Policy/i.test(e.text))).toEqual([]);
        } finally {
            await browser.close();
        }
    });

    test("the filter settings reach Dovecot's ManageSieve over verified STARTTLS", async () => {
        const r = await client.get("/?_task=settings&_action=plugin.managesieve");
        expect(r.status).toBe(200);
        expect(r.body).not.toMatch(/Unable to connect to managesieve server/i);
        expect(r.body).toMatch(/filtersetslist|filterslist/);
    });

    test("memory: the container's processes idle and after use", () => {
        const used = containerMemory(webPod.appPid()!);
        console.log(`webmail container PSS after login and reading: ${used.totalMiB.toFixed(1)} MiB (${used.detail})`);
        expect(used.totalMiB).toBeLessThan(160);
    });

    test("nothing was written outside the pod's volumes (the root filesystem can be read-only)", () => {
        const root = `/proc/${webPod.appPid()!}/root`;
        const since = fs.statSync(path.join(dir, "config")).mtimeMs / 1000;
        // -xdev: the overlay root only, not the volumes bound into it.
        // buildah writes these four itself; in Kubernetes the kubelet mounts the first three and has no fourth.
        const runtimeFiles = ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts", "/run/.containerenv"];
        const written = spawnSync("find", [`${root}/`, "-xdev", "-newermt", `@${since}`, "-not", "-type", "d"], { encoding: "utf8" })
            .stdout.split("\n")
            .filter(Boolean)
            .map((f) => f.slice(root.length))
            .filter((f) => !runtimeFiles.includes(f));
        expect(written).toEqual([]);
    });
});

test("a certificate that does not name the configured mail host is refused: no login", async () => {
    const mark = webPod.logs.length;
    writeConfigMapVolume(path.join(dir, "config"), renderWebmail(webmail({ mailHostname: "other.example.test" })));
    await webPod.waitForLog(/reloaded with config/, 30_000, mark);
    const fresh = client.fresh();
    const r = await fresh.login("bob@example.org", "battery staple");
    expect(r.status).not.toBe(302);
    await webPod.waitForLog(/Peer certificate subjectAltName did not match expected name `other\.example\.test'/, 20_000, mark);
    writeConfigMapVolume(path.join(dir, "config"), renderWebmail(webmail()));
});

test("idle memory once PHP-FPM's workers have stopped", async () => {
    await new Promise((r) => setTimeout(r, 65_000));
    const idle = containerMemory(webPod.appPid()!);
    console.log(`webmail container PSS idle: ${idle.totalMiB.toFixed(1)} MiB (${idle.detail})`);
    expect(idle.totalMiB).toBeLessThan(64);
});

test("SIGTERM stops nginx and PHP-FPM cleanly", async () => {
    const mark = webPod.logs.length;
    expect(await webPod.stop()).toBe(0);
    expect(webPod.logs.slice(mark)).toMatch(/SIGTERM: stopping nginx[\s\S]*nginx stopped/);
});
