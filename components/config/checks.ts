// Every validation rule of the program, in one place: the config reader (load.ts) and the renderers use the same
// rules, so a value the reader accepts is one the renderer accepts. Each rule returns undefined when the value is
// fine, else what is allowed ("expected …"), which the caller prefixes with the key or field it checked.
import * as net from "net";

/** A stack configuration problem, found at preview time, that names the key, the value and what is allowed. */
export class ConfigError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "ConfigError";
    }
}

export type Rule = (value: string) => string | undefined;

export function pattern(re: RegExp, what: string): Rule {
    return (value) => (typeof value === "string" && re.test(value) ? undefined : what);
}

/** "" passes (the key's "not set" value); anything else must pass the rule. */
export function optional(rule: Rule): Rule {
    return (value) => (value === "" ? undefined : rule(value));
}

const LABEL = /^(?!-)[a-z0-9-]{1,63}(?<!-)$/;

/** A lower-case fully qualified host name with a non-numeric top-level label. */
export function fqdn(value: string): string | undefined {
    const labels = typeof value === "string" ? value.split(".") : [];
    const ok = value.length <= 253 && labels.length >= 2 && labels.every((l) => LABEL.test(l)) && !/^\d+$/.test(labels[labels.length - 1]);
    return ok ? undefined : "expected a fully qualified lowercase host name such as mail.example.com";
}

/** A lower-case host name, one label or more (a Service name such as "dovecot" is one). */
export function hostname(value: string): string | undefined {
    const labels = typeof value === "string" ? value.split(".") : [];
    return value.length <= 253 && labels.every((l) => LABEL.test(l)) ? undefined : "expected a lowercase host name such as dovecot or mail.example.com";
}

/**
 * A mail address of ours: a dot-atom local part (RFC 5322 §3.2.3, no quoted strings) at a lower-case domain. Upper
 * case in the local part is refused: Postfix's and couchmail's lookups are case-folded, a stored address is not.
 */
export function email(value: string): string | undefined {
    const at = typeof value === "string" ? value.lastIndexOf("@") : -1;
    const local = at > 0 ? value.slice(0, at) : "";
    const ok = /^[a-z0-9!#$%&'*+/=?^_`{|}~-]+(\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*$/.test(local) && local.length <= 64 && fqdn(value.slice(at + 1)) === undefined;
    return ok ? undefined : "expected a lowercase email address such as postmaster@example.com";
}

/** The domain of an address the email rule accepted (its part after the last "@"). */
export function domainOf(address: string): string {
    return address.slice(address.lastIndexOf("@") + 1);
}

export function dnsLabel(value: string): string | undefined {
    return typeof value === "string" && LABEL.test(value) && /^[a-z]/.test(value)
        ? undefined
        : "expected lowercase letters, digits and dashes, starting with a letter, at most 63 characters";
}

/** An IPv4 or IPv6 network in CIDR form (IPv6 without brackets); the address part must be a real address. */
export function cidr(value: string): string | undefined {
    const [ip, bits, extra] = typeof value === "string" ? value.split("/") : [];
    const max = net.isIPv4(ip) ? 32 : net.isIPv6(ip) ? 128 : -1;
    return extra === undefined && /^\d{1,3}$/.test(bits ?? "") && Number(bits) <= max ? undefined : "expected a CIDR network such as 10.0.0.0/8 or fd00::/8";
}

/** A postscreen_dnsbl_sites entry: `domain[=filter][*weight]`. */
export const dnsbl = pattern(/^[a-z0-9.-]+\.[a-z]{2,}(=[0-9.[\];]+)?(\*-?\d+)?$/, "expected domain[=filter][*weight], e.g. zen.spamhaus.org*3");

/** An image pinned by version (`name:1.2.3`, a registry path allowed), never `latest` or a bare name. */
/** An OCI content digest as registries report it (`sha256:` and 64 lowercase hex digits). */
export const imageDigest = pattern(/^sha256:[0-9a-f]{64}$/, "expected sha256: and 64 lowercase hex digits, as the images workflow records them");

export const pinnedImage = pattern(/^[^\s:@]+(:\d+)?(\/[^\s:@]+)*:\d[\w.-]*$/, "expected an image pinned by version, e.g. couchdb:3.5.0");

export function absPath(value: string): string | undefined {
    return typeof value === "string" && /^\/[A-Za-z0-9._/-]*$/.test(value) && !value.split("/").includes("..")
        ? undefined
        : "expected an absolute path of [A-Za-z0-9._/-] without '..'";
}

export function port(value: number): string | undefined {
    return Number.isInteger(value) && value >= 1 && value <= 65535 ? undefined : "expected an integer port 1-65535";
}

// Kubernetes label syntax (https://kubernetes.io/docs/concepts/overview/working-with-objects/labels/#syntax-and-character-set).
const LABEL_NAME = /^[A-Za-z0-9]([-A-Za-z0-9_.]{0,61}[A-Za-z0-9])?$/;

/** A label key: an optional DNS-subdomain prefix and "/", then a name of at most 63 characters. */
export function labelName(value: string): string | undefined {
    const slash = value.lastIndexOf("/");
    const prefix = slash < 0 ? undefined : value.slice(0, slash);
    const name = value.slice(slash + 1);
    if (LABEL_NAME.test(name) && (prefix === undefined || (prefix.length <= 253 && fqdn(prefix) === undefined))) return undefined;
    return "expected a label key such as release or example.com/team: at most 63 letters, digits, '-', '_' or '.', optionally after a DNS prefix and '/'";
}

/** A label value: empty, or at most 63 letters, digits, '-', '_' or '.', starting and ending alphanumeric. */
export function labelValue(value: string): string | undefined {
    return value === "" || LABEL_NAME.test(value)
        ? undefined
        : "expected a label value: at most 63 letters, digits, '-', '_' or '.', starting and ending with a letter or digit";
}
