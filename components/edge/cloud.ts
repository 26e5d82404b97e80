// What the clouds' load balancers need to be told, and how their public addresses are read back.
import * as digitalocean from "@pulumi/digitalocean";
import * as k8s from "@pulumi/kubernetes";
import * as pulumi from "@pulumi/pulumi";
import type { EdgePlan } from "./plan";

/**
 * Network tag every node pool of this stack carries, so a hostport firewall opens the mail ports on exactly those
 * nodes, and the hostport edge finds its node. Per project and stack: two stacks in one account must not share it.
 */
export function edgeNodeTag(): string {
    return `mail-edge-${pulumi.getProject()}-${pulumi.getStack()}`
        .toLowerCase()
        .replace(/[^a-z0-9-]/g, "-")
        .slice(0, 63)
        .replace(/-+$/, "");
}

/**
 * A DigitalOcean load balancer that forwards TCP and prepends PROXY v1 headers. The type is explicit (REGIONAL
 * speaks PROXY; REGIONAL_NETWORK would not), and the hostname annotation makes the Service report the mail host
 * name instead of the IP, so in-cluster clients go out through the load balancer (and get their PROXY header)
 * rather than being short-circuited by kube-proxy straight onto a PROXY-only port.
 */
export function digitaloceanAnnotations(plan: EdgePlan, hostname: string): Record<string, string> {
    if (plan.provider !== "digitalocean") return {};
    return {
        "service.beta.kubernetes.io/do-loadbalancer-name": loadBalancerName(hostname),
        "service.beta.kubernetes.io/do-loadbalancer-type": "REGIONAL",
        "service.beta.kubernetes.io/do-loadbalancer-protocol": "tcp",
        "service.beta.kubernetes.io/do-loadbalancer-enable-proxy-protocol": plan.cloudSendsProxy ? "true" : "false",
        "service.beta.kubernetes.io/do-loadbalancer-hostname": hostname,
    };
}

/**
 * An existing cluster may have nothing that gives LoadBalancer Services an address (kind and minikube have none until
 * cloud-provider-kind, MetalLB or `minikube tunnel` run), and the provider would wait for one until it times out
 * ("Service was not allocated an IP address", pulumi-kubernetes provider/pkg/await/service.go). There the Service is
 * created without that wait (`pulumi.com/skipAwait`); an address that arrives later shows after `pulumi refresh`.
 */
export function loadBalancerAwaitAnnotations(plan: EdgePlan): Record<string, string> {
    return plan.provider === "kubeconfig" ? { "pulumi.com/skipAwait": "true" } : {};
}

export function loadBalancerName(hostname: string): string {
    return hostname.slice(0, 255);
}

/**
 * Public addresses of a LoadBalancer Service: DigitalOcean's status holds the host name, so ask the cloud once the
 * Service (`createdBy`: it, or the chart that holds it) exists.
 */
export function loadBalancerAddresses(
    plan: EdgePlan,
    hostname: string,
    service: pulumi.Output<k8s.core.v1.Service>,
    createdBy: pulumi.Resource,
    parent: pulumi.Resource,
): pulumi.Output<string[]> {
    if (plan.provider === "digitalocean") {
        const lb = digitalocean.getLoadBalancerOutput({ name: loadBalancerName(hostname) }, { parent, dependsOn: [createdBy] });
        return lb.apply((l) => [l.ip, l.ipv6].filter((ip) => !!ip));
    }
    return service
        .apply((s) => s.status.loadBalancer.ingress)
        .apply((ingress) => (ingress ?? []).map((i) => i.ip ?? i.hostname).filter((a): a is string => !!a));
}
