// Conventions every mail workload follows: labels, images, security contexts, resource budgets, config mounts.
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { ImagesConfig } from "./config/types";
import { contentHash, Listener, RenderedFiles } from "./render";

export type Labels = Record<string, string>;

/** What every daemon component takes: where it runs, its image, its rendered settings and the user's overrides. */
export interface DaemonArgs<Settings> {
    namespace: pulumi.Input<string>;
    image: string;
    imagePullPolicy: string;
    settings: Settings;
    /** A ConfigMap the user manages whose files extend the rendered ones. */
    overrideConfigMap?: string;
}

/** Selects every pod of the mail stack (all carry these labels; see appLabels). */
export const MAIL_POD_SELECTOR: Labels = { "app.kubernetes.io/instance": "mail", "app.kubernetes.io/part-of": "mail" };

/** `app.kubernetes.io/*` labels; the selector uses the stable subset. */
export function appLabels(app: string, component: string): { labels: Labels; selector: Labels } {
    const selector = { "app.kubernetes.io/name": app, "app.kubernetes.io/instance": "mail" };
    return {
        selector,
        labels: { ...selector, "app.kubernetes.io/component": component, "app.kubernetes.io/part-of": "mail", "app.kubernetes.io/managed-by": "pulumi" },
    };
}

/** `<registry>/<service>:<tag>` for the images built from images/<service>, or `<registry>/<service>@<digest>` when pinned. */
export function ourImage(images: ImagesConfig, service: string): string {
    const digest = images.digests[service];
    return digest ? `${images.registry}/${service}@${digest}` : `${images.registry}/${service}:${images.tag}`;
}

/**
 * Memory and CPU per container, sized so the whole stack fits a small node (README: "Cost and node sizes").
 * Requests are what the scheduler reserves; limits what a container may burst to before it is OOM-killed.
 */
// Requests near each pod's measured rest, limits above its measured peak: PSS under `npm run bench:mail` with spam
// scanning on (tests/bench/measured.ts; tests/bench/nodes.test.ts checks the sizing and the 2 GB nodes). Postfix and
// Dovecot pods also carry the couchmail sidecar: their pod figures are the sum.
export const BUDGET = {
    // Postfix pod: ~65 MiB at rest, ~167 MiB at peak — smtpds plus up to SPF_PROCESSES policyd-spf at ~22 MiB each.
    postfix: { requests: { cpu: "20m", memory: "48Mi" }, limits: { memory: "256Mi" } },
    // Dovecot pod: ~71 MiB at rest, ~181 MiB at peak (LMTP, spam-scan and IMAP processes).
    dovecot: { requests: { cpu: "20m", memory: "40Mi" }, limits: { memory: "256Mi" } },
    // The server (~60 MiB RSS) plus one admin command exec'd beside it (~59 MiB RSS for the bundled CLI, which carries
    // the doctor): 128Mi OOM-killed the sidecar during `couchmail user add` on the e2e stack.
    couchmail: { requests: { cpu: "10m", memory: "40Mi" }, limits: { memory: "192Mi" } },
    // Real CouchDB ~54 MiB at rest (the loopback stack's substitute ~94, ~108 at peak); Erlang may grow under load.
    couchdb: { requests: { cpu: "50m", memory: "96Mi" }, limits: { memory: "384Mi" } },
    opendkim: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "64Mi" } },
    // ~120 MiB fresh (master + 1 idle child), ~177 MiB at rest once its children scanned large mail (they keep that
    // memory until recycled), ~237 MiB at peak with 2 busy children scanning up to SPAM_SCAN_MAX_BYTES.
    spamd: { requests: { cpu: "50m", memory: "180Mi" }, limits: { memory: "384Mi" } },
    // The nightly training job: bash and spamc.
    spamTrain: { requests: { cpu: "10m", memory: "16Mi" }, limits: { memory: "64Mi" } },
    postgrey: { requests: { cpu: "10m", memory: "24Mi" }, limits: { memory: "64Mi" } },
} as const;

/** For containers that never need root: the restricted Pod Security profile. */
export function restrictedContainer(uid: number): k8s.types.input.core.v1.SecurityContext {
    return {
        runAsNonRoot: true,
        runAsUser: uid,
        runAsGroup: uid,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"] },
        seccompProfile: { type: "RuntimeDefault" },
    };
}

/**
 * What Postfix's and Dovecot's masters use: they start as root, bind the mail ports, chroot their services and run
 * each as its own unprivileged user, killing them on reload.
 */
export const MAIL_MASTER_CAPABILITIES = ["CHOWN", "DAC_OVERRIDE", "FOWNER", "SETUID", "SETGID", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL"];

/**
 * For daemons whose own design starts as root and drops privileges per process (Postfix's master, Dovecot's
 * master): only the capabilities that design uses, no escalation through setuid binaries beyond that.
 */
export function rootDroppingContainer(capabilities: string[]): k8s.types.input.core.v1.SecurityContext {
    return {
        runAsUser: 0,
        allowPrivilegeEscalation: false,
        readOnlyRootFilesystem: true,
        capabilities: { drop: ["ALL"], add: capabilities },
        seccompProfile: { type: "RuntimeDefault" },
    };
}

/**
 * The ConfigMap of a service's rendered files, under a stable name so a running pod sees updates through its
 * mount (Kubernetes swaps the `..data` symlink) and its entrypoint validates and hot-reloads them. `hash`
 * goes into the pod template of daemons that cannot hot-reload, so a changed config rolls those pods instead.
 */
export function renderedConfigMap(
    name: string,
    args: { app: string; namespace: pulumi.Input<string>; labels: Labels; files: RenderedFiles },
    opts: pulumi.CustomResourceOptions,
): { configMap: k8s.core.v1.ConfigMap; hash: string } {
    const hash = contentHash(args.files);
    const configMap = new k8s.core.v1.ConfigMap(
        `${name}-config`,
        {
            metadata: { name: `${args.app}-config`, namespace: args.namespace, labels: args.labels, annotations: { [CONFIG_HASH]: hash } },
            data: args.files,
        },
        opts,
    );
    return { configMap, hash };
}

/** Pod-template annotation carrying config hashes: a change rolls the pods. */
export const CONFIG_HASH = "mail.stack/config-hash";

/** The defaults ConfigMap and the optional user-managed override ConfigMap, mounted where the entrypoints look. */
export function configVolumes(service: string, defaults: k8s.core.v1.ConfigMap, overrideConfigMap?: string) {
    return {
        volumes: [
            { name: "config-defaults", configMap: { name: defaults.metadata.name } },
            { name: "config-overrides", configMap: { name: overrideConfigMap ?? `${service}-overrides`, optional: true } },
        ],
        mounts: [
            { name: "config-defaults", mountPath: `/etc/mail/defaults/${service}`, readOnly: true },
            { name: "config-overrides", mountPath: `/etc/mail/overrides/${service}`, readOnly: true },
        ],
    };
}

/**
 * A daemon's rendered config, as its pod sees it: the ConfigMap of the rendered files (see renderedConfigMap) and the
 * optional user-managed override ConfigMap, with their volumes and mounts for the daemon's container.
 */
export function daemonConfig(
    name: string,
    args: { app: string; component: string; files: RenderedFiles },
    daemon: Pick<DaemonArgs<unknown>, "namespace" | "overrideConfigMap">,
    opts: pulumi.CustomResourceOptions,
) {
    const { labels } = appLabels(args.app, args.component);
    const { configMap, hash } = renderedConfigMap(name, { app: args.app, namespace: daemon.namespace, labels, files: args.files }, opts);
    return { configMap, hash, ...configVolumes(args.app, configMap, daemon.overrideConfigMap) };
}

/**
 * Schedules a pod onto the node of the pods with these labels: to mount their ReadWriteOnce volume (a volume is
 * attached to one node at a time), or to be reached through a load balancer that only sends to local pods.
 */
export function onNodeOf(selector: Labels): k8s.types.input.core.v1.Affinity {
    return {
        podAffinity: {
            requiredDuringSchedulingIgnoredDuringExecution: [{ labelSelector: { matchLabels: selector }, topologyKey: "kubernetes.io/hostname" }],
        },
    };
}

/**
 * A Job's pod: runs to completion once (the Job controller retries by new pods), with the secure defaults of the
 * daemons' pods — no service account token, no service-link variables, seccomp RuntimeDefault.
 */
export function jobPod(spec: Omit<k8s.types.input.core.v1.PodSpec, "restartPolicy">): k8s.types.input.core.v1.PodSpec {
    const { securityContext, ...rest } = spec;
    return {
        restartPolicy: "Never",
        automountServiceAccountToken: false,
        enableServiceLinks: false,
        ...rest,
        securityContext: { ...(securityContext as object), seccompProfile: { type: "RuntimeDefault" } },
    };
}

/** A CronJob's spec that never runs over its previous run and keeps the last few runs for `kubectl logs`. */
export function scheduledJob(schedule: pulumi.Input<string>, jobTemplate: k8s.types.input.batch.v1.JobTemplateSpec): k8s.types.input.batch.v1.CronJobSpec {
    return { schedule, concurrencyPolicy: "Forbid", successfulJobsHistoryLimit: 3, failedJobsHistoryLimit: 3, jobTemplate };
}

/** A TCP probe on a port, for daemons with no HTTP endpoint. */
export function tcpProbe(port: number, initialDelaySeconds: number): k8s.types.input.core.v1.Probe {
    return { tcpSocket: { port }, initialDelaySeconds, periodSeconds: 10, timeoutSeconds: 3, failureThreshold: 3 };
}

/** A probe that runs a command inside the container. */
export function execProbe(command: string[], periodSeconds: number): k8s.types.input.core.v1.Probe {
    return { exec: { command }, periodSeconds, timeoutSeconds: 5, failureThreshold: 3 };
}

/**
 * Who may be on the other end of a connection: pods of our workloads in this namespace (by
 * `app.kubernetes.io/name`), pods of another namespace, or networks outside the cluster.
 */
export type Peer = { apps: string[] } | { namespace: string; podLabels?: Labels } | { cidrs: string[] };

export interface TrafficRule {
    ports: number[];
    /** Omitted: any source (ingress) or destination (egress). */
    peers?: Peer[];
}

/** Every pod resolves names: DNS to wherever the cluster's resolver is (kube-dns, or a node-local cache). */
export const DNS_EGRESS: k8s.types.input.networking.v1.NetworkPolicyEgressRule = {
    ports: [
        { port: 53, protocol: "UDP" },
        { port: 53, protocol: "TCP" },
    ],
};

function networkPeer(peer: Peer): k8s.types.input.networking.v1.NetworkPolicyPeer[] {
    if ("apps" in peer) return [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: peer.apps }] } }];
    if ("namespace" in peer) {
        return [{ namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": peer.namespace } }, podSelector: { matchLabels: peer.podLabels ?? {} } }];
    }
    return peer.cidrs.map((cidr) => ({ ipBlock: { cidr } }));
}

function policyRule(rule: TrafficRule, direction: "from" | "to") {
    return {
        ports: rule.ports.map((port) => ({ port, protocol: "TCP" })),
        ...(rule.peers ? { [direction]: rule.peers.flatMap(networkPeer) } : {}),
    };
}

/**
 * The only traffic a workload's pods may take in and send out (both directions are deny-by-default once a policy
 * selects a pod). Internal listeners (CouchDB, the milter, Dovecot's LMTP and SASL) take no credentials, so only
 * the pods that use them may connect; egress is limited to DNS and what each daemon talks to.
 */
export function networkPolicy(
    name: string,
    args: { namespace: pulumi.Input<string>; labels: Labels; selector: Labels; ingress: TrafficRule[]; egress: TrafficRule[] },
    opts: pulumi.CustomResourceOptions,
): k8s.networking.v1.NetworkPolicy {
    const app = args.selector["app.kubernetes.io/name"];
    return new k8s.networking.v1.NetworkPolicy(
        name,
        {
            metadata: { name: app, namespace: args.namespace, labels: args.labels },
            spec: {
                podSelector: { matchLabels: args.selector },
                policyTypes: ["Ingress", "Egress"],
                ingress: args.ingress.map((r) => policyRule(r, "from")),
                egress: [DNS_EGRESS, ...args.egress.map((r) => policyRule(r, "to"))],
            },
        },
        opts,
    );
}

/**
 * For a StatefulSet with volume claim templates. The templates are immutable in Kubernetes, so a changed size or
 * storage class would make Pulumi replace the StatefulSet (pods deleted, claims kept, nothing resized). Ignoring them
 * after creation makes that impossible to trigger by accident; `resizeClaim` resizes the live claim instead.
 */
export const KEEP_CLAIM_TEMPLATES: Pick<pulumi.CustomResourceOptions, "ignoreChanges"> = { ignoreChanges: ["spec.volumeClaimTemplates"] };

/**
 * The size of the claim a one-replica StatefulSet made from its template (`<claim>-<statefulset>-0`), applied with
 * server-side apply after the StatefulSet is ready, so a bigger size in config expands the volume (the storage class
 * must allow expansion; DOKS' and GKE's default classes do). Kubernetes refuses to shrink a claim.
 */
export function resizeClaim(
    name: string,
    args: { namespace: pulumi.Input<string>; labels: Labels; statefulSet: k8s.apps.v1.StatefulSet; statefulSetName: string; claim: string; size: string },
    opts: pulumi.CustomResourceOptions,
): k8s.core.v1.PersistentVolumeClaimPatch {
    return new k8s.core.v1.PersistentVolumeClaimPatch(
        name,
        {
            metadata: {
                name: `${args.claim}-${args.statefulSetName}-0`,
                namespace: args.namespace,
                labels: args.labels,
                // The StatefulSet controller created the claim and owns its fields; this patch takes over only the size.
                annotations: { "pulumi.com/patchForce": "true" },
            },
            spec: { resources: { requests: { storage: args.size } } },
        },
        { ...opts, dependsOn: [args.statefulSet] },
    );
}

/** A StatefulSet's claim for its one persistent volume (the pod's data survives restarts and rescheduling). */
export function persistentClaim(name: string, labels: Labels, size: string, storageClassName?: string): k8s.types.input.core.v1.PersistentVolumeClaim {
    return { metadata: { name, labels }, spec: { accessModes: ["ReadWriteOnce"], storageClassName, resources: { requests: { storage: size } } } };
}

export interface WorkloadArgs {
    namespace: pulumi.Input<string>;
    /** `app.kubernetes.io/name` (also the name of the Service, the workload and its NetworkPolicy) and component. */
    app: string;
    component: string;
    /** A StatefulSet (the default) keeps its one claim across restarts; a Deployment is for stateless daemons. */
    kind?: "StatefulSet" | "Deployment";
    /** What the first container serves: container ports, Service ports and who may connect all come from here. */
    listeners: readonly Listener[];
    /** Serve the listeners' PROXY twins, reachable only from these peers (the edge); omitted: no twins. */
    proxySources?: Peer[];
    /** Bind the public listeners on the node too (the hostport edge). */
    hostPorts?: boolean;
    /** What the pods talk to besides DNS. */
    egress: TrafficRule[];
    /** The pod; `securityContext` is merged over the defaults (seccomp RuntimeDefault). */
    pod: Omit<k8s.types.input.core.v1.PodSpec, "containers" | "securityContext"> & {
        containers: k8s.types.input.core.v1.Container[];
        securityContext?: k8s.types.input.core.v1.PodSecurityContext;
        annotations?: Record<string, string>;
    };
    /** A StatefulSet's one persistent volume, mounted by the containers under this name; resized in place. */
    claim?: { name: string; size: string; storageClassName?: string };
    /** Prometheus endpoints the pod's containers serve, and who may scrape them. */
    metrics?: WorkloadMetrics;
    /**
     * The unprivileged user the first container runs as (the restricted profile), owning the pod's volumes; the
     * kubelet walks a volume only when its top is not that user's group yet (OnRootMismatch), not on every start.
     */
    user?: number;
}

/** A Prometheus endpoint one of a pod's containers (or native sidecars) serves, on a named port. */
export interface MetricsPort {
    container: string;
    /** The container port's name (at most 15 characters, unique in the pod), which the metrics Services target. */
    name: string;
    port: number;
}

export interface WorkloadMetrics {
    ports: MetricsPort[];
    /** The scraper's pods: the only peers the metrics ports admit. */
    scrapers: Peer[];
}

/** Adds each port to the container that serves it (unless it declares it already). */
function withPorts<C extends k8s.types.input.core.v1.Container>(containers: C[], served: MetricsPort[]): C[] {
    return containers.map((c) => {
        const declared = (c.ports ?? []) as k8s.types.input.core.v1.ContainerPort[];
        const ports = served.filter((p) => p.container === c.name && !declared.some((d) => d.name === p.name));
        if (!ports.length) return c;
        return { ...c, ports: [...declared, ...ports.map((p) => ({ name: p.name, containerPort: p.port, protocol: "TCP" }))] };
    });
}

/** The ports a workload serves: each listener, and its PROXY twin when the edge sends PROXY headers. */
function servedPorts(args: WorkloadArgs): { name: string; port: number; container?: string; hostPort?: number; peers?: Peer[] }[] {
    return args.listeners.flatMap((l) => [
        {
            name: l.name,
            port: l.port,
            container: l.container,
            hostPort: args.hostPorts && l.public !== undefined ? l.public : undefined,
            peers: l.clients ? [{ apps: [...l.clients] }] : undefined,
        },
        ...(l.proxy && args.proxySources ? [{ name: l.proxy.name, port: l.proxy.port, peers: args.proxySources }] : []),
    ]);
}

/** Ingress rules: ports with the same allowed peers share one rule. */
function ingressRules(ports: { port: number; peers?: Peer[] }[]): TrafficRule[] {
    const rules = new Map<string, TrafficRule>();
    for (const p of ports) {
        const key = JSON.stringify(p.peers ?? null);
        const rule = rules.get(key) ?? { ports: [], ...(p.peers ? { peers: p.peers } : {}) };
        rule.ports.push(p.port);
        rules.set(key, rule);
    }
    return [...rules.values()];
}

/**
 * One mail workload: its Service, its NetworkPolicy and a one-replica StatefulSet (or Deployment) with the secure pod
 * defaults every daemon shares — no service account token, no service-link variables, seccomp RuntimeDefault — and,
 * for a StatefulSet, its claim kept across config changes and resized in place.
 */
export function mailWorkload(
    name: string,
    args: WorkloadArgs,
    opts: pulumi.CustomResourceOptions,
): {
    service: k8s.core.v1.Service;
    workload: k8s.apps.v1.StatefulSet | k8s.apps.v1.Deployment;
    labels: Labels;
    selector: Labels;
} {
    const { labels, selector } = appLabels(args.app, args.component);
    const ports = servedPorts(args);
    const service = new k8s.core.v1.Service(
        `${name}-service`,
        {
            metadata: { name: args.app, namespace: args.namespace, labels },
            spec: { selector, ports: ports.map((p) => ({ name: p.name, port: p.port, targetPort: p.name, protocol: "TCP" })) },
        },
        opts,
    );
    const metrics = args.metrics;
    const metricsIngress: TrafficRule[] = metrics ? [{ ports: metrics.ports.map((p) => p.port), peers: metrics.scrapers }] : [];
    networkPolicy(
        `${name}-network-policy`,
        { namespace: args.namespace, labels, selector, ingress: [...ingressRules(ports), ...metricsIngress], egress: args.egress },
        opts,
    );

    const { containers, initContainers, securityContext, annotations, ...pod } = args.pod;
    const mainName = containers[0].name;
    // Ports other containers than the first serve (sidecars' listeners, metrics) go on those containers.
    const elsewhere: MetricsPort[] = [
        ...ports.flatMap((p) => (p.container && p.container !== mainName ? [{ container: p.container, name: p.name, port: p.port }] : [])),
        ...(metrics?.ports ?? []),
    ];
    const [main, ...sidecars] = withPorts(containers, elsewhere);
    const served = [main, ...sidecars, ...((initContainers as k8s.types.input.core.v1.Container[] | undefined) ?? [])].map((c) => c.name);
    const unserved = elsewhere.filter((p) => !served.includes(p.container));
    if (unserved.length) throw new Error(`${args.app}: no container ${unserved.map((p) => p.container).join(", ")} serves port ${unserved[0].name}`);
    const user = args.user;
    const template: k8s.types.input.core.v1.PodTemplateSpec = {
        metadata: { labels, ...(annotations ? { annotations } : {}) },
        spec: {
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            ...pod,
            ...(initContainers ? { initContainers: withPorts(initContainers as k8s.types.input.core.v1.Container[], elsewhere) } : {}),
            securityContext: {
                ...securityContext,
                ...(user !== undefined ? { fsGroup: user, fsGroupChangePolicy: "OnRootMismatch" } : {}),
                seccompProfile: { type: "RuntimeDefault" },
            },
            containers: [
                {
                    ...main,
                    ...(user !== undefined ? { securityContext: restrictedContainer(user) } : {}),
                    ports: [
                        ...ports
                            .filter((p) => !p.container || p.container === mainName)
                            .map((p) => ({ name: p.name, containerPort: p.port, hostPort: p.hostPort, protocol: "TCP" })),
                        ...((main.ports as k8s.types.input.core.v1.ContainerPort[] | undefined) ?? []),
                    ],
                },
                ...sidecars,
            ],
        },
    };
    const metadata = { name: args.app, namespace: args.namespace, labels };
    if (args.kind === "Deployment") {
        if (args.claim) throw new Error(`${args.app}: a Deployment has no volume claim template; use a StatefulSet`);
        const workload = new k8s.apps.v1.Deployment(
            `${name}-deployment`,
            { metadata, spec: { replicas: 1, selector: { matchLabels: selector }, template } },
            opts,
        );
        return { service, workload, labels, selector };
    }
    const claim = args.claim;
    const workload = new k8s.apps.v1.StatefulSet(
        `${name}-statefulset`,
        {
            metadata,
            spec: {
                // A plain name, not the Service's output: that output resolves only once the Service has ready endpoints,
                // which need this StatefulSet's pods — the engine would wait forever.
                serviceName: args.app,
                replicas: 1,
                selector: { matchLabels: selector },
                template,
                volumeClaimTemplates: claim ? [persistentClaim(claim.name, labels, claim.size, claim.storageClassName)] : [],
            },
        },
        { ...opts, ...KEEP_CLAIM_TEMPLATES },
    );
    if (claim) {
        resizeClaim(
            `${name}-${claim.name}-size`,
            { namespace: args.namespace, labels, statefulSet: workload, statefulSetName: args.app, claim: claim.name, size: claim.size },
            opts,
        );
    }
    return { service, workload, labels, selector };
}
