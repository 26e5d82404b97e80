import { countHopErrors, memoryTable, percentile, summarize } from "./measure";
import type { SendResult } from "./send";

const sent = (id: string, startedAt: number, at: number, reply = "250 2.0.0 Ok: queued as 4Fx"): SendResult => ({
    id,
    startedAt,
    at,
    reply,
    accepted: reply.startsWith("250"),
});

describe("percentile", () => {
    test("nearest rank over unsorted values", () => {
        expect(percentile([5, 1, 4, 2, 3], 50)).toBe(3);
        expect(percentile([5, 1, 4, 2, 3], 95)).toBe(5);
        expect(
            percentile(
                Array.from({ length: 100 }, (_, i) => i + 1),
                95,
            ),
        ).toBe(95);
        expect(percentile([], 50)).toBeNaN();
    });
});

describe("summarize", () => {
    test("rates from the first transaction's start; latency from acceptance to the first sighting", () => {
        const s = summarize(
            [sent("a", 0, 500), sent("b", 100, 1000), sent("c", 200, 1000, "451 4.3.0 Temporary lookup failure")],
            [
                { id: "a", file: "u/1", seenAt: 1500, scored: true },
                { id: "b", file: "u/2", seenAt: 4000, scored: false },
            ],
        );
        expect(s).toMatchObject({
            sent: 3,
            accepted: 2,
            refused: { "4xx": 1 },
            acceptedPerSecond: 2,
            delivered: 2,
            deliveredPerSecond: 0.5,
            lost: 0,
            duplicated: 0,
            unscored: 1,
        });
        expect(s.p50).toBe(1);
        expect(s.p95).toBe(3);
    });

    test("an accepted message in no mailbox is lost; one in two files is duplicated (a move between new/ and cur/ is not)", () => {
        const s = summarize(
            [sent("a", 0, 10), sent("b", 0, 10), sent("c", 0, 10)],
            [
                { id: "a", file: "u/1", seenAt: 20, scored: true },
                { id: "a", file: "u/1", seenAt: 30, scored: true },
                { id: "b", file: "u/2", seenAt: 20, scored: true },
                { id: "b", file: "u/3", seenAt: 25, scored: true },
            ],
        );
        expect(s).toMatchObject({ lost: 1, duplicated: 1, delivered: 2 });
    });
});

describe("countHopErrors", () => {
    test("Postfix's LMTP deferrals (Dovecot's concurrency limit among them), spam-scan's spamc failures, spamd's errors", () => {
        // Lines as the e2e stack's daemons print them.
        const postfix = [
            "Dec 02 04:14:56 mail postfix/lmtp[532]: 753F2520569: to=<dave@example.test>, relay=dovecot[10.77.0.16]:24, delay=0.43, delays=0.11/0.02/0.02/0.27, dsn=2.0.0, status=sent (250 2.0.0 <dave@example.test> FOWgJECbD2vIAAAAxGM2jA Saved)",
            "Dec 02 04:14:57 mail postfix/lmtp[533]: 853F2520569: to=<dave@example.test>, relay=dovecot[10.77.0.16]:24, delay=1.2, delays=0.1/0/0.02/1, dsn=4.3.0, status=deferred (host dovecot[10.77.0.16] said: 451 4.3.0 <dave@example.test> Too many concurrent deliveries for user (in reply to end of DATA command))",
            "Dec 02 04:14:58 mail postfix/lmtp[534]: 953F2520569: to=<eve@example.test>, relay=none, delay=30, delays=0.1/0/30/0, dsn=4.4.1, status=deferred (connect to dovecot[10.77.0.16]:24: Connection refused)",
            "Dec 02 04:14:58 mail postfix/smtp[535]: A53F2520569: to=<x@external.test>, relay=mx.external.test[10.77.0.2]:25, delay=1, dsn=4.0.0, status=deferred (host said: 450 try later)",
        ].join("\n");
        const dovecot =
            "Dec 02 04:14:57 lmtp(dave@example.test)<5><x>: Error: spam-scan: dave@example.test: spamc failed (74): connection refused\nlmtp(dave@example.test): Info: saved mail to INBOX";
        const spamd = "Wed Dec  2 04:14:57 2026 [12] warn: spamd: connection from ::1 refused\nWed Dec  2 04:14:57 2026 [12] info: spamd: processing message";
        expect(countHopErrors(postfix, dovecot, spamd)).toEqual({ lmtpDeferred: 2, lmtpTooManyConcurrent: 1, spamcFailed: 1, spamdErrors: 1 });
    });
});

describe("memoryTable", () => {
    test("rest and peak per pod and phase against the pod's limit; sums of limits, rests and peaks", () => {
        const table = memoryTable(
            { "spam on": { rest: { spamassassin: 120 * 1024, postfix: 90 * 1024 }, peak: { spamassassin: 192 * 1024, postfix: 150 * 1024 } } },
            { spamassassin: 384 * 2 ** 20, postfix: undefined },
        );
        expect(table.split("\n")).toEqual([
            "pod           limit MiB  rest MiB (spam on)  peak MiB (spam on)  peak/limit",
            "postfix            none                  90                 150           -",
            "spamassassin        384                 120                 192         50%",
            "sum                 384                 210                 342            ",
        ]);
    });
});
