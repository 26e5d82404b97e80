// Pure renderer for SpamAssassin's site config (mail.cf) and spamd's command line.
//
// Scoring happens at LMTP delivery time: Dovecot's shipped spam.sieve pipes each message through `spam-scan`
// (images/dovecot), which runs `spamc -u <recipient user>`, so every user's own Bayes database and preferences apply.
// spamd keeps both per user under <dataDir>/users/<user> (its --virtual-config-dir), on a persistent volume.
import { Listener, RenderedFiles, checkAbsPath, checkCidr, invalid } from "../render";

// Dovecot scans and teaches at delivery and on moves to/from Junk; the nightly job teaches too.
export const SPAMD_LISTENERS = { spamd: { name: "spamd", port: 10783, clients: ["dovecot", "spam-train"] } } as const satisfies Record<string, Listener>;

/**
 * The largest message spamd scores: spamc's -s in Dovecot's spamc.conf. spamc passes a larger message through
 * unchanged (exit 0), so it is delivered unscored. spamd holds a message whole, several times over, in the child
 * scanning it: measured (tests/bench/spamd.ts, two messages of one size scanned at once by the two children) the
 * container's peak PSS was 160 MiB at 500 KB (spamc's own default), 187 MiB at 2 MiB — what a burst of small mail
 * already reaches (~189 MiB) — 234 MiB at 5 MiB, 316 MiB at 10 MiB and 613 MiB at 25 MiB (Postfix's default size
 * limit: over BUDGET.spamd's limit, an OOM kill). 2 MiB scores photos and office attachments without raising spamd's
 * memory above what small mail needs, which keeps the stack within a 2 GB node.
 */
export const SPAM_SCAN_MAX_BYTES = 2 * 1024 * 1024;

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
        // Learning (autolearn at every scan of a young database, and training) appends to the journal instead of
        // rewriting the database under its write lock: ~20 % less CPU per scan measured (tests/bench/spamd.ts).
        // The journal is merged into the database once it passes bayes_journal_max_size or a day after the last merge.
        "bayes_learn_to_journal 1",
        // The Bayes databases are on spamd's own ReadWriteOnce volume, never NFS: flock() instead of the default
        // NFS-safe lock files, which wait in whole-second sleeps when two children want one user's lock.
        "lock_method flock",
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
