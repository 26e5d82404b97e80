// The shapes of the Kubernetes objects the cluster model reads: only the fields admission, scheduling and the
// provider's await look at. Objects are what the API server would receive (secrets unwrapped).

export type Labels = Record<string, string>;

export interface ObjectMeta {
    name?: string;
    namespace?: string;
    labels?: Labels;
    annotations?: Record<string, string>;
}

export interface KubeObject {
    apiVersion: string;
    kind: string;
    metadata: ObjectMeta;
    // Objects are open-ended: each part of the model reads the fields it knows.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    spec?: any;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    [field: string]: any;
}

export interface SecurityContext {
    privileged?: boolean;
    allowPrivilegeEscalation?: boolean;
    runAsNonRoot?: boolean;
    runAsUser?: number;
    capabilities?: { add?: string[]; drop?: string[] };
    seccompProfile?: { type?: string };
    appArmorProfile?: { type?: string };
    seLinuxOptions?: { type?: string; user?: string; role?: string };
    procMount?: string;
    windowsOptions?: { hostProcess?: boolean };
}

export interface Probe {
    httpGet?: { host?: string };
    tcpSocket?: { host?: string };
}

export interface Container {
    name: string;
    ports?: { name?: string; containerPort: number; hostPort?: number; protocol?: string }[];
    resources?: { requests?: Record<string, string>; limits?: Record<string, string> };
    securityContext?: SecurityContext;
    /** "Always" on an init container makes it a native sidecar. */
    restartPolicy?: string;
    env?: {
        name: string;
        valueFrom?: { secretKeyRef?: { name: string; key: string; optional?: boolean }; configMapKeyRef?: { name: string; key: string; optional?: boolean } };
    }[];
    envFrom?: { secretRef?: { name: string; optional?: boolean }; configMapRef?: { name: string; optional?: boolean } }[];
    livenessProbe?: Probe;
    readinessProbe?: Probe;
    startupProbe?: Probe;
    lifecycle?: { postStart?: Probe; preStop?: Probe };
}

export interface Volume {
    name: string;
    secret?: { secretName: string; optional?: boolean };
    configMap?: { name: string; optional?: boolean };
    persistentVolumeClaim?: { claimName: string };
    projected?: { sources?: { secret?: { name: string; optional?: boolean }; configMap?: { name: string; optional?: boolean } }[] };
    // Any other volume source (hostPath, nfs, …) is kept by its field name.
    [source: string]: unknown;
}

export interface LabelSelector {
    matchLabels?: Labels;
    matchExpressions?: { key: string; operator: string; values?: string[] }[];
}

export interface PodAffinityTerm {
    labelSelector?: LabelSelector;
    topologyKey: string;
    namespaces?: string[];
}

export interface PodSpec {
    containers: Container[];
    initContainers?: Container[];
    ephemeralContainers?: Container[];
    volumes?: Volume[];
    hostNetwork?: boolean;
    hostPID?: boolean;
    hostIPC?: boolean;
    hostUsers?: boolean;
    serviceAccountName?: string;
    os?: { name?: string };
    securityContext?: SecurityContext & { sysctls?: { name: string }[] };
    nodeSelector?: Labels;
    tolerations?: { key?: string; operator?: string; value?: string; effect?: string }[];
    affinity?: {
        podAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: PodAffinityTerm[] };
        podAntiAffinity?: { requiredDuringSchedulingIgnoredDuringExecution?: PodAffinityTerm[] };
        nodeAffinity?: {
            requiredDuringSchedulingIgnoredDuringExecution?: {
                nodeSelectorTerms: { matchExpressions?: { key: string; operator: string; values?: string[] }[] }[];
            };
        };
    };
    overhead?: Record<string, string>;
}

export interface PodTemplate {
    metadata: ObjectMeta;
    spec: PodSpec;
}

/** The kinds whose objects carry pods, and where their pod (template) is. */
export const POD_TEMPLATE_PATHS: Record<string, string[]> = {
    Pod: [],
    Deployment: ["spec", "template"],
    StatefulSet: ["spec", "template"],
    DaemonSet: ["spec", "template"],
    ReplicaSet: ["spec", "template"],
    ReplicationController: ["spec", "template"],
    Job: ["spec", "template"],
    CronJob: ["spec", "jobTemplate", "spec", "template"],
};

/** The pod an object runs (a Pod itself, or a workload's template); undefined for objects without pods. */
export function podTemplateOf(obj: KubeObject): PodTemplate | undefined {
    const path = POD_TEMPLATE_PATHS[obj.kind];
    if (!path) return undefined;
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    const template = path.reduce<any>((node, key) => node?.[key], obj);
    if (!template?.spec) return undefined;
    return { metadata: template.metadata ?? {}, spec: template.spec };
}

/** Every container of a pod: init (incl. sidecars), regular and ephemeral. */
export function allContainers(spec: PodSpec): Container[] {
    return [...(spec.initContainers ?? []), ...spec.containers, ...(spec.ephemeralContainers ?? [])];
}

/** `namespace/name`, as kubectl and the provider name objects. */
export function qualifiedName(obj: KubeObject): string {
    return obj.metadata.namespace ? `${obj.metadata.namespace}/${obj.metadata.name}` : `${obj.metadata.name}`;
}

/** Does a label selector (matchLabels and matchExpressions, as the API defines them) select these labels? */
export function selects(selector: LabelSelector | undefined, labels: Labels | undefined): boolean {
    if (!selector) return false;
    const have = labels ?? {};
    for (const [k, v] of Object.entries(selector.matchLabels ?? {})) if (have[k] !== v) return false;
    for (const e of selector.matchExpressions ?? []) {
        const present = e.key in have;
        switch (e.operator) {
            case "In":
                if (!present || !(e.values ?? []).includes(have[e.key])) return false;
                break;
            case "NotIn":
                if (present && (e.values ?? []).includes(have[e.key])) return false;
                break;
            case "Exists":
                if (!present) return false;
                break;
            case "DoesNotExist":
                if (present) return false;
                break;
            default:
                throw new Error(`label selector operator ${e.operator} is not one of In, NotIn, Exists, DoesNotExist`);
        }
    }
    return true;
}
