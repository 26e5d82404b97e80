import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, jobPod, Labels, networkPolicy, onNodeOf, renderedConfigMap, restrictedContainer, scheduledJob, TrafficRule } from "../kube";
import { BACKUP_APPS, BACKUP_KEEP, BACKUP_PATHS, renderBackupDovecot, repositoryLocation } from "./config";

export interface BackupArgs {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    /** Cron schedule of the backup (cluster time zone, usually UTC). */
    schedule: string;
    /** A restic repository (config.ts repositoryLocation); a local path is a volume of its own in the namespace. */
    repository: string;
    password: pulumi.Input<string>;
    /** restic's backend credentials as environment variables (config.ts parseBackupCredentials). */
    credentials: pulumi.Input<Record<string, string>>;
    storageClassName?: string;
    /** Dovecot's mail volume and how mail is laid out on it; the jobs run on its node (ReadWriteOnce) as its owner. */
    mail: {
        claimName: string;
        root: string;
        driver: "maildir" | "sdbox";
        uid: number;
        /** The largest the mail can be (the mail volume's size): the staging space and a local repository's size. */
        size: string;
        /** Labels of the pod that has the mail volume attached. */
        podSelector: Labels;
    };
    couchdb: { url: pulumi.Input<string>; adminSecretName: pulumi.Input<string>; database: string; port: number; app: string };
}

/** restic and doveadm: restic's index and a large pack in memory, doveadm one message at a time. */
export const BACKUP_RESOURCES = { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "512Mi" } } as const;

/**
 * Backups as code. A CronJob (`mail-backup`) copies every user's mail with doveadm (consistently, see
 * images/backup/mail-backup) and the CouchDB database to a staging emptyDir, then stores it with restic in the
 * repository, applies the retention policy and checks the repository. A suspended CronJob (`mail-restore`) is the
 * restore, started by hand as a Job (README "Backups and restore"): it fetches and verifies a snapshot before it
 * merges it into the live stack. Both run as the mail's owner under the restricted Pod Security profile, on the node
 * that has Dovecot's ReadWriteOnce mail volume (pod affinity), and may reach only CouchDB and the repository.
 */
export class Backup extends pulumi.ComponentResource {
    readonly cronJobName: pulumi.Output<string>;
    readonly restoreCronJobName: pulumi.Output<string>;

    constructor(name: string, args: BackupArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Backup", name, {}, opts);
        const child = { parent: this };
        const location = repositoryLocation(args.repository);
        const backup = appLabels(BACKUP_APPS.backup, "backup");
        const restore = appLabels(BACKUP_APPS.restore, "restore");

        const repositorySecret = new k8s.core.v1.Secret(
            `${name}-repository`,
            {
                metadata: { name: "backup-repository", namespace: args.namespace, labels: backup.labels },
                stringData: pulumi.all([args.password, args.credentials]).apply(([password, credentials]) => ({
                    ...credentials,
                    RESTIC_REPOSITORY: args.repository,
                    RESTIC_PASSWORD: password,
                })),
            },
            child,
        );
        const { configMap } = renderedConfigMap(
            name,
            {
                app: "backup",
                namespace: args.namespace,
                labels: backup.labels,
                files: renderBackupDovecot({ mailRoot: args.mail.root, mailDriver: args.mail.driver }),
            },
            child,
        );
        const localRepository =
            location.kind === "local" &&
            new k8s.core.v1.PersistentVolumeClaim(
                `${name}-local-repository`,
                {
                    metadata: { name: "backup-repository", namespace: args.namespace, labels: backup.labels },
                    spec: { accessModes: ["ReadWriteOnce"], storageClassName: args.storageClassName, resources: { requests: { storage: args.mail.size } } },
                },
                { parent: this, retainOnDelete: true },
            );

        const egress: TrafficRule[] = [
            { ports: [args.couchdb.port], peers: [{ apps: [args.couchdb.app] }] },
            ...(location.kind === "remote" ? [{ ports: location.ports }] : []),
        ];
        for (const job of [backup, restore]) {
            networkPolicy(
                `${name}-${job.selector["app.kubernetes.io/name"]}-network-policy`,
                { namespace: args.namespace, labels: job.labels, selector: job.selector, ingress: [], egress },
                child,
            );
        }

        const fromAdmin = (key: string) => ({ secretKeyRef: { name: args.couchdb.adminSecretName, key } });
        const jobTemplate = (labels: Labels, command: string, env: k8s.types.input.core.v1.EnvVar[], backoffLimit: number) => ({
            metadata: { labels },
            spec: {
                backoffLimit,
                activeDeadlineSeconds: 4 * 3600,
                template: {
                    metadata: { labels },
                    spec: jobPod({
                        // No fsGroup: the jobs run as the mail's owner, and a recursive chown of the mail volume is costly.
                        securityContext: { runAsNonRoot: true },
                        affinity: onNodeOf(args.mail.podSelector),
                        containers: [
                            {
                                name: labels["app.kubernetes.io/name"],
                                image: args.image,
                                imagePullPolicy: args.imagePullPolicy,
                                command: [command],
                                envFrom: [{ secretRef: { name: repositorySecret.metadata.name } }],
                                env: [
                                    { name: "BACKUP_DOVECOT_CONF", value: `${BACKUP_PATHS.config}/dovecot.conf` },
                                    { name: "MAIL_ROOT", value: args.mail.root },
                                    { name: "MAIL_DRIVER", value: args.mail.driver },
                                    { name: "MAIL_DIR", value: args.mail.driver === "maildir" ? "Maildir" : "mail" },
                                    { name: "COUCHDB_URL", value: args.couchdb.url },
                                    { name: "COUCHDB_DATABASE", value: args.couchdb.database },
                                    { name: "COUCHDB_USER", valueFrom: fromAdmin("username") },
                                    { name: "COUCHDB_PASSWORD", valueFrom: fromAdmin("password") },
                                    { name: "RESTIC_CACHE_DIR", value: BACKUP_PATHS.cache },
                                    ...env,
                                ],
                                resources: BACKUP_RESOURCES,
                                securityContext: restrictedContainer(args.mail.uid),
                                volumeMounts: [
                                    { name: "mail", mountPath: args.mail.root },
                                    { name: "config", mountPath: BACKUP_PATHS.config, readOnly: true },
                                    { name: "staging", mountPath: "/backup" },
                                    { name: "tmp", mountPath: "/tmp" },
                                    ...(location.kind === "local" ? [{ name: "repository", mountPath: location.path }] : []),
                                ],
                            },
                        ],
                        volumes: [
                            { name: "mail", persistentVolumeClaim: { claimName: args.mail.claimName } },
                            { name: "config", configMap: { name: configMap.metadata.name } },
                            // A copy of all mail at most (the mail volume's size).
                            { name: "staging", emptyDir: { sizeLimit: args.mail.size } },
                            // Dovecot's runtime files and restic's cache.
                            { name: "tmp", emptyDir: { sizeLimit: "1Gi" } },
                            ...(localRepository ? [{ name: "repository", persistentVolumeClaim: { claimName: localRepository.metadata.name } }] : []),
                        ],
                    }),
                },
            },
        });

        const backupJob = new k8s.batch.v1.CronJob(
            `${name}-cronjob`,
            {
                metadata: { name: "mail-backup", namespace: args.namespace, labels: backup.labels },
                spec: scheduledJob(args.schedule, jobTemplate(backup.labels, "/usr/local/bin/mail-backup", [{ name: "BACKUP_KEEP", value: BACKUP_KEEP }], 1)),
            },
            child,
        );
        // Never scheduled (suspended): `kubectl create job --from=cronjob/mail-restore` runs it; it restores
        // RESTORE_SNAPSHOT, or the snapshot id given as its argument. No retry: a failed restore is read, then rerun.
        const restoreJob = new k8s.batch.v1.CronJob(
            `${name}-restore`,
            {
                metadata: { name: "mail-restore", namespace: args.namespace, labels: restore.labels },
                spec: {
                    schedule: args.schedule,
                    suspend: true,
                    concurrencyPolicy: "Forbid",
                    jobTemplate: jobTemplate(restore.labels, "/usr/local/bin/mail-restore", [{ name: "RESTORE_SNAPSHOT", value: "latest" }], 0),
                },
            },
            child,
        );

        this.cronJobName = backupJob.metadata.name;
        this.restoreCronJobName = restoreJob.metadata.name;
        this.registerOutputs({ cronJobName: this.cronJobName, restoreCronJobName: this.restoreCronJobName });
    }
}
