// The Job that makes the datastore match the stack's config (couchmail sync): what it runs, how it is secured and
// reached, when a deploy runs it again, and the addFirstUser command that follows it.
import { firstUserCommand, syncJobName } from "../../components/couchmail/sync";
import { BUDGET } from "../../components/kube";
import { kubernetesObjects, schemaErrors, unwrapSecrets } from "../kit/k8s-schema";
import { fakeKubeconfig, ProgramRun, runProgram } from "../kit/program";

type Obj = { kind: string; metadata: { name: string; annotations?: Record<string, string> }; spec?: any }; // eslint-disable-line @typescript-eslint/no-explicit-any

const base = {
    clusterProvider: "kubeconfig",
    clusterKubeconfig: fakeKubeconfig(),
    mailHostname: "mail.example.com",
    mailDomains: ["example.com", "example.org"],
};

const objects = (run: ProgramRun) => kubernetesObjects(run.recorder.resources).map((r) => unwrapSecrets(r.inputs) as Obj);
const syncJobs = (run: ProgramRun) => objects(run).filter((o) => o.kind === "Job" && o.metadata.name.startsWith("couchmail-sync-"));
const policy = (run: ProgramRun, name: string) => objects(run).find((o) => o.kind === "NetworkPolicy" && o.metadata.name === name)!;

describe("the couchmail sync Job", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram(base);
    });

    it("runs couchmail sync with the config's domains and postmaster against the stack's CouchDB", () => {
        const jobs = syncJobs(run);
        expect(jobs).toHaveLength(1);
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        const [c] = jobs[0].spec.template.spec.containers;
        expect(c.args).toEqual(["sync", "--domains", "example.com,example.org", "--postmaster", "postmaster@example.com"]);
        expect(c.image).toBe("mail/couchmail:dev");
        expect(Object.fromEntries(c.env.map((e: { name: string; value: string }) => [e.name, e.value]))).toEqual({
            COUCHDB_URL: "http://couchdb.mail.svc:5984",
            COUCHDB_USER_FILE: "/etc/mail/couchdb/username",
            COUCHDB_PASSWORD_FILE: "/etc/mail/couchdb/password",
            COUCHDB_DATABASE: "mail",
        });
        expect(jobs[0].spec.template.spec.volumes).toEqual([
            {
                name: "couchdb-credentials",
                secret: {
                    secretName: "couchdb-admin",
                    defaultMode: 0o444,
                    items: [
                        { key: "username", path: "username" },
                        { key: "password", path: "password" },
                    ],
                },
            },
        ]);
    });

    it("is a one-shot pod with the restricted profile, retried a few times, replaced when it failed, never deleted behind Pulumi's back", () => {
        const job = syncJobs(run)[0];
        expect(job.spec.backoffLimit).toBe(4);
        expect(job.spec.ttlSecondsAfterFinished).toBeUndefined();
        expect(job.metadata.annotations).toEqual({ "pulumi.com/replaceUnready": "true" });
        const pod = job.spec.template.spec;
        expect(pod).toMatchObject({
            restartPolicy: "Never",
            automountServiceAccountToken: false,
            enableServiceLinks: false,
            securityContext: { seccompProfile: { type: "RuntimeDefault" } },
        });
        expect(pod.containers[0].securityContext).toEqual({
            runAsNonRoot: true,
            runAsUser: 10101,
            runAsGroup: 10101,
            allowPrivilegeEscalation: false,
            readOnlyRootFilesystem: true,
            capabilities: { drop: ["ALL"] },
            seccompProfile: { type: "RuntimeDefault" },
        });
        expect(pod.containers[0].resources).toEqual(BUDGET.couchmail);
    });

    it("may connect to CouchDB only, takes no connections, and CouchDB lets it in", () => {
        const own = policy(run, "couchmail-sync");
        expect(own.spec.podSelector).toEqual({ matchLabels: { "app.kubernetes.io/name": "couchmail-sync", "app.kubernetes.io/instance": "mail" } });
        expect(own.spec.policyTypes).toEqual(["Ingress", "Egress"]);
        expect(own.spec.ingress).toEqual([]);
        expect(own.spec.egress.slice(1)).toEqual([
            {
                ports: [{ port: 5984, protocol: "TCP" }],
                to: [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: ["couchdb"] }] } }],
            },
        ]);
        const couchdbFrom = policy(run, "couchdb")
            .spec.ingress.flatMap((r: { from: { podSelector: { matchExpressions: { values: string[] }[] } }[] }) => r.from)
            .flatMap((p: { podSelector: { matchExpressions: { values: string[] }[] } }) => p.podSelector.matchExpressions[0].values);
        expect(couchdbFrom).toContain("couchmail-sync");
    });

    it("prints an addFirstUser command for the mailbox the sync made", async () => {
        expect((await run.resolve(run.outputs.addFirstUser as string)).value).toBe(
            "kubectl -n mail exec -it statefulset/dovecot -c couchmail -- couchmail user add postmaster@example.com",
        );
    });
});

describe("when the sync runs again", () => {
    const sync = { domains: ["example.com", "example.org"], postmaster: "postmaster@example.com" };
    const name = syncJobName(sync, "mail/couchmail:dev", "mail");

    it("keeps its name, so it does not run, while nothing it applies changed", () => {
        expect(name).toMatch(/^couchmail-sync-[0-9a-f]{10}$/);
        expect(syncJobName({ ...sync }, "mail/couchmail:dev", "mail")).toBe(name);
    });

    it.each([
        ["a domain list", { ...sync, domains: ["example.com"] }, "mail/couchmail:dev", "mail"],
        ["the domains' order", { ...sync, domains: ["example.org", "example.com"] }, "mail/couchmail:dev", "mail"],
        ["the postmaster", { ...sync, postmaster: "ops@example.org" }, "mail/couchmail:dev", "mail"],
        ["the image (its design document)", sync, "mail/couchmail:v2", "mail"],
        ["the database", sync, "mail/couchmail:dev", "other"],
    ])("gets a new name, so a new run, for another %s", (_what, other, image, database) => {
        expect(syncJobName(other, image, database)).not.toBe(name);
    });
});

describe("addFirstUser", () => {
    it("names the postmaster's mailbox when it is one of ours, else a new mailbox of the first domain", () => {
        expect(firstUserCommand("mail", { domains: ["a.test", "b.test"], postmaster: "pm@b.test" })).toBe(
            "kubectl -n mail exec -it statefulset/dovecot -c couchmail -- couchmail user add pm@b.test",
        );
        expect(firstUserCommand("mail", { domains: ["a.test"], postmaster: "ops@else.net" })).toBe(
            "kubectl -n mail exec -it statefulset/dovecot -c couchmail -- couchmail user add me@a.test",
        );
    });
});
