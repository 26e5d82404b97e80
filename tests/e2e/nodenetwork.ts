// The node's private network: the bridge, one network namespace per pod, and each pod's NetworkPolicy firewall
// with the Service-port DNAT that kube-proxy does for in-cluster clients.
import * as fs from "fs";
import { ApiObjects, Workload } from "./apiobjects";
import { BRIDGE, CLUSTER_DNS } from "./layout";
import { NetNamespace, NetPod, podFirewall } from "./netpol";
import { sh } from "./procs";
import type { KubeObject } from "./program";

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes pod specs as the program declared them */
type Spec = any;

export class NodeNetwork extends ApiObjects {
    createBridge(): void {
        if (sh("ip", ["link", "show", BRIDGE.name], { allowFail: true })) return;
        sh("ip", ["link", "add", BRIDGE.name, "type", "bridge"]);
        sh("ip", ["addr", "add", `${BRIDGE.hostIp}/24`, "dev", BRIDGE.name]);
        sh("ip", ["link", "set", BRIDGE.name, "up"]);
    }

    /**
     * A network namespace on the bridge with one address, loopback up and no default route. The host end of the
     * veth is named by the address's last byte, unique on the /24 bridge: interface names are cut at 15 characters,
     * and names like a CronJob's Jobs share their first ones.
     */
    createNetns(key: string, ip: string): { netns: string; veth: string } {
        const netns = `mail-e2e-${key}`;
        const veth = `me2e-${ip.split(".").pop()}`;
        if (!fs.existsSync(`/run/netns/${netns}`)) {
            sh("ip", ["link", "del", veth], { allowFail: true });
            sh("ip", ["netns", "add", netns]);
            sh("ip", ["link", "add", veth, "type", "veth", "peer", "name", "eth0", "netns", netns]);
            sh("ip", ["link", "set", veth, "master", BRIDGE.name, "up"]);
            sh("ip", ["-n", netns, "addr", "add", `${ip}/24`, "dev", "eth0"]);
            sh("ip", ["-n", netns, "link", "set", "eth0", "up"]);
            sh("ip", ["-n", netns, "link", "set", "lo", "up"]);
        }
        return { netns, veth };
    }

    /** Every pod NetworkPolicies can name: the workloads (fixed IPs) and the cluster DNS. */
    netPods(): NetPod[] {
        return [
            ...this.workloads().map((w) => ({
                name: w.podName,
                namespace: w.namespace,
                labels: w.template.metadata?.labels ?? {},
                ip: this.podIp(w.name),
                ports: [...(w.template.spec.initContainers ?? []), ...w.template.spec.containers].flatMap((c: Spec) => c.ports ?? []),
            })),
            {
                name: "kube-dns",
                namespace: CLUSTER_DNS.namespace,
                labels: CLUSTER_DNS.labels,
                ip: CLUSTER_DNS.ip,
                ports: [
                    { name: "dns", containerPort: 53, protocol: "UDP" },
                    { name: "dns-tcp", containerPort: 53, protocol: "TCP" },
                ],
            },
        ];
    }

    namespaces(): NetNamespace[] {
        return this.objects.filter((o) => o.kind === "Namespace").map((o) => ({ name: o.metadata.name, labels: o.metadata.labels ?? {} }));
    }

    policies(): KubeObject[] {
        return this.objects.filter((o) => o.kind === "NetworkPolicy");
    }

    /** The pod's NetworkPolicy firewall and the Service-port DNAT (kube-proxy for in-cluster clients), in its netns. */
    applyFirewall(w: Workload): void {
        const netns = `mail-e2e-${w.name}`;
        const me = this.netPods().find((p) => p.ip === this.podIp(w.name))!;
        const rules = podFirewall(me, this.policies(), this.netPods(), this.namespaces(), BRIDGE.hostIp);
        sh("ip", ["netns", "exec", netns, "iptables-restore"], { input: rules });
        const nat = ["*nat", ":PREROUTING ACCEPT [0:0]", ":INPUT ACCEPT [0:0]", ":OUTPUT ACCEPT [0:0]", ":POSTROUTING ACCEPT [0:0]"];
        for (const s of this.services()) {
            for (const p of s.ports.filter((x) => x.port !== x.target)) {
                const ip = this.podIp(p.workload.name);
                nat.push(`-A OUTPUT -p tcp -d ${ip} --dport ${p.port} -j DNAT --to-destination ${ip}:${p.target}`);
            }
        }
        sh("ip", ["netns", "exec", netns, "iptables-restore"], { input: [...nat, "COMMIT", ""].join("\n") });
    }
}
