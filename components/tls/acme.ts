import * as gcp from "@pulumi/gcp";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
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
    | { kind: "clouddns"; project: string; keySecretName: string };

export function certManagerValues() {
    return {
        crds: { enabled: true, keep: true },
        prometheus: { enabled: false },
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
                return { dns01: { cloudDNS: { project: args.solver.project, serviceAccountSecretRef: { name: args.solver.keySecretName, key: "key.json" } } } };
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

export interface AcmeTlsArgs {
    namespace: pulumi.Input<string>;
    hostnames: string[];
    email: string;
    server: keyof typeof ACME_SERVERS;
    /** http01 through the ingress class, or DNS-01 at the cloud that holds the zone. */
    solver: { kind: "http01"; ingressClass: string } | { kind: "digitalocean"; token: pulumi.Output<string> } | { kind: "clouddns" };
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
        const namespace = new k8s.core.v1.Namespace(`${name}-cert-manager-namespace`, {
            metadata: { name: CERT_MANAGER_NAMESPACE, labels: { ...labels, "pod-security.kubernetes.io/enforce": "restricted" } },
        }, { parent: this });
        const chart = new k8s.helm.v4.Chart(`${name}-cert-manager`, {
            name: "cert-manager",
            namespace: namespace.metadata.name,
            chart: CERT_MANAGER_CHART.chart,
            version: CERT_MANAGER_CHART.version,
            repositoryOpts: { repo: CERT_MANAGER_CHART.repo },
            values: certManagerValues(),
        }, { parent: this });

        const secretLabels = appLabels("acme-solver", "tls").labels;
        let solver: pulumi.Output<AcmeSolver>;
        switch (args.solver.kind) {
            case "http01":
                solver = pulumi.output(args.solver);
                break;
            case "digitalocean": {
                const token = new k8s.core.v1.Secret(`${name}-digitalocean-token`, {
                    metadata: { name: "acme-digitalocean-token", namespace: args.namespace, labels: secretLabels },
                    stringData: { "access-token": args.solver.token },
                }, { parent: this, additionalSecretOutputs: ["stringData", "data"] });
                solver = token.metadata.name.apply((tokenSecretName) => ({ kind: "digitalocean" as const, tokenSecretName }));
                break;
            }
            case "clouddns": {
                // A service account that may only edit DNS, its key handed to cert-manager's solver.
                const project = gcp.organizations.getClientConfigOutput({ parent: this }).project;
                const account = new gcp.serviceaccount.Account(`${name}-dns01`, {
                    accountId: `mail-dns01-${pulumi.getStack()}`.toLowerCase().replace(/[^a-z0-9-]/g, "-").slice(0, 30).replace(/-+$/, ""),
                    displayName: "cert-manager DNS-01 for the mail stack",
                }, { parent: this });
                new gcp.projects.IAMMember(`${name}-dns01-admin`, {
                    project,
                    role: "roles/dns.admin",
                    member: pulumi.interpolate`serviceAccount:${account.email}`,
                }, { parent: this });
                const key = new gcp.serviceaccount.Key(`${name}-dns01-key`, { serviceAccountId: account.name }, { parent: this });
                const secret = new k8s.core.v1.Secret(`${name}-clouddns-key`, {
                    metadata: { name: "acme-clouddns-key", namespace: args.namespace, labels: secretLabels },
                    // The key's privateKey is already base64 of the JSON key file.
                    data: { "key.json": key.privateKey },
                }, { parent: this, additionalSecretOutputs: ["data", "stringData"] });
                solver = pulumi.all([project, secret.metadata.name]).apply(([p, keySecretName]) => ({ kind: "clouddns" as const, project: p, keySecretName }));
                break;
            }
        }

        const issuer = new k8s.apiextensions.CustomResource(`${name}-issuer`, {
            apiVersion: "cert-manager.io/v1",
            kind: "Issuer",
            metadata: { name: "letsencrypt", namespace: args.namespace, labels: appLabels("letsencrypt", "tls").labels },
            spec: solver.apply((s) => acmeIssuerSpec({ email: args.email, server: args.server, solver: s })),
        }, { parent: this, dependsOn: [chart] });
        const certificate = new k8s.apiextensions.CustomResource(`${name}-certificate`, {
            apiVersion: "cert-manager.io/v1",
            kind: "Certificate",
            metadata: { name: "mail-tls", namespace: args.namespace, labels: appLabels("mail-tls", "tls").labels },
            spec: certificateSpec({ hostnames: args.hostnames, secretName: "mail-tls", issuerName: "letsencrypt" }),
        }, { parent: this, dependsOn: [chart, issuer] });
        this.secretName = certificate.metadata.apply(() => "mail-tls");
        this.registerOutputs({ secretName: this.secretName });
    }
}
