// The mail benchmark's arithmetic, pure: rates and latency percentiles of one burst, the 4xx/deferrals on each hop
// counted from the daemons' logs, and the printed tables.
import type { SendResult } from "./send";

/** Nearest-rank percentile (p in 0..100) of unsorted values; NaN when there are none. */
export function percentile(values: number[], p: number): number {
    if (!values.length) return NaN;
    const sorted = [...values].sort((a, b) => a - b);
    return sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)];
}

/**
 * Where a message was found: the Maildir file's unique part (before ":2,"), when the bench first saw it, and whether
 * SpamAssassin scored it (an X-Spam-Status header: spamc passes messages over its size limit through unscored).
 */
export interface Delivery {
    id: string;
    file: string;
    seenAt: number;
    scored: boolean;
}

export interface BurstSummary {
    sent: number;
    accepted: number;
    /** Non-2xx final replies (or failed sessions) the sender got, by first digit ("4xx", "5xx", "failed"). */
    refused: Record<string, number>;
    acceptedPerSecond: number;
    delivered: number;
    deliveredPerSecond: number;
    p50: number;
    p95: number;
    /** Accepted but not in any mailbox when the burst's wait ended. */
    lost: number;
    /** Messages found in more than one Maildir file. */
    duplicated: number;
    /** Delivered without SpamAssassin's score (all of them with spam scanning off). */
    unscored: number;
}

/**
 * One burst: rates run from the first transaction's start to the last acceptance / the last delivery; latency is
 * from a message's acceptance to its first sighting in a Maildir.
 */
export function summarize(sends: SendResult[], deliveries: Delivery[]): BurstSummary {
    const accepted = sends.filter((s) => s.accepted);
    const refused: Record<string, number> = {};
    for (const s of sends.filter((x) => !x.accepted)) {
        const kind = /^[45]\d\d/.test(s.reply) ? `${s.reply[0]}xx` : "failed";
        refused[kind] = (refused[kind] ?? 0) + 1;
    }
    const byId = new Map<string, Delivery[]>();
    for (const d of deliveries) byId.set(d.id, [...(byId.get(d.id) ?? []), d]);
    const start = Math.min(...sends.map((s) => s.startedAt));
    const latencies: number[] = [];
    let lastDelivery = start;
    for (const s of accepted) {
        const found = byId.get(s.id);
        if (!found) continue;
        const first = Math.min(...found.map((d) => d.seenAt));
        latencies.push((first - s.at) / 1000);
        lastDelivery = Math.max(lastDelivery, first);
    }
    const lastAccept = Math.max(start, ...accepted.map((s) => s.at));
    const rate = (n: number, end: number) => (n && end > start ? n / ((end - start) / 1000) : 0);
    return {
        sent: sends.length,
        accepted: accepted.length,
        refused,
        acceptedPerSecond: rate(accepted.length, lastAccept),
        delivered: latencies.length,
        deliveredPerSecond: rate(latencies.length, lastDelivery),
        p50: percentile(latencies, 50),
        p95: percentile(latencies, 95),
        lost: accepted.length - latencies.length,
        duplicated: [...byId.values()].filter((d) => new Set(d.map((x) => x.file)).size > 1).length,
        unscored: accepted.filter((s) => byId.get(s.id)?.every((d) => !d.scored)).length,
    };
}

export interface HopErrors {
    /** Postfix → Dovecot LMTP: deliveries Postfix deferred (a 4xx from LMTP or no connection). */
    lmtpDeferred: number;
    /** …of which Dovecot's per-user concurrency limit ("451 4.3.0 Too many concurrent deliveries"). */
    lmtpTooManyConcurrent: number;
    /** Dovecot → spamd: spam-scan found spamd unavailable (spamc failed; delivered unscanned). */
    spamcFailed: number;
    /** spamd's own complaints: child timeouts and refused connections. */
    spamdErrors: number;
}

/**
 * Counts from what the daemons logged during the burst. Postfix's delivery agents log
 * `postfix/lmtp[pid]: QID: to=<…>, relay=…, …, status=deferred (… said: 451 4.3.0 …)` (Postfix's smtp/lmtp status
 * lines, postfix/src/global/log_adhoc.c); spam-scan (images/dovecot/spam-scan) logs `spam-scan: USER: spamc failed`;
 * spamd logs `spamd: … timed out` / `… refused` / `child … died` (SpamAssassin's spamd/spamd.raw).
 */
export function countHopErrors(postfixLog: string, dovecotLog: string, spamdLog: string): HopErrors {
    const lmtpDeferrals = postfixLog.split("\n").filter((l) => /postfix\/lmtp\[\d+\]: .*status=deferred/.test(l));
    return {
        lmtpDeferred: lmtpDeferrals.length,
        lmtpTooManyConcurrent: lmtpDeferrals.filter((l) => /Too many concurrent deliveries/.test(l)).length,
        spamcFailed: dovecotLog.split("\n").filter((l) => /spam-scan: .*spamc failed/.test(l)).length,
        spamdErrors: spamdLog.split("\n").filter((l) => /spamd: .*(timed out|refused|child .* died|error)/i.test(l)).length,
    };
}

export interface Row {
    scenario: string;
    spam: boolean;
    summary: BurstSummary;
    hops: HopErrors;
}

const fixed = (n: number, digits = 1) => (Number.isFinite(n) ? n.toFixed(digits) : "-");

export function burstTable(rows: Row[]): string {
    const head = [
        "scenario",
        "spam",
        "sent",
        "acc msg/s",
        "e2e msg/s",
        "p50 s",
        "p95 s",
        "smtp 4xx/5xx/fail",
        "lmtp defer (conc)",
        "spamc fail",
        "spamd err",
        "unscored",
        "lost",
        "dup",
    ];
    const body = rows.map(({ scenario, spam, summary: s, hops: h }) => [
        scenario,
        spam ? "on" : "off",
        String(s.sent),
        fixed(s.acceptedPerSecond),
        fixed(s.deliveredPerSecond),
        fixed(s.p50, 2),
        fixed(s.p95, 2),
        `${s.refused["4xx"] ?? 0}/${s.refused["5xx"] ?? 0}/${s.refused.failed ?? 0}`,
        `${h.lmtpDeferred} (${h.lmtpTooManyConcurrent})`,
        String(h.spamcFailed),
        String(h.spamdErrors),
        String(s.unscored),
        String(s.lost),
        String(s.duplicated),
    ]);
    return table(head, body);
}

/** Delivered msg/s with spam scanning on / off, per scenario present in both. */
export function ratioTable(rows: Row[]): string {
    const body: string[][] = [];
    for (const on of rows.filter((r) => r.spam)) {
        const off = rows.find((r) => !r.spam && r.scenario === on.scenario);
        if (!off) continue;
        const ratio = on.summary.deliveredPerSecond ? off.summary.deliveredPerSecond / on.summary.deliveredPerSecond : NaN;
        body.push([on.scenario, fixed(on.summary.deliveredPerSecond), fixed(off.summary.deliveredPerSecond), `${fixed(ratio, 2)}x`]);
    }
    return table(["scenario", "e2e msg/s spam on", "spam off", "off/on"], body);
}

/** One phase's memory samples per pod (PSS, KiB): at rest after the bursts (its steady state) and the peak. */
export interface PhaseMemory {
    rest: Record<string, number>;
    peak: Record<string, number>;
}

/**
 * Per pod: its memory limit, and per phase its PSS at rest and at peak (MiB), and whether the peak stayed under the
 * limit — what requests (near the rest) and limits (above the peak) are sized from.
 */
export function memoryTable(phases: Record<string, PhaseMemory>, limits: Record<string, number | undefined>): string {
    const names = Object.keys(phases);
    const pods = [...new Set(names.flatMap((p) => Object.keys(phases[p].peak)))].sort();
    const mib = (kb: number | undefined) => (kb === undefined ? "-" : (kb / 1024).toFixed(0));
    const headroom = (pod: string, kb: number | undefined) => {
        const limit = limits[pod];
        return kb === undefined || limit === undefined ? "-" : `${((100 * kb * 1024) / limit).toFixed(0)}%`;
    };
    const body = pods.map((pod) => [
        pod,
        limits[pod] === undefined ? "none" : (limits[pod] / 2 ** 20).toFixed(0),
        ...names.flatMap((p) => [mib(phases[p].rest[pod]), mib(phases[p].peak[pod]), headroom(pod, phases[p].peak[pod])]),
    ]);
    const sum = (o: Record<string, number>) => Object.values(o).reduce((a, b) => a + b, 0);
    body.push([
        "sum",
        (Object.values(limits).reduce<number>((a, b) => a + (b ?? 0), 0) / 2 ** 20).toFixed(0),
        ...names.flatMap((p) => [mib(sum(phases[p].rest)), mib(sum(phases[p].peak)), ""]),
    ]);
    return table(["pod", "limit MiB", ...names.flatMap((p) => [`rest MiB (${p})`, `peak MiB (${p})`, "peak/limit"])], body);
}

function table(head: string[], body: string[][]): string {
    const widths = head.map((h, i) => Math.max(h.length, ...body.map((r) => r[i].length)));
    const line = (r: string[]) => r.map((c, i) => (i === 0 ? c.padEnd(widths[i]) : c.padStart(widths[i]))).join("  ");
    return [line(head), ...body.map(line)].join("\n");
}
