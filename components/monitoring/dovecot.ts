// Dovecot 2.4's OpenMetrics exporter: the stats service's HTTP listener serves /metrics, and each `metric` block turns
// matching events into counters (`dovecot_<name>_total`, `dovecot_<name>_duration_seconds_total`) or, with a
// quantized group_by, histograms (https://doc.dovecot.org/2.3/configuration_manual/stats/openmetrics/; 2.4 keeps the
// format, https://doc.dovecot.org/latest/core/config/statistics.html). Events: https://doc.dovecot.org/latest/core/summaries/events.html

/** The stats service's HTTP listener (the port Dovecot's documentation uses). */
export const DOVECOT_METRICS_PORT = 9900;

interface MetricBlock {
    /** Exported as dovecot_<name>_…; letters, digits and underscores, as OpenMetrics requires. */
    name: string;
    /** Dovecot's HELP text reads "Total number of all events of this kind of <description>" ("Histogram of …"). */
    description: string;
    filter: string;
    groupBy?: { field: string; method: "discrete" | { exponential: { base: number; minMagnitude: number; maxMagnitude: number } } }[];
}

/** What the dashboard and alerts read: logins ok/failed, IMAP commands, deliveries and their latency, sieve actions. */
export const DOVECOT_METRICS: MetricBlock[] = [
    { name: "auth_success", description: "successful authentications", filter: "event=auth_request_finished AND success=yes" },
    { name: "auth_failures", description: "failed authentications", filter: "event=auth_request_finished AND NOT success=yes" },
    {
        name: "imap_command",
        description: "IMAP commands, by name and result",
        filter: "event=imap_command_finished",
        groupBy: [
            { field: "cmd_name", method: "discrete" },
            { field: "tagged_reply_state", method: "discrete" },
        ],
    },
    {
        name: "mail_delivery",
        description: "LMTP deliveries, by duration (10 ms to 10 s buckets)",
        filter: "event=mail_delivery_finished",
        groupBy: [{ field: "duration", method: { exponential: { base: 10, minMagnitude: 4, maxMagnitude: 7 } } }],
    },
    { name: "sieve_actions", description: "sieve actions executed at delivery", filter: "event=sieve_action_finished" },
];

function block(head: string, body: string[]): string[] {
    return [`${head} {`, ...body.map((l) => `  ${l}`), "}"];
}

/** The dovecot.conf lines that open the exporter on `port` and define DOVECOT_METRICS. */
export function dovecotMetricsConf(port: number): string[] {
    return [
        "# OpenMetrics on http://<pod>:" + port + "/metrics, for the scraper only (NetworkPolicy).",
        ...block("service stats", block("inet_listener http", [`port = ${port}`])),
        ...DOVECOT_METRICS.flatMap((m) =>
            block(`metric ${m.name}`, [
                `description = ${m.description}`,
                `filter = ${m.filter}`,
                ...(m.groupBy ?? []).flatMap((g) =>
                    block(
                        `group_by ${g.field}`,
                        typeof g.method === "string"
                            ? block(`method ${g.method}`, [])
                            : block("method exponential", [
                                  `base = ${g.method.exponential.base}`,
                                  `min_magnitude = ${g.method.exponential.minMagnitude}`,
                                  `max_magnitude = ${g.method.exponential.maxMagnitude}`,
                              ]),
                    ),
                ),
            ]),
        ),
    ];
}
