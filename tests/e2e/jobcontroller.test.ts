// The node's Job controller decisions (jobcontroller.ts) against kubernetes pkg/controller/job/job_controller.go.
import { afterPod, backoffLimit, finished, jobFailure, jobRestartPolicy, JobStatus, pastBackoffLimitOnFailure, podFailureBackoffMs } from "./jobcontroller";

const spec = (restartPolicy: string | undefined, limit?: number) => ({
    ...(limit === undefined ? {} : { backoffLimit: limit }),
    template: { spec: { restartPolicy } },
});
const fresh: JobStatus = { startTime: 1, active: 1, succeeded: 0, failed: 0, conditions: [] };

describe("Job controller", () => {
    test("a Job's pods must not restart Always (the API server's validation)", () => {
        expect(jobRestartPolicy(spec("Never"))).toBe("Never");
        expect(() => jobRestartPolicy(spec("Always"))).toThrow(/restartPolicy: Required value: valid values: "OnFailure", "Never"/);
        expect(() => jobRestartPolicy(spec(undefined))).toThrow(/restartPolicy/);
    });

    test("backoffLimit defaults to 6; failed pods count until failed > backoffLimit", () => {
        expect(backoffLimit(spec("Never"))).toBe(6);
        let status = fresh;
        for (let i = 0; i < 6; i++) status = afterPod(spec("Never"), status, "Failed");
        expect(status).toMatchObject({ failed: 6, active: 0, conditions: [] });
        status = afterPod(spec("Never"), status, "Failed");
        expect(finished(status)).toBe("Failed");
        expect(jobFailure(status)).toBe("[BackoffLimitExceeded] Job has reached the specified backoff limit");
    });

    test("backoffLimit 0: the first failed pod fails the Job; a succeeded pod completes it", () => {
        expect(jobFailure(afterPod(spec("Never", 0), fresh, "Failed"))).toMatch(/BackoffLimitExceeded/);
        const done = afterPod(spec("Never", 0), fresh, "Succeeded");
        expect(done).toMatchObject({ succeeded: 1, active: 0, conditions: [{ type: "Complete", status: "True" }] });
        expect(jobFailure(done)).toBeUndefined();
    });

    test("OnFailure: container restarts of the running pod count (any restart when backoffLimit is 0)", () => {
        expect(pastBackoffLimitOnFailure(spec("OnFailure", 2), 1)).toBe(false);
        expect(pastBackoffLimitOnFailure(spec("OnFailure", 2), 2)).toBe(true);
        expect(pastBackoffLimitOnFailure(spec("OnFailure", 0), 1)).toBe(true);
        expect(pastBackoffLimitOnFailure(spec("Never", 0), 5)).toBe(false);
        expect(jobFailure(afterPod(spec("OnFailure", 2), fresh, "BackoffLimitOnFailure"))).toMatch(/BackoffLimitExceeded/);
    });

    test("pod-failure back-off: 10 s doubling, at most 10 minutes", () => {
        expect([0, 1, 2, 3, 7, 20].map(podFailureBackoffMs)).toEqual([0, 10_000, 20_000, 40_000, 600_000, 600_000]);
    });
});
