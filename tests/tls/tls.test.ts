import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { ProgramRun, runProgram } from "../kit/program";
import { ACME_SERVERS, CERT_MANAGER_CHART } from "../../components/tls/acme";

type Obj = { apiVersion: string; kind: string; metadata: { name: string; namespace?: string }; spec?: any; type?: string }; // eslint-disable-line @typescript-eslint/no-explicit-any

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };
const kubeconfigFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mail-kube-")), "config");
fs.writeFileSync(kubeconfigFile, "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts: [{name: dev, context: {cluster: dev}}]\nclusters: [{name: dev, cluster: {server: 'https://127.0.0.1:6443'}}]\n");
const kubeconfig = { clusterProvider: "kubeconfig", clusterKubeconfig: kubeconfigFile };

const objects = (run: ProgramRun) => kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
const find = (run: ProgramRun, kind: string, name: string) => objects(run).find((o) => o.kind === kind && o.metadata.name === name);
const isSecret = (value: unknown) => JSON.stringify(value).includes("4dabf18193072939515e22adb298388d");

/** The Secret each mail daemon mounts at /etc/mail/tls. */
function mountedTlsSecret(run: ProgramRun, workload: string): string {
    const spec = find(run, "StatefulSet", workload)!.spec.template.spec;
    const mount = spec.containers.find((c: { name: string }) => c.name === workload).volumeMounts.find((m: { mountPath: string }) => m.mountPath === "/etc/mail/tls");
    return spec.volumes.find((v: { name: string }) => v.name === mount.name).secret.secretName;
}

describe("tlsMode selfsigned (default)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, ...kubeconfig });
    });
    it("mounts a self-signed kubernetes.io/tls Secret in Postfix and Dovecot", () => {
        expect(find(run, "Secret", "mail-tls")!.type).toBe("kubernetes.io/tls");
        expect(run.recorder.ofType("tls:index/selfSignedCert:SelfSignedCert")).toHaveLength(1);
        expect([mountedTlsSecret(run, "postfix"), mountedTlsSecret(run, "dovecot")]).toEqual(["mail-tls", "mail-tls"]);
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
        const chart = unwrapSecrets(run.recorder.ofType("kubernetes:helm.sh/v4:Chart").map((c) => c.inputs).find((i) => i.chart === "cert-manager")) as { version: string; namespace: string; values: { crds: { enabled: boolean } } };
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
            const secret = run.recorder.resources.find((r) => r.type === "kubernetes:core/v1:Secret" && (r.inputs.metadata as { name: string }).name === ref.name)!;
            expect(isSecret(secret.inputs.stringData)).toBe(true);
            expect((unwrapSecrets(secret.inputs.stringData) as Record<string, string>)[ref.key]).toBe("do-token-123");
        } else {
            expect(solver.dns01.cloudDNS.project).toBe("mock-project");
            const ref = solver.dns01.cloudDNS.serviceAccountSecretRef;
            expect(find(run, "Secret", ref.name)).toBeDefined();
            const binding = run.recorder.one("gcp:projects/iAMMember:IAMMember").inputs;
            expect(binding.role).toBe("roles/dns.admin");
            expect(binding.member).toMatch(/^serviceAccount:mail-dns01-test@/);
        }
    });
});

describe("disallowed TLS combinations", () => {
    it.each([
        [{ ...kubeconfig, tlsMode: "acme" }, 'mail:tlsMode = "acme" is not allowed with edgeMode loadbalancer and dnsManage false: set dnsManage true (DNS-01), or edgeMode ingress-nginx (HTTP-01)'],
        [{ clusterProvider: "digitalocean", tlsMode: "acme", dnsManage: true }, "mail:tlsAcmeDigitaloceanToken is required with tlsMode acme and dnsManage on digitalocean"],
        [{ ...kubeconfig, tlsMode: "secret" }, 'mail:tlsSecretName = "" is not allowed: required with tlsMode secret'],
        [{ ...kubeconfig, tlsMode: "letsencrypt" }, 'mail:tlsMode = "letsencrypt" is not allowed: expected one of selfsigned, acme, secret'],
        [{ ...kubeconfig, dnsManage: true }, "mail:dnsManage = true is not allowed with clusterProvider kubeconfig"],
    ])("%j fails preview naming the key, the value and what is allowed", async (bad, message) => {
        await expect(runProgram({ ...mail, ...bad })).rejects.toThrow(message);
    });
});
