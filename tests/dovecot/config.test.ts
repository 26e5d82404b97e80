import fc from "fast-check";
import { DOVECOT_LISTENERS, DOVECOT_SPECIAL_FOLDERS, DovecotSettings, renderDovecot } from "../../components/dovecot/config";
import { dovecotTmpSize } from "../../components/dovecot";
import { dovecotTestSettings } from "../kit/settings";

const base: DovecotSettings = { ...dovecotTestSettings, hostname: "mail.example.test" };
const conf = (s: Partial<DovecotSettings> = {}) => renderDovecot({ ...base, ...s })["dovecot.conf"];

/** The body of the first `head {` block (nested blocks included), or undefined. */
function section(text: string, head: string): string | undefined {
    const lines = text.split("\n");
    const start = lines.findIndex((l) => l.trim() === `${head} {`);
    if (start < 0) return undefined;
    let depth = 0;
    for (let i = start; i < lines.length; i++) {
        depth += (lines[i].match(/\{$/) ? 1 : 0) - (lines[i].trim() === "}" ? 1 : 0);
        if (depth === 0) return lines.slice(start + 1, i).join("\n");
    }
    throw new Error(`unbalanced block ${head}`);
}

describe("renderDovecot", () => {
    test("starts with the 2.4 version settings and uses 2.4 names", () => {
        const c = conf();
        expect(c.split("\n").find((l) => !l.startsWith("#"))).toBe("dovecot_config_version = 2.4.1");
        expect(c).toMatch(/^dovecot_storage_version = 2\.4\.1$/m);
        // 2.3 habits that 2.4 ignores or rejects.
        expect(c).not.toMatch(/mail_location|disable_plaintext_auth|ssl_cert =|%[udn]\b|plugin \{/);
        expect(c).toMatch(/^mail_home = \/var\/mail\/%\{user \| domain \| lower\}\/%\{user \| username \| lower\}$/m);
    });

    test("TLS is required before any login; logs go to stderr", () => {
        const c = conf();
        expect(c).toMatch(/^ssl = required$/m);
        expect(c).toMatch(/^auth_allow_cleartext = no$/m);
        expect(c).toMatch(/^ssl_server_cert_file = \/etc\/mail\/tls\/tls\.crt$/m);
        expect(c).toMatch(/^log_path = \/dev\/stderr$/m);
    });

    test("TLS 1.2 suites are Mozilla intermediate only: no anonymous or RSA key exchange", () => {
        const suites = /^ssl_cipher_list = (.*)$/m.exec(conf())![1].split(":");
        expect(suites.length).toBeGreaterThan(3);
        for (const suite of suites) expect(suite).toMatch(/^ECDHE-(ECDSA|RSA)-(AES(128|256)-GCM-SHA(256|384)|CHACHA20-POLY1305)$/);
        expect(conf()).toMatch(/^ssl_min_protocol = TLSv1\.2$/m);
    });

    test("LMTP offers SMTPUTF8, so mail Postfix accepted with SMTPUTF8 is delivered, not bounced", () => {
        expect(conf()).toMatch(/^mail_utf8_extensions = yes$/m);
    });

    test("listeners use DOVECOT_LISTENERS; PROXY listeners only when enabled", () => {
        const c = conf();
        const login = section(c, "service imap-login")!;
        expect(section(login, "inet_listener imap")).toMatch(`port = ${DOVECOT_LISTENERS.imap.port}`);
        expect(section(login, "inet_listener imaps")).toMatch(new RegExp(`port = ${DOVECOT_LISTENERS.imaps.port}\\n\\s*ssl = yes`));
        expect(section(section(c, "service lmtp")!, "inet_listener lmtp")).toMatch(`port = ${DOVECOT_LISTENERS.lmtp.port}`);
        expect(section(section(c, "service auth")!, "inet_listener auth_sasl")).toMatch(`port = ${DOVECOT_LISTENERS.authSasl.port}`);
        expect(section(section(c, "service managesieve-login")!, "inet_listener sieve")).toMatch(`port = ${DOVECOT_LISTENERS.sieve.port}`);
        expect(c).not.toMatch(/haproxy/);
        const p = conf({ proxyProtocol: true, haproxyTrustedNetworks: ["10.0.0.0/8"] });
        expect(p).toMatch(/^haproxy_trusted_networks = 10\.0\.0\.0\/8$/m);
        expect(section(section(p, "service imap-login")!, "inet_listener imaps_proxy")).toMatch(
            new RegExp(`port = ${DOVECOT_LISTENERS.imaps.proxy.port}\\n\\s*haproxy = yes\\n\\s*ssl = yes`),
        );
        expect(() => renderDovecot({ ...base, proxyProtocol: true })).toThrow(/^haproxyTrustedNetworks: expected/);
    });

    test("auth goes through couchmail's Lua script with prefetch and a cache", () => {
        const c = conf({ couchmailUrl: "http://couchmail:8080" });
        expect(section(c, "passdb lua")).toMatch(/lua_file = \/etc\/mail\/couchmail\/auth\.lua[\s\S]*couchmail_url = http:\/\/couchmail:8080/);
        expect(section(c, "userdb prefetch")).toBe("");
        expect(section(c, "userdb lua")).toMatch(/lua_file = /);
        expect(c.indexOf("userdb prefetch")).toBeLessThan(c.indexOf("userdb lua"));
        expect(c).toMatch(/^auth_cache_size = 10M$/m);
        // A changed or disabled password must not keep working for long: entries expire after a minute (and are still
        // used past that only while the passdb fails).
        expect(c).toMatch(/^auth_cache_ttl = 10s$/m);
    });

    test("password guesses go through couchmail's auth policy: asked before each check, told each result", () => {
        const c = conf({ couchmailUrl: "http://127.0.0.1:10102/" });
        expect(c).toMatch(/^auth_policy_server_url = http:\/\/127\.0\.0\.1:10102\/dovecot\/policy$/m);
        // Dovecot refuses a policy server without a nonce.
        expect(c).toMatch(/^auth_policy_hash_nonce = \S+$/m);
        // A second `allow` after each success would charge every login twice.
        expect(c).toMatch(/^auth_policy_check_after_auth = no$/m);
        // couchmail unreachable: logins go on (the auth cache keeps users in through an outage), Dovecot logs each error.
        expect(c).toMatch(/^auth_policy_reject_on_fail = no$/m);
        // Dovecot's defaults are cleared first (they carry a password hash), then exactly what the policy reads.
        expect(c).toMatch(/^auth_policy_request_attributes =\nauth_policy_request_attributes \{/m);
        expect(
            section(c, "auth_policy_request_attributes")!
                .split("\n")
                .map((l) => l.trim()),
        ).toEqual(["login = %{requested_username}", "remote = %{remote_ip}", "protocol = %{protocol}", "session_id = %{session}", "fail_type = %{fail_type}"]);
        expect(c).not.toMatch(/hashed_password/);
    });

    test("special-use folders are auto-subscribed; Junk autoexpunges (configurable)", () => {
        const ns = section(conf(), "namespace inbox")!;
        for (const f of DOVECOT_SPECIAL_FOLDERS) {
            expect(section(ns, `mailbox ${f}`)).toMatch(new RegExp(`special_use = \\\\${f}\\n\\s*auto = subscribe`));
        }
        expect(section(ns, "mailbox Junk")).toMatch(/autoexpunge = 30d/);
        expect(section(section(conf({ junkAutoexpunge: "" }), "namespace inbox")!, "mailbox Junk")).not.toMatch(/autoexpunge/);
    });

    test("quota, connections and sieve: dict before script plus personal ManageSieve script", () => {
        const c = conf({ maxUserIpConnections: 77 });
        expect(section(c, 'quota "User quota"')).toMatch(/driver = count/);
        expect(section(c, "protocol imap")).toMatch(/mail_max_userip_connections = 77/);
        const dict = section(c, "sieve_script couchmail")!;
        expect(dict).toMatch(/type = before[\s\S]*driver = dict/);
        // The script `couchmail sieve put ADDRESS` stores (no name given) is the one Dovecot asks for.
        expect(dict).toMatch(/^\s*name = default$/m);
        expect(section(dict, "dict proxy")).toMatch(/socket_path = \/run\/couchmail\/dict\.sock\n\s*name = couchmail/);
        expect(section(c, "sieve_script personal")).toMatch(/type = personal[\s\S]*path = ~\/sieve/);
        expect(c).not.toMatch(/sieve_script spam|imapsieve|sieve_pipe_bin_dir/);
    });

    test("spam hooks: spam step runs before the couchmail script, training scripts on Junk moves", () => {
        const files = renderDovecot({ ...base, spamToJunk: true, imapsieveTraining: { pipeBinDir: "/usr/local/lib/learn" } });
        const c = files["dovecot.conf"];
        expect(c.indexOf("sieve_script spam")).toBeLessThan(c.indexOf("sieve_script couchmail"));
        expect(files["spam.sieve"]).toMatch(/fileinto :create "Junk";\s*stop;/);
        expect(section(section(section(c, "namespace inbox")!, "mailbox Junk")!, "sieve_script learn-spam")).toMatch(/cause = copy/);
        expect(section(c, "imapsieve_from Junk")).toMatch(/learn-ham\.sieve/);
        expect(files["learn-ham.sieve"]).toMatch(/"Trash" \{ stop; \}/);
        expect(section(section(c, "protocol imap")!, "mail_plugins")).toMatch(/imap_sieve = yes/);
    });

    test.each<[string, Partial<DovecotSettings>]>([
        ["hostname", { hostname: "mail" }],
        ["luaFile", { luaFile: "auth.lua" }],
        ["couchmailUrl", { couchmailUrl: "ftp://x" }],
        ["dictSocket", { dictSocket: "/run/../x" }],
        ["mailDriver", { mailDriver: "mbox" as "maildir" }],
        ["junkAutoexpunge", { junkAutoexpunge: "soon" }],
        ["maxUserIpConnections", { maxUserIpConnections: 0 }],
        ["authCache.ttl", { authCache: { size: "10M", ttl: "forever", negativeTtl: "1m" } }],
        ["haproxyTrustedNetworks[0]", { proxyProtocol: true, haproxyTrustedNetworks: ["everyone"] }],
        ['settingsOverrides["Bad"]', { settingsOverrides: { Bad: "x" } }],
        ["settingsOverrides.mail_debug", { settingsOverrides: { mail_debug: "yes }\nssl = no" } }],
    ])("rejects a bad %s, naming it", (field, patch) => {
        expect(() => renderDovecot({ ...base, ...patch })).toThrow(new RegExp(`^${field.replace(/[[\]."]/g, "\\$&")}: expected`));
    });

    test("property: overrides land last as single lines and keep braces balanced", () => {
        const key = fc.stringMatching(/^[a-z][a-z0-9_]{0,20}$/);
        const value = fc.string({ maxLength: 40 }).filter((v) => !/[\r\n\0{}]/.test(v));
        fc.assert(
            fc.property(fc.dictionary(key, value, { maxKeys: 6 }), (overrides) => {
                const c = renderDovecot({ ...base, settingsOverrides: overrides })["dovecot.conf"];
                const lines = c.trimEnd().split("\n");
                expect(lines.filter((l) => l.endsWith("{")).length).toBe(lines.filter((l) => l.trim() === "}").length);
                const tail = lines.slice(lines.length - Object.keys(overrides).length);
                expect(tail).toEqual(Object.entries(overrides).map(([k, v]) => `${k} =${v.trim() ? ` ${v.trim()}` : ""}`));
            }),
            { numRuns: 200 },
        );
    });
});

describe("dovecotTmpSize", () => {
    test("holds two copies of the largest message for every concurrent delivery, plus headroom", () => {
        expect(dovecotTmpSize({ messageSizeLimit: 25 * 1024 * 1024, concurrency: 10 })).toBe("564Mi");
        fc.assert(
            fc.property(fc.integer({ min: 1 << 20, max: 1 << 30 }), fc.integer({ min: 1, max: 100 }), (size, concurrency) => {
                const mib = Number(/^(\d+)Mi$/.exec(dovecotTmpSize({ messageSizeLimit: size, concurrency }))![1]);
                return mib * 1024 * 1024 >= 2 * size * concurrency + 64 * 1024 * 1024;
            }),
        );
    });
});
