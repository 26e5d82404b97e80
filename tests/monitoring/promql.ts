// Reads the metric names out of PromQL expressions and runs Debian's promtool (the Prometheus project's own checker)
// on rule files, for the monitoring tests.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { stringify } from "yaml";
import dashboard from "../../components/monitoring/dashboard.json";

/** PromQL's keywords and binary operators that look like identifiers (prometheus/promql/parser/lex.go). */
const KEYWORDS = new Set(["and", "or", "unless", "atan2", "bool", "offset", "inf", "nan", "by", "without", "on", "ignoring", "group_left", "group_right"]);

/**
 * The metric names an expression selects: identifiers left after removing strings, label matchers, ranges and the
 * label lists of by/without/on/ignoring/group_*, that are not functions, aggregations, keywords or number parts.
 */
export function metricNames(expr: string): string[] {
    const stripped = expr
        .replace(/"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*'|`[^`]*`/g, '""')
        .replace(/\{[^}]*\}/g, " ")
        .replace(/\[[^\]]*\]/g, " ")
        .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, " ");
    const names: string[] = [];
    for (const m of stripped.matchAll(/[A-Za-z_:][A-Za-z0-9_:]*/g)) {
        const before = stripped[m.index - 1] ?? " ";
        const after = stripped.slice(m.index + m[0].length).trimStart();
        if (/[0-9.]/.test(before) || after.startsWith("(") || KEYWORDS.has(m[0].toLowerCase())) continue;
        names.push(m[0]);
    }
    return [...new Set(names)];
}

type Panel = { title: string; targets?: { expr: string }[]; panels?: Panel[] };

/** Every panel query of the shipped dashboard, by panel title. */
export function dashboardQueries(): { panel: string; expr: string }[] {
    const walk = (panels: Panel[]): { panel: string; expr: string }[] =>
        panels.flatMap((p) => [...(p.targets ?? []).map((t) => ({ panel: p.title, expr: t.expr })), ...walk(p.panels ?? [])]);
    return walk(dashboard.panels);
}

/** A dashboard query as Prometheus receives it: Grafana substitutes its variables first. */
export function asGrafanaSends(expr: string, namespace: string): string {
    return expr.replace(/\$__rate_interval/g, "2m").replace(/\$namespace/g, namespace);
}

export interface PromtoolResult {
    status: number | null;
    output: string;
}

/** Runs `promtool <args>` in a fresh directory holding `files` (each written as YAML). */
export function promtool(args: string[], files: Record<string, unknown>): PromtoolResult {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-promtool-"));
    try {
        for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, name), stringify(content));
        const r = spawnSync("promtool", args, { cwd: dir, encoding: "utf8" });
        if (r.error) throw new Error(`promtool could not run (Debian package prometheus): ${r.error.message}`);
        return { status: r.status, output: r.stdout + r.stderr };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
