import * as path from "path";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { fakeKubeconfig, ProgramRun, runProgram } from "../kit/program";
import { RELAY_PASSWORD_MAP } from "../../components/stack";

type Obj = { kind: string; metadata: { name: string }; spec?: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any

const mail = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };
const relay = { relayHost: "smtp.relay.example", relayPort: 465, relayUsername: "me@example.com", relayPassword: "s3cret pass" };
const objects = (run: ProgramRun) => kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
const find = (run: ProgramRun, kind: string, name: string) => objects(run).find((o) => o.kind === kind && o.metadata.name === name);
const isSecret = (value: unknown) => JSON.stringify(value).includes("4dabf18193072939515e22adb298388d");
const warnings = async (run: ProgramRun) => (await run.resolve(run.outputs.warnings as string[])).value;

describe("outbound relay", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, clusterProvider: "digitalocean", ...relay });
    });

    it("renders relayhost, wrapper-mode TLS and the SASL password map", () => {
        const mainCf = find(run, "ConfigMap", "postfix-config")!.data!["main.cf"];
        expect(mainCf).toMatch(/^relayhost = \[smtp\.relay\.example\]:465$/m);
        expect(mainCf).toMatch(/^smtp_tls_wrappermode = yes$/m);
        expect(mainCf).toMatch(/^smtp_tls_security_level = secure$/m);
        expect(mainCf).toMatch(new RegExp(`^smtp_sasl_password_maps = texthash:${RELAY_PASSWORD_MAP}$`, "m"));
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
    });

    it("keeps the password in a secret Secret, mounted where the map points, and reloads when it changes", () => {
        const recorded = run.recorder.resources.find(
            (r) => r.type === "kubernetes:core/v1:Secret" && (r.inputs.metadata as { name: string }).name === "postfix-relay",
        )!;
        expect(isSecret(recorded.inputs.stringData)).toBe(true);
        const data = unwrapSecrets(recorded.inputs.stringData) as Record<string, string>;
        expect(data).toEqual({ [path.basename(RELAY_PASSWORD_MAP)]: "[smtp.relay.example]:465 me@example.com:s3cret pass\n" });
        const pod = find(run, "StatefulSet", "postfix")!.spec.template.spec;
        const postfix = pod.containers.find((c: { name: string }) => c.name === "postfix");
        const mount = postfix.volumeMounts.find((m: { mountPath: string }) => m.mountPath === path.dirname(RELAY_PASSWORD_MAP));
        expect(pod.volumes.find((v: { name: string }) => v.name === mount.name).secret).toEqual({ secretName: "postfix-relay", defaultMode: 0o400 });
        expect(postfix.env).toContainEqual({ name: "EXTRA_WATCH", value: `/etc/mail/tls ${path.dirname(RELAY_PASSWORD_MAP)}` });
        // Nothing else carries the password in clear.
        const clear = run.recorder.resources.filter(
            (r) => r !== recorded && JSON.stringify(unwrapSecrets(r.inputs)).includes("s3cret pass") && !isSecret(r.inputs),
        );
        expect(clear.map((r) => r.name)).toEqual([]);
    });

    it("has no port-25 warning once a relay is set", async () => {
        expect((await warnings(run)).filter((w) => /port 25/.test(w))).toEqual([]);
    });
});

describe("without a relay", () => {
    it.each(["digitalocean", "gke"])("warns that %s blocks outbound port 25", async (clusterProvider) => {
        const run = await runProgram({ ...mail, clusterProvider });
        expect(await warnings(run)).toContainEqual(expect.stringMatching(new RegExp(`^${clusterProvider} blocks outbound port 25.*set relayHost`)));
        expect(find(run, "ConfigMap", "postfix-config")!.data!["main.cf"]).toMatch(/^relayhost =$/m);
        expect(find(run, "Secret", "postfix-relay")).toBeUndefined();
    });

    it("does not warn on an existing cluster", async () => {
        const run = await runProgram({ ...mail, clusterProvider: "kubeconfig", clusterKubeconfig: fakeKubeconfig() });
        expect(await warnings(run)).toEqual([]);
    });
});

describe("relay config errors", () => {
    it.each([
        [{ ...relay, relayPort: 25 }, 'mail:relayPort = "25" is not allowed: expected 587 (STARTTLS) or 465 (implicit TLS)'],
        [{ relayHost: "smtp.relay.example" }, 'mail:relayHost = "smtp.relay.example" needs mail:relayUsername and mail:relayPassword'],
        [{ relayUsername: "me" }, "mail:relayHost is required when relayUsername or relayPassword is set"],
        [{ ...relay, relayHost: "smtp relay" }, 'mail:relayHost = "smtp relay" is not allowed: expected a fully qualified'],
    ])("%j fails preview naming the key, the value and what is allowed", async (bad, message) => {
        await expect(runProgram({ ...mail, clusterProvider: "gke", ...bad })).rejects.toThrow(message);
    });
});
