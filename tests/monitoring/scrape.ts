// For a scrape e2e: which of a target's metrics that must move with mail (the contract's `moves`) did not, between
// two scrapes of its endpoint.
import { SCRAPE_TARGETS, TargetName } from "../../components/monitoring/metrics";

/**
 * Sums every sample of each series name in a text exposition (Prometheus text format 0.0.4 and OpenMetrics: `name`,
 * optional `{labels}`, value, optional timestamp; `#` lines are metadata).
 */
export function seriesTotals(exposition: string): Map<string, number> {
    const totals = new Map<string, number>();
    for (const line of exposition.split("\n")) {
        const m = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{.*\})?\s+(\S+)(?:\s+-?\d+)?\s*$/.exec(line);
        if (!m) continue;
        totals.set(m[1], (totals.get(m[1]) ?? 0) + Number(m[2]));
    }
    return totals;
}

/** The series that counts observations: a histogram's or summary's `_count`, a counter itself. */
function countingSeries(name: string, type: string): string {
    return type === "histogram" || type === "summary" ? `${name}_count` : name;
}

/** The `moves` metrics of a target that are missing from the second scrape or did not grow since the first. */
export function unmoved(target: TargetName, before: string, after: string): string[] {
    const [was, is] = [seriesTotals(before), seriesTotals(after)];
    return SCRAPE_TARGETS[target].metrics
        .filter((m) => m.moves)
        .map((m) => countingSeries(m.name, m.type))
        .filter((series) => !is.has(series) || is.get(series)! <= (was.get(series) ?? 0));
}
