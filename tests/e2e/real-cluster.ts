// The e2e suite against a real cluster the program was deployed to with `pulumi up` (the kind workflow):
//   npx tsx tests/e2e/real-cluster.ts write --context CTX --stack STACK   writes .e2e/stack.json (and the CA) from kubectl
//   npx tsx tests/e2e/real-cluster.ts run --context CTX --stack STACK     writes it, then runs the suites that apply
// Clients connect from this machine to the edge Service's NodePorts on a node's address; the couchmail CLI and other
// execs go through `kubectl exec`. Suites about the loopback runner's own machinery are skipped, each with its reason.
import { spawn, spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { parse } from "yaml";
import { externalEndpoints, nodeAddress, RealCluster, tlsCertificate, workloadTargets } from "./kubectl";
import { E2E_DIR, REPO } from "./layout";

/** Suites that apply to a real cluster (in the loopback runner's order; they skip their loopback-only tests), and why the others do not. */
export const REAL_CLUSTER_SUITES = ["firstrun.e2e.ts", "jobs.e2e.ts", "mail.e2e.ts"];
export const LOOPBACK_ONLY_SUITES: Record<string, string> = {
    "doctor.e2e.ts": "the doctor asks the pseudo-internet's DNS server for the zone (stack.json's dns)",
    "deploy.e2e.ts": "checks the loopback engine model's deploy order (.e2e/deploy-events.json); on a cluster the real engine deployed",
    "runtime.e2e.ts": "inspects containers through the loopback node's runc and cgroups",
    "netpol.e2e.ts": "probes the loopback node's NetworkPolicy firewall with its own test pods",
    "defects.e2e.ts": "needs the pseudo-internet (the external MX sink and its DNS) to see bounces, SPF results and outbound mail",
    "backup.e2e.ts": "empties Dovecot's mail volume on the node's disk and runs the backup Jobs through the loopback node's Job controller",
    "metrics.e2e.ts": "scrapes from the loopback node's own test pods (a scraper in the metrics namespace, the attacker and the outsider)",
    "webmail.e2e.ts": "drives Chromium from the pseudo-internet's network namespace and reads the external MX sink",
};

function capture(cmd: string, args: string[]): string {
    const r = spawnSync(cmd, args, { encoding: "utf8", maxBuffer: 64 * 1024 * 1024 });
    if (r.status !== 0) throw new Error(`${cmd} ${args.join(" ")} failed (${r.status}): ${r.stderr}${r.error ?? ""}`);
    return r.stdout;
}

function option(args: string[], name: string, fallback?: string): string {
    const i = args.indexOf(`--${name}`);
    const value = i >= 0 ? args[i + 1] : fallback;
    if (!value) throw new Error(`--${name} is required`);
    return value;
}

/** Writes .e2e/stack.json for the deployed stack; returns its path. */
export function writeStackJson(context: string, stackName: string, namespace: string): string {
    const kubectl = <T>(...what: string[]): T => JSON.parse(capture("kubectl", ["--context", context, "get", ...what, "-o", "json"])) as T;
    const stackFile = parse(fs.readFileSync(path.join(REPO, `Pulumi.${stackName}.yaml`), "utf8")) as { config: Record<string, unknown> };
    const outputs = JSON.parse(capture("pulumi", ["stack", "output", "endpoints", "--json", "--stack", stackName])) as Record<string, string>;
    const node = nodeAddress(kubectl("nodes"));
    const { endpoints, unreachable } = externalEndpoints(outputs, kubectl("services", "-n", namespace), node);
    const cluster: RealCluster = {
        kind: "kubectl",
        context,
        namespace,
        workloads: workloadTargets(kubectl("statefulsets", "-n", namespace), kubectl("deployments", "-n", namespace)),
    };
    fs.mkdirSync(E2E_DIR, { recursive: true });
    const caFile = path.join(E2E_DIR, "ca.crt");
    fs.writeFileSync(caFile, tlsCertificate(kubectl("secrets", "-n", namespace)));
    const stack = {
        note: `a real cluster (kubectl context ${context}); clients on this machine reach the edge Service's NodePorts on node ${node}`,
        hostname: stackFile.config["mail:mailHostname"],
        domains: stackFile.config["mail:mailDomains"],
        caFile,
        endpoints,
        unreachableEndpoints: unreachable,
        cluster,
        pods: {},
    };
    const file = path.join(E2E_DIR, "stack.json");
    fs.writeFileSync(file, JSON.stringify(stack, null, 2) + "\n");
    return file;
}

async function main(): Promise<number> {
    const [cmd, ...args] = process.argv.slice(2);
    if (cmd !== "write" && cmd !== "run") {
        process.stderr.write("usage: real-cluster.ts write|run --context CTX --stack STACK [--namespace mail]\n");
        return 2;
    }
    const file = writeStackJson(option(args, "context"), option(args, "stack"), option(args, "namespace", "mail"));
    console.log(`[real-cluster] wrote ${path.relative(REPO, file)}`);
    if (cmd === "write") return 0;
    for (const [suite, why] of Object.entries(LOOPBACK_ONLY_SUITES)) console.log(`[real-cluster] skipping ${suite}: ${why}`);
    return new Promise<number>((resolve) => {
        const files = REAL_CLUSTER_SUITES.map((f) => path.join(__dirname, f));
        const suite = spawn(process.execPath, [require.resolve("tsx/cli"), "--test", "--test-concurrency=1", ...files], { stdio: "inherit" });
        suite.on("exit", (c) => resolve(c ?? 1));
    });
}

if (require.main === module) {
    main().then(
        (c) => process.exit(c),
        (e) => {
            console.error(e instanceof Error ? e.message : String(e));
            process.exit(1);
        },
    );
}
