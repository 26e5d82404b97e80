import * as gcp from "@pulumi/gcp";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { zoneFor } from "../dns/manage";
import { appLabels } from "../kube";

/** cert-manager, pinned; its chart installs the CRDs (kept on uninstall so certificates survive). */
export const CERT_MANAGER_CHART = { chart: "cert-manager", version: "v1.21.2", repo: "https://charts.jetstack.io" } as const;
export const CERT_MANAGER_NAMESPACE = "cert-manager";

export const ACME_SERVERS = {
    production: "https://acme-v02.api.letsencrypt.org/directory",
    staging: "https://acme-staging-v02.api.letsencrypt.org/directory",
} as const;

/** How the ACME server checks that we control the name. */
export type AcmeSolver =
    | { kind: "http01"; ingressClass: string }
    | { kind: "digitalocean"; tokenSecretName: string }
    | { kind: "clouddns"; project: string; hostedZoneName: string };

/** The chart's startupapicheck image, at the chart's own version (its appVersion). */
export const CERT_MANAGER_API_CHECK_IMAGE = `quay.io/jetstack/cert-manager-startupapicheck:${CERT_MANAGER_CHART.version}`;
/** cert-manager's controller ServiceAccount (chart templates/serviceaccount.yaml, `<release>`). */
export const CERT_MANAGER_SERVICE_ACCOUNT = "cert-manager";

/** `gcpServiceAccount`: the Google service account cert-manager's controller acts as (Workload Identity). */
export function certManagerValues(args: { gcpServiceAccount?: string; serviceMonitorLabels?: Record<string, string> } = {}) {
    return {
        crds: { enabled: true, keep: true },
        // Its startupapicheck Job is a Helm hook, which helm.v4.Chart drops (pulumi-kubernetes #3284); the same check
        // runs as an ordinary Job instead (certManagerApiCheck).
        startupapicheck: { enabled: false },
        ...(args.gcpServiceAccount
            ? {
                  // GKE Workload Identity: the controller's Kubernetes ServiceAccount acts as the Google one; an Issuer (not
                  // a ClusterIssuer) may use such ambient credentials only with this flag (cert-manager docs, "Ambient
                  // Credentials").
                  serviceAccount: { annotations: { "iam.gke.io/gcp-service-account": args.gcpServiceAccount } },
                  extraArgs: ["--issuer-ambient-credentials"],
              }
            : {}),
        // Its controller's metrics carry the certificate's expiry, which the stack's alert reads: scraped through a
        // ServiceMonitor (the chart's own) only where the stack creates monitors too.
        prometheus: args.serviceMonitorLabels ? { enabled: true, servicemonitor: { enabled: true, labels: args.serviceMonitorLabels } } : { enabled: false },
        resources: { requests: { cpu: "10m", memory: "48Mi" }, limits: { memory: "128Mi" } },
        webhook: { resources: { requests: { cpu: "10m", memory: "24Mi" }, limits: { memory: "64Mi" } } },
        cainjector: { resources: { requests: { cpu: "10m", memory: "48Mi" }, limits: { memory: "128Mi" } } },
    };
}

/** The Issuer's spec: one ACME account, one solver. */
export function acmeIssuerSpec(args: { email: string; server: keyof typeof ACME_SERVERS; solver: AcmeSolver }) {
    const solver = (() => {
        switch (args.solver.kind) {
            case "http01":
                return { http01: { ingress: { ingressClassName: args.solver.ingressClass } } };
            case "digitalocean":
                return { dns01: { digitalocean: { tokenSecretRef: { name: args.solver.tokenSecretName, key: "access-token" } } } };
            case "clouddns":
                return { dns01: { cloudDNS: { project: args.solver.project, hostedZoneName: args.solver.hostedZoneName } } };
        }
    })();
    return {
        acme: {
            server: ACME_SERVERS[args.server],
            email: args.email,
            privateKeySecretRef: { name: "letsencrypt-account" },
            solvers: [solver],
        },
    };
}

/** The Certificate's spec; a new key on every renewal, RSA for the oldest MTAs on the other end. */
export function certificateSpec(args: { hostnames: string[]; secretName: string; issuerName: string }) {
    return {
        secretName: args.secretName,
        secretTemplate: { labels: appLabels(args.secretName, "tls").labels },
        dnsNames: args.hostnames,
        privateKey: { algorithm: "RSA", size: 2048, rotationPolicy: "Always" },
        usages: ["digital signature", "key encipherment", "server auth"],
        issuerRef: { group: "cert-manager.io", kind: "Issuer", name: args.issuerName },
    };
}

/**
 * cert-manager's own readiness check, as its chart's startupapicheck hook runs it (templates/startupapicheck-job.yaml
 * and -rbac.yaml): `check api` creates a Certificate in dry-run mode until cert-manager's webhook answers with a CA
 * the API server trusts. As an ordinary Job the provider waits for it to succeed (pulumi-kubernetes' Job awaiter,
 * PR #633), so nothing cert-manager validates is created before the webhook works (otherwise: x509 errors on a first
 * deploy).
 */
export function certManagerApiCheck(name: string, namespace: pulumi.Input<string>, opts: pulumi.CustomResourceOptions): k8s.batch.v1.Job {
    const { labels } = appLabels("cert-manager-startupapicheck", "tls");
    const accountName = "cert-manager-startupapicheck";
    const account = new k8s.core.v1.ServiceAccount(`${name}-account`, { metadata: { name: accountName, namespace, labels } }, opts);
    const role = new k8s.rbac.v1.Role(
        `${name}-role`,
        {
            metadata: { name: `${accountName}:create-cert`, namespace, labels },
            rules: [{ apiGroups: ["cert-manager.io"], resources: ["certificates"], verbs: ["create"] }],
        },
        opts,
    );
    const binding = new k8s.rbac.v1.RoleBinding(
        `${name}-binding`,
        {
            metadata: { name: `${accountName}:create-cert`, namespace, labels },
            roleRef: { apiGroup: "rbac.authorization.k8s.io", kind: "Role", name: role.metadata.name },
            subjects: [{ kind: "ServiceAccount", name: account.metadata.name, namespace }],
        },
        opts,
    );
    return new k8s.batch.v1.Job(
        name,
        {
            metadata: { name: accountName, namespace, labels },
            spec: {
                backoffLimit: 4,
                template: {
                    metadata: { labels },
                    spec: {
                        restartPolicy: "OnFailure",
                        serviceAccountName: account.metadata.name,
                        enableServiceLinks: false,
                        securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
                        containers: [
                            {
                                name: "startupapicheck",
                                image: CERT_MANAGER_API_CHECK_IMAGE,
                                args: ["check", "api", "--wait=5m", "-v"],
                                env: [{ name: "POD_NAMESPACE", valueFrom: { fieldRef: { fieldPath: "metadata.namespace" } } }],
                                securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, readOnlyRootFilesystem: true },
                                resources: { requests: { cpu: "10m", memory: "32Mi" }, limits: { memory: "64Mi" } },
                            },
                        ],
                    },
                },
            },
        },
        { ...opts, dependsOn: [binding] },
    );
}

/** The Certificate (and its Secret) cert-manager keeps renewed for the mail host. */
export const ACME_CERTIFICATE_NAME = "mail-tls";

export interface AcmeTlsArgs {
    namespace: pulumi.Input<string>;
    hostnames: string[];
    email: string;
    server: keyof typeof ACME_SERVERS;
    /** http01 through the ingress class, or DNS-01 at the cloud that holds the zone. */
    solver: { kind: "http01"; ingressClass: string } | { kind: "digitalocean"; token: pulumi.Output<string> } | { kind: "clouddns" };
    /** Labels of a ServiceMonitor for cert-manager's metrics (needs the Prometheus Operator); omitted: none. */
    serviceMonitorLabels?: Record<string, string>;
}

/**
 * A Let's Encrypt certificate for the mail host, renewed by cert-manager into the `mail-tls` Secret; Postfix's and
 * Dovecot's entrypoints see the Secret volume change and reload.
 */
export class AcmeTls extends pulumi.ComponentResource {
    readonly secretName: pulumi.Output<string>;

    constructor(name: string, args: AcmeTlsArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:AcmeTls", name, {}, opts);
        const { labels } = appLabels("cert-manager", "tls");
        const namespace = new k8s.core.v1.Namespace(
            `${name}-cert-manager-namespace`,
            {
                metadata: { name: CERT_MANAGER_NAMESPACE, labels: { ...labels, "pod-security.kubernetes.io/enforce": "restricted" } },
            },
            { parent: this },
        );
        const secretLabels = appLabels("acme-solver", "tls").labels;
        let solver: pulumi.Output<AcmeSolver>;
        let gcpServiceAccount: pulumi.Output<string> | undefined;
        switch (args.solver.kind) {
            case "http01":
                solver = pulumi.output(args.solver);
                break;
            case "digitalocean": {
                const token = new k8s.core.v1.Secret(
                    `${name}-digitalocean-token`,
                    {
                        metadata: { name: "acme-digitalocean-token", namespace: args.namespace, labels: secretLabels },
                        stringData: { "access-token": args.solver.token },
                    },
                    { parent: this, additionalSecretOutputs: ["stringData", "data"] },
                );
                solver = token.metadata.name.apply((tokenSecretName) => ({ kind: "digitalocean" as const, tokenSecretName }));
                break;
            }
            case "clouddns": {
                // No key: cert-manager's controller acts as this Google service account through GKE Workload Identity,
                // which may edit only the zone that holds the mail host (Cloud DNS IAM on a managed zone).
                const project = gcp.organizations.getClientConfigOutput({ parent: this }).project;
                const zones = gcp.dns.getManagedZonesOutput({}, { parent: this }).managedZones;
                const hostedZoneName = zones.apply((zs) => {
                    const dnsName = zoneFor(
                        args.hostnames[0],
                        zs.map((z) => z.dnsName),
                        "Cloud DNS",
                    );
                    return zs.find((z) => z.dnsName.replace(/\.$/, "") === dnsName)!.name!;
                });
                const account = new gcp.serviceaccount.Account(
                    `${name}-dns01`,
                    {
                        accountId: `mail-dns01-${pulumi.getStack()}`
                            .toLowerCase()
                            .replace(/[^a-z0-9-]/g, "-")
                            .slice(0, 30)
                            .replace(/-+$/, ""),
                        displayName: "cert-manager DNS-01 for the mail stack",
                    },
                    { parent: this },
                );
                new gcp.dns.DnsManagedZoneIamMember(
                    `${name}-dns01-zone`,
                    {
                        managedZone: hostedZoneName,
                        role: "roles/dns.admin",
                        member: pulumi.interpolate`serviceAccount:${account.email}`,
                    },
                    { parent: this },
                );
                new gcp.serviceaccount.IAMMember(
                    `${name}-dns01-workload`,
                    {
                        serviceAccountId: account.name,
                        role: "roles/iam.workloadIdentityUser",
                        member: pulumi.interpolate`serviceAccount:${project}.svc.id.goog[${CERT_MANAGER_NAMESPACE}/${CERT_MANAGER_SERVICE_ACCOUNT}]`,
                    },
                    { parent: this },
                );
                gcpServiceAccount = account.email;
                solver = pulumi.all([project, hostedZoneName]).apply(([p, zone]) => ({ kind: "clouddns" as const, project: p, hostedZoneName: zone }));
                break;
            }
        }

        const chart = new k8s.helm.v4.Chart(
            `${name}-cert-manager`,
            {
                name: "cert-manager",
                namespace: namespace.metadata.name,
                chart: CERT_MANAGER_CHART.chart,
                version: CERT_MANAGER_CHART.version,
                repositoryOpts: { repo: CERT_MANAGER_CHART.repo },
                values: pulumi
                    .output(gcpServiceAccount)
                    .apply((account) => certManagerValues({ gcpServiceAccount: account, serviceMonitorLabels: args.serviceMonitorLabels })),
            },
            { parent: this },
        );
        const apiCheck = certManagerApiCheck(`${name}-cert-manager-api-check`, namespace.metadata.name, { parent: this, dependsOn: [chart] });

        const issuer = new k8s.apiextensions.CustomResource(
            `${name}-issuer`,
            {
                apiVersion: "cert-manager.io/v1",
                kind: "Issuer",
                metadata: { name: "letsencrypt", namespace: args.namespace, labels: appLabels("letsencrypt", "tls").labels },
                spec: solver.apply((s) => acmeIssuerSpec({ email: args.email, server: args.server, solver: s })),
            },
            { parent: this, dependsOn: [chart, apiCheck] },
        );
        const certificate = new k8s.apiextensions.CustomResource(
            `${name}-certificate`,
            {
                apiVersion: "cert-manager.io/v1",
                kind: "Certificate",
                metadata: { name: ACME_CERTIFICATE_NAME, namespace: args.namespace, labels: appLabels(ACME_CERTIFICATE_NAME, "tls").labels },
                spec: certificateSpec({ hostnames: args.hostnames, secretName: ACME_CERTIFICATE_NAME, issuerName: "letsencrypt" }),
            },
            { parent: this, dependsOn: [chart, issuer] },
        );
        this.secretName = certificate.metadata.apply(() => "mail-tls");
        this.registerOutputs({ secretName: this.secretName });
    }
}
