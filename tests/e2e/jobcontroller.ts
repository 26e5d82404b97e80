// The Job controller's decisions for the Jobs the e2e node runs (one pod at a time: completions and parallelism 1,
// what the program's Jobs use), as kubernetes pkg/controller/job/job_controller.go makes them:
//   - a pod that ends Succeeded completes the Job (condition Complete);
//   - restartPolicy Never: a Failed pod counts in .status.failed; once failed > backoffLimit (default 6) the Job
//     fails with reason BackoffLimitExceeded ("Job has reached the specified backoff limit"), else the next pod is
//     created after the pod-failure back-off: 10 s doubling per failure, at most 10 min (DefaultJobPodFailureBackOff,
//     MaxJobPodFailureBackOff);
//   - restartPolicy OnFailure: the kubelet restarts the container in place; the Job fails once the restarts of its
//     running or pending pods reach backoffLimit (any restart when it is 0) — pastBackoffLimitOnFailure — and the
//     controller deletes that pod.
// The status and conditions are what the pulumi-kubernetes Job await reads (provider/pkg/await/states/job.go:
// ready on startTime + Complete=True; fails at once on Failed=True with reason BackoffLimitExceeded or
// DeadlineExceeded, printing "[reason] message").

export const DEFAULT_BACKOFF_LIMIT = 6;
export const POD_FAILURE_BACKOFF_MS = 10_000;
export const MAX_POD_FAILURE_BACKOFF_MS = 600_000;

export interface JobCondition {
    type: "Complete" | "Failed";
    status: "True";
    reason?: string;
    message?: string;
}

export interface JobStatus {
    /** ms since the epoch: set when the controller starts the Job (.status.startTime). */
    startTime: number;
    /** ms since the epoch: when it completed (.status.completionTime, set with the Complete condition only). */
    completionTime?: number;
    active: number;
    succeeded: number;
    failed: number;
    conditions: JobCondition[];
}

/* eslint-disable @typescript-eslint/no-explicit-any -- Kubernetes Job specs as the program declared them */
export type JobSpec = any;

export function backoffLimit(spec: JobSpec): number {
    return spec.backoffLimit ?? DEFAULT_BACKOFF_LIMIT;
}

/** The pod restart policy a Job template must have (the API server refuses Always for Jobs). */
export function jobRestartPolicy(spec: JobSpec): "Never" | "OnFailure" {
    const policy = spec.template?.spec?.restartPolicy;
    if (policy !== "Never" && policy !== "OnFailure") {
        throw new Error(`spec.template.spec.restartPolicy: Required value: valid values: "OnFailure", "Never" (got ${JSON.stringify(policy)})`);
    }
    return policy;
}

/** How long the controller waits before creating the next pod after `failures` failed pods in a row. */
export function podFailureBackoffMs(failures: number): number {
    if (failures <= 0) return 0;
    return Math.min(POD_FAILURE_BACKOFF_MS * 2 ** (failures - 1), MAX_POD_FAILURE_BACKOFF_MS);
}

/** OnFailure: whether the container restarts of the active pod have used up the back-off limit. */
export function pastBackoffLimitOnFailure(spec: JobSpec, activePodRestarts: number): boolean {
    if (jobRestartPolicy(spec) !== "OnFailure") return false;
    const limit = backoffLimit(spec);
    return limit === 0 ? activePodRestarts > 0 : activePodRestarts >= limit;
}

const BACKOFF_LIMIT_EXCEEDED: JobCondition = {
    type: "Failed",
    status: "True",
    reason: "BackoffLimitExceeded",
    message: "Job has reached the specified backoff limit",
};

/** The Job after its active pod ended (or was deleted by the controller for OnFailure's limit). */
export function afterPod(spec: JobSpec, status: JobStatus, outcome: "Succeeded" | "Failed" | "BackoffLimitOnFailure"): JobStatus {
    const next = { ...status, active: 0, conditions: [...status.conditions] };
    if (outcome === "Succeeded") {
        next.succeeded++;
        next.completionTime = Date.now();
        next.conditions.push({ type: "Complete", status: "True" });
        return next;
    }
    next.failed++;
    if (outcome === "BackoffLimitOnFailure" || next.failed > backoffLimit(spec)) next.conditions.push(BACKOFF_LIMIT_EXCEEDED);
    return next;
}

export function finished(status: JobStatus | undefined): "Complete" | "Failed" | undefined {
    return status?.conditions.find((c) => c.status === "True")?.type;
}

/** The provider's words for a failed Job (provider/pkg/await/states/job.go collectJobConditionErrors). */
export function jobFailure(status: JobStatus | undefined): string | undefined {
    const failed = status?.conditions.find((c) => c.type === "Failed" && c.status === "True");
    if (!failed || (failed.reason !== "BackoffLimitExceeded" && failed.reason !== "DeadlineExceeded")) return undefined;
    return `[${failed.reason}] ${failed.message}`;
}
