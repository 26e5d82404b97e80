// The Monitoring component under Pulumi mocks: schema-valid objects (Prometheus Operator models for the monitors and
// rules), one parent, metrics Services whose named target ports and the ServiceMonitors' selectors line up, metrics
// ports opened to the scraper's namespace only, the dashboard labelled for Grafana's sidecar, and arguments refused
// up front with the argument named.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type { MonitoringArgs } from "../../components/monitoring";
import { SCRAPE_TARGETS } from "../../components/monitoring/metrics";
import type { RuleGroup } from "../../components/monitoring/rules";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import type { MockRecorder } from "../kit/mocks";
import type { DeclaredObject } from "../kit/stack-objects";

const dovecotPods = { "app.kubernetes.io/name": "dovecot", "app.kubernetes.io/instance": "mail" };
const postfixPods = { "app.kubernetes.io/name": "postfix", "app.kubernetes.io/instance": "mail" };
const couchdbPods = { "app.kubernetes.io/name": "couchdb", "app.kubernetes.io/instance": "mail" };
const couchmailPods = { "mail.stack/couchmail": "sidecar" };

const ARGS: MonitoringArgs = {
    namespace: "mail",
    scraperNamespace: "monitoring",
    prometheusOperator: true,
    monitorLabels: { release: "kube-prometheus-stack" },
    targets: {
        dovecot: { selector: dovecotPods },
        postfix: { selector: postfixPods },
        couchmail: { selector: couchmailPods },
        couchdb: { selector: couchdbPods },
    },
    mailClaimName: "mail-dovecot-0",
    certificate: { source: "cert-manager", name: "mail-tls" },
};

async function deploy(args: MonitoringArgs): Promise<MockRecorder> {
    let recorder: MockRecorder | undefined;
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("../kit/mocks");
        recorder = await mocks.MockRecorder.install({});
        const { Monitoring } = await import("../../components/monitoring");
        new Monitoring("monitoring", args);
        let last = -1;
        for (let quiet = 0; quiet < 5; quiet = recorder.resources.length === last ? quiet + 1 : 0) {
            last = recorder.resources.length;
            await new Promise((r) => setTimeout(r, 20));
        }
    });
    return recorder!;
}

const objectsOf = (recorder: MockRecorder) => kubernetesObjects(recorder.resources).map((r) => unwrapSecrets(r.inputs) as DeclaredObject);
const find = (recorder: MockRecorder, kind: string, name: string) => {
    const found = objectsOf(recorder).find((o) => o.kind === kind && o.metadata.name === name);
    if (!found) throw new Error(`no ${kind} ${name}`);
    return found;
};
const matches = (selector: Record<string, string>, labels: Record<string, string> = {}) => Object.entries(selector).every(([k, v]) => labels[k] === v);

describe("with the Prometheus Operator", () => {
    let recorder: MockRecorder;
    beforeAll(async () => {
        recorder = await deploy(ARGS);
    });

    test("every object is schema-valid and a child of the one Monitoring component", () => {
        expect(schemaErrors(recorder.resources)).toEqual([]);
        const component = recorder.one("mail:index:Monitoring", "monitoring");
        const urn = recorder.urnOf(component);
        const children = recorder.resources.filter((r) => r.custom);
        expect(children.map((r) => `${r.type} ${r.name}`).sort()).toEqual(
            [
                ...Object.keys(SCRAPE_TARGETS).flatMap((t) => [
                    `kubernetes:core/v1:Service monitoring-${t}-service`,
                    `kubernetes:monitoring.coreos.com/v1:ServiceMonitor monitoring-${t}-service-monitor`,
                ]),
                "kubernetes:monitoring.coreos.com/v1:PrometheusRule monitoring-rules",
                "kubernetes:core/v1:ConfigMap monitoring-dashboard",
            ].sort(),
        );
        for (const child of children) expect({ name: child.name, parent: child.parent }).toEqual({ name: child.name, parent: urn });
    });

    test.each(Object.entries(SCRAPE_TARGETS))(
        "%s: the ServiceMonitor selects its Service, whose port targets the contract's container port",
        (target, contract) => {
            const service = find(recorder, "Service", `${target}-metrics`);
            const monitor = find(recorder, "ServiceMonitor", `${target}-metrics`);
            expect(monitor.metadata.namespace).toBe("mail");
            expect(monitor.metadata.labels).toMatchObject({ release: "kube-prometheus-stack" });
            expect(matches(monitor.spec.selector.matchLabels, service.metadata.labels)).toBe(true);
            expect(monitor.spec.namespaceSelector).toEqual({ matchNames: ["mail"] });
            expect(monitor.spec.endpoints).toEqual([{ port: contract.port.name, path: contract.path, interval: "30s" }]);
            expect(service.spec).toMatchObject({
                clusterIP: "None",
                selector: ARGS.targets[target as keyof typeof SCRAPE_TARGETS]!.selector,
                ports: [{ name: contract.port.name, port: contract.port.number, targetPort: contract.port.name }],
            });
            expect(service.metadata.annotations).toEqual({
                "prometheus.io/scrape": "true",
                "prometheus.io/port": String(contract.port.number),
                "prometheus.io/path": contract.path,
            });
            // No other target's monitor picks this Service up (each scrape once).
            const others = Object.keys(SCRAPE_TARGETS).filter((t) => t !== target);
            for (const other of others)
                expect(matches(find(recorder, "ServiceMonitor", `${other}-metrics`).spec.selector.matchLabels, service.metadata.labels)).toBe(false);
        },
    );

    test("the PrometheusRule carries the alerts, labelled for the Prometheus that selects rules by release", () => {
        const rule = find(recorder, "PrometheusRule", "mail");
        expect(rule.metadata).toMatchObject({ namespace: "mail", labels: { release: "kube-prometheus-stack" } });
        const alerts = (rule.spec.groups as RuleGroup[]).flatMap((g) => g.rules.map((r) => r.alert));
        expect(alerts).toEqual([
            "MailQueueGrowing",
            "MailDeferredOverAnHour",
            "MailExporterDown",
            "MailMetricsDown",
            "CouchmailNotLoaded",
            "CouchmailFeedStalled",
            "MailVolumeAlmostFull",
            "MailCertificateExpiresSoon",
        ]);
    });

    test("the dashboard ConfigMap sits in the scraper's namespace with Grafana's sidecar label and the dashboard JSON", () => {
        const configMap = find(recorder, "ConfigMap", "mail-dashboard");
        expect(configMap.metadata.namespace).toBe("monitoring");
        expect(configMap.metadata.labels).toMatchObject({ grafana_dashboard: "1", release: "kube-prometheus-stack" });
        const dashboard = JSON.parse(configMap.data!["mail.json"]) as { uid: string; panels: unknown[] };
        expect(dashboard.uid).toBe("mail-stack");
        expect(dashboard.panels.length).toBeGreaterThan(10);
    });
});

describe("without the Prometheus Operator", () => {
    test("only Services (with prometheus.io annotations) and the dashboard: nothing that needs its CRDs", async () => {
        const recorder = await deploy({ ...ARGS, prometheusOperator: false, targets: { dovecot: { selector: dovecotPods } } });
        expect(schemaErrors(recorder.resources)).toEqual([]);
        expect(
            objectsOf(recorder)
                .map((o) => `${o.kind} ${o.metadata.name}`)
                .sort(),
        ).toEqual(["ConfigMap mail-dashboard", "Service dovecot-metrics"]);
    });
});

describe("a self-signed certificate", () => {
    test("the expiry alert compares the time with the certificate's own end", async () => {
        const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-monitoring-"));
        try {
            execFileSync(
                "openssl",
                ["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "key.pem", "-out", "cert.pem", "-days", "10", "-subj", "/CN=mail.example.com"],
                {
                    cwd: dir,
                    stdio: "pipe",
                },
            );
            const pem = fs.readFileSync(path.join(dir, "cert.pem"), "utf8");
            const recorder = await deploy({ ...ARGS, certificate: { source: "selfSigned", certificatePem: pem } });
            const groups = find(recorder, "PrometheusRule", "mail").spec.groups as RuleGroup[];
            const expr = groups.flatMap((g) => g.rules).find((r) => r.alert === "MailCertificateExpiresSoon")!.expr;
            const notAfter = Number(/^vector\((\d+)\) - time\(\) < 1209600$/.exec(expr)?.[1]);
            expect(Math.abs(notAfter - (Date.now() / 1000 + 10 * 86400))).toBeLessThan(120);
        } finally {
            fs.rmSync(dir, { recursive: true, force: true });
        }
    });
});

describe("arguments", () => {
    const errorOf = async (args: MonitoringArgs) => {
        const { monitoringArgErrors } = await import("../../components/monitoring");
        return monitoringArgErrors(args);
    };

    test("the stack's arguments are accepted", async () => {
        expect(await errorOf(ARGS)).toEqual([]);
    });

    test.each([
        [{ scraperNamespace: "Monitoring" }, /^scraperNamespace: expected lowercase letters.*, got "Monitoring"$/],
        [{ namespace: "" }, /^namespace: expected lowercase letters/],
        [{ mailClaimName: "mail_dovecot" }, /^mailClaimName: expected lowercase letters.*, got "mail_dovecot"$/],
        [{ monitorLabels: { release: "kube prometheus" } }, /^monitorLabels\["release"\]: expected a label value .*, got "kube prometheus"$/],
        [{ monitorLabels: { "-release": "x" } }, /^monitorLabels: label name "-release": expected \[prefix\/\]name/],
        [{ targets: {} }, /^targets: expected at least one of dovecot, postfix, couchmail, couchdb$/],
        [{ targets: { dovecot: { selector: {} } } }, /^targets\.dovecot\.selector: expected at least one label \(an empty selector would match every pod\)$/],
        [
            { targets: { spamd: { selector: dovecotPods } } as MonitoringArgs["targets"] },
            /^targets\.spamd: expected one of dovecot, postfix, couchmail, couchdb$/,
        ],
        [{ certificate: { source: "cert-manager", name: "Mail TLS" } as const }, /^certificate\.name: expected lowercase letters.*, got "Mail TLS"$/],
    ])("%j is refused, naming the argument", async (override, message) => {
        const errors = await errorOf({ ...ARGS, ...override });
        expect(errors).toHaveLength(1);
        expect(errors[0]).toMatch(message);
    });

    test("the component refuses them before creating anything", async () => {
        await expect(deploy({ ...ARGS, scraperNamespace: "Monitoring" })).rejects.toThrow(
            /^Monitoring monitoring: scraperNamespace: expected lowercase letters/,
        );
    });
});
