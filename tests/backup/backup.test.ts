// The backup's pure parts (repository locations, credentials, the jobs' doveadm config) and the Backup component
// under mocks: schema-valid objects, restricted pods beside Dovecot's mail volume, traffic only to CouchDB and the
// repository. The scripts themselves run against real Dovecot in backup.int.test.ts.
import { BACKUP_PATHS, parseBackupCredentials, renderBackupDovecot, repositoryLocation } from "../../components/backup/config";
import { DOVECOT_DEFAULTS, renderDovecot } from "../../components/dovecot/config";
import { dovecotTestSettings } from "../kit/settings";
import { deployProgram } from "../kit/cluster/deploy";
import { clusterProfile } from "../kit/cluster/profiles";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { runProgram } from "../kit/program";
import { checkPod } from "../kit/cluster/psa";
import type { MockRecorder } from "../kit/mocks";

type Obj = { kind: string; metadata: { name: string; labels?: Record<string, string> }; spec?: any; stringData?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any

describe("repositoryLocation", () => {
    test.each([
        ["s3:https://ams3.digitaloceanspaces.com/bucket/mail", [443]],
        ["s3:s3.amazonaws.com/bucket", [443]],
        ["s3:http://minio.storage:9000/bucket", [9000]],
        ["rest:http://backup.example.net:8000/mail", [8000]],
        ["rest:https://user:pass@backup.example.net/", [443]],
        ["sftp:backup@host.example.net:/srv/restic", [22]],
        ["sftp://backup@host.example.net:2222//srv/restic", [2222]],
        ["b2:bucket:mail", [443]],
        ["gs:bucket:/mail", [443]],
        ["azure:container:/mail", [443]],
    ])("%s: the job reaches port %j", (repository, ports) => {
        expect(repositoryLocation(repository)).toMatchObject({ kind: "remote", ports });
    });

    test("a local path is a volume: no traffic", () => {
        expect(repositoryLocation("/backup/repository/")).toEqual({ kind: "local", path: "/backup/repository" });
    });

    test.each(["", "bucket/mail", "s3:", "s3:/bucket", "rest:backup:8000/", "ftp:host:/x", "/backup/../etc", "gs:"])(
        "%j is refused, naming the key and what it accepts",
        (repository) => {
            expect(() => repositoryLocation(repository)).toThrow(
                /^backupRepository: expected a restic repository: \/absolute\/path .*s3:https:\/\/host\/bucket/,
            );
        },
    );
});

describe("parseBackupCredentials", () => {
    test("NAME=value lines of restic's variables; comments and blank lines skipped; '=' allowed in values", () => {
        expect(parseBackupCredentials("# DigitalOcean Spaces\nAWS_ACCESS_KEY_ID=DO00KEY\n\nAWS_SECRET_ACCESS_KEY=abc=def\n")).toEqual({
            AWS_ACCESS_KEY_ID: "DO00KEY",
            AWS_SECRET_ACCESS_KEY: "abc=def",
        });
        expect(parseBackupCredentials("")).toEqual({});
    });

    test("an unknown name is refused by line and name, never echoing the value", () => {
        let message = "";
        try {
            parseBackupCredentials("AWS_ACCESS_KEY_ID=x\nAWS_SECRET=supersecret");
        } catch (e) {
            message = (e as Error).message;
        }
        expect(message).toMatch(/^backupCredentials line 2: expected NAME=value lines with NAME one of AWS_ACCESS_KEY_ID, .*got "AWS_SECRET"$/);
        expect(message).not.toContain("supersecret");
        expect(() => parseBackupCredentials("just-a-token")).toThrow(/line 1: .*got "\(no NAME=\)"/);
        expect(() => parseBackupCredentials("B2_ACCOUNT_ID=a\nB2_ACCOUNT_ID=b")).toThrow(/line 2: expected each NAME once, got "B2_ACCOUNT_ID"/);
    });
});

describe("renderBackupDovecot", () => {
    const settingLines = (conf: string, names: string[]) => conf.split("\n").filter((l) => names.some((n) => l.startsWith(`${n} =`)));
    const layout = ["mail_home", "mail_driver", "mail_path", "dovecot_storage_version", "mail_uid", "mail_gid"];

    test.each(["maildir", "sdbox"] as const)("finds mail where the live Dovecot keeps it (%s)", (mailDriver) => {
        const live = renderDovecot({ ...dovecotTestSettings, mailDriver })["dovecot.conf"];
        const jobs = renderBackupDovecot({ ...DOVECOT_DEFAULTS, mailDriver })["dovecot.conf"];
        expect(settingLines(jobs, layout)).toEqual(settingLines(live, layout));
        expect(jobs).toMatch(/namespace inbox \{\n {2}inbox = yes\n {2}separator = \/\n\}/);
        expect(live).toMatch(/namespace inbox \{\n {2}inbox = yes\n {2}separator = \//);
    });

    test("serves no protocol and keeps its runtime files in the job's /tmp", () => {
        const conf = renderBackupDovecot(DOVECOT_DEFAULTS)["dovecot.conf"];
        expect(conf).toMatch(/^protocols =$/m);
        expect(conf).toMatch(/^base_dir = \/tmp\//m);
        expect(conf).toMatch(/^state_dir = \/tmp\//m);
    });
});

describe("Backup component", () => {
    let recorder: MockRecorder;
    const objects = () => kubernetesObjects(recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
    const get = (kind: string, name: string) =>
        objects().find((o) => o.kind === kind && o.metadata.name === name) ??
        (() => {
            throw new Error(`no ${kind} ${name}`);
        })();

    async function deploy(repository: string): Promise<void> {
        await jest.isolateModulesAsync(async () => {
            const mocks = await import("../kit/mocks");
            recorder = await mocks.MockRecorder.install({});
            const { Backup } = await import("../../components/backup");
            new Backup("backup", {
                namespace: "mail",
                image: "mail/backup:dev",
                imagePullPolicy: "IfNotPresent",
                schedule: "0 2 * * *",
                repository,
                password: "repo-password",
                credentials: { AWS_ACCESS_KEY_ID: "key", AWS_SECRET_ACCESS_KEY: "secret" },
                mail: {
                    claimName: "mail-dovecot-0",
                    root: "/var/mail",
                    driver: "maildir",
                    uid: 5000,
                    size: "10Gi",
                    podSelector: { "app.kubernetes.io/name": "dovecot", "app.kubernetes.io/instance": "mail" },
                },
                couchdb: { url: "http://couchdb.mail.svc:5984", adminSecretName: "couchdb-admin", database: "mail", port: 5984, app: "couchdb" },
            });
            let last = -1;
            for (let quiet = 0; quiet < 5; quiet = recorder.resources.length === last ? quiet + 1 : 0) {
                last = recorder.resources.length;
                await new Promise((r) => setTimeout(r, 20));
            }
        });
    }

    const jobPod = (name: string) => get("CronJob", name).spec.jobTemplate.spec.template;

    describe("with a bucket", () => {
        beforeAll(() => deploy("s3:https://ams3.digitaloceanspaces.com/bucket/mail"));

        test("every object is schema-valid", () => {
            expect(schemaErrors(recorder.resources)).toEqual([]);
        });

        test("the backup runs nightly, never twice at once; the restore only when started by hand", () => {
            const backup = get("CronJob", "mail-backup");
            expect(backup.spec).toMatchObject({ schedule: "0 2 * * *", concurrencyPolicy: "Forbid" });
            expect(backup.spec.suspend).toBeUndefined();
            expect(jobPod("mail-backup").spec.containers[0].command).toEqual(["/usr/local/bin/mail-backup"]);
            const restore = get("CronJob", "mail-restore");
            expect(restore.spec.suspend).toBe(true);
            expect(restore.spec.jobTemplate.spec.backoffLimit).toBe(0);
            expect(jobPod("mail-restore").spec.containers[0].command).toEqual(["/usr/local/bin/mail-restore"]);
        });

        test.each(["mail-backup", "mail-restore"])("%s: restricted Pod Security, as the mail's owner, on Dovecot's node with its volume", (name) => {
            const pod = jobPod(name);
            expect(checkPod("restricted", pod)).toEqual([]);
            const spec = pod.spec;
            expect(spec.containers[0].securityContext).toMatchObject({ runAsUser: 5000, runAsGroup: 5000, readOnlyRootFilesystem: true });
            expect(spec.affinity.podAffinity.requiredDuringSchedulingIgnoredDuringExecution).toEqual([
                {
                    labelSelector: { matchLabels: { "app.kubernetes.io/name": "dovecot", "app.kubernetes.io/instance": "mail" } },
                    topologyKey: "kubernetes.io/hostname",
                },
            ]);
            expect(spec.volumes).toContainEqual({ name: "mail", persistentVolumeClaim: { claimName: "mail-dovecot-0" } });
            expect(spec.containers[0].volumeMounts).toContainEqual({ name: "config", mountPath: BACKUP_PATHS.config, readOnly: true });
            expect(spec.containers[0].envFrom).toEqual([{ secretRef: { name: "backup-repository" } }]);
            expect(spec.containers[0].env).toContainEqual({
                name: "COUCHDB_PASSWORD",
                valueFrom: { secretKeyRef: { name: "couchdb-admin", key: "password" } },
            });
        });

        test("the repository, its password and credentials are one Secret, marked secret in the state", () => {
            expect(get("Secret", "backup-repository").stringData).toEqual({
                RESTIC_REPOSITORY: "s3:https://ams3.digitaloceanspaces.com/bucket/mail",
                RESTIC_PASSWORD: "repo-password",
                AWS_ACCESS_KEY_ID: "key",
                AWS_SECRET_ACCESS_KEY: "secret",
            });
            const raw = recorder.resources.find((r) => r.type === "kubernetes:core/v1:Secret" && r.name === "backup-repository")!;
            // Pulumi's secret wrapper: the inputs were plain strings here, and the provider's Secret still keeps them secret.
            expect(JSON.stringify(raw.inputs.stringData)).toContain("4dabf18193072939515e22adb298388d");
        });

        test("the jobs may reach only CouchDB and the repository's port", () => {
            for (const name of ["mail-backup", "mail-restore"]) {
                const policy = get("NetworkPolicy", name);
                expect(policy.spec.podSelector.matchLabels["app.kubernetes.io/name"]).toBe(name);
                expect(policy.spec.ingress).toEqual([]);
                expect(policy.spec.egress.slice(1)).toEqual([
                    {
                        ports: [{ port: 5984, protocol: "TCP" }],
                        to: [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: ["couchdb"] }] } }],
                    },
                    { ports: [{ port: 443, protocol: "TCP" }] },
                ]);
            }
            expect(objects().filter((o) => o.kind === "PersistentVolumeClaim")).toEqual([]);
        });
    });

    describe("with a local repository", () => {
        beforeAll(() => deploy("/backup-repository"));

        test("the repository is a volume of its own, mounted where the path says, and no traffic leaves for it", () => {
            expect(schemaErrors(recorder.resources)).toEqual([]);
            expect(get("PersistentVolumeClaim", "backup-repository").spec.resources.requests.storage).toBe("10Gi");
            const spec = jobPod("mail-backup").spec;
            expect(spec.containers[0].volumeMounts).toContainEqual({ name: "repository", mountPath: "/backup-repository" });
            expect(spec.volumes).toContainEqual({ name: "repository", persistentVolumeClaim: { claimName: "backup-repository" } });
            expect(get("NetworkPolicy", "mail-backup").spec.egress).toHaveLength(2);
        });
    });
});

describe("the program with backups on", () => {
    const base = { clusterProvider: "digitalocean", "digitalocean:token": "mock-do-token", mailHostname: "mail.example.com", mailDomains: ["example.com"] };
    const withBackups = {
        ...base,
        backupRepository: "s3:https://ams3.digitaloceanspaces.com/bucket/mail",
        backupPassword: "repo-password",
        backupCredentials: "AWS_ACCESS_KEY_ID=key\nAWS_SECRET_ACCESS_KEY=secret",
    };

    test.each([
        ["a bucket, one node", withBackups],
        ["a bucket, two nodes", { ...withBackups, clusterNodeCount: 2 }],
        ["a local repository", { ...withBackups, backupRepository: "/backup-repository", backupCredentials: "" }],
    ])("%s: deploys under the engine model, and each job's pod would be admitted and scheduled beside Dovecot", async (_, config) => {
        const result = await deployProgram(config, { profile: clusterProfile(config, {}), quietMs: 20 });
        expect(result.programErrors).toEqual([]);
        expect(result.failures).toEqual([]);
        expect(schemaErrors(result.resources)).toEqual([]);
        const objects = kubernetesObjects(result.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
        expect(
            objects
                .filter((o) => o.kind === "CronJob")
                .map((o) => o.metadata.name)
                .sort(),
        ).toEqual(["mail-backup", "mail-restore", "spam-train"]);
        // CouchDB admits the jobs.
        const couchdbPolicy = objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === "couchdb")!;
        expect(JSON.stringify(couchdbPolicy.spec.ingress)).toMatch(/"mail-backup","mail-restore"/);
    });

    test("without backupRepository there is no backup, and CouchDB admits no backup job", async () => {
        const run = await runProgram(base);
        const objects = kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
        expect(objects.filter((o) => o.kind === "CronJob").map((o) => o.metadata.name)).toEqual(["spam-train"]);
        expect(JSON.stringify(objects.find((o) => o.kind === "NetworkPolicy" && o.metadata.name === "couchdb")!.spec.ingress)).not.toMatch(/mail-backup/);
    });

    test.each([
        [{ backupRepository: "bucket/mail", backupPassword: "p" }, /^mail:backupRepository = "bucket\/mail" is not allowed: expected a restic repository: /],
        [{ backupRepository: "b2:bucket:mail" }, /^mail:backupRepository = "b2:bucket:mail" needs mail:backupPassword/],
        [{ backupPassword: "p" }, /^mail:backupRepository is required when backupPassword or backupCredentials is set/],
        [
            { backupRepository: "b2:bucket:mail", backupPassword: "p", backupSchedule: "nightly" },
            /^mail:backupSchedule = "nightly" is not allowed: expected a cron schedule/,
        ],
    ])("%j is refused at preview, naming the key", async (extra, message) => {
        await expect(runProgram({ ...base, ...extra })).rejects.toThrow(message);
    });

    test("credentials with an unknown variable fail the preview by line, without the value", async () => {
        await expect(runProgram({ ...withBackups, backupCredentials: "AWS_ACCESS_KEY_ID=key\nAWS_SECRET=hunter2" })).rejects.toThrow(
            /^mail:backupCredentials line 2: expected NAME=value lines with NAME one of .*got "AWS_SECRET"$/,
        );
    });
});
