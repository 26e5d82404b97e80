// Each long-running pod's memory as measured under `npm run bench:mail` with spam scanning on (PSS of the pod's
// processes, MiB): at rest two minutes after the bursts — its steady state, taken in run 9 — and the highest peak of
// runs 6, 8 and 9 (/work/notes/perf.md). Requests (components/kube.ts BUDGET) are sized from the rest and limits from
// the peak; nodes.test.ts checks both and whether the whole stack's peak fits the 2 GB nodes.
export const MEASURED_MIB: Record<string, { rest: number; peak: number }> = {
    // With its couchmail sidecar; up to SPF_PROCESSES policyd-spf at ~22 MiB each during port-25 bursts.
    postfix: { rest: 65, peak: 167 },
    // With its couchmail sidecar; LMTP, spam-scan and IMAP processes during bursts.
    dovecot: { rest: 71, peak: 181 },
    // The loopback stack's express-pouchdb substitute: real CouchDB measured ~54 MiB in the e2e suite.
    couchdb: { rest: 94, peak: 108 },
    opendkim: { rest: 12, peak: 13 },
    // Its children keep what scanning 1 MB text messages made them grow until recycled (--max-conn-per-child).
    spamassassin: { rest: 177, peak: 237 },
    postgrey: { rest: 19, peak: 20 },
};
