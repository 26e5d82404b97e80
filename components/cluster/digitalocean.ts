import * as digitalocean from "@pulumi/digitalocean";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { DigitalOceanClusterConfig } from "../../config";
import { EDGE_NODE_TAG } from "../edge/cloud";
import { MailCluster, requireVersion, versionFilter } from "./types";

export type DigitalOceanClusterArgs = Omit<DigitalOceanClusterConfig, "provider">;

/** A DOKS cluster in its own VPC, at the newest version matching the prefix, upgrading itself weekly. */
export class DigitalOceanCluster extends pulumi.ComponentResource implements MailCluster {
    readonly provider: k8s.Provider;
    readonly kubeconfig: pulumi.Output<string>;
    readonly clusterName: pulumi.Output<string>;
    readonly endpoint: pulumi.Output<string>;

    constructor(name: string, args: DigitalOceanClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:DigitalOceanCluster", name, {}, opts);

        const versions = digitalocean.getKubernetesVersionsOutput({ versionPrefix: versionFilter(args.versionPrefix) }, { parent: this });
        const version = versions.latestVersion.apply((v) => requireVersion(v, args.versionPrefix, "DigitalOcean"));

        const vpc = new digitalocean.Vpc(`${name}-vpc`, {
            name: `${args.name}-vpc`,
            region: args.region,
            description: "Private network of the mail cluster",
        }, { parent: this });

        const cluster = new digitalocean.KubernetesCluster(`${name}-cluster`, {
            name: args.name,
            region: args.region,
            version,
            vpcUuid: vpc.id,
            autoUpgrade: true,
            surgeUpgrade: true,
            maintenancePolicy: { day: args.maintenance.day, startTime: args.maintenance.startTime },
            nodePool: {
                name: `${args.name}-pool`,
                size: args.nodeSize,
                nodeCount: args.nodeCount,
                labels: { "mail.stack/pool": "mail" },
                // Target of the hostport edge's firewall.
                tags: [EDGE_NODE_TAG],
            },
        }, { parent: this, ignoreChanges: ["version"] /* auto-upgrade moves it; don't fight the cloud */ });

        this.kubeconfig = pulumi.secret(cluster.kubeConfigs.apply((configs) => configs[0].rawConfig!));
        this.clusterName = cluster.name;
        this.endpoint = cluster.endpoint;
        this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: this.kubeconfig }, { parent: this });
        this.registerOutputs({ kubeconfig: this.kubeconfig, clusterName: this.clusterName, endpoint: this.endpoint });
    }
}
