// The whole stack with spam filtering on, scheduled on the smallest nodes the README's cost table discusses: the
// program deployed under the engine model (admission, scheduling after the providers' published reservations and
// their typical system pods; tests/kit/cluster/profiles.ts). Which of them the defaults fit is recorded here.
import { deployProgram } from "../kit/cluster/deploy";
import { clusterProfile } from "../kit/cluster/profiles";
import { profileValues } from "../config/profiles";

const deploy = async (clusterProvider: "digitalocean" | "gke", clusterNodeSize: string) => {
    const config = {
        ...profileValues({ clusterProvider, edgeMode: "loadbalancer", tlsMode: "selfsigned", dnsManage: false }),
        ...(clusterProvider === "digitalocean" ? { "digitalocean:token": "mock-do-token" } : {}),
        clusterNodeSize,
    };
    const result = await deployProgram(config, { profile: clusterProfile(config), quietMs: 20 });
    return [...result.programErrors, ...result.failures];
};

describe("the stack on 2 GB nodes (spam filtering on)", () => {
    it("GKE e2-small: scheduled", async () => {
        expect(await deploy("gke", "e2-small")).toEqual([]);
    });
    it("DigitalOcean s-1vcpu-2gb: refused, Insufficient memory (1 GiB allocatable, ~0.5 GiB of it DOKS's own pods)", async () => {
        expect((await deploy("digitalocean", "s-1vcpu-2gb")).join("\n")).toMatch(/Insufficient memory/);
    });
});
