// The stack's monitoring objects: per scrape target a headless `<target>-metrics` Service (annotated prometheus.io/*
// for annotation-driven Prometheus setups); with the Prometheus Operator's CRDs, a ServiceMonitor per target and a
// PrometheusRule with the alerts; and the Grafana dashboard as a ConfigMap for Grafana's sidecar. Who may reach the
// metrics ports is each workload's own NetworkPolicy's business (components/kube.ts: only the scraper's namespace).
import * as crypto from "crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { ConfigError, dnsLabel, labelName, labelValue } from "../config/checks";
import { appLabels, Labels } from "../kube";
import dashboard from "./dashboard.json";
import { metricsServiceName, SCRAPE_TARGETS, TargetName } from "./metrics";
import { CertificateExpiry, mailAlertRules } from "./rules";

export interface MonitoringTarget {
    /**
     * Labels of the pods that serve the target's metrics port (SCRAPE_TARGETS[target].port). The Service targets the
     * port by name, so a broader selector is fine: pods without a port of that name are no endpoints of it.
     */
    selector: Labels;
}

/** Where the certificate's expiry comes from; `selfSigned` reads it from the PEM Pulumi made (rules.ts). */
export type CertificateSource = { source: "cert-manager"; name: string } | { source: "selfSigned"; certificatePem: pulumi.Input<string> } | { source: "none" };

export interface MonitoringArgs {
    /** The mail stack's namespace. */
    namespace: string;
    /** The namespace of the Prometheus that scrapes the stack: the dashboard ConfigMap goes there. */
    scraperNamespace: string;
    /** Create ServiceMonitors and the PrometheusRule (only where the Prometheus Operator's CRDs exist). */
    prometheusOperator: boolean;
    /**
     * Labels on the ServiceMonitors, the PrometheusRule and the dashboard ConfigMap. kube-prometheus-stack's
     * Prometheus selects monitors and rules labelled `release: <its Helm release name>` (its values'
     * serviceMonitorSelectorNilUsesHelmValues and ruleSelectorNilUsesHelmValues default to true).
     */
    monitorLabels: Labels;
    targets: Partial<Record<TargetName, MonitoringTarget>>;
    /** Dovecot's mail volume claim, for the disk alert. */
    mailClaimName: string;
    certificate: CertificateSource;
}

/** The label kube-prometheus-stack's Grafana sidecar loads dashboards from (grafana.sidecar.dashboards.label/labelValue). */
export const GRAFANA_DASHBOARD_LABEL = { grafana_dashboard: "1" } as const;

function labelErrors(key: string, labels: Labels, nonEmpty: boolean): string[] {
    if (typeof labels !== "object" || labels === null || Array.isArray(labels)) return [`${key}: expected a map of label names to values`];
    const entries = Object.entries(labels);
    if (nonEmpty && entries.length === 0) return [`${key}: expected at least one label (an empty selector would match every pod)`];
    return entries.flatMap(([name, value]) => {
        const okName = labelName(name) === undefined;
        const okValue = typeof value === "string" && labelValue(value) === undefined;
        return [
            ...(okName
                ? []
                : [
                      `${key}: label name ${JSON.stringify(name)}: expected [prefix/]name, name at most 63 letters, digits, "-", "_", "." starting and ending alphanumeric`,
                  ]),
            ...(okValue
                ? []
                : [
                      `${key}[${JSON.stringify(name)}]: expected a label value (at most 63 letters, digits, "-", "_", ".", starting and ending alphanumeric), got ${JSON.stringify(value)}`,
                  ]),
        ];
    });
}

/** Every problem with the arguments, each naming the argument (empty when they are fine). */
export function monitoringArgErrors(args: MonitoringArgs): string[] {
    const named = (key: string, value: string, problem: string | undefined) => (problem ? [`${key}: ${problem}, got ${JSON.stringify(value)}`] : []);
    const targets = Object.entries(args.targets ?? {}).filter((entry): entry is [string, MonitoringTarget] => entry[1] !== undefined);
    return [
        ...named("namespace", args.namespace, dnsLabel(args.namespace)),
        ...named("scraperNamespace", args.scraperNamespace, dnsLabel(args.scraperNamespace)),
        ...named("mailClaimName", args.mailClaimName, dnsLabel(args.mailClaimName)),
        ...labelErrors("monitorLabels", args.monitorLabels, false),
        ...(targets.length === 0 ? [`targets: expected at least one of ${Object.keys(SCRAPE_TARGETS).join(", ")}`] : []),
        ...targets.flatMap(([name, target]) =>
            name in SCRAPE_TARGETS
                ? labelErrors(`targets.${name}.selector`, target.selector, true)
                : [`targets.${name}: expected one of ${Object.keys(SCRAPE_TARGETS).join(", ")}`],
        ),
        ...(args.certificate.source === "cert-manager" ? named("certificate.name", args.certificate.name, dnsLabel(args.certificate.name)) : []),
    ];
}

/** The end of an X.509 certificate's validity. */
export function certificateNotAfter(pem: string): Date {
    return new Date(new crypto.X509Certificate(pem).validTo);
}

/** prometheus.io/* annotations: Prometheus setups without the Operator discover scrape targets by them. */
export function scrapeAnnotations(target: TargetName): Record<string, string> {
    const t = SCRAPE_TARGETS[target];
    return { "prometheus.io/scrape": "true", "prometheus.io/port": String(t.port.number), "prometheus.io/path": t.path };
}

export class Monitoring extends pulumi.ComponentResource {
    /** Names of the `<target>-metrics` Services. */
    readonly serviceNames: string[];

    constructor(name: string, args: MonitoringArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Monitoring", name, {}, opts);
        const errors = monitoringArgErrors(args);
        if (errors.length > 0) throw new ConfigError(`Monitoring ${name}: ${errors.join("; ")}`);
        const child = { parent: this };
        const { labels } = appLabels("metrics", "monitoring");
        const monitorLabels = { ...labels, ...args.monitorLabels };

        this.serviceNames = [];
        for (const [target, { selector }] of Object.entries(args.targets) as [TargetName, MonitoringTarget][]) {
            const { port, path: metricsPath } = SCRAPE_TARGETS[target];
            const serviceName = metricsServiceName(target);
            const serviceLabels = { ...labels, "mail.stack/metrics": target };
            // Headless: Prometheus scrapes the endpoints, and the provider does not wait for a headless Service.
            new k8s.core.v1.Service(
                `${name}-${target}-service`,
                {
                    metadata: { name: serviceName, namespace: args.namespace, labels: serviceLabels, annotations: scrapeAnnotations(target) },
                    spec: { clusterIP: "None", selector, ports: [{ name: port.name, port: port.number, targetPort: port.name, protocol: "TCP" }] },
                },
                child,
            );
            if (args.prometheusOperator) {
                new k8s.apiextensions.CustomResource(
                    `${name}-${target}-service-monitor`,
                    {
                        apiVersion: "monitoring.coreos.com/v1",
                        kind: "ServiceMonitor",
                        metadata: { name: serviceName, namespace: args.namespace, labels: monitorLabels },
                        spec: {
                            selector: { matchLabels: { "mail.stack/metrics": target } },
                            namespaceSelector: { matchNames: [args.namespace] },
                            endpoints: [{ port: port.name, path: metricsPath, interval: "30s" }],
                        },
                    },
                    child,
                );
            }
            this.serviceNames.push(serviceName);
        }

        if (args.prometheusOperator) {
            const certificate: pulumi.Output<CertificateExpiry> =
                args.certificate.source === "selfSigned"
                    ? pulumi.output(args.certificate.certificatePem).apply((pem) => ({ source: "notAfter" as const, notAfter: certificateNotAfter(pem) }))
                    : pulumi.output(args.certificate as CertificateExpiry);
            new k8s.apiextensions.CustomResource(
                `${name}-rules`,
                {
                    apiVersion: "monitoring.coreos.com/v1",
                    kind: "PrometheusRule",
                    metadata: { name: "mail", namespace: args.namespace, labels: monitorLabels },
                    spec: {
                        groups: certificate.apply((c) => mailAlertRules({ namespace: args.namespace, mailClaimName: args.mailClaimName, certificate: c })),
                    },
                },
                child,
            );
        }

        new k8s.core.v1.ConfigMap(
            `${name}-dashboard`,
            {
                metadata: { name: "mail-dashboard", namespace: args.scraperNamespace, labels: { ...monitorLabels, ...GRAFANA_DASHBOARD_LABEL } },
                data: { "mail.json": JSON.stringify(dashboard) },
            },
            child,
        );
        this.registerOutputs({ serviceNames: this.serviceNames });
    }
}
