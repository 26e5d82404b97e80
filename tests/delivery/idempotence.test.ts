// Idempotence: the program run twice with the same config registers the same resources with identical inputs (no
// timestamps, random names or unordered collections leaking into them), so a second `pulumi up` changes nothing; and
// one changed config key changes only the resources that key is about. The engine's state between runs is modelled
// in ./engine-state.ts (unchanged resources keep their outputs, as the engine's "same" steps do).
import { isDeepStrictEqual } from "util";
import { changedResources, deploy, Deployment } from "./engine-state";

jest.setTimeout(120_000);

/** `type::name` of a resource key (the parent chain is in the key; names are unique in this program). */
const short = (keys: string[]) => keys.map((k) => k.split("|")[1]).sort();

const MAIL = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };

describe.each(["digitalocean", "gke"])("%s stack run twice", (clusterProvider) => {
    it("the second run registers the same resources with identical inputs, parents, providers and dependencies", async () => {
        const base = { ...MAIL, clusterProvider };
        const first = await deploy(base);
        const second = await deploy(base, first.state);
        expect([...second.inputs.keys()].sort()).toEqual([...first.inputs.keys()].sort());
        const differing = [...first.inputs]
            .filter(([key, r]) => {
                const again = second.inputs.get(key)!;
                return !isDeepStrictEqual(
                    { inputs: r.inputs, provider: r.provider, dependencies: [...(r.dependencies ?? [])].sort() },
                    { inputs: again.inputs, provider: again.provider, dependencies: [...(again.dependencies ?? [])].sort() },
                );
            })
            .map(([key]) => key);
        expect(differing).toEqual([]);
        expect(changedResources(first, second)).toEqual({ created: [], deleted: [], updated: [] });
    });
});

describe("one changed config key (digitalocean stack)", () => {
    const base = { ...MAIL, clusterProvider: "digitalocean" };
    let first: Deployment;
    beforeAll(async () => {
        first = await deploy(base);
    });

    it("the state model matters: without it, generated secrets (passwords, keys) would differ between runs", async () => {
        const fresh = await deploy(base);
        expect(changedResources(first, fresh).updated.length).toBeGreaterThan(0);
    });

    type Changed = Partial<Record<"created" | "deleted" | "updated", string[]>>;
    it.each<[string, Record<string, unknown>, Changed]>([
        [
            "imagesTag",
            { imagesTag: "v2" },
            {
                updated: [
                    "kubernetes:apps/v1:Deployment::mail-opendkim-deployment",
                    "kubernetes:apps/v1:StatefulSet::mail-dovecot-statefulset",
                    "kubernetes:apps/v1:StatefulSet::mail-postfix-statefulset",
                    "kubernetes:apps/v1:StatefulSet::mail-postgrey-statefulset",
                    "kubernetes:apps/v1:StatefulSet::mail-spamassassin-statefulset",
                    "kubernetes:batch/v1:CronJob::mail-spamassassin-train",
                    // The datastore sync runs the couchmail image, and its Job's name follows that image.
                    "kubernetes:batch/v1:Job::mail-couchmail-sync",
                ],
            },
        ],
        [
            "a domain added",
            { mailDomains: ["example.com", "example.org"] },
            {
                created: ["tls:index/privateKey:PrivateKey::mail-dkim-example.org"],
                // The sync Job creates the new domain in the datastore.
                updated: [
                    "kubernetes:batch/v1:Job::mail-couchmail-sync",
                    "kubernetes:core/v1:ConfigMap::mail-opendkim-config",
                    "kubernetes:core/v1:ConfigMap::mail-postfix-config",
                    "kubernetes:core/v1:Secret::mail-dkim-secret",
                ],
            },
        ],
        [
            "spamEnabled off",
            { spamEnabled: false },
            {
                deleted: [
                    "kubernetes:apps/v1:StatefulSet::mail-spamassassin-statefulset",
                    "kubernetes:batch/v1:CronJob::mail-spamassassin-train",
                    "kubernetes:core/v1:ConfigMap::mail-spamassassin-config",
                    "kubernetes:core/v1:PersistentVolumeClaimPatch::mail-spamassassin-data-size",
                    "kubernetes:core/v1:Service::mail-spamassassin-service",
                    "kubernetes:networking.k8s.io/v1:NetworkPolicy::mail-spamassassin-network-policy",
                    "kubernetes:networking.k8s.io/v1:NetworkPolicy::mail-spamassassin-train-network-policy",
                    "mail:index:SpamAssassin::mail-spamassassin",
                ],
                updated: ["kubernetes:core/v1:ConfigMap::mail-dovecot-config", "kubernetes:networking.k8s.io/v1:NetworkPolicy::mail-dovecot-network-policy"],
            },
        ],
        [
            "storageQueueSize",
            { storageQueueSize: "5Gi" },
            {
                updated: ["kubernetes:core/v1:PersistentVolumeClaimPatch::mail-postfix-queue-size"],
            },
        ],
    ])("changing %s changes exactly the resources it is about", async (_key, change, expected) => {
        const next = await deploy({ ...base, ...change }, first.state);
        const diff = changedResources(first, next);
        expect({ created: short(diff.created), deleted: short(diff.deleted), updated: short(diff.updated) }).toEqual({
            created: expected.created ?? [],
            deleted: expected.deleted ?? [],
            updated: expected.updated ?? [],
        });
    });
});
