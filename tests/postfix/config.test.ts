import fc from "fast-check";
import { POSTFIX_LISTENERS, PostfixSettings, renderPostfix } from "../../components/postfix/config";
import { contentHash } from "../../components/render";
import { postfixTestSettings } from "../kit/settings";

const base: PostfixSettings = {
    ...postfixTestSettings,
    hostname: "mail.example.test",
    ownDomains: ["example.test", "example.org"],
    postmaster: "postmaster@example.test",
};

/** main.cf as Postfix reads it: last definition wins. */
function parseMain(text: string): Map<string, string> {
    const out = new Map<string, string>();
    for (const line of text.split("\n")) {
        if (line === "" || line.startsWith("#")) continue;
        const m = /^([A-Za-z0-9_-]+) =(?: (.*))?$/.exec(line);
        if (!m) throw new Error(`not a parameter line: ${JSON.stringify(line)}`);
        out.set(m[1], m[2] ?? "");
    }
    return out;
}

/** master.cf entries: service/type → { command, options }. */
type MasterEntry = { command: string; maxproc: string; opts: Map<string, string>; args: string[] };
function parseMaster(text: string): Map<string, MasterEntry> {
    const out = new Map<string, MasterEntry>();
    let current: MasterEntry | undefined;
    for (const line of text.split("\n")) {
        if (line === "" || line.startsWith("#")) continue;
        if (/^\s/.test(line)) {
            if (!current) throw new Error(`continuation without an entry: ${line}`);
            const m = /^\s+-o ([^=]+)=(.*)$/.exec(line);
            if (m) current.opts.set(m[1], m[2]);
            else if (/^\s+\S+$/.test(line)) current.args.push(line.trim());
            else throw new Error(`bad continuation line ${line}`);
            continue;
        }
        const f = line.split(/\s+/);
        if (f.length < 8) throw new Error(`bad entry ${line}`);
        current = { command: f[7], maxproc: f[6], opts: new Map(), args: [] };
        out.set(`${f[0]}/${f[1]}`, current);
    }
    return out;
}

const render = (s: Partial<PostfixSettings> = {}) => {
    const files = renderPostfix({ ...base, ...s });
    return { main: parseMain(files["main.cf"]), master: parseMaster(files["master.cf"]), files };
};

describe("renderPostfix", () => {
    test("renders main.cf and master.cf deterministically", () => {
        const a = renderPostfix(base);
        expect(Object.keys(a).sort()).toEqual(["inbound_header_checks", "main.cf", "master.cf"]);
        expect(contentHash(renderPostfix(base))).toBe(contentHash(a));
        expect(contentHash(renderPostfix({ ...base, hostname: "mx.example.test" }))).not.toBe(contentHash(a));
    });

    test("internal services (qmgr too) run unprivileged", () => {
        // A root qmgr creates root-owned queue directories that postsuper (as postfix) cannot open at the next start.
        const { files } = render();
        const internal = files["master.cf"].split("\n").filter((l) => /^\S+\s+(unix|unix-dgram)\s/.test(l));
        expect(internal.length).toBeGreaterThan(10);
        // spawn alone starts as root, to run its program as the user= it names (policyd-spf: nobody).
        for (const l of internal) expect({ l, unpriv: l.split(/\s+/)[3] }).toEqual({ l, unpriv: l.split(/\s+/)[7] === "spawn" ? "n" : "-" });
    });

    test("pickup, qmgr and flush have the stock wake-up timers (queued mail is retried after a restart)", () => {
        const wakeups = Object.fromEntries(
            render()
                .files["master.cf"].split("\n")
                .filter((l) => /^(pickup|qmgr|flush)\s/.test(l))
                .map((l) => [l.split(/\s+/)[0], l.split(/\s+/)[5]]),
        );
        expect(wakeups).toEqual({ pickup: "60", qmgr: "300", flush: "1000?" });
    });

    test("virtual domains, mailboxes, aliases and sender logins come from the couchmail socketmap", () => {
        const { main } = render({ socketmap: "unix:/run/couchmail/socketmap.sock" });
        expect(main.get("virtual_mailbox_domains")).toBe("socketmap:unix:/run/couchmail/socketmap.sock:domains");
        expect(main.get("virtual_mailbox_maps")).toBe("socketmap:unix:/run/couchmail/socketmap.sock:mailboxes");
        expect(main.get("virtual_alias_maps")).toMatch(/, socketmap:unix:\/run\/couchmail\/socketmap\.sock:aliases$/);
        expect(main.get("smtpd_sender_login_maps")).toBe("socketmap:unix:/run/couchmail/socketmap.sock:senders");
        expect(main.get("mydestination")).toBe("");
        expect(main.get("virtual_transport")).toBe("lmtp:inet:dovecot:24");
        expect(main.get("lmtp_host_lookup")).toBe("native");
    });

    test("no open relay: port 25 relays nothing, mynetworks is loopback only, and never grants relay", () => {
        const { main, master } = render({ trustedNetworks: ["10.244.0.0/16"] });
        expect(main.get("smtpd_relay_restrictions")).toBe("reject_unauth_destination");
        const rcpt = main.get("smtpd_recipient_restrictions")!.split(/,\s*/);
        expect(rcpt).toContain("reject_unauth_destination");
        expect(rcpt.indexOf("reject_unauth_destination")).toBeLessThan(rcpt.indexOf("permit"));
        for (const [k, v] of main) if (k.startsWith("smtpd_") && k.endsWith("_restrictions")) expect(v).not.toMatch(/permit_mynetworks/);
        expect(main.get("mynetworks")).toBe("127.0.0.0/8 [::1]/128 10.244.0.0/16");
        expect(render().main.get("mynetworks")).toBe("127.0.0.0/8 [::1]/128");
        // The smtpd behind postscreen inherits main.cf (no relay-widening options), only its own cleanup service.
        expect([...master.get("smtpd/pass")!.opts]).toEqual([["cleanup_service_name", "cleanup-inbound"]]);
    });

    test("SASL only on 587/465, with TLS first and sender-login checks", () => {
        const { main, master } = render();
        expect(main.get("smtpd_sasl_auth_enable")).toBe("no");
        expect(main.get("smtpd_tls_auth_only")).toBe("yes");
        expect(main.get("smtpd_sasl_path")).toBe("inet:dovecot:12345");
        const sub = master.get(`${POSTFIX_LISTENERS.submission.port}/inet`)!;
        const subs = master.get(`${POSTFIX_LISTENERS.submissions.port}/inet`)!;
        for (const svc of [sub, subs]) {
            expect(svc.command).toBe("smtpd");
            expect(svc.opts.get("smtpd_sasl_auth_enable")).toBe("yes");
            expect(svc.opts.get("smtpd_tls_auth_only")).toBe("yes");
            expect(svc.opts.get("smtpd_sender_restrictions")).toMatch(/reject_sender_login_mismatch/);
            expect(svc.opts.get("smtpd_relay_restrictions")).toBe("permit_sasl_authenticated,reject");
            expect(svc.opts.get("milter_macro_daemon_name")).toBe("ORIGINATING");
        }
        expect(sub.opts.get("smtpd_tls_security_level")).toBe("encrypt");
        expect(subs.opts.get("smtpd_tls_wrappermode")).toBe("yes");
        expect(master.get(`${POSTFIX_LISTENERS.smtp.port}/inet`)!.command).toBe("postscreen");
        const saslOn = [...master.entries()].filter(([, e]) => e.opts.get("smtpd_sasl_auth_enable") === "yes").map(([k]) => k);
        expect(saslOn.sort()).toEqual([`${POSTFIX_LISTENERS.submissions.port}/inet`, `${POSTFIX_LISTENERS.submission.port}/inet`]);
    });

    test("submission TLS: Mozilla intermediate suites only (no anonymous or RSA key exchange); client session kept out of Received:", () => {
        const { master } = render();
        for (const port of [POSTFIX_LISTENERS.submission.port, POSTFIX_LISTENERS.submissions.port]) {
            const svc = master.get(`${port}/inet`)!;
            expect(svc.opts.get("smtpd_tls_security_level")).toBe("encrypt");
            expect(svc.opts.get("smtpd_tls_mandatory_ciphers")).toBe("high");
            const suites = svc.opts.get("tls_high_cipherlist")!.split(":");
            expect(suites.length).toBeGreaterThan(3);
            for (const suite of suites) expect(suite).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
            expect(svc.opts.get("smtpd_hide_client_session")).toBe("yes");
        }
        // Port 25 keeps Postfix's broad opportunistic defaults and the client's trace.
        expect(master.get(`${POSTFIX_LISTENERS.smtp.port}/inet`)!.opts.get("smtpd_hide_client_session")).toBeUndefined();
    });

    test("port 25 refuses our own domains as envelope sender and as From: (they only come from submission)", () => {
        const { main, master } = render({ proxyProtocol: true });
        const senderAccess = /check_sender_access inline:\{ (.*) \}$/.exec(main.get("smtpd_sender_restrictions")!)![1];
        expect(senderAccess).toBe(
            "{ example.test = 550 5.7.1 Mail from our own domains is accepted only from authenticated users (submission) }, " +
                "{ example.org = 550 5.7.1 Mail from our own domains is accepted only from authenticated users (submission) }",
        );
        // Both port-25 smtpd services clean up through the service with the From: check; submission does not.
        expect(master.get("smtpd/pass")!.opts.get("cleanup_service_name")).toBe("cleanup-inbound");
        expect(master.get("smtpd-proxy/pass")!.opts.get("cleanup_service_name")).toBe("cleanup-inbound");
        expect(master.get(`${POSTFIX_LISTENERS.submission.port}/inet`)!.opts.get("cleanup_service_name")).toBeUndefined();
        expect(master.get("cleanup-inbound/unix")!.opts.get("header_checks")).toBe("$inbound_header_checks");
        expect(main.get("inbound_header_checks")).toBe("regexp:$config_directory/inbound_header_checks");
        const pattern = new RegExp(/^\/(.*)\/ REJECT 5\.7\.1 /.exec(render().files.inbound_header_checks)![1].replace("[[:space:]]", "\\s"), "i");
        for (const from of ["From: a@example.test", 'From: "Boss" <boss@EXAMPLE.org>', "From: x@sub.example.test "]) expect(pattern.test(from)).toBe(true);
        for (const from of ["From: a@example.test.evil", "From: a@notexample.test", "Reply-To: a@example.test"]) expect(pattern.test(from)).toBe(false);
    });

    test("bare postmaster and postmaster@/abuse@ the mail host reach the postmaster; other addresses there are unknown", () => {
        const { main } = render();
        expect(main.get("myorigin")).toBe("$myhostname");
        expect(main.get("virtual_alias_domains")).toBe("$myhostname");
        expect(main.get("virtual_alias_maps")).toMatch(
            /^inline:\{ \{ postmaster@mail\.example\.test = postmaster@example\.test \}, \{ abuse@mail\.example\.test = postmaster@example\.test \} \}, socketmap:/,
        );
        // A mail host that is itself a hosted domain keeps couchmail's answers for it.
        const same = render({ hostname: "example.test" }).main;
        expect(same.get("virtual_alias_domains")).toBe("");
        expect(same.get("virtual_alias_maps")).toMatch(/^socketmap:/);
    });

    test("port 25 checks SPF through policyd-spf, after unknown recipients are refused and before greylisting; submission does not", () => {
        const { main, master } = render({ policyService: "inet:postgrey:10023" });
        const rcpt = main.get("smtpd_recipient_restrictions")!.split(/,\s*/);
        const spf = rcpt.indexOf("check_policy_service unix:private/policyd-spf");
        expect(spf).toBeGreaterThan(rcpt.indexOf("reject_unlisted_recipient"));
        expect(spf).toBeLessThan(rcpt.indexOf("check_policy_service inet:postgrey:10023"));
        const spawn = master.get("policyd-spf/unix")!;
        expect(spawn.command).toBe("spawn");
        expect(spawn.args).toEqual(["user=nobody", "argv=/usr/bin/policyd-spf"]);
        expect(main.get("policyd-spf_time_limit")).toBe("3600");
        // Bounded: each is a Python process in Postfix's memory budget, released soon after its session's last check.
        expect(master.get("policyd-spf/unix")!.maxproc).toBe("4");
        expect(main.get("smtpd_policy_service_max_idle")).toBe("10s");
        expect(master.get(`${POSTFIX_LISTENERS.submission.port}/inet`)!.opts.get("smtpd_recipient_restrictions")).not.toMatch(/policyd-spf/);
        expect(render({ spf: false }).main.get("smtpd_recipient_restrictions")).not.toMatch(/policyd-spf/);
    });

    test("no more port-25 smtpd processes than policyd-spf processes, with and without the PROXY twin", () => {
        // An idle smtpd waits for its next client blocked in flock() outside its event loop (postfix
        // src/master/single_server.c), so smtpd_policy_service_max_idle never closes its policyd-spf connection: once
        // more smtpds than policyd-spf processes exist, a new session waits smtpd_policy_service_timeout (100 s) for one.
        for (const proxyProtocol of [false, true]) {
            const { master } = render({ proxyProtocol });
            const passServices = [...master.entries()].filter(([key, e]) => key.endsWith("/pass") && e.command === "smtpd");
            expect(passServices.length).toBe(proxyProtocol ? 2 : 1);
            const smtpds = passServices.reduce((sum, [, e]) => sum + (e.maxproc === "-" ? 100 : Number(e.maxproc)), 0);
            expect(smtpds).toBeLessThanOrEqual(Number(master.get("policyd-spf/unix")!.maxproc));
            expect(passServices.every(([, e]) => Number(e.maxproc) >= 2)).toBe(true);
        }
    });

    test("delivers to Dovecot no more messages at once than its per-user LMTP limit", () => {
        expect(render().main.get("lmtp_destination_concurrency_limit")).toBe("10");
        expect(() => render({ lmtpConcurrency: 0 })).toThrow(/lmtpConcurrency: expected an integer from 1 to 100, got 0/);
    });

    test("logs to stdout, or with logToFile to a file the exporter may read", () => {
        expect(render().main.get("maillog_file")).toBe("/dev/stdout");
        const { main } = render({ logToFile: true });
        expect(main.get("maillog_file")).toBe("/var/log/postfix/postfix.log");
        expect(main.get("maillog_file_prefixes")).toBe("/var/log/postfix");
        expect(main.get("maillog_file_permissions")).toBe("0644");
    });

    test("hardening: CVE-2023-51764, strict HELO/sender, milters defer when down", () => {
        const { main } = render();
        expect(main.get("smtpd_forbid_bare_newline")).toBe("normalize");
        expect(main.get("smtpd_forbid_unauth_pipelining")).toBe("yes");
        expect(main.get("smtpd_data_restrictions")).toMatch(/reject_unauth_pipelining/);
        expect(main.get("smtpd_helo_required")).toBe("yes");
        expect(main.get("smtpd_helo_restrictions")).toMatch(/reject_non_fqdn_helo_hostname/);
        expect(main.get("smtpd_sender_restrictions")).toMatch(/reject_unknown_sender_domain/);
        expect(main.get("smtpd_milters")).toBe("inet:opendkim:8891");
        expect(main.get("milter_default_action")).toBe("tempfail");
        expect(main.get("queue_directory")).toBe("/var/spool/postfix");
        expect(main.get("compatibility_level")).toBe("3.10");
        expect(main.get("postscreen_dnsbl_sites")).toMatch(/^zen\.spamhaus\.org=127\.0\.0\.\[2\.\.11\]\*3/);
    });

    test("optional hooks are off by default and wired when set", () => {
        const off = render();
        expect(off.main.get("smtpd_recipient_restrictions")).not.toMatch(/check_policy_service inet:/);
        expect(off.main.get("relayhost")).toBe("");
        expect(off.main.has("smtp_sasl_auth_enable")).toBe(false);
        expect(off.master.has(`${POSTFIX_LISTENERS.smtp.proxy.port}/inet`)).toBe(false);

        const on = render({
            policyService: "inet:postgrey:10023",
            relay: { host: "smtp.relay.example", port: 465, passwordMapFile: "/etc/mail/relay/password" },
            proxyProtocol: true,
        });
        expect(on.main.get("smtpd_recipient_restrictions")).toMatch(
            /reject_unauth_destination, reject_unlisted_recipient, check_policy_service unix:private\/policyd-spf, check_policy_service inet:postgrey:10023, permit$/,
        );
        expect(on.master.get("smtpd/pass")!.opts.get("cleanup_service_name")).toBe("cleanup-inbound");
        expect(on.master.get(`${POSTFIX_LISTENERS.submission.port}/inet`)!.opts.get("content_filter")).toBe("");
        expect(on.main.get("relayhost")).toBe("[smtp.relay.example]:465");
        expect(on.main.get("smtp_tls_wrappermode")).toBe("yes");
        expect(on.main.get("smtp_tls_security_level")).toBe("secure");
        expect(on.main.get("smtp_sasl_password_maps")).toBe("texthash:/etc/mail/relay/password");
        // PROXY ports: headers could claim loopback, so those clients never match mynetworks.
        const proxy25 = on.master.get(`${POSTFIX_LISTENERS.smtp.proxy.port}/inet`)!;
        expect(proxy25.opts.get("postscreen_upstream_proxy_protocol")).toBe("haproxy");
        expect(proxy25.opts.get("postscreen_access_list")).toBe("");
        expect(on.master.get("smtpd-proxy/pass")!.opts.get("mynetworks")).toBe("");
        for (const port of [POSTFIX_LISTENERS.submission.proxy.port, POSTFIX_LISTENERS.submissions.proxy.port]) {
            const svc = on.master.get(`${port}/inet`)!;
            expect(svc.opts.get("smtpd_upstream_proxy_protocol")).toBe("haproxy");
            expect(svc.opts.get("mynetworks")).toBe("");
            expect(svc.opts.get("smtpd_sasl_auth_enable")).toBe("yes");
        }
    });

    test("overrides are applied last and replace the rendered value once", () => {
        const { main, files } = render({ mainCfOverrides: { message_size_limit: "52428800", smtp_tls_CAfile: "/x.pem", my_custom: "a, b" } });
        expect(main.get("message_size_limit")).toBe("52428800");
        expect(files["main.cf"].match(/^message_size_limit =/gm)).toHaveLength(1);
        const keys = [...main.keys()];
        expect(keys.slice(-3)).toEqual(["message_size_limit", "smtp_tls_CAfile", "my_custom"]);
    });

    test.each<[string, Partial<PostfixSettings>]>([
        ["hostname", { hostname: "localhost" }],
        ["socketmap", { socketmap: "tcp:couchmail:1" }],
        ["dnsbls[1]", { dnsbls: ["zen.spamhaus.org", "bad list"] }],
        ["saslEndpoint", { saslEndpoint: "unix:/run/auth" }],
        ["milters[0]", { milters: ["opendkim:8891"] }],
        ["relay.port", { relay: { host: "smtp.relay.example", port: 25 as 587, passwordMapFile: "/p" } }],
        ["relay.passwordMapFile", { relay: { host: "smtp.relay.example", port: 587, passwordMapFile: "rel/p" } }],
        ["trustedNetworks[0]", { trustedNetworks: ["0.0.0.0/33"] }],
        ["messageSizeLimit", { messageSizeLimit: 10 }],
        ["queueDirectory", { queueDirectory: "/var/../etc" }],
        ['mainCfOverrides["bad key"]', { mainCfOverrides: { "bad key": "x" } }],
        ["mainCfOverrides.myhostname", { mainCfOverrides: { myhostname: "a\nrelayhost = evil" } }],
    ])("rejects a bad %s, naming it", (field, patch) => {
        expect(() => renderPostfix({ ...base, ...patch })).toThrow(new RegExp(`^${field.replace(/[[\]."]/g, "\\$&")}: expected`));
    });

    test("property: any valid override set keeps main.cf one parameter per line, overrides winning", () => {
        const key = fc.stringMatching(/^[a-z][a-z0-9_]{0,30}$/);
        const value = fc.string({ maxLength: 60 }).filter((v) => !/[\r\n\0]/.test(v));
        fc.assert(
            fc.property(fc.dictionary(key, value, { maxKeys: 8 }), (overrides) => {
                const files = renderPostfix({ ...base, mainCfOverrides: overrides });
                const main = parseMain(files["main.cf"]); // throws on a broken line
                for (const [k, v] of Object.entries(overrides)) {
                    expect(main.get(k)).toBe(v.trim());
                    expect(files["main.cf"].split("\n").filter((l) => l.startsWith(`${k} =`))).toHaveLength(1);
                }
                parseMaster(files["master.cf"]);
            }),
            { numRuns: 200 },
        );
    });
});
