// Reads the stack's configuration (the keys Pulumi.yaml declares) into the typed StackConfig, once, up front.
import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parseBackupCredentials, repositoryProblem } from "../backup/config";
import { cidr, ConfigError, dnsbl, dnsLabel, email, fqdn, imageDigest, labelName, labelValue, optional, pattern, pinnedImage } from "./checks";
import { ConfigReader } from "./reader";
import {
    BackupConfig,
    CLUSTER_PROVIDERS,
    ClusterConfig,
    DEFAULT_NODE_SIZE,
    DnsConfig,
    EDGE_MODES,
    EdgeConfig,
    ImagesConfig,
    MailConfig,
    MetricsConfig,
    RelayConfig,
    ServicesConfig,
    StackConfig,
    WebmailConfig,
    StorageConfig,
    TlsConfig,
} from "./types";

const VERSION_PREFIX = pattern(/^(\d+\.\d+(\.\d+)?)?$/, "expected empty (newest) or a version prefix such as 1.34");
const DO_REGION = pattern(/^[a-z]{3}\d$/, "expected a DigitalOcean region slug such as nyc3, ams3 or fra1");
const DO_SIZE = pattern(/^[a-z0-9]+(-[a-z0-9]+)+$/, "expected a DigitalOcean droplet size slug such as s-2vcpu-4gb");
const GCE_MACHINE = pattern(/^[a-z][a-z0-9]*-[a-z0-9-]+$/, "expected a GCE machine type such as e2-medium");
const WEEKDAYS = ["monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday", "any"] as const;
const HH_MM = pattern(/^([01]\d|2[0-3]):[0-5]\d$/, "expected a UTC time HH:MM such as 04:00");
const REGISTRY = pattern(
    /^[a-z0-9]([a-z0-9._:-]*[a-z0-9])?(\/[a-z0-9]([a-z0-9._-]*[a-z0-9])?)*$/,
    "expected an image registry and path such as registry.example.com/me/mail",
);
const IMAGE_TAG = pattern(/^[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}$/, "expected an image tag such as 0.1.0");

function gcpZone(value: string): string | undefined {
    if (/^[a-z]+(-[a-z]+)*\d+-[a-z]$/.test(value)) return undefined;
    if (/^[a-z]+(-[a-z]+)*\d+$/.test(value)) return `that is a region; a zonal cluster needs a zone such as ${value}-a`;
    return "expected a GCP zone such as us-central1-a";
}

/** What a cluster the program creates takes on either cloud: its name, node count and version prefix. */
function readCloudCluster(r: ConfigReader) {
    return {
        name: r.string("clusterName", dnsLabel),
        nodeCount: r.integer("clusterNodeCount", 1, 100),
        versionPrefix: r.string("clusterVersionPrefix", VERSION_PREFIX),
    };
}

function readCluster(r: ConfigReader): ClusterConfig {
    const provider = r.oneOf("clusterProvider", CLUSTER_PROVIDERS);
    switch (provider) {
        case "digitalocean":
            return {
                provider,
                ...readCloudCluster(r),
                region: r.string("clusterRegion", DO_REGION),
                nodeSize: r.string("clusterNodeSize", optional(DO_SIZE)) || DEFAULT_NODE_SIZE.digitalocean,
                maintenance: { day: r.oneOf("clusterMaintenanceDay", WEEKDAYS), startTime: r.string("clusterMaintenanceStartTime", HH_MM) },
            };
        case "gke":
            return {
                provider,
                ...readCloudCluster(r),
                zone: r.string("clusterZone", gcpZone),
                machineType: r.string("clusterNodeSize", optional(GCE_MACHINE)) || DEFAULT_NODE_SIZE.gke,
                deletionProtection: r.boolean("clusterDeletionProtection"),
            };
        case "kubeconfig":
            return { provider, kubeconfigPath: r.string("clusterKubeconfig"), context: r.string("clusterKubeconfigContext") };
    }
}

function readMail(r: ConfigReader): MailConfig {
    const domains = r.stringList("mailDomains", fqdn, 1);
    const seen = new Set<string>();
    for (const d of domains) {
        if (seen.has(d)) throw new ConfigError(`mail:mailDomains lists ${d} twice`);
        seen.add(d);
    }
    return {
        namespace: r.string("mailNamespace", dnsLabel),
        hostname: r.string("mailHostname", fqdn),
        domains,
        postmaster: r.string("mailPostmaster", (v) => (v === "" ? undefined : email(v))) || `postmaster@${domains[0]}`,
    };
}

/** Our images: the folders of images/ with a Dockerfile (what images/build.sh and the images workflow build). */
export function ourImageNames(imagesDir = path.join(__dirname, "..", "..", "images")): string[] {
    return fs
        .readdirSync(imagesDir)
        .filter((d) => fs.existsSync(path.join(imagesDir, d, "Dockerfile")))
        .sort();
}

function readImages(r: ConfigReader): ImagesConfig {
    const digests = r.stringMap("imagesDigests", imageDigest);
    const known = ourImageNames();
    for (const name of Object.keys(digests)) {
        if (!known.includes(name)) throw new ConfigError(`mail:imagesDigests.${name} is not one of our images: expected one of ${known.join(", ")}`);
    }
    return {
        registry: r.string("imagesRegistry", REGISTRY),
        tag: r.string("imagesTag", IMAGE_TAG),
        digests,
        pullPolicy: r.oneOf("imagesPullPolicy", ["Always", "IfNotPresent", "Never"] as const),
    };
}

const QUANTITY = pattern(/^[1-9]\d*(Mi|Gi|Ti)$/, "expected a size such as 512Mi or 10Gi");
const STORAGE_CLASS = (v: string) => (v === "" ? undefined : dnsLabel(v));

function readStorage(r: ConfigReader): StorageConfig {
    return {
        className: r.string("storageClassName", STORAGE_CLASS),
        mailSize: r.string("storageMailSize", QUANTITY),
        queueSize: r.string("storageQueueSize", QUANTITY),
        couchdbSize: r.string("storageCouchdbSize", QUANTITY),
    };
}

const POSTFIX_PARAMETER = /^([a-z][a-z0-9_]*)\s*=\s*(.*)$/;

function readServices(r: ConfigReader): ServicesConfig {
    const mainCf = Object.fromEntries(
        r
            .stringList("postfixMainCf", (v) => (POSTFIX_PARAMETER.test(v) && !/[\r\n]/.test(v) ? undefined : 'expected "parameter = value" on one line'))
            .map((line) => POSTFIX_PARAMETER.exec(line)!.slice(1, 3)),
    );
    return {
        couchdb: {
            image: r.string("couchdbImage", pinnedImage),
            database: r.string(
                "couchdbDatabase",
                pattern(/^[a-z][a-z0-9_$()+-]*$/, "expected a CouchDB database name: lowercase letter first, then a-z 0-9 _$()+-"),
            ),
        },
        dkim: { selector: r.string("dkimSelector", dnsLabel) },
        postfix: {
            dnsbls: r.stringList("postfixDnsbls", dnsbl),
            messageSizeLimit: r.integer("postfixMessageSizeLimit", 1024 * 1024, 1024 * 1024 * 1024),
            mainCf,
        },
        dovecot: {
            junkAutoexpunge: r.string("dovecotJunkAutoexpunge", pattern(/^(\d+[smhdw])?$/, "expected an interval such as 30d, or empty")),
            maxUserIpConnections: r.integer("dovecotMaxUserIpConnections", 1, 10000),
        },
        spam: {
            enabled: r.boolean("spamEnabled"),
            requiredScore: Number(r.string("spamRequiredScore", pattern(/^([1-9]|[1-4]\d|50)(\.\d{1,2})?$/, "expected a score from 1 to 50 such as 5.0"))),
            maxChildren: r.integer("spamMaxChildren", 1, 20),
            clusterNetworks: r.stringList("spamClusterNetworks", cidr, 1),
            trainSchedule: r.string("spamTrainSchedule", pattern(/^(\S+\s+){4}\S+$/, 'expected a cron schedule of five fields such as "30 3 * * *"')),
        },
        greylist: {
            enabled: r.boolean("greylistEnabled"),
            delaySeconds: r.integer("greylistDelay", 1, 3600),
            whitelistClients: r.stringList("greylistWhitelistClients", GREYLIST_ENTRY),
            whitelistRecipients: r.stringList("greylistWhitelistRecipients", GREYLIST_ENTRY),
        },
    };
}

const GREYLIST_ENTRY = pattern(/^\S+$/, "expected one entry without spaces");

function readEdge(r: ConfigReader, cluster: ClusterConfig): EdgeConfig {
    const mode = r.oneOf("edgeMode", EDGE_MODES);
    const edge = { mode, proxyTrustedNetworks: r.stringList("edgeProxyTrustedNetworks", cidr, 1) };
    if (mode === "hostport") {
        // hostport serves from one node behind a reserved address and a firewall, which only DigitalOcean gives.
        if (cluster.provider === "kubeconfig") {
            throw new ConfigError(
                'mail:edgeMode = "hostport" is not allowed with clusterProvider kubeconfig: it needs a cloud firewall and a reserved address (digitalocean); use loadbalancer (k3s ServiceLB, MetalLB, …) or ingress-nginx',
            );
        }
        if (cluster.provider === "gke") {
            throw new ConfigError(
                'mail:edgeMode = "hostport" is not allowed with clusterProvider gke: GKE replaces its nodes and their ephemeral public addresses, and a node cannot hold a static address; use loadbalancer',
            );
        }
        if (cluster.nodeCount > 1) {
            throw new ConfigError(
                `mail:edgeMode = "hostport" is not allowed with clusterNodeCount = ${cluster.nodeCount}: it serves from a single node; use loadbalancer, or clusterNodeCount 1`,
            );
        }
    }
    return edge;
}

function readDns(r: ConfigReader, cluster: ClusterConfig): DnsConfig {
    const manage = r.boolean("dnsManage");
    if (manage && cluster.provider === "kubeconfig") {
        throw new ConfigError(
            "mail:dnsManage = true is not allowed with clusterProvider kubeconfig: the program manages DigitalOcean DNS (digitalocean) or Cloud DNS (gke) only; publish the dnsZone output yourself",
        );
    }
    return { manage, mtaSts: r.oneOf("dnsMtaSts", ["off", "testing", "enforce"] as const) };
}

function readTls(r: ConfigReader, cluster: ClusterConfig, edge: EdgeConfig, dns: DnsConfig, mail: MailConfig): TlsConfig {
    const mode = r.oneOf("tlsMode", ["selfsigned", "acme", "secret"] as const);
    switch (mode) {
        case "selfsigned":
            return { mode };
        case "secret": {
            const secretName = r.string("tlsSecretName", (v) =>
                v === "" ? "required with tlsMode secret: the name of your kubernetes.io/tls Secret" : dnsLabel(v),
            );
            return { mode, secretName };
        }
        case "acme": {
            // HTTP-01 needs plain HTTP on the mail host; only ingress-nginx serves it (DNS-01 needs no port at all).
            if (!dns.manage && edge.mode !== "ingress-nginx") {
                throw new ConfigError(
                    `mail:tlsMode = "acme" is not allowed with edgeMode ${edge.mode} and dnsManage false: set dnsManage true (DNS-01), or edgeMode ingress-nginx (HTTP-01), or tlsMode secret`,
                );
            }
            const token = dns.manage && cluster.provider === "digitalocean" ? r.secret("tlsAcmeDigitaloceanToken") : undefined;
            if (dns.manage && cluster.provider === "digitalocean" && !token) {
                throw new ConfigError(
                    "mail:tlsAcmeDigitaloceanToken is required with tlsMode acme and dnsManage on digitalocean: set it with pulumi config set --secret",
                );
            }
            return {
                mode,
                email: r.string("tlsAcmeEmail", (v) => (v === "" ? undefined : email(v))) || mail.postmaster,
                server: r.oneOf("tlsAcmeServer", ["production", "staging"] as const),
                digitaloceanToken: token,
            };
        }
    }
}

function readRelay(r: ConfigReader): RelayConfig | undefined {
    const host = r.string("relayHost", (v) => (v === "" ? undefined : fqdn(v)));
    const port = r.integer("relayPort", 1, 65535);
    const username = r.string("relayUsername", pattern(/^[^\s:]*$/, "expected a user name without spaces or colons"));
    const password = r.secret("relayPassword");
    if (host === "") {
        if (username !== "" || password) throw new ConfigError("mail:relayHost is required when relayUsername or relayPassword is set");
        return undefined;
    }
    if (port !== 587 && port !== 465) throw new ConfigError(`mail:relayPort = "${port}" is not allowed: expected 587 (STARTTLS) or 465 (implicit TLS)`);
    if (username === "" || !password)
        throw new ConfigError(`mail:relayHost = "${host}" needs mail:relayUsername and mail:relayPassword (set the password with --secret)`);
    return { host, port, username, password };
}

const CRON_SCHEDULE = pattern(/^(\S+\s+){4}\S+$/, 'expected a cron schedule of five fields such as "0 2 * * *"');

function readBackup(r: ConfigReader): BackupConfig | undefined {
    const repository = r.string("backupRepository", (v) => (v === "" ? undefined : repositoryProblem(v)));
    const schedule = r.string("backupSchedule", CRON_SCHEDULE);
    const password = r.secret("backupPassword");
    const credentials = r.parsedSecret("backupCredentials", parseBackupCredentials);
    if (repository === "") {
        if (password || credentials) throw new ConfigError("mail:backupRepository is required when backupPassword or backupCredentials is set");
        return undefined;
    }
    if (!password)
        throw new ConfigError(
            `mail:backupRepository = "${repository}" needs mail:backupPassword, the repository's encryption password (set it with --secret and keep a copy outside the cluster)`,
        );
    return { repository, schedule, password, credentials: credentials ?? pulumi.output<Record<string, string>>({}) };
}

function readMetrics(r: ConfigReader): MetricsConfig | undefined {
    const enabled = r.boolean("metricsEnabled");
    const namespace = r.string("metricsNamespace", dnsLabel);
    const prometheusOperator = r.boolean("metricsPrometheusOperator");
    const monitorLabels = r.stringMap("metricsMonitorLabels", labelValue);
    for (const name of Object.keys(monitorLabels)) {
        const problem = labelName(name);
        if (problem) throw new ConfigError(`mail:metricsMonitorLabels.${name} is not allowed: ${problem}`);
    }
    return enabled ? { namespace, prometheusOperator, monitorLabels } : undefined;
}

function readWebmail(r: ConfigReader, mail: MailConfig): WebmailConfig | undefined {
    const enabled = r.boolean("webmailEnabled");
    const hostname = r.string("webmailHostname", (v) => (v === "" ? undefined : fqdn(v))) || mail.hostname;
    return enabled ? { hostname } : undefined;
}

/** Reads and validates the whole stack configuration once; the result is deeply frozen. */
export function loadConfig(reader = new ConfigReader()): StackConfig {
    const cluster = readCluster(reader);
    const mail = readMail(reader);
    const edge = readEdge(reader, cluster);
    const dns = readDns(reader, cluster);
    return deepFreeze({
        cluster,
        mail,
        images: readImages(reader),
        storage: readStorage(reader),
        services: readServices(reader),
        edge,
        dns,
        tls: readTls(reader, cluster, edge, dns, mail),
        relay: readRelay(reader),
        backup: readBackup(reader),
        metrics: readMetrics(reader),
        webmail: readWebmail(reader, mail),
    });
}

function deepFreeze<T>(value: T): T {
    // Pulumi Outputs (secrets) are immutable to us already and must not be frozen.
    if (value && typeof value === "object" && !pulumi.Output.isInstance(value)) {
        for (const v of Object.values(value)) deepFreeze(v);
        Object.freeze(value);
    }
    return value;
}
