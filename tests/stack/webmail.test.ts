// webmailEnabled through each edge: the webmail pod's HTTPS reaches the world through the load balancer or the node's
// ports as TCP (PROXY twins where the edge sends PROXY), or through an Ingress where ingress-nginx owns 80/443; its
// certificate names its host; it may talk only to Dovecot's IMAP/ManageSieve and Postfix's submissions port.
import { schemaErrors } from "../kit/k8s-schema";
import { stackObjectLookup } from "../kit/stack-objects";
import { ProgramRun, runProgram } from "../kit/program";
import { ingressNginxTcpServices } from "../../components/edge/ingress-nginx";
import { edgePlan } from "../../components/edge/plan";
import { DOVECOT_LISTENERS } from "../../components/dovecot/config";
import { POSTFIX_LISTENERS } from "../../components/postfix/config";
import { WEBMAIL_LISTENERS } from "../../components/webmail/config";
import { COUCHMAIL, COUCHMAIL_PASSWORD_LISTENER } from "../../components/couchmail";

const { objects, find, get } = stackObjectLookup();
const mail = { clusterProvider: "digitalocean", mailHostname: "mail.example.com", mailDomains: ["example.com"], webmailEnabled: true };
type Port = { name: string; containerPort: number; hostPort?: number };
const webmailPorts = (run: ProgramRun): Port[] =>
    get(run, "StatefulSet", "webmail").spec.template.spec.containers.find((c: { name: string }) => c.name === "webmail").ports;

describe("webmail through the DigitalOcean load balancer (PROXY)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(mail);
    });

    it("creates only schema-valid objects, the webmail among them", () => {
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        expect(find(run, "StatefulSet", "webmail")).toBeDefined();
        expect(run.recorder.one("mail:index:Webmail")).toBeDefined();
    });

    it("forwards 443 and 80 to the webmail's PROXY twins, which its container serves", () => {
        const edge = get(run, "Service", "mail-edge");
        const forwarded = Object.fromEntries(edge.spec.ports.map((p: { port: number; targetPort: string }) => [p.port, p.targetPort]));
        expect(forwarded[443]).toBe(WEBMAIL_LISTENERS.https.proxy.name);
        expect(forwarded[80]).toBe(WEBMAIL_LISTENERS.http.proxy.name);
        expect(webmailPorts(run).map((p) => p.name)).toEqual(expect.arrayContaining([WEBMAIL_LISTENERS.https.proxy.name, WEBMAIL_LISTENERS.http.proxy.name]));
    });

    it("reaches only Dovecot's IMAPS and ManageSieve and Postfix's submissions port (and DNS)", () => {
        const policy = get(run, "NetworkPolicy", "webmail");
        const egress = policy.spec.egress.flatMap((r: { ports: { port: number }[]; to?: { podSelector?: unknown }[] }) =>
            (r.ports ?? []).map((p) => [p.port, JSON.stringify(r.to ?? "anywhere")]),
        );
        const ports = egress.map(([port]: [number]) => port).sort((a: number, b: number) => a - b);
        expect(ports).toEqual(
            [53, 53, DOVECOT_LISTENERS.imaps.port, DOVECOT_LISTENERS.sieve.port, POSTFIX_LISTENERS.submissions.port, COUCHMAIL_PASSWORD_LISTENER.port].sort(
                (a, b) => a - b,
            ),
        );
    });

    it("serves the password change from Dovecot's couchmail over TLS, to the webmail only, which verifies it as the mail host", () => {
        const dovecot = get(run, "StatefulSet", "dovecot").spec.template.spec;
        const couchmail = dovecot.initContainers.find((c: { name: string }) => c.name === "couchmail");
        const env = Object.fromEntries(couchmail.env.map((e: { name: string; value?: string }) => [e.name, e.value]));
        expect(env.COUCHMAIL_PASSWORD_LISTEN).toBe(`0.0.0.0:${COUCHMAIL_PASSWORD_LISTENER.port}`);
        expect(env.COUCHMAIL_PASSWORD_TLS_CERT).toBe(`${COUCHMAIL.passwordTlsDir}/tls.crt`);
        expect(couchmail.ports).toEqual([{ name: "password", containerPort: COUCHMAIL_PASSWORD_LISTENER.port, protocol: "TCP" }]);
        expect(couchmail.volumeMounts).toContainEqual({ name: "couchmail-password-tls", mountPath: COUCHMAIL.passwordTlsDir, readOnly: true });
        const policy = get(run, "NetworkPolicy", "dovecot");
        const rule = policy.spec.ingress.find((r: { ports: { port: number }[] }) => r.ports.some((p) => p.port === COUCHMAIL_PASSWORD_LISTENER.port));
        expect(rule.ports).toEqual([{ port: COUCHMAIL_PASSWORD_LISTENER.port, protocol: "TCP" }]);
        expect(rule.from).toEqual([{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: ["webmail"] }] } }]);
        const password = get(run, "ConfigMap", "webmail-config").data!["password.inc.php"];
        expect(password).toContain(`$config['password_httpapi_url'] = 'https://dovecot:${COUCHMAIL_PASSWORD_LISTENER.port}/password';`);
        expect(password).toContain(`'stream_context' => ['ssl' => ['peer_name' => 'mail.example.com']]`);
    });
});

describe("webmail with its own host name and a self-signed certificate", () => {
    it("puts that name in the certificate and warns to point its record at the edge", async () => {
        const run = await runProgram({ ...mail, webmailHostname: "webmail.example.com" });
        const cert = run.recorder.resources.find((r) => r.type === "tls:index/selfSignedCert:SelfSignedCert")!;
        expect(cert.inputs.dnsNames).toEqual(["mail.example.com", "webmail.example.com"]);
        const warnings = (await run.resolve(run.outputs.warnings as string[])).value;
        expect(warnings.some((w) => w.startsWith("webmailHostname webmail.example.com: point its A record"))).toBe(true);
    });
});

describe("webmail through ingress-nginx", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, edgeMode: "ingress-nginx" });
    });

    it("routes the host through an HTTPS Ingress with the stack's certificate, not through tcp-services", () => {
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        const ingress = get(run, "Ingress", "webmail");
        expect(ingress.spec.ingressClassName).toBe("nginx");
        expect(ingress.spec.tls).toEqual([{ hosts: ["mail.example.com"], secretName: expect.any(String) }]);
        expect(ingress.spec.rules[0].http.paths[0].backend.service).toEqual({ name: "webmail", port: { name: WEBMAIL_LISTENERS.https.name } });
        expect(ingress.metadata.annotations?.["nginx.ingress.kubernetes.io/backend-protocol"]).toBe("HTTPS");
        const tcp = ingressNginxTcpServices({
            namespace: "mail",
            hostname: "mail.example.com",
            plan: edgePlan("ingress-nginx", "digitalocean", { webmail: true }),
        });
        expect(Object.keys(tcp)).not.toContain("443");
        expect(Object.keys(tcp)).not.toContain("80");
    });
});

describe("webmail on the hostport edge", () => {
    it("binds 443 and 80 on the node and opens them in the firewall", async () => {
        const run = await runProgram({ ...mail, edgeMode: "hostport" });
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        const bound = webmailPorts(run)
            .filter((p) => p.hostPort)
            .map((p) => [p.hostPort, p.containerPort]);
        expect(bound.sort()).toEqual(
            [
                [443, WEBMAIL_LISTENERS.https.port],
                [80, WEBMAIL_LISTENERS.http.port],
            ].sort(),
        );
        const firewall = run.recorder.resources.find((r) => r.type === "digitalocean:index/firewall:Firewall")!;
        const open = (firewall.inputs.inboundRules as { portRange: string }[]).map((r) => r.portRange);
        expect(open).toEqual(expect.arrayContaining(["443", "80", "25", "993"]));
    });
});

describe("without webmailEnabled", () => {
    it("has no webmail and no web ports at the edge", async () => {
        const run = await runProgram({ ...mail, webmailEnabled: false });
        expect(objects(run).filter((o) => o.metadata.name === "webmail")).toEqual([]);
        const edge = get(run, "Service", "mail-edge");
        expect(edge.spec.ports.map((p: { port: number }) => p.port)).not.toContain(443);
    });
});
