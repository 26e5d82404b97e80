// The stack's configuration as typed data: what components and the cluster code take. A leaf module (only a
// type from the Pulumi SDK), so every module can import it without cycles; reading and checking live in load.ts.
import type { Output } from "@pulumi/pulumi";

export const CLUSTER_PROVIDERS = ["digitalocean", "gke", "kubeconfig"] as const;
export type ClusterProvider = (typeof CLUSTER_PROVIDERS)[number];

/** Defaults sized for the mail stack; README ("Cost and node sizes") explains the arithmetic. */
export const DEFAULT_NODE_SIZE = { digitalocean: "s-2vcpu-4gb", gke: "e2-small" } as const;

export interface DigitalOceanClusterConfig {
    provider: "digitalocean";
    name: string;
    region: string;
    nodeSize: string;
    nodeCount: number;
    versionPrefix: string;
    maintenance: { day: string; startTime: string };
}

export interface GkeClusterConfig {
    provider: "gke";
    name: string;
    zone: string;
    machineType: string;
    nodeCount: number;
    versionPrefix: string;
    deletionProtection: boolean;
}

export interface ExistingClusterConfig {
    provider: "kubeconfig";
    /** Empty: $KUBECONFIG, then ~/.kube/config. */
    kubeconfigPath: string;
    /** Empty: the file's current context. */
    context: string;
}

export type ClusterConfig = DigitalOceanClusterConfig | GkeClusterConfig | ExistingClusterConfig;

export interface MailConfig {
    namespace: string;
    hostname: string;
    domains: string[];
    postmaster: string;
}

export interface ImagesConfig {
    registry: string;
    tag: string;
    /** Image name → `sha256:…`: those images are referenced by digest instead of by tag. */
    digests: Readonly<Record<string, string>>;
    pullPolicy: "Always" | "IfNotPresent" | "Never";
}

export interface StorageConfig {
    /** Empty: the cluster's default StorageClass. */
    className: string;
    mailSize: string;
    queueSize: string;
    couchdbSize: string;
}

export interface ServicesConfig {
    couchdb: { image: string; database: string };
    dkim: { selector: string };
    postfix: { dnsbls: string[]; messageSizeLimit: number; mainCf: Record<string, string> };
    dovecot: { junkAutoexpunge: string; maxUserIpConnections: number };
    spam: { enabled: boolean; requiredScore: number; maxChildren: number; clusterNetworks: string[]; trainSchedule: string };
    greylist: { enabled: boolean; delaySeconds: number; whitelistClients: string[]; whitelistRecipients: string[] };
}

export const EDGE_MODES = ["loadbalancer", "ingress-nginx", "hostport"] as const;
export type EdgeMode = (typeof EDGE_MODES)[number];

export interface EdgeConfig {
    mode: EdgeMode;
    /** Sources allowed to send PROXY headers (only used where the edge sends them). */
    proxyTrustedNetworks: string[];
}

export type TlsConfig =
    | { mode: "selfsigned" }
    | { mode: "secret"; secretName: string }
    | { mode: "acme"; email: string; server: "production" | "staging"; digitaloceanToken?: Output<string> };

export interface DnsConfig {
    manage: boolean;
    mtaSts: "off" | "testing" | "enforce";
}

export interface RelayConfig {
    host: string;
    port: 587 | 465;
    username: string;
    password: Output<string>;
}

export interface BackupConfig {
    /** A restic repository (components/backup/config.ts repositoryLocation). */
    repository: string;
    /** Cron schedule of the nightly backup. */
    schedule: string;
    password: Output<string>;
    /** restic's backend credentials as environment variables; empty when the backend needs none. */
    credentials: Output<Record<string, string>>;
}

export interface MetricsConfig {
    /** The scraper's namespace: metrics ports admit its pods only, and the dashboard ConfigMap goes there. */
    namespace: string;
    /** Create ServiceMonitors and the PrometheusRule (the Prometheus Operator's CRDs must exist). */
    prometheusOperator: boolean;
    /** On the monitors, rules and dashboard: what kube-prometheus-stack selects them by. */
    monitorLabels: Readonly<Record<string, string>>;
}

export interface WebmailConfig {
    /** Where browsers reach it; mailHostname unless set. */
    hostname: string;
}

export interface StackConfig {
    cluster: ClusterConfig;
    mail: MailConfig;
    images: ImagesConfig;
    storage: StorageConfig;
    services: ServicesConfig;
    edge: EdgeConfig;
    tls: TlsConfig;
    dns: DnsConfig;
    /** Undefined: direct delivery. */
    relay?: RelayConfig;
    /** Undefined: no backups (backupRepository empty). */
    backup?: BackupConfig;
    /** Undefined: no metrics (metricsEnabled false). */
    metrics?: MetricsConfig;
    /** Undefined: no webmail (webmailEnabled false). */
    webmail?: WebmailConfig;
}
