// The edge's decisions as pure data: which ports are public, whether PROXY headers are spoken, and how the cloud's
// load balancer must be told. Every edge component and the Postfix/Dovecot settings are derived from this.
import type { ClusterProvider, EdgeMode } from "../config/types";
import { ConfigError } from "../config/checks";
import { DOVECOT_LISTENERS } from "../dovecot/config";
import { POSTFIX_LISTENERS } from "../postfix/config";
import { WEBMAIL_LISTENERS } from "../webmail/config";
import type { Listener } from "../render";

export interface EdgePort {
    /** Also the named port of the backend container (plain) and, with "-proxy"-style names, of its PROXY twin. */
    name: string;
    /** The port clients connect to. */
    public: number;
    service: "postfix" | "dovecot" | "webmail";
    /** Backend port without PROXY (in-cluster clients, GKE, hostport). */
    plain: number;
    plainName: string;
    /** Backend port that requires a PROXY header. */
    proxy: number;
    proxyName: string;
}

/** The public listeners of a daemon, as the edge forwards them. */
function edgePorts(service: EdgePort["service"], listeners: Record<string, Listener>): EdgePort[] {
    return Object.values(listeners).flatMap((l) =>
        l.public !== undefined && l.proxy
            ? [{ name: l.name, public: l.public, service, plain: l.port, plainName: l.name, proxy: l.proxy.port, proxyName: l.proxy.name }]
            : [],
    );
}

/** The mail ports the world reaches, from the Postfix and Dovecot listener tables. */
export const EDGE_PORTS: readonly EdgePort[] = [...edgePorts("postfix", POSTFIX_LISTENERS), ...edgePorts("dovecot", DOVECOT_LISTENERS)];

/** The webmail's HTTPS (and redirecting HTTP) ports, where the edge forwards TCP itself. */
export const WEBMAIL_EDGE_PORTS: readonly EdgePort[] = edgePorts("webmail", WEBMAIL_LISTENERS);

export interface EdgePlan {
    mode: EdgeMode;
    provider: ClusterProvider;
    /** The TCP ports the edge forwards: the mail ports, and the webmail's where the edge carries its HTTPS as TCP. */
    ports: readonly EdgePort[];
    /**
     * The webmail goes through an Ingress instead: ingress-nginx serves HTTP(S) on 80/443 itself (ACME's HTTP-01 too),
     * so those cannot be TCP-forwarded there.
     */
    webmailIngress: boolean;
    /** The cloud load balancer itself prepends a PROXY header (DigitalOcean's, when asked to). */
    cloudSendsProxy: boolean;
    /** Postfix and Dovecot receive PROXY headers on their PROXY-only ports (from the cloud LB or ingress-nginx). */
    backendProxy: boolean;
    /** Of the public Service; "Local" keeps the client address where no PROXY header carries it. */
    externalTrafficPolicy: "Local" | "Cluster";
    /**
     * Postfix and Dovecot share one load balancer Service; with "Local" a node only answers for pods on itself,
     * so Dovecot must run beside Postfix.
     */
    colocate: boolean;
    /** Plain ports bound on the node itself. */
    hostPorts: boolean;
    /** Clouds where outbound port 25 is blocked (DigitalOcean for new accounts, GCP always). */
    port25Blocked: boolean;
}

/**
 * kubeconfig is treated like GKE: a generic load balancer (k3s ServiceLB, MetalLB, kind's) passes client addresses
 * through with externalTrafficPolicy Local and never sends PROXY headers, so assuming it would break every connection.
 */
export function edgePlan(mode: EdgeMode, provider: ClusterProvider, opts: { webmail?: boolean } = {}): EdgePlan {
    const digitalocean = provider === "digitalocean";
    const webmailIngress = !!opts.webmail && mode === "ingress-nginx";
    const ports = opts.webmail && !webmailIngress ? [...EDGE_PORTS, ...WEBMAIL_EDGE_PORTS] : EDGE_PORTS;
    const base = { mode, provider, ports, webmailIngress, port25Blocked: provider !== "kubeconfig" };
    // A cloud load balancer in front: DigitalOcean's sends PROXY headers when asked to; the others pass client
    // addresses through only to local pods.
    const cloudFront = { cloudSendsProxy: digitalocean, externalTrafficPolicy: digitalocean ? ("Cluster" as const) : ("Local" as const), hostPorts: false };
    switch (mode) {
        case "loadbalancer":
            return { ...base, ...cloudFront, backendProxy: digitalocean, colocate: !digitalocean };
        case "ingress-nginx":
            // ingress-nginx always re-encodes PROXY towards the backends; only its own front differs per cloud.
            return { ...base, ...cloudFront, backendProxy: true, colocate: false };
        case "hostport":
            if (provider === "kubeconfig") throw new Error("hostport needs a cloud firewall (config.ts rejects kubeconfig)");
            if (provider === "gke") {
                // A GKE node's public address is ephemeral: node upgrades, repairs and spot preemption replace the VM and
                // its address (which Google may hand to someone else), and GKE offers no way to pin a static one to a node.
                throw new ConfigError(
                    'mail:edgeMode = "hostport" is not allowed with clusterProvider gke: GKE replaces its nodes and their ephemeral public addresses, and a node cannot hold a static address; use loadbalancer',
                );
            }
            return { ...base, cloudSendsProxy: false, backendProxy: false, externalTrafficPolicy: "Cluster", colocate: false, hostPorts: true };
    }
}

/** The backend port and its container port name that the edge sends a public port to. */
export function backendOf(plan: EdgePlan, port: EdgePort): { port: number; name: string } {
    return plan.backendProxy ? { port: port.proxy, name: port.proxyName } : { port: port.plain, name: port.plainName };
}
