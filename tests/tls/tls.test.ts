import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import type { RecordedResource } from "../kit/mocks";
import { ProgramRun, runProgram } from "../kit/program";
import { ACME_SERVERS, CERT_MANAGER_CHART } from "../../components/tls/acme";
import { SELF_SIGNED_SECRET } from "../../components/tls/selfsigned";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes objects as the program declares them */
type Obj = {
    apiVersion: string;
    kind: string;
    metadata: { name: string; namespace?: string };
    spec?: any;
    type?: string;
    subjects?: any;
    roleRef?: any;
    rules?: any;
};

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };
const kubeconfigFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mail-kube-")), "config");
fs.writeFileSync(
    kubeconfigFile,
    "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts: [{name: dev, context: {cluster: dev}}]\nclusters: [{name: dev, cluster: {server: 'https://127.0.0.1:6443'}}]\n",
);
const kubeconfig = { clusterProvider: "kubeconfig", clusterKubeconfig: kubeconfigFile };

const objects = (run: ProgramRun) => kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
const find = (run: ProgramRun, kind: string, name: string) => objects(run).find((o) => o.kind === kind && o.metadata.name === name);
const isSecret = (value: unknown) => JSON.stringify(value).includes("4dabf18193072939515e22adb298388d");

/** The Secret each mail daemon mounts at /etc/mail/tls. */
function mountedTlsSecret(run: ProgramRun, workload: string): string {
    const spec = find(run, "StatefulSet", workload)!.spec.template.spec;
    const mount = spec.containers
        .find((c: { name: string }) => c.name === workload)
        .volumeMounts.find((m: { mountPath: string }) => m.mountPath === "/etc/mail/tls");
    return spec.volumes.find((v: { name: string }) => v.name === mount.name).secret.secretName;
}

describe("tlsMode selfsigned (default)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, ...kubeconfig });
    });
    it("mounts a self-signed kubernetes.io/tls Secret in Postfix and Dovecot", () => {
        expect(find(run, "Secret", SELF_SIGNED_SECRET)!.type).toBe("kubernetes.io/tls");
        expect(run.recorder.ofType("tls:index/selfSignedCert:SelfSignedCert")).toHaveLength(1);
        expect([mountedTlsSecret(run, "postfix"), mountedTlsSecret(run, "dovecot")]).toEqual([SELF_SIGNED_SECRET, SELF_SIGNED_SECRET]);
        expect(run.recorder.ofType("kubernetes:helm.sh/v4:Chart")).toHaveLength(0);
    });
});

describe("tlsMode secret", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, ...kubeconfig, tlsMode: "secret", tlsSecretName: "my-cert" });
    });
    it("mounts the named Secret and creates no certificate of its own", () => {
        expect([mountedTlsSecret(run, "postfix"), mountedTlsSecret(run, "dovecot")]).toEqual(["my-cert", "my-cert"]);
        expect(find(run, "Secret", "mail-tls")).toBeUndefined();
        expect(find(run, "Secret", SELF_SIGNED_SECRET)).toBeUndefined();
        expect(run.recorder.ofType("mail:index:SelfSignedTls")).toHaveLength(0);
        expect(objects(run).filter((o) => o.apiVersion.startsWith("cert-manager.io"))).toEqual([]);
    });
});

describe.each([
    ["HTTP-01 through ingress-nginx", { ...kubeconfig, edgeMode: "ingress-nginx" }, "http01"],
    ["DNS-01 at DigitalOcean", { clusterProvider: "digitalocean", dnsManage: true, tlsAcmeDigitaloceanToken: "do-token-123" }, "digitalocean"],
    ["DNS-01 at Cloud DNS", { clusterProvider: "gke", dnsManage: true, tlsAcmeServer: "staging" }, "clouddns"],
])("tlsMode acme, %s", (_title, extra, solverKind) => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, ...extra, tlsMode: "acme" });
    });

    it("installs pinned cert-manager, and only schema-valid objects (cert-manager kinds included)", () => {
        const chart = unwrapSecrets(
            run.recorder
                .ofType("kubernetes:helm.sh/v4:Chart")
                .map((c) => c.inputs)
                .find((i) => i.chart === "cert-manager"),
        ) as { version: string; namespace: string; values: { crds: { enabled: boolean } } };
        expect(chart.version).toBe(CERT_MANAGER_CHART.version);
        expect(chart.values.crds.enabled).toBe(true);
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
    });

    it("issues a certificate for the mail host into the Secret both daemons mount", () => {
        const cert = find(run, "Certificate", "mail-tls")!;
        expect(cert.apiVersion).toBe("cert-manager.io/v1");
        expect(cert.metadata.namespace).toBe("mail");
        expect(cert.spec.dnsNames).toEqual(["mail.example.com"]);
        expect(cert.spec.issuerRef).toEqual({ group: "cert-manager.io", kind: "Issuer", name: "letsencrypt" });
        expect([mountedTlsSecret(run, "postfix"), mountedTlsSecret(run, "dovecot")]).toEqual([cert.spec.secretName, cert.spec.secretName]);
        expect(run.recorder.ofType("tls:index/selfSignedCert:SelfSignedCert")).toHaveLength(0);
    });

    it(`solves with ${solverKind}`, () => {
        const issuer = find(run, "Issuer", "letsencrypt")!;
        const acme = issuer.spec.acme;
        expect(acme.email).toBe("postmaster@example.com");
        expect(acme.server).toBe(solverKind === "clouddns" ? ACME_SERVERS.staging : ACME_SERVERS.production);
        expect(acme.solvers).toHaveLength(1);
        const solver = acme.solvers[0];
        if (solverKind === "http01") {
            expect(solver).toEqual({ http01: { ingress: { ingressClassName: "nginx" } } });
        } else if (solverKind === "digitalocean") {
            const ref = solver.dns01.digitalocean.tokenSecretRef;
            const secret = run.recorder.resources.find(
                (r) => r.type === "kubernetes:core/v1:Secret" && (r.inputs.metadata as { name: string }).name === ref.name,
            )!;
            expect(isSecret(secret.inputs.stringData)).toBe(true);
            expect((unwrapSecrets(secret.inputs.stringData) as Record<string, string>)[ref.key]).toBe("do-token-123");
        } else {
            // Workload Identity: no key anywhere, the zone named so cert-manager never lists the project's zones.
            expect(solver.dns01.cloudDNS).toEqual({ project: "mock-project", hostedZoneName: "example-com" });
        }
    });

    it("creates the Issuer only after cert-manager's API check has passed (the chart's own check is a hook v4 Chart drops)", () => {
        const job = find(run, "Job", "cert-manager-startupapicheck")!;
        expect(job.metadata.namespace).toBe("cert-manager");
        const pod = job.spec.template.spec;
        expect(pod.containers[0].image).toBe(`quay.io/jetstack/cert-manager-startupapicheck:${CERT_MANAGER_CHART.version}`);
        expect(pod.containers[0].args.slice(0, 2)).toEqual(["check", "api"]);
        // The check may create (dry-run) Certificates in its namespace, as the chart's startupapicheck Role allows.
        const binding = objects(run).find((o) => o.kind === "RoleBinding" && o.subjects?.some((x: { name: string }) => x.name === pod.serviceAccountName))!;
        const role = find(run, "Role", binding.roleRef.name)!;
        expect(role.rules).toEqual([{ apiGroups: ["cert-manager.io"], resources: ["certificates"], verbs: ["create"] }]);
        const jobResource = run.recorder.resources.find((r) => r.type === "kubernetes:batch/v1:Job" && r.name.endsWith("cert-manager-api-check"))!;
        const issuer = run.recorder.resources.find((r) => r.type === "kubernetes:cert-manager.io/v1:Issuer")!;
        expect(issuer.dependencies).toContain(run.recorder.urnOf(jobResource));
    });
});

describe("tlsMode acme DNS-01 at Cloud DNS: credentials", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, clusterProvider: "gke", dnsManage: true, tlsMode: "acme" });
    });

    it("uses Workload Identity with DNS rights on the mail host's zone only, and no service-account key", () => {
        expect(run.recorder.ofType("gcp:serviceaccount/key:Key")).toEqual([]);
        expect(run.recorder.ofType("gcp:projects/iAMMember:IAMMember")).toEqual([]);
        expect(objects(run).filter((o) => o.kind === "Secret" && JSON.stringify(o).includes("key.json"))).toEqual([]);
        const account = run.recorder.one("gcp:serviceaccount/account:Account").inputs as { accountId: string };
        const email = `${account.accountId}@mock-project.iam.gserviceaccount.com`;
        expect(run.recorder.ofType("gcp:dns/dnsManagedZoneIamMember:DnsManagedZoneIamMember").map((r) => r.inputs)).toEqual([
            expect.objectContaining({ managedZone: "example-com", role: "roles/dns.admin", member: `serviceAccount:${email}` }),
        ]);
        expect(run.recorder.one("gcp:serviceaccount/iAMMember:IAMMember").inputs).toMatchObject({
            role: "roles/iam.workloadIdentityUser",
            member: "serviceAccount:mock-project.svc.id.goog[cert-manager/cert-manager]",
        });
        const values = (
            unwrapSecrets(run.recorder.ofType("kubernetes:helm.sh/v4:Chart").find((c) => c.inputs.chart === "cert-manager")!.inputs) as { values: any }
        ).values;
        expect(values.serviceAccount.annotations).toEqual({ "iam.gke.io/gcp-service-account": email });
        // cert-manager lets only ClusterIssuers use ambient credentials unless told otherwise.
        expect(values.extraArgs).toContain("--issuer-ambient-credentials");
        expect(run.recorder.one("gcp:container/cluster:Cluster").inputs.workloadIdentityConfig).toEqual({ workloadPool: "mock-project.svc.id.goog" });
        expect((run.recorder.one("gcp:container/nodePool:NodePool").inputs.nodeConfig as { workloadMetadataConfig: unknown }).workloadMetadataConfig).toEqual({
            mode: "GKE_METADATA",
        });
    });
});

describe("switching tlsMode selfsigned → acme", () => {
    let before: ProgramRun;
    let after: ProgramRun;
    beforeAll(async () => {
        const stack = { ...mail, ...kubeconfig, edgeMode: "ingress-nginx" };
        before = await runProgram(stack);
        after = await runProgram({ ...stack, tlsMode: "acme" });
    });

    it("deletes no object that the new program, or cert-manager for it, writes", () => {
        // Pulumi deletes what the new program no longer declares (by URN) at the end of the update.
        const identity = (r: RecordedResource) => `${r.parent}|${r.type}|${r.name}`;
        const kept = new Set(after.recorder.resources.map(identity));
        const key = (o: { kind: string; metadata: { name: string; namespace?: string } }) => `${o.kind} ${o.metadata.namespace ?? ""}/${o.metadata.name}`;
        const written = new Set(
            objects(after).flatMap((o) => [
                key(o),
                ...(o.kind === "Certificate" ? [key({ kind: "Secret", metadata: { name: o.spec.secretName, namespace: o.metadata.namespace } })] : []),
            ]),
        );
        const deleted = kubernetesObjects(before.recorder.resources)
            .filter((r) => !kept.has(identity(r)))
            .map((r) => key(unwrapSecrets(r.inputs) as Obj));
        expect(deleted.filter((k) => written.has(k))).toEqual([]);
    });
});

describe("disallowed TLS combinations", () => {
    it.each([
        [
            { ...kubeconfig, tlsMode: "acme" },
            'mail:tlsMode = "acme" is not allowed with edgeMode loadbalancer and dnsManage false: set dnsManage true (DNS-01), or edgeMode ingress-nginx (HTTP-01)',
        ],
        [
            { clusterProvider: "digitalocean", tlsMode: "acme", dnsManage: true },
            "mail:tlsAcmeDigitaloceanToken is required with tlsMode acme and dnsManage on digitalocean",
        ],
        [{ ...kubeconfig, tlsMode: "secret" }, 'mail:tlsSecretName = "" is not allowed: required with tlsMode secret'],
        [{ ...kubeconfig, tlsMode: "letsencrypt" }, 'mail:tlsMode = "letsencrypt" is not allowed: expected one of selfsigned, acme, secret'],
        [{ ...kubeconfig, dnsManage: true }, "mail:dnsManage = true is not allowed with clusterProvider kubeconfig"],
    ])("%j fails preview naming the key, the value and what is allowed", async (bad, message) => {
        await expect(runProgram({ ...mail, ...bad })).rejects.toThrow(message);
    });
});
