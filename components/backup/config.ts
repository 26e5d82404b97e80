// Pure parts of the backup: the doveadm config the jobs run with, what the repository needs from the network, and
// the repository's credentials.
import { DovecotSettings, mailLayout } from "../dovecot/config";
import { RenderedFiles, invalid } from "../render";

/** `app.kubernetes.io/name` of the backup's and the restore's pods (CouchDB admits them). */
export const BACKUP_APPS = { backup: "mail-backup", restore: "mail-restore" } as const;

/** Nightly, before the spam training (03:30) so the two jobs on Dovecot's node do not overlap. */
export const DEFAULT_BACKUP_SCHEDULE = "0 2 * * *";

/** restic's retention: what `restic forget --prune` keeps after each backup. */
export const BACKUP_KEEP = "--keep-daily 7 --keep-weekly 5 --keep-monthly 12";

/** Where the jobs build (backup) and fetch (restore) the tree restic stores; images/backup/backup-lib.sh reads the same. */
export const BACKUP_PATHS = { stage: "/backup/stage", restore: "/backup/restore", config: "/etc/mail/backup", cache: "/tmp/restic-cache" } as const;

/**
 * Dovecot for the backup and restore jobs: the live mail layout (same homes, driver and mailbox names), a static
 * userdb (doveadm needs an auth process to look users up, and the jobs find users by their homes), no protocols, and
 * every runtime path in the job's /tmp. It runs as the mail's owner, so no privilege is needed.
 */
export function renderBackupDovecot(s: Pick<DovecotSettings, "mailRoot" | "mailDriver">): RenderedFiles {
    const conf = [
        "# Rendered by the mail program for the backup jobs; Dovecot 2.4 syntax. Auth only, for doveadm.",
        "dovecot_config_version = 2.4.1",
        "dovecot_storage_version = 2.4.1",
        "protocols =",
        "log_path = /dev/stderr",
        "base_dir = /tmp/dovecot",
        "state_dir = /tmp/dovecot-state",
        "default_internal_user = vmail",
        "default_internal_group = vmail",
        "default_login_user = vmail",
        "mail_uid = vmail",
        "mail_gid = vmail",
        "passdb static {",
        "  password = {CRYPT}*",
        "}",
        "userdb static {",
        "}",
        // The live server's layout (components/dovecot/config.ts): homes, driver, mail path, one namespace.
        ...mailLayout(s),
        "namespace inbox {",
        "  inbox = yes",
        "  separator = /",
        "}",
        "",
    ];
    return { "dovecot.conf": conf.join("\n") };
}

/**
 * restic's repository locations (https://restic.readthedocs.io/en/latest/030_preparing_a_new_repo.html) and the TCP
 * port the job must reach for each: a local path needs none (a volume), the cloud backends speak HTTPS.
 */
export type RepositoryLocation = { kind: "local"; path: string } | { kind: "remote"; scheme: string; ports: number[] };

const HTTPS_BACKENDS = ["b2", "azure", "gs", "swift"];

const REPOSITORY_ALLOWED =
    "a restic repository: /absolute/path (a volume), s3:https://host/bucket[/path], s3:host/bucket, rest:http(s)://host[:port]/path, sftp://user@host[:port]//path, b2:bucket:path, azure:container:/path, gs:bucket:/path or swift:container:/path";

/** The config reader's rule for `backupRepository`: undefined when repositoryLocation accepts it, else what is allowed. */
export function repositoryProblem(repository: string): string | undefined {
    try {
        repositoryLocation(repository);
        return undefined;
    } catch {
        return `expected ${REPOSITORY_ALLOWED}`;
    }
}

export function repositoryLocation(repository: string): RepositoryLocation {
    const field = "backupRepository";
    const allowed = REPOSITORY_ALLOWED;
    if (typeof repository !== "string" || repository === "") return invalid(field, allowed, repository);
    if (repository.startsWith("/")) {
        if (repository.split("/").includes("..")) return invalid(field, allowed, repository);
        return { kind: "local", path: repository.replace(/\/+$/, "") || "/" };
    }
    const colon = repository.indexOf(":");
    const scheme = colon > 0 ? repository.slice(0, colon) : "";
    const rest = repository.slice(colon + 1);
    const urlPort = (text: string, defaultPort: number): number => {
        let url: URL;
        try {
            url = new URL(text);
        } catch {
            return invalid(field, allowed, repository);
        }
        return url.port ? Number(url.port) : defaultPort;
    };
    switch (scheme) {
        case "s3":
            // s3:https://host/bucket, s3:http://host:9000/bucket, or s3:host/bucket (HTTPS).
            if (/^https?:\/\//.test(rest)) return { kind: "remote", scheme, ports: [urlPort(rest, rest.startsWith("https:") ? 443 : 80)] };
            if (/^[a-z0-9.-]+(:\d+)?\/[^/]/i.test(rest)) return { kind: "remote", scheme, ports: [urlPort(`https://${rest}`, 443)] };
            return invalid(field, allowed, repository);
        case "rest":
            if (!/^https?:\/\//.test(rest)) return invalid(field, allowed, repository);
            return { kind: "remote", scheme, ports: [urlPort(rest, rest.startsWith("https:") ? 443 : 80)] };
        case "sftp":
            if (rest.startsWith("//")) return { kind: "remote", scheme, ports: [urlPort(`ssh:${rest}`, 22)] };
            if (/^[^/:]+:./.test(rest)) return { kind: "remote", scheme, ports: [22] };
            return invalid(field, allowed, repository);
        default:
            if (HTTPS_BACKENDS.includes(scheme) && rest.length > 0) return { kind: "remote", scheme, ports: [443] };
            return invalid(field, allowed, repository);
    }
}

/**
 * The environment variables restic's backends read their credentials from
 * (https://restic.readthedocs.io/en/latest/030_preparing_a_new_repo.html, …/075_scripting.html).
 */
export const RESTIC_CREDENTIAL_VARIABLES = [
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
    "AWS_DEFAULT_REGION",
    "RESTIC_REST_USERNAME",
    "RESTIC_REST_PASSWORD",
    "B2_ACCOUNT_ID",
    "B2_ACCOUNT_KEY",
    "AZURE_ACCOUNT_NAME",
    "AZURE_ACCOUNT_KEY",
    "AZURE_ACCOUNT_SAS",
    "AZURE_ENDPOINT_SUFFIX",
    "GOOGLE_PROJECT_ID",
    "GOOGLE_ACCESS_TOKEN",
    "OS_AUTH_URL",
    "OS_REGION_NAME",
    "OS_USERNAME",
    "OS_PASSWORD",
    "OS_TENANT_ID",
    "OS_TENANT_NAME",
    "OS_PROJECT_NAME",
    "OS_USER_DOMAIN_NAME",
    "OS_PROJECT_DOMAIN_NAME",
    "OS_APPLICATION_CREDENTIAL_ID",
    "OS_APPLICATION_CREDENTIAL_SECRET",
    "OS_STORAGE_URL",
    "OS_AUTH_TOKEN",
] as const;

/**
 * `backupCredentials`: one `NAME=value` per line (blank lines and `#` comments skipped), each NAME one of restic's
 * credential variables. Returns them as the job's environment.
 */
export function parseBackupCredentials(text: string): Record<string, string> {
    const field = "backupCredentials";
    const allowed = `NAME=value lines with NAME one of ${RESTIC_CREDENTIAL_VARIABLES.join(", ")}`;
    const env: Record<string, string> = {};
    text.split(/\r?\n/).forEach((raw, i) => {
        const line = raw.trim();
        if (line === "" || line.startsWith("#")) return;
        const eq = line.indexOf("=");
        const name = eq > 0 ? line.slice(0, eq).trim() : "";
        if (!(RESTIC_CREDENTIAL_VARIABLES as readonly string[]).includes(name)) {
            // The value is secret: only the name is repeated.
            invalid(`${field} line ${i + 1}`, allowed, eq > 0 ? name : "(no NAME=)");
        }
        if (name in env) invalid(`${field} line ${i + 1}`, `each NAME once`, name);
        env[name] = line.slice(eq + 1);
    });
    return env;
}
