import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { Couchmail } from "../couchmail";
import {
    appLabels,
    BUDGET,
    DaemonArgs,
    daemonConfig,
    execProbe,
    mailWorkload,
    MetricsPort,
    tcpProbe,
    Peer,
    rootDroppingContainer,
    TrafficRule,
    MAIL_MASTER_CAPABILITIES,
} from "../kube";
import { POSTFIX_LISTENERS, PostfixSettings, renderPostfix } from "./config";
import { POSTFIX_EXPORTER_LISTENER, postfixExporterSidecar } from "./exporter";

export interface PostfixArgs extends DaemonArgs<PostfixSettings> {
    couchmail: Couchmail;
    /** `kubernetes.io/tls` Secret with the mail host's certificate. */
    tlsSecretName: pulumi.Input<string>;
    queueSize: string;
    storageClassName?: string;
    /** SASL credentials for settings.relay: a Secret mounted where settings.relay.passwordMapFile points. */
    relayCredentials?: { username: string; password: pulumi.Input<string> };
    /** Bind the plain mail ports on the node too (the hostport edge). */
    hostPorts?: boolean;
    /** Who may connect to the PROXY-only ports: only the edge (a forged header would choose the client address). */
    proxySources: Peer[];
    /** What Postfix's pod talks to besides DNS and other mail servers (Dovecot, OpenDKIM, Postgrey, CouchDB). */
    egress: TrafficRule[];
    /** Who scrapes the metrics of Postfix (its exporter) and its couchmail; omitted: no metrics. */
    metricsScrapers?: Peer[];
    /** The Postfix exporter's image, with metricsScrapers; settings.logToFile feeds it Postfix's log. */
    exporter?: { image: string; imagePullPolicy: string };
}

/** Outbound mail: other servers' port 25, or a smarthost's submission port. */
const SMTP_OUT: TrafficRule = { ports: [25, 465, 587] };

/**
 * Postfix: postscreen on 25, submission on 587 (STARTTLS before AUTH) and 465 (implicit TLS), delivery over LMTP to
 * Dovecot. Its queue is on a persistent volume, so a restarted or rescheduled pod loses nothing; on SIGTERM the
 * entrypoint runs `postfix stop`, and the grace period lets in-flight deliveries finish.
 */
export class Postfix extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;
    readonly configMapName: pulumi.Output<string>;

    constructor(name: string, args: PostfixArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Postfix", name, {}, opts);
        const config = daemonConfig(name, { app: "postfix", component: "mta", files: renderPostfix(args.settings) }, args, { parent: this });
        const { labels } = appLabels("postfix", "mta");
        const scrapers = args.metricsScrapers;
        if ((scrapers === undefined) !== (args.exporter === undefined) || (args.exporter !== undefined) !== !!args.settings.logToFile) {
            throw new Error("Postfix: metricsScrapers, exporter and settings.logToFile go together");
        }
        const couchmail = args.couchmail.sidecar({ socketmap: true, metrics: scrapers !== undefined });
        const exporter = args.exporter && postfixExporterSidecar({ ...args.exporter, queueVolume: "queue", queueDirectory: args.settings.queueDirectory });
        const exporterPorts: MetricsPort[] = exporter
            ? [{ container: "postfix-exporter", name: POSTFIX_EXPORTER_LISTENER.name, port: POSTFIX_EXPORTER_LISTENER.port }]
            : [];

        const relay = args.settings.relay;
        if (!relay !== !args.relayCredentials) throw new Error("Postfix: settings.relay and relayCredentials go together");
        const relaySecret =
            relay &&
            args.relayCredentials &&
            new k8s.core.v1.Secret(
                `${name}-relay`,
                {
                    metadata: { name: "postfix-relay", namespace: args.namespace, labels },
                    // texthash(5): "[host]:port user:password", the key exactly as relayhost names the smarthost.
                    stringData: {
                        [path.posix.basename(relay.passwordMapFile)]:
                            pulumi.interpolate`[${relay.host}]:${relay.port} ${args.relayCredentials.username}:${args.relayCredentials.password}\n`,
                    },
                },
                { parent: this, additionalSecretOutputs: ["stringData", "data"] },
            );
        const relayDir = relay && path.posix.dirname(relay.passwordMapFile);

        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "postfix",
                component: "mta",
                listeners: Object.values(POSTFIX_LISTENERS),
                proxySources: args.settings.proxyProtocol ? args.proxySources : undefined,
                hostPorts: args.hostPorts,
                egress: [SMTP_OUT, ...args.egress],
                metrics: scrapers && { ports: [...exporterPorts, ...couchmail.metricsPorts], scrapers },
                claim: { name: "queue", size: args.queueSize, storageClassName: args.storageClassName },
                pod: {
                    // Long enough for `postfix stop` to let running deliveries finish.
                    terminationGracePeriodSeconds: 60,
                    initContainers: [couchmail.container],
                    containers: [
                        {
                            name: "postfix",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            // A changed relay password reloads Postfix like a renewed certificate does.
                            env: relayDir ? [{ name: "EXTRA_WATCH", value: `/etc/mail/tls ${relayDir}` }] : [],
                            resources: BUDGET.postfix,
                            // Postfix's master starts as root and runs every service as `postfix` in a chroot.
                            securityContext: rootDroppingContainer(MAIL_MASTER_CAPABILITIES),
                            volumeMounts: [
                                ...config.mounts,
                                { name: "tls", mountPath: "/etc/mail/tls", readOnly: true },
                                ...(relayDir ? [{ name: "relay", mountPath: relayDir, readOnly: true }] : []),
                                { name: "queue", mountPath: args.settings.queueDirectory },
                                { name: "state", mountPath: args.settings.dataDirectory },
                                { name: "run", mountPath: "/run/mail" },
                                { name: "tmp", mountPath: "/tmp" },
                                ...(exporter?.postfixMounts ?? []),
                            ],
                            // `postfix status` asks the master itself and leaves no connection noise in the log.
                            startupProbe: { ...execProbe(["postfix", "status"], 2), failureThreshold: 30 },
                            readinessProbe: execProbe(["postfix", "status"], 10),
                            livenessProbe: execProbe(["postfix", "status"], 30),
                        },
                        // Restarted when its metrics port stops answering; never in the pod's readiness (mail does not wait for metrics).
                        ...(exporter ? [{ ...exporter.container, livenessProbe: tcpProbe(POSTFIX_EXPORTER_LISTENER.port, 10) }] : []),
                    ],
                    volumes: [
                        ...config.volumes,
                        ...couchmail.volumes,
                        { name: "tls", secret: { secretName: args.tlsSecretName, defaultMode: 0o400 } },
                        // Postfix opens the map as root before dropping privileges.
                        ...(relaySecret ? [{ name: "relay", secret: { secretName: relaySecret.metadata.name, defaultMode: 0o400 } }] : []),
                        { name: "state", emptyDir: {} },
                        { name: "run", emptyDir: { medium: "Memory", sizeLimit: "16Mi" } },
                        { name: "tmp", emptyDir: { sizeLimit: "64Mi" } },
                        ...(exporter?.volumes ?? []),
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
