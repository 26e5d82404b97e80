// The edge: how mail from the internet reaches Postfix and Dovecot. One ComponentResource per edgeMode, all with
// the same output (the public addresses the mail host name must resolve to).
import * as pulumi from "@pulumi/pulumi";
import { HostPortEdge } from "./hostport";
import { IngressNginxEdge, WebmailRoute } from "./ingress-nginx";
import { LoadBalancerEdge } from "./loadbalancer";
import { EdgePlan } from "./plan";

export { edgeNodeTag } from "./cloud";
export { EDGE_PORTS, backendOf, edgePlan } from "./plan";
export type { EdgePlan } from "./plan";

export interface MailEdge extends pulumi.ComponentResource {
    readonly addresses: pulumi.Output<string[]>;
}

export interface EdgeArgs {
    namespace: pulumi.Input<string>;
    hostname: string;
    plan: EdgePlan;
    /** Where an Ingress edge sends the webmail (plan.webmailIngress). */
    webmail?: WebmailRoute;
}

export function createEdge(name: string, args: EdgeArgs, opts?: pulumi.ComponentResourceOptions): MailEdge {
    switch (args.plan.mode) {
        case "loadbalancer":
            return new LoadBalancerEdge(name, args, opts);
        case "ingress-nginx":
            return new IngressNginxEdge(name, args, opts);
        case "hostport":
            return new HostPortEdge(name, args, opts);
    }
}
