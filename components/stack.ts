import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { ClusterProvider, StackConfig } from "./config/types";
import { COUCHDB_LISTENERS, CouchDb } from "./couchdb";
import { Couchmail } from "./couchmail";
import { DkimKeys } from "./dkim";
import { ManagedDns } from "./dns/manage";
import { DnsRecord, mailDnsRecords, mtaStsPolicy, zoneSnippet } from "./dns/records";
import { Dovecot } from "./dovecot";
import { DOVECOT_DEFAULTS, DOVECOT_LISTENERS, DOVECOT_SPAM_PROGRAMS, VMAIL_UID } from "./dovecot/config";
import { createEdge, edgePlan } from "./edge";
import { INGRESS_CLASS, INGRESS_NGINX_NAMESPACE } from "./edge/ingress-nginx";
import { appLabels, DNS_EGRESS, ourImage, Peer, TrafficRule } from "./kube";
import { OpenDkim } from "./opendkim";
import { OPENDKIM_DEFAULTS, OPENDKIM_LISTENERS } from "./opendkim/config";
import { Postfix } from "./postfix";
import { POSTFIX_DEFAULTS, POSTFIX_LISTENERS } from "./postfix/config";
import { Postgrey } from "./postgrey";
import { POSTGREY_DEFAULTS, POSTGREY_LISTENERS } from "./postgrey/config";
import { SpamAssassin } from "./spamassassin";
import { SPAMASSASSIN_DEFAULTS, SPAMD_LISTENERS } from "./spamassassin/config";
import { AcmeTls } from "./tls/acme";
import { SelfSignedTls } from "./tls/selfsigned";
import { COUCHMAIL } from "./couchmail";

export type MailStackArgs = Pick<StackConfig, "mail" | "images" | "storage" | "services" | "edge" | "tls" | "dns" | "relay"> & {
    /** Only the kind of cluster: the edge, DNS and DNS-01 depend on the cloud's load balancers and DNS. */
    clusterProvider: ClusterProvider;
};

/** Where the relay's texthash password map is mounted in the Postfix pod. */
export const RELAY_PASSWORD_MAP = "/etc/mail/relay/password";

/**
 * The whole mail system in one namespace: CouchDB, couchmail (as a sidecar of Postfix and Dovecot), Postfix,
 * Dovecot, OpenDKIM with a key per domain, and a certificate. It takes the cluster's provider and knows nothing
 * about the cloud underneath.
 */
export class MailStack extends pulumi.ComponentResource {
    readonly namespace: pulumi.Output<string>;
    /** The records to publish: A/AAAA for the mail host; MX, SPF, DKIM, DMARC, TLS-RPT (and MTA-STS) per domain. */
    readonly dnsRecords: pulumi.Output<DnsRecord[]>;
    /** Public addresses of the mail host. */
    readonly publicAddresses: pulumi.Output<string[]>;
    /** The MTA-STS policy to serve at https://mta-sts.<domain>/.well-known/mta-sts.txt (empty when off). */
    readonly mtaStsPolicy: string;
    /** Things that will not work as the config stands (e.g. outbound port 25 blocked and no relay). */
    readonly warnings: string[];
    readonly dnsZoneSnippet: pulumi.Output<string>;
    readonly dkimTxt: Record<string, pulumi.Output<string>>;
    /** In-cluster endpoints of the services. */
    readonly endpoints: Record<string, pulumi.Output<string>>;
    /** How to add the first mailbox. */
    readonly addFirstUser: pulumi.Output<string>;

    constructor(name: string, args: MailStackArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:MailStack", name, {}, opts);
        const child = { parent: this };
        const { mail, images, storage, services, edge, relay } = args;
        const plan = edgePlan(edge.mode, args.clusterProvider);
        const storageClassName = storage.className || undefined;
        const image = (service: string) => ourImage(images, service);

        // A patch (server-side apply) rather than a Namespace: it creates the namespace when missing and adopts one the
        // user made first (tlsMode secret needs the certificate's Secret in it before the pods start), and
        // `pulumi destroy` leaves the namespace, and so the mail volumes' claims, in place.
        const namespace = new k8s.core.v1.NamespacePatch(`${name}-namespace`, {
            metadata: {
                name: mail.namespace,
                labels: {
                    // Postfix's and Dovecot's masters start as root, so "baseline" is enforced and "restricted" reported;
                    // baseline forbids any hostPort, so the hostport edge needs "privileged" (see stackWarnings).
                    "pod-security.kubernetes.io/enforce": plan.hostPorts ? "privileged" : "baseline",
                    "pod-security.kubernetes.io/audit": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "app.kubernetes.io/part-of": "mail",
                },
            },
        }, child);
        const ns = namespace.metadata.name;
        // Nothing in the namespace talks or listens unless a workload's own policy says so; every pod may use DNS.
        new k8s.networking.v1.NetworkPolicy(`${name}-default-deny`, {
            metadata: { name: "default-deny", namespace: ns, labels: { "app.kubernetes.io/part-of": "mail" } },
            spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"], egress: [DNS_EGRESS] },
        }, child);
        // PROXY-only ports trust the client address in the header: only the edge may connect to them.
        const proxySources: Peer[] = edge.mode === "ingress-nginx"
            ? [{ namespace: INGRESS_NGINX_NAMESPACE, podLabels: { "app.kubernetes.io/name": "ingress-nginx" } }]
            : [{ cidrs: edge.proxyTrustedNetworks }];
        const toCouchDb: TrafficRule = { ports: [COUCHDB_LISTENERS.http.port], peers: [{ apps: ["couchdb"] }] };

        const tlsSecretName = (() => {
            switch (args.tls.mode) {
                case "selfsigned":
                    return new SelfSignedTls(`${name}-tls`, { namespace: ns, hostnames: [mail.hostname] }, child).secretName;
                case "secret":
                    return pulumi.output(args.tls.secretName);
                case "acme": {
                    const provider = args.clusterProvider;
                    // config.ts allows acme only with DNS-01 (dnsManage on a cloud) or HTTP-01 through ingress-nginx.
                    const solver = args.dns.manage && provider === "digitalocean" ? { kind: "digitalocean" as const, token: args.tls.digitaloceanToken! }
                        : args.dns.manage && provider === "gke" ? { kind: "clouddns" as const }
                            : { kind: "http01" as const, ingressClass: INGRESS_CLASS };
                    if (solver.kind === "http01") {
                        // cert-manager's HTTP-01 solver pods run in this namespace and answer ingress-nginx on 8089.
                        new k8s.networking.v1.NetworkPolicy(`${name}-acme-http01-solver`, {
                            metadata: { name: "acme-http01-solver", namespace: ns, labels: { "app.kubernetes.io/part-of": "mail" } },
                            spec: {
                                podSelector: { matchLabels: { "acme.cert-manager.io/http01-solver": "true" } },
                                policyTypes: ["Ingress"],
                                ingress: [{ ports: [{ port: 8089, protocol: "TCP" }], from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": INGRESS_NGINX_NAMESPACE } } }] }],
                            },
                        }, child);
                    }
                    return new AcmeTls(`${name}-tls`, {
                        namespace: ns, hostnames: [mail.hostname], email: args.tls.email, server: args.tls.server, solver,
                    }, child).secretName;
                }
            }
        })();
        const couchdb = new CouchDb(`${name}-couchdb`, {
            namespace: ns, image: services.couchdb.image, storageSize: storage.couchdbSize, storageClassName, extraClients: [],
        }, child);
        const couchmail = new Couchmail(`${name}-couchmail`, {
            namespace: ns,
            image: image("couchmail"),
            imagePullPolicy: images.pullPolicy,
            couchdbUrl: couchdb.url,
            couchdbSecretName: couchdb.adminSecretName,
            database: services.couchdb.database,
            mailHome: DOVECOT_DEFAULTS.mailRoot,
            staleAfterSeconds: 60,
        }, child);

        const dkim = new DkimKeys(`${name}-dkim`, { namespace: ns, domains: mail.domains, selector: services.dkim.selector }, child);
        const opendkim = new OpenDkim(`${name}-opendkim`, {
            namespace: ns,
            image: image("opendkim"),
            imagePullPolicy: images.pullPolicy,
            keysSecretName: dkim.secretName,
            settings: { ...OPENDKIM_DEFAULTS, domains: mail.domains, selector: services.dkim.selector, authservId: mail.hostname },
        }, child);

        const dovecot = new Dovecot(`${name}-dovecot`, {
            namespace: ns,
            image: image("dovecot"),
            imagePullPolicy: images.pullPolicy,
            couchmail,
            tlsSecretName,
            mailSize: storage.mailSize,
            storageClassName,
            hostPorts: plan.hostPorts,
            colocateWith: plan.colocate ? appLabels("postfix", "mta").selector : undefined,
            delivery: { messageSizeLimit: services.postfix.messageSizeLimit, concurrency: POSTFIX_DEFAULTS.lmtpConcurrency },
            proxySources,
            egress: [toCouchDb, ...(services.spam.enabled ? [{ ports: [SPAMD_LISTENERS.spamd.port], peers: [{ apps: ["spamassassin"] }] }] : [])],
            settings: {
                ...DOVECOT_DEFAULTS,
                hostname: mail.hostname,
                proxyProtocol: plan.backendProxy,
                // Only the edge's own (private) sources may claim a client address.
                haproxyTrustedNetworks: plan.backendProxy ? edge.proxyTrustedNetworks : [],
                junkAutoexpunge: services.dovecot.junkAutoexpunge,
                maxUserIpConnections: services.dovecot.maxUserIpConnections,
                // Spam is scored per recipient at LMTP time and filed into Junk before the user's own sieve rules.
                spamToJunk: services.spam.enabled,
                spamScan: services.spam.enabled
                    ? { filterBinDir: DOVECOT_SPAM_PROGRAMS.filterBinDir, spamdHost: "spamassassin", spamdPort: SPAMD_LISTENERS.spamd.port, timeoutSeconds: 30 }
                    : undefined,
                imapsieveTraining: services.spam.enabled ? { pipeBinDir: DOVECOT_SPAM_PROGRAMS.pipeBinDir } : undefined,
            },
        }, child);

        if (services.spam.enabled) {
            new SpamAssassin(`${name}-spamassassin`, {
                namespace: ns,
                image: image("spamassassin"),
                imagePullPolicy: images.pullPolicy,
                storageSize: "1Gi",
                storageClassName,
                settings: {
                    ...SPAMASSASSIN_DEFAULTS,
                    requiredScore: services.spam.requiredScore,
                    maxChildren: services.spam.maxChildren,
                    clusterNetworks: services.spam.clusterNetworks,
                },
                training: {
                    schedule: services.spam.trainSchedule,
                    mailClaimName: dovecot.mailClaimName,
                    mailRoot: DOVECOT_DEFAULTS.mailRoot,
                    mailUid: VMAIL_UID,
                    mailPodSelector: dovecot.podSelector,
                },
            }, child);
        }
        const postgrey = services.greylist.enabled && new Postgrey(`${name}-postgrey`, {
            namespace: ns,
            image: image("postgrey"),
            imagePullPolicy: images.pullPolicy,
            storageSize: "1Gi",
            storageClassName,
            settings: {
                ...POSTGREY_DEFAULTS,
                delaySeconds: services.greylist.delaySeconds,
                whitelistClients: services.greylist.whitelistClients,
                whitelistRecipients: services.greylist.whitelistRecipients,
            },
        }, child);

        const postfix = new Postfix(`${name}-postfix`, {
            namespace: ns,
            image: image("postfix"),
            imagePullPolicy: images.pullPolicy,
            couchmail,
            tlsSecretName,
            queueSize: storage.queueSize,
            storageClassName,
            hostPorts: plan.hostPorts,
            proxySources,
            egress: [
                toCouchDb,
                { ports: [DOVECOT_LISTENERS.lmtp.port, DOVECOT_LISTENERS.authSasl.port], peers: [{ apps: ["dovecot"] }] },
                { ports: [OPENDKIM_LISTENERS.milter.port], peers: [{ apps: ["opendkim"] }] },
                ...(services.greylist.enabled ? [{ ports: [POSTGREY_LISTENERS.policy.port], peers: [{ apps: ["postgrey"] }] }] : []),
            ],
            relayCredentials: relay && { username: relay.username, password: relay.password },
            settings: {
                ...POSTFIX_DEFAULTS,
                hostname: mail.hostname,
                ownDomains: mail.domains,
                postmaster: mail.postmaster,
                // Postfix has no trusted-networks list for PROXY: its PROXY ports are reachable only inside the cluster.
                proxyProtocol: plan.backendProxy,
                relay: relay && { host: relay.host, port: relay.port, passwordMapFile: RELAY_PASSWORD_MAP },
                socketmap: `inet:127.0.0.1:${COUCHMAIL.socketmapPort}`,
                saslEndpoint: `inet:dovecot:${DOVECOT_LISTENERS.authSasl.port}`,
                lmtpEndpoint: `inet:dovecot:${DOVECOT_LISTENERS.lmtp.port}`,
                milters: [`inet:opendkim:${OPENDKIM_LISTENERS.milter.port}`],
                // Port 25 only: the renderer keeps the policy service off the submission ports.
                policyService: postgrey ? `inet:postgrey:${POSTGREY_LISTENERS.policy.port}` : undefined,
                dnsbls: services.postfix.dnsbls ?? POSTFIX_DEFAULTS.dnsbls,
                messageSizeLimit: services.postfix.messageSizeLimit,
                mainCfOverrides: services.postfix.mainCf,
            },
        }, { parent: this, dependsOn: [opendkim, ...(postgrey ? [postgrey] : [])] });

        // Not after Postfix and Dovecot: an HTTP-01 certificate needs the edge before their pods can start.
        const mailEdge = createEdge(`${name}-edge`, { namespace: ns, hostname: mail.hostname, plan }, child);

        const svc = (service: pulumi.Output<string>, port: number) => pulumi.interpolate`${service}.${ns}.svc:${port}`;
        const records = (dkimTxt: Record<string, string>, addresses: string[]) => mailDnsRecords({
            hostname: mail.hostname, domains: mail.domains, dkimSelector: services.dkim.selector, dkimTxt, postmaster: mail.postmaster,
            addresses, mtaSts: args.dns.mtaSts,
        });
        this.namespace = ns;
        this.dkimTxt = dkim.txtValues;
        this.publicAddresses = mailEdge.addresses;
        this.dnsRecords = pulumi.all([dkim.txtValues, mailEdge.addresses]).apply(([dkimTxt, addresses]) => records(dkimTxt, addresses));
        this.dnsZoneSnippet = this.dnsRecords.apply(zoneSnippet);
        this.mtaStsPolicy = args.dns.mtaSts === "off" ? "" : mtaStsPolicy(args.dns.mtaSts, mail.hostname);
        if (args.dns.manage && args.clusterProvider !== "kubeconfig") {
            // The edge has one IPv4 address (a load balancer's or a reserved IP), unknown until it exists.
            const shape = records(Object.fromEntries(mail.domains.map((d) => [d, "v=DKIM1; k=rsa; p="])), ["192.0.2.1"]);
            new ManagedDns(`${name}-dns`, { provider: args.clusterProvider, hostname: mail.hostname, shape, records: this.dnsRecords }, child);
        }
        this.warnings = stackWarnings(args, plan.port25Blocked);
        this.endpoints = {
            smtp: svc(postfix.serviceName, POSTFIX_LISTENERS.smtp.port),
            submission: svc(postfix.serviceName, POSTFIX_LISTENERS.submission.port),
            submissions: svc(postfix.serviceName, POSTFIX_LISTENERS.submissions.port),
            imap: svc(dovecot.serviceName, DOVECOT_LISTENERS.imap.port),
            imaps: svc(dovecot.serviceName, DOVECOT_LISTENERS.imaps.port),
            managesieve: svc(dovecot.serviceName, DOVECOT_LISTENERS.sieve.port),
            couchdb: couchdb.url,
        };
        this.addFirstUser = pulumi.interpolate`kubectl -n ${ns} exec -it statefulset/dovecot -c couchmail -- couchmail user add postmaster@${mail.domains[0]}`;
        this.registerOutputs({
            namespace: this.namespace, dnsRecords: this.dnsRecords, dnsZoneSnippet: this.dnsZoneSnippet,
            endpoints: this.endpoints, addFirstUser: this.addFirstUser, publicAddresses: this.publicAddresses,
            mtaStsPolicy: this.mtaStsPolicy, warnings: this.warnings,
        });
    }
}

/** What the operator must fix or do by hand, known from the config alone. */
export function stackWarnings(args: MailStackArgs, port25Blocked: boolean): string[] {
    const warnings: string[] = [];
    if (port25Blocked && !args.relay) {
        warnings.push(`${args.clusterProvider} blocks outbound port 25 (DigitalOcean for new accounts, GCP always): mail to other servers will not leave; set relayHost, relayUsername and relayPassword`);
    }
    if (args.edge.mode === "hostport") {
        warnings.push(`edgeMode hostport: the ${args.mail.namespace} namespace enforces Pod Security "privileged", because "baseline" forbids hostPort; violations of "baseline" are still audited. Prefer edgeMode loadbalancer where its cost is acceptable`);
    }
    if (args.tls.mode === "selfsigned" && args.clusterProvider !== "kubeconfig") {
        warnings.push("tlsMode selfsigned: mail clients will reject the certificate; use acme or secret for a real deployment");
    }
    if (args.dns.mtaSts !== "off") {
        warnings.push("dnsMtaSts: serve the mtaStsPolicy output at https://mta-sts.<domain>/.well-known/mta-sts.txt for every domain, or senders ignore the policy");
    }
    return warnings;
}
