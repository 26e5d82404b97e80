import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { Backup } from "./backup";
import { CouchDb } from "./couchdb";
import { Couchmail } from "./couchmail";
import { firstUserCommand } from "./couchmail/sync";
import { DkimKeys } from "./dkim";
import { ManagedDns } from "./dns/manage";
import { DnsRecord, mailDnsRecords, mtaStsPolicy, zoneSnippet } from "./dns/records";
import { Dovecot } from "./dovecot";
import { DOVECOT_LISTENERS } from "./dovecot/config";
import { createEdge } from "./edge";
import { INGRESS_NGINX_NAMESPACE } from "./edge/ingress-nginx";
import { appLabels, DNS_EGRESS, MAIL_POD_SELECTOR } from "./kube";
import { CertificateSource, Monitoring } from "./monitoring";
import { OpenDkim } from "./opendkim";
import { MailStackArgs, stackPlan } from "./plan";
import { Postfix } from "./postfix";
import { POSTFIX_LISTENERS } from "./postfix/config";
import { Postgrey } from "./postgrey";
import { SpamAssassin } from "./spamassassin";
import { ACME_CERTIFICATE_NAME, AcmeTls } from "./tls/acme";
import { SelfSignedTls } from "./tls/selfsigned";
import { Webmail } from "./webmail";
import { WEBMAIL_LISTENERS } from "./webmail/config";

export { RELAY_PASSWORD_MAP } from "./plan";
export type { MailStackArgs } from "./plan";

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
        const plan = stackPlan(args);
        const { storageClassName, proxySources } = plan;

        // A patch (server-side apply) rather than a Namespace: it creates the namespace when missing and adopts one the
        // user made first (tlsMode secret needs the certificate's Secret in it before the pods start), and
        // `pulumi destroy` leaves the namespace, and so the mail volumes' claims, in place.
        const namespace = new k8s.core.v1.NamespacePatch(
            `${name}-namespace`,
            {
                metadata: {
                    name: plan.namespace,
                    labels: {
                        // "restricted" is reported so what could be tightened stays visible.
                        "pod-security.kubernetes.io/enforce": plan.podSecurity,
                        "pod-security.kubernetes.io/audit": "baseline",
                        "pod-security.kubernetes.io/warn": "restricted",
                        "app.kubernetes.io/part-of": "mail",
                    },
                },
            },
            child,
        );
        const ns = namespace.metadata.name;
        // Nothing in the namespace talks or listens unless a workload's own policy says so; every pod may use DNS.
        new k8s.networking.v1.NetworkPolicy(
            `${name}-default-deny`,
            {
                metadata: { name: "default-deny", namespace: ns, labels: { "app.kubernetes.io/part-of": "mail" } },
                spec: { podSelector: {}, policyTypes: ["Ingress", "Egress"], egress: [DNS_EGRESS] },
            },
            child,
        );

        // The certificate covers the webmail's host name too, when it has its own.
        const certificateHosts = [...new Set([args.mail.hostname, ...(plan.webmail ? [plan.webmail.settings.hostname] : [])])];
        // The certificate's Secret, and where the expiry alert learns the certificate's end.
        const { tlsSecretName, certificate } = ((): { tlsSecretName: pulumi.Output<string>; certificate: CertificateSource } => {
            const tls = plan.tls;
            switch (tls.mode) {
                case "selfsigned": {
                    const selfSigned = new SelfSignedTls(`${name}-tls`, { namespace: ns, hostnames: certificateHosts }, child);
                    return { tlsSecretName: selfSigned.secretName, certificate: { source: "selfSigned", certificatePem: selfSigned.certificatePem } };
                }
                case "secret":
                    return { tlsSecretName: pulumi.output(tls.secretName), certificate: { source: "none" } };
                case "acme":
                    if (tls.solver.kind === "http01") {
                        // cert-manager's HTTP-01 solver pods run in this namespace and answer ingress-nginx on 8089.
                        new k8s.networking.v1.NetworkPolicy(
                            `${name}-acme-http01-solver`,
                            {
                                metadata: { name: "acme-http01-solver", namespace: ns, labels: { "app.kubernetes.io/part-of": "mail" } },
                                spec: {
                                    podSelector: { matchLabels: { "acme.cert-manager.io/http01-solver": "true" } },
                                    policyTypes: ["Ingress"],
                                    ingress: [
                                        {
                                            ports: [{ port: 8089, protocol: "TCP" }],
                                            from: [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": INGRESS_NGINX_NAMESPACE } } }],
                                        },
                                    ],
                                },
                            },
                            child,
                        );
                    }
                    return {
                        tlsSecretName: new AcmeTls(
                            `${name}-tls`,
                            {
                                namespace: ns,
                                hostnames: certificateHosts,
                                ...tls,
                                serviceMonitorLabels: plan.metrics?.prometheusOperator ? { ...plan.metrics.monitorLabels } : undefined,
                            },
                            child,
                        ).secretName,
                        certificate: { source: "cert-manager", name: ACME_CERTIFICATE_NAME },
                    };
            }
        })();
        const metricsScrapers = plan.metrics?.scrapers;
        const couchdb = new CouchDb(`${name}-couchdb`, { namespace: ns, storageClassName, metricsScrapers, ...plan.couchdb }, child);
        const couchmail = new Couchmail(
            `${name}-couchmail`,
            {
                namespace: ns,
                couchdbUrl: couchdb.url,
                couchdbSecretName: couchdb.adminSecretName,
                ...plan.couchmail,
            },
            child,
        );
        // The configured domains, role addresses and postmaster mailbox, in place before `pulumi up` ends.
        const { egress: toCouchDb, ...sync } = plan.couchmailSync;
        couchmail.syncJob(sync, toCouchDb);

        const dkim = new DkimKeys(`${name}-dkim`, { namespace: ns, ...plan.dkim }, child);
        const opendkim = new OpenDkim(`${name}-opendkim`, { namespace: ns, keysSecretName: dkim.secretName, ...plan.opendkim }, child);
        // What Postfix and Dovecot both take: couchmail beside them, the certificate, their volumes' class, the edge.
        const mailDaemon = { namespace: ns, couchmail, tlsSecretName, storageClassName, proxySources, metricsScrapers };
        const dovecot = new Dovecot(`${name}-dovecot`, { ...mailDaemon, ...plan.dovecot }, child);
        if (plan.backup && args.backup) {
            new Backup(
                `${name}-backup`,
                {
                    namespace: ns,
                    storageClassName,
                    ...plan.backup,
                    password: args.backup.password,
                    credentials: args.backup.credentials,
                    mail: { ...plan.backup.mail, claimName: dovecot.mailClaimName, podSelector: dovecot.podSelector },
                    couchdb: { ...plan.backup.couchdb, url: couchdb.url, adminSecretName: couchdb.adminSecretName },
                },
                child,
            );
        }
        if (plan.spamassassin) {
            const spam = plan.spamassassin;
            new SpamAssassin(
                `${name}-spamassassin`,
                {
                    namespace: ns,
                    storageClassName,
                    ...spam,
                    training: { ...spam.training, mailClaimName: dovecot.mailClaimName, mailPodSelector: dovecot.podSelector },
                },
                child,
            );
        }
        const postgrey = plan.postgrey && new Postgrey(`${name}-postgrey`, { namespace: ns, storageClassName, ...plan.postgrey }, child);
        const relay = args.relay;
        const postfix = new Postfix(
            `${name}-postfix`,
            {
                ...mailDaemon,
                ...plan.postfix,
                relayCredentials: relay && { username: relay.username, password: relay.password },
            },
            { parent: this, dependsOn: [opendkim, ...(postgrey ? [postgrey] : [])] },
        );

        if (plan.metrics) {
            // couchmail's port is in both the Postfix and the Dovecot pod: its Service selects every mail pod, and only
            // pods with a port of that name become its endpoints.
            new Monitoring(
                `${name}-monitoring`,
                {
                    namespace: plan.namespace,
                    scraperNamespace: plan.metrics.namespace,
                    prometheusOperator: plan.metrics.prometheusOperator,
                    monitorLabels: { ...plan.metrics.monitorLabels },
                    targets: {
                        dovecot: { selector: dovecot.podSelector },
                        postfix: { selector: appLabels("postfix", "mta").selector },
                        couchmail: { selector: MAIL_POD_SELECTOR },
                        couchdb: { selector: appLabels("couchdb", "datastore").selector },
                    },
                    mailClaimName: dovecot.mailClaimName,
                    certificate,
                },
                { parent: this, dependsOn: [namespace] },
            );
        }

        const webmail = plan.webmail;
        if (webmail) new Webmail(`${name}-webmail`, { namespace: ns, storageClassName, tlsSecretName, proxySources, ...webmail }, child);

        // Not after Postfix and Dovecot: an HTTP-01 certificate needs the edge before their pods can start.
        const webmailRoute = webmail?.route && {
            ...webmail.route,
            tlsSecretName,
            service: "webmail",
            httpsPort: WEBMAIL_LISTENERS.https.name,
        };
        const mailEdge = createEdge(`${name}-edge`, { namespace: ns, hostname: args.mail.hostname, plan: plan.edge, webmail: webmailRoute }, child);

        const svc = (service: pulumi.Output<string>, port: number) => pulumi.interpolate`${service}.${ns}.svc:${port}`;
        const records = (dkimTxt: Record<string, string>, addresses: string[]) => mailDnsRecords({ ...plan.dns, dkimTxt, addresses });
        this.namespace = ns;
        this.dkimTxt = dkim.txtValues;
        this.publicAddresses = mailEdge.addresses;
        this.dnsRecords = pulumi.all([dkim.txtValues, mailEdge.addresses]).apply(([dkimTxt, addresses]) => records(dkimTxt, addresses));
        this.dnsZoneSnippet = this.dnsRecords.apply(zoneSnippet);
        this.mtaStsPolicy = plan.dns.mtaSts === "off" ? "" : mtaStsPolicy(plan.dns.mtaSts, args.mail.hostname);
        if (args.dns.manage && args.clusterProvider !== "kubeconfig") {
            // The edge has one IPv4 address (a load balancer's or a reserved IP), unknown until it exists.
            const shape = records(Object.fromEntries(args.mail.domains.map((d) => [d, "v=DKIM1; k=rsa; p="])), ["192.0.2.1"]);
            new ManagedDns(`${name}-dns`, { provider: args.clusterProvider, hostname: args.mail.hostname, shape, records: this.dnsRecords }, child);
        }
        this.warnings = plan.warnings;
        this.endpoints = {
            smtp: svc(postfix.serviceName, POSTFIX_LISTENERS.smtp.port),
            submission: svc(postfix.serviceName, POSTFIX_LISTENERS.submission.port),
            submissions: svc(postfix.serviceName, POSTFIX_LISTENERS.submissions.port),
            imap: svc(dovecot.serviceName, DOVECOT_LISTENERS.imap.port),
            imaps: svc(dovecot.serviceName, DOVECOT_LISTENERS.imaps.port),
            managesieve: svc(dovecot.serviceName, DOVECOT_LISTENERS.sieve.port),
            couchdb: couchdb.url,
        };
        this.addFirstUser = ns.apply((namespace) => firstUserCommand(namespace, sync));
        this.registerOutputs({
            namespace: this.namespace,
            dnsRecords: this.dnsRecords,
            dnsZoneSnippet: this.dnsZoneSnippet,
            endpoints: this.endpoints,
            addFirstUser: this.addFirstUser,
            publicAddresses: this.publicAddresses,
            mtaStsPolicy: this.mtaStsPolicy,
            warnings: this.warnings,
        });
    }
}
