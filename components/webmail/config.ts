// Pure renderer for the webmail pod: Roundcube's config.inc.php and its plugins' files, nginx.conf and PHP-FPM's
// config. Roundcube is a client like any other: it logs in to Dovecot (IMAP 993, ManageSieve 4190 with STARTTLS)
// and sends through Postfix's submissions port (465), over TLS with the certificate verified against the public mail
// host name, since the in-cluster Service names are not in the certificate.
import { DOVECOT_LISTENERS } from "../dovecot/config";
import { POSTFIX_LISTENERS } from "../postfix/config";
import { INTERMEDIATE_TLS12_CIPHERS, Listener, RenderedFiles, checkAbsPath, checkCidr, checkHostname, invalid } from "../render";

/** Unprivileged ports (the pod runs as non-root); the edge maps the public ones. */
export const WEBMAIL_LISTENERS = {
    https: { name: "https", port: 8443, public: 443, proxy: { name: "https-proxy", port: 18443 } },
    // Only redirects to HTTPS, and answers the kubelet's probes.
    http: { name: "http", port: 8080, public: 80, proxy: { name: "http-proxy", port: 18080 } },
} as const satisfies Record<string, Listener>;

/** Where the image's entrypoint assembles the live config (its symlinks point Roundcube's config files here). */
export const WEBMAIL_LIVE_DIR = "/run/mail/webmail/live";
/** PHP-FPM's socket and the pid files (an emptyDir: the root filesystem is read-only). */
export const WEBMAIL_RUN_DIR = "/run/webmail";
/** A pipe the entrypoint copies to the container's stdout (see images/webmail/entrypoint.sh): the daemons' logs. */
export const WEBMAIL_LOG_PIPE = `${WEBMAIL_RUN_DIR}/log`;
/** The plain-HTTP path the probes ask: nginx passes it to PHP-FPM's ping, so it fails when either is down. */
export const WEBMAIL_HEALTH_PATH = "/healthz";

/** Folders Roundcube uses for drafts, sent mail, junk and trash: Dovecot's special-use folders (it creates them). */
const FOLDERS = { drafts_mbox: "Drafts", sent_mbox: "Sent", junk_mbox: "Junk", trash_mbox: "Trash" } as const;

/**
 * What Roundcube 1.6's Elastic skin needs: its pages carry inline scripts (the rcmail environment) and inline styles,
 * message bodies open in same-origin frames, attachments preview from blob: URLs. Remote content is refused: images in
 * HTML mail stay blocked even where Roundcube would offer to load them (they are trackers as often as content).
 */
export const WEBMAIL_CSP = [
    "default-src 'self'",
    "script-src 'self' 'unsafe-inline' 'unsafe-eval'",
    "style-src 'self' 'unsafe-inline'",
    "img-src 'self' data: blob:",
    "font-src 'self' data:",
    "connect-src 'self'",
    "frame-src 'self' blob:",
    "object-src 'none'",
    "base-uri 'self'",
    "form-action 'self'",
    "frame-ancestors 'self'",
].join("; ");

/** One year, the commonly required minimum for preload lists. */
const HSTS = "max-age=31536000; includeSubDomains";

export interface WebmailSettings {
    /** The name users browse to: nginx's server name, the target of the HTTP redirect. */
    hostname: string;
    /** The mail host name in Dovecot's and Postfix's certificate: checked as the TLS peer name on every connection. */
    mailHostname: string;
    /** Service names (or addresses) of Dovecot and Postfix inside the cluster. */
    imapHost: string;
    smtpHost: string;
    /** The port the world's HTTPS arrives on, for the redirect (443 unless an edge maps another). */
    publicHttpsPort: number;
    /** The stack certificate, served by nginx. */
    tls: { certFile: string; keyFile: string };
    /** Trust anchor for Dovecot's and Postfix's certificates (a self-signed stack certificate); omitted: the system's CAs. */
    upstreamCaFile?: string;
    /** The SQLite database and the des_key the entrypoint makes: the pod's volume. */
    dataDir: string;
    /** Postfix's message_size_limit in bytes: uploads are capped so a composed message fits. */
    messageSizeLimit: number;
    /** PHP workers at most (each ~20–40 MiB while busy; started on demand, stopped when idle). */
    maxWorkers: number;
    /** Serve the PROXY twins: the client address comes from the header, trusted only from these networks. */
    proxyProtocol: boolean;
    proxyTrustedNetworks: string[];
    /**
     * couchmail's password endpoint (https://…, e.g. at the Dovecot Service), its certificate verified as `peerName`
     * (the mail host name the stack's certificate carries) when the URL's host is not in it; omitted: the password
     * plugin stays off.
     */
    passwordApi?: { url: string; minimumLength: number; peerName?: string };
}

export const WEBMAIL_DEFAULTS: Pick<WebmailSettings, "publicHttpsPort" | "tls" | "dataDir" | "maxWorkers" | "proxyProtocol" | "proxyTrustedNetworks"> = {
    publicHttpsPort: WEBMAIL_LISTENERS.https.public,
    tls: { certFile: "/etc/mail/tls/tls.crt", keyFile: "/etc/mail/tls/tls.key" },
    dataDir: "/var/lib/webmail",
    maxWorkers: 4,
    proxyProtocol: false,
    proxyTrustedNetworks: [],
};

function validate(s: WebmailSettings): void {
    checkHostname("hostname", s.hostname);
    checkHostname("mailHostname", s.mailHostname);
    checkHostname("imapHost", s.imapHost, false);
    checkHostname("smtpHost", s.smtpHost, false);
    if (!Number.isInteger(s.publicHttpsPort) || s.publicHttpsPort < 1 || s.publicHttpsPort > 65535)
        invalid("publicHttpsPort", "a port from 1 to 65535", s.publicHttpsPort);
    checkAbsPath("tls.certFile", s.tls.certFile);
    checkAbsPath("tls.keyFile", s.tls.keyFile);
    if (s.upstreamCaFile !== undefined) checkAbsPath("upstreamCaFile", s.upstreamCaFile);
    checkAbsPath("dataDir", s.dataDir);
    if (!Number.isInteger(s.messageSizeLimit) || s.messageSizeLimit < 1024 * 1024)
        invalid("messageSizeLimit", "an integer of at least 1048576 bytes", s.messageSizeLimit);
    if (!Number.isInteger(s.maxWorkers) || s.maxWorkers < 1 || s.maxWorkers > 32) invalid("maxWorkers", "an integer from 1 to 32", s.maxWorkers);
    s.proxyTrustedNetworks.forEach((n, i) => checkCidr(`proxyTrustedNetworks[${i}]`, n));
    if (s.proxyProtocol && s.proxyTrustedNetworks.length === 0)
        invalid("proxyTrustedNetworks", "at least one network when proxyProtocol is on", s.proxyTrustedNetworks);
    if (s.passwordApi) {
        if (!/^https:\/\/[^\s'"]+$/.test(s.passwordApi.url)) invalid("passwordApi.url", "an https:// URL", s.passwordApi.url);
        if (s.passwordApi.peerName !== undefined) checkHostname("passwordApi.peerName", s.passwordApi.peerName);
        const min = s.passwordApi.minimumLength;
        if (!Number.isInteger(min) || min < 8 || min > 128) invalid("passwordApi.minimumLength", "an integer from 8 to 128", min);
    }
}

type PhpValue = string | number | boolean | null | PhpValue[] | { [key: string]: PhpValue };

/** A PHP literal: strings single-quoted (only `\` and `'` are special there), arrays in short syntax. */
export function phpLiteral(value: PhpValue): string {
    if (value === null) return "null";
    if (typeof value === "string") return `'${value.replace(/[\\']/g, (c) => `\\${c}`)}'`;
    if (typeof value === "number") {
        if (!Number.isFinite(value)) invalid("PHP value", "a finite number", value);
        return String(value);
    }
    if (typeof value === "boolean") return value ? "true" : "false";
    if (Array.isArray(value)) return `[${value.map(phpLiteral).join(", ")}]`;
    return `[${Object.entries(value)
        .map(([k, v]) => `${phpLiteral(k)} => ${phpLiteral(v)}`)
        .join(", ")}]`;
}

function phpConfig(what: string, entries: Record<string, PhpValue>, raw: string[] = []): string {
    return [
        "<?php",
        `// Rendered by the mail program: ${what}.`,
        "$config = [];",
        ...Object.entries(entries).map(([k, v]) => `$config[${phpLiteral(k)}] = ${phpLiteral(v)};`),
        ...raw,
        "",
    ].join("\n");
}

/** PHP stream TLS options: the certificate must chain to a trusted CA and name the public mail host. */
function verifiedTls(s: WebmailSettings): PhpValue {
    return {
        ssl: {
            verify_peer: true,
            verify_peer_name: true,
            allow_self_signed: false,
            peer_name: s.mailHostname,
            ...(s.upstreamCaFile ? { cafile: s.upstreamCaFile } : {}),
        },
    };
}

/** The largest upload: a composed message carries attachments base64-encoded (4/3 of their size, plus line breaks). */
export function maxUploadBytes(messageSizeLimit: number): number {
    return Math.floor((messageSizeLimit * 0.73) / (1024 * 1024)) * 1024 * 1024;
}

/** The plugins Roundcube loads: the password plugin only with couchmail's endpoint configured. */
export function webmailPlugins(s: WebmailSettings): string[] {
    return ["client_address", "managesieve", "markasjunk", ...(s.passwordApi ? ["password"] : [])];
}

function roundcubeConfig(s: WebmailSettings): string {
    const tlsOptions = verifiedTls(s);
    return phpConfig(
        "Roundcube's settings (the package's defaults.inc.php has the rest)",
        {
            db_dsnw: `sqlite:///${s.dataDir}/roundcube.db?mode=0640`,
            imap_host: `ssl://${s.imapHost}:${DOVECOT_LISTENERS.imaps.port}`,
            imap_conn_options: tlsOptions,
            smtp_host: `ssl://${s.smtpHost}:${POSTFIX_LISTENERS.submissions.port}`,
            smtp_conn_options: tlsOptions,
            smtp_user: "%u",
            smtp_pass: "%p",
            // Users log in with their address, as in every other client; Dovecot and Postfix compare it lowercased.
            login_lc: 2,
            use_https: true,
            session_samesite: "Strict",
            session_lifetime: 30,
            x_frame_options: "sameorigin",
            // Only the connection's address (the PROXY header's, through nginx) counts: no forwarded-for headers.
            proxy_whitelist: [],
            log_driver: "stdout",
            log_logins: true,
            temp_dir: "/tmp",
            enable_installer: false,
            // The spell checker would send drafts to a third-party service.
            enable_spellcheck: false,
            product_name: "Webmail",
            support_url: "",
            skin: "elastic",
            max_message_size: `${maxUploadBytes(s.messageSizeLimit) / (1024 * 1024)}M`,
            // Dovecot creates and subscribes the special-use folders itself.
            create_default_folders: false,
            ...FOLDERS,
            plugins: webmailPlugins(s),
        },
        // Roundcube encrypts the IMAP password kept in the session with it; the entrypoint makes it once per volume.
        [`$config['des_key'] = trim(file_get_contents(${phpLiteral(`${s.dataDir}/des_key`)}));`],
    );
}

function managesieveConfig(s: WebmailSettings): string {
    return phpConfig("the managesieve plugin: the user's filters and vacation, Dovecot's personal ManageSieve script", {
        // tls:// is STARTTLS on ManageSieve's port.
        managesieve_host: `tls://${s.imapHost}:${DOVECOT_LISTENERS.sieve.port}`,
        managesieve_conn_options: verifiedTls(s),
        managesieve_vacation: 1,
        managesieve_forward: 1,
        managesieve_raw_editor: false,
    });
}

function markasjunkConfig(): string {
    // Moving a message into or out of Junk is what trains (Dovecot's imapsieve): no learning driver of its own.
    return phpConfig("the markasjunk plugin: moves to and from Junk, which Dovecot's imapsieve learns from", {
        markasjunk_learning_driver: null,
        markasjunk_move_spam: true,
        markasjunk_move_ham: true,
        markasjunk_ham_mbox: "INBOX",
        markasjunk_spam_mbox: FOLDERS.junk_mbox,
        markasjunk_read_spam: true,
    });
}

function passwordConfig(s: WebmailSettings): string {
    if (!s.passwordApi) return phpConfig("the password plugin (off: no password endpoint configured)", {});
    return phpConfig("the password plugin: changes the user's own password at couchmail, with the current one", {
        password_driver: "httpapi",
        password_confirm_current: true,
        password_minimum_length: s.passwordApi.minimumLength,
        password_httpapi_url: s.passwordApi.url,
        password_httpapi_method: "POST",
        password_httpapi_var_user: "user",
        password_httpapi_var_curpass: "curpass",
        password_httpapi_var_newpass: "newpass",
        password_httpapi_expect: "/^ok$/i",
        password_http_client: {
            verify: s.upstreamCaFile ?? true,
            timeout: 10,
            // Refusals are answers (wrong password, rate limit), not transport errors.
            http_errors: false,
            // The image's PHP has no curl extension, so Guzzle talks through PHP streams: their TLS options apply.
            ...(s.passwordApi.peerName ? { stream_context: { ssl: { peer_name: s.passwordApi.peerName } } } : {}),
        },
    });
}

function nginxConfig(s: WebmailSettings): string {
    const upload = maxUploadBytes(s.messageSizeLimit);
    const redirectTarget = `https://${s.hostname}${s.publicHttpsPort === 443 ? "" : `:${s.publicHttpsPort}`}`;
    const listen = (l: { port: number; proxy: { port: number } }, ssl: boolean) => [
        `        listen ${l.port}${ssl ? " ssl" : ""};`,
        ...(s.proxyProtocol ? [`        listen ${l.proxy.port}${ssl ? " ssl" : ""} proxy_protocol;`] : []),
    ];
    const fastcgi = `unix:${WEBMAIL_RUN_DIR}/php-fpm.sock`;
    return [
        "# Rendered by the mail program: nginx in front of Roundcube's PHP-FPM, as the unprivileged webmail user.",
        "daemon off;",
        "worker_processes 1;",
        `pid ${WEBMAIL_RUN_DIR}/nginx.pid;`,
        "error_log stderr warn;",
        "events { worker_connections 512; }",
        "http {",
        "    include /etc/nginx/mime.types;",
        "    default_type application/octet-stream;",
        `    access_log ${WEBMAIL_LOG_PIPE};`,
        "    server_tokens off;",
        "    sendfile on;",
        "    client_body_temp_path /tmp/nginx/body;",
        "    fastcgi_temp_path /tmp/nginx/fastcgi;",
        "    proxy_temp_path /tmp/nginx/proxy;",
        "    uwsgi_temp_path /tmp/nginx/uwsgi;",
        "    scgi_temp_path /tmp/nginx/scgi;",
        // The composed message plus the form around it.
        `    client_max_body_size ${Math.ceil((upload * 1.1) / (1024 * 1024))}m;`,
        ...(s.proxyProtocol
            ? [
                  "    # The client address is the PROXY header's, believed only from the edge.",
                  ...s.proxyTrustedNetworks.map((n) => `    set_real_ip_from ${n};`),
                  "    real_ip_header proxy_protocol;",
              ]
            : []),
        "    server {",
        ...listen(WEBMAIL_LISTENERS.http, false),
        "        server_name _;",
        `        location = ${WEBMAIL_HEALTH_PATH} {`,
        "            access_log off;",
        "            fastcgi_param REQUEST_METHOD GET;",
        "            fastcgi_param SCRIPT_NAME /fpm-ping;",
        "            fastcgi_param SCRIPT_FILENAME /fpm-ping;",
        `            fastcgi_pass ${fastcgi};`,
        "        }",
        `        location / { return 308 ${redirectTarget}$request_uri; }`,
        "    }",
        "    server {",
        ...listen(WEBMAIL_LISTENERS.https, true),
        "        http2 on;",
        `        server_name ${s.hostname};`,
        `        ssl_certificate ${s.tls.certFile};`,
        `        ssl_certificate_key ${s.tls.keyFile};`,
        "        ssl_protocols TLSv1.2 TLSv1.3;",
        `        ssl_ciphers ${INTERMEDIATE_TLS12_CIPHERS};`,
        "        ssl_prefer_server_ciphers off;",
        "        ssl_session_cache shared:webmail:1m;",
        "        ssl_session_tickets off;",
        "        root /var/lib/roundcube/public_html;",
        "        index index.php;",
        // Every response, errors included ("always"); no location below adds headers of its own, which would drop these.
        `        add_header Strict-Transport-Security "${HSTS}" always;`,
        `        add_header Content-Security-Policy "${WEBMAIL_CSP}" always;`,
        "        add_header X-Content-Type-Options nosniff always;",
        "        add_header Referrer-Policy same-origin always;",
        "        fastcgi_hide_header X-Powered-By;",
        "        location ~ /\\. { deny all; }",
        "        location ~ \\.php$ {",
        "            try_files $uri =404;",
        "            include /etc/nginx/fastcgi_params;",
        "            fastcgi_param SCRIPT_FILENAME $document_root$fastcgi_script_name;",
        "            fastcgi_param HTTPS on;",
        `            fastcgi_pass ${fastcgi};`,
        "        }",
        "    }",
        "}",
        "",
    ].join("\n");
}

function phpFpmConfig(s: WebmailSettings): string {
    const upload = maxUploadBytes(s.messageSizeLimit);
    const mib = (n: number) => `${Math.ceil(n / (1024 * 1024))}M`;
    return [
        "; Rendered by the mail program: PHP-FPM for Roundcube, in the foreground as the container's user.",
        "[global]",
        `pid = ${WEBMAIL_RUN_DIR}/php-fpm.pid`,
        `error_log = ${WEBMAIL_LOG_PIPE}`,
        "log_limit = 8192",
        "daemonize = no",
        "",
        "[roundcube]",
        `listen = ${WEBMAIL_RUN_DIR}/php-fpm.sock`,
        "listen.mode = 0600",
        // Workers start with the first request and stop when idle: an idle pod is nginx and PHP-FPM's master.
        "pm = ondemand",
        `pm.max_children = ${s.maxWorkers}`,
        "pm.process_idle_timeout = 60s",
        "pm.max_requests = 500",
        "ping.path = /fpm-ping",
        "ping.response = pong",
        "catch_workers_output = yes",
        "decorate_workers_output = no",
        "clear_env = yes",
        "php_admin_flag[log_errors] = on",
        "php_admin_flag[display_errors] = off",
        "php_admin_value[error_log] = /proc/self/fd/2",
        "php_admin_value[memory_limit] = 128M",
        `php_admin_value[upload_max_filesize] = ${mib(upload)}`,
        `php_admin_value[post_max_size] = ${mib(upload * 1.1)}`,
        "php_admin_value[upload_tmp_dir] = /tmp",
        "php_admin_value[session.cookie_secure] = 1",
        "php_admin_value[session.cookie_httponly] = 1",
        "php_admin_value[session.cookie_samesite] = Strict",
        "",
    ].join("\n");
}

/** Renders the webmail pod's files. Throws on invalid settings, naming the field. */
export function renderWebmail(settings: WebmailSettings): RenderedFiles {
    validate(settings);
    return {
        "config.inc.php": roundcubeConfig(settings),
        "managesieve.inc.php": managesieveConfig(settings),
        "markasjunk.inc.php": markasjunkConfig(),
        "password.inc.php": passwordConfig(settings),
        "nginx.conf": nginxConfig(settings),
        "php-fpm.conf": phpFpmConfig(settings),
    };
}
