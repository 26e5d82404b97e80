// What metricsEnabled adds to the stack: each service's metrics on named container ports, a headless `<app>-metrics`
// Service per workload for the scraper, and the daemons' own exporters switched on in their rendered configs.
import { schemaErrors } from "../kit/k8s-schema";
import { DeclaredObject, stackObjectLookup } from "../kit/stack-objects";
import { ProgramRun, runProgram } from "../kit/program";
import { COUCHMAIL } from "../../components/couchmail";
import { COUCHDB_INI_NAME, COUCHDB_METRICS_PORT } from "../../components/couchdb/config";
import { DOVECOT_METRICS_PORT } from "../../components/monitoring/dovecot";
import { METRICS_SERVICE_LABEL } from "../../components/kube";

type Container = { name: string; env?: { name: string; value?: string }[]; ports?: { name: string; containerPort: number }[] };
const { objects, find, get } = stackObjectLookup();
const podContainers = (o: DeclaredObject): Container[] => [...(o.spec.template.spec.initContainers ?? []), ...o.spec.template.spec.containers];
const mail = { clusterProvider: "digitalocean", mailHostname: "mail.example.com", mailDomains: ["example.com"] };

/** Each workload's metrics ports, as the scraper must find them: container → port name → number. */
const EXPECTED: Record<string, { path: string; ports: Record<string, [string, number]> }> = {
    dovecot: { path: "/metrics", ports: { metrics: ["dovecot", DOVECOT_METRICS_PORT], "metrics-cm": ["couchmail", COUCHMAIL.metricsPort] } },
    postfix: { path: "/metrics", ports: { "metrics-cm": ["couchmail", COUCHMAIL.metricsPort] } },
    couchdb: { path: "/_node/_local/_prometheus", ports: { metrics: ["couchdb", COUCHDB_METRICS_PORT] } },
};

describe("metrics off (the default)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(mail);
    });

    it("opens no metrics port and no metrics Service", () => {
        expect(objects(run).filter((o) => o.metadata.labels?.[METRICS_SERVICE_LABEL])).toEqual([]);
        const ports = objects(run)
            .filter((o) => o.kind === "StatefulSet" || o.kind === "Deployment")
            .flatMap((o) => podContainers(o).flatMap((c) => (c.ports ?? []).map((p) => p.name)));
        expect(ports.filter((n) => n.startsWith("metrics"))).toEqual([]);
        expect(get(run, "ConfigMap", "dovecot-config").data!["dovecot.conf"]).not.toContain("inet_listener http");
        expect(get(run, "ConfigMap", "couchdb-config").data![COUCHDB_INI_NAME]).not.toContain("[prometheus]");
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

    it.each(Object.entries(EXPECTED))("%s: a headless metrics Service whose ports the pod's containers serve", (app, expected) => {
        const service = get(run, "Service", `${app}-metrics`);
        expect(service.metadata.labels).toMatchObject({ "app.kubernetes.io/name": app, [METRICS_SERVICE_LABEL]: "true" });
        expect(service.metadata.annotations).toEqual({ "prometheus.io/scrape": "true", "prometheus.io/path": expected.path });
        expect(service.spec.clusterIP).toBe("None");
        expect(service.spec.selector).toEqual(get(run, "StatefulSet", app).spec.selector.matchLabels);
        const served = Object.fromEntries(
            podContainers(get(run, "StatefulSet", app)).flatMap((c) =>
                (c.ports ?? []).filter((p) => p.name.startsWith("metrics")).map((p) => [p.name, [c.name, p.containerPort]]),
            ),
        );
        expect(served).toEqual(expected.ports);
        expect(Object.fromEntries(service.spec.ports.map((p: { name: string; port: number; targetPort: string }) => [p.name, p.port]))).toEqual(
            Object.fromEntries(Object.entries(expected.ports).map(([name, [, port]]) => [name, port])),
        );
    });

    it("switches the exporters on in the rendered configs", () => {
        const dovecotConf = get(run, "ConfigMap", "dovecot-config").data!["dovecot.conf"];
        expect(dovecotConf).toMatch(new RegExp(`service stats \\{\\s*inet_listener http \\{\\s*port = ${DOVECOT_METRICS_PORT}`));
        expect(get(run, "ConfigMap", "couchdb-config").data![COUCHDB_INI_NAME]).toContain(
            `[prometheus]\nadditional_port = true\nbind_address = 0.0.0.0\nport = ${COUCHDB_METRICS_PORT}\n`,
        );
        for (const app of ["postfix", "dovecot"]) {
            const couchmail = podContainers(get(run, "StatefulSet", app)).find((c) => c.name === "couchmail")!;
            expect(couchmail.env?.find((e) => e.name === "COUCHMAIL_METRICS_LISTEN")?.value).toBe(`0.0.0.0:${COUCHMAIL.metricsPort}`);
        }
    });

    it("serves no metrics from workloads that have none", () => {
        for (const app of ["opendkim", "spamassassin", "postgrey"]) expect(find(run, "Service", `${app}-metrics`)).toBeUndefined();
    });
});
