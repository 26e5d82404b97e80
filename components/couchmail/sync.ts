// The Job that makes the datastore match the stack's config: `couchmail sync` (couchmail/src/admin.ts) installs or
// upgrades the design document, creates the configured domains that are missing, stores where every domain's
// role addresses go and gives the postmaster address a mailbox without a login. See README "First deploy".
import { createHash } from "crypto";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, BUDGET, jobPod, Labels, restrictedContainer } from "../kube";
import { domainOf } from "../config/checks";

/** `app.kubernetes.io/name` of the sync Job's pods: CouchDB lets them in, their own policy lets them reach only CouchDB. */
export const SYNC_APP = "couchmail-sync";

/** What the sync applies: the stack's `mailDomains` and `mailPostmaster`. */
export interface SyncPlan {
    domains: string[];
    postmaster: string;
}

/**
 * How a couchmail process reaches CouchDB: its URL and database in the environment, the admin's name and password as
 * files from the Secret (world-readable inside the pod: only couchmail's own user runs there).
 */
export function couchdbAccess(args: { couchdbUrl: pulumi.Input<string>; couchdbSecretName: pulumi.Input<string>; database: string; credentialsDir: string }) {
    const env: k8s.types.input.core.v1.EnvVar[] = [
        { name: "COUCHDB_URL", value: args.couchdbUrl },
        { name: "COUCHDB_USER_FILE", value: `${args.credentialsDir}/username` },
        { name: "COUCHDB_PASSWORD_FILE", value: `${args.credentialsDir}/password` },
        { name: "COUCHDB_DATABASE", value: args.database },
    ];
    const volume: k8s.types.input.core.v1.Volume = {
        name: "couchdb-credentials",
        secret: {
            secretName: args.couchdbSecretName,
            defaultMode: 0o444,
            items: [
                { key: "username", path: "username" },
                { key: "password", path: "password" },
            ],
        },
    };
    return { env, volume, mount: { name: volume.name, mountPath: args.credentialsDir, readOnly: true } };
}

/** `couchmail sync`'s arguments. Never `--delete-unlisted`: a domain dropped from the config is reported, not deleted. */
export function syncArgs(sync: SyncPlan): string[] {
    return ["sync", "--domains", sync.domains.join(","), "--postmaster", sync.postmaster];
}

/**
 * The Job's name carries a hash of what it applies — the domains, the postmaster, the database and the image (whose
 * design document it installs) — so a change to any of them gives a new name, which Pulumi can only create by
 * replacing the Job: the new one runs. An unchanged config keeps the finished Job and runs nothing.
 */
export function syncJobName(sync: SyncPlan, image: string, database: string): string {
    const hash = createHash("sha256")
        .update(JSON.stringify([sync.domains, sync.postmaster, database, image]))
        .digest("hex");
    return `${SYNC_APP}-${hash.slice(0, 10)}`;
}

/**
 * The `addFirstUser` output: the mailbox to give a password first, through the couchmail CLI in Dovecot's pod. On a
 * fresh stack the sync has made the postmaster's mailbox (without a login) when it is one of ours, and `user add`
 * gives it its password; with a postmaster on another server, the first mailbox is a new one of the first domain.
 */
export function firstUserCommand(namespace: string, sync: SyncPlan): string {
    const local = sync.domains.includes(domainOf(sync.postmaster));
    const address = local ? sync.postmaster : `me@${sync.domains[0]}`;
    return `kubectl -n ${namespace} exec -it statefulset/dovecot -c couchmail -- couchmail user add ${address}`;
}

/** What every couchmail process (the sidecars, the sync Job) is given: its image and how to reach the datastore. */
export interface CouchmailProcessArgs {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    couchdbUrl: pulumi.Input<string>;
    /** Secret with keys `username` and `password` (CouchDB's admin: the sync may create the database). */
    couchdbSecretName: pulumi.Input<string>;
    database: string;
}

export interface SyncJobArgs extends CouchmailProcessArgs {
    credentialsDir: string;
    uid: number;
    sync: SyncPlan;
}

/**
 * The sync Job. The deploy awaits it (pulumi-kubernetes waits for a Job's Complete condition and fails at once on
 * Failed), so `pulumi up` ends with the domains in place and the `addFirstUser` command works at once.
 *   - backoffLimit 4, restartPolicy Never: a CouchDB that just became Ready but answers slowly gets four more tries
 *     (the Job controller's back-off: 10, 20, 40, 80 s) before the deploy fails with BackoffLimitExceeded;
 *   - `pulumi.com/replaceUnready`: a Job that failed is replaced, so run again, by the next `pulumi up` instead of
 *     being awaited once more (pulumi-kubernetes #856; the annotation came with #1575);
 *   - no `ttlSecondsAfterFinished`: the TTL controller would delete the finished Job behind Pulumi's back; each
 *     `pulumi refresh` would then drop it from the state and the next `up` create it again — a run per refresh
 *     instead of per change. A finished Job holds no resources, and `kubectl logs job/<name>` keeps its report.
 */
export function syncJob(name: string, args: SyncJobArgs, opts: pulumi.CustomResourceOptions): { job: k8s.batch.v1.Job; labels: Labels; selector: Labels } {
    const { labels, selector } = appLabels(SYNC_APP, "datastore-sync");
    const access = couchdbAccess(args);
    const job = new k8s.batch.v1.Job(
        name,
        {
            metadata: {
                name: syncJobName(args.sync, args.image, args.database),
                namespace: args.namespace,
                labels,
                annotations: { "pulumi.com/replaceUnready": "true" },
            },
            spec: {
                backoffLimit: 4,
                template: {
                    metadata: { labels },
                    spec: jobPod({
                        containers: [
                            {
                                name: "sync",
                                image: args.image,
                                imagePullPolicy: args.imagePullPolicy,
                                args: syncArgs(args.sync),
                                env: access.env,
                                resources: BUDGET.couchmail,
                                securityContext: restrictedContainer(args.uid),
                                volumeMounts: [access.mount],
                            },
                        ],
                        volumes: [access.volume],
                    }),
                },
            },
        },
        opts,
    );
    return { job, labels, selector };
}
