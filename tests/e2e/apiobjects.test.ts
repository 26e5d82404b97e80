// A container's environment as the e2e kubelet builds it (apiobjects.ts env), against the kubelet's
// makeEnvironmentVariables (kubernetes pkg/kubelet/kubelet_pods.go).
import { ApiObjects } from "./apiobjects";

describe("a container's environment from envFrom", () => {
    const secret = {
        kind: "Secret",
        metadata: { name: "backup-repository", namespace: "mail" },
        stringData: { RESTIC_REPOSITORY: "/repo", RESTIC_PASSWORD: "pw" },
    };
    const workload = { kind: "Job", name: "mail-backup", namespace: "mail", template: {}, claims: [], podName: "mail-backup-e2e" };

    test("every key of the Secret, with the prefix; env entries override them", () => {
        const api = new ApiObjects([secret]);
        const env = api.env(workload, {
            name: "mail-backup",
            envFrom: [{ secretRef: { name: "backup-repository" } }, { prefix: "X_", secretRef: { name: "backup-repository" } }],
            env: [{ name: "RESTIC_PASSWORD", value: "override" }],
        });
        expect(env).toEqual([
            ["HOSTNAME", "mail-backup-e2e"],
            ["RESTIC_REPOSITORY", "/repo"],
            ["RESTIC_PASSWORD", "override"],
            ["X_RESTIC_REPOSITORY", "/repo"],
            ["X_RESTIC_PASSWORD", "pw"],
        ]);
    });

    test("a missing source fails the container unless optional", () => {
        const api = new ApiObjects([]);
        expect(() => api.env(workload, { name: "c", envFrom: [{ secretRef: { name: "backup-repository" } }] })).toThrow(
            'pod mail-backup-e2e: secret "backup-repository" not found',
        );
        expect(api.env(workload, { name: "c", envFrom: [{ configMapRef: { name: "nope", optional: true } }] })).toEqual([["HOSTNAME", "mail-backup-e2e"]]);
    });
});
