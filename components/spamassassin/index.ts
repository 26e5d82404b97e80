import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import {
    appLabels,
    BUDGET,
    DaemonArgs,
    daemonConfig,
    execProbe,
    jobPod,
    Labels,
    mailWorkload,
    networkPolicy,
    onNodeOf,
    restrictedContainer,
    scheduledJob,
} from "../kube";
import { renderSpamAssassin, SPAMD_LISTENERS, SpamAssassinSettings, spamdArgs } from "./config";

/** spamd's user in the image (owner of the Bayes/preferences volume). */
export const SPAMD_UID = 5001;

export interface SpamAssassinArgs extends DaemonArgs<SpamAssassinSettings> {
    storageSize: string;
    storageClassName?: string;
    /** The nightly training: cron schedule, and where and how it finds the mail. */
    training: {
        schedule: string;
        /** The mail volume's claim (Dovecot's StatefulSet PVC), mounted by the job on the same node. */
        mailClaimName: string;
        mailRoot: string;
        mailUid: number;
        /** Labels of the pod that has the mail volume attached: the job must run on its node (ReadWriteOnce). */
        mailPodSelector: Labels;
    };
}

/**
 * SpamAssassin's spamd, scoring for Dovecot: each delivery is scored at LMTP time with the recipient's user name
 * (Dovecot's spam.sieve → spam-scan → `spamc -u <user>`), so every user has their own Bayes database and preferences,
 * kept under <dataDir>/users/<user> on a persistent volume. spamd accepts connections only from the cluster's pod
 * networks (its --allowed-ips) and, where the CNI enforces NetworkPolicies, only from Dovecot and the training job;
 * only those may teach it (--allow-tell). Its children are bounded (maxChildren): memory is in kube.ts's BUDGET.
 *
 * Training: Dovecot's imapsieve teaches a move into Junk as spam and out of Junk as ham at once; a nightly CronJob
 * (`spam-train` in this image) teaches read INBOX mail as ham and Junk as spam, changed since its last run. The job
 * reads the Maildirs directly: it mounts Dovecot's ReadWriteOnce mail volume, so it is scheduled onto Dovecot's node
 * (pod affinity) — no doveadm or userdb needed, and the mail volume is never attached to a second node.
 */
export class SpamAssassin extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;
    readonly port = SPAMD_LISTENERS.spamd.port;

    constructor(name: string, args: SpamAssassinArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:SpamAssassin", name, {}, opts);
        const train = appLabels("spam-train", "spam-training");
        const config = daemonConfig(name, { app: "spamassassin", component: "spam-filter", files: renderSpamAssassin(args.settings) }, args, { parent: this });

        // spamc's PING: the master answers only once the rules are loaded.
        const ping = ["spamc", "-d", "127.0.0.1", "-p", String(SPAMD_LISTENERS.spamd.port), "-K"];
        // Network rules (RBLs, URIBLs) are DNS lookups.
        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "spamassassin",
                component: "spam-filter",
                listeners: Object.values(SPAMD_LISTENERS),
                egress: [],
                claim: { name: "data", size: args.storageSize, storageClassName: args.storageClassName },
                user: SPAMD_UID,
                pod: {
                    containers: [
                        {
                            name: "spamd",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            args: spamdArgs(args.settings),
                            resources: BUDGET.spamd,
                            volumeMounts: [
                                ...config.mounts,
                                { name: "data", mountPath: args.settings.dataDir },
                                { name: "run", mountPath: "/run/mail" },
                                { name: "tmp", mountPath: "/tmp" },
                            ],
                            startupProbe: { ...execProbe(ping, 2), failureThreshold: 60 },
                            readinessProbe: execProbe(ping, 10),
                            livenessProbe: execProbe(ping, 30),
                        },
                    ],
                    volumes: [
                        ...config.volumes,
                        { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                        // The config watcher lints candidates in a copy of the site config here.
                        { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
                    ],
                },
            },
            { parent: this },
        );
        networkPolicy(
            `${name}-train-network-policy`,
            {
                namespace: args.namespace,
                labels: train.labels,
                selector: train.selector,
                ingress: [],
                egress: [{ ports: [SPAMD_LISTENERS.spamd.port], peers: [{ apps: ["spamassassin"] }] }],
            },
            { parent: this },
        );

        const t = args.training;
        new k8s.batch.v1.CronJob(
            `${name}-train`,
            {
                metadata: { name: "spam-train", namespace: args.namespace, labels: train.labels },
                spec: scheduledJob(t.schedule, {
                    metadata: { labels: train.labels },
                    spec: {
                        backoffLimit: 1,
                        activeDeadlineSeconds: 3600,
                        template: {
                            metadata: { labels: train.labels },
                            spec: jobPod({
                                // No fsGroup: the job runs as the mail's owner, and a recursive chown of the mail volume is costly.
                                affinity: onNodeOf(t.mailPodSelector),
                                containers: [
                                    {
                                        name: "spam-train",
                                        image: args.image,
                                        imagePullPolicy: args.imagePullPolicy,
                                        command: ["/usr/local/bin/spam-train"],
                                        env: [
                                            { name: "SPAMD_HOST", value: service.metadata.name },
                                            { name: "SPAMD_PORT", value: String(SPAMD_LISTENERS.spamd.port) },
                                            { name: "MAIL_ROOT", value: t.mailRoot },
                                        ],
                                        resources: BUDGET.spamTrain,
                                        securityContext: restrictedContainer(t.mailUid),
                                        // Writable only for the per-user .spam-train state files.
                                        volumeMounts: [{ name: "mail", mountPath: t.mailRoot }],
                                    },
                                ],
                                volumes: [{ name: "mail", persistentVolumeClaim: { claimName: t.mailClaimName } }],
                            }),
                        },
                    },
                }),
            },
            { parent: this },
        );

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
