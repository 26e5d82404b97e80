// Process helpers shared by the e2e runner's kubelet, its CLI and the suite.
import { spawnSync } from "child_process";
import * as fs from "fs";
import { children } from "../kit/images";

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
export const log = (msg: string) => process.stderr.write(`[e2e] ${msg}\n`);

export function sh(cmd: string, args: string[], opts: { input?: string; allowFail?: boolean } = {}): string {
    const r = spawnSync(cmd, args, { encoding: "utf8", input: opts.input });
    if (r.status !== 0 && !opts.allowFail) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}`);
    return r.stdout;
}

export function alive(pid: number): boolean {
    try {
        process.kill(pid, 0);
        return !fs.readFileSync(`/proc/${pid}/stat`, "utf8").includes(") Z ");
    } catch {
        return false;
    }
}

/** All descendants of pid (breadth first). */
export function descendants(pid: number): number[] {
    const out: number[] = [];
    let frontier = [pid];
    while (frontier.length) {
        const next = frontier.flatMap(children);
        out.push(...next);
        frontier = next;
    }
    return out;
}

export function tail(file: string, lines = 40): string {
    try {
        return fs.readFileSync(file, "utf8").split("\n").slice(-lines).join("\n");
    } catch {
        return "(no log)";
    }
}
