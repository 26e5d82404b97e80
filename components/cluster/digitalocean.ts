import * as digitalocean from "@pulumi/digitalocean";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { DigitalOceanClusterConfig } from "../config/types";
import { ConfigError } from "../config/checks";
import { edgeNodeTag } from "../edge/cloud";
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

        const vpc = new digitalocean.Vpc(
            `${name}-vpc`,
            {
                name: `${args.name}-vpc`,
                region: args.region,
                description: "Private network of the mail cluster",
            },
            { parent: this },
        );

        const cluster = new digitalocean.KubernetesCluster(
            `${name}-cluster`,
            {
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
                    tags: [edgeNodeTag()],
                },
            },
            { parent: this, ignoreChanges: ["version"] /* auto-upgrade moves it; don't fight the cloud */ },
        );

        // The kubeconfig the cluster resource returns holds a token DigitalOcean issues for 7 days, frozen in state at
        // creation (pulumi-digitalocean #312): every `pulumi up` after that week would fail. The cluster accepts any
        // DigitalOcean API token (its kubeConfigs[].token "is the DigitalOcean API access token used by clients"), so
        // the provider gets the token this run was started with, and people get a kubeconfig that asks doctl.
        const access = cluster.kubeConfigs.apply((configs) => ({ server: configs[0].host, caData: configs[0].clusterCaCertificate }));
        const token = digitaloceanApiToken(new pulumi.Config("digitalocean").getSecret("token"), process.env);
        this.kubeconfig = pulumi.secret(
            pulumi
                .all([cluster.name, cluster.id, access])
                .apply(([clusterName, id, { server, caData }]) => doksKubeconfig({ clusterName, server, caData, user: { exec: doctlExec(id) } })),
        );
        this.clusterName = cluster.name;
        this.endpoint = cluster.endpoint;
        const providerKubeconfig = pulumi.secret(
            pulumi
                .all([cluster.name, access, token])
                .apply(([clusterName, { server, caData }, apiToken]) => doksKubeconfig({ clusterName, server, caData, user: { token: apiToken } })),
        );
        this.provider = new k8s.Provider(`${name}-k8s`, { kubeconfig: providerKubeconfig }, { parent: this });
        this.registerOutputs({ kubeconfig: this.kubeconfig, clusterName: this.clusterName, endpoint: this.endpoint });
    }
}

/**
 * The DigitalOcean API token this run uses, read where the DigitalOcean provider reads it: `digitalocean:token`
 * (`configured`), else DIGITALOCEAN_TOKEN, else DIGITALOCEAN_ACCESS_TOKEN.
 */
export function digitaloceanApiToken(configured: pulumi.Output<string> | undefined, env: NodeJS.ProcessEnv): pulumi.Output<string> {
    if (configured) return configured;
    const fromEnv = env.DIGITALOCEAN_TOKEN || env.DIGITALOCEAN_ACCESS_TOKEN;
    if (!fromEnv)
        throw new ConfigError("clusterProvider digitalocean needs a DigitalOcean API token: set DIGITALOCEAN_TOKEN, or digitalocean:token with --secret");
    return pulumi.secret(fromEnv);
}

/** The exec entry `doctl kubernetes cluster kubeconfig save` writes: doctl fetches a fresh token on every use. */
export function doctlExec(clusterId: string) {
    return {
        apiVersion: "client.authentication.k8s.io/v1beta1",
        command: "doctl",
        args: ["kubernetes", "cluster", "kubeconfig", "exec-credential", "--version=v1beta1", clusterId],
        installHint: "Install doctl and log in (doctl auth init, or DIGITALOCEAN_ACCESS_TOKEN)",
    };
}

export function doksKubeconfig(args: {
    clusterName: string;
    server: string;
    caData: string;
    user: { token: string } | { exec: ReturnType<typeof doctlExec> };
}): string {
    const context = `do-${args.clusterName}`;
    return JSON.stringify(
        {
            apiVersion: "v1",
            kind: "Config",
            clusters: [{ name: context, cluster: { server: args.server, "certificate-authority-data": args.caData } }],
            contexts: [{ name: context, context: { cluster: context, user: `${context}-admin` } }],
            "current-context": context,
            users: [{ name: `${context}-admin`, user: args.user }],
        },
        null,
        2,
    );
}
