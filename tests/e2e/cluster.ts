// The e2e cluster as the runner sees it: the program's objects (apiobjects.ts), the private network on this machine
// (nodenetwork.ts), and a client of the e2e kubelet (kubelet.ts), which runs the pods with runc. Pod status is the
// kubelet's .e2e/status.json; `exec` is `kubectl exec` (runc exec).
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import type { JobStatus } from "./jobcontroller";
import type { PodStatus } from "./kubelet";
import { E2E_DIR, JOBS_FILE, KUBELET_SOCKET, STATUS_FILE } from "./layout";
import { NodeNetwork } from "./nodenetwork";
import type { KubeObject } from "./program";
import { cgroupPids, RUNC_ROOT } from "./runtime";

interface HelperState {
    helpers: Record<string, { leader: number; log: string }>;
}

export class Cluster extends NodeNetwork {
    static load(): Cluster {
        const saved = JSON.parse(fs.readFileSync(path.join(E2E_DIR, "objects.json"), "utf8"));
        return new Cluster(saved.objects);
    }

    // ---- the kubelet ---------------------------------------------------------------------------------------

    /** Pods as the kubelet last reported them. */
    status(): Record<string, PodStatus> {
        try {
            return JSON.parse(fs.readFileSync(STATUS_FILE, "utf8"));
        } catch {
            return {};
        }
    }

    /** Jobs as the node's Job controller last reported them. */
    jobs(): Record<string, JobStatus> {
        try {
            return JSON.parse(fs.readFileSync(JOBS_FILE, "utf8"));
        } catch {
            return {};
        }
    }

    private call(op: string, args: Record<string, unknown>): Promise<void> {
        return new Promise((resolve, reject) => {
            const req = http.request({ socketPath: KUBELET_SOCKET, path: `/${op}`, method: "POST" }, (res) => {
                let body = "";
                res.on("data", (d) => (body += d));
                res.on("end", () => {
                    const r = JSON.parse(body);
                    if (r.ok) resolve();
                    else reject(new Error(r.error));
                });
            });
            req.on("error", reject);
            req.end(JSON.stringify(args));
        });
    }

    /**
     * `kubectl create job NAME --from=cronjob/CRONJOB`, then wait: a Job made from the CronJob's jobTemplate as
     * kubectl builds it (staging/src/k8s.io/kubectl/pkg/cmd/create/create_job.go createJobFromCronJob: the
     * template's labels and annotations plus `cronjob.kubernetes.io/instantiate: manual`, its spec), created in the
     * API and run by the node's Job controller. Resolves with the Job's final status.
     */
    async runJobFromCronJob(cronJobName: string, jobName: string): Promise<JobStatus> {
        const cronJob = this.find("CronJob", cronJobName);
        if (!cronJob) throw new Error(`cronjobs.batch "${cronJobName}" not found`);
        const template = cronJob.spec.jobTemplate;
        const job: KubeObject = {
            kind: "Job",
            metadata: {
                name: jobName,
                namespace: cronJob.metadata.namespace,
                labels: template.metadata?.labels,
                annotations: { ...(template.metadata?.annotations ?? {}), "cronjob.kubernetes.io/instantiate": "manual" },
            },
            spec: template.spec,
        };
        return this.runJob(job);
    }

    /** Creates a Job in the API (kept in objects.json) and has the node's Job controller run it; resolves with its final status. */
    async runJob(job: KubeObject): Promise<JobStatus> {
        this.upsert(job);
        this.save(JSON.parse(fs.readFileSync(path.join(E2E_DIR, "objects.json"), "utf8")).outputs);
        await this.applyToNode(job);
        await this.startPod(job.metadata.name);
        return this.jobs()[job.metadata.name];
    }

    /** Starts a pod; resolves when it is Ready (a Job's: when the Job finished). */
    startPod(name: string): Promise<void> {
        return this.call("startPod", { name });
    }

    /** Deletes a pod (grace period, main containers first, then sidecars); its claims stay. */
    stopPod(name: string): Promise<void> {
        return this.call("stopPod", { name });
    }

    /** A container crashes (SIGKILL to its init); the kubelet restarts it per restartPolicy and back-off. */
    crashContainer(pod: string, container: string): Promise<void> {
        return this.call("crash", { pod, container });
    }

    /** Creates or replaces an object on the node (the kubelet refreshes running pods' names and firewalls). */
    applyToNode(obj: KubeObject): Promise<void> {
        return this.call("apply", { object: obj });
    }

    /** Replaces a ConfigMap's data; the kubelet rewrites every volume that mounts it (the `..data` swap). */
    updateConfigMap(name: string, data: Record<string, string>): Promise<void> {
        this.setConfigMap(name, data);
        return this.call("updateConfigMap", { name, data });
    }

    shutdownKubelet(): Promise<void> {
        return this.call("shutdown", {});
    }

    /** `kubectl exec`: the runtime's exec (runc exec: the container's namespaces, cgroup, user, capabilities, seccomp, env). */
    exec(pod: string, ctr: string, argv: string[], opts: { input?: string; timeoutMs?: number; env?: Record<string, string> } = {}) {
        const c = this.status()[pod]?.containers[ctr];
        if (!c?.running) return { code: -1, stdout: "", stderr: `container ${pod}/${ctr} is not running` };
        const env = Object.entries(opts.env ?? {}).flatMap(([k, v]) => ["--env", `${k}=${v}`]);
        const r = spawnSync("runc", ["--root", RUNC_ROOT, "exec", ...env, c.id, ...argv], {
            encoding: "utf8",
            input: opts.input ?? "",
            timeout: opts.timeoutMs ?? 30_000,
            killSignal: "SIGKILL",
        });
        return { code: r.status ?? -1, stdout: r.stdout ?? "", stderr: (r.stderr ?? "") + (r.error ? String(r.error) : "") };
    }

    /** The processes of a pod's containers (their cgroups), for memory accounting. */
    podProcesses(pod: string): number[] {
        return Object.values(this.status()[pod]?.containers ?? {}).flatMap((c) => cgroupPids(c.cgroup));
    }

    // ---- helpers outside the pods (the pseudo-internet, the kubelet) ---------------------------------------

    helperState(): HelperState {
        const file = path.join(E2E_DIR, "helpers.json");
        return fs.existsSync(file) ? JSON.parse(fs.readFileSync(file, "utf8")) : { helpers: {} };
    }

    saveHelper(name: string, leader: number | undefined, log: string): void {
        const st = this.helperState();
        if (leader === undefined) delete st.helpers[name];
        else st.helpers[name] = { leader, log };
        fs.mkdirSync(E2E_DIR, { recursive: true });
        fs.writeFileSync(path.join(E2E_DIR, "helpers.json"), JSON.stringify(st, null, 2));
    }
}
