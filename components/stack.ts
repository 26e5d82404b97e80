import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { StackConfig } from "../config";
import { CouchDb } from "./couchdb";
import { Couchmail } from "./couchmail";
import { DkimKeys } from "./dkim";
import { DnsRecord, mailDnsRecords, zoneSnippet } from "./dns/records";
import { Dovecot } from "./dovecot";
import { DOVECOT_DEFAULTS, DOVECOT_PORTS } from "./dovecot/config";
import { ourImage } from "./kube";
import { OpenDkim } from "./opendkim";
import { OPENDKIM_DEFAULTS, OPENDKIM_PORTS } from "./opendkim/config";
import { Postfix } from "./postfix";
import { POSTFIX_DEFAULTS, POSTFIX_PORTS } from "./postfix/config";
import { SelfSignedTls } from "./tls/selfsigned";
import { COUCHMAIL } from "./couchmail";

export type MailStackArgs = Pick<StackConfig, "mail" | "images" | "storage" | "services">;

/**
 * The whole mail system in one namespace: CouchDB, couchmail (as a sidecar of Postfix and Dovecot), Postfix,
 * Dovecot, OpenDKIM with a key per domain, and a certificate. It takes the cluster's provider and knows nothing
 * about the cloud underneath.
 */
export class MailStack extends pulumi.ComponentResource {
    readonly namespace: pulumi.Output<string>;
    /** The records to publish for every domain (MX, SPF, DKIM, DMARC). */
    readonly dnsRecords: pulumi.Output<DnsRecord[]>;
    readonly dnsZoneSnippet: pulumi.Output<string>;
    readonly dkimTxt: Record<string, pulumi.Output<string>>;
    /** In-cluster endpoints of the services. */
    readonly endpoints: Record<string, pulumi.Output<string>>;
    /** How to add the first mailbox. */
    readonly addFirstUser: pulumi.Output<string>;

    constructor(name: string, args: MailStackArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:MailStack", name, {}, opts);
        const child = { parent: this };
        const { mail, images, storage, services } = args;
        const storageClassName = storage.className || undefined;
        const image = (service: string) => ourImage(images, service);

        const namespace = new k8s.core.v1.Namespace(`${name}-namespace`, {
            metadata: {
                name: mail.namespace,
                labels: {
                    // Postfix's and Dovecot's masters start as root, so "baseline" is enforced; "restricted" is reported.
                    "pod-security.kubernetes.io/enforce": "baseline",
                    "pod-security.kubernetes.io/warn": "restricted",
                    "app.kubernetes.io/part-of": "mail",
                },
            },
        }, child);
        const ns = namespace.metadata.name;

        const tls = new SelfSignedTls(`${name}-tls`, { namespace: ns, hostnames: [mail.hostname] }, child);
        const couchdb = new CouchDb(`${name}-couchdb`, {
            namespace: ns, image: services.couchdb.image, storageSize: storage.couchdbSize, storageClassName,
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
            tlsSecretName: tls.secretName,
            mailSize: storage.mailSize,
            storageClassName,
            settings: {
                ...DOVECOT_DEFAULTS,
                hostname: mail.hostname,
                junkAutoexpunge: services.dovecot.junkAutoexpunge,
                maxUserIpConnections: services.dovecot.maxUserIpConnections,
            },
        }, child);

        const postfix = new Postfix(`${name}-postfix`, {
            namespace: ns,
            image: image("postfix"),
            imagePullPolicy: images.pullPolicy,
            couchmail,
            tlsSecretName: tls.secretName,
            queueSize: storage.queueSize,
            storageClassName,
            settings: {
                ...POSTFIX_DEFAULTS,
                hostname: mail.hostname,
                socketmap: `inet:127.0.0.1:${COUCHMAIL.socketmapPort}`,
                saslEndpoint: `inet:dovecot:${DOVECOT_PORTS.authSasl}`,
                lmtpEndpoint: `inet:dovecot:${DOVECOT_PORTS.lmtp}`,
                milters: [`inet:opendkim:${OPENDKIM_PORTS.milter}`],
                dnsbls: services.postfix.dnsbls ?? POSTFIX_DEFAULTS.dnsbls,
                messageSizeLimit: services.postfix.messageSizeLimit,
                mainCfOverrides: services.postfix.mainCf,
            },
        }, { parent: this, dependsOn: [dovecot, opendkim] });

        const svc = (service: pulumi.Output<string>, port: number) => pulumi.interpolate`${service}.${ns}.svc:${port}`;
        this.namespace = ns;
        this.dkimTxt = dkim.txtValues;
        this.dnsRecords = pulumi.all(dkim.txtValues).apply((dkimTxt) => mailDnsRecords({
            hostname: mail.hostname, domains: mail.domains, dkimSelector: services.dkim.selector, dkimTxt, postmaster: mail.postmaster,
        }));
        this.dnsZoneSnippet = this.dnsRecords.apply(zoneSnippet);
        this.endpoints = {
            smtp: svc(postfix.serviceName, POSTFIX_PORTS.smtp),
            submission: svc(postfix.serviceName, POSTFIX_PORTS.submission),
            submissions: svc(postfix.serviceName, POSTFIX_PORTS.submissions),
            imap: svc(dovecot.serviceName, DOVECOT_PORTS.imap),
            imaps: svc(dovecot.serviceName, DOVECOT_PORTS.imaps),
            managesieve: svc(dovecot.serviceName, DOVECOT_PORTS.sieve),
            couchdb: couchdb.url,
        };
        this.addFirstUser = pulumi.interpolate`kubectl -n ${ns} exec -it statefulset/dovecot -c couchmail -- couchmail user add postmaster@${mail.domains[0]}`;
        this.registerOutputs({
            namespace: this.namespace, dnsRecords: this.dnsRecords, dnsZoneSnippet: this.dnsZoneSnippet,
            endpoints: this.endpoints, addFirstUser: this.addFirstUser,
        });
    }
}
