/**
 * The deliverability doctor against fakes: a DNS server holding what the program asks to publish (its own
 * mailDnsRecords), SMTP and IMAP endpoints with real TLS, and messages signed and judged by mailauth. Each broken
 * record must be named as a failure; the CLI's exit code is the worst verdict.
 */
import { spawn, spawnSync } from "node:child_process";
import { generateKeyPairSync } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import * as net from "node:net";
import { join } from "node:path";
import { dkimSign } from "mailauth";
import { mailDnsRecords } from "../../components/dns/records";
import { main } from "../src/cli";
import { checkDkim, checkDmarc, checkMx, checkSpf } from "../src/doctor/dns-checks";
import { parseExpected } from "../src/doctor/expect";
import { DoctorOptions, runDoctor } from "../src/doctor/index";
import { CheckResult, exitCode, renderTable } from "../src/doctor/report";
import { createResolver } from "../src/doctor/resolver";
import { judgeArrival } from "../src/doctor/roundtrip";
import { checkDnsbl, checkOpenRelay, checkPtr, judgeCertificate } from "../src/doctor/smtp-checks";
import { Certificate, FakeDns, FakeSmtp, Zone, selfSigned, startDns, startImapGreeter, startSmtp } from "./doctor-fakes";

const HOST = "mail.example.test";
const DOMAIN = "example.test";
const OUTBOUND = "192.0.2.7";
const TIMEOUT = 3000;

function dkimKey() {
  const { publicKey, privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
  const p = publicKey.export({ type: "spki", format: "der" }).toString("base64");
  return { txt: `v=DKIM1; k=rsa; p=${p}`, privateKey: privateKey.export({ type: "pkcs8", format: "pem" }).toString() };
}
const KEY = dkimKey();
const OTHER_KEY = dkimKey();

/** The stack outputs as `pulumi stack output --json` prints them (dnsRecords from the program's own function). */
const OUTPUTS = {
  dnsRecords: mailDnsRecords({
    hostname: HOST,
    domains: [DOMAIN],
    dkimSelector: "mail",
    dkimTxt: { [DOMAIN]: KEY.txt },
    postmaster: `postmaster@${DOMAIN}`,
    addresses: [OUTBOUND],
    mtaSts: "testing",
  }),
  dkimTxt: { [DOMAIN]: KEY.txt },
  publicAddresses: [OUTBOUND],
  warnings: [],
  kubeconfig: "[secret]",
};
const EXPECTED = parseExpected(JSON.stringify(OUTPUTS));

/** The zone exactly as the outputs ask, plus the PTR of the outbound address. */
function healthyZone(): Zone {
  const zone: Zone = {};
  for (const r of OUTPUTS.dnsRecords) {
    const node = (zone[r.name] ??= {});
    if (r.type === "A") (node.A ??= []).push(r.value);
    if (r.type === "TXT") (node.TXT ??= []).push(r.value);
    if (r.type === "MX") (node.MX ??= []).push([Number(r.value.split(" ")[0]), r.value.split(" ")[1]]);
  }
  zone["7.2.0.192.in-addr.arpa"] = { PTR: [HOST] };
  zone["external.test"] = { MX: [[10, "mx.external.test"]] };
  return zone;
}

let dns: FakeDns;
let cert: Certificate;
const servers: { close(): Promise<void> }[] = [];
let ports: Record<"smtp" | "submission" | "submissions" | "imaps" | "probe", number>;
let smtp25: FakeSmtp;

beforeAll(async () => {
  cert = selfSigned([HOST]);
  dns = await startDns(healthyZone());
  smtp25 = await startSmtp({ name: HOST, starttls: cert });
  const submission = await startSmtp({ name: HOST, starttls: cert });
  const submissions = await startSmtp({ name: HOST, implicitTls: cert });
  const imaps = await startImapGreeter(cert);
  const probe = await startSmtp({ name: "mx.external.test" });
  servers.push(dns, smtp25, submission, submissions, imaps, probe);
  ports = { smtp: smtp25.port, submission: submission.port, submissions: submissions.port, imaps: imaps.port, probe: probe.port };
});
afterAll(async () => {
  for (const s of servers) await s.close();
});
beforeEach(() => {
  dns.zone = Object.assign(dns.zone, healthyZone());
  for (const k of Object.keys(dns.zone)) if (!(k in healthyZone())) delete dns.zone[k];
});

const resolver = () => createResolver([dns.server], TIMEOUT);
const byCheck = (results: CheckResult[], prefix: string) => {
  const r = results.find((x) => x.check.startsWith(prefix));
  if (!r) throw new Error(`no ${prefix} line in\n${renderTable(results)}`);
  return r;
};

function options(over: Partial<DoctorOptions> = {}): DoctorOptions {
  const at = (port: number) => ({ host: "127.0.0.1", port });
  return {
    expected: EXPECTED,
    resolver: resolver(),
    timeoutMs: TIMEOUT,
    ca: cert.cert,
    outboundAddresses: [],
    endpoints: { smtp: at(ports.smtp), submission: at(ports.submission), submissions: at(ports.submissions), imaps: at(ports.imaps) },
    ehloName: "doctor.invalid",
    relayProbe: { from: "probe@external.test", to: "someone@external.test" },
    outboundProbe: `127.0.0.1:${ports.probe}`,
    dnsbls: ["zen.spamhaus.org", "bl.spamcop.net"],
    now: () => new Date(),
    ...over,
  };
}

describe("expected state from the stack outputs", () => {
  test("the mail host, domains, DKIM selector and key come from dnsRecords and dkimTxt; other outputs are ignored", () => {
    expect(EXPECTED.hostname).toBe(HOST);
    expect(EXPECTED.domains).toEqual([DOMAIN]);
    expect(EXPECTED.dkimSelector).toEqual({ [DOMAIN]: "mail" });
    expect(EXPECTED.dkimTxt[DOMAIN]).toBe(KEY.txt);
    expect(EXPECTED.publicAddresses).toEqual([OUTBOUND]);
  });

  test("errors name the output and what is expected", () => {
    expect(() => parseExpected("not json")).toThrow(/not JSON \(give the output of `pulumi stack output --json`\)/);
    expect(() => parseExpected("{}")).toThrow(/stack output dnsRecords is missing or not a list/);
    expect(() => parseExpected(JSON.stringify({ dnsRecords: [{ name: "a", type: "SRV", value: "x" }] }))).toThrow(
      /dnsRecords\[0\] must have .* a type of MX, TXT, A, AAAA, CNAME/,
    );
    expect(() => parseExpected(JSON.stringify({ dnsRecords: [] }))).toThrow(/holds no MX record/);
    expect(() => parseExpected(JSON.stringify({ ...OUTPUTS, publicAddresses: "1.2.3.4" }))).toThrow(/publicAddresses must be a list of strings/);
  });
});

describe("DNS published vs expected", () => {
  test("the zone the program asks for passes every DNS line", async () => {
    const r = resolver();
    for (const result of [
      await checkMx(EXPECTED, r, DOMAIN),
      await checkSpf(EXPECTED, r, DOMAIN, [OUTBOUND]),
      await checkDkim(EXPECTED, r, DOMAIN),
      await checkDmarc(EXPECTED, r, DOMAIN),
    ]) {
      expect(result).toMatchObject({ status: "pass" });
    }
  });

  test("a DKIM key in DNS that is not the key in use fails, naming both", async () => {
    dns.zone[`mail._domainkey.${DOMAIN}`] = { TXT: [OTHER_KEY.txt] };
    const r = await checkDkim(EXPECTED, resolver(), DOMAIN);
    expect(r.status).toBe("fail");
    // Every RSA-2048 key's base64 starts alike: the two keys are told apart by fingerprint.
    const [, inDns, inUse] = /the key in DNS \((sha256:[0-9a-f]{16})\) is not the key in use \((sha256:[0-9a-f]{16})\)/.exec(r.detail) ?? [];
    expect(inDns).toBeDefined();
    expect(inDns).not.toBe(inUse);
    expect(r.fix).toMatch(/publish mail\._domainkey\.example\.test\. TXT with the stack's dkimTxt value/);
  });

  test("a missing DMARC record fails; p=none warns", async () => {
    delete dns.zone[`_dmarc.${DOMAIN}`];
    expect(await checkDmarc(EXPECTED, resolver(), DOMAIN)).toMatchObject({ status: "fail", detail: expect.stringMatching(/^no such name \(NXDOMAIN\)/) });
    dns.zone[`_dmarc.${DOMAIN}`] = { TXT: ["v=DMARC1; p=none; rua=mailto:postmaster@example.test"] };
    expect(await checkDmarc(EXPECTED, resolver(), DOMAIN)).toMatchObject({ status: "warn", detail: expect.stringMatching(/p=none only monitors/) });
  });

  test("DMARC reports to another domain need that domain's consent (RFC 7489 §7.1), else receivers send none", async () => {
    const outputs = {
      dnsRecords: mailDnsRecords({
        hostname: HOST,
        domains: [DOMAIN, "example.org"],
        dkimSelector: "mail",
        dkimTxt: { [DOMAIN]: KEY.txt, "example.org": KEY.txt },
        postmaster: `postmaster@${DOMAIN}`,
        addresses: [OUTBOUND],
        mtaSts: "off",
      }),
    };
    const expected = parseExpected(JSON.stringify(outputs));
    dns.zone["_dmarc.example.org"] = { TXT: [expected.records.find((r) => r.name === "_dmarc.example.org")!.value] };
    const r = await checkDmarc(expected, resolver(), "example.org");
    expect(r).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(/example\.test has not agreed to receive example\.org's reports, so receivers send none \(RFC 7489 §7\.1\)/),
    });
    expect(r.fix).toBe('publish example.org._report._dmarc.example.test. TXT "v=DMARC1"');
    dns.zone["example.org._report._dmarc.example.test"] = { TXT: ["v=DMARC1"] };
    expect(await checkDmarc(expected, resolver(), "example.org")).toMatchObject({ status: "pass" });
    // Reports to the policy's own domain need no consent.
    expect(await checkDmarc(EXPECTED, resolver(), DOMAIN)).toMatchObject({ status: "pass" });
  });

  test("SPF that does not allow the outbound address fails (evaluated by mailauth); two SPF records fail", async () => {
    dns.zone[DOMAIN].TXT = ["v=spf1 ip4:198.51.100.1 -all"];
    const r = await checkSpf(EXPECTED, resolver(), DOMAIN, [OUTBOUND]);
    expect(r.status).toBe("fail");
    expect(r.detail).toMatch(/does not allow the outbound address: 192\.0\.2\.7: fail/);
    expect(r.fix).toBe('publish example.test. TXT "v=spf1 mx -all" as the domain\'s only SPF record');
    // The expected record, with the MX (which its `mx` names) pointing elsewhere: the fix is the MX, not the SPF text.
    dns.zone[DOMAIN].TXT = ["v=spf1 mx -all"];
    dns.zone[DOMAIN].MX = [[10, "mx.elsewhere.test"]];
    expect(await checkSpf(EXPECTED, resolver(), DOMAIN, [OUTBOUND])).toMatchObject({
      status: "fail",
      fix: expect.stringMatching(/^the record is the expected one, but its mechanisms resolve elsewhere: fix the MX\/A records of example\.test/),
    });
    dns.zone[DOMAIN].TXT = ["v=spf1 mx -all", "v=spf1 a -all"];
    expect(await checkSpf(EXPECTED, resolver(), DOMAIN, [OUTBOUND])).toMatchObject({
      status: "fail",
      detail: expect.stringMatching(/2 SPF records \(RFC 7208 §4\.5: a permerror\)/),
    });
  });

  test("an MX pointing elsewhere fails and says where mail goes", async () => {
    dns.zone[DOMAIN].MX = [[10, "mx.elsewhere.test"]];
    const r = await checkMx(EXPECTED, resolver(), DOMAIN);
    expect(r.status).toBe("fail");
    expect(r.detail).toMatch(/mail goes to mx\.elsewhere\.test, not mail\.example\.test/);
  });

  test("a resolver that does not answer is reported as a lookup failure within the timeout", async () => {
    const silent = createResolver(["127.0.0.1:9"], 300);
    const t0 = Date.now();
    const r = await checkMx(EXPECTED, silent, DOMAIN);
    expect(r.status).toBe("fail");
    expect(r.detail).toMatch(/lookup failed/);
    expect(Date.now() - t0).toBeLessThan(5000);
  });
});

describe("the host's identity, DNSBLs, relay", () => {
  test("PTR: matching and confirmed passes; missing fails; a private address warns (receivers never see it)", async () => {
    expect(await checkPtr(resolver(), OUTBOUND, HOST)).toMatchObject({ status: "pass" });
    delete dns.zone["7.2.0.192.in-addr.arpa"];
    expect(await checkPtr(resolver(), OUTBOUND, HOST)).toMatchObject({
      status: "fail",
      fix: expect.stringMatching(/set its reverse DNS \(PTR\) to mail\.example\.test/),
    });
    expect(await checkPtr(resolver(), "10.77.0.5", HOST)).toMatchObject({ status: "warn", detail: expect.stringMatching(/private address/) });
  });

  test("DNSBL: a listing fails; Spamhaus's 127.255.255.254 (public resolver) is unknown, not a listing", async () => {
    expect(await checkDnsbl(resolver(), OUTBOUND, ["zen.spamhaus.org"])).toMatchObject({ status: "pass" });
    dns.zone["7.2.0.192.bl.spamcop.net"] = { A: ["127.0.0.2"] };
    expect(await checkDnsbl(resolver(), OUTBOUND, ["bl.spamcop.net"])).toMatchObject({ status: "fail", detail: "listed on bl.spamcop.net (127.0.0.2)" });
    dns.zone["7.2.0.192.zen.spamhaus.org"] = { A: ["127.255.255.254"] };
    expect(await checkDnsbl(resolver(), OUTBOUND, ["zen.spamhaus.org"])).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(/unknown: zen\.spamhaus\.org refused the query/),
    });
  });

  test("open relay: 5xx for a foreign recipient passes, 2xx fails, 4xx is inconclusive; DATA is never sent", async () => {
    const target = { host: "127.0.0.1", port: ports.smtp };
    expect(await checkOpenRelay(target, "a@external.test", "b@external.test", "doctor.invalid", TIMEOUT)).toMatchObject({
      status: "pass",
      detail: expect.stringMatching(/554 5\.7\.1 Relay access denied/),
    });
    const open = await startSmtp({ name: HOST, rcptReply: "250 2.1.5 Ok" });
    const deferring = await startSmtp({ name: HOST, rcptReply: "450 4.2.0 Greylisted" });
    try {
      expect(await checkOpenRelay({ host: "127.0.0.1", port: open.port }, "a@external.test", "b@external.test", "doctor.invalid", TIMEOUT)).toMatchObject({
        status: "fail",
        detail: expect.stringMatching(/^ACCEPTED/),
      });
      expect(await checkOpenRelay({ host: "127.0.0.1", port: deferring.port }, "a@external.test", "b@external.test", "doctor.invalid", TIMEOUT)).toMatchObject({
        status: "warn",
      });
      expect(open.commands.some((c) => /^DATA/i.test(c))).toBe(false);
    } finally {
      await open.close();
      await deferring.close();
    }
  });
});

describe("TLS certificates", () => {
  test("expiry is judged against the clock: expired fails, under 14 days warns", async () => {
    const results = await runDoctor(options());
    expect(byCheck(results, "STARTTLS smtp")).toMatchObject({ status: "pass" });
    const facts = { authorized: true, certificate: new (await import("node:crypto")).X509Certificate(cert.cert), protocol: "TLSv1.3" };
    const validTo = new Date(facts.certificate.validTo);
    expect(judgeCertificate("TLS x", facts, HOST, new Date(validTo.getTime() + 1000))).toMatchObject({
      status: "fail",
      detail: expect.stringMatching(/^expired on/),
    });
    expect(judgeCertificate("TLS x", facts, HOST, new Date(validTo.getTime() - 3 * 86400_000))).toMatchObject({
      status: "warn",
      detail: expect.stringMatching(/expires in 3 days/),
    });
  });

  test("a certificate nobody trusts fails on every port; one for another name fails with the name error", async () => {
    const untrusted = await runDoctor(options({ ca: undefined }));
    for (const port of ["STARTTLS smtp", "STARTTLS submission", "TLS submissions", "TLS imaps"]) {
      expect(byCheck(untrusted, port)).toMatchObject({
        status: "fail",
        detail: expect.stringMatching(/^DEPTH_ZERO_SELF_SIGNED_CERT: the certificate is self-signed/),
      });
    }
    const other = selfSigned(["other.example.test"]);
    const imaps = await startImapGreeter(other);
    try {
      const results = await runDoctor(options({ ca: other.cert, endpoints: { ...options().endpoints, imaps: { host: "127.0.0.1", port: imaps.port } } }));
      expect(byCheck(results, "TLS imaps")).toMatchObject({
        status: "fail",
        detail: expect.stringMatching(/^ERR_TLS_CERT_ALTNAME_INVALID: the certificate does not name mail\.example\.test \(DNS:other\.example\.test\)/),
      });
    } finally {
      await imaps.close();
    }
  });
});

describe("authentication on arrival (mailauth)", () => {
  async function signed(privateKey: string): Promise<Buffer> {
    const message = `From: <alice@${DOMAIN}>\r\nTo: <alice@${DOMAIN}>\r\nSubject: hello\r\nDate: Wed, 02 Dec 2026 03:00:00 +0000\r\nMessage-ID: <x@${HOST}>\r\n\r\nhello\r\n`;
    // mailauth's signer reads signatureData; its type declaration also requires the top-level fields.
    const key = { signingDomain: DOMAIN, selector: "mail", privateKey };
    const r = await dkimSign(message, { ...key, signatureData: [key] });
    return Buffer.from(r.signatures + message);
  }

  test("signed with the published key, sent from an SPF-allowed address: DKIM, SPF and DMARC pass", async () => {
    const results = await judgeArrival(await signed(KEY.privateKey), { ip: OUTBOUND, helo: HOST, sender: `alice@${DOMAIN}`, resolver: resolver().forMailauth });
    expect(results.map((r) => [r.check, r.status])).toEqual([
      ["arrival DKIM", "pass"],
      ["arrival SPF", "pass"],
      ["arrival DMARC", "pass"],
    ]);
  });

  test("signed with another key and sent from elsewhere: DKIM, SPF and DMARC fail", async () => {
    const results = await judgeArrival(await signed(OTHER_KEY.privateKey), {
      ip: "198.51.100.9",
      helo: HOST,
      sender: `alice@${DOMAIN}`,
      resolver: resolver().forMailauth,
    });
    expect(results.map((r) => [r.check, r.status])).toEqual([
      ["arrival DKIM", "fail"],
      ["arrival SPF", "fail"],
      ["arrival DMARC", "fail"],
    ]);
  });
});

describe("couchmail doctor (the CLI)", () => {
  let dir: string;
  beforeAll(() => {
    dir = mkdtempSync(join(tmpdir(), "doctor-cli-"));
    writeFileSync(join(dir, "outputs.json"), JSON.stringify(OUTPUTS));
    writeFileSync(join(dir, "ca.pem"), cert.cert);
  });
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  /** `doctor` comparing with this suite's outputs file and asking its DNS server, each check given `timeoutSeconds`. */
  const doctorAgainstFixtures = (timeoutSeconds: number): string[] => [
    "doctor",
    "--expect",
    join(dir, "outputs.json"),
    "--resolver",
    dns.server,
    "--timeout",
    String(timeoutSeconds),
  ];

  async function doctor(extra: string[] = []): Promise<{ code: number; out: string }> {
    const args = [
      ...doctorAgainstFixtures(3),
      "--ca",
      join(dir, "ca.pem"),
      "--endpoint",
      `smtp=127.0.0.1:${ports.smtp}`,
      "--endpoint",
      `submission=127.0.0.1:${ports.submission}`,
      "--endpoint",
      `submissions=127.0.0.1:${ports.submissions}`,
      "--endpoint",
      `imaps=127.0.0.1:${ports.imaps}`,
      "--relay-probe-from",
      "probe@external.test",
      "--relay-probe-to",
      "someone@external.test",
      "--outbound-probe",
      `127.0.0.1:${ports.probe}`,
      ...extra,
    ];
    let out = "";
    const write = jest.spyOn(process.stdout, "write").mockImplementation((c) => ((out += String(c)), true));
    const err = jest.spyOn(process.stderr, "write").mockImplementation((c) => ((out += String(c)), true));
    try {
      return { code: await main(args), out };
    } finally {
      write.mockRestore();
      err.mockRestore();
    }
  }

  test("a healthy stack: every line passes (the round trip is skipped without credentials), exit 0", async () => {
    const { code, out } = await doctor();
    expect(out).not.toMatch(/^(WARN|FAIL)/m);
    expect(out).toMatch(/^SKIP +round trip +no credentials given/m);
    expect(out).toMatch(/pass, 0 warn, 0 fail, 1 skipped — exit 0$/m);
    expect(code).toBe(0);
  });

  test("a broken zone: each broken record named as FAIL with its fix, exit 2", async () => {
    dns.zone[`mail._domainkey.${DOMAIN}`] = { TXT: [OTHER_KEY.txt] };
    delete dns.zone[`_dmarc.${DOMAIN}`];
    dns.zone[DOMAIN] = { MX: [[10, "mx.elsewhere.test"]], TXT: ["v=spf1 ip4:198.51.100.1 -all"] };
    const { code, out } = await doctor();
    for (const line of [
      /^FAIL +MX example\.test +.*mail goes to mx\.elsewhere\.test/m,
      /^FAIL +SPF example\.test +.*does not allow the outbound address/m,
      /^FAIL +DKIM mail\._domainkey\.example\.test +the key in DNS .* is not the key in use/m,
      /^FAIL +DMARC _dmarc\.example\.test +no such name/m,
    ]) {
      expect(out).toMatch(line);
    }
    expect(out).toMatch(/^ +fix: publish example\.test\. MX 10 mail\.example\.test\./m);
    expect(code).toBe(2);
  });

  test("warnings only (a private outbound address: no PTR or DNSBL verdict possible): exit 1", async () => {
    dns.zone[DOMAIN].TXT = ["v=spf1 mx ip4:10.77.0.5 -all"];
    const { code, out } = await doctor(["--outbound-address", "10.77.0.5"]);
    expect(out).toMatch(/^WARN +SPF example\.test +"v=spf1 mx ip4:10\.77\.0\.5 -all" allows 10\.77\.0\.5 but differs from the expected "v=spf1 mx -all"/m);
    expect(out).toMatch(/^WARN +PTR 10\.77\.0\.5 +10\.77\.0\.5 is a private address/m);
    expect(out).toMatch(/^WARN +DNSBL 10\.77\.0\.5/m);
    expect(code).toBe(1);
  });

  test("a server that accepts and never answers costs each check its timeout, and the CLI still exits", async () => {
    const silent = net.createServer(() => undefined);
    await new Promise<void>((r) => silent.listen(0, "127.0.0.1", r));
    const at = `127.0.0.1:${(silent.address() as net.AddressInfo).port}`;
    try {
      const args = [
        require.resolve("tsx/cli"),
        join(__dirname, "../src/cli.ts"),
        ...doctorAgainstFixtures(1),
        ...["smtp", "submission", "submissions", "imaps"].flatMap((n) => ["--endpoint", `${n}=${at}`]),
        "--outbound-probe",
        at,
      ];
      const t0 = Date.now();
      const { code, out } = await new Promise<{ code: number | null; out: string }>((resolve) => {
        const child = spawn(process.execPath, args, { timeout: 60_000 });
        let text = "";
        child.stdout.on("data", (c) => (text += c));
        child.stderr.on("data", (c) => (text += c));
        child.on("close", (c) => resolve({ code: c, out: text }));
      });
      expect(out).toMatch(/^FAIL +SMTP banner \d+ +127\.0\.0\.1:\d+: no answer within 1000 ms/m);
      expect(out).toMatch(/^FAIL +TLS imaps \d+ +127\.0\.0\.1:\d+: TLS handshake: no answer within 1000 ms/m);
      expect(code).toBe(2);
      expect(Date.now() - t0).toBeLessThan(30_000);
    } finally {
      silent.close();
    }
  });

  test("every other command starts without loading mailauth (it added ~20 MB and ~0.25 s to each start, the sidecar's exec probes included)", () => {
    const script = `require(${JSON.stringify(join(__dirname, "../src/cli"))}); console.log(Object.keys(require.cache).filter((k) => k.includes("/node_modules/mailauth/")).length)`;
    const r = spawnSync(process.execPath, ["--require", require.resolve("tsx/cjs"), "-e", script], { encoding: "utf8" });
    expect(r.stderr).toBe("");
    expect(r.stdout.trim()).toBe("0");
  });

  test("usage errors name the flag; --json gives the results as data", async () => {
    expect((await doctor(["--endpoint", "pop3=1.2.3.4:110"])).out).toMatch(
      /--endpoint pop3=1\.2\.3\.4:110: give NAME=HOST:PORT with NAME one of smtp, submission, submissions, imaps/,
    );
    expect((await doctor(["--user", "a@example.test"])).out).toMatch(/--user needs --password-stdin or --password-file/);
    const { out } = await doctor(["--json"]);
    const parsed = JSON.parse(out.trim().split("\n").pop()!);
    expect(parsed).toMatchObject({ ok: true, exit: 0 });
    expect(exitCode(parsed.results)).toBe(0);
  });
});
