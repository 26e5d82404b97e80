import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import { appLabels, MAIL_POD_SELECTOR } from "../kube";
import { digitaloceanAnnotations, loadBalancerAddresses, loadBalancerAwaitAnnotations } from "./cloud";
import { backendOf, EdgePlan } from "./plan";

export interface LoadBalancerEdgeArgs {
    namespace: pulumi.Input<string>;
    hostname: string;
    plan: EdgePlan;
}

/**
 * One cloud load balancer (one IP, one fee) straight to Postfix and Dovecot. The Service selects every mail pod;
 * its named target ports exist only in the Postfix or the Dovecot container, so each port's endpoints are exactly
 * the pods that serve it. On DigitalOcean it targets the PROXY-only ports; elsewhere the plain ones, with
 * externalTrafficPolicy Local keeping the client address.
 */
export class LoadBalancerEdge extends pulumi.ComponentResource {
    readonly addresses: pulumi.Output<string[]>;

    constructor(name: string, args: LoadBalancerEdgeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:LoadBalancerEdge", name, {}, opts);
        const { labels } = appLabels("mail-edge", "edge");
        const service = new k8s.core.v1.Service(
            `${name}-service`,
            {
                metadata: {
                    name: "mail-edge",
                    namespace: args.namespace,
                    labels,
                    annotations: { ...digitaloceanAnnotations(args.plan, args.hostname), ...loadBalancerAwaitAnnotations(args.plan) },
                },
                spec: {
                    type: "LoadBalancer",
                    externalTrafficPolicy: args.plan.externalTrafficPolicy,
                    selector: MAIL_POD_SELECTOR,
                    ports: args.plan.ports.map((p) => ({ name: p.name, port: p.public, targetPort: backendOf(args.plan, p).name, protocol: "TCP" })),
                },
            },
            { parent: this },
        );
        this.addresses = loadBalancerAddresses(args.plan, args.hostname, pulumi.output(service), service, this);
        this.registerOutputs({ addresses: this.addresses });
    }
}
