// The e2e suite on a real cluster (the kind workflow): what `.e2e/stack.json` says when the endpoints are a real
// cluster's, worked out from what kubectl returns, and `kubectl exec` for the suite's exec path.
// Object shapes are the Kubernetes API's (core/v1 ServiceList, NodeList, SecretList; apps/v1 StatefulSetList,
// DeploymentList): a NodePort is allocated for every port of a NodePort or LoadBalancer Service (spec.ports[].nodePort,
// "Type NodePort" and "Type LoadBalancer" in kubernetes.io/docs/concepts/services-networking/service/), and a node is
// reached at its InternalIP (status.addresses[], NodeAddress types Hostname/InternalIP/ExternalIP).
import { spawnSync } from "child_process";

export interface Endpoint {
    host: string;
    port: number;
}

/** How stack.json describes a real cluster: the suite runs `kubectl exec` against it and connects from this host. */
export interface RealCluster {
    kind: "kubectl";
    context: string;
    namespace: string;
    /** Workload name (what the suites call a pod) → `statefulset/<name>` or `deployment/<name>`. */
    workloads: Record<string, string>;
}

interface ServicePort {
    name?: string;
    port: number;
    nodePort?: number;
}
interface Service {
    metadata: { name: string; namespace: string };
    spec: { type?: string; ports?: ServicePort[]; selector?: Record<string, string> };
}
interface Node {
    metadata: { name: string };
    status?: { addresses?: { type: string; address: string }[] };
}
interface Named {
    metadata: { name: string };
}
interface Secret {
    metadata: { name: string };
    type?: string;
    data?: Record<string, string>;
}

/** The InternalIP of the first node that has one: where NodePorts answer (kind's nodes are reachable from the runner). */
export function nodeAddress(nodes: { items: Node[] }): string {
    for (const n of nodes.items) {
        const ip = n.status?.addresses?.find((a) => a.type === "InternalIP")?.address;
        if (ip) return ip;
    }
    throw new Error(`no node has an InternalIP address (nodes: ${nodes.items.map((n) => n.metadata.name).join(", ") || "none"})`);
}

/**
 * The program's `endpoints` output (`<service>.<namespace>.svc:<port>`, in-cluster names) mapped to where a client
 * outside the cluster reaches the same port: the NodePort of a NodePort/LoadBalancer Service in that namespace that
 * publishes this port number (the edge Service publishes the public ports), the named Service's own first.
 * Endpoints nothing publishes (CouchDB) are listed as unreachable.
 */
export function externalEndpoints(
    outputs: Record<string, string>,
    services: { items: Service[] },
    node: string,
): { endpoints: Record<string, Endpoint>; unreachable: string[] } {
    const endpoints: Record<string, Endpoint> = {};
    const unreachable: string[] = [];
    for (const [name, value] of Object.entries(outputs)) {
        const m = /^(?:[a-z]+:\/\/)?([^.]+)\.([^.]+)\.svc(?:\.cluster\.local)?:(\d+)$/.exec(value);
        if (!m) throw new Error(`endpoint ${name} = "${value}" is not <service>.<namespace>.svc:<port>`);
        const [, svcName, namespace, port] = m;
        const published = services.items
            .filter((s) => s.metadata.namespace === namespace && (s.spec.type === "NodePort" || s.spec.type === "LoadBalancer"))
            .sort((a, b) => Number(b.metadata.name === svcName) - Number(a.metadata.name === svcName))
            .flatMap((s) => (s.spec.ports ?? []).filter((p) => p.port === Number(port) && p.nodePort));
        if (published.length === 0) unreachable.push(name);
        else endpoints[name] = { host: node, port: published[0].nodePort! };
    }
    return { endpoints, unreachable };
}

/** `kubectl exec` targets for the namespace's StatefulSets and Deployments, by name. */
export function workloadTargets(statefulSets: { items: Named[] }, deployments: { items: Named[] }): Record<string, string> {
    return Object.fromEntries([
        ...statefulSets.items.map((s) => [s.metadata.name, `statefulset/${s.metadata.name}`]),
        ...deployments.items.map((d) => [d.metadata.name, `deployment/${d.metadata.name}`]),
    ]);
}

/** The mail host's certificate (the one kubernetes.io/tls Secret in the namespace): the suite's clients trust it. */
export function tlsCertificate(secrets: { items: Secret[] }): string {
    const tls = secrets.items.filter((s) => s.type === "kubernetes.io/tls" && s.data?.["tls.crt"]);
    if (tls.length !== 1) throw new Error(`expected one kubernetes.io/tls Secret with tls.crt, found ${tls.map((s) => s.metadata.name).join(", ") || "none"}`);
    return Buffer.from(tls[0].data!["tls.crt"], "base64").toString("utf8");
}

/** The kubectl argument vector for one exec (stdin attached, so input reaches the command). */
export function execArgs(cluster: RealCluster, pod: string, ctr: string, argv: string[]): string[] {
    const target = cluster.workloads[pod];
    if (!target) throw new Error(`no workload ${pod} in namespace ${cluster.namespace} (known: ${Object.keys(cluster.workloads).join(", ")})`);
    return ["--context", cluster.context, "-n", cluster.namespace, "exec", "-i", target, "-c", ctr, "--", ...argv];
}

/** `kubectl exec`, returning what the loopback runtime's exec returns (kubectl exits with the command's status). */
export function kubectlExec(cluster: RealCluster, pod: string, ctr: string, argv: string[], opts: { input?: string; timeoutMs?: number } = {}) {
    const r = spawnSync("kubectl", execArgs(cluster, pod, ctr, argv), {
        encoding: "utf8",
        input: opts.input ?? "",
        timeout: opts.timeoutMs ?? 30_000,
        killSignal: "SIGKILL",
    });
    return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
}
