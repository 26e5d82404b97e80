// `couchmail doctor` against the running stack, from the pseudo-internet, as a user runs it from a laptop: the
// stack's outputs as the expected state, the outside DNS server as the resolver, the e2e CA as the trusted CA.
// Healthy: every line passes except what loopback cannot have (the outbound address is a private pod address, so
// no PTR or DNSBL verdict: warnings). Broken: a copy of the zone served next to the real one with a wrong DKIM key,
// no DMARC, SPF not covering the outbound address and an MX pointing elsewhere — each must be named as a failure.
import { ChildProcess, spawn, spawnSync } from "child_process";
import { generateKeyPairSync } from "crypto";
import * as fs from "fs";
import * as path from "path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { zoneTxt } from "../../components/dns/records";
import { E2E_DIR, REPO } from "./layout";
import { addUser, ensureDomain } from "./mailclients";
import { loopbackOnly, stack } from "./suite";

const USER = "doctor@example.test";
const CLI = path.join(REPO, "couchmail/src/cli.ts");
const BROKEN_DNS = { host: stack.dns.host, port: 5353 };
const skip = loopbackOnly("the doctor asks the pseudo-internet's DNS server, and the broken zone is served next to it");

interface DoctorRun {
    code: number;
    out: string;
    lines: { status: string; check: string; detail: string }[];
}

/** The doctor as a user runs it from outside (the client's network namespace), with the round trip's password on stdin. */
function doctor(dns: { host: string; port: number }, password: string, expectFile: string): DoctorRun {
    const ep = stack.endpoints;
    const args = [
        "doctor",
        "--expect",
        expectFile,
        "--resolver",
        `${dns.host}:${dns.port}`,
        "--ca",
        stack.caFile,
        "--timeout",
        "10",
        "--endpoint",
        `smtp=${ep.smtp.host}:${ep.smtp.port}`,
        "--endpoint",
        `submission=${ep.submission.host}:${ep.submission.port}`,
        "--endpoint",
        `submissions=${ep.submissions.host}:${ep.submissions.port}`,
        "--endpoint",
        `imaps=${ep.imaps.host}:${ep.imaps.port}`,
        // Mail leaves from the Postfix pod's own address: the loopback node has no NAT.
        "--outbound-address",
        stack.endpoints.smtp.host,
        "--relay-probe-from",
        "probe@external.test",
        "--relay-probe-to",
        "someone@external.test",
        "--outbound-probe",
        "mx.external.test",
        "--user",
        USER,
        "--password-stdin",
        "--arrival-timeout",
        "60",
    ];
    const r = spawnSync("nsenter", [`--net=/run/netns/${stack.clientNetns}`, process.execPath, require.resolve("tsx/cli"), CLI, ...args], {
        encoding: "utf8",
        input: `${password}\n`,
        timeout: 180_000,
    });
    const out = `${r.stdout ?? ""}${r.stderr ?? ""}`;
    const lines = out
        .split("\n")
        .map((l) => /^(PASS|WARN|FAIL|SKIP) {2}(\S+(?: \S+)*?) {2,}(.*)$/.exec(l))
        .filter((m) => m !== null)
        .map((m) => ({ status: m[1], check: m[2], detail: m[3] }));
    return { code: r.status ?? -1, out, lines };
}

const isConsentWarning = (l: DoctorRun["lines"][number]) => l.status === "WARN" && /^DMARC /.test(l.check) && /has not agreed to receive/.test(l.detail);

/** The zone the outside DNS serves, broken on purpose; every edit must have found its record. */
function brokenZone(zone: string, selector: string): string {
    const { publicKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const otherKey = `v=DKIM1; k=rsa; p=${publicKey.export({ type: "spki", format: "der" }).toString("base64")}`;
    const edits: [RegExp, (fields: string[]) => string | undefined][] = [
        [new RegExp(`^${selector}\\._domainkey\\.example\\.test\\.\\t.*\\tTXT\\t`), (f) => [...f.slice(0, 4), zoneTxt(otherKey)].join("\t")],
        [/^_dmarc\.example\.test\.\t/, () => undefined],
        [/^example\.test\.\t.*\tTXT\t"v=spf1 /, (f) => [...f.slice(0, 4), '"v=spf1 ip4:192.0.2.1 -all"'].join("\t")],
        [/^example\.org\.\t.*\tMX\t/, (f) => [...f.slice(0, 4), "10 mx.elsewhere.test."].join("\t")],
    ];
    const used = new Set<number>();
    const out = zone.split("\n").flatMap((line) => {
        const i = edits.findIndex(([re]) => re.test(line));
        if (i < 0) return [line];
        used.add(i);
        const edited = edits[i][1](line.split("\t"));
        return edited === undefined ? [] : [edited];
    });
    assert.equal(used.size, edits.length, `the zone lacks a record to break:\n${zone}`);
    return out.join("\n");
}

describe("couchmail doctor against the e2e stack", { skip }, () => {
    let password = "";
    let expectFile = "";
    let brokenDns: ChildProcess | undefined;
    let selector = "";
    let healthy: DoctorRun | undefined;

    before(async () => {
        ensureDomain("example.test");
        password = addUser(USER);
        const { outputs } = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "objects.json"), "utf8")) as { outputs: Record<string, unknown> };
        expectFile = path.join(E2E_DIR, "doctor-expect.json");
        fs.writeFileSync(expectFile, JSON.stringify(outputs, null, 1));
        const records = outputs.dnsRecords as { name: string; type: string }[];
        selector = records.find((r) => r.name.endsWith("._domainkey.example.test"))!.name.split(".")[0];
        const brokenFile = path.join(E2E_DIR, "outside", "zone-broken");
        fs.writeFileSync(brokenFile, brokenZone(fs.readFileSync(path.join(E2E_DIR, "outside", "zone"), "utf8"), selector));
        brokenDns = spawn(
            "nsenter",
            [
                `--net=/run/netns/${stack.clientNetns}`,
                "/usr/bin/python3",
                path.join(__dirname, "outside.py"),
                "dns",
                BROKEN_DNS.host,
                String(BROKEN_DNS.port),
                brokenFile,
            ],
            { stdio: ["ignore", "pipe", "inherit"] },
        );
        await new Promise<void>((resolve, reject) => {
            brokenDns!.stdout!.once("data", () => resolve());
            brokenDns!.once("exit", (c) => reject(new Error(`outside.py dns exited with ${c}`)));
        });
    });
    after(() => {
        brokenDns?.kill("SIGTERM");
    });

    test("healthy: every line passes but PTR and DNSBL, which a private pod address cannot have; exit 1", () => {
        const r = (healthy = doctor(stack.dns, password, expectFile));
        fs.writeFileSync(path.join(E2E_DIR, "logs", "doctor-healthy.txt"), r.out);
        assert.ok(!r.out.includes(password), "the password was printed");
        // The e2e stack has MTA-STS off.
        const notPassing = r.lines.filter((l) => l.status !== "PASS" && !(l.status === "SKIP" && /^MTA-STS /.test(l.check)));
        assert.deepEqual(
            notPassing.map((l) => `${l.status} ${l.check}`).sort(),
            [`WARN DNSBL ${stack.endpoints.smtp.host}`, `WARN PTR ${stack.endpoints.smtp.host}`],
            r.out,
        );
        for (const check of [
            "round trip",
            "arrival DKIM",
            "arrival SPF",
            "arrival DMARC",
            "open relay 25",
            "SMTP banner 25",
            "STARTTLS smtp 25",
            "TLS imaps 993",
        ]) {
            assert.ok(
                r.lines.some((l) => l.check.startsWith(check.replace(/ \d+$/, "")) && l.status === "PASS"),
                `${check} did not pass:\n${r.out}`,
            );
        }
        assert.equal(r.code, 1, r.out);
    });

    test("DMARC reports of every domain can reach the postmaster: the postmaster's domain consents (RFC 7489 §7.1)", () => {
        assert.ok(healthy, "the healthy run did not happen");
        assert.deepEqual(
            healthy.lines.filter(isConsentWarning).map((l) => `${l.check}: ${l.detail}`),
            [],
        );
    });

    test("broken zone: wrong DKIM key, no DMARC, SPF without the outbound address, MX elsewhere — each a FAIL; exit 2", () => {
        const r = doctor(BROKEN_DNS, password, expectFile);
        fs.writeFileSync(path.join(E2E_DIR, "logs", "doctor-broken.txt"), r.out);
        const failed = (prefix: string, detail: RegExp) =>
            assert.ok(
                r.lines.some((l) => l.status === "FAIL" && l.check.startsWith(prefix) && detail.test(l.detail)),
                `no FAIL ${prefix} ~ ${detail}:\n${r.out}`,
            );
        failed("DKIM ", /the key in DNS .* is not the key in use/);
        failed("DMARC _dmarc.example.test", /no such name/);
        failed("SPF example.test", /does not allow the outbound address/);
        failed("MX example.org", /mail goes to mx\.elsewhere\.test/);
        // What a receiver sees of our own message under that zone.
        failed("arrival DKIM", /fail/);
        failed("arrival SPF", /fail/);
        failed("arrival DMARC", /none|fail/);
        // The unbroken domain's records still pass: the failures are named, not a blanket verdict.
        for (const check of ["MX example.test", `DKIM ${selector}._domainkey.example.org`, "TLS-RPT _smtp._tls.example.org"]) {
            assert.ok(
                r.lines.some((l) => l.check === check && l.status === "PASS"),
                `${check} should still pass:\n${r.out}`,
            );
        }
        assert.equal(r.code, 2, r.out);
    });
});
