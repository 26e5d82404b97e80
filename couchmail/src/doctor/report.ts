/** One line of the doctor's table: what was checked, the verdict, what was seen and how to fix it. */
export type Status = "pass" | "warn" | "fail" | "skip";

export interface CheckResult {
  check: string;
  status: Status;
  detail: string;
  /** What to change; empty for a pass. */
  fix?: string;
}

export const pass = (check: string, detail: string): CheckResult => ({ check, status: "pass", detail });
export const warn = (check: string, detail: string, fix: string): CheckResult => ({ check, status: "warn", detail, fix });
export const fail = (check: string, detail: string, fix: string): CheckResult => ({ check, status: "fail", detail, fix });
export const skip = (check: string, detail: string): CheckResult => ({ check, status: "skip", detail });

/** Exit code for automation: 0 every check passed (or was skipped), 1 at least one warning, 2 at least one failure. */
export function exitCode(results: CheckResult[]): 0 | 1 | 2 {
  if (results.some((r) => r.status === "fail")) return 2;
  if (results.some((r) => r.status === "warn")) return 1;
  return 0;
}

/** The table a person reads: status, check, what was seen, and on a second line the fix. */
export function renderTable(results: CheckResult[]): string {
  const width = Math.max(5, ...results.map((r) => r.check.length));
  const lines = results.flatMap((r) => [
    `${r.status.toUpperCase().padEnd(4)}  ${r.check.padEnd(width)}  ${r.detail}`,
    ...(r.fix ? [`${"".padEnd(4)}  ${"".padEnd(width)}  fix: ${r.fix}`] : []),
  ]);
  const count = (s: Status) => results.filter((r) => r.status === s).length;
  lines.push(`${count("pass")} pass, ${count("warn")} warn, ${count("fail")} fail, ${count("skip")} skipped — exit ${exitCode(results)}`);
  return lines.join("\n");
}
