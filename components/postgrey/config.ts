// Pure renderer for Postgrey: its whitelist files and command line. Postfix asks it from port 25's
// smtpd_recipient_restrictions only (PostfixSettings.policyService); submission ports never consult it.
import { Listener, RenderedFiles, checkAbsPath, invalid } from "../render";

export const POSTGREY_LISTENERS = { policy: { name: "policy", port: 10023, clients: ["postfix"] } } as const satisfies Record<string, Listener>;

export interface PostgreySettings {
    /** Seconds a new (client, sender, recipient) triplet must wait before a retry is accepted. */
    delaySeconds: number;
    /** Extra client entries: host names, IP addresses or networks, or /regexps/ (postgrey's whitelist_clients syntax). */
    whitelistClients: string[];
    /** Extra recipient entries: `user@`, `@domain`, `user@domain` or /regexps/. */
    whitelistRecipients: string[];
    /** Persistent volume; the database lives in a `db` directory postgrey creates (and so owns) there. */
    dataDir: string;
}

export const POSTGREY_DEFAULTS: Pick<PostgreySettings, "dataDir"> = {
    dataDir: "/var/lib/postgrey",
};

const ENTRY = /^\S+$/;

function validate(s: PostgreySettings): void {
    if (!Number.isInteger(s.delaySeconds) || s.delaySeconds < 1 || s.delaySeconds > 3600) invalid("delaySeconds", "an integer from 1 to 3600", s.delaySeconds);
    s.whitelistClients.forEach((e, i) => ENTRY.test(e) || invalid(`whitelistClients[${i}]`, "one word without spaces", e));
    s.whitelistRecipients.forEach((e, i) => ENTRY.test(e) || invalid(`whitelistRecipients[${i}]`, "one word without spaces", e));
    checkAbsPath("dataDir", s.dataDir);
}

const file = (what: string, entries: string[]) => [`# Rendered by the mail program: ${what}, read with the package's list.`, ...entries, ""].join("\n");

/** Renders the `.local` whitelists (postgrey reads them beside the package's own lists, and again on SIGHUP). */
export function renderPostgrey(settings: PostgreySettings): RenderedFiles {
    validate(settings);
    return {
        "whitelist_clients.local": file("clients never greylisted", settings.whitelistClients),
        "whitelist_recipients.local": file("recipients never greylisted", settings.whitelistRecipients),
    };
}

/** postgrey's arguments, for the container spec (a changed delay rolls the pod). */
export function postgreyArgs(settings: PostgreySettings): string[] {
    validate(settings);
    return [
        `--inet=0.0.0.0:${POSTGREY_LISTENERS.policy.port}`,
        `--delay=${settings.delaySeconds}`,
        `--dbdir=${settings.dataDir}/db`,
        "--greylist-text=Greylisted, please try again later",
    ];
}
