// Pure renderer for OpenDKIM: opendkim.conf, KeyTable, SigningTable and TrustedHosts.
// Signs mail from our domains when Postfix marks it as submitted (daemon name ORIGINATING) or it comes
// from an internal host; verifies everything else and adds Authentication-Results.
import { Listener, RenderedFiles, checkCidr, checkHostname, invalid } from "../render";

export const OPENDKIM_LISTENERS = { milter: { name: "milter", port: 8891, clients: ["postfix"] } } as const satisfies Record<string, Listener>;

/** Where the image's entrypoint assembles the live config. */
export const OPENDKIM_LIVE_DIR = "/run/mail/opendkim/live";
/** Private copies of the keys (owned by opendkim, 0400) made by the entrypoint from the mounted Secret. */
export const OPENDKIM_KEY_DIR = `${OPENDKIM_LIVE_DIR}/keys`;

/** The Secret key (file name) holding a domain's PEM private key. */
export function dkimKeyFileName(domain: string): string {
    return `${checkHostname("domain", domain)}.private`;
}

export interface OpenDkimSettings {
    /** Domains we sign for; each needs `<domain>.private` in the key Secret. */
    domains: string[];
    selector: string;
    /** authserv-id in Authentication-Results: the mail host name. */
    authservId: string;
    /** Networks whose mail is signed rather than verified (the pod range). Loopback is always included. */
    internalHosts: string[];
}

export const OPENDKIM_DEFAULTS: Omit<OpenDkimSettings, "domains" | "authservId" | "selector"> = {
    internalHosts: [],
};

function validate(s: OpenDkimSettings): void {
    if (!Array.isArray(s.domains) || s.domains.length === 0) invalid("domains", "at least one domain", s.domains);
    s.domains.forEach((d, i) => checkHostname(`domains[${i}]`, d));
    if (new Set(s.domains).size !== s.domains.length) invalid("domains", "no duplicates", s.domains);
    if (!/^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?$/.test(s.selector)) invalid("selector", "a DNS label [a-z0-9-]", s.selector);
    checkHostname("authservId", s.authservId);
    s.internalHosts.forEach((n, i) => checkCidr(`internalHosts[${i}]`, n));
}

/** Renders the OpenDKIM files. Throws on invalid settings, naming the field. */
export function renderOpenDkim(settings: OpenDkimSettings): RenderedFiles {
    validate(settings);
    const { domains, selector } = settings;
    const conf = [
        "# Rendered by the mail program.",
        "Syslog yes",
        "SyslogSuccess yes",
        "LogResults no",
        `Socket inet:${OPENDKIM_LISTENERS.milter.port}`,
        "Mode sv",
        // Signing for mail submitted over 587/465 (Postfix sets this daemon name there).
        "MTA ORIGINATING",
        `InternalHosts ${OPENDKIM_LIVE_DIR}/TrustedHosts`,
        `ExternalIgnoreList ${OPENDKIM_LIVE_DIR}/TrustedHosts`,
        `KeyTable ${OPENDKIM_LIVE_DIR}/KeyTable`,
        `SigningTable refile:${OPENDKIM_LIVE_DIR}/SigningTable`,
        "RequireSafeKeys yes",
        "Canonicalization relaxed/simple",
        "SignatureAlgorithm rsa-sha256",
        "OversignHeaders From",
        `AuthservID ${settings.authservId}`,
        "AlwaysAddARHeader yes",
        // Trouble on our side defers (4xx) rather than passing or rejecting mail.
        "On-InternalError tempfail",
        "On-DNSError tempfail",
        "On-Security tempfail",
        "On-BadSignature accept",
        "On-NoSignature accept",
        "On-KeyNotFound accept",
        "DNSTimeout 5",
        "UMask 007",
        "",
    ].join("\n");
    const keyTable = domains.map((d) => `${selector}._domainkey.${d} ${d}:${selector}:${OPENDKIM_KEY_DIR}/${dkimKeyFileName(d)}`);
    // Subdomains are signed with their parent domain's key.
    const signingTable = domains.flatMap((d) => [`*@${d} ${selector}._domainkey.${d}`, `*@*.${d} ${selector}._domainkey.${d}`]);
    const trusted = ["127.0.0.1", "::1", ...settings.internalHosts];
    return {
        "opendkim.conf": conf,
        KeyTable: keyTable.join("\n") + "\n",
        SigningTable: signingTable.join("\n") + "\n",
        TrustedHosts: trusted.join("\n") + "\n",
    };
}
