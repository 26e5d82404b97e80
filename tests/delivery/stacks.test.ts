// The environment stacks the workflows deploy, as the Pulumi CLI hands their config to the program
// (tests/config/cli.test.ts checks every committed stack file against the CLI model and the reader).
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { cliProgramConfig, opaqueDecrypter } from "../kit/pulumi-cli-config";
import { e2eConfig } from "../e2e/program";

const ROOT = path.join(__dirname, "..", "..");
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");
const stackConfig = (stack: string) =>
    cliProgramConfig({ projectYaml: read("Pulumi.yaml"), stackYaml: read(`Pulumi.${stack}.yaml`), stackName: stack, decrypt: opaqueDecrypter }).config;

describe("environment stacks", () => {
    it("staging is a DOKS stack and prod a GKE one, each naming its own cluster", () => {
        expect(stackConfig("staging")).toMatchObject({ "mail:clusterProvider": "digitalocean", "mail:clusterName": "mail-staging" });
        expect(stackConfig("prod")).toMatchObject({ "mail:clusterProvider": "gke", "mail:clusterName": "mail-prod", "mail:clusterDeletionProtection": "true" });
    });

    it("the workflows deploy and preview exactly the committed environment stacks", () => {
        const preview = parse(read(".github/workflows/preview.yml"));
        const deploy = parse(read(".github/workflows/deploy.yml"));
        expect(preview.jobs.preview.strategy.matrix.stack).toEqual(["staging", "prod"]);
        expect(Object.keys(deploy.jobs).filter((j) => deploy.jobs[j].environment)).toEqual(["staging", "prod"]);
        for (const stack of ["staging", "prod"]) expect(fs.existsSync(path.join(ROOT, `Pulumi.${stack}.yaml`))).toBe(true);
    });
});

describe("the ci stack (kind workflow)", () => {
    const ci = stackConfig("ci");

    it("runs with the e2e suite's settings, which its tests rely on (host, domains, DNSBLs, retry timers, greylisting)", () => {
        const e2e = e2eConfig("unused");
        for (const key of ["mailHostname", "mailDomains", "postfixDnsbls", "postfixMainCf", "greylistDelay"]) {
            const value = e2e[key];
            expect({ key, value: ci[`mail:${key}`] }).toEqual({ key, value: typeof value === "string" ? value : JSON.stringify(value) });
        }
    });

    it("targets the kind cluster the workflow creates and the images it loads there, which are never pulled", () => {
        const kind = parse(read(".github/workflows/kind.yml")).jobs.kind;
        const cluster = kind.steps.find((s: { uses?: string }) => s.uses?.startsWith("helm/kind-action@")).with.cluster_name;
        expect(ci).toMatchObject({
            "mail:clusterProvider": "kubeconfig",
            "mail:clusterKubeconfigContext": `kind-${cluster}`,
            "mail:imagesPullPolicy": "Never",
        });
        // .github/scripts/images.sh archive saves images/build.sh's mail/<service>:ci.
        const script = read(".github/scripts/images.sh");
        expect(script).toMatch(/IMAGE_TAG=ci images\/build\.sh all/);
        expect(script).toMatch(/docker-archive:\$dir\/\\\$s\.tar:mail\/\\\$s:ci/);
        expect(ci).toMatchObject({ "mail:imagesRegistry": "mail", "mail:imagesTag": "ci" });
    });
});
