import * as pulumi from "@pulumi/pulumi";
import type { ClusterConfig } from "../config/types";
import { DigitalOceanCluster } from "./digitalocean";
import { ExistingCluster } from "./existing";
import { GkeCluster } from "./gke";
import { MailCluster } from "./types";

export { DigitalOceanCluster, ExistingCluster, GkeCluster };
export type { MailCluster };

/** The one place that knows which cloud the stack runs on. */
export function createCluster(name: string, config: ClusterConfig, opts?: pulumi.ComponentResourceOptions): MailCluster {
    switch (config.provider) {
        case "digitalocean":
            return new DigitalOceanCluster(name, config, opts);
        case "gke":
            return new GkeCluster(name, config, opts);
        case "kubeconfig":
            return new ExistingCluster(name, config, opts);
    }
}
