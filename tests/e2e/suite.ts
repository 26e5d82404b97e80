// What the e2e test files share: the running stack's description (.e2e/stack.json), clients that connect from the
// pseudo-internet, the cluster (kubelet client, exec), and waiting. The stack is the loopback runner's (cli.ts up) or
// a real cluster's (real-cluster.ts: `cluster` set, clients on this machine, exec through kubectl).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { Cluster } from "./cluster";
import { kubectlExec, RealCluster } from "./kubectl";
import { E2E_DIR } from "./layout";

export interface Endpoint {
    host: string;
    port: number;
}
export const stack = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "stack.json"), "utf8")) as {
    hostname: string;
    caFile: string;
    endpoints: Record<string, Endpoint>;
    dns: Endpoint;
    externalMx: Endpoint & { mailDir: string };
    clientNetns: string;
    pods: Record<string, string>;
    cluster?: RealCluster;
};
/** The suite runs against a real cluster (real-cluster.ts wrote stack.json), not the loopback runner. */
export const realCluster = stack.cluster?.kind === "kubectl";
/** A test's `skip` option: the reason on a real cluster, where only the loopback runner has what the test needs. */
export const loopbackOnly = (reason: string): string | false => (realCluster ? `loopback runner only: ${reason}` : false);
export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A client on the internet: the command runs in the pseudo-internet's network namespace (on a real cluster: here). */
export const run = (cmd: string, args: string[], input?: string) => {
    const argv = realCluster ? [cmd, ...args] : ["nsenter", `--net=/run/netns/${stack.clientNetns}`, cmd, ...args];
    const r = spawnSync(argv[0], argv.slice(1), { encoding: "utf8", input, timeout: 60_000 });
    return { code: r.status ?? -1, out: `${r.stdout ?? ""}${r.stderr ?? ""}` };
};

export const cluster = () => Cluster.load();

/** `kubectl exec` into a workload's pod: the loopback runtime's exec, or kubectl's on a real cluster. */
export function execIn(pod: string, ctr: string, argv: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    return stack.cluster ? kubectlExec(stack.cluster, pod, ctr, argv, opts) : cluster().exec(pod, ctr, argv, opts);
}

export async function waitFor<T>(what: string, fn: () => T | undefined | false, timeoutMs: number, everyMs = 250): Promise<T> {
    const end = Date.now() + timeoutMs;
    for (;;) {
        const v = fn();
        if (v) return v;
        if (Date.now() > end) throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}`);
        await sleep(everyMs);
    }
}

/**
 * A TCP connect from inside a pod's container (bash's /dev/tcp, as any process there could): "open", "refused"
 * (RST) or "dropped" (no answer within the timeout: what a NetworkPolicy's DROP looks like).
 */
export function connectFrom(pod: string, container: string, host: string, port: number): "open" | "refused" | "dropped" {
    const r = execIn(pod, container, ["timeout", "3", "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1"', host, String(port)], { timeoutMs: 10_000 });
    if (r.code === 0) return "open";
    if (r.code === 124) return "dropped";
    if (/refused/i.test(r.stderr)) return "refused";
    throw new Error(`connect from ${pod}/${container} to ${host}:${port}: exit ${r.code}: ${r.stdout}${r.stderr}`);
}
