// The whole stack with spam filtering on, on the smallest nodes the README's cost table discusses: the program
// deployed under the engine model (admission, scheduling after the providers' published reservations and their
// typical system pods; tests/kit/cluster/profiles.ts). Requests follow each pod's measured rest and limits its measured
// peak (measured.ts); a node fits when every pod is scheduled *and* the stack's measured peak fits in what the node
// leaves after its system pods, since requests near the rest let the scheduler place more than a burst can use.
import type { RecordedResource } from "../kit/mocks";
import { DeployResult, deployProgram } from "../kit/cluster/deploy";
import { clusterProfile } from "../kit/cluster/profiles";
import { MI, parseQuantity } from "../kit/cluster/quantity";
import { podRequests } from "../kit/cluster/scheduler";
import { profileValues } from "../config/profiles";
import { MEASURED_MIB } from "./measured";

type Container = { resources?: { requests?: Record<string, string>; limits?: Record<string, string> }; restartPolicy?: string };
type PodSpec = { containers: Container[]; initContainers?: Container[] };

const configFor = (clusterProvider: "digitalocean" | "gke", clusterNodeSize: string) => ({
    ...profileValues({ clusterProvider, edgeMode: "loadbalancer", tlsMode: "selfsigned", dnsManage: false }),
    ...(clusterProvider === "digitalocean" ? { "digitalocean:token": "mock-do-token" } : {}),
    clusterNodeSize,
});

const deploy = (config: Record<string, unknown>) => deployProgram(config, { profile: clusterProfile(config), quietMs: 20 });
const errorsOf = (r: DeployResult) => [...r.programErrors, ...r.failures];

/** The long-running workloads' pod specs by name (StatefulSets and Deployments). */
function workloads(resources: RecordedResource[]): Record<string, PodSpec> {
    const out: Record<string, PodSpec> = {};
    for (const r of resources) {
        if (r.type !== "kubernetes:apps/v1:StatefulSet" && r.type !== "kubernetes:apps/v1:Deployment") continue;
        const obj = r.inputs as { metadata: { name: string }; spec: { template: { spec: PodSpec } } };
        out[obj.metadata.name] = obj.spec.template.spec;
    }
    return out;
}

/** The memory limit a pod's processes share: its containers' and its sidecars' (restartable init containers). */
const podLimit = (spec: PodSpec) =>
    [...spec.containers, ...(spec.initContainers ?? []).filter((c) => c.restartPolicy === "Always")].reduce(
        (sum, c) => sum + parseQuantity(c.resources?.limits?.memory ?? "0"),
        0,
    );

/** What the node's first pool member leaves for the stack: allocatable memory minus its system pods' requests. */
function leftForStack(config: Record<string, unknown>): number {
    const node = clusterProfile(config).nodes[0];
    return node.allocatable.memory - node.systemPods.reduce((sum, p) => sum + p.requests.memory, 0);
}

/** A request "near" the rest: at least the rest, at most half again plus 8 MiB (room for small pods' noise). */
const nearRest = (rest: number) => 1.5 * rest + 8;

const stackPeak = Object.values(MEASURED_MIB).reduce((sum, m) => sum + m.peak * MI, 0);

describe("the stack on 2 GB nodes (spam filtering on)", () => {
    const gke = configFor("gke", "e2-small");
    const doks = configFor("digitalocean", "s-1vcpu-2gb");

    it("every pod requests about its measured rest and is limited above its measured peak", async () => {
        const pods = workloads((await deploy(gke)).resources);
        expect(Object.keys(pods).sort()).toEqual(Object.keys(MEASURED_MIB).sort());
        const off = Object.entries(MEASURED_MIB).flatMap(([name, m]) => {
            const request = podRequests(pods[name] as never).memory / MI;
            const limit = podLimit(pods[name]) / MI;
            return [
                ...(request < m.rest || request > nearRest(m.rest)
                    ? [`${name}: requests ${request} MiB, measured rest ${m.rest} MiB (allowed ${m.rest}–${nearRest(m.rest)})`]
                    : []),
                ...(limit < 1.2 * m.peak ? [`${name}: limit ${limit} MiB, measured peak ${m.peak} MiB (at least ${1.2 * m.peak})`] : []),
            ];
        });
        expect(off).toEqual([]);
    });

    it("GKE e2-small: scheduled, and the stack's measured peak fits what GKE's system pods leave", async () => {
        expect(errorsOf(await deploy(gke))).toEqual([]);
        expect(stackPeak).toBeLessThan(leftForStack(gke));
    });

    it("DigitalOcean s-1vcpu-2gb: refused (Insufficient memory), and the stack's measured peak exceeds what DOKS's system pods leave", async () => {
        expect(errorsOf(await deploy(doks)).join("\n")).toMatch(/Insufficient memory/);
        expect(stackPeak).toBeGreaterThan(leftForStack(doks));
    });
});
