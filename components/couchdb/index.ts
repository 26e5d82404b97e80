import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import * as random from "@pulumi/random";
import { appLabels, BUDGET, CONFIG_HASH, networkPolicy, KEEP_CLAIM_TEMPLATES, persistentClaim, resizeClaim } from "../kube";
import { pinnedImage } from "../config/checks";
import { contentHash } from "../render";
import { COUCHDB_INI_NAME, renderCouchDbIni } from "./config";

export const COUCHDB_PORT = 5984;
export const COUCHDB_UID = 5984; // the official image's couchdb user

export interface CouchDbArgs {
    namespace: pulumi.Input<string>;
    /** The official image, pinned by version. */
    image: string;
    storageSize: string;
    storageClassName?: string;
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
        const { labels, selector } = appLabels("couchdb", "datastore");
        const password = new random.RandomPassword(`${name}-admin-password`, { length: 32, special: false }, { parent: this });
        const cookie = new random.RandomPassword(`${name}-secret`, { length: 32, special: false }, { parent: this });

        const secret = new k8s.core.v1.Secret(`${name}-admin`, {
            metadata: { name: "couchdb-admin", namespace: args.namespace, labels },
            type: "Opaque",
            stringData: { username: "admin", password: password.result, secret: cookie.result },
        }, { parent: this });

        const files = renderCouchDbIni();
        const config = new k8s.core.v1.ConfigMap(`${name}-config`, {
            metadata: { name: "couchdb-config", namespace: args.namespace, labels },
            data: files,
        }, { parent: this });

        const service = new k8s.core.v1.Service(`${name}-service`, {
            metadata: { name: "couchdb", namespace: args.namespace, labels },
            spec: { selector, ports: [{ name: "http", port: COUCHDB_PORT, targetPort: "http" }] },
        }, { parent: this });

        // couchmail, the only client, runs beside Postfix and Dovecot.
        networkPolicy("couchdb", {
            namespace: args.namespace, labels, selector, ingress: [{ ports: [COUCHDB_PORT], peers: [{ apps: ["postfix", "dovecot"] }] }], egress: [],
        }, { parent: this });

        const fromSecret = (key: string) => ({ secretKeyRef: { name: secret.metadata.name, key } });
        const statefulSet = new k8s.apps.v1.StatefulSet(`${name}-statefulset`, {
            metadata: { name: "couchdb", namespace: args.namespace, labels },
            spec: {
                // A plain name, not the Service's output: that output resolves only once the Service has ready
                // endpoints, which need this StatefulSet's pods — the engine would wait forever.
                serviceName: "couchdb",
                replicas: 1,
                selector: { matchLabels: selector },
                template: {
                    metadata: { labels, annotations: { [CONFIG_HASH]: contentHash(files) } },
                    spec: {
                        automountServiceAccountToken: false,
                        // OnRootMismatch: the kubelet walks the data volume only when its top is not ours yet, not on every start.
                        securityContext: { fsGroup: COUCHDB_UID, fsGroupChangePolicy: "OnRootMismatch", seccompProfile: { type: "RuntimeDefault" } },
                        containers: [{
                            name: "couchdb",
                            image: args.image,
                            ports: [{ name: "http", containerPort: COUCHDB_PORT }],
                            env: [
                                { name: "COUCHDB_USER", valueFrom: fromSecret("username") },
                                { name: "COUCHDB_PASSWORD", valueFrom: fromSecret("password") },
                                { name: "COUCHDB_SECRET", valueFrom: fromSecret("secret") },
                                // Erlang sizes port tables from the open-files limit; a huge container limit costs RAM.
                                { name: "ERL_FLAGS", value: "+Q 8192" },
                            ],
                            resources: BUDGET.couchdb,
                            securityContext: {
                                runAsUser: COUCHDB_UID, runAsGroup: COUCHDB_UID, runAsNonRoot: true,
                                allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] },
                            },
                            volumeMounts: [
                                { name: "data", mountPath: "/opt/couchdb/data" },
                                { name: "config", mountPath: `/opt/couchdb/etc/local.d/${COUCHDB_INI_NAME}`, subPath: COUCHDB_INI_NAME, readOnly: true },
                            ],
                            readinessProbe: { httpGet: { path: "/_up", port: "http" }, periodSeconds: 10, timeoutSeconds: 3 },
                            livenessProbe: { httpGet: { path: "/_up", port: "http" }, initialDelaySeconds: 30, periodSeconds: 20, timeoutSeconds: 5 },
                        }],
                        volumes: [{ name: "config", configMap: { name: config.metadata.name } }],
                    },
                },
                volumeClaimTemplates: [persistentClaim("data", labels, args.storageSize, args.storageClassName)],
            },
        }, { parent: this, ...KEEP_CLAIM_TEMPLATES });
        resizeClaim(`${name}-data-size`, { namespace: args.namespace, labels, statefulSet, statefulSetName: "couchdb", claim: "data", size: args.storageSize }, { parent: this });

        this.url = pulumi.interpolate`http://${service.metadata.name}.${args.namespace}.svc:${COUCHDB_PORT}`;
        this.adminSecretName = secret.metadata.name;
        this.adminPassword = pulumi.secret(password.result);
        this.registerOutputs({ url: this.url, adminSecretName: this.adminSecretName });
    }
}
