// The alert rules, as the `groups` of a PrometheusRule (the same shape as a Prometheus rule file, so promtool checks
// and unit-tests them as they are). Every metric name comes from the contract in metrics.ts.
import { metricsServiceName, SCRAPE_TARGETS, TargetName } from "./metrics";

export interface AlertRule {
    alert: string;
    expr: string;
    for?: string;
    labels: { severity: "warning" | "critical" };
    annotations: { summary: string; description: string };
}

export interface RuleGroup {
    name: string;
    rules: AlertRule[];
}

/**
 * Where the certificate's expiry comes from. `cert-manager`: its controller's
 * `certmanager_certificate_expiration_timestamp_seconds` for the Certificate (scraped when cert-manager's own
 * ServiceMonitor is on). `notAfter`: a certificate Pulumi made (the self-signed one), whose end is known at deploy
 * time. `none`: a certificate the operator supplies as a Secret; nothing in the cluster exports its expiry.
 */
export type CertificateExpiry = { source: "cert-manager"; name: string } | { source: "notAfter"; notAfter: Date } | { source: "none" };

export interface AlertRuleArgs {
    /** The mail stack's namespace: every alert is limited to it. */
    namespace: string;
    /** Dovecot's mail volume claim (the kubelet's volume stats are labelled by claim). */
    mailClaimName: string;
    certificate: CertificateExpiry;
}

/** When the alerts fire (the README's "Metrics" section quotes them). */
export const ALERT_THRESHOLDS = {
    /** Messages in Postfix's queues (all of them) before a growing queue is worth an alert. */
    queueMessages: 20,
    certificateDays: 14,
    mailVolumeUsedRatio: 0.85,
    /** couchmail's changes feed silent this long (its heartbeat is far shorter). */
    feedLagSeconds: 600,
} as const;

/**
 * The exporter's showq age histogram has buckets at 10^n seconds; Prometheus 3 writes `le` as a float ("1000.0"),
 * Prometheus 2 as the exporter sent it ("1000"), so the matcher accepts both.
 */
const AGE_OVER_1000S = (namespace: string) =>
    `postfix_showq_message_age_seconds_count{namespace="${namespace}", queue="deferred"} - ignoring(le) postfix_showq_message_age_seconds_bucket{namespace="${namespace}", queue="deferred", le=~"1000(\\\\.0)?"}`;

function certificateRule(namespace: string, certificate: CertificateExpiry): AlertRule[] {
    const seconds = ALERT_THRESHOLDS.certificateDays * 86400;
    const common = {
        alert: "MailCertificateExpiresSoon",
        for: "1h",
        labels: { severity: "warning" as const },
        annotations: {
            summary: `The mail TLS certificate expires in less than ${ALERT_THRESHOLDS.certificateDays} days`,
            description: "",
        },
    };
    switch (certificate.source) {
        case "cert-manager":
            return [
                {
                    ...common,
                    expr: `certmanager_certificate_expiration_timestamp_seconds{namespace="${namespace}", name="${certificate.name}"} - time() < ${seconds}`,
                    annotations: {
                        ...common.annotations,
                        description: `cert-manager has not renewed Certificate ${certificate.name}: check \`kubectl -n ${namespace} describe certificate ${certificate.name}\` and its CertificateRequest/Order.`,
                    },
                },
            ];
        case "notAfter":
            return [
                {
                    ...common,
                    expr: `vector(${Math.floor(certificate.notAfter.getTime() / 1000)}) - time() < ${seconds}`,
                    annotations: {
                        ...common.annotations,
                        description: `The self-signed certificate ends ${certificate.notAfter.toISOString()}; \`pulumi up\` within its last 30 days issues a new one.`,
                    },
                },
            ];
        case "none":
            return [];
    }
}

/** The mail stack's alerts (issue: queue growing, deferred over an hour, certificate, couchmail, mail volume). */
export function mailAlertRules(args: AlertRuleArgs): RuleGroup[] {
    const ns = `namespace="${args.namespace}"`;
    const t = ALERT_THRESHOLDS;
    return [
        {
            name: "mail.postfix",
            rules: [
                {
                    alert: "MailQueueGrowing",
                    expr: `sum by (namespace, pod) (postfix_showq_message_age_seconds_count{${ns}}) > ${t.queueMessages} and sum by (namespace, pod) (delta(postfix_showq_message_age_seconds_count{${ns}}[30m])) > 0`,
                    for: "15m",
                    labels: { severity: "warning" },
                    annotations: {
                        summary: "Postfix's queue holds more than " + t.queueMessages + " messages and is still growing",
                        description:
                            "{{ $labels.pod }} queues {{ $value }} messages, more than 30 minutes ago. Run `postqueue -p` in the Postfix container to see why.",
                    },
                },
                {
                    alert: "MailDeferredOverAnHour",
                    // Buckets are 1000 s then 10000 s: mail older than 1000 s that stays deferred for 45 more minutes.
                    expr: `sum by (namespace, pod) (${AGE_OVER_1000S(args.namespace)}) > 0`,
                    for: "45m",
                    labels: { severity: "warning" },
                    annotations: {
                        summary: "Mail has been waiting in Postfix's deferred queue for over an hour",
                        description:
                            "{{ $labels.pod }} holds {{ $value }} deferred messages older than 1000 s, for 45 minutes now. `postqueue -p` shows the reason per recipient.",
                    },
                },
                {
                    alert: "MailExporterDown",
                    expr: `postfix_up{${ns}} == 0`,
                    for: "10m",
                    labels: { severity: "warning" },
                    annotations: {
                        summary: "The Postfix exporter cannot read the queue",
                        description: "{{ $labels.pod }}: the exporter's showq requests fail, so the queue alerts are blind.",
                    },
                },
            ],
        },
        {
            name: "mail.scrape",
            rules: [
                {
                    alert: "MailMetricsDown",
                    // The Prometheus Operator names a ServiceMonitor target's job after its Service.
                    expr: `up{${ns}, job=~"${Object.keys(SCRAPE_TARGETS)
                        .map((t) => metricsServiceName(t as TargetName))
                        .join("|")}"} == 0`,
                    for: "10m",
                    labels: { severity: "warning" },
                    annotations: {
                        summary: "Prometheus cannot scrape a mail service's metrics",
                        description:
                            "{{ $labels.job }} on {{ $labels.pod }}: the scrape fails (service down, metrics listener off, or a NetworkPolicy that does not admit the scraper).",
                    },
                },
            ],
        },
        {
            name: "mail.couchmail",
            rules: [
                {
                    alert: "CouchmailNotLoaded",
                    expr: `couchmail_cache_loaded{${ns}} == 0`,
                    for: "5m",
                    labels: { severity: "critical" },
                    annotations: {
                        summary: "couchmail has not loaded the mail database",
                        description:
                            "{{ $labels.pod }}: every lookup answers a temporary failure (mail is deferred, logins fail) until the first full load from CouchDB completes.",
                    },
                },
                {
                    alert: "CouchmailFeedStalled",
                    expr: `couchmail_cache_stale{${ns}} == 1 or couchmail_feed_lag_seconds{${ns}} > ${t.feedLagSeconds}`,
                    for: "5m",
                    labels: { severity: "warning" },
                    annotations: {
                        summary: "couchmail no longer follows CouchDB's changes feed",
                        description:
                            "{{ $labels.pod }} answers from a copy that may be old: new users, aliases and passwords are not seen. Check CouchDB and the sidecar's log.",
                    },
                },
            ],
        },
        {
            name: "mail.storage",
            rules: [
                {
                    alert: "MailVolumeAlmostFull",
                    expr: `kubelet_volume_stats_used_bytes{${ns}, persistentvolumeclaim="${args.mailClaimName}"} / kubelet_volume_stats_capacity_bytes{${ns}, persistentvolumeclaim="${args.mailClaimName}"} > ${t.mailVolumeUsedRatio}`,
                    for: "10m",
                    labels: { severity: "warning" },
                    annotations: {
                        summary: `The mail volume is more than ${t.mailVolumeUsedRatio * 100} % full`,
                        description: `Claim ${args.mailClaimName} is {{ $value | humanizePercentage }} full. Raise mailSize (the claim is resized in place) before deliveries fail.`,
                    },
                },
            ],
        },
        ...(args.certificate.source === "none" ? [] : [{ name: "mail.tls", rules: certificateRule(args.namespace, args.certificate) }]),
    ];
}
