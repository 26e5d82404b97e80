import * as digitalocean from "@pulumi/digitalocean";
import * as gcp from "@pulumi/gcp";
import * as pulumi from "@pulumi/pulumi";
import { EDGE_NODE_TAG } from "./cloud";
import { EDGE_PORTS, EdgePlan } from "./plan";

export interface HostPortEdgeArgs {
    /** Names the firewall; one per mail host. */
    hostname: string;
    plan: EdgePlan;
    /** The node's public addresses (from config). */
    addresses: string[];
}

/** The inbound rules of the hostport firewall: exactly the public mail ports, from anywhere. */
export function hostPortFirewallPorts(): number[] {
    return EDGE_PORTS.map((p) => p.public);
}

/**
 * Postfix and Dovecot bind the mail ports on the (single) node (their containers' hostPort), and a cloud firewall
 * opens exactly those ports on the nodes tagged for the mail stack. No load balancer: the cheapest edge.
 */
export class HostPortEdge extends pulumi.ComponentResource {
    readonly addresses: pulumi.Output<string[]>;

    constructor(name: string, args: HostPortEdgeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:HostPortEdge", name, {}, opts);
        const firewallName = `mail-${args.hostname.replace(/\./g, "-")}`.slice(0, 63).replace(/-+$/, "");
        const ports = hostPortFirewallPorts();
        switch (args.plan.provider) {
            case "digitalocean":
                new digitalocean.Firewall(`${name}-firewall`, {
                    name: firewallName,
                    tags: [EDGE_NODE_TAG],
                    // Adds to the cluster's own firewall (DigitalOcean unions the rules of every firewall on a droplet).
                    inboundRules: ports.map((port) => ({ protocol: "tcp", portRange: String(port), sourceAddresses: ["0.0.0.0/0", "::/0"] })),
                }, { parent: this });
                break;
            case "gke":
                new gcp.compute.Firewall(`${name}-firewall`, {
                    name: firewallName,
                    network: "default",
                    direction: "INGRESS",
                    allows: [{ protocol: "tcp", ports: ports.map(String) }],
                    sourceRanges: ["0.0.0.0/0"],
                    targetTags: [EDGE_NODE_TAG],
                }, { parent: this });
                break;
            case "kubeconfig":
                throw new Error("hostport needs a cloud firewall (config.ts rejects kubeconfig)");
        }
        this.addresses = pulumi.output(args.addresses);
        this.registerOutputs({ addresses: this.addresses });
    }
}
