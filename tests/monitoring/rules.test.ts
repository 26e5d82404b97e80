// The alert rules and the dashboard's queries through the real promtool: rule files load, every dashboard query
// parses, and `promtool test rules` makes each alert fire on a synthetic series that should fire it — and stay quiet
// on one that should not. Every metric name they use must be in the contract (components/monitoring/metrics.ts).
import { CLUSTER_METRICS, declaredSeries, SCRAPE_TARGETS } from "../../components/monitoring/metrics";
import { POSTFIX_EXPORTER_METRICS } from "../../components/postfix/exporter";
import type { Cache } from "../../couchmail/src/cache";
import { Metrics } from "../../couchmail/src/metrics";
import { newStats, prometheusText } from "../../couchmail/test/couchdb-front";
import { AlertRule, ALERT_THRESHOLDS, CertificateExpiry, mailAlertRules, RuleGroup } from "../../components/monitoring/rules";
import { asGrafanaSends, dashboardQueries, metricNames, promtool } from "./promql";

const NS = "mail";
const CLAIM = "mail-dovecot-0";
const DAY = 86400;
const rulesFor = (certificate: CertificateExpiry) => ({ groups: mailAlertRules({ namespace: NS, mailClaimName: CLAIM, certificate }) });
const CERT_MANAGER: CertificateExpiry = { source: "cert-manager", name: "mail-tls" };
const SELF_SIGNED: CertificateExpiry = { source: "notAfter", notAfter: new Date("2027-01-01T00:00:00Z") };
const NO_EXPIRY: CertificateExpiry = { source: "none" };
const allRules = (groups: RuleGroup[]): AlertRule[] => groups.flatMap((g) => g.rules);

/** Names used by an expression that the contract does not declare. */
const undeclared = (expr: string) => metricNames(expr).filter((n) => !declaredSeries().has(n));

describe("the contract", () => {
    test("every metric port is a distinct IANA service name (a container port name: at most 15 characters)", () => {
        const ports = Object.values(SCRAPE_TARGETS).map((t) => t.port);
        for (const { name } of ports) expect({ name, ok: /^(?=.*[a-z])(?!.*--)[a-z0-9]([a-z0-9-]{0,13}[a-z0-9])?$/.test(name) }).toEqual({ name, ok: true });
        expect(new Set(ports.map((p) => p.name)).size).toBe(ports.length);
        expect(Object.fromEntries(Object.entries(SCRAPE_TARGETS).map(([k, t]) => [k, t.port.number]))).toEqual({
            dovecot: 9900,
            postfix: 9154,
            couchmail: 9101,
            couchdb: 17986,
        });
    });

    test("every family is declared once; counters end in _total but for the exporters' own exceptions", () => {
        const families = [...Object.values(SCRAPE_TARGETS).flatMap((t) => t.metrics), ...CLUSTER_METRICS];
        expect(new Set(families.map((m) => m.name)).size).toBe(families.length);
        const oddCounters = families.filter((m) => m.type === "counter" && !m.name.endsWith("_total")).map((m) => m.name);
        expect(oddCounters.sort()).toEqual([
            "couchdb_httpd_request_methods",
            "couchdb_httpd_status_codes",
            "couchdb_uptime_seconds",
            "postfix_smtp_status_deferred",
        ]);
    });

    test("the Postfix metrics that must move with mail are ones the exporter's real-daemon test saw move", () => {
        const moving = SCRAPE_TARGETS.postfix.metrics.filter((m) => m.moves).map((m) => m.name);
        expect(moving.length).toBeGreaterThan(3);
        expect(moving.filter((name) => !(POSTFIX_EXPORTER_METRICS as readonly string[]).includes(name))).toEqual([]);
    });

    test("the Dovecot entries follow the metric blocks Dovecot is configured with", () => {
        expect(SCRAPE_TARGETS.dovecot.metrics.map((m) => [m.name, m.type])).toEqual([
            ["dovecot_auth_success_total", "counter"],
            ["dovecot_auth_failures_total", "counter"],
            ["dovecot_imap_command_total", "counter"],
            ["dovecot_mail_delivery", "histogram"],
            ["dovecot_sieve_actions_total", "counter"],
        ]);
    });
});

/** `# TYPE <family> <type>` lines of an exposition: what a scraper learns each family is. */
const typesIn = (exposition: string) => new Map([...exposition.matchAll(/^# TYPE (\S+) (\S+)$/gm)].map((m) => [m[1], m[2]]));

describe("the contract against what the services serve", () => {
    test("couchmail's registry has every couchmail family, of the declared type", async () => {
        const cache = { snapshot: undefined, loaded: false, stale: false, lastFeedAliveAt: 0, lastChangeAt: 0 } as unknown as Cache;
        const served = typesIn(await new Metrics(cache, { tracked: {} } as ConstructorParameters<typeof Metrics>[1]).registry.metrics());
        expect(SCRAPE_TARGETS.couchmail.metrics.map((m) => [m.name, served.get(m.name)])).toEqual(
            SCRAPE_TARGETS.couchmail.metrics.map((m) => [m.name, m.type]),
        );
    });

    test("CouchDB's endpoint (as the substitute renders couch_prometheus) has every CouchDB family, of the declared type", () => {
        const stats = newStats();
        stats.requestMethods.set("GET", 1);
        stats.statusCodes.set(200, 1);
        const served = typesIn(prometheusText(stats, 1));
        expect(SCRAPE_TARGETS.couchdb.metrics.map((m) => [m.name, served.get(m.name)])).toEqual(SCRAPE_TARGETS.couchdb.metrics.map((m) => [m.name, m.type]));
    });
});

describe("metric names", () => {
    test("the name reader finds selectors, not functions, labels, keywords or numbers", () => {
        expect(
            metricNames(
                'histogram_quantile(0.95, sum by (le) (rate(a_bucket{x="y", le=~"1(\\\\.0)?"}[5m]))) / 1e6 + on (pod) group_left (container) b - ignoring(le) c > bool 2 or vector(1) unless d offset 5m',
            ),
        ).toEqual(["a_bucket", "b", "c", "d"]);
    });

    test("a misspelled name is caught", () => {
        expect(undeclared("sum(rate(postfix_smtpd_conects_total[5m]))")).toEqual(["postfix_smtpd_conects_total"]);
        expect(undeclared("sum(rate(couchmail_lookups_total[5m]))")).toEqual([]);
    });

    test("every dashboard query uses only declared metrics", () => {
        const queries = dashboardQueries();
        expect(queries.length).toBeGreaterThan(15);
        expect(queries.map((q) => ({ panel: q.panel, undeclared: undeclared(q.expr) })).filter((q) => q.undeclared.length > 0)).toEqual([]);
    });

    test.each([
        ["cert-manager", CERT_MANAGER],
        ["notAfter", SELF_SIGNED],
    ])("every alert (certificate from %s) uses only declared metrics", (_, certificate) => {
        const rules = allRules(rulesFor(certificate).groups);
        expect(rules.map((r) => ({ alert: r.alert, undeclared: undeclared(r.expr) })).filter((r) => r.undeclared.length > 0)).toEqual([]);
    });
});

describe("promtool check", () => {
    test.each([
        ["cert-manager", CERT_MANAGER, 8],
        ["a self-signed certificate's end", SELF_SIGNED, 8],
        ["nowhere (a supplied Secret)", NO_EXPIRY, 7],
    ])("the rule file loads with the certificate's expiry from %s", (_, certificate, count) => {
        const r = promtool(["check", "rules", "mail.rules.yaml"], { "mail.rules.yaml": rulesFor(certificate) });
        expect(r.output).toContain(`SUCCESS: ${count} rules found`);
        expect(r.status).toBe(0);
    });

    test("promtool refuses a broken expression (the check can fail)", () => {
        const r = promtool(["check", "rules", "broken.yaml"], {
            "broken.yaml": { groups: [{ name: "x", rules: [{ alert: "X", expr: "sum(rate(up[5m])" }] }] },
        });
        expect(r.status).not.toBe(0);
        expect(r.output).toMatch(/unclosed left parenthesis/);
    });

    test("every dashboard query parses, as Grafana sends it", () => {
        const rules = dashboardQueries().map((q, i) => ({ record: `dashboard:query_${i}`, expr: asGrafanaSends(q.expr, NS) }));
        const r = promtool(["check", "rules", "dashboard.yaml"], { "dashboard.yaml": { groups: [{ name: "dashboard", rules }] } });
        expect(r.output).toContain(`SUCCESS: ${rules.length} rules found`);
        expect(r.status).toBe(0);
    });
});

/** One `promtool test rules` case: input series, and per evaluation time the alerts (of `alertname`) expected then. */
interface AlertCase {
    name: string;
    series: { series: string; values: string }[];
    alertname: string;
    expect: { at: string; alerts: { labels: Record<string, string>; value: string }[] }[];
}

/** The annotations promtool expands for an alert: `{{ $labels.x }}`, `{{ $value }}` and humanizePercentage. */
function expandAnnotations(rule: AlertRule, labels: Record<string, string>, value: string): Record<string, string> {
    const expand = (text: string) =>
        text
            .replace(/\{\{ \$labels\.(\w+) \}\}/g, (_, l: string) => labels[l] ?? "")
            .replace(/\{\{ \$value \| humanizePercentage \}\}/g, `${Number(value) * 100}%`)
            .replace(/\{\{ \$value \}\}/g, value);
    return { summary: expand(rule.annotations.summary), description: expand(rule.annotations.description) };
}

function runAlertCases(certificate: CertificateExpiry, cases: AlertCase[]) {
    const file = rulesFor(certificate);
    const rules = allRules(file.groups);
    const tests = cases.map((c) => {
        const rule = rules.find((r) => r.alert === c.alertname)!;
        return {
            name: c.name,
            interval: "1m",
            input_series: c.series,
            alert_rule_test: c.expect.map((e) => ({
                eval_time: e.at,
                alertname: c.alertname,
                exp_alerts: e.alerts.map((a) => ({
                    exp_labels: { severity: rule.labels.severity, ...a.labels },
                    exp_annotations: expandAnnotations(rule, a.labels, a.value),
                })),
            })),
        };
    });
    return promtool(["test", "rules", "tests.yaml"], {
        "mail.rules.yaml": file,
        "tests.yaml": { rule_files: ["mail.rules.yaml"], evaluation_interval: "1m", tests },
    });
}

const POSTFIX_POD = { namespace: NS, pod: "postfix-0" };
const sel = (name: string, labels: Record<string, string>) =>
    `${name}{${Object.entries(labels)
        .map(([k, v]) => `${k}="${v}"`)
        .join(", ")}}`;

describe("promtool test rules: the alerts fire when they should, and only then", () => {
    test("MailDeferredOverAnHour: one message deferred from the start fires after 1000 s plus 45 minutes", () => {
        const deferred = { ...POSTFIX_POD, queue: "deferred" };
        // The message is 0 s old at t=0: in the le=1000 bucket for the first 16 minutes (1000 s), then only in the count.
        const series = (le: string) => [
            { series: sel("postfix_showq_message_age_seconds_count", deferred), values: "1x120" },
            { series: sel("postfix_showq_message_age_seconds_bucket", { ...deferred, le }), values: "1x16 0x104" },
        ];
        const expectations = [
            { at: "60m", alerts: [] },
            { at: "63m", alerts: [{ labels: POSTFIX_POD, value: "1" }] },
        ];
        const r = runAlertCases(CERT_MANAGER, [
            { name: "Prometheus 2 (le as sent)", series: series("1000"), alertname: "MailDeferredOverAnHour", expect: expectations },
            // Prometheus 3 normalizes le to a float: the matcher must accept it.
            { name: "Prometheus 3 (le as a float)", series: series("1000.0"), alertname: "MailDeferredOverAnHour", expect: expectations },
            {
                name: "fresh deferrals only",
                series: [
                    { series: sel("postfix_showq_message_age_seconds_count", deferred), values: "3x120" },
                    { series: sel("postfix_showq_message_age_seconds_bucket", { ...deferred, le: "1000" }), values: "3x120" },
                ],
                alertname: "MailDeferredOverAnHour",
                expect: [{ at: "119m", alerts: [] }],
            },
        ]);
        expect(r.output).toContain("SUCCESS");
        expect(r.status).toBe(0);
    });

    test("MailQueueGrowing: a queue that grows past the threshold fires after 15 minutes; a big steady one does not", () => {
        const active = { ...POSTFIX_POD, queue: "active" };
        const r = runAlertCases(CERT_MANAGER, [
            {
                name: "growing",
                series: [{ series: sel("postfix_showq_message_age_seconds_count", active), values: "0+1x90" }],
                alertname: "MailQueueGrowing",
                // Over 20 messages from t=21m, growing all along: pending 15 minutes from then.
                expect: [
                    { at: "35m", alerts: [] },
                    { at: "40m", alerts: [{ labels: POSTFIX_POD, value: "40" }] },
                ],
            },
            {
                name: "steady",
                series: [{ series: sel("postfix_showq_message_age_seconds_count", active), values: "50x90" }],
                alertname: "MailQueueGrowing",
                expect: [{ at: "89m", alerts: [] }],
            },
        ]);
        expect(r.output).toContain("SUCCESS");
        expect(r.status).toBe(0);
    });

    test("MailMetricsDown: a failing scrape of one of the stack's metrics Services, not of anything else in the namespace", () => {
        const target = (job: string) => ({ namespace: NS, pod: "couchdb-0", job });
        const r = runAlertCases(CERT_MANAGER, [
            {
                name: "couchdb-metrics down",
                series: [
                    { series: sel("up", target("couchdb-metrics")), values: "0x20" },
                    { series: sel("up", target("something-else")), values: "0x20" },
                ],
                alertname: "MailMetricsDown",
                expect: [
                    { at: "9m", alerts: [] },
                    { at: "11m", alerts: [{ labels: target("couchdb-metrics"), value: "0" }] },
                ],
            },
        ]);
        expect(r.output).toContain("SUCCESS");
        expect(r.status).toBe(0);
    });

    test("CouchmailNotLoaded and CouchmailFeedStalled", () => {
        const sidecar = { namespace: NS, pod: "dovecot-0", container: "couchmail" };
        const r = runAlertCases(CERT_MANAGER, [
            {
                name: "never loaded",
                series: [{ series: sel("couchmail_cache_loaded", sidecar), values: "0x20" }],
                alertname: "CouchmailNotLoaded",
                expect: [
                    { at: "4m", alerts: [] },
                    { at: "6m", alerts: [{ labels: sidecar, value: "0" }] },
                ],
            },
            {
                name: "loaded",
                series: [{ series: sel("couchmail_cache_loaded", sidecar), values: "1x20" }],
                alertname: "CouchmailNotLoaded",
                expect: [{ at: "19m", alerts: [] }],
            },
            {
                name: "feed silent",
                series: [
                    { series: sel("couchmail_cache_stale", sidecar), values: "0x30" },
                    { series: sel("couchmail_feed_lag_seconds", sidecar), values: "0+60x30" },
                ],
                alertname: "CouchmailFeedStalled",
                // Lag over 600 s from t=11m; firing 5 minutes later.
                expect: [
                    { at: "15m", alerts: [] },
                    { at: "16m", alerts: [{ labels: sidecar, value: "960" }] },
                ],
            },
        ]);
        expect(r.output).toContain("SUCCESS");
        expect(r.status).toBe(0);
    });

    test(`MailVolumeAlmostFull over ${ALERT_THRESHOLDS.mailVolumeUsedRatio * 100} %, for the mail claim only`, () => {
        const claim = (name: string) => ({ namespace: NS, persistentvolumeclaim: name });
        const volume = (name: string, used: number) => [
            { series: sel("kubelet_volume_stats_used_bytes", claim(name)), values: `${used}x30` },
            { series: sel("kubelet_volume_stats_capacity_bytes", claim(name)), values: "100x30" },
        ];
        const r = runAlertCases(CERT_MANAGER, [
            {
                name: "mail 90 %, queue 95 %",
                series: [...volume(CLAIM, 90), ...volume("queue-postfix-0", 95)],
                alertname: "MailVolumeAlmostFull",
                expect: [{ at: "11m", alerts: [{ labels: claim(CLAIM), value: "0.9" }] }],
            },
            { name: "mail 80 %", series: volume(CLAIM, 80), alertname: "MailVolumeAlmostFull", expect: [{ at: "29m", alerts: [] }] },
        ]);
        expect(r.output).toContain("SUCCESS");
        expect(r.status).toBe(0);
    });

    test("MailCertificateExpiresSoon from cert-manager's metric: 10 days left fires, 30 days does not", () => {
        const cert = { namespace: NS, name: "mail-tls" };
        const r = runAlertCases(CERT_MANAGER, [
            {
                name: "10 days",
                series: [{ series: sel("certmanager_certificate_expiration_timestamp_seconds", cert), values: `${10 * DAY}x120` }],
                alertname: "MailCertificateExpiresSoon",
                expect: [{ at: "61m", alerts: [{ labels: cert, value: String(10 * DAY - 61 * 60) }] }],
            },
            {
                name: "30 days",
                series: [{ series: sel("certmanager_certificate_expiration_timestamp_seconds", cert), values: `${30 * DAY}x120` }],
                alertname: "MailCertificateExpiresSoon",
                expect: [{ at: "119m", alerts: [] }],
            },
        ]);
        expect(r.output).toContain("SUCCESS");
        expect(r.status).toBe(0);
    });

    test("MailCertificateExpiresSoon from a self-signed certificate's end (promtool's clock starts at the epoch)", () => {
        const soon = runAlertCases({ source: "notAfter", notAfter: new Date(10 * DAY * 1000) }, [
            {
                name: "10 days",
                series: [],
                alertname: "MailCertificateExpiresSoon",
                expect: [{ at: "61m", alerts: [{ labels: {}, value: String(10 * DAY - 61 * 60) }] }],
            },
        ]);
        expect(soon.output).toContain("SUCCESS");
        const later = runAlertCases({ source: "notAfter", notAfter: new Date(30 * DAY * 1000) }, [
            { name: "30 days", series: [], alertname: "MailCertificateExpiresSoon", expect: [{ at: "61m", alerts: [] }] },
        ]);
        expect(later.output).toContain("SUCCESS");
    });

    test("a wrong expectation fails (the unit tests can fail)", () => {
        const sidecar = { namespace: NS, pod: "dovecot-0", container: "couchmail" };
        const r = runAlertCases(CERT_MANAGER, [
            {
                name: "loaded, yet expected to fire",
                series: [{ series: sel("couchmail_cache_loaded", sidecar), values: "1x20" }],
                alertname: "CouchmailNotLoaded",
                expect: [{ at: "10m", alerts: [{ labels: sidecar, value: "0" }] }],
            },
        ]);
        expect(r.status).not.toBe(0);
        expect(r.output).toMatch(/FAILED/);
    });
});
