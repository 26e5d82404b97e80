// NetworkPolicy enforcement for the e2e pods, following the API's semantics
// (https://kubernetes.io/docs/concepts/services-networking/network-policies/ and the networking.k8s.io/v1 reference):
//   - a pod is isolated for a direction once any policy in its namespace selects it with that policyType
//     (policyTypes defaults to ["Ingress"], plus "Egress" when the policy has egress rules); it then accepts only
//     what the union of those policies' rules allows; a pod no policy selects is not isolated;
//   - a rule without `from`/`to` admits every peer, without `ports` every port; a peer is a podSelector (pods of
//     the policy's namespace), a namespaceSelector (every pod there), both (those pods in those namespaces), or an
//     ipBlock (cidr minus except); named ports resolve against the destination pod's container ports;
//   - replies to allowed connections pass (policies are connection-oriented), and traffic between a pod and its
//     node is always allowed ("traffic to and from the node where a Pod is running is always allowed").
// Rules become an iptables filter table inside the pod's network namespace; refused packets are dropped, as most
// policy implementations (Calico, Cilium) do, so a refused connect times out.

import { selects } from "../kit/cluster/objects";

/* eslint-disable @typescript-eslint/no-explicit-any -- NetworkPolicy specs as the program declared them */
type Spec = any;
type Labels = Record<string, string>;

export interface NetPod {
    name: string;
    namespace: string;
    labels: Labels;
    ip: string;
    /** Container ports by name, with protocol. */
    ports: { name?: string; containerPort: number; protocol?: string }[];
}

export interface NetNamespace {
    name: string;
    labels: Labels;
}

export function policyTypes(policy: Spec): string[] {
    return policy.spec.policyTypes ?? (policy.spec.egress ? ["Ingress", "Egress"] : ["Ingress"]);
}

/** Namespace labels as the API server sets them: `kubernetes.io/metadata.name` is always there. */
function nsLabels(namespaces: NetNamespace[], name: string): Labels {
    return { ...(namespaces.find((n) => n.name === name)?.labels ?? {}), "kubernetes.io/metadata.name": name };
}

/** Peer → the addresses it stands for: CIDRs (with exceptions) or the IPs of the pods it selects. */
export type Source = { cidr: string; except: string[] };

function peerSources(peer: Spec, policyNs: string, pods: NetPod[], namespaces: NetNamespace[]): Source[] {
    if (peer.ipBlock) return [{ cidr: peer.ipBlock.cidr, except: peer.ipBlock.except ?? [] }];
    return pods
        .filter((p) => {
            const nsOk = peer.namespaceSelector ? selects(peer.namespaceSelector, nsLabels(namespaces, p.namespace)) : p.namespace === policyNs;
            return nsOk && (peer.podSelector ? selects(peer.podSelector, p.labels) : true);
        })
        .map((p) => ({ cidr: `${p.ip}/32`, except: [] }));
}

/** A rule's ports on a destination pod: protocol + port range; undefined = every port. */
function rulePorts(ports: Spec[] | undefined, dest: NetPod | undefined): { protocol: string; from: number; to: number }[] | undefined {
    if (!ports?.length) return undefined;
    const out: { protocol: string; from: number; to: number }[] = [];
    for (const p of ports) {
        const protocol = (p.protocol ?? "TCP").toLowerCase();
        if (p.port === undefined) {
            out.push({ protocol, from: 1, to: 65535 });
        } else if (typeof p.port === "number") {
            out.push({ protocol, from: p.port, to: p.endPort ?? p.port });
        } else {
            // A named port admits nothing on a pod that does not declare it.
            const cp = dest?.ports.find((x) => x.name === p.port && (x.protocol ?? "TCP").toLowerCase() === protocol);
            if (cp) out.push({ protocol, from: cp.containerPort, to: cp.containerPort });
        }
    }
    return out;
}

interface Allow {
    source: Source;
    port?: { protocol: string; from: number; to: number };
}

function allows(peers: Source[], ports: { protocol: string; from: number; to: number }[] | undefined): Allow[] {
    return peers.flatMap((source) => (ports === undefined ? [{ source }] : ports.map((port) => ({ source, port }))));
}

/** iptables lines admitting `allowed` in chain; an ipBlock's `except` goes through its own chain (RETURN = not this rule). */
function chainRules(chain: string, dir: "-s" | "-d", allowed: Allow[], declare: string[], counter: { n: number }): string[] {
    const out: string[] = [];
    for (const a of allowed) {
        const match = [
            dir,
            a.source.cidr,
            ...(a.port ? ["-p", a.port.protocol, "--dport", a.port.from === a.port.to ? String(a.port.from) : `${a.port.from}:${a.port.to}`] : []),
        ];
        if (!a.source.except.length) {
            out.push(`-A ${chain} ${match.join(" ")} -j ACCEPT`);
            continue;
        }
        const sub = `np-except-${counter.n++}`;
        declare.push(`:${sub} - [0:0]`);
        out.push(`-A ${chain} ${match.join(" ")} -j ${sub}`);
        for (const e of a.source.except) out.push(`-A ${sub} ${dir} ${e} -j RETURN`);
        out.push(`-A ${sub} -j ACCEPT`);
    }
    return out;
}

/**
 * iptables-restore input for one pod's network namespace: the pod's isolated directions jump to a chain of allow
 * rules that ends in DROP. `nodeIp` is always allowed both ways.
 */
export function podFirewall(pod: NetPod, policies: Spec[], pods: NetPod[], namespaces: NetNamespace[], nodeIp: string): string {
    const mine = policies.filter((p) => (p.metadata.namespace ?? "default") === pod.namespace && selects(p.spec.podSelector ?? {}, pod.labels));
    const ingress = mine.filter((p) => policyTypes(p).includes("Ingress"));
    const egress = mine.filter((p) => policyTypes(p).includes("Egress"));
    const declare = ["*filter", ":INPUT ACCEPT [0:0]", ":FORWARD ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]"];
    const rules = [
        "-A INPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A INPUT -i lo -j ACCEPT",
        `-A INPUT -s ${nodeIp}/32 -j ACCEPT`,
        "-A OUTPUT -m conntrack --ctstate ESTABLISHED,RELATED -j ACCEPT",
        "-A OUTPUT -o lo -j ACCEPT",
        `-A OUTPUT -d ${nodeIp}/32 -j ACCEPT`,
    ];
    const counter = { n: 0 };
    const anywhere: Source[] = [{ cidr: "0.0.0.0/0", except: [] }];
    if (ingress.length) {
        declare.push(":np-ingress - [0:0]");
        rules.push("-A INPUT -j np-ingress");
        const allowed = ingress.flatMap((pol) =>
            (pol.spec.ingress ?? []).flatMap((rule: Spec) =>
                allows(
                    rule.from?.length ? rule.from.flatMap((peer: Spec) => peerSources(peer, pod.namespace, pods, namespaces)) : anywhere,
                    rulePorts(rule.ports, pod),
                ),
            ),
        );
        rules.push(...chainRules("np-ingress", "-s", allowed, declare, counter), "-A np-ingress -j DROP");
    }
    if (egress.length) {
        declare.push(":np-egress - [0:0]");
        rules.push("-A OUTPUT -j np-egress");
        const allowed = egress.flatMap((pol) =>
            (pol.spec.egress ?? []).flatMap((rule: Spec) => {
                const dests: Source[] = rule.to?.length ? rule.to.flatMap((peer: Spec) => peerSources(peer, pod.namespace, pods, namespaces)) : anywhere;
                // Named ports resolve on the destination pod; a CIDR destination admits only numeric ports.
                return dests.flatMap((d) =>
                    allows(
                        [d],
                        rulePorts(
                            rule.ports,
                            pods.find((p) => d.cidr === `${p.ip}/32`),
                        ),
                    ),
                );
            }),
        );
        rules.push(...chainRules("np-egress", "-d", allowed, declare, counter), "-A np-egress -j DROP");
    }
    return [...declare, ...rules, "COMMIT", ""].join("\n");
}
