import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels } from "../kube";
import { digitaloceanAnnotations, loadBalancerAddresses, loadBalancerAwaitAnnotations } from "./cloud";
import { backendOf, EdgePlan } from "./plan";

/** The final release of the retired ingress-nginx project (best-effort support ended March 2026). */
export const INGRESS_NGINX_CHART = { chart: "ingress-nginx", version: "4.15.1", repo: "https://kubernetes.github.io/ingress-nginx" } as const;
export const INGRESS_NGINX_NAMESPACE = "ingress-nginx";
/** The IngressClass the controller serves (cert-manager's HTTP-01 solver uses it). */
export const INGRESS_CLASS = "nginx";
/** The controller's Service as the chart names it (`<release>-controller`, templates/controller-service.yaml). */
const CONTROLLER_SERVICE = "ingress-nginx-controller";

export interface IngressNginxValuesArgs {
    /** Namespace of the mail Services. */
    namespace: string;
    hostname: string;
    plan: EdgePlan;
}

/**
 * tcp-services entries `ns/svc:port:decode:encode`: ingress-nginx always sends a PROXY header to the PROXY-only
 * backend port; it reads one only where the cloud load balancer in front sends it (DigitalOcean).
 */
export function ingressNginxTcpServices(args: IngressNginxValuesArgs): Record<string, string> {
    const decode = args.plan.cloudSendsProxy ? "PROXY" : "";
    return Object.fromEntries(args.plan.ports.map((p) => [String(p.public), `${args.namespace}/${p.service}:${backendOf(args.plan, p).port}:${decode}:PROXY`]));
}

/** Helm values for the ingress-nginx chart. */
export function ingressNginxValues(args: IngressNginxValuesArgs) {
    return {
        controller: {
            replicaCount: 1,
            ingressClassResource: { name: INGRESS_CLASS, enabled: true, default: false },
            ingressClass: INGRESS_CLASS,
            // HTTP(S) listeners (HTTP-01 challenges) must read the cloud LB's PROXY header too.
            config: args.plan.cloudSendsProxy ? { "use-proxy-protocol": "true" } : {},
            allowSnippetAnnotations: false,
            // The webhook's certificate is made by the chart's admission create/patch Jobs, which are Helm hooks, and
            // helm.v4.Chart drops hook resources (pulumi-kubernetes #3284): its Secret would never exist and the
            // controller would never start. It only pre-validates Ingress objects, and the only ones in this
            // single-tenant cluster are cert-manager's HTTP-01 solvers.
            admissionWebhooks: { enabled: false },
            resources: { requests: { cpu: "50m", memory: "96Mi" }, limits: { memory: "256Mi" } },
            service: {
                type: "LoadBalancer",
                externalTrafficPolicy: args.plan.externalTrafficPolicy,
                annotations: { ...digitaloceanAnnotations(args.plan, args.hostname), ...loadBalancerAwaitAnnotations(args.plan) },
            },
            metrics: { enabled: false },
        },
        tcp: ingressNginxTcpServices(args),
    };
}

export interface IngressNginxEdgeArgs {
    namespace: pulumi.Input<string>;
    hostname: string;
    plan: EdgePlan;
    /** With plan.webmailIngress: the webmail's host, its certificate's Secret and its Service's HTTPS port. */
    webmail?: WebmailRoute;
}

export interface WebmailRoute {
    hostname: string;
    tlsSecretName: pulumi.Input<string>;
    service: string;
    httpsPort: string;
    /** The largest request the controller passes on (an attachment upload). */
    bodySize: string;
}

/**
 * The webmail's Ingress: the controller terminates TLS with the stack's certificate, redirects HTTP to HTTPS and
 * talks HTTPS to the webmail pod (which serves only HTTPS and the redirect).
 */
export function webmailIngress(namespace: pulumi.Input<string>, route: WebmailRoute): k8s.types.input.networking.v1.Ingress {
    return {
        metadata: {
            name: route.service,
            namespace,
            labels: appLabels(route.service, "webmail").labels,
            annotations: {
                "nginx.ingress.kubernetes.io/backend-protocol": "HTTPS",
                "nginx.ingress.kubernetes.io/ssl-redirect": "true",
                "nginx.ingress.kubernetes.io/proxy-body-size": route.bodySize,
            },
        },
        spec: {
            ingressClassName: INGRESS_CLASS,
            tls: [{ hosts: [route.hostname], secretName: route.tlsSecretName }],
            rules: [
                {
                    host: route.hostname,
                    http: { paths: [{ path: "/", pathType: "Prefix", backend: { service: { name: route.service, port: { name: route.httpsPort } } } }] },
                },
            ],
        },
    };
}

/** The ingress-nginx controller (pinned final chart) forwarding the mail ports to Postfix's and Dovecot's PROXY ports. */
export class IngressNginxEdge extends pulumi.ComponentResource {
    readonly addresses: pulumi.Output<string[]>;

    constructor(name: string, args: IngressNginxEdgeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:IngressNginxEdge", name, {}, opts);
        const namespace = new k8s.core.v1.Namespace(
            `${name}-namespace`,
            {
                metadata: {
                    name: INGRESS_NGINX_NAMESPACE,
                    labels: { ...appLabels("ingress-nginx", "edge").labels, "pod-security.kubernetes.io/enforce": "baseline" },
                },
            },
            { parent: this },
        );
        const chart = new k8s.helm.v4.Chart(
            `${name}-chart`,
            {
                name: "ingress-nginx",
                namespace: namespace.metadata.name,
                chart: INGRESS_NGINX_CHART.chart,
                version: INGRESS_NGINX_CHART.version,
                repositoryOpts: { repo: INGRESS_NGINX_CHART.repo },
                values: pulumi.output(args.namespace).apply((ns) => ingressNginxValues({ namespace: ns, hostname: args.hostname, plan: args.plan })),
            },
            { parent: this },
        );
        // The controller Service from the chart's own resources: a `Service.get` would read the cluster at preview,
        // before the chart exists (reads ignore dependsOn).
        const service = chart.resources.apply((resources) => {
            const services = resources.filter((r): r is k8s.core.v1.Service => k8s.core.v1.Service.isInstance(r));
            return pulumi.all(services.map((s) => s.metadata.name)).apply((names) => {
                const controller = services[names.indexOf(CONTROLLER_SERVICE)];
                if (!controller)
                    throw new Error(
                        `the ingress-nginx chart ${INGRESS_NGINX_CHART.version} rendered no Service ${CONTROLLER_SERVICE} (it has: ${names.join(", ") || "none"})`,
                    );
                return controller;
            });
        });
        if (args.plan.webmailIngress) {
            if (!args.webmail) throw new Error("IngressNginxEdge: plan.webmailIngress needs the webmail's route");
            new k8s.networking.v1.Ingress(`${name}-webmail`, webmailIngress(args.namespace, args.webmail), { parent: this, dependsOn: [chart] });
        }
        this.addresses = loadBalancerAddresses(args.plan, args.hostname, service, chart, this);
        this.registerOutputs({ addresses: this.addresses });
    }
}
