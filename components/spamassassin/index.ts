import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, BUDGET, configVolumes, execProbe, networkPolicy, Labels, KEEP_CLAIM_TEMPLATES, persistentClaim, resizeClaim, renderedConfigMap, restrictedContainer } from "../kube";
import { renderSpamAssassin, SPAMD_PORT, SpamAssassinSettings, spamdArgs } from "./config";

/** spamd's user in the image (owner of the Bayes/preferences volume). */
export const SPAMD_UID = 5001;

export interface SpamAssassinArgs {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    settings: SpamAssassinSettings;
    storageSize: string;
    storageClassName?: string;
    overrideConfigMap?: string;
    /** `app.kubernetes.io/name` of the pods that scan and learn through spamd (Dovecot). */
    clientApps: string[];
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
    readonly port = SPAMD_PORT;

    constructor(name: string, args: SpamAssassinArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:SpamAssassin", name, {}, opts);
        const { labels, selector } = appLabels("spamassassin", "spam-filter");
        const train = appLabels("spam-train", "spam-training");
        const files = renderSpamAssassin(args.settings);
        const { configMap } = renderedConfigMap(`spamassassin-config`, { namespace: args.namespace, labels, files }, { parent: this });
        const config = configVolumes("spamassassin", configMap, args.overrideConfigMap);

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { name: "spamassassin", namespace: args.namespace, labels },
            spec: { selector, ports: [{ name: "spamd", port: SPAMD_PORT, targetPort: "spamd", protocol: "TCP" }] },
        }, { parent: this });

        // Network rules (RBLs, URIBLs) are DNS lookups.
        networkPolicy("spamassassin", {
            namespace: args.namespace, labels, selector,
            ingress: [{ ports: [SPAMD_PORT], peers: [{ apps: [...args.clientApps, train.selector["app.kubernetes.io/name"]] }] }],
            egress: [],
        }, { parent: this });
        networkPolicy("spam-train", {
            namespace: args.namespace, labels: train.labels, selector: train.selector,
            ingress: [], egress: [{ ports: [SPAMD_PORT], peers: [{ apps: ["spamassassin"] }] }],
        }, { parent: this });

        // spamc's PING: the master answers only once the rules are loaded.
        const ping = ["spamc", "-d", "127.0.0.1", "-p", String(SPAMD_PORT), "-K"];
        const statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { name: "spamassassin", namespace: args.namespace, labels },
            spec: {
                // A plain name, not the Service's output: that output resolves only once the Service has ready
                // endpoints, which need this StatefulSet's pods — the engine would wait forever.
                serviceName: "spamassassin",
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: { labels },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        securityContext: { fsGroup: SPAMD_UID, fsGroupChangePolicy: "OnRootMismatch", seccompProfile: { type: "RuntimeDefault" } },
                        containers: [{
                            name: "spamd",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            args: spamdArgs(args.settings),
                            ports: [{ name: "spamd", containerPort: SPAMD_PORT, protocol: "TCP" }],
                            resources: BUDGET.spamd,
                            securityContext: restrictedContainer(SPAMD_UID),
                            volumeMounts: [
                                ...config.mounts,
                                { name: "data", mountPath: args.settings.dataDir },
                                { name: "run", mountPath: "/run/mail" },
                                { name: "tmp", mountPath: "/tmp" },
                            ],
                            startupProbe: { ...execProbe(ping, 2), failureThreshold: 60 },
                            readinessProbe: execProbe(ping, 10),
                            livenessProbe: execProbe(ping, 30),
                        }],
                        volumes: [
                            ...config.volumes,
                            { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                            // The config watcher lints candidates in a copy of the site config here.
                            { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
                        ],
                    },
                },
                volumeClaimTemplates: [persistentClaim("data", labels, args.storageSize, args.storageClassName)],
            },
        }, { parent: this, ...KEEP_CLAIM_TEMPLATES });
        resizeClaim(`${name}-data-size`, { namespace: args.namespace, labels, statefulSet, statefulSetName: "spamassassin", claim: "data", size: args.storageSize }, { parent: this });

        const t = args.training;
        new k8s.batch.v1.CronJob(`${name}-train`, {
            metadata: { name: "spam-train", namespace: args.namespace, labels: train.labels },
            spec: {
                schedule: t.schedule,
                concurrencyPolicy: "Forbid",
                successfulJobsHistoryLimit: 3,
                failedJobsHistoryLimit: 3,
                jobTemplate: {
                    metadata: { labels: train.labels },
                    spec: {
                        backoffLimit: 1,
                        activeDeadlineSeconds: 3600,
                        template: {
                            metadata: { labels: train.labels },
                            spec: {
                                restartPolicy: "Never",
                                automountServiceAccountToken: false,
                                enableServiceLinks: false,
                                // No fsGroup: the job runs as the mail's owner, and a recursive chown of the mail volume is costly.
                                securityContext: { seccompProfile: { type: "RuntimeDefault" } },
                                affinity: {
                                    podAffinity: {
                                        requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: t.mailPodSelector }, topologyKey: "kubernetes.io/hostname" }],
                                    },
                                },
                                containers: [{
                                    name: "spam-train",
                                    image: args.image,
                                    imagePullPolicy: args.imagePullPolicy,
                                    command: ["/usr/local/bin/spam-train"],
                                    env: [
                                        { name: "SPAMD_HOST", value: service.metadata.name },
                                        { name: "SPAMD_PORT", value: String(SPAMD_PORT) },
                                        { name: "MAIL_ROOT", value: t.mailRoot },
                                    ],
                                    resources: BUDGET.spamTrain,
                                    securityContext: restrictedContainer(t.mailUid),
                                    // Writable only for the per-user .spam-train state files.
                                    volumeMounts: [{ name: "mail", mountPath: t.mailRoot }],
                                }],
                                volumes: [{ name: "mail", persistentVolumeClaim: { claimName: t.mailClaimName } }],
                            },
                        },
                    },
                },
            },
        }, { parent: this });

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
