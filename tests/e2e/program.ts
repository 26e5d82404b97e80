// Runs index.ts under the test kit's mocks (real random passwords, RSA keys and a self-signed certificate) with
// the e2e stack config, and returns the Kubernetes objects `pulumi up` would create plus the stack outputs.
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as pulumiType from "@pulumi/pulumi";
import { unwrapSecrets } from "../kit/k8s-schema";

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

export interface ProgramResult {
    objects: KubeObject[];
    outputs: Record<string, unknown>;
}

const KINDS: Record<string, string> = {
    "kubernetes:core/v1:Namespace": "Namespace",
    "kubernetes:core/v1:ConfigMap": "ConfigMap",
    "kubernetes:core/v1:Secret": "Secret",
    "kubernetes:core/v1:Service": "Service",
    "kubernetes:apps/v1:StatefulSet": "StatefulSet",
    "kubernetes:apps/v1:Deployment": "Deployment",
    "kubernetes:networking.k8s.io/v1:NetworkPolicy": "NetworkPolicy",
};

/**
 * The e2e stack: an existing-cluster target (a throwaway kubeconfig; nothing talks to it), our host name and two
 * domains, no DNSBLs (the test DNS server answers only our zones), short Postfix retry timers and greylisting delay.
 */
export function e2eConfig(kubeconfigPath: string): Record<string, unknown> {
    return {
        clusterProvider: "kubeconfig",
        clusterKubeconfig: kubeconfigPath,
        mailHostname: MAIL_HOSTNAME,
        mailDomains: DOMAINS,
        postfixDnsbls: [],
        // Retry deferred mail within seconds instead of minutes, so the suite sees queued mail go out.
        postfixMainCf: ["queue_run_delay = 5s", "minimal_backoff_time = 5s", "maximal_backoff_time = 10s"],
        greylistDelay: GREYLIST_DELAY_SECONDS,
    };
}

export async function runStackProgram(): Promise<ProgramResult> {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "mail-e2e-kubeconfig-"));
    const kubeconfig = path.join(dir, "config");
    fs.writeFileSync(kubeconfig, [
        "apiVersion: v1", "kind: Config", "current-context: e2e",
        "clusters: [{name: e2e, cluster: {server: 'https://127.0.0.1:1'}}]",
        "contexts: [{name: e2e, context: {cluster: e2e, user: e2e}}]",
        "users: [{name: e2e, user: {}}]", "",
    ].join("\n"));
    try {
        /* eslint-disable @typescript-eslint/no-require-imports -- the mocks must be installed before the program loads */
        const mocks = require("../kit/mocks") as typeof import("../kit/mocks");
        const recorder = await mocks.MockRecorder.install(e2eConfig(kubeconfig), { stack: "e2e" });
        const program = require("../../index") as Record<string, pulumiType.Input<unknown>>;
        /* eslint-enable @typescript-eslint/no-require-imports */
        const outputs: Record<string, unknown> = {};
        for (const [k, v] of Object.entries(program)) outputs[k] = (await mocks.resolve(v)).value;
        // Registrations settle after the outputs; wait until no new resource appears for a while.
        let last = -1;
        for (let quiet = 0; quiet < 5;) {
            await new Promise((r) => setTimeout(r, 20));
            quiet = recorder.resources.length === last ? quiet + 1 : 0;
            last = recorder.resources.length;
        }
        const objects = recorder.resources
            .filter((r) => KINDS[r.type])
            .map((r) => ({ kind: KINDS[r.type], ...(unwrapSecrets(r.inputs) as object) }) as KubeObject);
        return { objects, outputs: unwrapSecrets(outputs) as Record<string, unknown> };
    } finally {
        fs.rmSync(dir, { recursive: true, force: true });
    }
}
