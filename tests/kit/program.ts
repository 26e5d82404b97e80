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
export async function runProgram(config: Record<string, unknown>, opts: { stack?: string; onRecorder?: (recorder: MockRecorder) => void } = {}): Promise<ProgramRun> {
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
