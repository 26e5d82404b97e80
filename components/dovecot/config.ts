// Pure renderer for Dovecot 2.4 (dovecot.conf + shipped sieve scripts).
//
// Sieve, in execution order for each delivery:
//   1. `spam` (optional): a shipped script that pipes the message through `spam-scan` (spamc for the
//      recipient user, when spamScan is set), then files X-Spam-Flag: YES into Junk and `stop`s.
//   2. `couchmail`: the user's script from CouchDB, read through couchmail's dict proxy socket.
//   3. `personal`: the script the user activates over ManageSieve, stored under ~/sieve on the mail volume.
// A `stop` in an earlier script ends processing, so spam never reaches the user's own rules.
import { INTERMEDIATE_TLS12_CIPHERS, Listener, RenderedFiles, checkAbsPath, checkCidr, checkHostname, checkPort, invalid } from "../render";
import { dovecotMetricsConf } from "../monitoring/dovecot";
import { SPAM_SCAN_MAX_BYTES } from "../spamassassin/config";

/** Where Dovecot listens (PROXY twins as for Postfix); Services, probes and Postfix use the same numbers. */
export const DOVECOT_LISTENERS = {
    imap: { name: "imap", port: 143, public: 143, proxy: { name: "imap-proxy", port: 10143 } },
    imaps: { name: "imaps", port: 993, public: 993, proxy: { name: "imaps-proxy", port: 10993 } },
    sieve: { name: "sieve", port: 4190, public: 4190, proxy: { name: "sieve-proxy", port: 14190 } },
    // LMTP and SASL take no client credentials of their own: only Postfix may reach them.
    lmtp: { name: "lmtp", port: 24, clients: ["postfix"] },
    authSasl: { name: "auth", port: 12345, clients: ["postfix"] },
} as const satisfies Record<string, Listener>;

/** Where the image's entrypoint assembles the live config (shipped sieve scripts are read from here). */
export const DOVECOT_LIVE_DIR = "/run/mail/dovecot/live";

/** Special-use folders every user gets, created and subscribed. */
export const DOVECOT_SPECIAL_FOLDERS = ["Drafts", "Sent", "Junk", "Trash", "Archive"] as const;

export interface DovecotSettings {
    /** The mail host name (LMTP greeting, Received headers). */
    hostname: string;
    /** couchmail's Lua passdb/userdb script (mounted from couchmail's ConfigMap). */
    luaFile: string;
    /** Passed to the Lua script's script_init(args) as args.couchmail_url. */
    couchmailUrl: string;
    /** couchmail's dict-proxy unix socket (couchmail shares Dovecot's pod). */
    dictSocket: string;
    /** Dict name sent in the dict hello. */
    dictName: string;
    /** Sieve script name looked up as priv/sieve/name/<name>. */
    sieveScriptName: string;
    tls: { certFile: string; keyFile: string };
    /** Mail volume: homes are <mailRoot>/<domain>/<user>. */
    mailRoot: string;
    mailDriver: "maildir" | "sdbox";
    /** Junk autoexpunge interval (e.g. "30d"); empty string keeps Junk forever. */
    junkAutoexpunge: string;
    maxUserIpConnections: number;
    /**
     * Dovecot's auth cache. An entry past its ttl is still used while the passdb fails (couchmail or CouchDB down), so a
     * short ttl keeps users logged in through an outage and still makes a changed or disabled password take effect soon.
     */
    authCache: { size: string; ttl: string; negativeTtl: string };
    /** Also listen on PROXY-protocol ports, accepting headers only from haproxyTrustedNetworks. */
    proxyProtocol: boolean;
    haproxyTrustedNetworks: string[];
    /** File X-Spam-Flag: YES into Junk before the user's scripts. Off by default. */
    spamToJunk: boolean;
    /**
     * imapsieve training. Moving into Junk pipes to `learn-spam`, out of Junk (not to Trash) to
     * `learn-ham`, programs found in pipeBinDir, called with the user name. Off when unset.
     */
    imapsieveTraining?: { pipeBinDir: string };
    /**
     * Score each delivery with spamd for the recipient user, through the `spam-scan` program in filterBinDir
     * (a vnd.dovecot.filter run by spam.sieve). spamc.conf (spamd's address) is shipped for it and the learn programs.
     */
    spamScan?: { filterBinDir: string; spamdHost: string; spamdPort: number; timeoutSeconds: number };
    /** Serve OpenMetrics on this port (the stats service's HTTP listener); undefined: no exporter. */
    metricsPort?: number;
    /** Top-level settings applied last, e.g. { mail_debug: "yes" }. */
    settingsOverrides: Record<string, string>;
}

/** What the stack plan sets from the stack config or from where couchmail and spamd listen. */
export type DovecotWiring =
    | "hostname"
    | "luaFile"
    | "couchmailUrl"
    | "dictSocket"
    | "junkAutoexpunge"
    | "maxUserIpConnections"
    | "proxyProtocol"
    | "haproxyTrustedNetworks"
    | "spamToJunk"
    | "spamScan"
    | "imapsieveTraining";

/** Dovecot's own choices, the same in every stack; Pulumi.yaml holds the defaults of everything configurable. */
export const DOVECOT_DEFAULTS: Omit<DovecotSettings, DovecotWiring> = {
    dictName: "couchmail",
    // The name `couchmail sieve put` stores a script under when none is given (couchmail/src/cli.ts DEFAULT_SIEVE).
    sieveScriptName: "default",
    tls: { certFile: "/etc/mail/tls/tls.crt", keyFile: "/etc/mail/tls/tls.key" },
    mailRoot: "/var/mail",
    mailDriver: "maildir",
    // A changed password works (and the old one stops) within the TTL; an expired entry still serves while the passdb
    // fails, so a short TTL costs no resilience, only a loopback lookup per login every 10 s.
    authCache: { size: "10M", ttl: "10s", negativeTtl: "1m" },
    settingsOverrides: {},
};

/** Where the image installs spam-scan (the sieve filter) and learn-spam/learn-ham (the imapsieve pipe programs). */
export const DOVECOT_SPAM_PROGRAMS = { filterBinDir: "/usr/local/lib/mail/filter", pipeBinDir: "/usr/local/lib/mail/learn" } as const;

/** The unprivileged user owning all mail (fsGroup of the mail volume). */
export const VMAIL_UID = 5000;

const INTERVAL = /^\d+(s|m|h|d|w|\s?(secs?|mins?|hours?|days?|weeks?))$/;
const SIZE = /^\d+[kKMG]?$/;
const NAME = /^[a-z0-9][a-z0-9_-]*$/;

function validate(s: DovecotSettings): void {
    checkHostname("hostname", s.hostname);
    checkAbsPath("luaFile", s.luaFile);
    if (!/^https?:\/\/[A-Za-z0-9.-]+(:\d+)?(\/[A-Za-z0-9._~/-]*)?$/.test(s.couchmailUrl)) {
        invalid("couchmailUrl", "an http(s)://host[:port][/path] URL", s.couchmailUrl);
    }
    checkAbsPath("dictSocket", s.dictSocket);
    if (s.metricsPort !== undefined) checkPort("metricsPort", s.metricsPort);
    if (!NAME.test(s.dictName)) invalid("dictName", "a name [a-z0-9_-]", s.dictName);
    if (!NAME.test(s.sieveScriptName)) invalid("sieveScriptName", "a name [a-z0-9_-]", s.sieveScriptName);
    checkAbsPath("tls.certFile", s.tls.certFile);
    checkAbsPath("tls.keyFile", s.tls.keyFile);
    checkAbsPath("mailRoot", s.mailRoot);
    if (s.mailDriver !== "maildir" && s.mailDriver !== "sdbox") invalid("mailDriver", '"maildir" or "sdbox"', s.mailDriver);
    if (s.junkAutoexpunge !== "" && !INTERVAL.test(s.junkAutoexpunge)) {
        invalid("junkAutoexpunge", 'an interval like "30d" or "" (off)', s.junkAutoexpunge);
    }
    if (!Number.isInteger(s.maxUserIpConnections) || s.maxUserIpConnections < 1) {
        invalid("maxUserIpConnections", "an integer >= 1", s.maxUserIpConnections);
    }
    if (!SIZE.test(s.authCache.size)) invalid("authCache.size", 'a size like "10M"', s.authCache.size);
    if (!INTERVAL.test(s.authCache.ttl)) invalid("authCache.ttl", 'an interval like "1h"', s.authCache.ttl);
    if (!INTERVAL.test(s.authCache.negativeTtl)) invalid("authCache.negativeTtl", 'an interval like "1m"', s.authCache.negativeTtl);
    if (typeof s.proxyProtocol !== "boolean") invalid("proxyProtocol", "a boolean", s.proxyProtocol);
    s.haproxyTrustedNetworks.forEach((n, i) => checkCidr(`haproxyTrustedNetworks[${i}]`, n));
    if (s.proxyProtocol && s.haproxyTrustedNetworks.length === 0) {
        invalid("haproxyTrustedNetworks", "at least one network when proxyProtocol is on", s.haproxyTrustedNetworks);
    }
    if (typeof s.spamToJunk !== "boolean") invalid("spamToJunk", "a boolean", s.spamToJunk);
    if (s.imapsieveTraining) checkAbsPath("imapsieveTraining.pipeBinDir", s.imapsieveTraining.pipeBinDir);
    if (s.spamScan) {
        checkAbsPath("spamScan.filterBinDir", s.spamScan.filterBinDir);
        checkHostname("spamScan.spamdHost", s.spamScan.spamdHost, false);
        checkPort("spamScan.spamdPort", s.spamScan.spamdPort);
        const t = s.spamScan.timeoutSeconds;
        if (!Number.isInteger(t) || t < 5 || t > 300) invalid("spamScan.timeoutSeconds", "an integer from 5 to 300", t);
    }
    for (const [k, v] of Object.entries(s.settingsOverrides)) {
        if (!/^[a-z][a-z0-9_]*$/.test(k)) invalid(`settingsOverrides[${JSON.stringify(k)}]`, "a Dovecot setting name [a-z0-9_]", k);
        if (typeof v !== "string" || /[\r\n\0{}]/.test(v)) invalid(`settingsOverrides.${k}`, "a single-line value without braces", v);
    }
}

/** Renders a nested block; lines are already indented by the caller's depth. */
function block(head: string, body: string[]): string[] {
    return [`${head} {`, ...body.map((l) => `  ${l}`), "}"];
}

function inetListener(name: string, port: number, opts: string[] = []): string[] {
    return block(`inet_listener ${name}`, [`port = ${checkPort(name, port)}`, ...opts]);
}

/** Scoring (spamScan), then filing (spamToJunk); spam-scan reads the recipient user from $USER (set by Pigeonhole). */
function spamSieve(s: DovecotSettings): string {
    const lines = [
        "# Each delivery is scored for its recipient, and spam goes to Junk before any user rule runs.",
        `require [${[...(s.spamScan ? ['"vnd.dovecot.filter"'] : []), ...(s.spamToJunk ? ['"fileinto"', '"mailbox"'] : [])].join(", ")}];`,
        // A failing filter is a runtime error: Pigeonhole then keeps the message in INBOX, so nothing is lost.
        ...(s.spamScan ? ['filter "spam-scan";'] : []),
        ...(s.spamToJunk ? ['if header :is "X-Spam-Flag" "YES" {', '  fileinto :create "Junk";', "  stop;", "}"] : []),
    ];
    return lines.join("\n") + "\n";
}

/**
 * spamc's options for spam-scan and the learn programs; `-x`: they handle spamd being down themselves; `-s`: the
 * largest message spamd is sized to score (larger ones pass through unscored).
 */
function spamcConf(scan: NonNullable<DovecotSettings["spamScan"]>): string {
    return [`-d ${scan.spamdHost}`, `-p ${scan.spamdPort}`, `-t ${scan.timeoutSeconds}`, `-s ${SPAM_SCAN_MAX_BYTES}`, "-x", ""].join("\n");
}

const LEARN_SPAM_SIEVE = `# Moved or copied into Junk: learn as spam for this user.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];
if environment :matches "imap.user" "*" { set "user" "\${1}"; }
pipe :copy "learn-spam" ["\${user}"];
`;

const LEARN_HAM_SIEVE = `# Moved out of Junk (not to Trash): learn as ham for this user.
require ["vnd.dovecot.pipe", "copy", "imapsieve", "environment", "variables"];
if environment :matches "imap.mailbox" "Trash" { stop; }
if environment :matches "imap.user" "*" { set "user" "\${1}"; }
pipe :copy "learn-ham" ["\${user}"];
`;

/**
 * Password guessing is limited by couchmail's auth policy endpoint (couchmail/src/policy.ts): Dovecot asks it before
 * checking each password and reports each result. Dovecot's own penalty cannot do it: it is read when an attempt
 * begins, so parallel guesses are never slowed.
 */
function authPolicy(couchmailUrl: string): string[] {
    return [
        `auth_policy_server_url = ${couchmailUrl.replace(/\/+$/, "")}/dovecot/policy`,
        // Required by Dovecot, and used only for the password hash it can send (%{hashed_password}). That attribute is
        // not requested below, so nothing derived from a password leaves Dovecot and the value needs no secrecy.
        "auth_policy_hash_nonce = couchmail-policy-requests-no-password-hash",
        // The check after a successful login is a second `command=allow` indistinguishable from a new attempt: it would
        // charge every login twice. The report that follows says whether it succeeded.
        "auth_policy_check_after_auth = no",
        // When couchmail cannot answer (restarting, timeout), logins go on without the policy, and Dovecot logs "Policy
        // server HTTP error" for each. Refusing instead would lock everyone out exactly when the auth cache is keeping
        // users logged in through a couchmail outage; Dovecot's own per-address penalty still applies meanwhile.
        "auth_policy_reject_on_fail = no",
        // Replace Dovecot's default attributes (they include the password hash) with what the policy reads.
        "auth_policy_request_attributes =",
        ...block("auth_policy_request_attributes", [
            "login = %{requested_username}",
            "remote = %{remote_ip}",
            "protocol = %{protocol}",
            "session_id = %{session}",
            "fail_type = %{fail_type}",
        ]),
    ];
}

function dovecotConf(s: DovecotSettings): string {
    const lua = block("lua_settings", [`couchmail_url = ${s.couchmailUrl}`]);
    const specialUse = (name: string): string[] => {
        const extra = name === "Junk" && s.junkAutoexpunge !== "" ? [`autoexpunge = ${s.junkAutoexpunge}`] : [];
        const training =
            name === "Junk" && s.imapsieveTraining
                ? block("sieve_script learn-spam", ["type = before", "cause = copy", `path = ${DOVECOT_LIVE_DIR}/learn-spam.sieve`])
                : [];
        return block(`mailbox ${name}`, [`special_use = \\${name}`, "auto = subscribe", ...extra, ...training]);
    };
    const proxy = (opts: string[] = []) => (s.proxyProtocol ? ["haproxy = yes", ...opts] : []);
    const lines: string[] = [
        "# Rendered by the mail program; Dovecot 2.4 syntax.",
        "dovecot_config_version = 2.4.1",
        "dovecot_storage_version = 2.4.1",
        "",
        "protocols = imap lmtp sieve",
        "listen = *",
        `hostname = ${s.hostname}`,
        "log_path = /dev/stderr",
        "state_dir = /run/dovecot-state",
        "",
        "# Authentication: couchmail over Lua/HTTP; one lookup per login thanks to prefetch.",
        "auth_allow_cleartext = no",
        "auth_mechanisms = plain login",
        "auth_username_format = %{user | lower}",
        `auth_cache_size = ${s.authCache.size}`,
        `auth_cache_ttl = ${s.authCache.ttl}`,
        // Stale entries keep users logged in through a short couchmail outage.
        `auth_cache_negative_ttl = ${s.authCache.negativeTtl}`,
        "auth_cache_verify_password_with_worker = yes",
        ...block("passdb lua", [`lua_file = ${s.luaFile}`, ...lua]),
        ...block("userdb prefetch", []),
        ...block("userdb lua", [`lua_file = ${s.luaFile}`, ...lua]),
        ...authPolicy(s.couchmailUrl),
        "",
        "# Mail storage: one unprivileged owner for every virtual user.",
        "mail_uid = vmail",
        "mail_gid = vmail",
        `first_valid_uid = ${VMAIL_UID}`,
        `last_valid_uid = ${VMAIL_UID}`,
        ...mailLayout(s),
        "recipient_delimiter = +",
        "lmtp_rcpt_check_quota = yes",
        // LMTP offers SMTPUTF8: Postfix accepts SMTPUTF8 mail on 25, and without it here would bounce what it accepted.
        "mail_utf8_extensions = yes",
        ...block("namespace inbox", ["inbox = yes", "separator = /", ...DOVECOT_SPECIAL_FOLDERS.flatMap(specialUse)]),
        "",
        "# Quota: quota_storage_size comes from the user's record via userdb.",
        ...block("mail_plugins", ["quota = yes"]),
        ...block('quota "User quota"', ["driver = count"]),
        "",
        "# TLS is mandatory before any login.",
        "ssl = required",
        `ssl_server_cert_file = ${s.tls.certFile}`,
        `ssl_server_key_file = ${s.tls.keyFile}`,
        "ssl_min_protocol = TLSv1.2",
        // Passwords travel only over forward-secret AEAD suites (no anonymous or RSA key exchange).
        `ssl_cipher_list = ${INTERMEDIATE_TLS12_CIPHERS}`,
        "",
        ...(s.proxyProtocol ? [`haproxy_trusted_networks = ${s.haproxyTrustedNetworks.join(" ")}`] : []),
        ...block("service imap-login", [
            ...inetListener("imap", DOVECOT_LISTENERS.imap.port),
            ...inetListener("imaps", DOVECOT_LISTENERS.imaps.port, ["ssl = yes"]),
            ...(s.proxyProtocol
                ? [
                      ...inetListener("imap_proxy", DOVECOT_LISTENERS.imap.proxy.port, proxy()),
                      ...inetListener("imaps_proxy", DOVECOT_LISTENERS.imaps.proxy.port, proxy(["ssl = yes"])),
                  ]
                : []),
        ]),
        ...block("service managesieve-login", [
            ...inetListener("sieve", DOVECOT_LISTENERS.sieve.port),
            ...(s.proxyProtocol ? inetListener("sieve_proxy", DOVECOT_LISTENERS.sieve.proxy.port, proxy()) : []),
        ]),
        "# Postfix delivers over LMTP and authenticates submission users over the network.",
        ...block("service lmtp", inetListener("lmtp", DOVECOT_LISTENERS.lmtp.port)),
        ...block("service auth", inetListener("auth_sasl", DOVECOT_LISTENERS.authSasl.port)),
        "",
        ...block("protocol imap", [
            `mail_max_userip_connections = ${s.maxUserIpConnections}`,
            ...block("mail_plugins", ["imap_quota = yes", ...(s.imapsieveTraining ? ["imap_sieve = yes"] : [])]),
        ]),
        ...block("protocol lmtp", block("mail_plugins", ["sieve = yes"])),
        "",
        "# Sieve: see the header of the renderer for the order of scripts.",
        ...(s.spamToJunk || s.spamScan ? block("sieve_script spam", ["type = before", "driver = file", `path = ${DOVECOT_LIVE_DIR}/spam.sieve`]) : []),
        ...block("sieve_script couchmail", [
            "type = before",
            "driver = dict",
            `name = ${s.sieveScriptName}`,
            "bin_path = ~/.sieve-bin",
            ...block("dict proxy", [`socket_path = ${s.dictSocket}`, `name = ${s.dictName}`]),
        ]),
        ...block("sieve_script personal", ["type = personal", "driver = file", "path = ~/sieve", "active_path = ~/.dovecot.sieve"]),
        ...(s.imapsieveTraining || s.spamScan
            ? [
                  ...block("sieve_plugins", [...(s.imapsieveTraining ? ["sieve_imapsieve = yes"] : []), "sieve_extprograms = yes"]),
                  ...block("sieve_global_extensions", [
                      ...(s.imapsieveTraining ? ["vnd.dovecot.pipe = yes", "vnd.dovecot.environment = yes"] : []),
                      ...(s.spamScan ? ["vnd.dovecot.filter = yes"] : []),
                  ]),
              ]
            : []),
        ...(s.spamScan
            ? [
                  `sieve_filter_bin_dir = ${s.spamScan.filterBinDir}`,
                  // spamc gives up first (timeoutSeconds) and spam-scan then delivers the message unscanned.
                  `sieve_filter_exec_timeout = ${s.spamScan.timeoutSeconds + 15}s`,
                  "sieve_filter_input_eol = lf",
              ]
            : []),
        ...(s.imapsieveTraining
            ? [
                  `sieve_pipe_bin_dir = ${s.imapsieveTraining.pipeBinDir}`,
                  ...block(
                      "imapsieve_from Junk",
                      block("sieve_script learn-ham", ["type = before", "cause = copy", `path = ${DOVECOT_LIVE_DIR}/learn-ham.sieve`]),
                  ),
              ]
            : []),
    ];
    // Dovecot trims unquoted values; rendering them trimmed keeps the file free of trailing space.
    const overrides = Object.entries(s.settingsOverrides).map(([k, v]) => `${k} =${v.trim() ? ` ${v.trim()}` : ""}`);
    const metrics = s.metricsPort !== undefined ? ["", ...dovecotMetricsConf(s.metricsPort)] : [];
    return [...lines, ...metrics, ...(overrides.length ? ["", "# Overrides from stack config.", ...overrides] : [])].join("\n") + "\n";
}

/** Where each user's mail lives: the live server and the backup jobs' doveadm must agree on it. */
export function mailLayout(s: Pick<DovecotSettings, "mailRoot" | "mailDriver">): string[] {
    return [
        `mail_home = ${s.mailRoot}/%{user | domain | lower}/%{user | username | lower}`,
        `mail_driver = ${s.mailDriver}`,
        `mail_path = ~/${s.mailDriver === "maildir" ? "Maildir" : "mail"}`,
    ];
}

/** Renders dovecot.conf plus any shipped sieve scripts. Throws on invalid settings, naming the field. */
export function renderDovecot(settings: DovecotSettings): RenderedFiles {
    validate(settings);
    const files: RenderedFiles = { "dovecot.conf": dovecotConf(settings) };
    if (settings.spamToJunk || settings.spamScan) files["spam.sieve"] = spamSieve(settings);
    if (settings.spamScan) files["spamc.conf"] = spamcConf(settings.spamScan);
    if (settings.imapsieveTraining) {
        files["learn-spam.sieve"] = LEARN_SPAM_SIEVE;
        files["learn-ham.sieve"] = LEARN_HAM_SIEVE;
    }
    return files;
}
