import { KubeObject, PodSpec, PodTemplate } from "../kit/cluster/objects";
import { admitPods, checkPod, describeViolations, namespacePolicy, PodSecurityLevel } from "../kit/cluster/psa";

const pod = (spec: Partial<PodSpec>, annotations?: Record<string, string>): PodTemplate => ({
    metadata: { annotations },
    spec: { containers: [{ name: "app" }], ...spec },
});
/** A container that passes "restricted". */
const hardened = { runAsNonRoot: true, allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"] }, seccompProfile: { type: "RuntimeDefault" } };
const failing = (level: PodSecurityLevel, p: PodTemplate) => checkPod(level, p).map((r) => r.check);

describe("Pod Security Standards: baseline", () => {
    it("admits the default (minimally specified) pod", () => {
        expect(checkPod("baseline", pod({}))).toEqual([]);
    });

    it.each<[string, PodTemplate, string]>([
        ["hostNetwork", pod({ hostNetwork: true }), "hostNamespaces"],
        ["hostPID", pod({ hostPID: true }), "hostNamespaces"],
        ["privileged", pod({ containers: [{ name: "app", securityContext: { privileged: true } }] }), "privileged"],
        ["NET_ADMIN added", pod({ containers: [{ name: "app", securityContext: { capabilities: { add: ["NET_ADMIN"] } } }] }), "capabilities_baseline"],
        ["a hostPath volume", pod({ volumes: [{ name: "root", hostPath: { path: "/" } }] }), "hostPathVolumes"],
        [
            "hostPort 25 (no allow-list in the built-in controller)",
            pod({ containers: [{ name: "app", ports: [{ containerPort: 25, hostPort: 25 }] }] }),
            "hostPorts",
        ],
        ["AppArmor unconfined (annotation)", pod({}, { "container.apparmor.security.beta.kubernetes.io/app": "unconfined" }), "appArmorProfile"],
        ["AppArmor Unconfined (field)", pod({ securityContext: { appArmorProfile: { type: "Unconfined" } } }), "appArmorProfile"],
        ["a custom SELinux type", pod({ securityContext: { seLinuxOptions: { type: "spc_t" } } }), "seLinuxOptions"],
        ["an unmasked /proc", pod({ containers: [{ name: "app", securityContext: { procMount: "Unmasked" } }] }), "procMount"],
        ["seccomp Unconfined", pod({ securityContext: { seccompProfile: { type: "Unconfined" } } }), "seccompProfile_baseline"],
        ["an unsafe sysctl", pod({ securityContext: { sysctls: [{ name: "net.core.somaxconn" }] } }), "sysctls"],
        ["a probe host", pod({ containers: [{ name: "app", livenessProbe: { httpGet: { host: "10.0.0.1" } } }] }), "hostProbesAndHostLifecycle"],
        ["a Windows HostProcess container", pod({ securityContext: { windowsOptions: { hostProcess: true } } }), "windowsHostProcess"],
    ])("refuses %s", (_what, p, check) => {
        expect(failing("baseline", p)).toEqual([check]);
    });

    it.each<[string, PodTemplate]>([
        ["hostPort 0", pod({ containers: [{ name: "app", ports: [{ containerPort: 25, hostPort: 0 }] }] })],
        [
            "the default capabilities added back",
            pod({
                containers: [
                    { name: "app", securityContext: { capabilities: { add: ["CHOWN", "SETUID", "SETGID", "NET_BIND_SERVICE", "SYS_CHROOT", "KILL"] } } },
                ],
            }),
        ],
        ["root with privileges dropped", pod({ containers: [{ name: "app", securityContext: { runAsUser: 0, allowPrivilegeEscalation: false } }] })],
        ["AppArmor runtime/default", pod({}, { "container.apparmor.security.beta.kubernetes.io/app": "runtime/default" })],
        ["a safe sysctl", pod({ securityContext: { sysctls: [{ name: "net.ipv4.ip_unprivileged_port_start" }] } })],
        ["an unmasked /proc in a user namespace", pod({ hostUsers: false, containers: [{ name: "app", securityContext: { procMount: "Unmasked" } }] })],
    ])("admits %s", (_what, p) => {
        expect(failing("baseline", p)).toEqual([]);
    });

    it("words hostPort violations as the API server does, naming container and ports", () => {
        const p = pod({
            containers: [
                {
                    name: "postfix",
                    ports: [
                        { containerPort: 25, hostPort: 25 },
                        { containerPort: 587, hostPort: 587 },
                    ],
                },
            ],
        });
        expect(describeViolations("baseline", checkPod("baseline", p))).toBe(
            'violates PodSecurity "baseline:latest": hostPort (container "postfix" uses hostPorts 25, 587)',
        );
    });
});

describe("Pod Security Standards: restricted", () => {
    it("admits a hardened pod", () => {
        expect(checkPod("restricted", pod({ containers: [{ name: "app", securityContext: hardened }] }))).toEqual([]);
    });

    it("reports every restricted rule a default pod breaks", () => {
        expect(failing("restricted", pod({}))).toEqual(["allowPrivilegeEscalation", "runAsNonRoot", "seccompProfile_restricted", "capabilities_restricted"]);
    });

    it.each<[string, Record<string, unknown>, string]>([
        ["allowPrivilegeEscalation unset", { ...hardened, allowPrivilegeEscalation: undefined }, "allowPrivilegeEscalation"],
        ["runAsNonRoot false", { ...hardened, runAsNonRoot: false }, "runAsNonRoot"],
        ["runAsUser 0", { ...hardened, runAsUser: 0 }, "runAsUser"],
        ["seccomp unset", { ...hardened, seccompProfile: undefined }, "seccompProfile_restricted"],
        ["capabilities not dropped", { ...hardened, capabilities: {} }, "capabilities_restricted"],
        ["CHOWN added", { ...hardened, capabilities: { drop: ["ALL"], add: ["CHOWN"] } }, "capabilities_restricted"],
    ])("refuses %s", (_what, securityContext, check) => {
        expect(failing("restricted", pod({ containers: [{ name: "app", securityContext }] }))).toEqual([check]);
    });

    it("takes pod-level runAsNonRoot and seccomp for every container, and allows NET_BIND_SERVICE", () => {
        const p = pod({
            securityContext: { runAsNonRoot: true, seccompProfile: { type: "RuntimeDefault" } },
            containers: [{ name: "app", securityContext: { allowPrivilegeEscalation: false, capabilities: { drop: ["ALL"], add: ["NET_BIND_SERVICE"] } } }],
        });
        expect(checkPod("restricted", p)).toEqual([]);
    });

    it("refuses non-core volume types", () => {
        const p = pod({
            containers: [{ name: "app", securityContext: hardened }],
            volumes: [
                { name: "data", nfs: { server: "nfs", path: "/" } },
                { name: "cfg", configMap: { name: "c" } },
            ],
        });
        expect(checkPod("restricted", p)).toEqual([
            { check: "restrictedVolumes", reason: "restricted volume types", detail: 'volume "data" uses restricted volume type "nfs"' },
        ]);
    });

    it("checks init containers (native sidecars included) like the others", () => {
        const p = pod({ containers: [{ name: "app", securityContext: hardened }], initContainers: [{ name: "sidecar", restartPolicy: "Always" }] });
        expect(checkPod("restricted", p).map((r) => r.detail)).toContain('container "sidecar" must set securityContext.allowPrivilegeEscalation=false');
    });
});

describe("namespace policy and admission", () => {
    const ns = (labels: Record<string, string>): KubeObject => ({ apiVersion: "v1", kind: "Namespace", metadata: { name: "mail", labels } });
    const statefulSet = (spec: Partial<PodSpec>): KubeObject => ({
        apiVersion: "apps/v1",
        kind: "StatefulSet",
        metadata: { name: "postfix", namespace: "mail" },
        spec: { template: pod(spec) },
    });

    it("reads enforce/warn/audit labels; unlabelled modes are privileged", () => {
        expect(namespacePolicy(ns({ "pod-security.kubernetes.io/enforce": "baseline", "pod-security.kubernetes.io/warn": "restricted" }))).toEqual({
            enforce: "baseline",
            warn: "restricted",
            audit: "privileged",
        });
        expect(namespacePolicy(undefined)).toEqual({ enforce: "privileged", warn: "privileged", audit: "privileged" });
        expect(() => namespacePolicy(ns({ "pod-security.kubernetes.io/enforce": "strict" }))).toThrow(/not one of privileged, baseline, restricted/);
    });

    it("forbids the pods of a template that breaks enforce, and only warns about warn/audit", () => {
        const policy = namespacePolicy(
            ns({
                "pod-security.kubernetes.io/enforce": "baseline",
                "pod-security.kubernetes.io/warn": "restricted",
                "pod-security.kubernetes.io/audit": "restricted",
            }),
        );
        const bad = statefulSet({ containers: [{ name: "postfix", ports: [{ containerPort: 25, hostPort: 25 }] }] });
        expect(admitPods(bad, bad.spec.template, policy).podsForbidden).toBe(
            'violates PodSecurity "baseline:latest": hostPort (container "postfix" uses hostPort 25)',
        );
        const rootButBaseline = statefulSet({});
        const result = admitPods(rootButBaseline, rootButBaseline.spec.template, policy);
        expect(result.podsForbidden).toBeUndefined();
        expect(result.warnings).toEqual([
            expect.stringMatching(/^StatefulSet mail\/postfix: would violate PodSecurity "restricted:latest": allowPrivilegeEscalation != false/),
            expect.stringMatching(/^StatefulSet mail\/postfix: audit: violates PodSecurity "restricted:latest"/),
        ]);
    });
});
