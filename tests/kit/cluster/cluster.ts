// The cluster side of a deploy: the API server (namespaces, CRDs, names, Pod Security admission, service
// accounts), the workload controllers (a StatefulSet's claims and pods, a Deployment's, a Job's), the scheduler
// and the kubelet's volume setup — enough to say whether each object the provider awaits becomes ready, and why
// not. No container ever runs: a pod that is admitted, scheduled and has every volume it mounts is taken as ready.
import { namespacePolicy, admitPods } from "./psa";
import { allContainers, KubeObject, PodSpec, podTemplateOf, qualifiedName, selects } from "./objects";
import type { ClusterProfile } from "./profiles";
import { ClaimState, PlacedPod, schedule } from "./scheduler";

/** Kinds that live outside namespaces (the rest need their namespace to exist). */
const CLUSTER_SCOPED = new Set([
    "Namespace",
    "Node",
    "PersistentVolume",
    "StorageClass",
    "ClusterRole",
    "ClusterRoleBinding",
    "CustomResourceDefinition",
    "ValidatingWebhookConfiguration",
    "MutatingWebhookConfiguration",
    "IngressClass",
    "PriorityClass",
    "ClusterIssuer",
]);

/** Kinds every API server serves; anything else needs a CustomResourceDefinition. */
const BUILT_IN_GROUPS = new Set([
    "",
    "apps",
    "batch",
    "networking.k8s.io",
    "rbac.authorization.k8s.io",
    "policy",
    "apiextensions.k8s.io",
    "admissionregistration.k8s.io",
    "storage.k8s.io",
    "scheduling.k8s.io",
    "autoscaling",
    "coordination.k8s.io",
    "discovery.k8s.io",
]);

/** API resource names, as the API server uses them in messages (`services "x" not found`). */
function plural(kind: string): string {
    const k = kind.toLowerCase();
    return k.endsWith("s") ? `${k}es` : k.endsWith("y") ? `${k.slice(0, -1)}ies` : `${k}s`;
}

export const keyOf = (kind: string, namespace: string | undefined, name: string) => `${kind}/${namespace ?? ""}/${name}`;

/** One pod a controller wants: its admission and scheduling outcome. */
export interface PodModel {
    owner: string;
    ownerKind: string;
    namespace: string;
    name: string;
    labels: Record<string, string>;
    spec: PodSpec;
    /** Pod Security refused it (the enforce level's message). */
    forbidden?: string;
    node?: string;
    unschedulable?: string;
}

export interface PodStatus {
    /** Has a sandbox and an IP: counted in its Services' endpoints (as not-ready addresses until ready). */
    running: boolean;
    ready: boolean;
    /** Why not, in the words of the component that reports it. */
    problems: string[];
}

export class ApiError extends Error {}

export class ClusterModel {
    readonly objects = new Map<string, KubeObject>();
    readonly pods: PodModel[] = [];
    readonly claims = new Map<string, ClaimState & { attachedTo?: string; pod?: string }>();
    /** Objects only a dropped Helm hook would have created, by key, with the hook that creates them. */
    readonly onlyFromDroppedHooks = new Map<string, string>();
    readonly warnings: string[] = [];

    constructor(readonly profile: ClusterProfile) {
        for (const ns of profile.namespaces)
            this.objects.set(keyOf("Namespace", undefined, ns), { apiVersion: "v1", kind: "Namespace", metadata: { name: ns } });
        for (const obj of profile.existingObjects) this.create(obj);
    }

    get(kind: string, namespace: string | undefined, name: string): KubeObject | undefined {
        return this.objects.get(keyOf(kind, namespace, name));
    }

    /** Creates an object as the API server would (returning it as stored), or throws the API server's refusal. */
    create(obj: KubeObject): KubeObject {
        const { kind } = obj;
        const name = obj.metadata.name;
        if (!name) throw new ApiError(`${kind}: metadata.name: Required value: name or generateName is required`);
        const namespace = CLUSTER_SCOPED.has(kind) ? undefined : (obj.metadata.namespace ?? "default");
        if (namespace && !this.get("Namespace", undefined, namespace)) throw new ApiError(`namespaces "${namespace}" not found`);
        const [group, version] = obj.apiVersion.includes("/") ? obj.apiVersion.split("/") : ["", obj.apiVersion];
        if (
            !BUILT_IN_GROUPS.has(group) &&
            ![...this.objects.values()].some((o) => o.kind === "CustomResourceDefinition" && o.spec?.group === group && o.spec?.names?.kind === kind)
        ) {
            throw new ApiError(`no matches for kind "${kind}" in version "${group}/${version}"`);
        }
        this.checkWebhooks(group);
        const key = keyOf(kind, namespace, name);
        if (this.objects.has(key)) throw new ApiError(`${plural(kind)} "${name}" already exists`);
        const stored = { ...obj, metadata: { ...obj.metadata, ...(namespace ? { namespace } : {}) } };
        const template = podTemplateOf(stored);
        if (template) {
            const admission = admitPods(stored, template, this.policyOf(namespace!));
            this.warnings.push(...admission.warnings);
            // A bare Pod is refused outright; a workload is created and its controller's pods are refused.
            if (kind === "Pod" && admission.podsForbidden) throw new ApiError(`pods "${name}" is forbidden: ${admission.podsForbidden}`);
        }
        this.objects.set(key, stored);
        this.startControllers(stored);
        this.reconcile();
        this.issueCertificates();
        return stored;
    }

    /**
     * A Patch resource (server-side apply): patches the live object, or creates it when it does not exist
     * (pulumi-kubernetes #2194). A claim a StatefulSet's controller made counts as live.
     */
    upsert(obj: KubeObject): KubeObject {
        const namespace = CLUSTER_SCOPED.has(obj.kind) ? undefined : (obj.metadata.namespace ?? "default");
        const key = keyOf(obj.kind, namespace, obj.metadata.name ?? "");
        const live = this.objects.get(key);
        if (live) {
            const patched = { ...live, ...obj, metadata: { ...live.metadata, ...obj.metadata }, spec: { ...live.spec, ...obj.spec } };
            this.objects.set(key, patched);
            return patched;
        }
        if (obj.kind === "PersistentVolumeClaim" && this.claims.has(`${namespace}/${obj.metadata.name}`))
            return { ...obj, metadata: { ...obj.metadata, namespace } };
        return this.create(obj);
    }

    /**
     * cert-manager's controller, once its pods run: it writes each Certificate's Secret when the Issuer's ACME
     * challenge can be answered — DNS-01 always (the zone is the cloud's), HTTP-01 only through a running ingress
     * controller of the solver's class that has a load balancer address.
     */
    private issueCertificates(): void {
        for (const cert of [...this.objects.values()].filter((o) => o.kind === "Certificate")) {
            const ns = cert.metadata.namespace!;
            const secretName: string | undefined = cert.spec?.secretName;
            if (!secretName || this.get("Secret", ns, secretName) || this.issuanceBlocker(cert)) continue;
            this.create({ apiVersion: "v1", kind: "Secret", type: "kubernetes.io/tls", metadata: { name: secretName, namespace: ns } });
        }
    }

    /** Why cert-manager cannot issue the Certificate (yet), or undefined when it can. */
    private issuanceBlocker(cert: KubeObject): string | undefined {
        const controller = this.get("Deployment", "cert-manager", "cert-manager");
        if (!controller || !this.podsOf(controller).every((p) => this.podStatus(p).ready)) return "cert-manager's controller is not running";
        const issuerName: string | undefined = cert.spec?.issuerRef?.name;
        const issuer = this.get("Issuer", cert.metadata.namespace, issuerName ?? "");
        if (!issuer) return `its Issuer ${issuerName} does not exist`;
        const solvers: { dns01?: unknown; http01?: { ingress?: { ingressClassName?: string } } }[] = issuer.spec?.acme?.solvers ?? [];
        if (solvers.some((s) => s.dns01)) return undefined;
        const ingressClass = solvers.map((s) => s.http01?.ingress?.ingressClassName).find((c) => c);
        const nginx = this.get("Deployment", "ingress-nginx", "ingress-nginx-controller");
        const reachable =
            !!ingressClass &&
            !!this.get("IngressClass", undefined, ingressClass) &&
            this.profile.loadBalancer &&
            !!nginx &&
            this.podsOf(nginx).every((p) => this.podStatus(p).ready);
        return reachable
            ? undefined
            : `its HTTP-01 challenge needs a running ingress controller of class ${ingressClass ?? "(none)"} behind a load balancer address`;
    }

    /** Webhooks with failurePolicy Fail that must answer before objects of their group are stored. */
    private checkWebhooks(group: string): void {
        if (group !== "cert-manager.io" && group !== "acme.cert-manager.io") return;
        if (!this.get("ValidatingWebhookConfiguration", undefined, "cert-manager-webhook")) return;
        const service = this.get("Service", "cert-manager", "cert-manager-webhook");
        if (!service || !this.endpointsOf(service)) {
            throw new ApiError(
                `Internal error occurred: failed calling webhook "webhook.cert-manager.io": failed to call webhook: Post "https://cert-manager-webhook.cert-manager.svc:443/validate?timeout=30s": no endpoints available for service "cert-manager-webhook"`,
            );
        }
    }

    policyOf(namespace: string) {
        return namespacePolicy(this.get("Namespace", undefined, namespace));
    }

    /** What the workload controllers create for a new object: claims and pods. */
    private startControllers(obj: KubeObject): void {
        const ns = obj.metadata.namespace!;
        const name = obj.metadata.name!;
        if (obj.kind === "PersistentVolumeClaim") this.addClaim(ns, name, obj.spec);
        const template = podTemplateOf(obj);
        if (!template || obj.kind === "CronJob") return;
        const replicas = obj.kind === "DaemonSet" ? this.profile.nodes.length : obj.kind === "Job" || obj.kind === "Pod" ? 1 : (obj.spec?.replicas ?? 1);
        const policy = this.policyOf(ns);
        for (let i = 0; i < replicas; i++) {
            const podName = obj.kind === "Pod" ? name : obj.kind === "StatefulSet" ? `${name}-${i}` : `${name}-${String.fromCharCode(97 + i)}${i}x7k`;
            let spec = template.spec;
            if (obj.kind === "StatefulSet") {
                // The StatefulSet controller creates each pod's claims from the templates, then mounts them.
                const templates: { metadata: { name: string }; spec?: { storageClassName?: string } }[] = obj.spec.volumeClaimTemplates ?? [];
                for (const t of templates) this.addClaim(ns, `${t.metadata.name}-${podName}`, t.spec);
                spec = {
                    ...spec,
                    volumes: [
                        ...(spec.volumes ?? []),
                        ...templates.map((t) => ({ name: t.metadata.name, persistentVolumeClaim: { claimName: `${t.metadata.name}-${podName}` } })),
                    ],
                };
            }
            const admission = admitPods(obj, { metadata: template.metadata, spec }, policy);
            this.pods.push({
                owner: keyOf(obj.kind, ns, name),
                ownerKind: obj.kind,
                namespace: ns,
                name: podName,
                labels: template.metadata.labels ?? {},
                spec,
                forbidden:
                    admission.podsForbidden &&
                    (obj.kind === "StatefulSet"
                        ? `create Pod ${podName} in StatefulSet ${name} failed error: pods "${podName}" is forbidden: ${admission.podsForbidden}`
                        : `Error creating: pods "${podName}" is forbidden: ${admission.podsForbidden}`),
            });
        }
    }

    private addClaim(namespace: string, name: string, spec: { storageClassName?: string } | undefined): void {
        const className = spec?.storageClassName || this.profile.defaultStorageClass;
        const storageClass = this.profile.storageClasses[className];
        const key = `${namespace}/${name}`;
        if (this.claims.has(key)) return;
        if (!storageClass) {
            this.warnings.push(`PersistentVolumeClaim ${key}: storageclass.storage.k8s.io "${className}" not found (the claim stays Pending)`);
            this.claims.set(key, { bound: false, storageClass: { bindingMode: "Immediate", nodeLocal: false } });
            return;
        }
        this.claims.set(key, { bound: storageClass.bindingMode === "Immediate", storageClass });
    }

    /** A pod may exist once admitted and once its service account exists (ServiceAccount admission). */
    private podCreationProblem(pod: PodModel): string | undefined {
        if (pod.forbidden) return pod.forbidden;
        const sa = pod.spec.serviceAccountName;
        if (sa && sa !== "default" && !this.get("ServiceAccount", pod.namespace, sa)) {
            return `Error creating: pods "${pod.name}" is forbidden: error looking up service account ${pod.namespace}/${sa}: serviceaccount "${sa}" not found`;
        }
        return undefined;
    }

    /**
     * Schedules every created, unscheduled pod in creation order, and again while that placed any: a pod placed
     * moves the unschedulable ones back to the scheduler's active queue (kubernetes pkg/scheduler/internal/queue
     * scheduling_queue.go, AssignedPodAdd), so one waiting for its affinity target follows it at once.
     */
    reconcile(): void {
        let placedAny = true;
        while (placedAny) {
            placedAny = false;
            for (const pod of this.pods) {
                if (pod.node || this.podCreationProblem(pod)) continue;
                if (this.place(pod)) placedAny = true;
            }
        }
    }

    /** One scheduling attempt: binds the pod (and its claims) to a node, or records why none fits. */
    private place(pod: PodModel): boolean {
        const placed = this.pods.filter((p): p is PodModel & { node: string } => p.node !== undefined).map((p): PlacedPod => ({ ...p }));
        const result = schedule(pod, { nodes: this.profile.nodes, placed, claims: this.claims });
        if ("unschedulable" in result) {
            pod.unschedulable = result.unschedulable;
            return false;
        }
        pod.node = result.node;
        pod.unschedulable = undefined;
        for (const v of pod.spec.volumes ?? []) {
            const claim = v.persistentVolumeClaim && this.claims.get(`${pod.namespace}/${v.persistentVolumeClaim.claimName}`);
            if (!claim) continue;
            if (!claim.bound) claim.bound = true;
            if (claim.node === undefined && claim.storageClass.nodeLocal) claim.node = pod.node;
            if (claim.attachedTo === undefined) {
                claim.attachedTo = pod.node;
                claim.pod = pod.name;
            }
        }
        return true;
    }

    /** The kubelet's view of one pod. */
    podStatus(pod: PodModel): PodStatus {
        const creation = this.podCreationProblem(pod);
        if (creation) return { running: false, ready: false, problems: [creation] };
        if (!pod.node) return { running: false, ready: false, problems: [`[Pod ${pod.namespace}/${pod.name}]: Pod unschedulable: ${pod.unschedulable}`] };
        const problems: string[] = [];
        const missing = (kind: "Secret" | "ConfigMap", name: string) => !this.get(kind, pod.namespace, name);
        const explain = (kind: string, name: string) => {
            const hook = this.onlyFromDroppedHooks.get(keyOf(kind, pod.namespace, name));
            if (hook) return ` (only the Helm hook ${hook} creates it, and Chart v4 drops hooks)`;
            const cert = [...this.objects.values()].find(
                (o) => o.kind === "Certificate" && o.metadata.namespace === pod.namespace && o.spec?.secretName === name,
            );
            return cert ? ` (cert-manager writes it when Certificate ${pod.namespace}/${cert.metadata.name} is issued; ${this.issuanceBlocker(cert)})` : "";
        };
        // Volumes are set up before the sandbox starts: a missing one keeps the pod in ContainerCreating.
        for (const v of pod.spec.volumes ?? []) {
            if (v.secret && !v.secret.optional && missing("Secret", v.secret.secretName)) {
                problems.push(
                    `MountVolume.SetUp failed for volume "${v.name}" : secret "${v.secret.secretName}" not found${explain("Secret", v.secret.secretName)}`,
                );
            }
            if (v.configMap && !v.configMap.optional && missing("ConfigMap", v.configMap.name)) {
                problems.push(
                    `MountVolume.SetUp failed for volume "${v.name}" : configmap "${v.configMap.name}" not found${explain("ConfigMap", v.configMap.name)}`,
                );
            }
            for (const s of v.projected?.sources ?? []) {
                if (s.secret && !s.secret.optional && missing("Secret", s.secret.name))
                    problems.push(`MountVolume.SetUp failed for volume "${v.name}" : secret "${s.secret.name}" not found`);
                if (s.configMap && !s.configMap.optional && missing("ConfigMap", s.configMap.name))
                    problems.push(`MountVolume.SetUp failed for volume "${v.name}" : configmap "${s.configMap.name}" not found`);
            }
            const claim = v.persistentVolumeClaim && this.claims.get(`${pod.namespace}/${v.persistentVolumeClaim.claimName}`);
            if (claim && !claim.storageClass.nodeLocal && claim.attachedTo !== undefined && claim.attachedTo !== pod.node) {
                problems.push(`Multi-Attach error for volume "${v.persistentVolumeClaim!.claimName}" Volume is already used by pod(s) ${claim.pod}`);
            }
        }
        const running = problems.length === 0;
        // Env references are resolved when each container is created (CreateContainerConfigError).
        for (const c of allContainers(pod.spec)) {
            for (const e of c.env ?? []) {
                const s = e.valueFrom?.secretKeyRef;
                const m = e.valueFrom?.configMapKeyRef;
                if (s && !s.optional && missing("Secret", s.name))
                    problems.push(`container "${c.name}": CreateContainerConfigError: secret "${s.name}" not found`);
                if (m && !m.optional && missing("ConfigMap", m.name))
                    problems.push(`container "${c.name}": CreateContainerConfigError: configmap "${m.name}" not found`);
            }
            for (const e of c.envFrom ?? []) {
                if (e.secretRef && !e.secretRef.optional && missing("Secret", e.secretRef.name))
                    problems.push(`container "${c.name}": CreateContainerConfigError: secret "${e.secretRef.name}" not found`);
                if (e.configMapRef && !e.configMapRef.optional && missing("ConfigMap", e.configMapRef.name))
                    problems.push(`container "${c.name}": CreateContainerConfigError: configmap "${e.configMapRef.name}" not found`);
            }
        }
        return { running, ready: problems.length === 0, problems: problems.map((p) => `[Pod ${pod.namespace}/${pod.name}]: ${p}`) };
    }

    /**
     * Why a Job failed, as the provider prints its Failed condition ("[BackoffLimitExceeded] …"), or undefined. In
     * the model a Job whose pod could run has completed; a node that runs its pods knows better.
     */
    jobFailure(_job: KubeObject): string | undefined {
        return undefined;
    }

    /** Whether a node is still working towards a pod's readiness (never, in the model: its pods are ready at once). */
    settling(): boolean {
        return false;
    }

    /** Resolves once the objects created so far have reached the node behind the model (at once in the model). */
    applied(): Promise<void> {
        return Promise.resolve();
    }

    podsOf(obj: KubeObject): PodModel[] {
        const key = keyOf(obj.kind, obj.metadata.namespace, obj.metadata.name!);
        return this.pods.filter((p) => p.owner === key);
    }

    /**
     * Whether the endpoints controller would list any address for the Service: a running pod it selects that has
     * a container port for at least one of its (named) target ports. Not-ready pods count (as notReadyAddresses).
     */
    endpointsOf(service: KubeObject): boolean {
        const selector = service.spec?.selector as Record<string, string> | undefined;
        if (!selector || Object.keys(selector).length === 0) return false;
        return this.pods.some((pod) => {
            if (pod.namespace !== service.metadata.namespace || !selects({ matchLabels: selector }, pod.labels)) return false;
            if (!this.podStatus(pod).running) return false;
            const ports = allContainers(pod.spec).flatMap((c) => c.ports ?? []);
            return (service.spec.ports ?? []).some((p: { port: number; targetPort?: string | number }) => {
                const target = p.targetPort ?? p.port;
                return typeof target === "number" || ports.some((cp) => cp.name === target);
            });
        });
    }

    /** A pod of this template, if it ran now (a CronJob's next Job): why it would not start. */
    wouldRun(obj: KubeObject): string[] {
        const template = podTemplateOf(obj)!;
        const ns = obj.metadata.namespace!;
        const admission = admitPods(obj, template, this.policyOf(ns));
        if (admission.podsForbidden) return [`Error creating: pods "${obj.metadata.name}-<job>" is forbidden: ${admission.podsForbidden}`];
        const probe: PodModel = {
            owner: qualifiedName(obj),
            ownerKind: obj.kind,
            namespace: ns,
            name: `${obj.metadata.name}-next`,
            labels: template.metadata.labels ?? {},
            spec: template.spec,
        };
        const placed = this.pods.filter((p): p is PodModel & { node: string } => p.node !== undefined);
        const result = schedule(probe, { nodes: this.profile.nodes, placed, claims: this.claims });
        if ("unschedulable" in result) return [`[Pod ${ns}/${probe.name}]: Pod unschedulable: ${result.unschedulable}`];
        probe.node = result.node;
        return this.podStatus(probe).problems;
    }
}
