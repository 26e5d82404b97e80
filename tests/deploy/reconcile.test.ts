// The scheduler retries unschedulable pods when the cluster changes (a pod it waits for got placed:
// kubernetes pkg/scheduler/internal/queue/scheduling_queue.go moves them back to the active queue on AssignedPodAdd).
import { ClusterModel } from "../kit/cluster/cluster";
import type { KubeObject } from "../kit/cluster/objects";
import { clusterProfile } from "../kit/cluster/profiles";

const deployment = (name: string, affinityTo?: string): KubeObject => ({
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: { name, namespace: "default" },
    spec: {
        replicas: 1,
        selector: { matchLabels: { app: name } },
        template: {
            metadata: { labels: { app: name } },
            spec: {
                containers: [{ name: "c", image: "x", resources: { requests: { cpu: "10m", memory: "16Mi" } } }],
                affinity: affinityTo && {
                    podAffinity: {
                        requiredDuringSchedulingIgnoredDuringExecution: [
                            { labelSelector: { matchLabels: { app: affinityTo } }, topologyKey: "kubernetes.io/hostname" },
                        ],
                    },
                },
            },
        },
    },
});

describe("cluster model: scheduling retries", () => {
    it("places a pod waiting for its affinity target as soon as the target's pod is placed, without another object being created", () => {
        const cluster = new ClusterModel(clusterProfile({ clusterProvider: "kubeconfig" }));
        cluster.create(deployment("follower", "leader"));
        const [follower] = cluster.podsOf(cluster.get("Deployment", "default", "follower")!);
        expect(cluster.podStatus(follower).problems).toEqual([expect.stringContaining("didn't match pod affinity rules")]);
        cluster.create(deployment("leader"));
        expect(cluster.podStatus(follower)).toEqual({ running: true, ready: true, problems: [] });
    });
});
