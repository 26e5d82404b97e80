import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { DOVECOT_LISTENERS } from "../dovecot/config";
import { POSTFIX_LISTENERS } from "../postfix/config";
import { DaemonArgs, daemonConfig, mailWorkload, onNodeOf, Peer, TrafficRule } from "../kube";
import { renderWebmail, WEBMAIL_HEALTH_PATH, WEBMAIL_LISTENERS, WEBMAIL_RUN_DIR, WebmailSettings } from "./config";

/** The webmail user in the image: runs nginx and PHP-FPM, owns the SQLite volume. */
export const WEBMAIL_UID = 5010;

/**
 * Measured in tests/webmail/webmail.int.test.ts (PSS of nginx, PHP-FPM and the entrypoint): ~34 MiB idle, 42–49 MiB
 * after a login and a message read (two PHP workers); each further busy worker may grow to its 128M memory_limit.
 */
export const WEBMAIL_BUDGET = { requests: { cpu: "20m", memory: "64Mi" }, limits: { memory: "256Mi" } };

export interface WebmailArgs extends DaemonArgs<WebmailSettings> {
    /** The stack certificate's Secret (tls.crt, tls.key): nginx serves it; with a self-signed one it is also the trust anchor. */
    tlsSecretName: pulumi.Input<string>;
    /** The SQLite database (preferences, contacts, sessions): small. */
    storageSize: string;
    storageClassName?: string;
    /** Who may connect to the PROXY twins (the edge); omitted: no twins. */
    proxySources?: Peer[];
    /** Bind the public ports (80, 443) on the node too (the hostport edge). */
    hostPorts?: boolean;
    /** Extra egress, e.g. couchmail's password endpoint in Dovecot's pod when passwordApi is set. */
    extraEgress?: TrafficRule[];
    /** Schedule beside pods with these labels (an edge whose load balancer only reaches local pods). */
    colocateWith?: Record<string, string>;
}

/** The only connections the webmail pod opens: IMAP and ManageSieve at Dovecot, submission at Postfix. */
export function webmailEgress(extra: TrafficRule[] = []): TrafficRule[] {
    return [
        { ports: [DOVECOT_LISTENERS.imaps.port, DOVECOT_LISTENERS.sieve.port], peers: [{ apps: ["dovecot"] }] },
        { ports: [POSTFIX_LISTENERS.submissions.port], peers: [{ apps: ["postfix"] }] },
        ...extra,
    ];
}

/**
 * Temp space: each busy worker may hold an upload being received (nginx's buffer and PHP's copy) and the composed
 * message; an emptyDir over its sizeLimit gets the pod evicted, so legitimate use must never reach it.
 */
export function webmailTmpSize(messageSizeLimit: number, maxWorkers: number): string {
    return `${Math.ceil((3 * messageSizeLimit * maxWorkers) / (1024 * 1024)) + 32}Mi`;
}

const httpProbe = (periodSeconds: number): k8s.types.input.core.v1.Probe => ({
    httpGet: { path: WEBMAIL_HEALTH_PATH, port: WEBMAIL_LISTENERS.http.name },
    periodSeconds,
    timeoutSeconds: 3,
    failureThreshold: 3,
});

/**
 * Roundcube webmail: nginx (HTTPS with the stack certificate, HTTP only redirecting) in front of PHP-FPM, as an
 * unprivileged user on a read-only root. A client like any other: it logs in to Dovecot and sends through Postfix's
 * submissions port with the user's own credentials, over TLS verified against the mail host name.
 */
export class Webmail extends pulumi.ComponentResource {
    readonly serviceName: pulumi.Output<string>;

    constructor(name: string, args: WebmailArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Webmail", name, {}, opts);
        const config = daemonConfig(name, { app: "webmail", component: "webmail", files: renderWebmail(args.settings) }, args, { parent: this });

        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "webmail",
                component: "webmail",
                listeners: Object.values(WEBMAIL_LISTENERS),
                proxySources: args.settings.proxyProtocol ? args.proxySources : undefined,
                hostPorts: args.hostPorts,
                egress: webmailEgress(args.extraEgress),
                claim: { name: "data", size: args.storageSize, storageClassName: args.storageClassName },
                user: WEBMAIL_UID,
                pod: {
                    terminationGracePeriodSeconds: 20,
                    affinity: args.colocateWith && onNodeOf(args.colocateWith),
                    containers: [
                        {
                            name: "webmail",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            resources: WEBMAIL_BUDGET,
                            volumeMounts: [
                                ...config.mounts,
                                { name: "tls", mountPath: "/etc/mail/tls", readOnly: true },
                                { name: "data", mountPath: args.settings.dataDir },
                                { name: "run", mountPath: WEBMAIL_RUN_DIR },
                                { name: "run-mail", mountPath: "/run/mail" },
                                { name: "tmp", mountPath: "/tmp" },
                            ],
                            startupProbe: { ...httpProbe(2), failureThreshold: 30 },
                            readinessProbe: httpProbe(10),
                            livenessProbe: httpProbe(20),
                        },
                    ],
                    volumes: [
                        ...config.volumes,
                        // fsGroup makes the key 0440 root:webmail: readable by nginx, which runs as webmail.
                        { name: "tls", secret: { secretName: args.tlsSecretName, defaultMode: 0o400 } },
                        { name: "run", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                        { name: "run-mail", emptyDir: { medium: "Memory", sizeLimit: "8Mi" } },
                        { name: "tmp", emptyDir: { sizeLimit: webmailTmpSize(args.settings.messageSizeLimit, args.settings.maxWorkers) } },
                    ],
                },
            },
            { parent: this },
        );

        this.serviceName = service.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName });
    }
}
