// Storage settings are safe to change: a StatefulSet's (immutable) claim templates never force its replacement, and
// a new size reaches the live claim through a server-side-apply patch made after the StatefulSet exists.
import type * as pulumiType from "@pulumi/pulumi";
import { unwrapSecrets } from "../kit/k8s-schema";

interface Registration { type: string; name: string; urn: string; ignoreChanges: string[]; replaceOnChanges: string[]; dependencies: string[]; inputs: any } // eslint-disable-line @typescript-eslint/no-explicit-any

/** Runs the program under the test mocks and records every registration request as the engine receives it. */
async function registrations(config: Record<string, unknown>): Promise<Registration[]> {
    const seen: Registration[] = [];
    await jest.isolateModulesAsync(async () => {
        const pulumi = await import("@pulumi/pulumi");
        const mocks = await import("../kit/mocks");
        const recorder = await mocks.MockRecorder.install(config);
        type Req = { getType(): string; getName(): string; getIgnorechangesList(): string[]; getReplaceonchangesList(): string[]; getDependenciesList(): string[] };
        const monitor = pulumi.runtime.getMonitor() as unknown as { registerResource(req: Req, cb: unknown): unknown };
        const register = monitor.registerResource.bind(monitor);
        monitor.registerResource = (req, cb) => {
            seen.push({ type: req.getType(), name: req.getName(), urn: "", ignoreChanges: req.getIgnorechangesList(), replaceOnChanges: req.getReplaceonchangesList(), dependencies: req.getDependenciesList(), inputs: undefined });
            return register(req, cb);
        };
        const program = (await import("../../index")) as Record<string, pulumiType.Input<unknown>>;
        await Promise.all(Object.values(program).map((o) => mocks.resolve(o)));
        for (let last = -1, quiet = 0; quiet < 5;) {
            await new Promise((r) => setTimeout(r, 20));
            quiet = recorder.resources.length === last ? quiet + 1 : 0;
            last = recorder.resources.length;
        }
        for (const r of seen) {
            r.urn = recorder.urnOf(r);
            r.inputs = unwrapSecrets(recorder.resources.find((x) => x.type === r.type && x.name === r.name)?.inputs);
        }
    });
    return seen;
}

it.each([["20Gi", "2Gi", "5Gi"], ["40Gi", "4Gi", "8Gi"]])("mail %s, queue %s, CouchDB %s: claim templates are kept and the live claims patched to that size", async (mailSize, queueSize, couchdbSize) => {
    const regs = await registrations({
        clusterProvider: "digitalocean", mailHostname: "mail.example.com", mailDomains: ["example.com"],
        storageMailSize: mailSize, storageQueueSize: queueSize, storageCouchdbSize: couchdbSize,
    });
    const statefulSets = regs.filter((r) => r.type === "kubernetes:apps/v1:StatefulSet" && r.inputs.spec.volumeClaimTemplates);
    expect(statefulSets.map((r) => r.inputs.metadata.name).sort()).toEqual(["couchdb", "dovecot", "postfix", "postgrey", "spamassassin"]);
    const patches = regs.filter((r) => r.type === "kubernetes:core/v1:PersistentVolumeClaimPatch");
    const want: Record<string, string> = { "mail-dovecot-0": mailSize, "queue-postfix-0": queueSize, "data-couchdb-0": couchdbSize };
    for (const sts of statefulSets) {
        const name: string = sts.inputs.metadata.name;
        expect({ name, ignoreChanges: sts.ignoreChanges }).toEqual({ name, ignoreChanges: ["spec.volumeClaimTemplates"] });
        for (const template of sts.inputs.spec.volumeClaimTemplates) {
            const claim = `${template.metadata.name}-${name}-0`;
            const patch = patches.find((p) => p.inputs.metadata.name === claim);
            expect({ claim, patched: !!patch }).toEqual({ claim, patched: true });
            expect(patch!.inputs.spec.resources.requests.storage).toBe(template.spec.resources.requests.storage);
            if (want[claim]) expect(patch!.inputs.spec.resources.requests.storage).toBe(want[claim]);
            // Applied only once the StatefulSet (and so its claim) exists.
            expect(patch!.dependencies).toContain(sts.urn);
            expect(patch!.inputs.metadata.annotations["pulumi.com/patchForce"]).toBe("true");
        }
    }
});
