import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import type * as pulumiType from "@pulumi/pulumi";
import type { MockRecorder } from "./mocks";

export interface ProgramRun {
    recorder: MockRecorder;
    /** The program's stack outputs (index.ts exports). */
    outputs: Record<string, unknown>;
    /** Resolves an output of this run to its value and secret flag. */
    resolve<T>(value: pulumiType.Input<T>): Promise<{ value: T; secret: boolean }>;
}

/**
 * Runs index.ts under mocks with the given stack config (`key: value`, keys without the `mail:` prefix),
 * in a fresh module registry so several stacks can run in one test file. Waits until registrations settle.
 */
export async function runProgram(
    config: Record<string, unknown>,
    opts: { stack?: string; onRecorder?: (recorder: MockRecorder) => void } = {},
): Promise<ProgramRun> {
    let run: ProgramRun | undefined;
    await jest.isolateModulesAsync(async () => {
        const mocks = await import("./mocks");
        const recorder = await mocks.MockRecorder.install(config, { stack: opts.stack });
        // Lets a test wrap the recorder (e.g. with the engine's state between runs) before the program registers anything.
        opts.onRecorder?.(recorder);
        const outputs = (await import("../../index")) as Record<string, unknown>;
        // A program error raised in an apply (as a real preview reports it) rejects the outputs that depend on it.
        await Promise.all(Object.values(outputs).map((o) => mocks.resolve(o)));
        await waitUntilQuiet(recorder);
        run = { recorder, outputs, resolve: mocks.resolve };
    });
    return run!;
}

async function waitUntilQuiet(recorder: MockRecorder): Promise<void> {
    let last = -1;
    let quietRounds = 0;
    while (quietRounds < 5) {
        await new Promise((r) => setTimeout(r, 20));
        quietRounds = recorder.resources.length === last ? quietRounds + 1 : 0;
        last = recorder.resources.length;
    }
}

/** A kubeconfig file for `clusterProvider: kubeconfig` stacks (the program reads it; nothing connects to it). */
export function fakeKubeconfig(): string {
    const file = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "mail-kube-")), "config");
    fs.writeFileSync(
        file,
        "apiVersion: v1\nkind: Config\ncurrent-context: dev\ncontexts: [{name: dev, context: {cluster: dev}}]\nclusters: [{name: dev, cluster: {server: 'https://127.0.0.1:6443'}}]\n",
    );
    return file;
}

/** The config that selects each kind of cluster (the existing-cluster one with a fake kubeconfig). */
export function clusterTargets(): Record<string, Record<string, unknown>> & { kubeconfig: Record<string, unknown> } {
    return {
        digitalocean: { clusterProvider: "digitalocean" },
        gke: { clusterProvider: "gke" },
        kubeconfig: { clusterProvider: "kubeconfig", clusterKubeconfig: fakeKubeconfig() },
    };
}
