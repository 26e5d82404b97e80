// The Postgrey component and its wiring in MailStack, under mocks: Postfix asks the postgrey Service on port 25
// only, the delay and whitelists come from stack config, the database is on a volume, only Postfix may connect.
import { schemaErrors } from "../kit/k8s-schema";
import { CLOUD_MAIL_CONFIG as mail, stackObjectLookup } from "../kit/stack-objects";
import { ProgramRun, runProgram } from "../kit/program";
import { POSTFIX_LISTENERS, renderPostfix } from "../../components/postfix/config";
import { POSTGREY_DEFAULTS, POSTGREY_LISTENERS, postgreyArgs, renderPostgrey } from "../../components/postgrey/config";
import { postfixTestSettings, postgreyTestSettings } from "../kit/settings";

type Obj = { kind: string; metadata: { name: string }; spec?: any; data?: Record<string, string> }; // eslint-disable-line @typescript-eslint/no-explicit-any

const { find, get } = stackObjectLookup<Obj>();

/** The smtpd_recipient_restrictions each smtpd in master.cf runs with (main.cf's unless overridden with -o). */
function recipientRestrictions(mainCf: string, masterCf: string): Record<string, string> {
    const main = /^smtpd_recipient_restrictions = (.*)$/m.exec(mainCf)![1];
    const out: Record<string, string> = {};
    for (const entry of masterCf.split(/\n(?=\S)/)) {
        const [name, , , , , , , command] = entry.split(/\s+/);
        if (command !== "smtpd") continue;
        out[name] = /-o smtpd_recipient_restrictions=(\S*)/.exec(entry)?.[1] ?? main;
    }
    return out;
}

describe("MailStack with greylisting (default)", () => {
    let run: ProgramRun;
    beforeAll(async () => {
        run = await runProgram({ ...mail, greylistDelay: 120, greylistWhitelistClients: ["relay.example.net"], greylistWhitelistRecipients: ["postmaster@"] });
    });

    it("is schema-valid and parented under MailStack", () => {
        expect(schemaErrors(run.recorder.resources)).toEqual([]);
        expect(run.recorder.one("mail:index:Postgrey").parent).toBe(run.recorder.urnOf(run.recorder.one("mail:index:MailStack")));
    });

    it("Postfix asks the postgrey Service, on port 25's smtpd only, after refusing relaying", () => {
        const service = get(run, "Service", "postgrey");
        expect(service.spec.ports).toEqual([{ name: "policy", port: POSTGREY_LISTENERS.policy.port, targetPort: "policy", protocol: "TCP" }]);
        const { "main.cf": mainCf, "master.cf": masterCf } = get(run, "ConfigMap", "postfix-config").data!;
        const policy = `check_policy_service inet:${service.metadata.name}:${POSTGREY_LISTENERS.policy.port}`;
        const restrictions = recipientRestrictions(mainCf, masterCf);
        // postscreen hands port 25 (and the PROXY twin) to these pass services.
        expect(restrictions.smtpd).toContain(policy);
        expect(restrictions["smtpd-proxy"]).toContain(policy);
        expect(restrictions.smtpd.indexOf("reject_unauth_destination")).toBeLessThan(restrictions.smtpd.indexOf(policy));
        for (const port of [
            POSTFIX_LISTENERS.submission.port,
            POSTFIX_LISTENERS.submissions.port,
            POSTFIX_LISTENERS.submission.proxy.port,
            POSTFIX_LISTENERS.submissions.proxy.port,
        ]) {
            expect({ port, restrictions: restrictions[String(port)] }).toEqual({ port, restrictions: expect.not.stringContaining("check_policy_service") });
        }
        // The content-filter hook stays unused: scanning happens at LMTP delivery, per recipient.
        expect(mainCf + masterCf).not.toMatch(/content_filter=\S/);
    });

    it("runs postgrey with the configured delay and whitelists, its database on a volume, reachable from Postfix only", () => {
        const sts = get(run, "StatefulSet", "postgrey");
        const c = sts.spec.template.spec.containers[0];
        expect(c.args).toEqual(
            expect.arrayContaining([`--inet=0.0.0.0:${POSTGREY_LISTENERS.policy.port}`, "--delay=120", `--dbdir=${POSTGREY_DEFAULTS.dataDir}/db`]),
        );
        expect(c.volumeMounts).toContainEqual({ name: "data", mountPath: POSTGREY_DEFAULTS.dataDir });
        expect(sts.spec.volumeClaimTemplates[0].metadata.name).toBe("data");
        expect(sts.spec.template.spec.securityContext.fsGroup).toBe(5002);
        expect(c.securityContext).toMatchObject({ runAsNonRoot: true, runAsUser: 5002 });
        const files = get(run, "ConfigMap", "postgrey-config").data!;
        expect(files["whitelist_clients.local"]).toMatch(/^relay\.example\.net$/m);
        expect(files["whitelist_recipients.local"]).toMatch(/^postmaster@$/m);
        const policy = get(run, "NetworkPolicy", "postgrey");
        expect(policy.spec.ingress).toEqual([
            {
                ports: [{ port: POSTGREY_LISTENERS.policy.port, protocol: "TCP" }],
                from: [{ podSelector: { matchExpressions: [{ key: "app.kubernetes.io/name", operator: "In", values: ["postfix"] }] } }],
            },
        ]);
    });
});

describe("MailStack with greylistEnabled false", () => {
    it("has no postgrey and Postfix asks no policy service", async () => {
        const run = await runProgram({ ...mail, greylistEnabled: false });
        expect(find(run, "StatefulSet", "postgrey")).toBeUndefined();
        expect(get(run, "ConfigMap", "postfix-config").data!["main.cf"]).not.toContain("check_policy_service inet:");
    });
});

describe("renderers", () => {
    it("postgrey: validates delay and entries, naming the field", () => {
        expect(() => postgreyArgs({ ...postgreyTestSettings, delaySeconds: 0 })).toThrow(/delaySeconds/);
        expect(() => renderPostgrey({ ...postgreyTestSettings, whitelistClients: ["two words"] })).toThrow(/whitelistClients\[0\]/);
    });

    it("Postfix: the policy service never reaches the submission ports", () => {
        const files = renderPostfix({
            ...postfixTestSettings,
            hostname: "mail.example.com",
            ownDomains: ["example.com"],
            postmaster: "postmaster@example.com",
            policyService: `inet:postgrey:${POSTGREY_LISTENERS.policy.port}`,
            proxyProtocol: true,
        });
        const r = recipientRestrictions(files["main.cf"], files["master.cf"]);
        expect(
            Object.entries(r)
                .filter(([, v]) => v.includes("check_policy_service"))
                .map(([k]) => k)
                .sort(),
        ).toEqual(["smtpd", "smtpd-proxy"]);
    });
});
