// The metrics contract: what each mail service exports, where, and which series the dashboard and the alert rules
// read. Every metric name the dashboard (dashboard.json) or the rules (rules.ts) use must be declared here or in
// CLUSTER_METRICS, and tests/monitoring checks that; the e2e scrape checks that the `moves` ones did move.
import { COUCHDB_METRICS_PORT } from "../couchdb/config";
import { POSTFIX_EXPORTER_LISTENER } from "../postfix/exporter";
import { DOVECOT_METRICS, DOVECOT_METRICS_PORT } from "./dovecot";

export type MetricType = "counter" | "gauge" | "histogram" | "summary";

export interface DeclaredMetric {
    /** The family name as scraped (counters end in _total; histograms add _bucket, _sum, _count series). */
    name: string;
    type: MetricType;
    /** True when one message received on port 25 and delivered to a local mailbox must change it. */
    moves: boolean;
    help: string;
}

export interface ScrapeTarget {
    /** The container port's name (an IANA service name: at most 15 characters) and number. */
    port: { name: string; number: number };
    path: string;
    /** Who serves it, for the README and error messages. */
    source: string;
    metrics: DeclaredMetric[];
}

/**
 * Dovecot 2.4's OpenMetrics names for the blocks in dovecot.ts: a block without a quantized group_by is exported as
 * `dovecot_<name>_total` (and `dovecot_<name>_duration_seconds_total`), one with it as a histogram `dovecot_<name>`
 * (https://doc.dovecot.org/2.3/configuration_manual/stats/openmetrics/). Dovecot 2.4.1 writes a `duration` histogram
 * in seconds — `le="0.010000"` for the 10^4 µs bucket, `_sum` in seconds — as dovecot-metrics.int.test.ts measured.
 */
const DOVECOT_MOVES_WITH_MAIL = ["mail_delivery"];
const DOVECOT: ScrapeTarget = {
    port: { name: "metrics-dovecot", number: DOVECOT_METRICS_PORT },
    path: "/metrics",
    source: "Dovecot's stats service (OpenMetrics listener)",
    metrics: DOVECOT_METRICS.map((block) => {
        const histogram = block.groupBy?.some((g) => typeof g.method !== "string") ?? false;
        return {
            name: histogram ? `dovecot_${block.name}` : `dovecot_${block.name}_total`,
            type: histogram ? "histogram" : "counter",
            moves: DOVECOT_MOVES_WITH_MAIL.includes(block.name),
            help: block.description,
        };
    }),
};

/**
 * Debian 13's prometheus-postfix-exporter (kumina/postfix_exporter, postfix_exporter.go): queue shape from the showq
 * socket on every scrape (histograms by `queue`, buckets 10^n: age 10 s … 10^8 s, size 1 kB … 1 GB) and counters from
 * Postfix's log. The smtp delivery histogram's `stage` label is always empty in that version (all four delays land in
 * one series), so outbound volume is read from qmgr removals and the smtp connection counters instead.
 */
const POSTFIX: ScrapeTarget = {
    port: { name: POSTFIX_EXPORTER_LISTENER.name, number: POSTFIX_EXPORTER_LISTENER.port },
    path: "/metrics",
    source: "prometheus-postfix-exporter (sidecar in the Postfix pod)",
    metrics: [
        { name: "postfix_up", type: "gauge", moves: false, help: "1 when the last showq scrape (label path) worked" },
        { name: "postfix_showq_message_age_seconds", type: "histogram", moves: false, help: "messages in the queue by age, label queue" },
        { name: "postfix_showq_message_size_bytes", type: "histogram", moves: false, help: "messages in the queue by size, label queue" },
        { name: "postfix_smtpd_connects_total", type: "counter", moves: true, help: "incoming SMTP connections" },
        { name: "postfix_smtpd_messages_processed_total", type: "counter", moves: true, help: "messages smtpd accepted into the queue, label sasl_method" },
        { name: "postfix_smtpd_messages_rejected_total", type: "counter", moves: false, help: "NOQUEUE rejects by SMTP code" },
        { name: "postfix_smtpd_sasl_authentication_failures_total", type: "counter", moves: false, help: "SMTP AUTH failures" },
        { name: "postfix_cleanup_messages_processed_total", type: "counter", moves: true, help: "messages cleanup accepted (every source)" },
        { name: "postfix_cleanup_messages_rejected_total", type: "counter", moves: false, help: "messages cleanup rejected (milters, header checks)" },
        { name: "postfix_qmgr_messages_removed_total", type: "counter", moves: true, help: "messages done (delivered or bounced) and removed from the queue" },
        {
            name: "postfix_lmtp_delivery_delay_seconds",
            type: "histogram",
            moves: true,
            help: "LMTP delivery delays by stage (before_queue_manager, queue_manager, connection_setup, transmission)",
        },
        { name: "postfix_smtp_delivery_delay_seconds", type: "histogram", moves: false, help: "outbound SMTP delivery delays (four observations per attempt)" },
        { name: "postfix_smtp_status_deferred", type: "counter", moves: false, help: "outbound SMTP attempts that were deferred" },
        { name: "postfix_smtp_connection_timed_out_total", type: "counter", moves: false, help: "outbound SMTP connections that timed out" },
    ],
};

/** couchmail's own registry (couchmail/src/metrics.ts), served on its metrics-only listener. */
const COUCHMAIL: ScrapeTarget = {
    port: { name: "metrics-cmail", number: 9101 },
    path: "/metrics",
    source: "couchmail (sidecar in the Postfix and Dovecot pods)",
    metrics: [
        { name: "couchmail_lookups_total", type: "counter", moves: true, help: "lookups by map and result (ok, notfound, temp)" },
        { name: "couchmail_lookup_duration_seconds", type: "histogram", moves: true, help: "time to answer one lookup, by map" },
        { name: "couchmail_lookup_failures_total", type: "counter", moves: false, help: "lookups whose handler threw" },
        { name: "couchmail_cache_loaded", type: "gauge", moves: false, help: "1 once the first full load completed" },
        { name: "couchmail_cache_stale", type: "gauge", moves: false, help: "1 when the changes feed has been lost longer than its bound" },
        { name: "couchmail_feed_lag_seconds", type: "gauge", moves: false, help: "seconds since the changes feed was last heard from (-1: never)" },
        { name: "couchmail_cache_documents", type: "gauge", moves: false, help: "documents held in memory" },
        { name: "couchmail_policy_decisions_total", type: "counter", moves: false, help: "auth policy answers by decision and limit" },
    ],
};

/**
 * CouchDB 3.4's Prometheus endpoint (src/couch_prometheus: couch_prometheus_util.erl names each couch_stats path
 * `couchdb_<path>`, counters with _total, histograms as summaries `<path>_seconds`). The `[prometheus]` additional
 * port serves `/_node/_local/_prometheus` without authentication (couch_prometheus_http.erl has no auth step), so
 * only the scraper may reach it (NetworkPolicy). Mail does not touch CouchDB (couchmail answers from memory).
 */
const COUCHDB: ScrapeTarget = {
    port: { name: "metrics-couchdb", number: COUCHDB_METRICS_PORT },
    path: "/_node/_local/_prometheus",
    source: "CouchDB's [prometheus] additional port",
    metrics: [
        { name: "couchdb_uptime_seconds", type: "counter", moves: false, help: "seconds since CouchDB started" },
        {
            name: "couchdb_httpd_request_methods",
            type: "counter",
            moves: false,
            help: "HTTP requests by method (no _total: a special case of couch_prometheus_util)",
        },
        { name: "couchdb_httpd_status_codes", type: "counter", moves: false, help: "HTTP responses by status code (no _total, as above)" },
        { name: "couchdb_database_reads_total", type: "counter", moves: false, help: "document reads" },
        { name: "couchdb_database_writes_total", type: "counter", moves: false, help: "document writes" },
        { name: "couchdb_open_databases", type: "gauge", moves: false, help: "open databases" },
    ],
};

export const SCRAPE_TARGETS = { dovecot: DOVECOT, postfix: POSTFIX, couchmail: COUCHMAIL, couchdb: COUCHDB } as const;
export type TargetName = keyof typeof SCRAPE_TARGETS;

/** The headless Service Prometheus scrapes a target through (also the job name the Prometheus Operator gives it). */
export const metricsServiceName = (target: TargetName): string => `${target}-metrics`;

/**
 * Series the dashboard and rules read from the cluster's own exporters, as kube-prometheus-stack scrapes them:
 * cAdvisor through the kubelet (labels namespace, pod, container), kube-state-metrics, the kubelet's volume stats
 * (namespace, persistentvolumeclaim) and cert-manager's controller (name, namespace of the Certificate).
 */
export const CLUSTER_METRICS: DeclaredMetric[] = [
    {
        name: "container_memory_working_set_bytes",
        type: "gauge",
        moves: false,
        help: "cAdvisor: memory the kernel would not reclaim (what the OOM killer compares)",
    },
    { name: "kube_pod_container_resource_limits", type: "gauge", moves: false, help: "kube-state-metrics: limits by resource and unit" },
    { name: "kube_pod_container_resource_requests", type: "gauge", moves: false, help: "kube-state-metrics: requests by resource and unit" },
    { name: "kubelet_volume_stats_used_bytes", type: "gauge", moves: false, help: "kubelet: bytes used on a mounted claim" },
    { name: "kubelet_volume_stats_capacity_bytes", type: "gauge", moves: false, help: "kubelet: capacity of a mounted claim" },
    { name: "certmanager_certificate_expiration_timestamp_seconds", type: "gauge", moves: false, help: "cert-manager: the Certificate's notAfter" },
    { name: "up", type: "gauge", moves: false, help: "Prometheus: 1 when the last scrape of a target worked" },
];

const SERIES_SUFFIXES: Record<MetricType, string[]> = {
    counter: [""],
    gauge: [""],
    histogram: ["_bucket", "_sum", "_count"],
    summary: ["", "_sum", "_count"],
};

/** Every series name a query may use: the declared families with their type's series suffixes. */
export function declaredSeries(): Set<string> {
    const families = [...Object.values(SCRAPE_TARGETS).flatMap((t) => t.metrics), ...CLUSTER_METRICS];
    return new Set(families.flatMap((m) => SERIES_SUFFIXES[m.type].map((suffix) => m.name + suffix)));
}
