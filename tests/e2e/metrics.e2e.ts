// Metrics as a Prometheus in the scraper's namespace sees them: each declared scrape target answers on its named port
// from the `scraper` pod (namespace metricsNamespace), every pod elsewhere is refused, and after one message comes in
// on port 25 and is read over IMAP, the counters the contract marks as moving did move.
import { before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { SCRAPE_TARGETS, TargetName } from "../../components/monitoring/metrics";
import { unmoved } from "../monitoring/scrape";
import { addUser, delivered, ensureDomain, PASSWORDS, smtpIn, submit, uniqueSubject } from "./mailclients";
import { cluster, connectFrom, execIn } from "./suite";
import { SCRAPER } from "./testpods";

/** The pods that serve each target (couchmail runs beside Postfix and beside Dovecot). */
const SERVED_BY: Record<TargetName, string[]> = { dovecot: ["dovecot"], postfix: ["postfix"], couchmail: ["postfix", "dovecot"], couchdb: ["couchdb"] };

/** One scrape from the scraper pod, as Prometheus does it: a plain HTTP GET of the target's path. */
function scrape(target: TargetName, pod: string): string {
    const { port, path } = SCRAPE_TARGETS[target];
    const request = `GET ${path} HTTP/1.0\r\nHost: ${pod}\r\nAccept: text/plain\r\n\r\n`;
    const r = execIn(
        SCRAPER.name,
        SCRAPER.container,
        ["timeout", "10", "bash", "-c", 'exec 3<>"/dev/tcp/$0/$1" && printf "%s" "$2" >&3 && cat <&3', cluster().podIp(pod), String(port.number), request],
        {
            timeoutMs: 20_000,
        },
    );
    assert.equal(r.code, 0, `scraping ${target} on ${pod}:${port.number}: ${r.stdout}${r.stderr}`);
    const [head, ...body] = r.stdout.split("\r\n\r\n");
    assert.match(head, /^HTTP\/1\.[01] 200 /, `${target} on ${pod}: ${head}`);
    return body.join("\r\n\r\n");
}

function scrapeAll(): Record<string, string> {
    const out: Record<string, string> = {};
    for (const [target, pods] of Object.entries(SERVED_BY) as [TargetName, string[]][]) for (const pod of pods) out[`${target}@${pod}`] = scrape(target, pod);
    return out;
}

const USER = "metrics@example.test";

describe("metrics", () => {
    let before1: Record<string, string>;
    let after: Record<string, string>;
    before(async () => {
        ensureDomain("example.test");
        addUser(USER);
        before1 = scrapeAll();
        const subject = uniqueSubject("metrics");
        const r = smtpIn(USER, subject);
        assert.equal(r.code, 0, r.out);
        await delivered(USER, subject, 60_000);
        // A failed login, so the failure counters have a series too.
        submit("submission", USER, "not-the-password", USER, USER, uniqueSubject("metrics wrong password"));
        // Give the exporters (log tailing, Dovecot's stats aggregation) a moment to see the last events.
        await new Promise((r) => setTimeout(r, 3000));
        after = scrapeAll();
        assert.ok(PASSWORDS[USER]);
    });

    test("every target answers the scraper's namespace with its declared families", () => {
        const missing: string[] = [];
        for (const [key, text] of Object.entries(after)) {
            const target = SCRAPE_TARGETS[key.split("@")[0] as TargetName];
            for (const m of target.metrics.filter((x) => x.moves)) {
                if (!new RegExp(`^# TYPE ${m.name} `, "m").test(text)) missing.push(`${key}: ${m.name}`);
            }
        }
        assert.deepEqual(missing, []);
    });

    test("the counters that one received and delivered message must move did move", () => {
        const still = Object.keys(after).flatMap((key) => {
            const target = key.split("@")[0] as TargetName;
            return unmoved(target, before1[key], after[key]).map((series) => `${key}: ${series}`);
        });
        assert.deepEqual(still, []);
    });

    test("no pod outside the scraper's namespace reaches a metrics port", () => {
        const open: string[] = [];
        for (const [target, pods] of Object.entries(SERVED_BY) as [TargetName, string[]][]) {
            for (const pod of pods) {
                for (const from of ["attacker", "outsider"]) {
                    const r = connectFrom(from, "probe", cluster().podIp(pod), SCRAPE_TARGETS[target].port.number);
                    if (r !== "dropped") open.push(`${from} → ${target} on ${pod}: ${r}`);
                }
            }
        }
        assert.deepEqual(open, []);
    });
});
