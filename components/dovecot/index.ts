import * as pulumi from "@pulumi/pulumi";
import { COUCHMAIL, Couchmail } from "../couchmail";
import {
    appLabels,
    BUDGET,
    DaemonArgs,
    daemonConfig,
    MAIL_MASTER_CAPABILITIES,
    mailWorkload,
    MetricsPort,
    onNodeOf,
    Peer,
    rootDroppingContainer,
    tcpProbe,
    TrafficRule,
} from "../kube";
import { SCRAPE_TARGETS } from "../monitoring/metrics";
import { DOVECOT_LISTENERS, DovecotSettings, renderDovecot, VMAIL_UID } from "./config";

export interface DovecotArgs extends DaemonArgs<DovecotSettings> {
    couchmail: Couchmail;
    tlsSecretName: pulumi.Input<string>;
    mailSize: string;
    storageClassName?: string;
    /** Bind the plain IMAP/ManageSieve ports on the node too (the hostport edge). */
    hostPorts?: boolean;
    /** Schedule beside pods with these labels (an edge whose load balancer only reaches local pods). */
    colocateWith?: Record<string, string>;
    /** Who may connect to the PROXY-only ports: only the edge (a forged header would choose the client address). */
    proxySources: Peer[];
    /** What Dovecot's pod talks to besides DNS (couchmail's CouchDB, spamd). */
    egress: TrafficRule[];
    /** The largest message Postfix accepts and how many it delivers at once: Dovecot's temp space holds them. */
    delivery: { messageSizeLimit: number; concurrency: number };
    /** Who scrapes the metrics of Dovecot (settings.metricsPort) and its couchmail; omitted: no metrics. */
    metricsScrapers?: Peer[];
    /** couchmail beside Dovecot serves the webmail's password change (COUCHMAIL_PASSWORD_LISTENER). */
    passwordChange?: boolean;
}

/**
 * Temp space for deliveries in flight: LMTP spools a large message to /tmp and spam-scan keeps one copy for its
 * fallback, so each concurrent delivery may hold two copies of the largest message; plus room for everything else.
 * An emptyDir over its sizeLimit gets the pod evicted, so this bound must not be reachable by legitimate mail.
 */
export function dovecotTmpSize(delivery: { messageSizeLimit: number; concurrency: number }): string {
    const mib = 1024 * 1024;
    return `${Math.ceil((2 * delivery.messageSizeLimit * delivery.concurrency) / mib) + 64}Mi`;
}

/**
 * Dovecot 2.4: IMAP (143 STARTTLS, 993), LMTP for Postfix, ManageSieve, and the SASL auth listener Postfix uses.
 * Users come from couchmail (Lua passdb/userdb over loopback HTTP; sieve scripts over the dict socket); mail is on
 * a persistent volume owned by the unprivileged `vmail` user.
 */
export class Dovecot extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;
    readonly configMapName: pulumi.Output<string>;
    readonly settings: DovecotSettings;
    /** The mail volume's PVC (claim template "mail" of StatefulSet "dovecot", pod 0), for the spam training job. */
    readonly mailClaimName = "mail-dovecot-0";
    /** Labels of Dovecot's pod, for workloads that must run on its node. */
    readonly podSelector = appLabels("dovecot", "imap").selector;

    constructor(name: string, args: DovecotArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Dovecot", name, {}, opts);
        this.settings = args.settings;
        const config = daemonConfig(name, { app: "dovecot", component: "imap", files: renderDovecot(args.settings) }, args, { parent: this });
        // Mail processes run as vmail and open the dict socket, so the socket belongs to vmail's group.
        const scrapers = args.metricsScrapers;
        if ((scrapers === undefined) !== (args.settings.metricsPort === undefined))
            throw new Error("Dovecot: settings.metricsPort and metricsScrapers go together");
        const couchmail = args.couchmail.sidecar({
            dovecot: true,
            socketGroup: VMAIL_UID,
            metrics: scrapers !== undefined,
            passwordChange: args.passwordChange ? { tlsSecretName: args.tlsSecretName } : undefined,
        });
        const metricsPorts: MetricsPort[] =
            args.settings.metricsPort === undefined
                ? []
                : [{ container: "dovecot", name: SCRAPE_TARGETS.dovecot.port.name, port: args.settings.metricsPort }, ...couchmail.metricsPorts];

        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "dovecot",
                component: "imap",
                listeners: [...Object.values(DOVECOT_LISTENERS), ...couchmail.listeners],
                proxySources: args.settings.proxyProtocol ? args.proxySources : undefined,
                hostPorts: args.hostPorts,
                egress: args.egress,
                metrics: scrapers && { ports: metricsPorts, scrapers },
                claim: { name: "mail", size: args.mailSize, storageClassName: args.storageClassName },
                pod: {
                    terminationGracePeriodSeconds: 30,
                    // No fsGroup: the kubelet would make every Secret group-readable by it (the TLS key 0440 root:vmail),
                    // and mail processes run as vmail. The entrypoint gives the mail volume's top to vmail instead,
                    // which also spares a recursive chown of every mailbox at each start.
                    affinity: args.colocateWith && onNodeOf(args.colocateWith),
                    initContainers: [couchmail.container],
                    containers: [
                        {
                            name: "dovecot",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            resources: BUDGET.dovecot,
                            // Dovecot's master starts as root, then runs logins as dovenull and mail as vmail.
                            securityContext: rootDroppingContainer(MAIL_MASTER_CAPABILITIES),
                            volumeMounts: [
                                ...config.mounts,
                                { name: "tls", mountPath: "/etc/mail/tls", readOnly: true },
                                { name: "mail", mountPath: args.settings.mailRoot },
                                { name: "couchmail-lua", mountPath: COUCHMAIL.luaMountDir, readOnly: true },
                                { name: "couchmail-run", mountPath: COUCHMAIL.socketDir },
                                { name: "run", mountPath: "/run/dovecot" },
                                { name: "run-mail", mountPath: "/run/mail" },
                                { name: "state", mountPath: "/run/dovecot-state" },
                                { name: "tmp", mountPath: "/tmp" },
                            ],
                            startupProbe: { ...tcpProbe(DOVECOT_LISTENERS.lmtp.port, 2), failureThreshold: 30 },
                            readinessProbe: tcpProbe(DOVECOT_LISTENERS.lmtp.port, 0),
                            livenessProbe: tcpProbe(DOVECOT_LISTENERS.imap.port, 10),
                        },
                    ],
                    volumes: [
                        ...config.volumes,
                        ...couchmail.volumes,
                        { name: "couchmail-lua", configMap: { name: args.couchmail.luaConfigMapName } },
                        { name: "tls", secret: { secretName: args.tlsSecretName, defaultMode: 0o400 } },
                        { name: "run", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } },
                        { name: "run-mail", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } },
                        { name: "state", emptyDir: {} },
                        { name: "tmp", emptyDir: { sizeLimit: dovecotTmpSize(args.delivery) } },
                    ],
                },
            },
            { parent: this },
        );

        this.serviceName = service.metadata.name;
        this.configMapName = config.configMap.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName, configMapName: this.configMapName });
    }
}
