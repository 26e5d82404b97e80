import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { COUCHMAIL, Couchmail } from "../couchmail";
import { appLabels, BUDGET, configVolumes, networkPolicy, Peer, KEEP_CLAIM_TEMPLATES, persistentClaim, resizeClaim, renderedConfigMap, rootDroppingContainer, TrafficRule, tcpProbe } from "../kube";
import { DOVECOT_PORTS, DovecotSettings, renderDovecot, VMAIL_UID } from "./config";

export interface DovecotArgs {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    /** couchmail endpoints (Lua file, URL, dict socket) are filled in from the sidecar's fixed locations. */
    settings: Omit<DovecotSettings, "luaFile" | "couchmailUrl" | "dictSocket">;
    couchmail: Couchmail;
    tlsSecretName: pulumi.Input<string>;
    mailSize: string;
    storageClassName?: string;
    overrideConfigMap?: string;
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
        const { labels, selector } = appLabels("dovecot", "imap");
        this.settings = {
            ...args.settings,
            luaFile: `${COUCHMAIL.luaMountDir}/${COUCHMAIL.luaFile}`,
            couchmailUrl: `http://127.0.0.1:${COUCHMAIL.httpPort}`,
            dictSocket: COUCHMAIL.dictSocket,
        };
        const files = renderDovecot(this.settings);
        const { configMap } = renderedConfigMap(`dovecot-config`, { namespace: args.namespace, labels, files }, { parent: this });
        const config = configVolumes("dovecot", configMap, args.overrideConfigMap);
        // Mail processes run as vmail and open the dict socket, so the socket belongs to vmail's group.
        const couchmail = args.couchmail.sidecar({ dovecot: true, socketGroup: VMAIL_UID });

        const hostPort = (port: number) => (args.hostPorts ? port : undefined);
        const ports: { name: string; port: number; hostPort?: number }[] = [
            { name: "imap", port: DOVECOT_PORTS.imap, hostPort: hostPort(DOVECOT_PORTS.imap) },
            { name: "imaps", port: DOVECOT_PORTS.imaps, hostPort: hostPort(DOVECOT_PORTS.imaps) },
            { name: "lmtp", port: DOVECOT_PORTS.lmtp },
            { name: "sieve", port: DOVECOT_PORTS.sieve, hostPort: hostPort(DOVECOT_PORTS.sieve) },
            { name: "auth", port: DOVECOT_PORTS.authSasl },
            ...(args.settings.proxyProtocol ? [
                { name: "imap-proxy", port: DOVECOT_PORTS.imapProxy },
                { name: "imaps-proxy", port: DOVECOT_PORTS.imapsProxy },
                { name: "sieve-proxy", port: DOVECOT_PORTS.sieveProxy },
            ] : []),
        ];
        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { name: "dovecot", namespace: args.namespace, labels },
            spec: { selector, ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.name, protocol: "TCP" })) },
        }, { parent: this });

        // LMTP and SASL take no client credentials of their own: only Postfix may reach them.
        const proxyPorts = args.settings.proxyProtocol ? [DOVECOT_PORTS.imapProxy, DOVECOT_PORTS.imapsProxy, DOVECOT_PORTS.sieveProxy] : [];
        networkPolicy("dovecot", {
            namespace: args.namespace, labels, selector,
            ingress: [
                { ports: [DOVECOT_PORTS.lmtp, DOVECOT_PORTS.authSasl], peers: [{ apps: ["postfix"] }] },
                { ports: [DOVECOT_PORTS.imap, DOVECOT_PORTS.imaps, DOVECOT_PORTS.sieve] },
                ...(proxyPorts.length ? [{ ports: proxyPorts, peers: args.proxySources }] : []),
            ],
            egress: args.egress,
        }, { parent: this });

        const statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { name: "dovecot", namespace: args.namespace, labels },
            spec: {
                // A plain name, not the Service's output: that output resolves only once the Service has ready
                // endpoints, which need this StatefulSet's pods — the engine would wait forever.
                serviceName: "dovecot",
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: { labels },
                    spec: {
                        automountServiceAccountToken: false,
                        enableServiceLinks: false,
                        terminationGracePeriodSeconds: 30,
                        // No fsGroup: the kubelet would make every Secret group-readable by it (the TLS key 0440 root:vmail),
                        // and mail processes run as vmail. The entrypoint gives the mail volume's top to vmail instead,
                        // which also spares a recursive chown of every mailbox at each start.
                        securityContext: { seccompProfile: { type: "RuntimeDefault" } },
                        affinity: args.colocateWith && {
                            podAffinity: {
                                requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: args.colocateWith }, topologyKey: "kubernetes.io/hostname" }],
                            },
                        },
                        initContainers: [couchmail.container],
                        containers: [{
                            name: "dovecot",
                            image: args.image,
                            imagePullPolicy: args.imagePullPolicy,
                            ports: ports.map((p) => ({ name: p.name, containerPort: p.port, hostPort: p.hostPort, protocol: "TCP" })),
                            resources: BUDGET.dovecot,
                            // Dovecot's master starts as root, then runs logins as dovenull and mail as vmail.
                            securityContext: rootDroppingContainer(["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL"]),
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
                            startupProbe: { ...tcpProbe(DOVECOT_PORTS.lmtp, 2), failureThreshold: 30 },
                            readinessProbe: tcpProbe(DOVECOT_PORTS.lmtp, 0),
                            livenessProbe: tcpProbe(DOVECOT_PORTS.imap, 10),
                        }],
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
                volumeClaimTemplates: [persistentClaim("mail", labels, args.mailSize, args.storageClassName)],
            },
        }, { parent: this, ...KEEP_CLAIM_TEMPLATES });
        resizeClaim(`${name}-mail-size`, { namespace: args.namespace, labels, statefulSet, statefulSetName: "dovecot", claim: "mail", size: args.mailSize }, { parent: this });

        this.serviceName = service.metadata.name;
        this.configMapName = configMap.metadata.name;
        this.registerOutputs({ serviceName: this.serviceName, configMapName: this.configMapName });
    }
}
