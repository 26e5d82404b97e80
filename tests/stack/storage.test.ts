// Storage settings are safe to change: a StatefulSet's (immutable) claim templates never force its replacement, and
// a new size reaches the live claim through a server-side-apply patch made after the StatefulSet exists.
import { unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";

/* eslint-disable @typescript-eslint/no-explicit-any -- objects as declared */
it.each([
    ["20Gi", "2Gi", "5Gi"],
    ["40Gi", "4Gi", "8Gi"],
])("mail %s, queue %s, CouchDB %s: claim templates are kept and the live claims patched to that size", async (mailSize, queueSize, couchdbSize) => {
    const run = await runProgram({
        clusterProvider: "digitalocean",
        mailHostname: "mail.example.com",
        mailDomains: ["example.com"],
        storageMailSize: mailSize,
        storageQueueSize: queueSize,
        storageCouchdbSize: couchdbSize,
    });
    const inputs = (r: { inputs: unknown }) => unwrapSecrets(r.inputs) as any;
    const statefulSets = run.recorder.ofType("kubernetes:apps/v1:StatefulSet").filter((r) => inputs(r).spec.volumeClaimTemplates);
    expect(statefulSets.map((r) => inputs(r).metadata.name).sort()).toEqual(["couchdb", "dovecot", "postfix", "postgrey", "spamassassin"]);
    const patches = run.recorder.ofType("kubernetes:core/v1:PersistentVolumeClaimPatch");
    const want: Record<string, string> = { "mail-dovecot-0": mailSize, "queue-postfix-0": queueSize, "data-couchdb-0": couchdbSize };
    for (const sts of statefulSets) {
        const name: string = inputs(sts).metadata.name;
        expect({ name, ignoreChanges: sts.ignoreChanges }).toEqual({ name, ignoreChanges: ["spec.volumeClaimTemplates"] });
        for (const template of inputs(sts).spec.volumeClaimTemplates) {
            const claim = `${template.metadata.name}-${name}-0`;
            const patch = patches.find((p) => inputs(p).metadata.name === claim);
            expect({ claim, patched: !!patch }).toEqual({ claim, patched: true });
            expect(inputs(patch!).spec.resources.requests.storage).toBe(template.spec.resources.requests.storage);
            if (want[claim]) expect(inputs(patch!).spec.resources.requests.storage).toBe(want[claim]);
            // Applied only once the StatefulSet (and so its claim) exists.
            expect(patch!.dependencies).toContain(run.recorder.urnOf(sts));
            expect(inputs(patch!).metadata.annotations["pulumi.com/patchForce"]).toBe("true");
        }
    }
});
