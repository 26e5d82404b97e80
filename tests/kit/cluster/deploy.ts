// Runs the program (index.ts) like `pulumi up` against a modelled cluster: the ClusterEngine as mock monitor, in a
// fresh module registry (so every run has its own @pulumi/pulumi state), until nothing is pending any more.
import type { RecordedResource } from "../mocks";
import type { ClusterEngine, EngineOptions } from "./engine";

export interface DeployResult {
    /** Every error the engine would print (API refusals, awaits that failed, CronJobs whose pods would not run). */
    failures: string[];
    /** The API server's warnings (Pod Security `warn`/`audit`, claims without a StorageClass). */
    warnings: string[];
    /** Errors the program raised while it was loaded (config errors); errors in applies fail the calling test. */
    programErrors: string[];
    resources: RecordedResource[];
    engine: ClusterEngine;
}

export async function deployProgram(config: Record<string, unknown>, opts: EngineOptions & { stack?: string }): Promise<DeployResult> {
    let result: DeployResult | undefined;
    await jest.isolateModulesAsync(async () => {
        const { ClusterEngine } = await import("./engine");
        const engine = new ClusterEngine(opts);
        await engine.install(config, opts.stack);
        const programErrors: string[] = [];
        // The SDK captures a stack trace per resource (its source position), which jest's source maps make the
        // slowest part of a run; nothing here reads them.
        const stackTraceLimit = Error.stackTraceLimit;
        Error.stackTraceLimit = 0;
        try {
            await import("../../../index");
        } catch (e) {
            programErrors.push((e as Error).message);
        } finally {
            await settle(engine, opts.quietMs ?? 25);
            Error.stackTraceLimit = stackTraceLimit;
        }
        engine.checkCronJobs();
        result = {
            failures: engine.failures,
            warnings: engine.cluster.warnings,
            programErrors,
            resources: engine.resources,
            engine,
        };
    });
    return result!;
}

/** Until no await is pending and no registration happened for a few rounds. */
export async function settle(engine: ClusterEngine, quietMs: number): Promise<void> {
    let last = -1;
    let quietRounds = 0;
    while (quietRounds < 4 || engine.pendingCount > 0) {
        await new Promise((r) => setTimeout(r, quietMs));
        quietRounds = engine.progress === last ? quietRounds + 1 : 0;
        last = engine.progress;
    }
}
