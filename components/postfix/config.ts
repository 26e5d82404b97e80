// Pure renderer for Postfix's main.cf, master.cf and the inbound header checks.
// inet services are named by port number so nothing depends on /etc/services in the image.
import {
    INTERMEDIATE_TLS12_CIPHERS,
    Listener,
    RenderedFiles,
    checkAbsPath,
    checkCidr,
    checkDnsbl,
    checkEmail,
    checkHostname,
    invalid,
    parseEndpoint,
} from "../render";

/**
 * Where Postfix listens. The PROXY twins serve a load balancer that prepends PROXY headers; the plain ports stay for
 * in-cluster clients (hairpin traffic skips the load balancer).
 */
export const POSTFIX_LISTENERS = {
    smtp: { name: "smtp", port: 25, public: 25, proxy: { name: "smtp-proxy", port: 10025 } },
    submission: { name: "submission", port: 587, public: 587, proxy: { name: "subm-proxy", port: 10587 } },
    submissions: { name: "submissions", port: 465, public: 465, proxy: { name: "subms-proxy", port: 10465 } },
} as const satisfies Record<string, Listener>;

/**
 * Where postlogd writes Postfix's log: a small volume shared with the metrics exporter, which follows the file. The
 * entrypoint copies every line to its stdout (so `kubectl logs` still shows them) and empties the file when it grows.
 */
export const POSTFIX_LOG = { directory: "/var/log/postfix", file: "/var/log/postfix/postfix.log" } as const;

/** The couchmail socketmap names Postfix queries (couchmail answers exactly these). */
export const POSTFIX_SOCKETMAP_NAMES = {
    domains: "domains",
    mailboxes: "mailboxes",
    aliases: "aliases",
    senders: "senders",
} as const;

export interface PostfixRelay {
    /** Smarthost name, e.g. smtp.relay.example. */
    host: string;
    /** 587 (STARTTLS) or 465 (implicit TLS). */
    port: 587 | 465;
    /** texthash file (from a mounted Secret) with the line `[host]:port user:password`. */
    passwordMapFile: string;
}

export interface PostfixSettings {
    /** myhostname: the name in the SMTP banner, HELO and the certificate. */
    hostname: string;
    /**
     * Log to POSTFIX_LOG.file, which the metrics exporter follows and the entrypoint copies to stdout; otherwise
     * straight to stdout.
     */
    logToFile?: boolean;
    /**
     * The domains we host. Port 25 refuses them as envelope sender or From: domain: our own users send through
     * submission, so such mail on 25 is forged (we publish SPF -all and DMARC for them).
     */
    ownDomains: string[];
    /**
     * Where mail to the bare `postmaster` (RFC 5321 §4.5.1: must be accepted) and to postmaster@/abuse@ the mail host
     * goes; delivered instead of bounced to a possibly forged sender.
     */
    postmaster: string;
    /** Parallel LMTP deliveries to Dovecot; Dovecot's temp space is sized from it. */
    lmtpConcurrency: number;
    /** couchmail socketmap endpoint, `inet:HOST:PORT` or `unix:/path`. */
    socketmap: string;
    /** postscreen_dnsbl_sites entries, `domain[=filter][*weight]`. */
    dnsbls: string[];
    dnsblThreshold: number;
    /** Dovecot auth listener for SASL, `inet:HOST:PORT`. */
    saslEndpoint: string;
    /** Dovecot LMTP, `inet:HOST:PORT` or `unix:/path`. */
    lmtpEndpoint: string;
    /** Milters applied to all mail (OpenDKIM). */
    milters: string[];
    /** What to do when a milter is unreachable: tempfail keeps mail queued (4xx) instead of unsigned. */
    milterDefaultAction: "tempfail" | "accept";
    /**
     * Check SPF on inbound port-25 mail with Debian's policyd-spf (spawned by Postfix): a sender whose domain's SPF
     * says "fail" (-all) is refused, every other result is recorded in a Received-SPF header.
     */
    spf: boolean;
    /** Policy service for inbound port-25 mail only (Postgrey), `inet:HOST:PORT`; off when unset. */
    policyService?: string;
    /** Smarthost for outbound mail (where the cloud blocks port 25); direct delivery when unset. */
    relay?: PostfixRelay;
    tls: { certFile: string; keyFile: string };
    /**
     * Networks added to mynetworks beside loopback. Only postscreen's allowlist uses mynetworks:
     * relaying always needs SASL, so this never opens a relay.
     */
    trustedNetworks: string[];
    /** Also listen on the PROXY-protocol ports (an edge that sends PROXY headers). */
    proxyProtocol: boolean;
    /** message_size_limit in bytes. */
    messageSizeLimit: number;
    /** Queue on the persistent volume. */
    queueDirectory: string;
    /** Postfix's own state (postscreen cache, TLS PRNG); must be writable. */
    dataDirectory: string;
    /** main.cf parameters applied last; a key must look like a Postfix parameter name. */
    mainCfOverrides: Record<string, string>;
}

/** What the stack plan sets from the stack config or from where the other services listen. */
export type PostfixWiring =
    | "hostname"
    | "ownDomains"
    | "postmaster"
    | "socketmap"
    | "dnsbls"
    | "saslEndpoint"
    | "lmtpEndpoint"
    | "milters"
    | "policyService"
    | "relay"
    | "proxyProtocol"
    | "messageSizeLimit"
    | "mainCfOverrides";

/** Postfix's own choices, the same in every stack; Pulumi.yaml holds the defaults of everything configurable. */
export const POSTFIX_DEFAULTS: Omit<PostfixSettings, PostfixWiring> = {
    dnsblThreshold: 3,
    milterDefaultAction: "tempfail",
    spf: true,
    // Dovecot's lmtp_user_concurrency_limit (10): more would only earn "451 Too many concurrent deliveries".
    lmtpConcurrency: 10,
    tls: { certFile: "/etc/mail/tls/tls.crt", keyFile: "/etc/mail/tls/tls.key" },
    trustedNetworks: [],
    queueDirectory: "/var/spool/postfix",
    dataDirectory: "/var/lib/postfix",
};

const PARAM_NAME = /^[A-Za-z0-9][A-Za-z0-9_-]*$/;

/** A main.cf/-o value: one line, no NUL; Postfix trims surrounding space itself. */
function checkValue(field: string, value: string): string {
    if (typeof value !== "string" || /[\r\n\0]/.test(value)) invalid(field, "a single-line string", value);
    return value.trim();
}

function endpointString(field: string, value: string, allowUnix: boolean): string {
    const ep = parseEndpoint(field, value);
    if (ep.kind === "unix" && !allowUnix) invalid(field, "inet:HOST:PORT", value);
    return ep.kind === "inet" ? `inet:${ep.host}:${ep.port}` : `unix:${ep.path}`;
}

function validate(s: PostfixSettings): void {
    checkHostname("hostname", s.hostname);
    if (!Array.isArray(s.ownDomains) || s.ownDomains.length === 0) invalid("ownDomains", "at least one domain", s.ownDomains);
    s.ownDomains.forEach((d, i) => checkHostname(`ownDomains[${i}]`, d));
    checkEmail("postmaster", s.postmaster);
    if (!Number.isInteger(s.lmtpConcurrency) || s.lmtpConcurrency < 1 || s.lmtpConcurrency > 100) {
        invalid("lmtpConcurrency", "an integer from 1 to 100", s.lmtpConcurrency);
    }
    endpointString("socketmap", s.socketmap, true);
    s.dnsbls.forEach((d, i) => checkDnsbl(`dnsbls[${i}]`, d));
    if (!Number.isInteger(s.dnsblThreshold) || s.dnsblThreshold < 1) invalid("dnsblThreshold", "an integer >= 1", s.dnsblThreshold);
    endpointString("saslEndpoint", s.saslEndpoint, false);
    endpointString("lmtpEndpoint", s.lmtpEndpoint, true);
    s.milters.forEach((m, i) => endpointString(`milters[${i}]`, m, true));
    if (s.milterDefaultAction !== "tempfail" && s.milterDefaultAction !== "accept") {
        invalid("milterDefaultAction", '"tempfail" or "accept"', s.milterDefaultAction);
    }
    if (s.policyService !== undefined) endpointString("policyService", s.policyService, true);
    if (s.relay !== undefined) {
        checkHostname("relay.host", s.relay.host);
        if (s.relay.port !== 587 && s.relay.port !== 465) invalid("relay.port", "587 or 465", s.relay.port);
        checkAbsPath("relay.passwordMapFile", s.relay.passwordMapFile);
    }
    checkAbsPath("tls.certFile", s.tls.certFile);
    checkAbsPath("tls.keyFile", s.tls.keyFile);
    s.trustedNetworks.forEach((n, i) => checkCidr(`trustedNetworks[${i}]`, n));
    if (typeof s.proxyProtocol !== "boolean") invalid("proxyProtocol", "a boolean", s.proxyProtocol);
    if (typeof s.spf !== "boolean") invalid("spf", "a boolean", s.spf);
    if (!Number.isInteger(s.messageSizeLimit) || s.messageSizeLimit < 1024 * 1024) {
        invalid("messageSizeLimit", "an integer number of bytes >= 1048576", s.messageSizeLimit);
    }
    checkAbsPath("queueDirectory", s.queueDirectory);
    checkAbsPath("dataDirectory", s.dataDirectory);
    for (const [k, v] of Object.entries(s.mainCfOverrides)) {
        if (!PARAM_NAME.test(k)) invalid(`mainCfOverrides[${JSON.stringify(k)}]`, "a Postfix parameter name [A-Za-z0-9_-]", k);
        checkValue(`mainCfOverrides.${k}`, v);
    }
}

function mynetworks(s: PostfixSettings): string {
    return ["127.0.0.0/8", "[::1]/128", ...s.trustedNetworks.map((n) => (n.includes(":") ? `[${n.split("/")[0]}]/${n.split("/")[1]}` : n))].join(" ");
}

const FORGED_TEXT = "5.7.1 Mail from our own domains is accepted only from authenticated users (submission)";
/** header_checks' REJECT answers 550; an access map's would be 554, so that one names its code. */
const FORGED = `REJECT ${FORGED_TEXT}`;

/** regexp_table(5) for inbound header_checks: a From: address in one of our domains (or a subdomain) is forged. */
function inboundHeaderChecks(s: PostfixSettings): string {
    const domains = s.ownDomains.map((d) => d.replace(/\./g, "\\.")).join("|");
    return `/^From:.*[@.](${domains})>?[[:space:]]*$/ ${FORGED}\n`;
}

/**
 * The mail host's own name is a virtual alias domain holding only postmaster@ and abuse@ (where bare `postmaster`
 * lands after myorigin is appended); any other address there is unknown (550), never accepted and bounced.
 */
function hostAliases(s: PostfixSettings): { domains: string; map?: string } {
    if (s.ownDomains.includes(s.hostname)) return { domains: "" };
    const entries = ["postmaster", "abuse"].map((local) => `{ ${local}@${s.hostname} = ${s.postmaster} }`);
    return { domains: "$myhostname", map: `inline:{ ${entries.join(", ")} }` };
}

function mainCf(s: PostfixSettings): Map<string, string> {
    const sm = endpointString("socketmap", s.socketmap, true);
    const map = (name: keyof typeof POSTFIX_SOCKETMAP_NAMES) => `socketmap:${sm}:${POSTFIX_SOCKETMAP_NAMES[name]}`;
    const host = hostAliases(s);
    const ownSenderDomains = `inline:{ ${s.ownDomains.map((d) => `{ ${d} = 550 ${FORGED_TEXT} }`).join(", ")} }`;
    const inboundRecipient = [
        "reject_non_fqdn_recipient",
        "reject_unknown_recipient_domain",
        "reject_unauth_pipelining",
        "reject_unauth_destination",
        // Unknown recipients get 550 now, not a greylisting 450 first (Postfix's implicit check runs after this list).
        "reject_unlisted_recipient",
        ...(s.spf ? [`check_policy_service unix:private/${SPF_SERVICE}`] : []),
        ...(s.policyService ? [`check_policy_service ${endpointString("policyService", s.policyService, true)}`] : []),
        "permit",
    ];
    const p: [string, string][] = [
        ["compatibility_level", "3.10"],
        ["myhostname", s.hostname],
        ["myorigin", "$myhostname"],
        ["smtpd_banner", "$myhostname ESMTP"],
        ["queue_directory", s.queueDirectory],
        ["data_directory", s.dataDirectory],
        ...((s.logToFile
            ? [
                  ["maillog_file", POSTFIX_LOG.file],
                  ["maillog_file_prefixes", POSTFIX_LOG.directory],
                  // The exporter reads the file as another user (Postfix creates it 0600 by default).
                  ["maillog_file_permissions", "0644"],
              ]
            : [["maillog_file", "/dev/stdout"]]) as [string, string][]),
        ["biff", "no"],
        ["append_dot_mydomain", "no"],
        ["message_size_limit", String(s.messageSizeLimit)],
        ["mailbox_size_limit", "0"],
        ["recipient_delimiter", "+"],
        // Only loopback (plus explicitly trusted networks) — and relay permission never comes from it.
        ["mynetworks", mynetworks(s)],
        // No local delivery: every domain is virtual and comes from couchmail.
        ["mydestination", ""],
        ["local_recipient_maps", ""],
        ["local_transport", "error:5.1.1 local delivery is disabled"],
        ["alias_maps", ""],
        ["alias_database", ""],
        // Explicit on purpose: its default would feed bare domains into the alias map.
        ["virtual_alias_domains", host.domains],
        ["virtual_mailbox_domains", map("domains")],
        ["virtual_mailbox_maps", map("mailboxes")],
        ["virtual_alias_maps", [...(host.map ? [host.map] : []), map("aliases")].join(", ")],
        ["smtpd_sender_login_maps", map("senders")],
        ["virtual_transport", `lmtp:${endpointString("lmtpEndpoint", s.lmtpEndpoint, true)}`],
        // The LMTP client's own DNS lookups never apply the resolver's search list, so a Service name like
        // "dovecot" would not resolve (and mail would bounce with 5.4.4): resolve it as the system does.
        ["lmtp_host_lookup", "native"],
        ["lmtp_destination_concurrency_limit", String(s.lmtpConcurrency)],
        ["relayhost", s.relay ? `[${s.relay.host}]:${s.relay.port}` : ""],
        // SMTP server, port 25 (submission ports override these in master.cf).
        ["smtpd_helo_required", "yes"],
        ["disable_vrfy_command", "yes"],
        ["strict_rfc821_envelopes", "yes"],
        ["smtpd_delay_reject", "yes"],
        ["smtpd_client_restrictions", ""],
        ["smtpd_helo_restrictions", "reject_invalid_helo_hostname, reject_non_fqdn_helo_hostname"],
        ["smtpd_sender_restrictions", `reject_non_fqdn_sender, reject_unknown_sender_domain, check_sender_access ${ownSenderDomains}`],
        ["smtpd_relay_restrictions", "reject_unauth_destination"],
        ["smtpd_recipient_restrictions", inboundRecipient.join(", ")],
        ["smtpd_data_restrictions", "reject_unauth_pipelining, reject_multi_recipient_bounce"],
        // SMTP smuggling (CVE-2023-51764).
        ["smtpd_forbid_bare_newline", "normalize"],
        ["smtpd_forbid_bare_newline_exclusions", "$mynetworks"],
        ["smtpd_forbid_unauth_pipelining", "yes"],
        ["smtpd_policy_service_default_action", "451 4.3.5 Server configuration problem"],
        // SASL exists only on the submission ports (master.cf turns it on there).
        ["smtpd_sasl_auth_enable", "no"],
        ["smtpd_sasl_type", "dovecot"],
        ["smtpd_sasl_path", endpointString("saslEndpoint", s.saslEndpoint, false)],
        ["smtpd_sasl_security_options", "noanonymous, noplaintext"],
        ["smtpd_sasl_tls_security_options", "noanonymous"],
        ["smtpd_sasl_authenticated_header", "no"],
        ["smtpd_tls_auth_only", "yes"],
        // TLS server.
        ["smtpd_tls_cert_file", s.tls.certFile],
        ["smtpd_tls_key_file", s.tls.keyFile],
        ["smtpd_tls_security_level", "may"],
        ["smtpd_tls_protocols", ">=TLSv1.2"],
        ["smtpd_tls_mandatory_protocols", ">=TLSv1.2"],
        ["smtpd_tls_received_header", "yes"],
        ["smtpd_tls_loglevel", "1"],
        // TLS client: opportunistic direct delivery; a relay gets mandatory TLS before its password.
        ["smtp_tls_CAfile", "/etc/ssl/certs/ca-certificates.crt"],
        ["smtp_tls_security_level", s.relay ? "secure" : "may"],
        ["smtp_tls_protocols", ">=TLSv1.2"],
        ["smtp_tls_mandatory_protocols", ">=TLSv1.2"],
        ["smtp_tls_loglevel", "1"],
        ...(s.relay
            ? ([
                  ["smtp_tls_wrappermode", s.relay.port === 465 ? "yes" : "no"],
                  ["smtp_sasl_auth_enable", "yes"],
                  ["smtp_sasl_password_maps", `texthash:${s.relay.passwordMapFile}`],
                  ["smtp_sasl_security_options", "noanonymous"],
                  ["smtp_sasl_tls_security_options", "noanonymous"],
              ] as [string, string][])
            : []),
        // postscreen on port 25.
        ["postscreen_access_list", "permit_mynetworks"],
        // A second postscreen (the PROXY port) would block on the first one's lock of a plain btree cache.
        ...(s.proxyProtocol ? ([["postscreen_cache_map", "proxy:btree:$data_directory/postscreen_cache"]] as [string, string][]) : []),
        ["postscreen_dnsbl_sites", s.dnsbls.join(", ")],
        ["postscreen_dnsbl_threshold", String(s.dnsblThreshold)],
        ["postscreen_dnsbl_allowlist_threshold", "-1"],
        ["postscreen_dnsbl_action", "enforce"],
        ["postscreen_greet_action", "enforce"],
        ["postscreen_denylist_action", "enforce"],
        // Milters: OpenDKIM signs (daemon ORIGINATING) and verifies; unreachable ⇒ 4xx, never unsigned/bounced.
        ["smtpd_milters", s.milters.map((m) => endpointString("milters", m, true)).join(", ")],
        ["non_smtpd_milters", "$smtpd_milters"],
        ["milter_default_action", s.milterDefaultAction],
        ["milter_protocol", "6"],
        ["milter_mail_macros", "i {mail_addr} {client_addr} {client_name} {auth_type} {auth_authen}"],
        // Inbound (port 25) only, through its own cleanup service: a From: in one of our domains is forged there.
        ["inbound_header_checks", "regexp:$config_directory/inbound_header_checks"],
        ...(s.spf
            ? ([
                  [`${SPF_SERVICE}_time_limit`, "3600"],
                  ["smtpd_policy_service_max_idle", "10s"],
              ] as [string, string][])
            : []),
        // Lookup or DNS trouble must defer, not bounce.
        ["unknown_address_tempfail_action", "defer_if_permit"],
    ];
    const out = new Map(p);
    for (const [k, v] of Object.entries(s.mainCfOverrides)) {
        out.delete(k); // re-insert so overrides come last, once
        out.set(k, checkValue(k, v));
    }
    return out;
}

/** Postfix's standard internal services; all unchrooted (the container is the jail). */
const STANDARD_SERVICES: [string, string, string, string, string, string][] = [
    // name, type, private, unpriv, maxproc, command
    ["pickup", "unix", "n", "-", "1", "pickup"],
    ["cleanup", "unix", "n", "-", "0", "cleanup"],
    // Unprivileged like every other service: a root qmgr creates root-owned queue directories (deferred/B)
    // that the postfix-owned postsuper cannot open on the next start, so the pod would crash-loop.
    ["qmgr", "unix", "n", "-", "1", "qmgr"],
    ["tlsmgr", "unix", "-", "-", "1", "tlsmgr"],
    ["rewrite", "unix", "-", "-", "-", "trivial-rewrite"],
    ["bounce", "unix", "-", "-", "0", "bounce"],
    ["defer", "unix", "-", "-", "0", "bounce"],
    ["trace", "unix", "-", "-", "0", "bounce"],
    ["verify", "unix", "-", "-", "1", "verify"],
    ["flush", "unix", "n", "-", "0", "flush"],
    ["proxymap", "unix", "-", "-", "-", "proxymap"],
    ["proxywrite", "unix", "-", "-", "1", "proxymap"],
    ["smtp", "unix", "-", "-", "-", "smtp"],
    ["relay", "unix", "-", "-", "-", "smtp"],
    ["showq", "unix", "n", "-", "-", "showq"],
    ["error", "unix", "-", "-", "-", "error"],
    ["retry", "unix", "-", "-", "-", "error"],
    ["discard", "unix", "-", "-", "-", "discard"],
    ["lmtp", "unix", "-", "-", "-", "lmtp"],
    ["anvil", "unix", "-", "-", "1", "anvil"],
    ["scache", "unix", "-", "-", "1", "scache"],
    ["postlog", "unix-dgram", "n", "-", "1", "postlogd"],
    ["smtpd", "pass", "-", "-", "-", "smtpd"],
    ["dnsblog", "unix", "-", "-", "0", "dnsblog"],
    ["tlsproxy", "unix", "-", "-", "0", "tlsproxy"],
];
/** The master.cf service that spawns policyd-spf (postfix-policyd-spf-python in the image). */
const SPF_SERVICE = "policyd-spf";
export const SPF_PROCESSES = 4;

/**
 * Wake-up timers as in Postfix's stock master.cf. Without one, master starts qmgr only when new mail arrives, so
 * mail already queued when Postfix (re)starts would wait for the next incoming message.
 */
const WAKEUP: Record<string, string> = { pickup: "60", qmgr: "300", flush: "1000?" };

function entry(name: string, type: string, priv: string, unpriv: string, maxproc: string, command: string, opts: string[] = []): string {
    const head = [name, type, priv, unpriv, "n", WAKEUP[name] ?? "-", maxproc, command].join(" ");
    return [head, ...opts.map((o) => `  ${o}`)].join("\n");
}

/** -o options that turn an smtpd into an authenticated-submission-only server. */
function submissionOptions(name: string, implicitTls: boolean): string[] {
    return [
        `-o syslog_name=postfix/${name}`,
        ...(implicitTls ? ["-o smtpd_tls_wrappermode=yes"] : []),
        // Mandatory TLS, so the mandatory cipher list applies: passwords travel only over forward-secret AEAD suites.
        "-o smtpd_tls_security_level=encrypt",
        "-o smtpd_tls_mandatory_ciphers=high",
        `-o tls_high_cipherlist=${INTERMEDIATE_TLS12_CIPHERS}`,
        "-o smtpd_tls_auth_only=yes",
        // The user's address and client name stay in the log, not in the Received: header every recipient sees.
        "-o smtpd_hide_client_session=yes",
        "-o smtpd_sasl_auth_enable=yes",
        "-o smtpd_helo_restrictions=",
        "-o smtpd_client_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_sender_restrictions=reject_non_fqdn_sender,reject_sender_login_mismatch,permit_sasl_authenticated,reject",
        "-o smtpd_relay_restrictions=permit_sasl_authenticated,reject",
        "-o smtpd_recipient_restrictions=reject_non_fqdn_recipient,permit_sasl_authenticated,reject",
        "-o milter_macro_daemon_name=ORIGINATING",
        "-o content_filter=",
    ];
}

function masterCf(s: PostfixSettings): string {
    const inbound = ["-o cleanup_service_name=cleanup-inbound"];
    // An idle smtpd waits for its next client blocked in flock() outside its event loop (postfix
    // src/master/single_server.c), keeping its policyd-spf connection: with more port-25 smtpds than policyd-spf
    // processes, a new session would wait smtpd_policy_service_timeout (100 s) for one. The port-25 smtpds (and their
    // PROXY twin's) share the policyd-spf processes; further clients wait for a free smtpd before the greeting instead.
    const inboundSmtpds = String(s.spf ? SPF_PROCESSES / (s.proxyProtocol ? 2 : 1) : "-");
    const out: string[] = [
        "# service type private unpriv chroot wakeup maxproc command + args",
        entry(String(POSTFIX_LISTENERS.smtp.port), "inet", "n", "-", "1", "postscreen"),
        // postscreen hands clients to the "smtpd" pass service below.
        entry("smtpd", "pass", "-", "-", inboundSmtpds, "smtpd", inbound),
        entry(String(POSTFIX_LISTENERS.submission.port), "inet", "n", "-", "-", "smtpd", submissionOptions("submission", false)),
        entry(String(POSTFIX_LISTENERS.submissions.port), "inet", "n", "-", "-", "smtpd", submissionOptions("submissions", true)),
    ];
    if (s.proxyProtocol) {
        // A forged PROXY header could claim loopback: clients from these ports never match mynetworks.
        out.push(
            entry(String(POSTFIX_LISTENERS.smtp.proxy.port), "inet", "n", "-", "1", "postscreen", [
                "-o syslog_name=postfix/smtp-proxy",
                "-o postscreen_upstream_proxy_protocol=haproxy",
                "-o postscreen_access_list=",
                "-o smtpd_service_name=smtpd-proxy",
            ]),
            entry("smtpd-proxy", "pass", "-", "-", inboundSmtpds, "smtpd", ["-o syslog_name=postfix/smtp-proxy", "-o mynetworks=", ...inbound]),
            entry(String(POSTFIX_LISTENERS.submission.proxy.port), "inet", "n", "-", "-", "smtpd", [
                ...submissionOptions("submission-proxy", false),
                "-o smtpd_upstream_proxy_protocol=haproxy",
                "-o mynetworks=",
            ]),
            entry(String(POSTFIX_LISTENERS.submissions.proxy.port), "inet", "n", "-", "-", "smtpd", [
                ...submissionOptions("submissions-proxy", true),
                "-o smtpd_upstream_proxy_protocol=haproxy",
                "-o mynetworks=",
            ]),
        );
    }
    for (const [name, type, priv, unpriv, maxproc, command] of STANDARD_SERVICES) {
        if (name !== "smtpd") out.push(entry(name, type, priv, unpriv, maxproc, command));
    }
    out.push(entry("cleanup-inbound", "unix", "n", "-", "0", "cleanup", ["-o header_checks=$inbound_header_checks"]));
    // Each policyd-spf is a ~22 MiB Python process: a few at most (BUDGET.postfix counts them), one per port-25 smtpd.
    if (s.spf) out.push(entry(SPF_SERVICE, "unix", "-", "n", String(SPF_PROCESSES), "spawn", ["user=nobody", "argv=/usr/bin/policyd-spf"]));
    return out.join("\n") + "\n";
}

/** Renders main.cf and master.cf. Throws on invalid settings, naming the field. */
export function renderPostfix(settings: PostfixSettings): RenderedFiles {
    validate(settings);
    const main = [...mainCf(settings)].map(([k, v]) => (v === "" ? `${k} =` : `${k} = ${v}`)).join("\n") + "\n";
    return { "main.cf": main, "master.cf": masterCf(settings), inbound_header_checks: inboundHeaderChecks(settings) };
}
