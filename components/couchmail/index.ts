import * as fs from "fs";
import * as path from "path";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, BUDGET, MetricsPort, networkPolicy, restrictedContainer, TrafficRule } from "../kube";
import { SCRAPE_TARGETS } from "../monitoring/metrics";
import type { Listener } from "../render";
import { couchdbAccess, CouchmailProcessArgs, SyncPlan, syncJob } from "./sync";

/** Where couchmail listens inside a pod. HTTP and socketmap are loopback-only: they hand out password hashes. */
export const COUCHMAIL = {
    socketmapPort: 10101,
    httpPort: 10102,
    /** The password-change endpoint (TLS), for the webmail only. */
    passwordPort: 10103,
    passwordTlsDir: "/etc/mail/password-tls",
    /** Dovecot's dict proxy only speaks over a unix socket: a volume shared by the two containers. */
    socketDir: "/run/couchmail",
    dictSocket: "/run/couchmail/dict.sock",
    luaMountDir: "/etc/mail/couchmail",
    luaFile: "auth.lua",
    credentialsDir: "/etc/mail/couchdb",
    uid: 10101,
} as const;

/** The password change's listener in the pod that runs it: only the webmail may connect. */
export const COUCHMAIL_PASSWORD_LISTENER = {
    name: "password",
    port: COUCHMAIL.passwordPort,
    clients: ["webmail"],
    container: "couchmail",
} as const satisfies Listener;

/** The Lua passdb/userdb script that ships with couchmail, mounted into Dovecot. */
export const COUCHMAIL_LUA_SOURCE = path.join(__dirname, "..", "..", "couchmail", "lua", "couchmail-auth.lua");

export interface CouchmailArgs extends CouchmailProcessArgs {
    /** Mail volume root, where users' homes live (userdb `home`). */
    mailHome: string;
    /** Seconds without the CouchDB feed before couchmail reports its snapshot as stale. */
    staleAfterSeconds: number;
}

export interface SidecarOptions {
    /** Serve Postfix's socketmap on 127.0.0.1. */
    socketmap?: boolean;
    /** Serve Dovecot's Lua passdb/userdb (HTTP) on 127.0.0.1 and the sieve dict on the shared unix socket. */
    dovecot?: boolean;
    /** Group that may use the dict socket (Dovecot's). */
    socketGroup?: number;
    /** Serve /metrics on all of the pod's addresses, for the scraper (the pod's NetworkPolicy admits only it). */
    metrics?: boolean;
    /**
     * Serve the password change (for the webmail's password plugin) over TLS with the stack's certificate from this
     * Secret, on COUCHMAIL.passwordPort of all the pod's addresses (the pod's NetworkPolicy admits only the webmail).
     */
    passwordChange?: { tlsSecretName: pulumi.Input<string> };
}

/**
 * couchmail, which answers Postfix's and Dovecot's lookups from CouchDB. It runs as a native sidecar (an init
 * container that keeps running) in each pod that asks it, so lookups never leave the pod: Postfix's socketmap over
 * loopback, Dovecot's passdb over loopback HTTP and its sieve dict over a unix socket. Starting before the daemon
 * and being ready first means the daemon never sees it missing at start; until its first full load from CouchDB,
 * every lookup answers "temporary failure".
 */
export class Couchmail extends pulumi.ComponentResource {
    readonly luaConfigMapName: pulumi.Output<string>;
    private readonly args: CouchmailArgs;
    private readonly name: string;

    constructor(name: string, args: CouchmailArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:Couchmail", name, {}, opts);
        this.args = args;
        this.name = name;
        const lua = new k8s.core.v1.ConfigMap(
            `${name}-lua`,
            {
                metadata: { name: "couchmail-lua", namespace: args.namespace, labels: appLabels("couchmail", "lookup").labels },
                data: { [COUCHMAIL.luaFile]: fs.readFileSync(COUCHMAIL_LUA_SOURCE, "utf8") },
            },
            { parent: this },
        );
        this.luaConfigMapName = lua.metadata.name;
        this.registerOutputs({ luaConfigMapName: this.luaConfigMapName });
    }

    /**
     * The Job that makes the datastore match the config (sync.ts), and its NetworkPolicy: no ingress, egress to
     * CouchDB only (and DNS). It starts once the CouchDB URL resolves, i.e. once CouchDB's Service has a Ready pod.
     */
    syncJob(sync: SyncPlan, toCouchDb: TrafficRule): k8s.batch.v1.Job {
        const a = this.args;
        const opts = { parent: this };
        const { job, labels, selector } = syncJob(
            `${this.name}-sync`,
            {
                namespace: a.namespace,
                image: a.image,
                imagePullPolicy: a.imagePullPolicy,
                couchdbUrl: a.couchdbUrl,
                couchdbSecretName: a.couchdbSecretName,
                database: a.database,
                credentialsDir: COUCHMAIL.credentialsDir,
                uid: COUCHMAIL.uid,
                sync,
            },
            opts,
        );
        networkPolicy(`${this.name}-sync-network-policy`, { namespace: a.namespace, labels, selector, ingress: [], egress: [toCouchDb] }, opts);
        return job;
    }

    /** The sidecar container and the volumes it needs, for a pod that asks couchmail. */
    sidecar(opts: SidecarOptions): {
        container: k8s.types.input.core.v1.Container;
        volumes: k8s.types.input.core.v1.Volume[];
        metricsPorts: MetricsPort[];
        /** What the sidecar serves beyond the pod's loopback, for the pod's Service and NetworkPolicy. */
        listeners: Listener[];
    } {
        const a = this.args;
        const access = couchdbAccess({ ...a, credentialsDir: COUCHMAIL.credentialsDir });
        const env: k8s.types.input.core.v1.EnvVar[] = [
            ...access.env,
            { name: "COUCHMAIL_MAIL_HOME", value: a.mailHome },
            { name: "COUCHMAIL_STALE_AFTER", value: String(a.staleAfterSeconds) },
            // Health and metrics are served on the same loopback HTTP listener; probes run inside the pod.
            { name: "COUCHMAIL_HTTP_LISTEN", value: `127.0.0.1:${COUCHMAIL.httpPort}` },
            { name: "COUCHMAIL_SOCKETMAP_LISTEN", value: opts.socketmap ? `127.0.0.1:${COUCHMAIL.socketmapPort}` : "" },
            { name: "COUCHMAIL_DICT_LISTEN", value: opts.dovecot ? `unix:${COUCHMAIL.dictSocket}` : "" },
            { name: "COUCHMAIL_METRICS_LISTEN", value: opts.metrics ? `0.0.0.0:${SCRAPE_TARGETS.couchmail.port.number}` : "" },
            { name: "COUCHMAIL_PASSWORD_LISTEN", value: opts.passwordChange ? `0.0.0.0:${COUCHMAIL.passwordPort}` : "" },
            ...(opts.passwordChange
                ? [
                      { name: "COUCHMAIL_PASSWORD_TLS_CERT", value: `${COUCHMAIL.passwordTlsDir}/tls.crt` },
                      { name: "COUCHMAIL_PASSWORD_TLS_KEY", value: `${COUCHMAIL.passwordTlsDir}/tls.key` },
                  ]
                : []),
        ];
        if (opts.socketGroup !== undefined) env.push({ name: "COUCHMAIL_SOCKET_GROUP", value: String(opts.socketGroup) });
        const probe = (check: string, periodSeconds: number): k8s.types.input.core.v1.Probe => ({
            exec: { command: ["couchmail", "probe", check] },
            periodSeconds,
            // The probe starts a Node process (~0.5 s idle); on a busy node with a 10m CPU request it can take
            // seconds, and a liveness timeout there would restart a healthy sidecar and kill running CLI commands.
            timeoutSeconds: 10,
        });
        const container: k8s.types.input.core.v1.Container = {
            name: "couchmail",
            image: a.image,
            imagePullPolicy: a.imagePullPolicy,
            args: ["serve"],
            restartPolicy: "Always",
            env,
            resources: BUDGET.couchmail,
            securityContext: {
                ...restrictedContainer(COUCHMAIL.uid),
                // The dict socket's group is Dovecot's, so couchmail joins it to chown the socket.
                ...(opts.socketGroup !== undefined ? { runAsGroup: opts.socketGroup } : {}),
            },
            volumeMounts: [
                { name: "couchmail-run", mountPath: COUCHMAIL.socketDir },
                access.mount,
                // The root is read-only; the admin CLI (kubectl exec) writes a sieve script there to check it.
                { name: "couchmail-tmp", mountPath: "/tmp" },
                // A directory, not a subPath: couchmail re-reads a renewed certificate from it.
                ...(opts.passwordChange ? [{ name: "couchmail-password-tls", mountPath: COUCHMAIL.passwordTlsDir, readOnly: true }] : []),
            ],
            startupProbe: { ...probe("ready", 2), failureThreshold: 60 },
            readinessProbe: probe("ready", 10),
            livenessProbe: probe("live", 20),
        };
        const volumes: k8s.types.input.core.v1.Volume[] = [
            { name: "couchmail-run", emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
            { name: "couchmail-tmp", emptyDir: { medium: "Memory", sizeLimit: "1Mi" } },
            access.volume,
            // Readable by couchmail's user: without an fsGroup the files are root's, and only this container mounts them.
            ...(opts.passwordChange ? [{ name: "couchmail-password-tls", secret: { secretName: opts.passwordChange.tlsSecretName, defaultMode: 0o444 } }] : []),
        ];
        // Only /metrics there, for the scraper: the loopback HTTP listener also answers lookups (password hashes).
        const { port } = SCRAPE_TARGETS.couchmail;
        const metricsPorts: MetricsPort[] = opts.metrics ? [{ container: "couchmail", name: port.name, port: port.number }] : [];
        return { container, volumes, metricsPorts, listeners: opts.passwordChange ? [COUCHMAIL_PASSWORD_LISTENER] : [] };
    }
}
