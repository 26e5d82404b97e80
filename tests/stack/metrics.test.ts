// What metricsEnabled adds to the stack: each daemon's exporter switched on, its metrics on the contract's named
// container port in the pods that serve it, and a `<target>-metrics` Service whose named target port has exactly
// those pods as endpoints (Kubernetes skips selected pods without a port of that name).
import { schemaErrors } from "../kit/k8s-schema";
import { selects } from "../kit/cluster/objects";
import { DeclaredObject, stackObjectLookup } from "../kit/stack-objects";
import { ProgramRun, runProgram } from "../kit/program";
import { COUCHDB_INI_NAME } from "../../components/couchdb/config";
import { SCRAPE_TARGETS, TargetName } from "../../components/monitoring/metrics";
import { POSTFIX_LOG } from "../../components/postfix/config";

type Container = {
    name: string;
    env?: { name: string; value?: string }[];
    ports?: { name: string; containerPort: number }[];
    volumeMounts?: { name: string; mountPath: string }[];
};
const { objects, find, get } = stackObjectLookup();
const podContainers = (o: DeclaredObject): Container[] => [...(o.spec.template.spec.initContainers ?? []), ...o.spec.template.spec.containers];
const workloads = (run: ProgramRun) => objects(run).filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment");
const mail = { clusterProvider: "digitalocean", mailHostname: "mail.example.com", mailDomains: ["example.com"] };

/** Which workload's pod (and which container of it) serves each target. */
const SERVED_BY: Record<TargetName, [string, string][]> = {
    dovecot: [["dovecot", "dovecot"]],
    postfix: [["postfix", "postfix-exporter"]],
    couchmail: [
        ["postfix", "couchmail"],
        ["dovecot", "couchmail"],
    ],
    couchdb: [["couchdb", "couchdb"]],
};

describe("metrics off (the default)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(mail);
    });

    it("opens no metrics port, no metrics Service and no exporter", () => {
        expect(objects(run).filter((o) => o.metadata.name.endsWith("-metrics"))).toEqual([]);
        const ports = workloads(run).flatMap((o) => podContainers(o).flatMap((c) => (c.ports ?? []).map((p) => p.name)));
        expect(ports.filter((n) => n.startsWith("metrics"))).toEqual([]);
        expect(podContainers(get(run, "StatefulSet", "postfix")).map((c) => c.name)).not.toContain("postfix-exporter");
        expect(get(run, "ConfigMap", "dovecot-config").data!["dovecot.conf"]).not.toContain("inet_listener http");
        expect(get(run, "ConfigMap", "couchdb-config").data![COUCHDB_INI_NAME]).not.toContain("[prometheus]");
        expect(get(run, "ConfigMap", "postfix-config").data!["main.cf"]).toMatch(/^maillog_file = \/dev\/stdout$/m);
        for (const app of ["postfix", "dovecot"]) {
            const couchmail = podContainers(get(run, "StatefulSet", app)).find((c) => c.name === "couchmail")!;
            expect(couchmail.env?.find((e) => e.name === "COUCHMAIL_METRICS_LISTEN")?.value).toBe("");
        }
    });
});

describe("metricsEnabled", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, metricsEnabled: true });
    });

    it("creates only schema-valid objects", () => {
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
    });

    it.each(Object.entries(SERVED_BY))("%s: its Service's endpoints are exactly the pods whose containers serve the contract's port", (target, servers) => {
        const { port } = SCRAPE_TARGETS[target as TargetName];
        const service = get(run, "Service", `${target}-metrics`);
        expect(service.spec.ports).toEqual([{ name: port.name, port: port.number, targetPort: port.name, protocol: "TCP" }]);
        const endpoints = workloads(run)
            .filter((w) => selects({ matchLabels: service.spec.selector }, w.spec.template.metadata.labels))
            .flatMap((w) =>
                podContainers(w)
                    .filter((c) => (c.ports ?? []).some((p) => p.name === port.name && p.containerPort === port.number))
                    .map((c) => [w.metadata.name, c.name]),
            );
        expect(endpoints.sort()).toEqual([...servers].sort());
    });

    it("switches the exporters on in the rendered configs", () => {
        const dovecotConf = get(run, "ConfigMap", "dovecot-config").data!["dovecot.conf"];
        expect(dovecotConf).toMatch(new RegExp(`service stats \\{\\s*inet_listener http \\{\\s*port = ${SCRAPE_TARGETS.dovecot.port.number}`));
        expect(get(run, "ConfigMap", "couchdb-config").data![COUCHDB_INI_NAME]).toContain(
            `[prometheus]\nadditional_port = true\nbind_address = 0.0.0.0\nport = ${SCRAPE_TARGETS.couchdb.port.number}\n`,
        );
        for (const app of ["postfix", "dovecot"]) {
            const couchmail = podContainers(get(run, "StatefulSet", app)).find((c) => c.name === "couchmail")!;
            expect(couchmail.env?.find((e) => e.name === "COUCHMAIL_METRICS_LISTEN")?.value).toBe(`0.0.0.0:${SCRAPE_TARGETS.couchmail.port.number}`);
        }
    });

    it("Postfix logs to the file the exporter follows, on a volume both containers mount", () => {
        expect(get(run, "ConfigMap", "postfix-config").data!["main.cf"]).toContain(`maillog_file = ${POSTFIX_LOG.file}`);
        const postfix = get(run, "StatefulSet", "postfix");
        const mountOf = (container: string) =>
            podContainers(postfix)
                .find((c) => c.name === container)!
                .volumeMounts!.find((m) => m.mountPath === POSTFIX_LOG.directory);
        expect(mountOf("postfix")?.name).toBeDefined();
        expect(mountOf("postfix-exporter")?.name).toBe(mountOf("postfix")?.name);
    });

    it("creates no Prometheus Operator objects unless asked, and puts the dashboard in the scraper's namespace", () => {
        expect(objects(run).filter((o) => o.apiVersion.startsWith("monitoring.coreos.com/"))).toEqual([]);
        expect(get(run, "ConfigMap", "mail-dashboard").metadata.namespace).toBe("monitoring");
        expect(find(run, "Service", "opendkim-metrics")).toBeUndefined();
    });
});

describe("metricsPrometheusOperator", () => {
    it("adds a ServiceMonitor per target and the alert rules, labelled as configured", async () => {
        const run = await runProgram({ ...mail, metricsEnabled: true, metricsPrometheusOperator: true, metricsMonitorLabels: { release: "prom" } });
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        const monitors = objects(run).filter((o) => o.kind === "ServiceMonitor");
        expect(monitors.map((m) => m.metadata.name).sort()).toEqual(
            Object.keys(SCRAPE_TARGETS)
                .map((t) => `${t}-metrics`)
                .sort(),
        );
        for (const m of monitors) expect(m.metadata.labels).toMatchObject({ release: "prom" });
        expect(get(run, "PrometheusRule", "mail").metadata.labels).toMatchObject({ release: "prom" });
    });
});
