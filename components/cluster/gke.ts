import * as gcp from "@pulumi/gcp";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { GkeClusterConfig } from "../config/types";
import { edgeNodeTag } from "../edge/cloud";
import { ConfigError } from "../config/checks";
import { MailCluster, requireVersion, versionFilter } from "./types";

export type GkeClusterArgs = Omit<GkeClusterConfig, "provider">;

/** GA-quality versions, upgraded by Google; node auto-upgrade cannot be turned off in a channel. */
export const RELEASE_CHANNEL = "REGULAR";

/**
 * The version to create the cluster at. GKE refuses a minMasterVersion its channel does not offer, and the newest
 * master version (`latestMasterVersion`) is often only in RAPID; so take the channel's default, or with a prefix the
 * channel's default or newest version when one of them matches (getEngineVersions releaseChannelDefaultVersion /
 * releaseChannelLatestVersion, from the API's ServerConfig.channels[]).
 */
export function channelVersion(channel: { default?: string; latest?: string }, prefix: string, zone: string): string {
    const filter = versionFilter(prefix);
    const offered = [channel.default, channel.latest].filter((v): v is string => !!v);
    const match = offered.find((v) => filter === undefined || v.startsWith(filter));
    if (!match && offered.length > 0) {
        throw new ConfigError(
            `mail:clusterVersionPrefix = "${prefix}" matches no version GKE's ${RELEASE_CHANNEL} channel offers in ${zone} (default ${channel.default ?? "none"}, newest ${channel.latest ?? "none"}); use one of those prefixes or leave it empty`,
        );
    }
    return requireVersion(match, prefix, `GKE ${RELEASE_CHANNEL} channel (${zone})`);
}

/**
 * The cheapest honest GKE: a zonal Standard cluster (its fee is covered by the free tier) whose default pool is
 * replaced by one spot node pool. Spot nodes can be reclaimed: Postfix keeps its queue and Dovecot its mail on
 * persistent volumes, and senders retry, so a short outage loses nothing.
 */
export class GkeCluster extends pulumi.ComponentResource implements MailCluster {
    readonly provider: k8s.Provider;
    readonly kubeconfig: pulumi.Output<string>;
    readonly clusterName: pulumi.Output<string>;
    readonly endpoint: pulumi.Output<string>;

    constructor(name: string, args: GkeClusterArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:GkeCluster", name, {}, opts);

        const versions = gcp.container.getEngineVersionsOutput({ location: args.zone, versionPrefix: versionFilter(args.versionPrefix) }, { parent: this });
        const version = pulumi
            .all([versions.releaseChannelDefaultVersion, versions.releaseChannelLatestVersion])
            .apply(([defaults, latest]) =>
                channelVersion({ default: defaults[RELEASE_CHANNEL], latest: latest[RELEASE_CHANNEL] }, args.versionPrefix, args.zone),
            );

        const cluster = new gcp.container.Cluster(
            `${name}-cluster`,
            {
                name: args.name,
                location: args.zone,
                minMasterVersion: version,
                releaseChannel: { channel: RELEASE_CHANNEL },
                removeDefaultNodePool: true,
                initialNodeCount: 1,
                deletionProtection: args.deletionProtection,
                networkingMode: "VPC_NATIVE",
                // Dataplane V2 enforces the NetworkPolicies that fence CouchDB, the milter and Dovecot's LMTP/SASL.
                datapathProvider: "ADVANCED_DATAPATH",
                ipAllocationPolicy: {},
                // Workload Identity: pods act as Google service accounts without keys (cert-manager's Cloud DNS solver).
                workloadIdentityConfig: { workloadPool: pulumi.interpolate`${gcp.organizations.getClientConfigOutput({ parent: this }).project}.svc.id.goog` },
            },
            { parent: this, ignoreChanges: ["minMasterVersion"] /* the release channel upgrades it */ },
        );

        new gcp.container.NodePool(
            `${name}-pool`,
            {
                cluster: cluster.name,
                location: args.zone,
                nodeCount: args.nodeCount,
                management: { autoRepair: true, autoUpgrade: true },
                nodeConfig: {
                    machineType: args.machineType,
                    spot: true,
                    diskSizeGb: 30,
                    diskType: "pd-standard",
                    // Least privilege: nodes only write logs/metrics and pull images.
                    oauthScopes: [
                        "https://www.googleapis.com/auth/logging.write",
                        "https://www.googleapis.com/auth/monitoring",
                        "https://www.googleapis.com/auth/devstorage.read_only",
                    ],
                    labels: { "mail.stack/pool": "mail" },
                    // Target of the hostport edge's firewall rule.
                    tags: [edgeNodeTag()],
                    shieldedInstanceConfig: { enableSecureBoot: true },
                    // Pods reach Google APIs through the GKE metadata server (Workload Identity), never as the node.
                    workloadMetadataConfig: { mode: "GKE_METADATA" },
                },
            },
            { parent: this },
        );

        this.clusterName = cluster.name;
        this.endpoint = cluster.endpoint;
        this.kubeconfig = pulumi.secret(
            pulumi
                .all([cluster.name, cluster.endpoint, cluster.masterAuth])
                .apply(([clusterName, endpoint, auth]) => gkeKubeconfig(clusterName, endpoint, auth.clusterCaCertificate)),
        );
        this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: this.kubeconfig }, { parent: this, dependsOn: [cluster] });
        this.registerOutputs({ kubeconfig: this.kubeconfig, clusterName: this.clusterName, endpoint: this.endpoint });
    }
}

/** A kubeconfig that authenticates with gke-gcloud-auth-plugin, as `gcloud container clusters get-credentials` writes. */
export function gkeKubeconfig(clusterName: string, endpoint: string, caCertificate: string): string {
    const context = `gke_${clusterName}`;
    return JSON.stringify(
        {
            apiVersion: "v1",
            kind: "Config",
            clusters: [{ name: context, cluster: { server: `https://${endpoint}`, "certificate-authority-data": caCertificate } }],
            contexts: [{ name: context, context: { cluster: context, user: context } }],
            "current-context": context,
            users: [
                {
                    name: context,
                    user: {
                        exec: {
                            apiVersion: "client.authentication.k8s.io/v1beta1",
                            command: "gke-gcloud-auth-plugin",
                            installHint: "Install gke-gcloud-auth-plugin: gcloud components install gke-gcloud-auth-plugin",
                            provideClusterInfo: true,
                        },
                    },
                },
            ],
        },
        null,
        2,
    );
}
