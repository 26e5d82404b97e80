// The e2e suite: real clients (swaks, curl, Python's imaplib, sieve-connect, python3-dkim) against the stack that
// `cli.ts up` started from the program's own pod specs. Run by `npm run e2e` (node's test runner, in order).
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { GREYLIST_DELAY_SECONDS } from "./program";
import {
    addUser,
    CLIENTS,
    couchmail,
    delivered,
    ensureDomain,
    greylisted,
    imap,
    PASSWORDS,
    rcptProbe,
    smtpIn,
    smtpOnce,
    submit,
    submitOutbound,
    uniqueSubject,
} from "./mailclients";
import { cluster, Endpoint, loopbackOnly, run, sleep, stack, waitFor } from "./suite";

const ep = stack.endpoints;
const HOST = stack.hostname;

/** The first line of an SMTP greeting on a port, from the internet. */
function banner(e: Endpoint): string {
    const r = run("timeout", ["15", "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1" && head -n1 <&3 && printf "QUIT\\r\\n" >&3', e.host, String(e.port)]);
    if (r.code !== 0) throw new Error(`no banner from ${e.host}:${e.port}: ${r.out}`);
    return r.out.split("\r\n")[0];
}

const ALICE = "alice@example.test";
const BOB = "bob@example.org";

describe("mail flows through the program's pods", () => {
    before(() => {
        ensureDomain("example.test");
        ensureDomain("example.org");
        addUser(ALICE);
        addUser(BOB);
        couchmail(["alias", "add", "info@example.test", BOB]);
        couchmail(["alias", "add", "@example.org", ALICE]);
    });

    test("special-use folders exist on first login", () => {
        const r = imap("imap-list", ALICE, PASSWORDS[ALICE]);
        assert.ok(r.login);
        const uses = r.folders!.flatMap((f) => f.attributes);
        for (const use of ["\\Junk", "\\Sent", "\\Trash", "\\Drafts"]) assert.ok(uses.includes(use), `${use} missing: ${JSON.stringify(r.folders)}`);
    });

    test("greylisting: a new sender/recipient pair gets 450 4.2.0, is still deferred right away, accepted after the delay", async () => {
        const from = `greylist-${process.pid}@external.test`;
        const subject = uniqueSubject("greylist");
        const first = smtpOnce(ALICE, subject, { from });
        assert.ok(greylisted(first.out), first.out);
        const early = smtpOnce(ALICE, subject, { from });
        assert.ok(greylisted(early.out), early.out);
        await sleep((GREYLIST_DELAY_SECONDS + 1) * 1000);
        const later = smtpOnce(ALICE, subject, { from });
        assert.equal(later.code, 0, later.out);
        assert.equal((await delivered(ALICE, subject)).folder, "INBOX");
    });

    test("spam (GTUBE) is scored by spamd at delivery and filed into Junk", async () => {
        const subject = uniqueSubject("gtube");
        const r = smtpIn(ALICE, subject, { body: "XJS*C4JDBQADN1.NSBN3*2IDNEN*GTUBE-STANDARD-ANTI-UBE-TEST-EMAIL*C.34X" });
        assert.equal(r.code, 0, r.out);
        const m = await delivered(ALICE, subject);
        assert.equal(m.folder, "Junk");
        assert.match(m.headers!, /^X-Spam-Flag: YES/m);
    });

    test("inbound mail reaches the INBOX over IMAP (CouchDB password) with an Authentication-Results header", async () => {
        const subject = uniqueSubject("inbound");
        const r = smtpIn(ALICE, subject);
        assert.equal(r.code, 0, r.out);
        const m = await delivered(ALICE, subject);
        assert.equal(m.folder, "INBOX");
        assert.match(m.headers!, new RegExp(`^Authentication-Results: ${HOST.replace(/\./g, "\\.")};`, "m"));
    });

    test("alias, catch-all and +tag subaddress", async () => {
        const alias = uniqueSubject("alias");
        const catchAll = uniqueSubject("catch-all");
        const tagged = uniqueSubject("tag");
        assert.equal(smtpIn("info@example.test", alias).code, 0);
        assert.equal(smtpIn("whoever@example.org", catchAll).code, 0);
        assert.equal(smtpIn("alice+news@example.test", tagged).code, 0);
        assert.equal((await delivered(BOB, alias)).folder, "INBOX");
        assert.equal((await delivered(ALICE, catchAll)).folder, "INBOX");
        assert.equal((await delivered(ALICE, tagged)).folder, "INBOX");
    });

    test("unknown user ⇒ 550 at RCPT; unknown domain ⇒ relay denied", () => {
        const unknown = smtpIn("nobody@example.test", uniqueSubject("unknown"));
        assert.notEqual(unknown.code, 0);
        assert.match(unknown.out, /<\*\* +550 5\.1\.1 .*nobody@example\.test/);
        const relay = smtpIn("someone@elsewhere.test", uniqueSubject("relay"));
        assert.match(relay.out, /<\*\* +554 5\.7\.1 .*Relay access denied/);
    });

    test("a user created and removed with the CLI takes effect within a second, without restarts", async () => {
        const carol = "carol@example.test";
        const probe = () => rcptProbe(carol);
        assert.match(probe().out, /<\*\* +550/);
        addUser(carol);
        const t0 = Date.now();
        // Known to Postfix: 250, or postgrey's 450 (asked only after reject_unlisted_recipient let carol through).
        await waitFor(
            "carol accepted",
            () => {
                const rcpt = probe().out.split("RCPT TO")[1] ?? "";
                return /<- +250 .*Ok/.test(rcpt) || greylisted(rcpt);
            },
            1000,
            50,
        );
        assert.ok(imap("imap-list", carol, PASSWORDS[carol]).login, "carol cannot log in");
        assert.ok(Date.now() - t0 < 3000);
        couchmail(["user", "rm", carol]);
        await waitFor("carol refused", () => /<\*\* +550/.test(probe().out), 1000, 50);
    });

    test("587 offers AUTH only after STARTTLS; 465 is implicit TLS; a wrong password fails", () => {
        const plain = run("swaks", [
            "--server",
            ep.submission.host,
            "--port",
            String(ep.submission.port),
            "--ehlo",
            "client.example.net",
            "--auth",
            "PLAIN",
            "--auth-user",
            ALICE,
            "--auth-password",
            PASSWORDS[ALICE],
            "--from",
            ALICE,
            "--to",
            BOB,
            "--timeout",
            "15",
        ]);
        assert.notEqual(plain.code, 0);
        assert.match(plain.out, /Host did not advertise authentication/);
        const ok465 = submit("submissions", ALICE, PASSWORDS[ALICE], ALICE, BOB, uniqueSubject("465"));
        assert.equal(ok465.code, 0, ok465.out);
        const wrong = submit("submission", ALICE, "not-the-password", ALICE, BOB, uniqueSubject("wrong"));
        // swaks marks a rejected reply as `<~*` inside TLS (`<**` in clear text).
        assert.match(wrong.out, /<~\* +535 5\.7\.8/);
    });

    test("sending as another user's address is rejected", () => {
        const r = submit("submission", ALICE, PASSWORDS[ALICE], BOB, "someone@external.test", uniqueSubject("spoof"));
        assert.match(r.out, /<~\* +553 5\.7\.1 .*not owned by user/);
    });

    test(
        "outbound mail reaches the external MX with a DKIM signature python3-dkim verifies",
        { skip: loopbackOnly("the external MX and the DNS it verifies against are the pseudo-internet's") },
        async () => {
            const subject = uniqueSubject("outbound");
            const file = await submitOutbound(ALICE, subject);
            const text = fs.readFileSync(file, "utf8");
            assert.match(text, /^DKIM-Signature: .*d=example\.test/m);
            const v = run("/usr/bin/python3", [CLIENTS, "dkim-verify", stack.dns.host, file]);
            assert.deepEqual(JSON.parse(v.out.trim()), { verified: true }, v.out);
            // And the verifier is not a rubber stamp: a changed body fails.
            const tampered = path.join(os.tmpdir(), `e2e-tampered-${process.pid}.eml`);
            fs.writeFileSync(tampered, text.replace(`body of ${subject}`, "changed body"));
            assert.deepEqual(JSON.parse(run("/usr/bin/python3", [CLIENTS, "dkim-verify", stack.dns.host, tampered]).out.trim()), { verified: false });
            fs.rmSync(tampered);
        },
    );

    test("the user's CouchDB sieve script files a message into a folder", async () => {
        couchmail(
            ["sieve", "put", ALICE],
            'require ["fileinto", "mailbox"];\nif header :contains "subject" "[couch-filed]" { fileinto :create "CouchFiled"; stop; }\n',
        );
        const subject = uniqueSubject("[couch-filed]");
        assert.equal(smtpIn(ALICE, subject).code, 0);
        assert.equal((await delivered(ALICE, subject)).folder, "CouchFiled");
    });

    test("a ManageSieve upload works and takes effect", async () => {
        const script = path.join(os.tmpdir(), `e2e-sieve-${process.pid}.sieve`);
        fs.writeFileSync(script, 'require ["fileinto", "mailbox"];\nif header :contains "subject" "[managesieve]" { fileinto :create "ViaManageSieve"; }\n');
        // sieve-connect checks the certificate's name against --server, an address here: the CA is still pinned.
        const common = [
            "--server",
            ep.managesieve.host,
            "--port",
            String(ep.managesieve.port),
            "--user",
            ALICE,
            "--passwordfd",
            "0",
            "--tlscafile",
            stack.caFile,
            "--notlsverify",
        ];
        const r = run("sieve-connect", [...common, "--upload", "--localsieve", script, "--remotesieve", "e2e"], PASSWORDS[ALICE] + "\n");
        fs.rmSync(script);
        assert.equal(r.code, 0, r.out);
        assert.equal(run("sieve-connect", [...common, "--activate", "--remotesieve", "e2e"], PASSWORDS[ALICE] + "\n").code, 0);
        const list = run("sieve-connect", [...common, "--list"], PASSWORDS[ALICE] + "\n");
        assert.match(list.out, /"?e2e"?\s+(<- active|ACTIVE)/);
        const subject = uniqueSubject("[managesieve]");
        assert.equal(smtpIn(ALICE, subject).code, 0);
        assert.equal((await delivered(ALICE, subject)).folder, "ViaManageSieve");
    });

    test(
        "a changed config mount is hot-reloaded and takes effect (ConfigMap ..data swap)",
        { skip: loopbackOnly("edits the ConfigMap through the loopback kubelet") },
        async () => {
            const c = cluster();
            const cm = c.objects.find((o) => o.kind === "ConfigMap" && o.metadata.name === "postfix-config")!;
            const marker = `e2e-reload-${Date.now()}`;
            assert.doesNotMatch(banner(ep.submission), new RegExp(marker));
            // Edited in place: the entrypoint refuses a main.cf that sets a parameter twice.
            const mainCf = cm.data!["main.cf"].replace(/^smtpd_banner = .*$/m, `smtpd_banner = $myhostname ESMTP ${marker}`);
            assert.notEqual(mainCf, cm.data!["main.cf"]);
            await c.updateConfigMap("postfix-config", { ...cm.data!, "main.cf": mainCf });
            const end = Date.now() + 30_000;
            let seen = "";
            while (Date.now() < end && !seen.includes(marker)) {
                seen = banner(ep.submission);
                if (!seen.includes(marker)) await sleep(500);
            }
            assert.match(seen, new RegExp(marker));
        },
    );

    test(
        "CouchDB stopped: known users keep receiving (couchmail's cache); a restarted lookup sidecar answers 4xx until CouchDB returns",
        { skip: loopbackOnly("stops and crashes pods through the loopback kubelet") },
        async () => {
            const c = cluster();
            await c.stopPod("couchdb");
            try {
                const cached = uniqueSubject("couch-down-cached");
                assert.equal(smtpIn(ALICE, cached).code, 0);
                assert.equal((await delivered(ALICE, cached)).folder, "INBOX");
                // A sidecar that crashes is restarted by the kubelet: with CouchDB away it has nothing to answer from.
                const before = c.status().postfix.containers.couchmail.restartCount;
                await c.crashContainer("postfix", "couchmail");
                await waitFor(
                    "the kubelet restarting couchmail",
                    () => {
                        const s = c.status().postfix.containers.couchmail;
                        return s.running && s.restartCount > before;
                    },
                    20_000,
                );
                await sleep(3000);
                const refused = smtpIn(ALICE, uniqueSubject("couch-down"));
                assert.match(refused.out, /<\*\* +451 4\.3\.0/);
            } finally {
                await c.startPod("couchdb");
            }
            const back = uniqueSubject("couch-back");
            // The sender retries, as an MTA does after a 4xx, until the lookup sidecar has reloaded.
            await waitFor("acceptance after CouchDB returns", () => smtpIn(ALICE, back).code === 0, 60_000, 2000);
            assert.equal((await delivered(ALICE, back)).folder, "INBOX");
        },
    );

    test(
        "the Postfix pod restarted with mail queued delivers it after the restart",
        { skip: loopbackOnly("stops and starts pods through the loopback kubelet") },
        async () => {
            const c = cluster();
            await c.stopPod("dovecot");
            const subject = uniqueSubject("queued");
            try {
                const r = smtpIn(ALICE, subject);
                assert.equal(r.code, 0, r.out);
                await c.stopPod("postfix");
            } finally {
                await c.startPod("dovecot");
            }
            await c.startPod("postfix");
            assert.equal((await delivered(ALICE, subject, 60_000)).folder, "INBOX");
        },
    );

    test("curl's IMAP client reads the mailbox too", () => {
        const r = run("curl", [
            "-sS",
            "--ssl-reqd",
            "--cacert",
            stack.caFile,
            "--resolve",
            `${HOST}:${ep.imap.port}:${ep.imap.host}`,
            "-u",
            `${ALICE}:${PASSWORDS[ALICE]}`,
            `imap://${HOST}:${ep.imap.port}/INBOX?ALL`,
        ]);
        assert.equal(r.code, 0, r.out);
        assert.match(r.out, /^\* SEARCH( \d+)+/m);
    });
});
