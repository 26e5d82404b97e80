// NetworkPolicy → a pod's firewall, checked against the API's semantics without a network.
import { selects } from "../kit/cluster/objects";
import { NetNamespace, NetPod, podFirewall, policyTypes } from "./netpol";

const NODE = "10.77.0.1";
const pod = (name: string, namespace: string, ip: string, labels: Record<string, string>, ports: NetPod["ports"] = []): NetPod => ({
    name,
    namespace,
    ip,
    labels,
    ports,
});
const couchdb = pod("couchdb-0", "mail", "10.0.0.13", { app: "couchdb" }, [{ name: "http", containerPort: 5984 }]);
const postfix = pod("postfix-0", "mail", "10.0.0.16", { app: "postfix" });
const other = pod("x", "elsewhere", "10.0.0.30", { app: "postfix" });
const dns = pod("kube-dns", "kube-system", "10.0.0.3", { "k8s-app": "kube-dns" }, [{ name: "dns", containerPort: 53, protocol: "UDP" }]);
const pods = [couchdb, postfix, other, dns];
const namespaces: NetNamespace[] = [
    { name: "mail", labels: {} },
    { name: "elsewhere", labels: { team: "x" } },
];
const policy = (name: string, spec: object, namespace = "mail") => ({ kind: "NetworkPolicy", metadata: { name, namespace }, spec });
/** The firewall `target` gets from these policies among this file's pods and namespaces. */
const firewallOf = (target: NetPod, ...policies: ReturnType<typeof policy>[]) => podFirewall(target, policies, pods, namespaces, NODE);

describe("NetworkPolicy semantics", () => {
    test("a pod no policy selects is not isolated", () => {
        const fw = firewallOf(postfix, policy("p", { podSelector: { matchLabels: { app: "couchdb" } }, ingress: [] }));
        expect(fw).not.toMatch(/DROP/);
    });
    test("ingress: only the named pods of the policy's namespace on the resolved named port; the node always", () => {
        const fw = firewallOf(
            couchdb,
            policy("p", {
                podSelector: { matchLabels: { app: "couchdb" } },
                ingress: [{ from: [{ podSelector: { matchExpressions: [{ key: "app", operator: "In", values: ["postfix"] }] } }], ports: [{ port: "http" }] }],
            }),
        );
        expect(fw).toContain("-A np-ingress -s 10.0.0.16/32 -p tcp --dport 5984 -j ACCEPT");
        expect(fw).not.toContain("10.0.0.30");
        expect(fw).toContain("-A np-ingress -j DROP");
        expect(fw).toContain(`-A INPUT -s ${NODE}/32 -j ACCEPT`);
        expect(fw).not.toMatch(/np-egress/);
    });
    test("an empty ingress list isolates and admits nothing; a rule without from admits everyone", () => {
        const deny = firewallOf(couchdb, policy("deny", { podSelector: {}, policyTypes: ["Ingress"] }));
        expect(deny.split("\n").filter((l) => l.startsWith("-A np-ingress"))).toEqual(["-A np-ingress -j DROP"]);
        const open = firewallOf(couchdb, policy("open", { podSelector: {}, ingress: [{}] }));
        expect(open).toContain("-A np-ingress -s 0.0.0.0/0 -j ACCEPT");
    });
    test("namespaceSelector with podSelector: those pods in those namespaces; ipBlock except carved out", () => {
        const fw = firewallOf(
            couchdb,
            policy("p", {
                podSelector: {},
                ingress: [
                    { from: [{ namespaceSelector: { matchLabels: { team: "x" } }, podSelector: { matchLabels: { app: "postfix" } } }] },
                    { from: [{ ipBlock: { cidr: "192.0.2.0/24", except: ["192.0.2.8/29"] } }], ports: [{ port: 25, endPort: 27 }] },
                ],
            }),
        );
        expect(fw).toContain("-A np-ingress -s 10.0.0.30/32 -j ACCEPT");
        expect(fw).not.toContain("10.0.0.16");
        expect(fw).toContain("-A np-ingress -s 192.0.2.0/24 -p tcp --dport 25:27 -j np-except-0");
        expect(fw).toContain("-A np-except-0 -s 192.0.2.8/29 -j RETURN");
    });
    test("egress: policyTypes defaults add Egress when egress rules exist; DNS to kube-dns by namespace and pod labels", () => {
        const p = policy("p", {
            podSelector: { matchLabels: { app: "postfix" } },
            egress: [
                {
                    to: [
                        {
                            namespaceSelector: { matchLabels: { "kubernetes.io/metadata.name": "kube-system" } },
                            podSelector: { matchLabels: { "k8s-app": "kube-dns" } },
                        },
                    ],
                    ports: [{ port: 53, protocol: "UDP" }],
                },
            ],
        });
        expect(policyTypes(p)).toEqual(["Ingress", "Egress"]);
        const fw = firewallOf(postfix, p);
        expect(fw).toContain("-A np-egress -d 10.0.0.3/32 -p udp --dport 53 -j ACCEPT");
        expect(fw).toContain("-A np-egress -j DROP");
        expect(fw).toContain("-A np-ingress -j DROP");
    });
    test("label selector operators", () => {
        expect(selects({ matchExpressions: [{ key: "a", operator: "NotIn", values: ["1"] }] }, { a: "2" })).toBe(true);
        expect(selects({ matchExpressions: [{ key: "a", operator: "DoesNotExist" }] }, { a: "2" })).toBe(false);
        expect(() => selects({ matchExpressions: [{ key: "a", operator: "Gt" }] }, {})).toThrow(/not one of In, NotIn, Exists, DoesNotExist/);
    });
});
