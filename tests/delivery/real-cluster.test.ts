// The e2e suite's real-cluster mode (tests/e2e/kubectl.ts, real-cluster.ts): endpoints from a cluster's Services and
// nodes as the Kubernetes API returns them, the CA from the TLS Secret, `kubectl exec` targets; and, with the
// program's own objects for the ci stack, every mail endpoint the suite uses is reachable from outside the cluster.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { kubernetesObjects, unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";
import { cliProgramConfig, opaqueDecrypter } from "../kit/pulumi-cli-config";
import { execArgs, externalEndpoints, nodeAddress, RealCluster, tlsCertificate, workloadTargets } from "../e2e/kubectl";
import { LOOPBACK_ONLY_SUITES, REAL_CLUSTER_SUITES } from "../e2e/real-cluster";

const ROOT = path.join(__dirname, "..", "..");

const service = (name: string, type: string, ports: { port: number; nodePort?: number }[], namespace = "mail") => ({
    metadata: { name, namespace },
    spec: { type, ports },
});

describe("endpoints from a real cluster", () => {
    const services = {
        items: [
            service("postfix", "ClusterIP", [{ port: 25 }, { port: 587 }]),
            service("couchdb", "ClusterIP", [{ port: 5984 }]),
            service("mail-edge", "LoadBalancer", [
                { port: 25, nodePort: 31025 },
                { port: 587, nodePort: 31587 },
            ]),
            service("elsewhere", "NodePort", [{ port: 5984, nodePort: 30984 }], "other"),
        ],
    };

    it("maps each in-cluster endpoint to the NodePort that publishes its port; what nothing publishes is unreachable", () => {
        const outputs = { smtp: "postfix.mail.svc:25", submission: "postfix.mail.svc:587", couchdb: "http://couchdb.mail.svc:5984" };
        expect(externalEndpoints(outputs, services, "172.18.0.2")).toEqual({
            endpoints: { smtp: { host: "172.18.0.2", port: 31025 }, submission: { host: "172.18.0.2", port: 31587 } },
            unreachable: ["couchdb"],
        });
    });

    it("prefers the named Service's own NodePort", () => {
        const own = {
            items: [
                ...services.items,
                service("postfix-np", "NodePort", [{ port: 25, nodePort: 30000 }]),
                service("postfix", "NodePort", [{ port: 25, nodePort: 32525 }]),
            ],
        };
        expect(externalEndpoints({ smtp: "postfix.mail.svc:25" }, own, "n").endpoints.smtp.port).toBe(32525);
    });

    it("refuses an endpoint that is not an in-cluster Service address", () => {
        expect(() => externalEndpoints({ smtp: "203.0.113.1:25" }, services, "n")).toThrow(
            'endpoint smtp = "203.0.113.1:25" is not <service>.<namespace>.svc:<port>',
        );
    });

    it("reaches nodes at their InternalIP", () => {
        const node = (name: string, addresses: { type: string; address: string }[]) => ({ metadata: { name }, status: { addresses } });
        expect(nodeAddress({ items: [node("a", [{ type: "Hostname", address: "a" }]), node("b", [{ type: "InternalIP", address: "172.18.0.3" }])] })).toBe(
            "172.18.0.3",
        );
        expect(() => nodeAddress({ items: [node("a", [{ type: "Hostname", address: "a" }])] })).toThrow("no node has an InternalIP address (nodes: a)");
    });

    it("takes the one TLS Secret's certificate as the clients' CA", () => {
        const pem = "-----BEGIN CERTIFICATE-----\nx\n-----END CERTIFICATE-----\n";
        const tls = {
            metadata: { name: "mail-tls-selfsigned" },
            type: "kubernetes.io/tls",
            data: { "tls.crt": Buffer.from(pem).toString("base64"), "tls.key": "" },
        };
        expect(tlsCertificate({ items: [{ metadata: { name: "other" }, type: "Opaque", data: {} }, tls] })).toBe(pem);
        expect(() => tlsCertificate({ items: [tls, { ...tls, metadata: { name: "second" } }] })).toThrow(
            "expected one kubernetes.io/tls Secret with tls.crt, found mail-tls-selfsigned, second",
        );
    });

    it("execs through kubectl into the workload's pod, with stdin attached", () => {
        const cluster: RealCluster = {
            kind: "kubectl",
            context: "kind-mail-ci",
            namespace: "mail",
            workloads: workloadTargets({ items: [{ metadata: { name: "dovecot" } }] }, { items: [{ metadata: { name: "opendkim" } }] }),
        };
        expect(cluster.workloads).toEqual({ dovecot: "statefulset/dovecot", opendkim: "deployment/opendkim" });
        expect(execArgs(cluster, "dovecot", "couchmail", ["couchmail", "user", "add", "a@b"])).toEqual([
            "--context",
            "kind-mail-ci",
            "-n",
            "mail",
            "exec",
            "-i",
            "statefulset/dovecot",
            "-c",
            "couchmail",
            "--",
            "couchmail",
            "user",
            "add",
            "a@b",
        ]);
        expect(() => execArgs(cluster, "postfix", "postfix", ["true"])).toThrow("no workload postfix in namespace mail (known: dovecot, opendkim)");
    });

    it("every e2e suite is either run on a real cluster or skipped there with its reason", () => {
        const suites = fs
            .readdirSync(path.join(ROOT, "tests", "e2e"))
            .filter((f) => f.endsWith(".e2e.ts"))
            .sort();
        expect([...REAL_CLUSTER_SUITES, ...Object.keys(LOOPBACK_ONLY_SUITES)].sort()).toEqual(suites);
    });
});

describe("the ci stack's program on a real cluster", () => {
    it("publishes every mail endpoint the suite connects to on NodePorts; only CouchDB stays inside", async () => {
        const program = cliProgramConfig({
            projectYaml: fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8"),
            stackYaml: fs.readFileSync(path.join(ROOT, "Pulumi.ci.yaml"), "utf8"),
            stackName: "ci",
            decrypt: opaqueDecrypter,
        });
        const kubeconfig = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mail-kind-")), "config");
        fs.writeFileSync(
            kubeconfig,
            "apiVersion: v1\nkind: Config\ncurrent-context: kind-mail-ci\ncontexts: [{name: kind-mail-ci, context: {cluster: kind}}]\nclusters: [{name: kind, cluster: {server: 'https://127.0.0.1:6443'}}]\n",
        );
        const run = await runProgram({ ...program.config, "mail:clusterKubeconfig": kubeconfig }, { stack: "ci" });
        const outputs = (await run.resolve(run.outputs.endpoints as Record<string, string>)).value;
        // The API server gives every port of a NodePort or LoadBalancer Service a node port.
        let next = 30000;
        const items = kubernetesObjects(run.recorder.resources)
            .map(
                (r) =>
                    unwrapSecrets(r.inputs) as {
                        kind: string;
                        metadata: { name: string; namespace: string };
                        spec: { type?: string; ports?: { port: number; nodePort?: number }[] };
                    },
            )
            .filter((o) => o.kind === "Service")
            .map((o) => ({
                ...o,
                spec: {
                    ...o.spec,
                    ports: (o.spec.ports ?? []).map((p) => (o.spec.type === "LoadBalancer" || o.spec.type === "NodePort" ? { ...p, nodePort: next++ } : p)),
                },
            }));
        const { endpoints, unreachable } = externalEndpoints(outputs, { items }, "172.18.0.2");
        expect(Object.keys(endpoints).sort()).toEqual(["imap", "imaps", "managesieve", "smtp", "submission", "submissions"]);
        expect(unreachable).toEqual(["couchdb"]);
        // The API server stores a Secret's stringData base64-encoded in data; the CA is the one TLS Secret's certificate.
        const secrets = kubernetesObjects(run.recorder.resources)
            .map(
                (r) =>
                    unwrapSecrets(r.inputs) as {
                        kind: string;
                        metadata: { name: string };
                        type?: string;
                        data?: Record<string, string>;
                        stringData?: Record<string, string>;
                    },
            )
            .filter((o) => o.kind === "Secret")
            .map((o) => ({
                ...o,
                data: { ...o.data, ...Object.fromEntries(Object.entries(o.stringData ?? {}).map(([k, v]) => [k, Buffer.from(v).toString("base64")])) },
            }));
        expect(tlsCertificate({ items: secrets })).toMatch(/^-----BEGIN CERTIFICATE-----/);
        // The images the kind job loaded are never pulled; anything else (CouchDB's official image) is pulled as usual.
        type Pod = { containers: { image: string; imagePullPolicy?: string }[]; initContainers?: { image: string; imagePullPolicy?: string }[] };
        const containers = kubernetesObjects(run.recorder.resources)
            .map((r) => unwrapSecrets(r.inputs) as { spec?: { template?: { spec?: Pod }; jobTemplate?: { spec: { template: { spec: Pod } } } } })
            .map((o) => o.spec?.template?.spec ?? o.spec?.jobTemplate?.spec.template.spec)
            .filter((p): p is Pod => p !== undefined)
            .flatMap((p) => [...(p.initContainers ?? []), ...p.containers]);
        const ours = containers.filter((c) => c.image.startsWith("mail/"));
        expect(ours.length).toBeGreaterThan(5);
        expect(ours.filter((c) => !/^mail\/[a-z0-9-]+:ci$/.test(c.image) || c.imagePullPolicy !== "Never")).toEqual([]);
        expect(containers.filter((c) => !c.image.startsWith("mail/") && c.imagePullPolicy === "Never")).toEqual([]);
    });
});
