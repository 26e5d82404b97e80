// Pod Security Admission, the built-in admission controller, evaluating the Pod Security Standards at "latest".
// Rules and messages follow kubernetes/kubernetes staging/src/k8s.io/pod-security-admission/policy/check_*.go
// (one function below per check, named like the upstream check ID) and
// https://kubernetes.io/docs/concepts/security/pod-security-standards/ .
// Enforcement: a Pod that violates its namespace's `enforce` level is refused by the API server; a workload with a
// pod template is *not* refused (only warned about): its controller's pods are then refused, so it never becomes
// ready (admission/admission.go: templates are checked for warn and audit only).
import { allContainers, Container, KubeObject, PodSpec, PodTemplate, SecurityContext } from "./objects";

export type PodSecurityLevel = "privileged" | "baseline" | "restricted";
const LEVELS: PodSecurityLevel[] = ["privileged", "baseline", "restricted"];

export interface CheckResult {
    /** Upstream check ID, e.g. "hostPorts". */
    check: string;
    /** Upstream ForbiddenReason, e.g. "hostPort". */
    reason: string;
    /** Upstream ForbiddenDetail: names the containers/volumes and the field. */
    detail: string;
}

type Check = (meta: PodTemplate["metadata"], spec: PodSpec) => Omit<CheckResult, "check"> | undefined;

const plural = (one: string, many: string, n: number) => (n === 1 ? one : many);
const joinQuote = (items: Iterable<string>) => [...items].map((i) => JSON.stringify(i)).join(", ");
const containersOf = (spec: PodSpec) => allContainers(spec);
const named = (what: string, names: string[]) => `${plural(what, `${what}s`, names.length)} ${joinQuote(names)}`;

/** Containers (by name) for which `bad` holds. */
function badContainers(spec: PodSpec, bad: (c: Container) => boolean): string[] {
    return containersOf(spec)
        .filter(bad)
        .map((c) => c.name);
}

/** User-namespaced pods (hostUsers: false) are exempt from the run-as-root checks (KEP-127). */
const userNamespaced = (spec: PodSpec) => spec.hostUsers === false;
const windows = (spec: PodSpec) => spec.os?.name === "windows";

// ---- baseline -----------------------------------------------------------------------------------------------

const windowsHostProcess: Check = (_m, spec) => {
    const pod = spec.securityContext?.windowsOptions?.hostProcess === true;
    const containers = badContainers(spec, (c) => c.securityContext?.windowsOptions?.hostProcess === true);
    if (!pod && containers.length === 0) return undefined;
    const who = [...(pod ? ["pod"] : []), ...(containers.length ? [named("container", containers)] : [])].join(" and ");
    return { reason: "hostProcess", detail: `${who} must not set securityContext.windowsOptions.hostProcess=true` };
};

const hostNamespaces: Check = (_m, spec) => {
    const set = (["hostNetwork", "hostPID", "hostIPC"] as const).filter((f) => spec[f] === true).map((f) => `${f}=true`);
    return set.length ? { reason: "host namespaces", detail: set.join(", ") } : undefined;
};

const privileged: Check = (_m, spec) => {
    const bad = badContainers(spec, (c) => c.securityContext?.privileged === true);
    return bad.length ? { reason: "privileged", detail: `${named("container", bad)} must not set securityContext.privileged=true` } : undefined;
};

/** The container runtimes' default set, which baseline allows to be added back. */
export const BASELINE_CAPABILITIES = [
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

const capabilitiesBaseline: Check = (_m, spec) => {
    const added = new Set<string>();
    const bad = badContainers(spec, (c) => {
        const extra = (c.securityContext?.capabilities?.add ?? []).filter((cap) => !BASELINE_CAPABILITIES.includes(cap));
        extra.forEach((cap) => added.add(cap));
        return extra.length > 0;
    });
    if (!bad.length) return undefined;
    return {
        reason: "non-default capabilities",
        detail: `${named("container", bad)} must not include ${joinQuote([...added].sort())} in securityContext.capabilities.add`,
    };
};

const hostPathVolumes: Check = (_m, spec) => {
    const bad = (spec.volumes ?? []).filter((v) => v.hostPath !== undefined).map((v) => v.name);
    return bad.length ? { reason: "hostPath volumes", detail: named("volume", bad) } : undefined;
};

// Baseline allows only 0/unset: the built-in controller has no allow-list (check_hostPorts.go).
const hostPorts: Check = (_m, spec) => {
    const ports = new Set<number>();
    const bad = badContainers(spec, (c) => {
        const used = (c.ports ?? []).map((p) => p.hostPort ?? 0).filter((p) => p !== 0);
        used.forEach((p) => ports.add(p));
        return used.length > 0;
    });
    if (!bad.length) return undefined;
    const list = [...ports].sort((a, b) => a - b).join(", ");
    return {
        reason: "hostPort",
        detail: `${named("container", bad)} ${plural("uses", "use", bad.length)} ${plural("hostPort", "hostPorts", ports.size)} ${list}`,
    };
};

const APPARMOR_ANNOTATION = "container.apparmor.security.beta.kubernetes.io/";
const appArmorProfile: Check = (meta, spec) => {
    const badValues: string[] = [];
    for (const [k, v] of Object.entries(meta.annotations ?? {})) {
        if (k.startsWith(APPARMOR_ANNOTATION) && v !== "" && v !== "runtime/default" && !v.startsWith("localhost/")) badValues.push(`${k}="${v}"`);
    }
    const badType = (sc?: SecurityContext) => sc?.appArmorProfile?.type !== undefined && !["RuntimeDefault", "Localhost"].includes(sc.appArmorProfile.type);
    if (badType(spec.securityContext)) badValues.push(`pod securityContext.appArmorProfile.type="${spec.securityContext!.appArmorProfile!.type}"`);
    for (const c of containersOf(spec))
        if (badType(c.securityContext))
            badValues.push(`container "${c.name}" securityContext.appArmorProfile.type="${c.securityContext!.appArmorProfile!.type}"`);
    return badValues.length ? { reason: "forbidden AppArmor profile", detail: badValues.join(", ") } : undefined;
};

const SELINUX_TYPES = ["", "container_t", "container_init_t", "container_kvm_t", "container_engine_t"];
const seLinuxOptions: Check = (_m, spec) => {
    const bad = (sc?: SecurityContext) =>
        !!sc?.seLinuxOptions && (!SELINUX_TYPES.includes(sc.seLinuxOptions.type ?? "") || !!sc.seLinuxOptions.user || !!sc.seLinuxOptions.role);
    const setters = [...(bad(spec.securityContext) ? ["pod"] : []), ...badContainers(spec, (c) => bad(c.securityContext)).map((n) => `container "${n}"`)];
    return setters.length ? { reason: "seLinuxOptions", detail: `${setters.join(" and ")} set forbidden securityContext.seLinuxOptions` } : undefined;
};

// User-namespaced pods may unmask /proc (check_procMount_baseline.go).
const procMount: Check = (_m, spec) => {
    const bad = badContainers(spec, (c) => {
        const mount = c.securityContext?.procMount;
        return mount !== undefined && mount !== "Default" && !(userNamespaced(spec) && mount === "Unmasked");
    });
    return bad.length ? { reason: "procMount", detail: `${named("container", bad)} must not set securityContext.procMount to a non-default value` } : undefined;
};

const seccompProfileBaseline: Check = (_m, spec) => {
    const setters = [
        ...(spec.securityContext?.seccompProfile?.type === "Unconfined" ? ["pod"] : []),
        ...badContainers(spec, (c) => c.securityContext?.seccompProfile?.type === "Unconfined").map((n) => `container "${n}"`),
    ];
    return setters.length
        ? { reason: "seccompProfile", detail: `${setters.join(" and ")} must not set securityContext.seccompProfile.type to "Unconfined"` }
        : undefined;
};

/** The safe sysctls (kubernetes.io/docs/tasks/administer-cluster/sysctl-cluster/, as of 1.32). */
export const SAFE_SYSCTLS = [
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
    "net.ipv4.tcp_rmem",
    "net.ipv4.tcp_wmem",
];
const sysctls: Check = (_m, spec) => {
    const bad = (spec.securityContext?.sysctls ?? []).map((s) => s.name).filter((n) => !SAFE_SYSCTLS.includes(n));
    return bad.length ? { reason: "forbidden sysctls", detail: bad.join(", ") } : undefined;
};

const hostProbesAndHostLifecycle: Check = (_m, spec) => {
    const hosts = new Set<string>();
    const bad = badContainers(spec, (c) => {
        const handlers = [c.livenessProbe, c.readinessProbe, c.startupProbe, c.lifecycle?.postStart, c.lifecycle?.preStop];
        const found = handlers.flatMap((h) => [h?.httpGet?.host, h?.tcpSocket?.host]).filter((h): h is string => !!h);
        found.forEach((h) => hosts.add(h));
        return found.length > 0;
    });
    if (!bad.length) return undefined;
    return {
        reason: "probe or lifecycle host",
        detail: `${named("container", bad)} ${plural("uses", "use", bad.length)} ${plural("probe or lifecycle host", "probe or lifecycle hosts", hosts.size)} ${joinQuote([...hosts].sort())}`,
    };
};

// ---- restricted ---------------------------------------------------------------------------------------------

const ALLOWED_RESTRICTED_VOLUMES = ["configMap", "csi", "downwardAPI", "emptyDir", "ephemeral", "persistentVolumeClaim", "projected", "secret"];
const restrictedVolumes: Check = (_m, spec) => {
    const types = new Set<string>();
    const bad = (spec.volumes ?? [])
        .filter((v) => {
            const source = Object.keys(v).find((k) => k !== "name");
            if (source === undefined || ALLOWED_RESTRICTED_VOLUMES.includes(source)) return false;
            types.add(source);
            return true;
        })
        .map((v) => v.name);
    if (!bad.length) return undefined;
    return {
        reason: "restricted volume types",
        detail: `${named("volume", bad)} ${plural("uses", "use", bad.length)} ${plural("restricted volume type", "restricted volume types", types.size)} ${joinQuote([...types].sort())}`,
    };
};

const allowPrivilegeEscalation: Check = (_m, spec) => {
    if (windows(spec)) return undefined;
    const bad = badContainers(spec, (c) => c.securityContext?.allowPrivilegeEscalation !== false);
    return bad.length
        ? { reason: "allowPrivilegeEscalation != false", detail: `${named("container", bad)} must set securityContext.allowPrivilegeEscalation=false` }
        : undefined;
};

const runAsNonRoot: Check = (_m, spec) => {
    if (userNamespaced(spec)) return undefined;
    const podValue = spec.securityContext?.runAsNonRoot;
    const explicit = badContainers(spec, (c) => c.securityContext?.runAsNonRoot === false);
    const setters = [...(podValue === false ? ["pod"] : []), ...(explicit.length ? [named("container", explicit)] : [])];
    if (setters.length) return { reason: "runAsNonRoot != true", detail: `${setters.join(" and ")} must not set securityContext.runAsNonRoot=false` };
    const implicit = podValue === true ? [] : badContainers(spec, (c) => c.securityContext?.runAsNonRoot === undefined);
    return implicit.length
        ? { reason: "runAsNonRoot != true", detail: `pod or ${named("container", implicit)} must set securityContext.runAsNonRoot=true` }
        : undefined;
};

const runAsUser: Check = (_m, spec) => {
    if (userNamespaced(spec)) return undefined;
    const setters = [
        ...(spec.securityContext?.runAsUser === 0 ? ["pod"] : []),
        ...(() => {
            const b = badContainers(spec, (c) => c.securityContext?.runAsUser === 0);
            return b.length ? [named("container", b)] : [];
        })(),
    ];
    return setters.length ? { reason: "runAsUser=0", detail: `${setters.join(" and ")} must not set runAsUser=0` } : undefined;
};

const seccompProfileRestricted: Check = (_m, spec) => {
    if (windows(spec)) return undefined;
    const ok = (t?: string) => t === "RuntimeDefault" || t === "Localhost";
    const podType = spec.securityContext?.seccompProfile?.type;
    const explicit = [
        ...(podType !== undefined && !ok(podType) ? ["pod"] : []),
        ...badContainers(spec, (c) => c.securityContext?.seccompProfile?.type !== undefined && !ok(c.securityContext.seccompProfile.type)).map(
            (n) => `container "${n}"`,
        ),
    ];
    if (explicit.length)
        return {
            reason: "seccompProfile",
            detail: `${explicit.join(" and ")} must not set securityContext.seccompProfile.type to a value other than "RuntimeDefault" or "Localhost"`,
        };
    if (ok(podType)) return undefined;
    const implicit = badContainers(spec, (c) => c.securityContext?.seccompProfile?.type === undefined);
    return implicit.length
        ? {
              reason: "seccompProfile",
              detail: `pod or ${named("container", implicit)} must set securityContext.seccompProfile.type to "RuntimeDefault" or "Localhost"`,
          }
        : undefined;
};

const capabilitiesRestricted: Check = (_m, spec) => {
    if (windows(spec)) return undefined;
    const noDropAll = badContainers(spec, (c) => !(c.securityContext?.capabilities?.drop ?? []).includes("ALL"));
    const added = new Set<string>();
    const badAdd = badContainers(spec, (c) => {
        const extra = (c.securityContext?.capabilities?.add ?? []).filter((cap) => cap !== "NET_BIND_SERVICE");
        extra.forEach((cap) => added.add(cap));
        return extra.length > 0;
    });
    const parts = [
        ...(noDropAll.length ? [`${named("container", noDropAll)} must set securityContext.capabilities.drop=["ALL"]`] : []),
        ...(badAdd.length ? [`${named("container", badAdd)} must not include ${joinQuote([...added].sort())} in securityContext.capabilities.add`] : []),
    ];
    return parts.length ? { reason: "unrestricted capabilities", detail: parts.join("; ") } : undefined;
};

/** Upstream's registry order, with each check's level. */
const CHECKS: [string, Exclude<PodSecurityLevel, "privileged">, Check][] = [
    ["windowsHostProcess", "baseline", windowsHostProcess],
    ["hostNamespaces", "baseline", hostNamespaces],
    ["privileged", "baseline", privileged],
    ["capabilities_baseline", "baseline", capabilitiesBaseline],
    ["hostPathVolumes", "baseline", hostPathVolumes],
    ["hostPorts", "baseline", hostPorts],
    ["appArmorProfile", "baseline", appArmorProfile],
    ["seLinuxOptions", "baseline", seLinuxOptions],
    ["procMount", "baseline", procMount],
    ["seccompProfile_baseline", "baseline", seccompProfileBaseline],
    ["sysctls", "baseline", sysctls],
    ["hostProbesAndHostLifecycle", "baseline", hostProbesAndHostLifecycle],
    ["restrictedVolumes", "restricted", restrictedVolumes],
    ["allowPrivilegeEscalation", "restricted", allowPrivilegeEscalation],
    ["runAsNonRoot", "restricted", runAsNonRoot],
    ["runAsUser", "restricted", runAsUser],
    ["seccompProfile_restricted", "restricted", seccompProfileRestricted],
    ["capabilities_restricted", "restricted", capabilitiesRestricted],
];

/** Every check of `level` (and the levels below it) that the pod fails. */
export function checkPod(level: PodSecurityLevel, pod: PodTemplate): CheckResult[] {
    const rank = LEVELS.indexOf(level);
    return CHECKS.filter(([, checkLevel]) => LEVELS.indexOf(checkLevel) <= rank).flatMap(([check, , fn]) => {
        const result = fn(pod.metadata, pod.spec);
        return result ? [{ check, ...result }] : [];
    });
}

/** `violates PodSecurity "baseline:latest": hostPort (container "x" uses hostPort 25), …` as the API server words it. */
export function describeViolations(level: PodSecurityLevel, results: CheckResult[], verb = "violates"): string {
    return `${verb} PodSecurity "${level}:latest": ${results.map((r) => `${r.reason} (${r.detail})`).join(", ")}`;
}

export interface NamespacePolicy {
    enforce: PodSecurityLevel;
    warn: PodSecurityLevel;
    audit: PodSecurityLevel;
}

/**
 * The levels a namespace's `pod-security.kubernetes.io/<mode>` labels set. A mode without a label (or a namespace
 * the model does not know) gets the cluster default, which is privileged unless the cluster configures the
 * admission plugin otherwise.
 */
export function namespacePolicy(namespace: KubeObject | undefined, clusterDefault: PodSecurityLevel = "privileged"): NamespacePolicy {
    const labels = namespace?.metadata.labels ?? {};
    const level = (mode: string): PodSecurityLevel => {
        const value = labels[`pod-security.kubernetes.io/${mode}`];
        if (value === undefined) return clusterDefault;
        if (!(LEVELS as string[]).includes(value)) {
            throw new Error(`namespace ${namespace?.metadata.name}: label pod-security.kubernetes.io/${mode}="${value}" is not one of ${LEVELS.join(", ")}`);
        }
        return value as PodSecurityLevel;
    };
    return { enforce: level("enforce"), warn: level("warn"), audit: level("audit") };
}

export interface AdmissionResult {
    /** The API server refuses to create the pods (for a Pod: the object itself) — the `enforce` level's message. */
    podsForbidden?: string;
    /** Shown to the client on create (`warn`), and recorded in the audit log (`audit`). */
    warnings: string[];
}

/** What Pod Security admission does with an object carrying pods (undefined for objects without pods). */
export function admitPods(obj: KubeObject, pod: PodTemplate, policy: NamespacePolicy): AdmissionResult {
    const enforce = checkPod(policy.enforce, pod);
    const warn = checkPod(policy.warn, pod);
    const audit = checkPod(policy.audit, pod);
    const warnings = [
        ...(warn.length ? [`${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name}: ${describeViolations(policy.warn, warn, "would violate")}`] : []),
        ...(audit.length ? [`${obj.kind} ${obj.metadata.namespace}/${obj.metadata.name}: audit: ${describeViolations(policy.audit, audit)}`] : []),
    ];
    return { podsForbidden: enforce.length ? describeViolations(policy.enforce, enforce) : undefined, warnings };
}
