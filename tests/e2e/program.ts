// Deploys index.ts with the e2e stack config the way `pulumi up` would: the program runs under the test kit's engine
// model (tests/kit/cluster/engine.ts: real random passwords, RSA keys and a self-signed certificate from the kit's
// mocks; a Kubernetes registration completes only once its object was admitted, scheduled, applied to the loopback
// node and the provider's await for its kind passed on the node's real pods — live.ts), so objects are created in
// the engine's order. Returns the stack outputs (the node holds the objects), or throws the engine's failures.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as pulumiType from "@pulumi/pulumi";
import { unwrapSecrets } from "../kit/k8s-schema";
import type { DeployEvent, LiveNode } from "./live";

export const MAIL_HOSTNAME = "mail.example.test";
export const DOMAINS = ["example.test", "example.org"];
/** Postgrey's delay in the e2e stack: short, like the Postfix retry timers, so greylisted mail is retried within seconds. */
export const GREYLIST_DELAY_SECONDS = 3;

/** A Kubernetes object as the program declared it (inputs, secrets unwrapped). */
export interface KubeObject {
    kind: string;
    metadata: { name: string; namespace?: string; labels?: Record<string, string>; annotations?: Record<string, string> };
    spec?: any; // eslint-disable-line @typescript-eslint/no-explicit-any -- Kubernetes shapes, checked where used
    data?: Record<string, string>;
    stringData?: Record<string, string>;
}

/**
 * E2E_STACK_CONFIG: a JSON object of stack config keys laid over the e2e's own (the mail benchmark deploys with
 * production queue timers, `"postfixMainCf": []`, and with spam scanning on and off).
 */
function stackConfigOverrides(value: string | undefined): Record<string, unknown> {
    if (value === undefined || value === "") return {};
    const parsed: unknown = JSON.parse(value);
    if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed))
        throw new Error(`E2E_STACK_CONFIG must be a JSON object of stack config keys, got ${value}`);
    return parsed as Record<string, unknown>;
}

/**
 * The e2e stack: an existing-cluster target (a throwaway kubeconfig; nothing talks to it), our host name and two
 * domains, no DNSBLs (the test DNS server answers only our zones), short Postfix retry timers and greylisting delay,
 * backups to a local repository, metrics on.
 */
export function e2eConfig(kubeconfigPath: string, overrides = stackConfigOverrides(process.env.E2E_STACK_CONFIG)): Record<string, unknown> {
    return {
        clusterProvider: "kubeconfig",
        clusterKubeconfig: kubeconfigPath,
        mailHostname: MAIL_HOSTNAME,
        mailDomains: DOMAINS,
        postfixDnsbls: [],
        // Retry deferred mail within seconds instead of minutes, so the suite sees queued mail go out.
        postfixMainCf: ["queue_run_delay = 5s", "minimal_backoff_time = 5s", "maximal_backoff_time = 10s"],
        greylistDelay: GREYLIST_DELAY_SECONDS,
        // A local restic repository on a volume of its own stands in for the bucket (backup.e2e.ts restores from it).
        backupRepository: "/backup-repository",
        backupPassword: "e2e-backup-password",
        // Metrics on, scraped from the `scraper` test pod in the default metrics namespace (metrics.e2e.ts).
        metricsEnabled: true,
        // Roundcube, driven by headless Chromium (webmail.e2e.ts).
        webmailEnabled: true,
        ...overrides,
    };
}

export interface DeployOptions {
    /** Real milliseconds standing for the provider's default 10-minute create timeout (customTimeouts scale with it). */
    timeoutMs: number;
    /** Milliseconds without progress after which pending resources count as stuck (a deadlock fails then). */
    quietMs?: number;
    /** Every object creation, await completion and pod start, as it happens. */
    record: (event: DeployEvent) => void;
}

export async function deployStack(node: LiveNode, opts: DeployOptions): Promise<{ outputs: Record<string, unknown>; warnings: string[] }> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-e2e-kubeconfig-"));
    const kubeconfig = path.join(dir, "config");
    fs.writeFileSync(
        kubeconfig,
        [
            "apiVersion: v1",
            "kind: Config",
            "current-context: e2e",
            "clusters: [{name: e2e, cluster: {server: 'https://127.0.0.1:1'}}]",
            "contexts: [{name: e2e, context: {cluster: e2e, user: e2e}}]",
            "users: [{name: e2e, user: {}}]",
            "",
        ].join("\n"),
    );
    try {
        /* eslint-disable @typescript-eslint/no-require-imports -- the mocks must be installed before the program loads */
        const { deployLive } = require("./live") as typeof import("./live");
        const { clusterProfile } = require("../kit/cluster/profiles") as typeof import("../kit/cluster/profiles");
        const mocks = require("../kit/mocks") as typeof import("../kit/mocks");
        const config = e2eConfig(kubeconfig);
        const result = await deployLive({
            profile: clusterProfile(config),
            node,
            config,
            stack: "e2e",
            timeoutMs: opts.timeoutMs,
            quietMs: opts.quietMs ?? 200,
            record: opts.record,
            load: () => require("../../index") as Record<string, pulumiType.Input<unknown>>,
        });
        /* eslint-enable @typescript-eslint/no-require-imports */
        if (result.failures.length) throw new Error(`the deploy failed, as \`pulumi up\` would:\n${result.failures.join("\n")}`);
        const outputs: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(result.exports)) outputs[k] = (await mocks.resolve(v)).value;
        return { outputs: unwrapSecrets(outputs) as Record<string, unknown>, warnings: result.warnings };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
