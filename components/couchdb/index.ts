import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { appLabels, BUDGET, CONFIG_HASH, mailWorkload, Peer } from "../kube";
import { pinnedImage } from "../config/checks";
import { contentHash, Listener } from "../render";
import { SCRAPE_TARGETS } from "../monitoring/metrics";
import { COUCHDB_INI_NAME, renderCouchDbIni } from "./config";

/** couchmail, beside Postfix and Dovecot, is the only long-running client. */
export const COUCHDB_LISTENERS = { http: { name: "http", port: 5984, clients: ["postfix", "dovecot"] } } as const satisfies Record<string, Listener>;
export const COUCHDB_UID = 5984; // the official image's couchdb user

export interface CouchDbArgs {
    namespace: pulumi.Input<string>;
    /** The official image, pinned by version. */
    image: string;
    storageSize: string;
    storageClassName?: string;
    /** Workloads besides couchmail's pods that talk to CouchDB (`app.kubernetes.io/name`). */
    extraClients: string[];
    /** Who scrapes CouchDB's Prometheus listener; omitted: it stays closed. */
    metricsScrapers?: Peer[];
}

/**
 * CouchDB, single node, holding every domain, user, alias and sieve script. Its admin credentials are generated
 * here and live only in a Kubernetes Secret (and Pulumi state, as secrets); couchmail is the only client.
 */
export class CouchDb extends pulumi.ComponentResource {
    /** `http://couchdb.<ns>.svc:5984`. */
    readonly url: pulumi.Output<string>;
    /** Secret with keys `username` and `password` (the admin), for couchmail and the CLI. */
    readonly adminSecretName: pulumi.Output<string>;
    readonly adminPassword: pulumi.Output<string>;

    constructor(name: string, args: CouchDbArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:CouchDb", name, {}, opts);
        const unpinned = pinnedImage(args.image);
        if (unpinned) throw new Error(`CouchDb image ${JSON.stringify(args.image)}: ${unpinned}`);
        const { labels } = appLabels("couchdb", "datastore");
        const password = new random.RandomPassword(`${name}-admin-password`, { length: 32, special: false }, { parent: this });
        const cookie = new random.RandomPassword(`${name}-secret`, { length: 32, special: false }, { parent: this });

        const secret = new k8s.core.v1.Secret(
            `${name}-admin`,
            {
                metadata: { name: "couchdb-admin", namespace: args.namespace, labels },
                type: "Opaque",
                stringData: { username: "admin", password: password.result, secret: cookie.result },
            },
            { parent: this },
        );

        const scrapers = args.metricsScrapers;
        const files = renderCouchDbIni({ metricsPort: scrapers && SCRAPE_TARGETS.couchdb.port.number });
        const config = new k8s.core.v1.ConfigMap(
            `${name}-config`,
            {
                metadata: { name: "couchdb-config", namespace: args.namespace, labels },
                data: files,
            },
            { parent: this },
        );

        const fromSecret = (key: string) => ({ secretKeyRef: { name: secret.metadata.name, key } });
        const { service } = mailWorkload(
            name,
            {
                namespace: args.namespace,
                app: "couchdb",
                component: "datastore",
                listeners: [{ ...COUCHDB_LISTENERS.http, clients: [...COUCHDB_LISTENERS.http.clients, ...args.extraClients] }],
                egress: [],
                metrics: scrapers && {
                    ports: [{ container: "couchdb", name: SCRAPE_TARGETS.couchdb.port.name, port: SCRAPE_TARGETS.couchdb.port.number }],
                    scrapers,
                },
                claim: { name: "data", size: args.storageSize, storageClassName: args.storageClassName },
                pod: {
                    annotations: { [CONFIG_HASH]: contentHash(files) },
                    // OnRootMismatch: the kubelet walks the data volume only when its top is not ours yet, not on every start.
                    securityContext: { fsGroup: COUCHDB_UID, fsGroupChangePolicy: "OnRootMismatch" },
                    containers: [
                        {
                            name: "couchdb",
                            image: args.image,
                            env: [
                                { name: "COUCHDB_USER", valueFrom: fromSecret("username") },
                                { name: "COUCHDB_PASSWORD", valueFrom: fromSecret("password") },
                                { name: "COUCHDB_SECRET", valueFrom: fromSecret("secret") },
                                // Erlang sizes port tables from the open-files limit; a huge container limit costs RAM.
                                { name: "ERL_FLAGS", value: "+Q 8192" },
                            ],
                            resources: BUDGET.couchdb,
                            securityContext: {
                                runAsUser: COUCHDB_UID,
                                runAsGroup: COUCHDB_UID,
                                runAsNonRoot: true,
                                allowPrivilegeEscalation: false,
                                capabilities: { drop: ["ALL"] },
                            },
                            volumeMounts: [
                                { name: "data", mountPath: "/opt/couchdb/data" },
                                { name: "config", mountPath: `/opt/couchdb/etc/local.d/${COUCHDB_INI_NAME}`, subPath: COUCHDB_INI_NAME, readOnly: true },
                            ],
                            readinessProbe: { httpGet: { path: "/_up", port: "http" }, periodSeconds: 10, timeoutSeconds: 3 },
                            livenessProbe: { httpGet: { path: "/_up", port: "http" }, initialDelaySeconds: 30, periodSeconds: 20, timeoutSeconds: 5 },
                        },
                    ],
                    volumes: [{ name: "config", configMap: { name: config.metadata.name } }],
                },
            },
            { parent: this },
        );

        this.url = pulumi.interpolate`http://${service.metadata.name}.${args.namespace}.svc:${COUCHDB_LISTENERS.http.port}`;
        this.adminSecretName = secret.metadata.name;
        this.adminPassword = pulumi.secret(password.result);
        this.registerOutputs({ url: this.url, adminSecretName: this.adminSecretName });
    }
}
