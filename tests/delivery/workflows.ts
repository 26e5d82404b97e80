// Our own checks on GitHub Actions workflows, beyond what schema validation (@action-validator) and actionlint see:
// every third-party action pinned, least privilege declared, no pull_request_target job running PR code with the
// base repository's token, secrets only in jobs that name an environment, and no two deploys of a stack at once.
// Pure functions over the workflow's text, so each rule is unit-tested with a workflow it must refuse.
import { isMap, parseDocument } from "yaml";

export interface WorkflowProblem {
    file: string;
    /** The job id, when the problem is inside one. */
    job?: string;
    message: string;
}

type Mapping = Record<string, unknown>;

const isObject = (v: unknown): v is Mapping => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * A `uses:` reference we accept: a local action or reusable workflow (`./…`), a Docker image by digest, or
 * `owner/repo[/path]@<ref>` where ref is a full 40-hex commit SHA or an exact version tag vX.Y.Z (a moving major tag
 * like `v4` or a branch can change under us).
 */
export function pinProblem(uses: string): string | undefined {
    if (uses.startsWith("./")) return undefined;
    if (uses.startsWith("docker://")) {
        return /@sha256:[0-9a-f]{64}$/.test(uses) ? undefined : "a docker:// action must name its image by digest (image@sha256:…)";
    }
    const m = /^([A-Za-z0-9_.-]+\/[A-Za-z0-9_.-]+(?:\/[^@\s]+)?)@(.+)$/.exec(uses);
    if (!m) return "expected owner/repo[/path]@ref";
    const ref = m[2];
    if (/^[0-9a-f]{40}$/.test(ref)) return undefined;
    if (/^v\d+\.\d+\.\d+$/.test(ref)) return undefined;
    return `ref "${ref}" is not a full commit SHA (40 hex digits) or an exact version tag (vX.Y.Z)`;
}

/** The events a workflow's `on:` names (string, list or map form). */
export function triggers(on: unknown): string[] {
    if (typeof on === "string") return [on];
    if (Array.isArray(on)) return on.map(String);
    if (isObject(on)) return Object.keys(on);
    return [];
}

/** Every string inside a value (step inputs, env, run scripts), for expression scans. */
function strings(value: unknown): string[] {
    if (typeof value === "string") return [value];
    if (Array.isArray(value)) return value.flatMap(strings);
    if (isObject(value)) return Object.values(value).flatMap(strings);
    return [];
}

/** `secrets.NAME` and `secrets['NAME']` in expressions; GITHUB_TOKEN is the run's own token, not a stored secret. */
export function secretsUsed(value: unknown): string[] {
    const names = new Set<string>();
    for (const s of strings(value)) {
        for (const m of s.matchAll(/\$\{\{([^}]*)\}\}/g)) {
            for (const ref of m[1].matchAll(/\bsecrets(?:\.([A-Za-z_][A-Za-z0-9_]*)|\[\s*['"]([^'"]+)['"]\s*\])/g)) {
                const name = ref[1] ?? ref[2];
                if (name !== "GITHUB_TOKEN") names.add(name);
            }
            if (/\bsecrets\b(?!\s*[.[])/.test(m[1])) names.add("(all secrets)");
        }
    }
    return [...names].sort();
}

/** Expressions that name the pull request's own code: checking it out in pull_request_target runs it with our token. */
const PR_CODE = /github\.event\.pull_request\.head\.|github\.head_ref|refs\/pull\/|github\.event\.pull_request\.merge_commit_sha/;

/** A step that deploys or destroys a stack: pulumi/actions with command up/destroy, or the CLI in a script. */
function deploysStack(step: Mapping): boolean {
    const uses = typeof step.uses === "string" ? step.uses : "";
    const withs = isObject(step.with) ? step.with : {};
    if (uses.startsWith("pulumi/actions@") && typeof withs.command === "string" && /^(up|update|destroy)$/.test(withs.command)) return true;
    return typeof step.run === "string" && /\bpulumi\s+(up|update|destroy)\b/.test(step.run);
}

function concurrencyProblem(concurrency: unknown): string | undefined {
    if (concurrency === undefined) return "deploys a stack without `concurrency`: two runs could update the same stack at once";
    if (isObject(concurrency) && concurrency["cancel-in-progress"] === true) {
        return "cancels a deploy in progress (`cancel-in-progress: true`): an interrupted `pulumi up` leaves pending operations in the state";
    }
    return undefined;
}

/** Checks one workflow file's text; returns every problem found (empty when it passes). */
export function checkWorkflow(file: string, text: string): WorkflowProblem[] {
    const doc = parseDocument(text);
    if (doc.errors.length > 0) return [{ file, message: `not valid YAML: ${doc.errors[0].message}` }];
    if (!isMap(doc.contents)) return [{ file, message: "a workflow must be a mapping" }];
    // `on` is a plain key here: YAML 1.2 (the yaml package's default) does not read it as a boolean.
    const workflow = doc.toJS() as Mapping;
    const problems: WorkflowProblem[] = [];
    const add = (message: string, job?: string) => problems.push(job === undefined ? { file, message } : { file, job, message });

    const events = triggers(workflow.on);
    const jobs = isObject(workflow.jobs) ? workflow.jobs : {};
    const topPermissions = workflow.permissions;
    if (typeof topPermissions === "string" && /^(write-all|read-all)$/.test(topPermissions)) {
        add(`top-level \`permissions: ${topPermissions}\`: list the scopes the jobs need`);
    }
    const workflowSecrets = secretsUsed(workflow.env);
    if (workflowSecrets.length > 0)
        add(`workflow-level env uses ${workflowSecrets.join(", ")}: every job would see them; move them to the job (with an environment) that needs them`);

    for (const [jobId, rawJob] of Object.entries(jobs)) {
        if (!isObject(rawJob)) continue;
        const job = rawJob;
        const steps = Array.isArray(job.steps) ? job.steps.filter(isObject) : [];

        if (job.permissions === undefined && topPermissions === undefined) {
            add("no `permissions`: declare the token scopes this job needs (at the job or at the top)", jobId);
        }
        if (typeof job.permissions === "string" && /^(write-all|read-all)$/.test(job.permissions)) {
            add(`\`permissions: ${job.permissions}\`: list the scopes this job needs`, jobId);
        }

        const uses: [string, string][] = [];
        if (typeof job.uses === "string") uses.push(["job", job.uses]);
        steps.forEach((s, i) => {
            if (typeof s.uses === "string") uses.push([`step ${i + 1}${typeof s.name === "string" ? ` (${s.name})` : ""}`, s.uses]);
        });
        for (const [where, ref] of uses) {
            const problem = pinProblem(ref);
            if (problem) add(`${where} uses "${ref}": ${problem}`, jobId);
        }

        if (events.includes("pull_request_target")) {
            steps.forEach((s, i) => {
                const checksOut = typeof s.uses === "string" && s.uses.startsWith("actions/checkout@");
                const text = strings(checksOut ? s.with : s.run).join("\n");
                const fetches = checksOut || /\bgit\s+(fetch|checkout|pull|switch)\b|\bgh\s+pr\s+checkout\b/.test(text);
                if (fetches && PR_CODE.test(text)) {
                    add(
                        `step ${i + 1} checks out the pull request's code in a pull_request_target workflow, which runs it with this repository's token and secrets`,
                        jobId,
                    );
                }
            });
        }

        const jobSecrets = secretsUsed({ env: job.env, steps, secrets: job.secrets, with: job.with, container: job.container, services: job.services });
        if (job.secrets === "inherit") jobSecrets.push("(all secrets: `secrets: inherit`)");
        if (jobSecrets.length > 0 && job.environment === undefined) {
            add(`uses ${jobSecrets.join(", ")} without an \`environment\`: keep secrets in the GitHub Environment of the stack that needs them`, jobId);
        }

        if (steps.some(deploysStack)) {
            const problem = concurrencyProblem(job.concurrency ?? workflow.concurrency);
            if (problem) add(problem, jobId);
        }
    }
    return problems;
}

/** The `uses:` references of a workflow (job and step level), for reports. */
export function actionReferences(text: string): string[] {
    const workflow = parseDocument(text).toJS() as Mapping;
    const jobs = isObject(workflow.jobs) ? Object.values(workflow.jobs).filter(isObject) : [];
    return jobs
        .flatMap((j) => [j.uses, ...(Array.isArray(j.steps) ? j.steps.filter(isObject).map((s) => s.uses) : [])])
        .filter((u): u is string => typeof u === "string");
}

export const formatProblem = (p: WorkflowProblem) => `${p.file}${p.job ? ` job ${p.job}` : ""}: ${p.message}`;
