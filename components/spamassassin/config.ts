// Pure renderer for SpamAssassin's site config (mail.cf) and spamd's command line.
//
// Scoring happens at LMTP delivery time: Dovecot's shipped spam.sieve pipes each message through `spam-scan`
// (images/dovecot), which runs `spamc -u <recipient user>`, so every user's own Bayes database and preferences apply.
// spamd keeps both per user under <dataDir>/users/<user> (its --virtual-config-dir), on a persistent volume.
import { Listener, RenderedFiles, checkAbsPath, checkCidr, invalid } from "../render";

// Dovecot scans and teaches at delivery and on moves to/from Junk; the nightly job teaches too.
export const SPAMD_LISTENERS = { spamd: { name: "spamd", port: 10783, clients: ["dovecot", "spam-train"] } } as const satisfies Record<string, Listener>;

export interface SpamAssassinSettings {
    /** Score at or above which a message is spam (X-Spam-Flag: YES ⇒ the recipient's Junk). */
    requiredScore: number;
    /** The cluster's pod networks: spamd accepts only them (and loopback); SpamAssassin trusts their Received headers. */
    clusterNetworks: string[];
    /** spamd children: each holds the whole rule set (~45 MiB), so this bounds memory. */
    maxChildren: number;
    /** Persistent volume with per-user preferences and Bayes databases. */
    dataDir: string;
}

export const SPAMASSASSIN_DEFAULTS: Pick<SpamAssassinSettings, "dataDir"> = {
    dataDir: "/var/lib/spamd",
};

function validate(s: SpamAssassinSettings): void {
    if (typeof s.requiredScore !== "number" || !Number.isFinite(s.requiredScore) || s.requiredScore < 1 || s.requiredScore > 50) {
        invalid("requiredScore", "a number from 1 to 50", s.requiredScore);
    }
    if (s.clusterNetworks.length === 0) invalid("clusterNetworks", "at least one network", s.clusterNetworks);
    s.clusterNetworks.forEach((n, i) => checkCidr(`clusterNetworks[${i}]`, n));
    if (!Number.isInteger(s.maxChildren) || s.maxChildren < 1 || s.maxChildren > 20) invalid("maxChildren", "an integer from 1 to 20", s.maxChildren);
    checkAbsPath("dataDir", s.dataDir);
}

function mailCf(s: SpamAssassinSettings): string {
    const networks = s.clusterNetworks.join(" ");
    return [
        "# Rendered by the mail program; read after the package's rules and /etc/spamassassin/local.cf.",
        `required_score ${s.requiredScore}`,
        // Spam stays the original message with headers added: users read it in Junk and training learns the original.
        "report_safe 0",
        // Postfix and Dovecot hops come from pod addresses: trusting them makes SPF and DNSBL checks look at the real client.
        `trusted_networks ${networks}`,
        `internal_networks ${networks}`,
        "use_bayes 1",
        "bayes_auto_learn 1",
        "",
    ].join("\n");
}

/** Renders mail.cf. Throws on invalid settings, naming the field. */
export function renderSpamAssassin(settings: SpamAssassinSettings): RenderedFiles {
    validate(settings);
    return { "mail.cf": mailCf(settings) };
}

/** spamd's arguments (after the entrypoint), for the container spec. */
export function spamdArgs(settings: SpamAssassinSettings): string[] {
    validate(settings);
    return [
        `--listen=0.0.0.0:${SPAMD_LISTENERS.spamd.port}`,
        `--allowed-ips=127.0.0.1,${settings.clusterNetworks.join(",")}`,
        // Learning through spamd (spamc -L) for the imapsieve and nightly training.
        "--allow-tell",
        // No home directories: every spamc user name gets its own directory (preferences + Bayes) on the volume.
        "--nouser-config",
        // spamd insists on a user for virtual configs; it is the one the container already runs as.
        "--username=spamd",
        `--virtual-config-dir=${settings.dataDir}/users/%u`,
        `--max-children=${settings.maxChildren}`,
        "--min-children=1",
        "--min-spare=1",
        "--max-spare=1",
        // Recycle children so a leak or a huge message cannot grow them for ever.
        "--max-conn-per-child=200",
        "--timeout-child=120",
        "--syslog=stderr",
    ];
}
