// Every resource the program declares, with what the SDK makes it wait for before registering it: the resources
// behind the Outputs among its inputs, and its dependsOn (a component standing for all its children —
// @pulumi/pulumi runtime/dependsOn.ts). A resource the engine never saw is one the SDK still holds back; this is
// how a deadlock is named: "X is not created because it waits for Y, and Y waits for what X would provide".
import * as pulumi from "@pulumi/pulumi";
import { KubeObject, podTemplateOf, selects } from "./objects";

interface Declared {
    key: string;
    label: string;
    custom: boolean;
    parent?: object;
    deps: Set<object>;
    /** The object's inputs where they are plain values (for what it would provide). */
    object?: KubeObject;
}

/** Plain (already known) parts of the inputs; Outputs become undefined. */
function plain(value: unknown, depth = 0): unknown {
    if (depth > 12 || pulumi.Output.isInstance(value) || value instanceof Promise) return undefined;
    if (Array.isArray(value)) return value.map((v) => plain(v, depth + 1));
    if (value && typeof value === "object" && !pulumi.Resource.isInstance(value)) {
        return Object.fromEntries(Object.entries(value).map(([k, v]) => [k, plain(v, depth + 1)]));
    }
    return value;
}

/** The resources behind every Output in the inputs (Output.resources() is known when the Output is made). */
function outputResources(value: unknown, into: Set<object>, depth = 0): void {
    if (depth > 12 || !value || typeof value !== "object") return;
    if (pulumi.Output.isInstance(value)) {
        for (const r of (value as unknown as { resources(): Set<object> }).resources()) into.add(r);
        return;
    }
    if (pulumi.Resource.isInstance(value)) return;
    for (const v of Object.values(value)) outputResources(v, into, depth + 1);
}

export class DeclaredResources {
    private readonly declared = new Map<object, Declared>();
    private readonly registered = new Set<string>();

    /** Wraps the SDK's registerResource so every declaration is seen, in the program's @pulumi/pulumi instance. */
    install(): void {
        // eslint-disable-next-line @typescript-eslint/no-require-imports
        const runtime = require("@pulumi/pulumi/runtime/resource") as { registerResource: (...args: unknown[]) => void };
        const original = runtime.registerResource;
        runtime.registerResource = (...args: unknown[]) => {
            const [res, parent, type, name, custom, , , props, opts] = args as [
                object,
                object | undefined,
                string,
                string,
                boolean,
                unknown,
                unknown,
                Record<string, unknown>,
                { dependsOn?: unknown },
            ];
            const deps = new Set<object>();
            outputResources(props, deps);
            const dependsOn = Array.isArray(opts?.dependsOn) ? opts.dependsOn : opts?.dependsOn ? [opts.dependsOn] : [];
            for (const d of dependsOn) if (pulumi.Resource.isInstance(d)) deps.add(d);
            const object = plain(props) as KubeObject;
            this.declared.set(res, {
                key: `${type}::${name}`,
                label: `${type} (${name})`,
                custom,
                parent,
                deps,
                object: typeof object?.kind === "string" ? object : undefined,
            });
            return original(...args);
        };
    }

    markRegistered(type: string, name: string): void {
        this.registered.add(`${type}::${name}`);
    }

    /**
     * What a declared resource waits for: its dependencies and its ancestors' (the SDK registers a resource only
     * once its parent's URN resolves, i.e. after the parent's own dependsOn), a component standing for all its
     * declared children.
     */
    private waitsFor(d: Declared): Declared[] {
        const out: Declared[] = [];
        const expand = (r: object, seen: Set<object>) => {
            const entry = this.declared.get(r);
            if (!entry || seen.has(r)) return;
            seen.add(r);
            if (entry.custom) out.push(entry);
            else for (const [child, c] of this.declared) if (c.parent === r) expand(child, seen);
        };
        for (let entry: Declared | undefined = d; entry; entry = entry.parent ? this.declared.get(entry.parent) : undefined) {
            for (const dep of entry.deps) expand(dep, new Set());
        }
        return out;
    }

    /**
     * Resources the SDK still holds back because they wait (directly or through other held-back resources) on the
     * resource `key`; with `providesWhatItWaitsFor` when one of them is what that resource's await needs.
     */
    heldBackBy(key: string, provides: (obj: KubeObject) => boolean): { label: string; provides: boolean }[] {
        const held = [...this.declared.values()].filter((d) => d.custom && !this.registered.has(d.key));
        const blocked = new Set<Declared>();
        let changed = true;
        while (changed) {
            changed = false;
            for (const d of held) {
                if (blocked.has(d)) continue;
                if (this.waitsFor(d).some((w) => w.key === key || blocked.has(w))) {
                    blocked.add(d);
                    changed = true;
                }
            }
        }
        return [...blocked].map((d) => ({ label: d.label, provides: !!d.object && provides(d.object) }));
    }
}

/** Does this object provide what the awaited one needs: pods for a Service's selector, a Secret/ConfigMap a pod mounts, pods a pod-affinity term wants? */
export function providesFor(awaited: KubeObject): (candidate: KubeObject) => boolean {
    const template = podTemplateOf(awaited);
    const mounts = new Set(
        (template?.spec.volumes ?? []).flatMap((v) =>
            [v.secret && `Secret/${v.secret.secretName}`, v.configMap && `ConfigMap/${v.configMap.name}`].filter((x): x is string => !!x),
        ),
    );
    const affinity = template?.spec.affinity?.podAffinity?.requiredDuringSchedulingIgnoredDuringExecution ?? [];
    return (candidate) => {
        const labels = podTemplateOf(candidate)?.metadata.labels;
        if (awaited.kind === "Service" && labels && awaited.spec?.selector && selects({ matchLabels: awaited.spec.selector }, labels)) return true;
        if (mounts.has(`${candidate.kind}/${candidate.metadata.name}`)) return true;
        return !!labels && affinity.some((t) => selects(t.labelSelector, labels));
    };
}
