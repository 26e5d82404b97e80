// Our images from the program's point of view: pinned by digest in stack config (imagesDigests, what the deploy
// workflow sets from the images workflow's run), checked by name, and a changed digest changes only the workloads
// that run that image.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parse } from "yaml";
import { loadConfig, ourImageNames } from "../../components/config/load";
import { kubernetesObjects, unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";
import { cliProgramConfig, opaqueDecrypter } from "../kit/pulumi-cli-config";
import { changedResources, deploy } from "./engine-state";

jest.setTimeout(120_000);

const ROOT = path.join(__dirname, "..", "..");
const MAIL = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };
const digest = (c: string) => `sha256:${c.repeat(64)}`;

function load(values: Record<string, unknown>) {
    pulumi.runtime.setAllConfig(Object.fromEntries(Object.entries(values).map(([k, v]) => [`mail:${k}`, typeof v === "string" ? v : JSON.stringify(v)])));
    return loadConfig();
}

describe("imagesDigests", () => {
    it("names exactly the images images/build.sh builds (the images workflow records one digest per folder)", () => {
        const folders = fs
            .readdirSync(path.join(ROOT, "images"))
            .filter((d) => fs.existsSync(path.join(ROOT, "images", d, "Dockerfile")))
            .sort();
        expect(ourImageNames()).toEqual(folders);
        expect(folders).toEqual(expect.arrayContaining(["couchmail", "dovecot", "opendkim", "postfix", "postgrey", "spamassassin"]));
    });

    it("reads a map of digests; none by default", () => {
        expect(load(MAIL).images.digests).toEqual({});
        expect(load({ ...MAIL, imagesDigests: { postfix: digest("a") } }).images.digests).toEqual({ postfix: digest("a") });
    });

    it.each([
        [{ nginx: digest("a") }, /^mail:imagesDigests\.nginx is not one of our images: expected one of .*couchmail, dovecot, .*postfix/],
        [{ postfix: "sha256:abc" }, 'mail:imagesDigests.postfix = "sha256:abc" is not allowed: expected sha256: and 64 lowercase hex digits'],
        [{ postfix: digest("A") }, /^mail:imagesDigests\.postfix = "sha256:A{64}" is not allowed/],
        [{ postfix: `md5:${"a".repeat(32)}` }, /^mail:imagesDigests\.postfix = "md5:/],
        [["postfix"], `mail:imagesDigests = ["postfix"] is not allowed: expected a map of strings, e.g. set with --path 'imagesDigests.name'`],
        [{ postfix: 1 }, /^mail:imagesDigests = \{"postfix":1\} is not allowed: expected a map of strings/],
    ])("refuses %j naming the key", (value, message) => {
        expect(() => load({ ...MAIL, imagesDigests: value })).toThrow(message);
    });

    it("a stack file with digests set by `pulumi config set --path` passes the CLI and reaches the program", () => {
        const stackYaml = `config:\n  mail:mailHostname: mail.example.com\n  mail:mailDomains: [example.com]\n  mail:imagesDigests:\n    postfix: ${digest("b")}\n`;
        const program = cliProgramConfig({
            projectYaml: fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8"),
            stackYaml,
            stackName: "staging",
            decrypt: opaqueDecrypter,
        });
        pulumi.runtime.setAllConfig(program.config, program.secretKeys);
        expect(loadConfig().images.digests).toEqual({ postfix: digest("b") });
    });

    it("the deploy workflow sets imagesDigests.<image> for every digest the images run recorded", () => {
        expect(fs.readFileSync(path.join(ROOT, ".github/scripts/set-digests.sh"), "utf8")).toMatch(
            /pulumi config set --stack "\$stack" --path "imagesDigests\.\$service" "\$digest"/,
        );
        const deployJobs = parse(fs.readFileSync(path.join(ROOT, ".github/workflows/deploy.yml"), "utf8")).jobs;
        for (const job of ["staging", "prod"]) expect(deployJobs[job].steps.some((s: { run?: string }) => s.run?.includes("set-digests.sh"))).toBe(true);
    });
});

describe("the program with pinned images", () => {
    it("references a pinned image by digest and the others by tag", async () => {
        const run = await runProgram({ ...MAIL, clusterProvider: "digitalocean", imagesRegistry: "ghcr.io/me/mail", imagesDigests: { postfix: digest("c") } });
        type Pod = { containers: { name: string; image: string }[]; initContainers?: { name: string; image: string }[] };
        const images = kubernetesObjects(run.recorder.resources)
            .map((r) => unwrapSecrets(r.inputs) as { metadata: { name: string }; spec?: { template?: { spec?: Pod } } })
            .flatMap((o) =>
                [...(o.spec?.template?.spec?.initContainers ?? []), ...(o.spec?.template?.spec?.containers ?? [])].map(
                    (c) => `${o.metadata.name}/${c.name} ${c.image}`,
                ),
            );
        expect(images).toEqual(
            expect.arrayContaining([
                `postfix/postfix ghcr.io/me/mail/postfix@${digest("c")}`,
                "postfix/couchmail ghcr.io/me/mail/couchmail:dev",
                "dovecot/dovecot ghcr.io/me/mail/dovecot:dev",
            ]),
        );
        expect(images.filter((i) => i.includes("@sha256:"))).toEqual([`postfix/postfix ghcr.io/me/mail/postfix@${digest("c")}`]);
    });

    it.each([
        ["postfix", ["kubernetes:apps/v1:StatefulSet::mail-postfix-statefulset"]],
        ["opendkim", ["kubernetes:apps/v1:Deployment::mail-opendkim-deployment"]],
        // couchmail runs as a sidecar of Postfix and Dovecot and in the datastore sync Job.
        [
            "couchmail",
            [
                "kubernetes:apps/v1:StatefulSet::mail-dovecot-statefulset",
                "kubernetes:apps/v1:StatefulSet::mail-postfix-statefulset",
                "kubernetes:batch/v1:Job::mail-couchmail-sync",
            ],
        ],
    ])("a new %s digest changes only the workloads that run it", async (image, workloads) => {
        const base = { ...MAIL, clusterProvider: "digitalocean", imagesDigests: { postfix: digest("1"), opendkim: digest("1"), couchmail: digest("1") } };
        const before = await deploy(base);
        const after = await deploy({ ...base, imagesDigests: { ...base.imagesDigests, [image]: digest("2") } }, before.state);
        const diff = changedResources(before, after);
        expect({ created: diff.created, deleted: diff.deleted, updated: diff.updated.map((k) => k.split("|")[1]).sort() }).toEqual({
            created: [],
            deleted: [],
            updated: workloads,
        });
    });
});
