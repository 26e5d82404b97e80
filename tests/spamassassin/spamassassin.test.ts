// The SpamAssassin component and its wiring in MailStack, under mocks: Dovecot scores through the spamd Service,
// the training CronJob runs beside Dovecot's mail volume, spamd is fenced to its clients; plus the renderers.
import * as pulumi from "@pulumi/pulumi";
import { schemaErrors } from "../kit/k8s-schema";
import { CLOUD_MAIL_CONFIG as mail, stackObjectLookup } from "../kit/stack-objects";
import { ProgramRun, runProgram } from "../kit/program";
import { loadConfig } from "../../components/config/load";
import { renderDovecot } from "../../components/dovecot/config";
import { SPAMASSASSIN_DEFAULTS, SPAMD_LISTENERS, SPAM_SCAN_MAX_BYTES, renderSpamAssassin, spamdArgs } from "../../components/spamassassin/config";
import { dovecotTestSettings, spamassassinTestSettings } from "../kit/settings";

type Obj = { kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any

const { find, get } = stackObjectLookup<Obj>();

describe("MailStack with spam filtering (default)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({
            ...mail,
            spamRequiredScore: "6.5",
            spamMaxChildren: 3,
            spamClusterNetworks: ["10.244.0.0/16"],
            spamTrainSchedule: "15 2 * * *",
        });
    });

    it("is schema-valid and parented under MailStack", () => {
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        expect(run.recorder.one("mail:index:SpamAssassin").parent).toBe(run.recorder.urnOf(run.recorder.one("mail:index:MailStack")));
    });

    it("runs spamd with the configured threshold, children and networks, per-user data on its own volume", () => {
        const sts = get(run, "StatefulSet", "spamassassin");
        const c = sts.spec.template.spec.containers[0];
        expect(c.args).toEqual(
            expect.arrayContaining([
                `--listen=0.0.0.0:${SPAMD_LISTENERS.spamd.port}`,
                "--allowed-ips=127.0.0.1,10.244.0.0/16",
                "--allow-tell",
                "--max-children=3",
                `--virtual-config-dir=${SPAMASSASSIN_DEFAULTS.dataDir}/users/%u`,
            ]),
        );
        expect(c.volumeMounts).toContainEqual({ name: "data", mountPath: SPAMASSASSIN_DEFAULTS.dataDir });
        expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe("data");
        expect(c.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 5001, readOnlyRootFilesystem: true });
        expect(c.resources.limits.memory).toBe("384Mi");
        expect(c.readinessProbe.exec.command).toEqual(["spamc", "-d", "127.0.0.1", "-p", String(SPAMD_LISTENERS.spamd.port), "-K"]);
        const cf = get(run, "ConfigMap", "spamassassin-config").data!["mail.cf"];
        expect(cf).toMatch(/^required_score 6\.5$/m);
        expect(cf).toMatch(/^trusted_networks 10\.244\.0\.0\/16$/m);
        expect(cf).toMatch(/^report_safe 0$/m);
        // Learning goes to the journal, not through the database's write lock at every scan.
        expect(cf).toMatch(/^bayes_learn_to_journal 1$/m);
        expect(cf).toMatch(/^lock_method flock$/m);
    });

    it("points Dovecot's scan and learn programs at the spamd Service, with the spam step before the user's scripts", () => {
        const service = get(run, "Service", "spamassassin");
        expect(service.spec.ports).toEqual([{ name: "spamd", port: SPAMD_LISTENERS.spamd.port, targetPort: "spamd", protocol: "TCP" }]);
        const files = get(run, "ConfigMap", "dovecot-config").data!;
        expect(files["spamc.conf"]).toContain(`-d ${service.metadata.name}\n-p ${SPAMD_LISTENERS.spamd.port}\n`);
        // spamc hands spamd nothing larger than spamd's memory limit was measured for (larger mail is delivered unscored).
        expect(files["spamc.conf"]).toMatch(new RegExp(`^-s ${SPAM_SCAN_MAX_BYTES}$`, "m"));
        const conf = files["dovecot.conf"];
        // spam.sieve, then couchmail's script (the dict one), then the user's own.
        const order = ["sieve_script spam ", "driver = dict", "sieve_script personal"].map((s) => conf.indexOf(s));
        expect(order.every((i, n) => i >= 0 && (n === 0 || i > order[n - 1]))).toBe(true);
        expect(files["spam.sieve"]).toMatch(/filter "spam-scan";[\s\S]*X-Spam-Flag[\s\S]*fileinto :create "Junk";\s*stop;/);
        expect(conf).toContain("sieve_filter_bin_dir = /usr/local/lib/mail/filter");
        expect(conf).toContain("sieve_pipe_bin_dir = /usr/local/lib/mail/learn");
    });

    it("admits only Dovecot and the training job to spamd", () => {
        const policy = get(run, "NetworkPolicy", "spamassassin");
        expect(policy.spec.podSelector.matchLabels["app.kubernetes.io/name"]).toBe("spamassassin");
        expect(policy.spec.ingress).toEqual([
            {
                ports: [{ port: SPAMD_LISTENERS.spamd.port, protocol: "TCP" }],
                from: [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: ["dovecot", "spam-train"] }] } }],
            },
        ]);
        const job = get(run, "CronJob", "spam-train");
        expect(job.spec.jobTemplate.spec.template.metadata.labels["app.kubernetes.io/name"]).toBe("spam-train");
    });

    it("schedules the nightly training beside Dovecot's mail volume, as the mail's owner", () => {
        const job = get(run, "CronJob", "spam-train");
        expect(job.spec.schedule).toBe("15 2 * * *");
        expect(job.spec.concurrencyPolicy).toBe("Forbid");
        const pod = job.spec.jobTemplate.spec.template.spec;
        const dovecot = get(run, "StatefulSet", "dovecot");
        // The claim Kubernetes creates for Dovecot's pod 0: <template>-<statefulset>-0.
        expect(pod.volumes).toEqual([
            { name: "mail", persistentVolumeClaim: { claimName: `${dovecot.spec.volumeClaimTemplates[0].metadata.name}-dovecot-0` } },
        ]);
        const dovecotMailMount = dovecot.spec.template.spec.containers[0].volumeMounts.find((m: { name: string }) => m.name === "mail").mountPath;
        const c = pod.containers[0];
        expect(c.volumeMounts).toEqual([{ name: "mail", mountPath: dovecotMailMount }]);
        expect(c.env).toEqual(
            expect.arrayContaining([
                { name: "MAIL_ROOT", value: dovecotMailMount },
                { name: "SPAMD_HOST", value: "spamassassin" },
                { name: "SPAMD_PORT", value: String(SPAMD_LISTENERS.spamd.port) },
            ]),
        );
        expect(c.securityContext).toMatchObject({ runAsUser: 5000, runAsNonRoot: true });
        const term = pod.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution[0];
        expect(term.topologyKey).toBe("kubernetes.io/hostname");
        // The selector matches Dovecot's pods.
        for (const [k, v] of Object.entries(term.labelSelector.matchLabels)) expect(dovecot.spec.template.metadata.labels[k]).toBe(v);
    });
});

describe("MailStack with spamEnabled false", () => {
    it("has no spamd, no training job, and Dovecot neither scans nor learns", async () => {
        const run = await runProgram({ ...mail, spamEnabled: false });
        expect(run.recorder.resources.filter((r) => r.type === "mail:index:SpamAssassin")).toEqual([]);
        expect(find(run, "CronJob", "spam-train")).toBeUndefined();
        const files = get(run, "ConfigMap", "dovecot-config").data!;
        expect(Object.keys(files)).toEqual(["dovecot.conf"]);
        expect(files["dovecot.conf"]).not.toMatch(/spam|imapsieve|extprograms/);
    });
});

describe("spam config keys", () => {
    const load = (values: Record<string, unknown>) => {
        pulumi.runtime.setAllConfig(
            Object.fromEntries(Object.entries({ ...mail, ...values }).map(([k, v]) => [`mail:${k}`, typeof v === "string" ? v : JSON.stringify(v)])),
        );
        return loadConfig();
    };
    it("defaults fit a micro node", () => {
        expect(load({}).services.spam).toEqual({
            enabled: true,
            requiredScore: 5,
            maxChildren: 2,
            clusterNetworks: ["10.0.0.0/8"],
            trainSchedule: "30 3 * * *",
        });
    });
    it.each([
        [{ spamRequiredScore: "high" }, 'mail:spamRequiredScore = "high" is not allowed: expected a score from 1 to 50 such as 5.0'],
        [{ spamMaxChildren: 0 }, 'mail:spamMaxChildren = "0" is not allowed: expected a whole number from 1 to 20'],
        [{ spamClusterNetworks: ["10.0.0.0"] }, 'mail:spamClusterNetworks[0] = "10.0.0.0" is not allowed: expected a CIDR network such as 10.0.0.0/8'],
        [{ spamTrainSchedule: "nightly" }, 'mail:spamTrainSchedule = "nightly" is not allowed: expected a cron schedule of five fields such as "30 3 * * *"'],
    ])("rejects %j", (values, message) => {
        expect(() => load(values)).toThrow(message);
    });
});

describe("renderers", () => {
    it("spamd: validates settings, naming the field", () => {
        expect(() => renderSpamAssassin({ ...spamassassinTestSettings, requiredScore: 0 })).toThrow(/requiredScore/);
        expect(() => spamdArgs({ ...spamassassinTestSettings, maxChildren: 0 })).toThrow(/maxChildren/);
        expect(() => spamdArgs({ ...spamassassinTestSettings, clusterNetworks: [] })).toThrow(/clusterNetworks/);
        expect(() => spamdArgs({ ...spamassassinTestSettings, clusterNetworks: ["any"] })).toThrow(/clusterNetworks\[0\]/);
    });

    it("Dovecot: scanning without filing tags only; filing without scanning files on an existing flag", () => {
        const scan = { filterBinDir: "/f", spamdHost: "spamassassin", spamdPort: SPAMD_LISTENERS.spamd.port, timeoutSeconds: 30 };
        const onlyScan = renderDovecot({ ...dovecotTestSettings, hostname: "mail.example.com", spamScan: scan })["spam.sieve"];
        expect(onlyScan).toContain('filter "spam-scan";');
        expect(onlyScan).not.toContain("fileinto");
        const onlyFile = renderDovecot({ ...dovecotTestSettings, hostname: "mail.example.com", spamToJunk: true });
        expect(onlyFile["spam.sieve"]).not.toContain("filter");
        expect(onlyFile["spamc.conf"]).toBeUndefined();
        expect(() => renderDovecot({ ...dovecotTestSettings, hostname: "mail.example.com", spamScan: { ...scan, timeoutSeconds: 1 } })).toThrow(
            /spamScan\.timeoutSeconds/,
        );
    });
});
