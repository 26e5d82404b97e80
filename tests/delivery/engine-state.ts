// The program run under the kit's mocks with the engine's memory between runs. A second `pulumi up` sends each
// resource's inputs to its provider's Diff; when nothing differs outside `ignoreChanges`, the step is a "same" and
// the resource keeps the outputs (and id) it has in the state (pulumi/pulumi pkg/resource/deploy/step_generator.go:
// generateSteps/diff → SameStep; pkg/resource/deploy/step.go: SameStep keeps the old state's outputs). The kit's
// mocks alone would give every random password and key new bytes on each run, which the engine never does.
import { isDeepStrictEqual } from "util";
import type { RecordedResource } from "../kit/mocks";
import { runProgram } from "../kit/program";

/** A resource as the engine keys it: its parent's URN, type and name (what its own URN is made of). */
export const resourceKey = (r: Pick<RecordedResource, "parent" | "type" | "name">) => `${r.parent}|${r.type}::${r.name}`;

export interface EngineState {
    resources: Map<string, { inputs: Record<string, unknown>; ignoreChanges: string[]; id: string | undefined; outputs: Record<string, unknown> }>;
}

export interface Deployment {
    state: EngineState;
    /** Every registered resource by key, with the inputs the program gave it. */
    inputs: Map<string, RecordedResource>;
}

/** Inputs with the `ignoreChanges` paths (dotted property paths, as the program passes them) removed. */
export function comparableInputs(inputs: Record<string, unknown>, ignoreChanges: string[]): unknown {
    const copy = structuredClone<Record<string, unknown>>(inputs);
    for (const p of ignoreChanges) {
        const parts = p.split(".");
        let node: unknown = copy;
        for (const part of parts.slice(0, -1)) node = node && typeof node === "object" ? (node as Record<string, unknown>)[part] : undefined;
        if (node && typeof node === "object") delete (node as Record<string, unknown>)[parts[parts.length - 1]];
    }
    return copy;
}

/** Runs index.ts with `config`; resources whose inputs match `previous` keep their previous outputs. */
export async function deploy(config: Record<string, unknown>, previous?: EngineState, opts: { stack?: string } = {}): Promise<Deployment> {
    const state: EngineState = { resources: new Map() };
    const run = await runProgram(config, {
        ...opts,
        onRecorder: (recorder) => {
            const create = recorder.newResource.bind(recorder);
            recorder.newResource = (args) => {
                const fresh = create(args);
                const recorded = recorder.resources[recorder.resources.length - 1];
                const key = resourceKey(recorded);
                const before = previous?.resources.get(key);
                const same =
                    before !== undefined &&
                    isDeepStrictEqual(comparableInputs(before.inputs, before.ignoreChanges), comparableInputs(args.inputs, recorded.ignoreChanges ?? []));
                const result = same ? { id: before.id, state: before.outputs } : fresh;
                state.resources.set(key, { inputs: args.inputs, ignoreChanges: recorded.ignoreChanges ?? [], id: result.id, outputs: result.state });
                return result;
            };
        },
    });
    return { state, inputs: new Map(run.recorder.resources.map((r) => [resourceKey(r), r])) };
}

/** What a preview of `next` after `before` would list: created, deleted and updated resources (by key). */
export function changedResources(before: Deployment, next: Deployment): { created: string[]; deleted: string[]; updated: string[] } {
    const created = [...next.inputs.keys()].filter((k) => !before.inputs.has(k)).sort();
    const deleted = [...before.inputs.keys()].filter((k) => !next.inputs.has(k)).sort();
    const updated = [...next.inputs.keys()]
        .filter((k) => {
            const a = before.inputs.get(k);
            const b = next.inputs.get(k)!;
            return a !== undefined && !isDeepStrictEqual(comparableInputs(a.inputs, a.ignoreChanges ?? []), comparableInputs(b.inputs, b.ignoreChanges ?? []));
        })
        .sort();
    return { created, deleted, updated };
}
