// Password guessing against the real Dovecot image with couchmail's auth policy: IMAP logins over TLS from several
// client addresses on the pod's loopback. couchmail runs in this process (its HTTP listener on a unix socket, relayed
// to 127.0.0.1:10102 inside the pod like the sidecar's port); Dovecot runs the config the renderer produces.
// Each attack runs twice: with the policy switched off (Dovecot alone: the regression baseline) and as rendered.
import { ChildProcess, execFileSync, spawn } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { pathToFileURL } from "url";
import { DOVECOT_LISTENERS, DovecotSettings, renderDovecot } from "../../components/dovecot/config";
import { COUCHMAIL } from "../../components/couchmail";
import { Stack, startStack, waitFor } from "../../couchmail/test/harness";
import { AuthPolicy, POLICY_REFUSAL } from "../../couchmail/src/policy";
import { Pod, buildImage, selfSignedCert, tempDir, writeConfigMapVolume } from "../kit/images";
import type { LoginAttempt, LoginPlan, LoginResult } from "./netns-tools";
import { dovecotTestSettings } from "../kit/settings";

jest.setTimeout(600_000);

const TOOLS = path.join(__dirname, "netns-tools.ts");
const TSX = pathToFileURL(require.resolve("tsx")).href;
const SERVER = "10.250.9.254";
const settings: DovecotSettings = { ...dovecotTestSettings, hostname: "mail.example.test" };
// Dovecot alone, as before the policy existed: the same rendering with the policy URL emptied.
const withoutPolicy: DovecotSettings = { ...settings, settingsOverrides: { auth_policy_server_url: "" } };
const ATTACKER = "10.250.9.2";
const USER_NEW_ADDRESS = "10.250.9.3";
const BOB_HOME = "10.250.9.4";
const BOB_NEW_ADDRESS = "10.250.9.5";
const DURING_OUTAGE = "10.250.9.6";
const SPRAYER = "10.250.9.7";
const BOTS = Array.from({ length: 12 }, (_, i) => `10.250.9.${10 + i}`);
const ATTACK_MS = 30_000;

let image: string;
let dir: string;
let st: Stack;
let pod: Pod;
let relay: ChildProcess;
/** What Dovecot sent through the relay to couchmail's HTTP port. */
let relayed = "";
/** Guesses per minute Dovecot checks without the policy, measured by the first test. */
let baseline = { single: 0, distributed: 0 };

function inPod(args: string[]): ChildProcess {
    return spawn("nsenter", [`--net=/run/netns/${pod.netns}`, process.execPath, "--import", TSX, TOOLS, ...args], { stdio: ["ignore", "pipe", "pipe"] });
}

/** Runs a login plan inside the pod's network namespace and returns every result. */
function runLogins(attempts: LoginAttempt[], loopMs?: number): Promise<LoginResult[]> {
    const plan: LoginPlan = { host: SERVER, port: DOVECOT_LISTENERS.imaps.port, attempts, loopMs };
    const child = inPod(["logins", JSON.stringify(plan)]);
    let out = "";
    let err = "";
    child.stdout!.on("data", (c) => (out += c));
    child.stderr!.on("data", (c) => (err += c));
    return new Promise((resolve, reject) =>
        child.on("exit", (code) => {
            if (code !== 0) reject(new Error(`login client failed (${code}): ${err}`));
            else
                resolve(
                    out
                        .split("\n")
                        .filter(Boolean)
                        .map((l) => JSON.parse(l) as LoginResult),
                );
        }),
    );
}

const refused = (r: LoginResult) => r.reply.includes(POLICY_REFUSAL);
/** A wrong password Dovecot actually checked (not refused by the policy before checking). */
const checkedGuess = (r: LoginResult) => !r.ok && /AUTHENTICATIONFAILED/.test(r.reply) && !refused(r);

async function useConfig(s: DovecotSettings): Promise<void> {
    const mark = pod.logs.length;
    writeConfigMapVolume(path.join(dir, "config"), renderDovecot(s));
    await pod.waitForLog(/reloaded with config/, 30_000, mark);
}

/** The JSON bodies of Dovecot's policy requests seen so far. */
function policyBodies(command: "allow" | "report"): Record<string, unknown>[] {
    const re = new RegExp(`POST /dovecot/policy\\?command=${command} HTTP/1\\.1\\r\\n[\\s\\S]*?\\r\\n\\r\\n(\\{.*?\\})(?=POST |GET |$)`, "g");
    return [...relayed.matchAll(re)].map((m) => JSON.parse(m[1]) as Record<string, unknown>);
}

/** 20 workers from one address, each logging in again as soon as it has its answer, for ATTACK_MS. */
async function singleSourceAttack(user: string): Promise<{ results: LoginResult[]; perMinute: number }> {
    const attempts = Array.from({ length: 20 }, (_, i) => ({ user, password: `guess-${i}`, source: ATTACKER }));
    const results = await runLogins(attempts, ATTACK_MS);
    return { results, perMinute: (results.filter(checkedGuess).length * 60_000) / ATTACK_MS };
}

/** Three parallel workers from each of 12 addresses against one account, for ATTACK_MS. */
async function distributedAttack(user: string): Promise<{ results: LoginResult[]; perMinute: number }> {
    const attempts = BOTS.flatMap((source) => [0, 1, 2].map((i) => ({ user, password: `bot-${source}-${i}`, source })));
    const results = await runLogins(attempts, ATTACK_MS);
    return { results, perMinute: (results.filter(checkedGuess).length * 60_000) / ATTACK_MS };
}

const summary = (label: string, a: { results: LoginResult[]; perMinute: number }) =>
    `${label}: ${a.results.length} attempts, ${a.results.filter(checkedGuess).length} passwords checked ` +
    `(${a.perMinute.toFixed(1)} guesses/min), ${a.results.filter(refused).length} refused by the policy` +
    (a.results.some(refused) ? ` (answer: ${a.results.find(refused)!.reply})` : "");

beforeAll(async () => {
    image = buildImage("dovecot");
    dir = tempDir("dovecot-policy");
    st = await startStack({ serve: (d) => ({ http: [{ kind: "unix", path: path.join(d, "http.sock") }] }) });
    await waitFor(() => st.running.cache.loaded, 20_000);
    writeConfigMapVolume(path.join(dir, "tls"), selfSignedCert("mail.example.test"), 0o600);
    writeConfigMapVolume(path.join(dir, "lua"), {
        [COUCHMAIL.luaFile]: fs.readFileSync(path.join(__dirname, "../../couchmail/lua/couchmail-auth.lua"), "utf8"),
    });
    writeConfigMapVolume(path.join(dir, "config"), renderDovecot(withoutPolicy));
    pod = new Pod(image, ["/usr/local/bin/dovecot-entrypoint"], {
        mounts: [
            { host: path.join(dir, "config"), ctr: "/etc/mail/defaults/dovecot" },
            { host: path.join(dir, "tls"), ctr: "/etc/mail/tls" },
            { host: path.join(dir, "lua"), ctr: COUCHMAIL.luaMountDir },
        ],
        env: { WATCH_INTERVAL: "1" },
    });
    for (const a of [SERVER, ATTACKER, USER_NEW_ADDRESS, BOB_HOME, BOB_NEW_ADDRESS, DURING_OUTAGE, SPRAYER, ...BOTS]) {
        execFileSync("ip", ["-n", pod.netns, "addr", "add", `${a}/32`, "dev", "lo"]);
    }
    relay = inPod(["forward", String(COUCHMAIL.httpPort), path.join(st.dir, "http.sock")]);
    let pending = "";
    await new Promise<void>((resolve) =>
        relay.stdout!.on("data", (c) => {
            pending += c;
            const lines = pending.split("\n");
            pending = lines.pop()!;
            for (const l of lines) {
                if (l === "forwarding") resolve();
                else relayed += JSON.parse(l) as string;
            }
        }),
    );
    await pod.waitForLog(/config [0-9a-f]{12} active/, 60_000);
}, 900_000);

afterAll(async () => {
    relay?.kill();
    await pod?.remove();
    await st?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test("Dovecot alone: the couchmail passdb answers, and parallel guesses from one address all get checked (baseline)", async () => {
    const [ok] = await runLogins([{ user: "alice@example.org", password: "correct horse", source: USER_NEW_ADDRESS }]);
    expect(ok.reply).toMatch(/^a OK/);
    const before = await singleSourceAttack("alice@example.org");
    const bots = await distributedAttack("bob@example.org");
    console.log(`${summary("without the policy, one address x20", before)}\n${summary("without the policy, 12 addresses x3", bots)}`);
    baseline = { single: before.perMinute, distributed: bots.perMinute };
    expect(before.results.filter(refused)).toHaveLength(0);
});

describe("with the auth policy as rendered", () => {
    beforeAll(() => useConfig(settings), 60_000);

    test("Dovecot asks before each password check and reports after, with the rendered attributes and no password hash", async () => {
        const [ok] = await runLogins([{ user: "Bob@Example.org", password: "battery staple", source: USER_NEW_ADDRESS }]);
        expect(ok.reply).toMatch(/^a OK/);
        const allow = policyBodies("allow").find((b) => b.remote === USER_NEW_ADDRESS);
        const report = policyBodies("report").find((b) => b.remote === USER_NEW_ADDRESS);
        expect(allow).toEqual({
            login: "bob@example.org",
            remote: USER_NEW_ADDRESS,
            protocol: "imap",
            session_id: expect.any(String),
            fail_type: "",
            tls: true,
        });
        expect(report).toEqual({ ...allow, success: true, policy_reject: false });
        expect(relayed).not.toMatch(/pwhash|hashed_password/);
    });

    test("20 parallel guesses from one address: capped; a new address of the user logs in during and after", async () => {
        const attack = singleSourceAttack("alice@example.org");
        await new Promise((r) => setTimeout(r, ATTACK_MS / 2));
        const [during] = await runLogins([{ user: "alice@example.org", password: "correct horse", source: USER_NEW_ADDRESS }]);
        const after = await attack;
        const [afterwards] = await runLogins([{ user: "alice@example.org", password: "correct horse", source: USER_NEW_ADDRESS }]);
        console.log(`${summary("with the policy, one address x20", after)} (without: ${baseline.single.toFixed(1)}/min)`);
        expect(during.reply).toMatch(/^a OK/);
        expect(afterwards.reply).toMatch(/^a OK/);
        // 5 at once (the pair's burst), then one a minute: at most 6 checked in 30 s, where Dovecot alone checked
        // every one.
        expect(after.results.filter(checkedGuess).length).toBeLessThanOrEqual(6);
        expect(after.results.filter(refused).length).toBeGreaterThan(after.results.length / 2);
        expect(after.perMinute * 5).toBeLessThan(baseline.single);
    });

    test("one address spraying 14 accounts at once: 10 checked, the 11th tarpitted by Dovecot for 10 s, the rest refused", async () => {
        const results = await runLogins(Array.from({ length: 14 }, (_, i) => ({ user: `user${i}@example.org`, password: "Summer2026!", source: SPRAYER })));
        const checked = results.filter(checkedGuess).sort((a, b) => a.ms - b.ms);
        console.log(
            `spraying from one address: ${checked.length} checked (slowest answer after ${checked.at(-1)!.ms} ms), ${results.filter(refused).length} refused`,
        );
        expect(checked).toHaveLength(11);
        expect(results.filter(refused)).toHaveLength(3);
        // Dovecot held the tarpitted check on its timer: its answer came at least 10 s after the others began.
        expect(checked[10].ms).toBeGreaterThanOrEqual(10_000);
        expect(checked[9].ms).toBeLessThan(10_000);
    });

    test("a distributed attack on one account is capped; the user's known address still logs in, a new one waits", async () => {
        const [home] = await runLogins([{ user: "bob@example.org", password: "battery staple", source: BOB_HOME }]);
        expect(home.reply).toMatch(/^a OK/);
        const attack = distributedAttack("bob@example.org");
        await new Promise((r) => setTimeout(r, ATTACK_MS / 2));
        const [fromHome, fromNewAddress] = await runLogins([
            { user: "bob@example.org", password: "battery staple", source: BOB_HOME },
            { user: "bob@example.org", password: "battery staple", source: BOB_NEW_ADDRESS },
        ]);
        const bots = await attack;
        console.log(`${summary("with the policy, 12 addresses x3", bots)} (without: ${baseline.distributed.toFixed(1)}/min)`);
        expect(fromHome.reply).toMatch(/^a OK/);
        // The price of refusing the attackers' guesses: while the account is under a distributed attack, a correct
        // password from an address never seen logging in is refused too.
        expect(refused(fromNewAddress)).toBe(true);
        expect(bots.perMinute * 5).toBeLessThan(baseline.distributed);
        const metrics = await st.running.metrics.registry.getSingleMetricAsString("couchmail_policy_decisions_total");
        expect(metrics).toMatch(/decision="reject",limit="account"/);
    });

    test("a failing policy server neither locks users out nor lets guesses through silently: Dovecot logs it and goes on", async () => {
        const spy = jest.spyOn(AuthPolicy.prototype, "allow").mockImplementation(() => {
            throw new Error("simulated policy failure");
        });
        const mark = pod.logs.length;
        try {
            const [ok, wrong] = await runLogins([
                { user: "alice@example.org", password: "correct horse", source: DURING_OUTAGE },
                { user: "alice@example.org", password: "not it", source: DURING_OUTAGE },
            ]);
            expect(ok.reply).toMatch(/^a OK/);
            expect(checkedGuess(wrong)).toBe(true);
        } finally {
            spy.mockRestore();
        }
        await pod.waitForLog(/policy: Policy server HTTP error: 503/, 10_000, mark);
        const failures = await st.running.metrics.registry.getSingleMetricAsString("couchmail_lookup_failures_total");
        expect(failures).toMatch(/couchmail_lookup_failures_total\{map="policy"\} 2/);
    });
});
