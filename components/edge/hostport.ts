import * as digitalocean from "@pulumi/digitalocean";
import * as pulumi from "@pulumi/pulumi";
import { edgeNodeTag } from "./cloud";
import { EdgePlan } from "./plan";

export interface HostPortEdgeArgs {
    /** Names the firewall; one per mail host. */
    hostname: string;
    plan: EdgePlan;
}

/** The inbound rules of the hostport firewall: exactly the public ports (mail, and the webmail's), from anywhere. */
export function hostPortFirewallPorts(plan: EdgePlan): number[] {
    return plan.ports.map((p) => p.public);
}

/** The one node of the cluster (config.ts allows hostport with one node only), found by this stack's node tag. */
export function edgeNode(droplets: { id: number; region: string; tags: string[] }[], tag: string): { id: number; region: string } {
    const nodes = droplets.filter((d) => d.tags.includes(tag));
    if (nodes.length !== 1) throw new Error(`edgeMode hostport: expected exactly one node tagged ${tag}, found ${nodes.length}`);
    return nodes[0];
}

/**
 * Postfix and Dovecot bind the mail ports on the single node (their containers' hostPort), and a DigitalOcean firewall
 * opens exactly those ports on the nodes tagged for this stack. No load balancer: the cheapest edge.
 *
 * The public address is a reserved IP the program owns, assigned to the node: a node's own address goes when DOKS
 * replaces the node (upgrades, recycling) and may be handed to someone else, while the reserved IP, and so the A
 * record, stays. Each `pulumi up` assigns it to the node of the moment; between a replacement and the next
 * `pulumi up` it reaches no node, so senders queue and retry (nothing is lost, nothing goes to a stranger).
 */
export class HostPortEdge extends pulumi.ComponentResource {
    readonly addresses: pulumi.Output<string[]>;

    constructor(name: string, args: HostPortEdgeArgs, opts?: pulumi.ComponentResourceOptions) {
        super("mail:index:HostPortEdge", name, {}, opts);
        if (args.plan.provider !== "digitalocean") throw new Error(`hostport is DigitalOcean-only (edgePlan refuses ${args.plan.provider})`);
        const firewallName = `mail-${args.hostname.replace(/\./g, "-")}`.slice(0, 63).replace(/-+$/, "");
        const tag = edgeNodeTag();
        new digitalocean.Firewall(
            `${name}-firewall`,
            {
                name: firewallName,
                tags: [tag],
                // Adds to the cluster's own firewall (DigitalOcean unions the rules of every firewall on a droplet).
                inboundRules: hostPortFirewallPorts(args.plan).map((port) => ({
                    protocol: "tcp",
                    portRange: String(port),
                    sourceAddresses: ["0.0.0.0/0", "::/0"],
                })),
            },
            { parent: this },
        );
        // Read at every run, after the mail workloads (and so the cluster) exist: the node of the moment.
        const node = digitalocean
            .getDropletsOutput({ filters: [{ key: "tags", values: [tag] }] }, { parent: this, dependsOn: opts?.dependsOn })
            .droplets.apply((droplets) => edgeNode(droplets, tag));
        const address = new digitalocean.ReservedIp(`${name}-address`, { region: node.region }, { parent: this, ignoreChanges: ["dropletId"] });
        new digitalocean.ReservedIpAssignment(`${name}-address-assignment`, { ipAddress: address.ipAddress, dropletId: node.id }, { parent: this });
        this.addresses = address.ipAddress.apply((ip) => [ip]);
        this.registerOutputs({ addresses: this.addresses });
    }
}
