// Webmail in a real browser (issue 17): headless Chromium from the pseudo-internet logs in to Roundcube over HTTPS,
// reads the message the suite sent, sends one that reaches the external MX with a valid DKIM signature, creates a
// filter in the managesieve plugin that then files a new message, and leaves a screenshot. The browser trusts only
// the stack certificate's key (tests/webmail/browser.ts).
import * as fs from "fs";
import * as path from "path";
import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { Browser } from "../webmail/browser";
import { E2E_DIR } from "./layout";
import { addUser, CLIENTS, delivered, ensureDomain, externalMessages, imap, PASSWORDS, smtpIn, uniqueSubject } from "./mailclients";
import { loopbackOnly, run, stack, waitFor } from "./suite";

const HOST = stack.hostname;
const USER = `webmail-${process.pid}@example.test`;
/** The test artifact: the message as the browser shows it. */
const SCREENSHOT = path.join(E2E_DIR, "artifacts", "webmail-message.png");

describe("webmail in headless Chromium", { skip: !stack.endpoints["webmail-https"] && "webmail is not enabled in this stack" }, () => {
    const ep = stack.endpoints["webmail-https"];
    const origin = `https://${HOST}:${ep?.port}`;
    let browser: Browser;

    before(async () => {
        ensureDomain("example.test");
        addUser(USER);
        browser = await Browser.launch({
            netns: stack.cluster ? undefined : stack.clientNetns,
            resolve: { [HOST]: ep.host },
            trustedCertPem: fs.readFileSync(stack.caFile, "utf8"),
        });
    });
    after(() => browser?.close());

    test("logs in and reads the message the suite sent; no Content-Security-Policy violation", async () => {
        const subject = uniqueSubject("webmail read");
        assert.equal(smtpIn(USER, subject).code, 0);
        await delivered(USER, subject);
        await browser.goto(`${origin}/`);
        await browser.navigating(() =>
            browser.evaluate(`(() => {
                document.querySelector("#rcmloginuser").value = ${JSON.stringify(USER)};
                document.querySelector("#rcmloginpwd").value = ${JSON.stringify(PASSWORDS[USER])};
                document.querySelector("#rcmloginsubmit").click();
            })()`),
        );
        const row = `Object.entries(rcmail.message_list?.rows ?? {}).find(([, r]) => r.obj.innerText.includes(${JSON.stringify(subject)}))`;
        await browser.waitUntil(row, "the message in the list");
        const uid = await browser.evaluate<string>(`${row}[0]`);
        await browser.goto(`${origin}/?_task=mail&_mbox=INBOX&_uid=${uid}&_action=show`);
        await browser.waitUntil(`document.body.innerText.includes(${JSON.stringify(`body of ${subject}`)})`, "the message body");
        await browser.screenshot(SCREENSHOT);
        console.log(`webmail screenshot: ${SCREENSHOT}`);
        assert.deepEqual(
            browser.log.filter((e) => /Content.Security.Policy/i.test(e.text)),
            [],
        );
    });

    test(
        "sends a message that reaches the external MX with a DKIM signature python3-dkim verifies",
        { skip: loopbackOnly("the external MX and the DNS it verifies against are the pseudo-internet's") },
        async () => {
            const subject = uniqueSubject("webmail sent");
            await browser.goto(`${origin}/?_task=mail&_action=compose&_to=someone@external.test`);
            await browser.waitUntil(`document.querySelector("#compose-subject") && window.rcmail && rcmail.env.compose_id`, "the compose form");
            await browser.evaluate(`(() => {
                document.querySelector("#compose-subject").value = ${JSON.stringify(subject)};
                document.querySelector("#composebody").value = "Sent from Roundcube by the e2e suite.";
                // As the Send button calls it (its props are a string there).
                rcmail.command("send", "");
            })()`);
            const file = await waitFor("the message at the external MX", () => externalMessages(subject)[0], 60_000);
            const text = fs.readFileSync(file, "utf8");
            assert.match(text, new RegExp(`^From: .*${USER.replace(/[.]/g, "\\.")}`, "m"));
            assert.match(text, /^DKIM-Signature: .*d=example\.test/m);
            const v = run("/usr/bin/python3", [CLIENTS, "dkim-verify", stack.dns.host, file]);
            assert.deepEqual(JSON.parse(v.out.trim()), { verified: true }, v.out);
        },
    );

    test("a filter made in the managesieve plugin files the next message into its folder", async () => {
        await browser.goto(`${origin}/?_task=settings&_action=plugin.managesieve-action&_framed=1`);
        await browser.waitUntil(`document.querySelector("[name='_action_mailbox[0]']")`, "the filter form");
        await browser.navigating(() =>
            browser.evaluate(`(() => {
                const form = document.querySelector("[name='_action_mailbox[0]']").form;
                form.querySelector("[name='_name']").value = "webmail e2e";
                form.querySelector("[name='_header[0]']").value = "subject";
                form.querySelector("[name='_rule_op[0]']").value = "contains";
                // The skin turns the rule's list textarea into inputs named _rule_target[0][] (and disables the textarea).
                form.querySelector("[name='_rule_target[0][]']").value = "[webmail-filter]";
                form.querySelector("[name='_action_type[0]']").value = "fileinto";
                form.querySelector("[name='_action_mailbox[0]']").value = "Archive";
                form.submit();
            })()`),
        );
        const invalid = await browser.evaluate<string[]>(
            `[...document.querySelectorAll(".is-invalid")].map((e) => e.name + ": " + (e.dataset.errorMsg ?? ""))`,
        );
        assert.deepEqual(invalid, [], "the filter form refused the filter");
        const subject = uniqueSubject("[webmail-filter]");
        assert.equal(smtpIn(USER, subject).code, 0);
        assert.equal((await delivered(USER, subject)).folder, "Archive");
    });

    // Last: it changes the user's password.
    test("the password plugin changes the user's own password at couchmail: the new one logs in, the old one stops", async () => {
        const old = PASSWORDS[USER];
        const fresh = `changed-${process.pid}-in-webmail`;
        // The plugin refuses framed requests (its $noframe): the page itself, as the Settings list opens it.
        await browser.goto(`${origin}/?_task=settings&_action=plugin.password`);
        await browser.waitUntil(`document.querySelector("[name=_curpasswd]")`, "the password form");
        await browser.navigating(() =>
            browser.evaluate(`(() => {
                document.querySelector("[name=_curpasswd]").value = ${JSON.stringify(old)};
                document.querySelector("[name=_newpasswd]").value = ${JSON.stringify(fresh)};
                document.querySelector("[name=_confpasswd]").value = ${JSON.stringify(fresh)};
                rcmail.command("plugin.password-save");
            })()`),
        );
        PASSWORDS[USER] = fresh;
        // Dovecot's auth cache holds the old hash until its entry expires (auth_cache_ttl, 10 s): until then the old
        // password still logs in and the new one does not. Tries are sparse so the auth policy's guess limit is not
        // what refuses them.
        await waitFor("a login with the new password", () => imap("imap-list", USER, fresh).login, 30_000, 5_000);
        assert.equal(imap("imap-list", USER, old).login, false, "the old password still logs in");
    });
});
