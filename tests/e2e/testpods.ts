// Pods the e2e runner adds to the program's objects, for the suite only (never part of the program):
//   - `attacker` in the mail namespace and `outsider` in a namespace of its own: throwaway pods that try the
//     internal listeners, which NetworkPolicies must refuse;
//   - `scraper` in the metrics namespace: scrapes the metrics ports as Prometheus would;
//   - `memhog`, `liveness`, `rootimage` and `evictee`: started by the runtime tests to watch the kubelet's OOM
//     handling, back-off, liveness restarts, its runAsNonRoot check (an image whose USER is root) and the eviction
//     of a pod whose emptyDir outgrows its sizeLimit.
// They run one of our images (Debian, with bash and perl) under the restricted Pod Security Standard.
import { restrictedContainer } from "../../components/kube";
import type { KubeObject } from "./program";

export const PROBE_IMAGE = "mail/postgrey:dev";
export const OTHER_NAMESPACE = "e2e-elsewhere";
/** A pod in the metrics namespace (the e2e stack's default, "monitoring"), standing for Prometheus: it scrapes. */
export const SCRAPER = { name: "scraper", namespace: "monitoring", container: "probe" } as const;
/** Started by the tests that use them, not by `up`. */
export const ON_DEMAND = ["memhog", "liveness", "rootimage", "evictee"];

/** The restricted profile as `nobody`. */
export const restricted = restrictedContainer(65534);

function deployment(name: string, namespace: string, containers: object[], extra: object = {}): KubeObject {
    const labels = { "app.kubernetes.io/name": name, "app.kubernetes.io/part-of": "e2e-tests" };
    return {
        kind: "Deployment",
        metadata: { name, namespace, labels },
        spec: {
            replicas: 1,
            selector: { matchLabels: labels },
            template: {
                metadata: { labels },
                spec: {
                    automountServiceAccountToken: false,
                    terminationGracePeriodSeconds: 2,
                    containers,
                    volumes: [{ name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "4Mi" } }],
                    ...extra,
                },
            },
        },
    };
}

const sleeper = (name: string) => ({
    name,
    image: PROBE_IMAGE,
    command: ["sleep", "infinity"],
    securityContext: restricted,
    resources: { limits: { memory: "32Mi" }, requests: { cpu: "5m", memory: "8Mi" } },
    volumeMounts: [{ name: "tmp", mountPath: "/tmp" }],
});

export function testObjects(): KubeObject[] {
    return [
        { kind: "Namespace", metadata: { name: OTHER_NAMESPACE, labels: { "pod-security.kubernetes.io/enforce": "restricted" } } },
        deployment("attacker", "mail", [sleeper("probe")]),
        deployment("outsider", OTHER_NAMESPACE, [sleeper("probe")]),
        { kind: "Namespace", metadata: { name: SCRAPER.namespace, labels: { "pod-security.kubernetes.io/enforce": "restricted" } } },
        deployment(SCRAPER.name, SCRAPER.namespace, [sleeper(SCRAPER.container)]),
        // Allocates 64 MiB under a 32 MiB limit: the kernel's OOM killer ends it, the kubelet restarts it with back-off.
        deployment("memhog", OTHER_NAMESPACE, [
            {
                // The size comes from argv: perl would fold a constant expression at compile time, before the sleep.
                ...sleeper("hog"),
                command: ["perl", "-e", "sleep 1; my $x = 'x' x ($ARGV[0] * 1024 * 1024); sleep 600", "64"],
            },
        ]),
        // Healthy while /tmp/healthy exists (the emptyDir outlives a container restart; the command recreates it).
        deployment("liveness", OTHER_NAMESPACE, [
            {
                ...sleeper("app"),
                command: ["sh", "-c", "touch /tmp/healthy && exec sleep infinity"],
                livenessProbe: { exec: { command: ["test", "-e", "/tmp/healthy"] }, periodSeconds: 1, failureThreshold: 2, timeoutSeconds: 2 },
            },
        ]),
        // Writes 2 MiB into a 1 MiB (disk) emptyDir: the eviction manager evicts the pod.
        deployment(
            "evictee",
            OTHER_NAMESPACE,
            [
                {
                    ...sleeper("app"),
                    command: ["sh", "-c", "head -c 2097152 /dev/zero > /scratch/fill && exec sleep infinity"],
                    volumeMounts: [
                        { name: "tmp", mountPath: "/tmp" },
                        { name: "scratch", mountPath: "/scratch" },
                    ],
                },
            ],
            {
                volumes: [
                    { name: "tmp", emptyDir: { medium: "Memory", sizeLimit: "4Mi" } },
                    { name: "scratch", emptyDir: { sizeLimit: "1Mi" } },
                ],
            },
        ),
        // runAsNonRoot without runAsUser, on an image without USER (root): the kubelet refuses to create it.
        deployment("rootimage", OTHER_NAMESPACE, [
            {
                ...sleeper("app"),
                image: "mail/postfix:dev",
                securityContext: { ...restricted, runAsUser: undefined, runAsGroup: undefined },
            },
        ]),
    ];
}
