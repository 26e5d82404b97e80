import * as crypto from "crypto";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { DeclaredObject, stackObjectLookup } from "../kit/stack-objects";
import { RecordedResource } from "../kit/mocks";
import { clusterTargets, ProgramRun, runProgram } from "../kit/program";
import { COUCHMAIL } from "../../components/couchmail";
import { DOVECOT_LISTENERS } from "../../components/dovecot/config";
import { OPENDKIM_LISTENERS } from "../../components/opendkim/config";
import { POSTFIX_LISTENERS } from "../../components/postfix/config";

type Obj = DeclaredObject;
type Container = {
    name: string;
    env?: { name: string; value?: string }[];
    ports?: { name: string; containerPort: number }[];
    readinessProbe?: unknown;
    livenessProbe?: unknown;
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
};

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com", "example.org"] };

const TARGETS = clusterTargets();

const { objects, get } = stackObjectLookup();
const podSpec = (o: Obj) => o.spec.template.spec;
const allContainers = (o: Obj): Container[] => [...(podSpec(o).initContainers ?? []), ...podSpec(o).containers];
const container = (o: Obj, name: string) => allContainers(o).find((c) => c.name === name)!;
const env = (c: Container, name: string) => c.env?.find((e) => e.name === name)?.value;
const isSecret = (value: unknown) => JSON.stringify(value).includes("4dabf18193072939515e22adb298388d");

describe.each(Object.keys(TARGETS))("MailStack on %s", (target) => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, ...TARGETS[target] });
    });

    it("creates only schema-valid Kubernetes objects", () => {
        expect(objects(run).length).toBeGreaterThan(15);
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
    });

    it("creates every Kubernetes object with the cluster's provider, in the mail namespace, labelled", () => {
        const provider = run.recorder.one("pulumi:providers:kubernetes");
        const providerUrn = run.recorder.urnOf(provider);
        for (const r of kubernetesObjects(run.recorder.resources)) {
            expect({ name: r.name, provider: r.provider.split("::").slice(0, -1).join("::") }).toEqual({ name: r.name, provider: providerUrn });
            const o = unwrapSecrets(r.inputs) as Obj;
            if (o.kind !== "Namespace") expect({ name: r.name, ns: o.metadata.namespace }).toEqual({ name: r.name, ns: "mail" });
            expect(o.metadata.labels?.["app.kubernetes.io/part-of"]).toBe("mail");
        }
    });

    it("parents every resource under a component, and the components under MailStack", () => {
        const stackUrn = run.recorder.urnOf(run.recorder.one("mail:index:MailStack"));
        for (const token of ["CouchDb", "Couchmail", "DkimKeys", "OpenDkim", "Dovecot", "Postfix", "SelfSignedTls"]) {
            expect(run.recorder.one(`mail:index:${token}`).parent).toBe(stackUrn);
        }
        for (const r of run.recorder.resources.filter((x) => x.custom && !x.type.startsWith("pulumi:providers"))) {
            expect({ r: r.name, hasParent: r.parent !== "" }).toEqual({ r: r.name, hasParent: true });
        }
    });

    it("gives every container requests, limits and probes", () => {
        for (const o of objects(run).filter((x) => ["StatefulSet", "Deployment"].includes(x.kind))) {
            for (const c of allContainers(o)) {
                expect({ c: c.name, requests: !!c.resources?.requests?.memory, limits: !!c.resources?.limits?.memory }).toEqual({
                    c: c.name,
                    requests: true,
                    limits: true,
                });
                expect({ c: c.name, readiness: !!c.readinessProbe, liveness: !!c.livenessProbe }).toEqual({ c: c.name, readiness: true, liveness: true });
            }
        }
    });

    it("gives probes that start a Node.js process (couchmail's CLI) time to start on a busy node", () => {
        type Probe = { exec?: { command: string[] }; timeoutSeconds?: number };
        const nodeProbes = objects(run)
            .filter((x) => ["StatefulSet", "Deployment"].includes(x.kind))
            .flatMap(allContainers)
            .flatMap((c) => [(c as { livenessProbe?: Probe }).livenessProbe, (c as { readinessProbe?: Probe }).readinessProbe])
            .filter((p): p is Probe => p?.exec?.command[0] === "couchmail");
        expect(nodeProbes.length).toBeGreaterThan(0);
        for (const p of nodeProbes) expect(p.timeoutSeconds ?? 1).toBeGreaterThanOrEqual(10);
    });

    it("wires ports consistently: Services, containers, rendered configs and couchmail's listeners agree", () => {
        const servicePorts = (name: string) =>
            Object.fromEntries(get(run, "Service", name).spec.ports.map((p: { name: string; port: number }) => [p.name, p.port]));
        const containerPorts = (o: Obj, c: string) => Object.fromEntries((container(o, c).ports ?? []).map((p) => [p.name, p.containerPort]));

        // The default edge (loadbalancer) sends PROXY headers only on DigitalOcean (tests/edge covers every mode).
        const proxy = target === "digitalocean";
        const postfix = get(run, "StatefulSet", "postfix");
        expect(servicePorts("postfix")).toEqual({
            smtp: POSTFIX_LISTENERS.smtp.port,
            submission: POSTFIX_LISTENERS.submission.port,
            submissions: POSTFIX_LISTENERS.submissions.port,
            ...(proxy
                ? {
                      "smtp-proxy": POSTFIX_LISTENERS.smtp.proxy.port,
                      "subm-proxy": POSTFIX_LISTENERS.submission.proxy.port,
                      "subms-proxy": POSTFIX_LISTENERS.submissions.proxy.port,
                  }
                : {}),
        });
        expect(containerPorts(postfix, "postfix")).toEqual(servicePorts("postfix"));
        const dovecot = get(run, "StatefulSet", "dovecot");
        expect(servicePorts("dovecot")).toEqual({
            imap: DOVECOT_LISTENERS.imap.port,
            imaps: DOVECOT_LISTENERS.imaps.port,
            lmtp: DOVECOT_LISTENERS.lmtp.port,
            sieve: DOVECOT_LISTENERS.sieve.port,
            auth: DOVECOT_LISTENERS.authSasl.port,
            ...(proxy
                ? {
                      "imap-proxy": DOVECOT_LISTENERS.imap.proxy.port,
                      "imaps-proxy": DOVECOT_LISTENERS.imaps.proxy.port,
                      "sieve-proxy": DOVECOT_LISTENERS.sieve.proxy.port,
                  }
                : {}),
        });
        expect(containerPorts(dovecot, "dovecot")).toEqual(servicePorts("dovecot"));
        expect(servicePorts("opendkim")).toEqual({ milter: OPENDKIM_LISTENERS.milter.port });

        const mainCf = get(run, "ConfigMap", "postfix-config").data!["main.cf"];
        const masterCf = get(run, "ConfigMap", "postfix-config").data!["master.cf"];
        const dovecotConf = get(run, "ConfigMap", "dovecot-config").data!["dovecot.conf"];
        // Postfix reaches Dovecot's SASL and LMTP and OpenDKIM's milter at their Services' ports.
        expect(mainCf).toMatch(new RegExp(`smtpd_sasl_path = inet:dovecot:${servicePorts("dovecot").auth}\\b`));
        expect(mainCf).toMatch(new RegExp(`virtual_transport = lmtp:inet:dovecot:${servicePorts("dovecot").lmtp}\\b`));
        expect(mainCf).toContain(`inet:opendkim:${servicePorts("opendkim").milter}`);
        // Postfix listens where its Service sends traffic.
        for (const port of Object.values(servicePorts("postfix"))) {
            expect(masterCf).toMatch(new RegExp(`^${port}\\s+inet\\b`, "m"));
        }
        // Dovecot listens where its Service sends traffic.
        for (const port of Object.values(servicePorts("dovecot"))) expect(dovecotConf).toMatch(new RegExp(`port = ${port}\\b`));
        // couchmail listens where Postfix and Dovecot look.
        const postfixCouchmail = container(postfix, "couchmail");
        expect(mainCf).toContain(`socketmap:inet:${env(postfixCouchmail, "COUCHMAIL_SOCKETMAP_LISTEN")}:`);
        const dovecotCouchmail = container(dovecot, "couchmail");
        expect(dovecotConf).toContain(`http://${env(dovecotCouchmail, "COUCHMAIL_HTTP_LISTEN")}`);
        expect(`unix:${COUCHMAIL.dictSocket}`).toBe(env(dovecotCouchmail, "COUCHMAIL_DICT_LISTEN"));
        expect(dovecotConf).toContain(COUCHMAIL.dictSocket);
        // Dovecot mounts couchmail's Lua script where its passdb/userdb load it, and the script defines both lookups.
        const lua = get(run, "ConfigMap", "couchmail-lua").data![COUCHMAIL.luaFile];
        expect(dovecotConf).toContain(`lua_file = ${COUCHMAIL.luaMountDir}/${COUCHMAIL.luaFile}`);
        expect(lua).toMatch(/^function auth_passdb_lookup\(/m);
        expect(lua).toMatch(/^function auth_userdb_lookup\(/m);
        // Loopback only: couchmail's HTTP answers with password hashes.
        for (const c of [postfixCouchmail, dovecotCouchmail]) expect(env(c, "COUCHMAIL_HTTP_LISTEN")).toMatch(/^127\.0\.0\.1:/);
    });

    it("keeps secrets secret: kubeconfig output, CouchDB admin, DKIM keys, TLS key", async () => {
        expect((await run.resolve(run.outputs.kubeconfig as string)).secret).toBe(true);
        const secretInputs = (name: string): RecordedResource =>
            run.recorder.resources.find((r) => r.type === "kubernetes:core/v1:Secret" && (r.inputs.metadata as { name: string }).name === name)!;
        for (const name of ["couchdb-admin", "dkim-keys", "mail-tls-selfsigned"])
            expect({ name, secret: isSecret(secretInputs(name).inputs.stringData) }).toEqual({ name, secret: true });
        // Secrets reach pods only as mounted files or secretKeyRefs, never as literal env values.
        for (const o of objects(run).filter((x) => ["StatefulSet", "Deployment"].includes(x.kind))) {
            for (const c of allContainers(o))
                for (const e of c.env ?? []) {
                    if (/(PASSWORD|SECRET)$/.test(e.name)) expect({ env: e.name, literal: e.value }).toEqual({ env: e.name, literal: undefined });
                }
        }
    });

    it("outputs DKIM TXT values that parse as v=DKIM1; k=rsa; p=<an RSA-2048 public key>", async () => {
        const txt = run.outputs.dkimTxt as Record<string, unknown>;
        expect(Object.keys(txt).sort()).toEqual(["example.com", "example.org"]);
        for (const domain of Object.keys(txt)) {
            const value = (await run.resolve(txt[domain] as string)).value;
            const m = /^v=DKIM1; k=rsa; p=([A-Za-z0-9+/=]+)$/.exec(value);
            expect(m).not.toBeNull();
            const key = crypto.createPublicKey({ key: Buffer.from(m![1], "base64"), format: "der", type: "spki" });
            expect(key.asymmetricKeyDetails?.modulusLength).toBe(2048);
        }
    });

    it("outputs a zone snippet with MX, SPF, DKIM and DMARC for every domain", async () => {
        const zone = (await run.resolve(run.outputs.dnsZone as string)).value;
        const lines = zone
            .trim()
            .split("\n")
            .map((l) => l.split("\t"));
        const record = (name: string, type: string) => lines.filter((l) => l[0] === name && l[3] === type).map((l) => l[4]);
        for (const domain of ["example.com", "example.org"]) {
            expect(record(`${domain}.`, "MX")).toEqual(["10 mail.example.com."]);
            expect(record(`${domain}.`, "TXT")).toEqual(['"v=spf1 mx -all"']);
            expect(record(`_dmarc.${domain}.`, "TXT")[0]).toMatch(/^"v=DMARC1; p=quarantine;.*rua=mailto:postmaster@example\.com"$/);
            const dkim = record(`mail._domainkey.${domain}.`, "TXT")[0];
            // Split into ≤255-byte strings, which join back to the DKIM TXT value.
            const strings = [...dkim.matchAll(/"([^"]*)"/g)].map((m) => m[1]);
            expect(strings.every((s) => s.length <= 255)).toBe(true);
            expect(strings.join("")).toBe((await run.resolve((run.outputs.dkimTxt as Record<string, string>)[domain])).value);
        }
    });
});
