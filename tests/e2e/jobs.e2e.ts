// Jobs on the loopback node, under runc: a CronJob of the program run now as `kubectl create job --from=cronjob/…`
// does (its pod mounts Dovecot's mail volume), and a Job whose pod fails: retried after the Job controller's
// back-off, then failed with BackoffLimitExceeded — what the provider's Job await reports.
import * as fs from "fs";
import { describe, test } from "node:test";
import assert from "node:assert/strict";
import { finished, jobFailure, POD_FAILURE_BACKOFF_MS } from "./jobcontroller";
import { cluster, loopbackOnly } from "./suite";
import { OTHER_NAMESPACE, PROBE_IMAGE, restricted } from "./testpods";

const skip = loopbackOnly("runs Jobs through the loopback node's Job controller");

describe("Jobs on the node", () => {
    test("the spam-train CronJob's Job runs now (create job --from=cronjob) and completes", { skip }, async () => {
        const c = cluster();
        const status = await c.runJobFromCronJob("spam-train", `spam-train-manual-${Date.now() % 100000}`);
        assert.equal(finished(status), "Complete", JSON.stringify(status));
        assert.equal(status.succeeded, 1);
    });

    test("a Job whose pod exits 3 is retried after the back-off, then fails with BackoffLimitExceeded", { skip }, async () => {
        const c = cluster();
        const name = `failing-${Date.now() % 100000}`;
        const labels = { "app.kubernetes.io/name": "failing", "app.kubernetes.io/part-of": "e2e-tests" };
        const started = Date.now();
        const status = await c.runJob({
            kind: "Job",
            metadata: { name, namespace: OTHER_NAMESPACE, labels },
            spec: {
                backoffLimit: 1,
                template: {
                    metadata: { labels },
                    spec: {
                        restartPolicy: "Never",
                        automountServiceAccountToken: false,
                        containers: [
                            {
                                name: "fail",
                                image: PROBE_IMAGE,
                                command: ["sh", "-c", "echo attempt; exit 3"],
                                securityContext: restricted,
                                resources: { limits: { memory: "32Mi" }, requests: { cpu: "5m", memory: "8Mi" } },
                            },
                        ],
                    },
                },
            },
        });
        assert.equal(jobFailure(status), "[BackoffLimitExceeded] Job has reached the specified backoff limit");
        assert.deepEqual({ failed: status.failed, succeeded: status.succeeded, active: status.active }, { failed: 2, succeeded: 0, active: 0 });
        assert.ok(Date.now() - started >= POD_FAILURE_BACKOFF_MS, "the second pod came before the pod-failure back-off");
        const pod = c.status()[name];
        assert.equal(pod.phase, "Failed");
        assert.deepEqual(pod.containers.fail.lastState && { reason: pod.containers.fail.lastState.reason, exitCode: pod.containers.fail.lastState.exitCode }, {
            reason: "Error",
            exitCode: 3,
        });
        assert.equal(fs.readFileSync(pod.containers.fail.log, "utf8").match(/^attempt$/gm)?.length, 2);
    });
});
