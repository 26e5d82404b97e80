// What the pinned Helm charts render, reduced to what admission, scheduling and the provider's await look at:
// each object's kind/name, pod templates (labels, ports, security contexts, volumes, requests), Services, CRDs,
// webhooks, and which templates are Helm hooks. Under mocks a `helm.v4.Chart` is one opaque resource; the engine
// model expands it with this and then does what pulumi-kubernetes' Chart v4 does: it drops every object with a
// `helm.sh/hook` annotation (pulumi-kubernetes #3284; Chart v4 renders like `helm template --no-hooks`) and
// registers the rest, namespaces and CRDs first.
// Sources: kubernetes/ingress-nginx charts/ingress-nginx/templates/{controller-deployment,controller-service,
// controller-service-webhook,admission-webhooks/*}.yaml at chart 4.15.1; cert-manager/cert-manager
// deploy/charts/cert-manager/templates/{deployment,cainjector-deployment,webhook-deployment,webhook-service,
// startupapicheck-job,crd-templates}.yaml at v1.21.2.
import type { KubeObject, Labels } from "./objects";

/** A rendered template, plus what running it does to the cluster (a hook Job that writes a Secret). */
export interface RenderedObject {
    object: KubeObject;
    /** Objects this Job creates when it completes. */
    creates?: KubeObject[];
}

export interface ChartArgs {
    chart: string;
    version: string;
    /** Release name and namespace. */
    name: string;
    namespace: string;
    // Helm values as the program passes them.
    // eslint-disable-next-line @typescript-eslint/no-explicit-any
    values: any;
}

const HOOK = "helm.sh/hook";

/** Is this rendered object a Helm hook (dropped by Chart v4)? */
export function isHook(obj: KubeObject): boolean {
    return obj.metadata.annotations?.[HOOK] !== undefined;
}

const restrictedSecurityContext = (uid?: number) => ({
    ...(uid !== undefined ? { runAsUser: uid, runAsGroup: uid } : {}),
    runAsNonRoot: true,
    allowPrivilegeEscalation: false,
    readOnlyRootFilesystem: true,
    capabilities: { drop: ["ALL"] },
    seccompProfile: { type: "RuntimeDefault" },
});

function object(
    kind: string,
    apiVersion: string,
    name: string,
    namespace: string | undefined,
    extra: Partial<KubeObject> = {},
    annotations?: Record<string, string>,
): KubeObject {
    return { apiVersion, kind, metadata: { name, ...(namespace ? { namespace } : {}), ...(annotations ? { annotations } : {}) }, ...extra };
}

function deployment(name: string, namespace: string, labels: Labels, replicas: number, podSpec: Record<string, unknown>): KubeObject {
    return object("Deployment", "apps/v1", name, namespace, {
        spec: { replicas, selector: { matchLabels: labels }, template: { metadata: { labels }, spec: podSpec } },
    });
}

function job(name: string, namespace: string, hook: string, podSpec: Record<string, unknown>): KubeObject {
    return object("Job", "batch/v1", name, namespace, { spec: { template: { metadata: { labels: { "job-name": name } }, spec: podSpec } } }, { [HOOK]: hook });
}

function ingressNginx(args: ChartArgs): RenderedObject[] {
    const ns = args.namespace;
    const controller = args.values?.controller ?? {};
    const labels = { "app.kubernetes.io/name": "ingress-nginx", "app.kubernetes.io/instance": args.name, "app.kubernetes.io/component": "controller" };
    const tcp: Record<string, string> = args.values?.tcp ?? {};
    const tcpPorts = Object.keys(tcp).map((port) => ({ name: `${port}-tcp`, port: Number(port) }));
    const admissionSecret = object("Secret", "v1", "ingress-nginx-admission", ns, { data: { cert: "", key: "", ca: "" } });
    // controller.admissionWebhooks.enabled (default true) gates the webhook, its Service, its Secret's hook Jobs and mount.
    const webhook = controller.admissionWebhooks?.enabled ?? true;
    const hookRbac = "pre-install,pre-upgrade,post-install,post-upgrade";
    const jobPod = (name: string, jobArgs: string[]) => ({
        restartPolicy: "OnFailure",
        serviceAccountName: "ingress-nginx-admission",
        securityContext: { seccompProfile: { type: "RuntimeDefault" } },
        containers: [{ name, args: jobArgs, securityContext: restrictedSecurityContext(65532) }],
    });
    const rendered: RenderedObject[] = [
        { object: object("ServiceAccount", "v1", "ingress-nginx", ns) },
        { object: object("ConfigMap", "v1", "ingress-nginx-controller", ns, { data: controller.config ?? {} }) },
        ...(tcpPorts.length ? [{ object: object("ConfigMap", "v1", "ingress-nginx-tcp", ns, { data: tcp }) }] : []),
        { object: object("ClusterRole", "rbac.authorization.k8s.io/v1", "ingress-nginx", undefined) },
        { object: object("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "ingress-nginx", undefined) },
        { object: object("Role", "rbac.authorization.k8s.io/v1", "ingress-nginx", ns) },
        { object: object("RoleBinding", "rbac.authorization.k8s.io/v1", "ingress-nginx", ns) },
        { object: object("IngressClass", "networking.k8s.io/v1", controller.ingressClassResource?.name ?? "nginx", undefined) },
        ...(webhook
            ? [
                  {
                      object: object("Service", "v1", "ingress-nginx-controller-admission", ns, {
                          spec: { type: "ClusterIP", selector: labels, ports: [{ name: "https-webhook", port: 443, targetPort: "webhook" }] },
                      }),
                  },
              ]
            : []),
        {
            object: object(
                "Service",
                "v1",
                "ingress-nginx-controller",
                ns,
                {
                    spec: {
                        type: controller.service?.type ?? "LoadBalancer",
                        selector: labels,
                        ports: [
                            { name: "http", port: 80, targetPort: "http" },
                            { name: "https", port: 443, targetPort: "https" },
                            ...tcpPorts.map((p) => ({ name: p.name, port: p.port, targetPort: p.name })),
                        ],
                    },
                },
                controller.service?.annotations,
            ),
        },
        {
            object: deployment("ingress-nginx-controller", ns, labels, controller.replicaCount ?? 1, {
                serviceAccountName: "ingress-nginx",
                containers: [
                    {
                        name: "controller",
                        ports: [
                            { name: "http", containerPort: 80 },
                            { name: "https", containerPort: 443 },
                            ...(webhook ? [{ name: "webhook", containerPort: 8443 }] : []),
                            ...tcpPorts.map((p) => ({ name: p.name, containerPort: p.port })),
                        ],
                        resources: controller.resources ?? { requests: { cpu: "100m", memory: "90Mi" } },
                        securityContext: {
                            runAsNonRoot: true,
                            runAsUser: 101,
                            runAsGroup: 82,
                            allowPrivilegeEscalation: false,
                            readOnlyRootFilesystem: false,
                            capabilities: { drop: ["ALL"], add: ["NET_BIND_SERVICE"] },
                            seccompProfile: { type: "RuntimeDefault" },
                        },
                    },
                ],
                // The admission webhook's serving certificate: written by the admission-create hook Job.
                volumes: webhook ? [{ name: "webhook-cert", secret: { secretName: "ingress-nginx-admission" } }] : [],
            }),
        },
    ];
    if (!webhook) return rendered;
    return [
        ...rendered,
        { object: object("ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1", "ingress-nginx-admission", undefined) },
        { object: object("ServiceAccount", "v1", "ingress-nginx-admission", ns, {}, { [HOOK]: hookRbac }) },
        { object: object("Role", "rbac.authorization.k8s.io/v1", "ingress-nginx-admission", ns, {}, { [HOOK]: hookRbac }) },
        { object: object("RoleBinding", "rbac.authorization.k8s.io/v1", "ingress-nginx-admission", ns, {}, { [HOOK]: hookRbac }) },
        { object: object("ClusterRole", "rbac.authorization.k8s.io/v1", "ingress-nginx-admission", undefined, {}, { [HOOK]: hookRbac }) },
        { object: object("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "ingress-nginx-admission", undefined, {}, { [HOOK]: hookRbac }) },
        {
            object: job("ingress-nginx-admission-create", ns, "pre-install,pre-upgrade", jobPod("create", ["create", "--secret-name=ingress-nginx-admission"])),
            creates: [admissionSecret],
        },
        { object: job("ingress-nginx-admission-patch", ns, "post-install,post-upgrade", jobPod("patch", ["patch", "--webhook-name=ingress-nginx-admission"])) },
    ];
}

/** The CRDs cert-manager's chart installs with crds.enabled (group, kind, plural). */
const CERT_MANAGER_CRDS: [string, string, string][] = [
    ["cert-manager.io", "Certificate", "certificates"],
    ["cert-manager.io", "CertificateRequest", "certificaterequests"],
    ["cert-manager.io", "Issuer", "issuers"],
    ["cert-manager.io", "ClusterIssuer", "clusterissuers"],
    ["acme.cert-manager.io", "Order", "orders"],
    ["acme.cert-manager.io", "Challenge", "challenges"],
];

function certManager(args: ChartArgs): RenderedObject[] {
    const ns = args.namespace;
    const v = args.values ?? {};
    const component = (name: string, comp: string) => ({
        "app.kubernetes.io/name": name,
        "app.kubernetes.io/instance": args.name,
        "app.kubernetes.io/component": comp,
    });
    const podSpec = (sa: string, container: string, resources: unknown, ports: { name: string; containerPort: number }[]) => ({
        serviceAccountName: sa,
        securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
        containers: [
            {
                name: container,
                ports,
                resources: resources ?? {},
                securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
            },
        ],
    });
    const webhookLabels = component("webhook", "webhook");
    const hookRbac = "post-install";
    return [
        ...(v.crds?.enabled
            ? CERT_MANAGER_CRDS.map(([group, kind, plural]) => ({
                  object: object("CustomResourceDefinition", "apiextensions.k8s.io/v1", `${plural}.${group}`, undefined, {
                      spec: { group, names: { kind, plural } },
                  }),
              }))
            : []),
        ...["cert-manager", "cert-manager-cainjector", "cert-manager-webhook"].map((sa) => ({ object: object("ServiceAccount", "v1", sa, ns) })),
        { object: object("ClusterRole", "rbac.authorization.k8s.io/v1", "cert-manager-controller-issuers", undefined) },
        { object: object("ClusterRoleBinding", "rbac.authorization.k8s.io/v1", "cert-manager-controller-issuers", undefined) },
        {
            object: deployment(
                "cert-manager",
                ns,
                component("cert-manager", "controller"),
                1,
                podSpec("cert-manager", "cert-manager-controller", v.resources, [
                    { name: "http-metrics", containerPort: 9402 },
                    { name: "http-healthz", containerPort: 9403 },
                ]),
            ),
        },
        {
            object: deployment(
                "cert-manager-cainjector",
                ns,
                component("cainjector", "cainjector"),
                1,
                podSpec("cert-manager-cainjector", "cert-manager-cainjector", v.cainjector?.resources, []),
            ),
        },
        {
            object: deployment(
                "cert-manager-webhook",
                ns,
                webhookLabels,
                1,
                podSpec("cert-manager-webhook", "cert-manager-webhook", v.webhook?.resources, [
                    { name: "https", containerPort: 10250 },
                    { name: "healthcheck", containerPort: 6080 },
                ]),
            ),
        },
        {
            object: object("Service", "v1", "cert-manager-webhook", ns, {
                spec: { type: "ClusterIP", selector: webhookLabels, ports: [{ name: "https", port: 443, targetPort: "https" }] },
            }),
        },
        { object: object("MutatingWebhookConfiguration", "admissionregistration.k8s.io/v1", "cert-manager-webhook", undefined) },
        { object: object("ValidatingWebhookConfiguration", "admissionregistration.k8s.io/v1", "cert-manager-webhook", undefined) },
        { object: object("ServiceAccount", "v1", "cert-manager-startupapicheck", ns, {}, { [HOOK]: hookRbac }) },
        { object: object("Role", "rbac.authorization.k8s.io/v1", "cert-manager-startupapicheck:create-cert", ns, {}, { [HOOK]: hookRbac }) },
        { object: object("RoleBinding", "rbac.authorization.k8s.io/v1", "cert-manager-startupapicheck:create-cert", ns, {}, { [HOOK]: hookRbac }) },
        {
            object: job("cert-manager-startupapicheck", ns, "post-install", {
                restartPolicy: "OnFailure",
                serviceAccountName: "cert-manager-startupapicheck",
                securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
                containers: [
                    {
                        name: "cert-manager-startupapicheck",
                        securityContext: { allowPrivilegeEscalation: false, readOnlyRootFilesystem: true, capabilities: { drop: ["ALL"] } },
                    },
                ],
            }),
        },
    ];
}

const CHARTS: Record<string, (args: ChartArgs) => RenderedObject[]> = {
    "ingress-nginx@4.15.1": ingressNginx,
    "cert-manager@v1.21.2": certManager,
};

/** The chart's rendered objects (hooks included, marked); fails for a chart/version the model does not know. */
export function renderChart(args: ChartArgs): RenderedObject[] {
    const render = CHARTS[`${args.chart}@${args.version}`];
    if (!render) {
        throw new Error(
            `the cluster model cannot render chart ${args.chart} ${args.version}: add its rendering to tests/kit/cluster/charts.ts (known: ${Object.keys(CHARTS).join(", ")})`,
        );
    }
    return render(args);
}
