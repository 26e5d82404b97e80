// The whole stack's decisions as pure data: every service's settings and wiring, the edge, the TLS choice and the
// warnings, from the stack config alone. MailStack only instantiates what this returns, so how ports, endpoints and
// network rules fit together is tested here without an engine.
import { BACKUP_APPS } from "./backup/config";
import type { ClusterProvider, MetricsConfig, StackConfig } from "./config/types";
import { COUCHDB_LISTENERS } from "./couchdb";
import { COUCHMAIL, COUCHMAIL_PASSWORD_LISTENER } from "./couchmail";
import { SYNC_APP, SyncPlan } from "./couchmail/sync";
import { MailDnsArgs } from "./dns/records";
import { DOVECOT_DEFAULTS, DOVECOT_LISTENERS, DOVECOT_SPAM_PROGRAMS, DovecotSettings, VMAIL_UID } from "./dovecot/config";
import { EdgePlan, edgePlan } from "./edge/plan";
import { INGRESS_CLASS, INGRESS_NGINX_NAMESPACE } from "./edge/ingress-nginx";
import { appLabels, ourImage, Peer, TrafficRule } from "./kube";
import { OPENDKIM_DEFAULTS, OPENDKIM_LISTENERS, OpenDkimSettings } from "./opendkim/config";
import { POSTFIX_DEFAULTS, PostfixSettings } from "./postfix/config";
import { POSTGREY_DEFAULTS, POSTGREY_LISTENERS, PostgreySettings } from "./postgrey/config";
import { SPAMASSASSIN_DEFAULTS, SPAMD_LISTENERS, SpamAssassinSettings } from "./spamassassin/config";
import type { AcmeTlsArgs } from "./tls/acme";
import { domainOf } from "./config/checks";
import { SCRAPE_TARGETS } from "./monitoring/metrics";
import { maxUploadBytes, WEBMAIL_DEFAULTS, WebmailSettings } from "./webmail/config";

export type MailStackArgs = Pick<
    StackConfig,
    "mail" | "images" | "storage" | "services" | "edge" | "tls" | "dns" | "relay" | "backup" | "metrics" | "webmail"
> & {
    /** Only the kind of cluster: the edge, DNS and DNS-01 depend on the cloud's load balancers and DNS. */
    clusterProvider: ClusterProvider;
};

/** Where the relay's texthash password map is mounted in the Postfix pod. */
export const RELAY_PASSWORD_MAP = "/etc/mail/relay/password";

/** Seconds without the CouchDB feed before couchmail reports its snapshot as stale. */
const COUCHMAIL_STALE_AFTER_SECONDS = 60;

/** What the ingress-nginx edge needs to route the webmail (the rest comes from the stack). */
export interface WebmailRouteArgs {
    hostname: string;
    bodySize: string;
}

/** How an image of ours is pulled. */
export interface ImageRef {
    image: string;
    imagePullPolicy: string;
}

export type TlsPlan =
    | { mode: "selfsigned" }
    | { mode: "secret"; secretName: string }
    | { mode: "acme"; email: string; server: "production" | "staging"; solver: AcmeTlsArgs["solver"] };

export interface StackPlan {
    namespace: string;
    /** Postfix's and Dovecot's masters start as root, so "baseline"; the hostport edge needs "privileged". */
    podSecurity: "baseline" | "privileged";
    edge: EdgePlan;
    /** Who may connect to the PROXY-only ports (a forged header would choose the client address): the edge only. */
    proxySources: Peer[];
    tls: TlsPlan;
    /** Empty: the cluster's default class. */
    storageClassName?: string;
    /** `extraClients`: workloads besides couchmail's pods that reach CouchDB (the sync Job, the backup's jobs). */
    couchdb: { image: string; storageSize: string; database: string; extraClients: string[] };
    couchmail: ImageRef & { database: string; mailHome: string; staleAfterSeconds: number };
    /** What the deploy's sync Job makes the datastore hold, and where it may connect. */
    couchmailSync: SyncPlan & { egress: TrafficRule };
    dkim: { domains: string[]; selector: string };
    opendkim: ImageRef & { settings: OpenDkimSettings };
    dovecot: ImageRef & {
        settings: DovecotSettings;
        mailSize: string;
        hostPorts: boolean;
        colocateWith?: Record<string, string>;
        delivery: { messageSizeLimit: number; concurrency: number };
        egress: TrafficRule[];
        /** Its couchmail serves the webmail's password change. */
        passwordChange: boolean;
    };
    spamassassin?: ImageRef & {
        settings: SpamAssassinSettings;
        storageSize: string;
        training: { schedule: string; mailRoot: string; mailUid: number };
    };
    postgrey?: ImageRef & { settings: PostgreySettings; storageSize: string };
    /** The nightly backup and the restore (their password and credentials stay in the stack config, as secrets). */
    backup?: ImageRef & {
        schedule: string;
        repository: string;
        mail: { root: string; driver: DovecotSettings["mailDriver"]; uid: number; size: string };
        couchdb: { database: string; port: number; app: string };
    };
    postfix: ImageRef & { settings: PostfixSettings; queueSize: string; hostPorts: boolean; egress: TrafficRule[]; exporter?: ImageRef };
    /** Roundcube; `route`: served through the ingress-nginx edge's Ingress rather than TCP-forwarded ports. */
    webmail?: ImageRef & {
        settings: WebmailSettings;
        storageSize: string;
        hostPorts: boolean;
        colocateWith?: Record<string, string>;
        route?: WebmailRouteArgs;
        extraEgress: TrafficRule[];
    };
    /** Prometheus: who scrapes the metrics ports, and what the monitoring resources carry. */
    metrics?: MetricsConfig & { scrapers: Peer[] };
    /** The DNS records' inputs, less what is known only after deploy (DKIM keys, public addresses). */
    dns: Omit<MailDnsArgs, "dkimTxt" | "addresses">;
    /** What the operator must fix or do by hand, known from the config alone. */
    warnings: string[];
}

/** Which services a workload may open connections to (beside DNS), by the listeners they serve. */
const to = (app: string, ...ports: number[]): TrafficRule => ({ ports, peers: [{ apps: [app] }] });

export function stackPlan(args: MailStackArgs): StackPlan {
    const { mail, images, storage, services, edge, relay } = args;
    const plan = edgePlan(edge.mode, args.clusterProvider, { webmail: !!args.webmail });
    const image = (service: string): ImageRef => ({ image: ourImage(images, service), imagePullPolicy: images.pullPolicy });
    const spam = services.spam.enabled;
    const greylist = services.greylist.enabled;
    const toCouchDb = to("couchdb", COUCHDB_LISTENERS.http.port);
    const mailRoot = DOVECOT_DEFAULTS.mailRoot;
    // The webmail's PROXY twins, where the edge sends PROXY; behind the Ingress the controller is an ordinary client.
    const webmailProxy = plan.backendProxy && !plan.webmailIngress;

    const dovecotSettings: DovecotSettings = {
        ...DOVECOT_DEFAULTS,
        hostname: mail.hostname,
        // couchmail runs beside Dovecot in its pod: the Lua passdb/userdb over loopback HTTP, sieve over a unix socket.
        luaFile: `${COUCHMAIL.luaMountDir}/${COUCHMAIL.luaFile}`,
        couchmailUrl: `http://127.0.0.1:${COUCHMAIL.httpPort}`,
        dictSocket: COUCHMAIL.dictSocket,
        proxyProtocol: plan.backendProxy,
        // Only the edge's own (private) sources may claim a client address.
        haproxyTrustedNetworks: plan.backendProxy ? edge.proxyTrustedNetworks : [],
        junkAutoexpunge: services.dovecot.junkAutoexpunge,
        maxUserIpConnections: services.dovecot.maxUserIpConnections,
        // Spam is scored per recipient at LMTP time and filed into Junk before the user's own sieve rules.
        spamToJunk: spam,
        spamScan: spam
            ? { filterBinDir: DOVECOT_SPAM_PROGRAMS.filterBinDir, spamdHost: "spamassassin", spamdPort: SPAMD_LISTENERS.spamd.port, timeoutSeconds: 30 }
            : undefined,
        imapsieveTraining: spam ? { pipeBinDir: DOVECOT_SPAM_PROGRAMS.pipeBinDir } : undefined,
        metricsPort: args.metrics ? SCRAPE_TARGETS.dovecot.port.number : undefined,
    };

    return {
        namespace: mail.namespace,
        podSecurity: plan.hostPorts ? "privileged" : "baseline",
        edge: plan,
        proxySources:
            edge.mode === "ingress-nginx"
                ? [{ namespace: INGRESS_NGINX_NAMESPACE, podLabels: { "app.kubernetes.io/name": "ingress-nginx" } }]
                : [{ cidrs: edge.proxyTrustedNetworks }],
        tls: tlsPlan(args),
        storageClassName: storage.className || undefined,
        couchdb: {
            image: services.couchdb.image,
            storageSize: storage.couchdbSize,
            database: services.couchdb.database,
            extraClients: [SYNC_APP, ...(args.backup ? Object.values(BACKUP_APPS) : [])],
        },
        couchmail: { ...image("couchmail"), database: services.couchdb.database, mailHome: mailRoot, staleAfterSeconds: COUCHMAIL_STALE_AFTER_SECONDS },
        couchmailSync: { domains: mail.domains, postmaster: mail.postmaster, egress: toCouchDb },
        dkim: { domains: mail.domains, selector: services.dkim.selector },
        opendkim: {
            ...image("opendkim"),
            settings: { ...OPENDKIM_DEFAULTS, domains: mail.domains, selector: services.dkim.selector, authservId: mail.hostname },
        },
        dovecot: {
            ...image("dovecot"),
            settings: dovecotSettings,
            mailSize: storage.mailSize,
            hostPorts: plan.hostPorts,
            colocateWith: plan.colocate ? appLabels("postfix", "mta").selector : undefined,
            delivery: { messageSizeLimit: services.postfix.messageSizeLimit, concurrency: POSTFIX_DEFAULTS.lmtpConcurrency },
            egress: [toCouchDb, ...(spam ? [to("spamassassin", SPAMD_LISTENERS.spamd.port)] : [])],
            passwordChange: !!args.webmail,
        },
        spamassassin: spam
            ? {
                  ...image("spamassassin"),
                  settings: {
                      ...SPAMASSASSIN_DEFAULTS,
                      requiredScore: services.spam.requiredScore,
                      maxChildren: services.spam.maxChildren,
                      clusterNetworks: services.spam.clusterNetworks,
                  },
                  storageSize: "1Gi",
                  training: { schedule: services.spam.trainSchedule, mailRoot, mailUid: VMAIL_UID },
              }
            : undefined,
        postgrey: greylist
            ? {
                  ...image("postgrey"),
                  settings: {
                      ...POSTGREY_DEFAULTS,
                      delaySeconds: services.greylist.delaySeconds,
                      whitelistClients: services.greylist.whitelistClients,
                      whitelistRecipients: services.greylist.whitelistRecipients,
                  },
                  storageSize: "1Gi",
              }
            : undefined,
        backup: args.backup
            ? {
                  ...image("backup"),
                  schedule: args.backup.schedule,
                  repository: args.backup.repository,
                  mail: { root: mailRoot, driver: dovecotSettings.mailDriver, uid: VMAIL_UID, size: storage.mailSize },
                  couchdb: { database: services.couchdb.database, port: COUCHDB_LISTENERS.http.port, app: "couchdb" },
              }
            : undefined,
        postfix: {
            ...image("postfix"),
            exporter: args.metrics ? image("postfix-exporter") : undefined,
            queueSize: storage.queueSize,
            hostPorts: plan.hostPorts,
            egress: [
                toCouchDb,
                to("dovecot", DOVECOT_LISTENERS.lmtp.port, DOVECOT_LISTENERS.authSasl.port),
                to("opendkim", OPENDKIM_LISTENERS.milter.port),
                ...(greylist ? [to("postgrey", POSTGREY_LISTENERS.policy.port)] : []),
            ],
            settings: {
                ...POSTFIX_DEFAULTS,
                hostname: mail.hostname,
                ownDomains: mail.domains,
                postmaster: mail.postmaster,
                // Postfix has no trusted-networks list for PROXY: its PROXY ports are reachable only from the edge.
                proxyProtocol: plan.backendProxy,
                relay: relay && { host: relay.host, port: relay.port, passwordMapFile: RELAY_PASSWORD_MAP },
                socketmap: `inet:127.0.0.1:${COUCHMAIL.socketmapPort}`,
                saslEndpoint: `inet:dovecot:${DOVECOT_LISTENERS.authSasl.port}`,
                lmtpEndpoint: `inet:dovecot:${DOVECOT_LISTENERS.lmtp.port}`,
                milters: [`inet:opendkim:${OPENDKIM_LISTENERS.milter.port}`],
                // Port 25 only: the renderer keeps the policy service off the submission ports.
                policyService: greylist ? `inet:postgrey:${POSTGREY_LISTENERS.policy.port}` : undefined,
                dnsbls: services.postfix.dnsbls,
                messageSizeLimit: services.postfix.messageSizeLimit,
                mainCfOverrides: services.postfix.mainCf,
                logToFile: !!args.metrics,
            },
        },
        dns: {
            hostname: mail.hostname,
            domains: mail.domains,
            dkimSelector: services.dkim.selector,
            postmaster: mail.postmaster,
            mtaSts: args.dns.mtaSts,
        },
        webmail: args.webmail && {
            ...image("webmail"),
            storageSize: "1Gi",
            hostPorts: plan.hostPorts,
            extraEgress: [to("dovecot", COUCHMAIL_PASSWORD_LISTENER.port)],
            // One load balancer Service with "Local" reaches only pods beside Postfix's (see EdgePlan.colocate).
            colocateWith: plan.colocate && !plan.webmailIngress ? appLabels("postfix", "mta").selector : undefined,
            route: plan.webmailIngress
                ? { hostname: args.webmail.hostname, bodySize: `${Math.ceil(maxUploadBytes(services.postfix.messageSizeLimit) / (1024 * 1024)) + 1}m` }
                : undefined,
            settings: {
                ...WEBMAIL_DEFAULTS,
                hostname: args.webmail.hostname,
                mailHostname: mail.hostname,
                imapHost: "dovecot",
                smtpHost: "postfix",
                // A self-signed stack certificate is its own trust anchor; a real one chains to the system's CAs.
                upstreamCaFile: args.tls.mode === "selfsigned" ? WEBMAIL_DEFAULTS.tls.certFile : undefined,
                messageSizeLimit: services.postfix.messageSizeLimit,
                proxyProtocol: webmailProxy,
                proxyTrustedNetworks: webmailProxy ? edge.proxyTrustedNetworks : [],
                // couchmail beside Dovecot, verified as the mail host (the name in the stack's certificate); the
                // minimum is couchmail's own (`couchmail user` and the endpoint refuse shorter ones).
                passwordApi: {
                    url: `https://dovecot:${COUCHMAIL_PASSWORD_LISTENER.port}/password`,
                    peerName: mail.hostname,
                    minimumLength: 8,
                },
            },
        },
        metrics: args.metrics && { ...args.metrics, scrapers: [{ namespace: args.metrics.namespace }] },
        warnings: stackWarnings(args, plan.port25Blocked),
    };
}

function tlsPlan(args: MailStackArgs): TlsPlan {
    const tls = args.tls;
    switch (tls.mode) {
        case "selfsigned":
        case "secret":
            return tls;
        case "acme": {
            // The config reader allows acme only with DNS-01 (dnsManage on a cloud) or HTTP-01 through ingress-nginx.
            const provider = args.clusterProvider;
            const solver: AcmeTlsArgs["solver"] =
                args.dns.manage && provider === "digitalocean"
                    ? { kind: "digitalocean", token: tls.digitaloceanToken! }
                    : args.dns.manage && provider === "gke"
                      ? { kind: "clouddns" }
                      : { kind: "http01", ingressClass: INGRESS_CLASS };
            return { mode: "acme", email: tls.email, server: tls.server, solver };
        }
    }
}

/** What the operator must fix or do by hand, known from the config alone. */
export function stackWarnings(args: MailStackArgs, port25Blocked: boolean): string[] {
    const warnings: string[] = [];
    if (port25Blocked && !args.relay) {
        warnings.push(
            `${args.clusterProvider} blocks outbound port 25 (DigitalOcean for new accounts, GCP always): mail to other servers will not leave; set relayHost, relayUsername and relayPassword`,
        );
    }
    if (args.edge.mode === "hostport") {
        warnings.push(
            `edgeMode hostport: the ${args.mail.namespace} namespace enforces Pod Security "privileged", because "baseline" forbids hostPort; violations of "baseline" are still audited. Prefer edgeMode loadbalancer where its cost is acceptable`,
        );
    }
    if (args.tls.mode === "selfsigned" && args.clusterProvider !== "kubeconfig") {
        warnings.push("tlsMode selfsigned: mail clients will reject the certificate; use acme or secret for a real deployment");
    }
    const reportDomain = domainOf(args.mail.postmaster);
    const others = args.mail.domains.filter((d) => d !== reportDomain);
    if (!args.mail.domains.includes(reportDomain) && others.length) {
        warnings.push(
            `mailPostmaster ${args.mail.postmaster} is outside the mail domains: publish ${others.map((d) => `${d}._report._dmarc.${reportDomain}`).join(", ")} TXT "v=DMARC1" in ${reportDomain}'s zone, or receivers send no DMARC reports there (RFC 7489 §7.1)`,
        );
    }
    const webmailHost = args.webmail?.hostname;
    if (webmailHost && webmailHost !== args.mail.hostname) {
        warnings.push(
            `webmailHostname ${webmailHost}: point its A record at the publicAddresses output${args.tls.mode === "secret" ? `, and make sure the certificate in ${args.tls.secretName} names it` : ""}`,
        );
    }
    if (args.dns.mtaSts !== "off") {
        warnings.push(
            "dnsMtaSts: serve the mtaStsPolicy output at https://mta-sts.<domain>/.well-known/mta-sts.txt for every domain, or senders ignore the policy",
        );
    }
    return warnings;
}
