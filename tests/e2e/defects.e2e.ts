// Hostile and unusual clients against the running stack: what a forger, a backscatter source, an SMTPUTF8 sender and a
// privacy-minded user would try. Each test is a defect that was once there.
import * as fs from "fs";
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { addUser, CLIENTS, delivered, ensureDomain, externalMessages, greylisted, retryGreylisted, smtpIn, submitOutbound, uniqueSubject } from "./mailclients";
import { run, sleep, stack } from "./suite";

const DAVE = "dave@example.test";
/** The stack's mailPostmaster (the config reader's default: postmaster@ the first domain). */
const POSTMASTER = "postmaster@example.test";
const FORGED = /550 5\.7\.1 .*Mail from our own domains is accepted only from authenticated users/;

/** One SMTPUTF8 transaction on port 25 from the pseudo-internet, greylisting retried like an MTA. */
function smtpUtf8(from: string, to: string, subject: string): { offered: boolean; code: number; reply: string } {
    return retryGreylisted(
        () => {
            const r = run("/usr/bin/python3", [CLIENTS, "smtp-utf8", stack.endpoints.smtp.host, String(stack.endpoints.smtp.port), from, to, subject]);
            assert.equal(r.code, 0, r.out);
            return JSON.parse(r.out.trim().split("\n").pop()!) as { offered: boolean; code: number; reply: string };
        },
        (r) => r.code === 450,
    );
}

describe("hostile and unusual clients", () => {
    before(() => {
        ensureDomain("example.test");
        addUser(DAVE);
        addUser(POSTMASTER);
    });

    test("an SMTPUTF8 message accepted on 25 is delivered, not bounced (Dovecot's LMTP offers SMTPUTF8)", async () => {
        const subject = uniqueSubject("smtputf8");
        const r = smtpUtf8("jörg@external.test", DAVE, subject);
        assert.equal(r.offered, true);
        assert.equal(r.code, 250, r.reply);
        const found = await delivered(DAVE, subject, 30_000);
        assert.equal(found.folder, "INBOX");
        // No bounce went back to the sender.
        await sleep(2000);
        assert.deepEqual(externalMessages(subject), []);
    });

    test("our own domains as envelope sender on port 25 are refused; a forged From: header too", () => {
        const envelope = smtpIn(DAVE, uniqueSubject("forged envelope"), { from: "alice@example.test" });
        assert.match(envelope.out, FORGED);
        assert.ok(!/<- +250 .*queued as/.test(envelope.out), envelope.out);
        const header = smtpIn(DAVE, uniqueSubject("forged header"), { from: "sender@external.test", headers: ["From: Alice <alice@example.test>"] });
        assert.match(header.out, FORGED);
        // A stranger's own From: still passes.
        const subject = uniqueSubject("honest from");
        const honest = smtpIn(DAVE, subject, { from: "sender@external.test" });
        assert.match(honest.out, /<- +250 .*queued as/, honest.out);
    });

    test("bare RCPT TO:<postmaster> is accepted and delivered to the postmaster, with no bounce to the (forgeable) sender", async () => {
        const subject = uniqueSubject("bare postmaster");
        const r = smtpIn("postmaster", subject, { from: "victim@external.test" });
        assert.ok(!greylisted(r.out), r.out);
        assert.match(r.out, /<- +250 .*queued as/, r.out);
        await delivered(POSTMASTER, subject, 30_000);
        await sleep(2000);
        assert.deepEqual(externalMessages(subject), [], "a bounce reached the sender");
        // Any other address at the mail host's own name is unknown at RCPT time: nothing to bounce later.
        const other = smtpIn(`nobody@${stack.hostname}`, uniqueSubject("unknown at host"));
        assert.match(other.out, /<\*\* +550 5\.1\.1 /, other.out);
    });

    test("SPF on port 25: a sender whose domain's SPF fails (-all) is refused; others get a Received-SPF header", async () => {
        const refused = smtpIn(DAVE, uniqueSubject("spf fail"), { from: "sender@spf-fail.test" });
        assert.match(refused.out, /<\*\* +550 5\.7\.23 .*SPF/, refused.out);
        const subject = uniqueSubject("spf none");
        assert.match(smtpIn(DAVE, subject).out, /<- +250 .*queued as/);
        const found = await delivered(DAVE, subject, 30_000);
        assert.match(found.headers!, /^Received-SPF: None \(mailfrom\) identity=mailfrom;/m);
    });

    test("mail submitted on 587 carries neither the user's address nor HELO in its Received: header", async () => {
        const file = await submitOutbound(DAVE, uniqueSubject("submission privacy"));
        const text = fs.readFileSync(file, "utf8");
        const received = text
            .split(/\r?\n(?![ \t])/)
            .filter((h) => /^Received:/i.test(h))
            .map((h) => h.replace(/\r?\n[ \t]+/g, " "));
        const ours = received.filter((h) => h.includes(`by ${stack.hostname} (Postfix)`));
        assert.equal(ours.length, 1, received.join("\n"));
        // Only "by <us> … id … for <recipient>": no "from <HELO> (<name> [<address>])" clause.
        assert.doesNotMatch(ours[0], /client\.example\.net|\[\d+\.\d+\.\d+\.\d+\]|^Received: from /i, ours[0]);
    });
});
