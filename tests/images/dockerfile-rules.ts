// The Dockerfile rules that matter for our images, checked without hadolint (neither Debian nor npm ships it, so it
// cannot run offline here). Each rule carries the hadolint code it mirrors (https://github.com/hadolint/hadolint,
// README "Rules"), so a finding reads the same as hadolint's would.

export interface Instruction {
    /** 1-based line of the instruction's first line. */
    line: number;
    /** Upper-cased keyword: FROM, RUN, USER, … */
    keyword: string;
    /** Everything after the keyword, continuation lines joined with a space. */
    args: string;
    /** The comment lines directly above the instruction (without `#`), nearest last. */
    comments: string[];
}

export interface Finding {
    line: number;
    rule: string;
    message: string;
}

/** Splits a Dockerfile into instructions: `\` continues a line, `#` lines are comments (kept for the next instruction). */
export function parseDockerfile(text: string): Instruction[] {
    const out: Instruction[] = [];
    let comments: string[] = [];
    let pending: { line: number; text: string } | null = null;
    const lines = text.split("\n");
    for (let i = 0; i < lines.length; i++) {
        const raw = lines[i];
        const trimmed = raw.trim();
        if (pending === null) {
            if (trimmed === "") {
                comments = [];
                continue;
            }
            if (trimmed.startsWith("#")) {
                comments.push(trimmed.replace(/^#\s?/, ""));
                continue;
            }
            pending = { line: i + 1, text: "" };
        } else if (trimmed.startsWith("#")) {
            continue; // a comment inside a continued instruction is dropped, as Docker does
        }
        const continued = /\\\s*$/.test(raw);
        pending.text += (pending.text ? " " : "") + (continued ? raw.replace(/\\\s*$/, "") : raw).trim();
        if (!continued) {
            const m = /^(\S+)\s*([\s\S]*)$/.exec(pending.text)!;
            out.push({ line: pending.line, keyword: m[1].toUpperCase(), args: m[2], comments });
            comments = [];
            pending = null;
        }
    }
    if (pending) {
        const m = /^(\S+)\s*([\s\S]*)$/.exec(pending.text)!;
        out.push({ line: pending.line, keyword: m[1].toUpperCase(), args: m[2], comments });
    }
    return out;
}

/** The simple commands of a shell command line (split on `&&`, `||`, `;`, `|`), each as words. */
function commands(shell: string): string[][] {
    return shell
        .split(/&&|\|\||;|\|/)
        .map((c) => c.trim().split(/\s+/).filter(Boolean))
        .filter((w) => w.length > 0);
}

/** The apt-get (or apt) invocation of a simple command with its subcommand, skipping `VAR=value` prefixes. */
function aptCall(words: string[]): { sub: string; args: string[] } | null {
    const start = words.findIndex((w) => !/^[A-Za-z_][A-Za-z0-9_]*=/.test(w));
    if (start < 0 || !["apt-get", "apt"].includes(words[start])) return null;
    const rest = words.slice(start + 1);
    const sub = rest.find((w) => !w.startsWith("-"));
    return sub ? { sub, args: rest } : null;
}

const ROOT_USERS = /^(root|0)(:(root|0))?$/;

/**
 * The rules: a pinned base, no `apt-get upgrade`, `--no-install-recommends`, apt lists removed in the layer that
 * fetched them, a USER (root only with its reason written above it), and ADD only for remote URLs.
 */
export function checkDockerfile(text: string): Finding[] {
    const instructions = parseDockerfile(text);
    const findings: Finding[] = [];
    const stages = new Set<string>();
    let lastUser: Instruction | undefined;
    for (const ins of instructions) {
        const at = (rule: string, message: string) => findings.push({ line: ins.line, rule, message });
        if (ins.keyword === "FROM") {
            const words = ins.args.split(/\s+/).filter((w) => !w.startsWith("--"));
            const image = words[0] ?? "";
            if (words[1]?.toUpperCase() === "AS" && words[2]) stages.add(words[2].toLowerCase());
            if (image === "scratch" || stages.has(image.toLowerCase())) continue;
            const digest = image.includes("@sha256:");
            const tag = /:([^/:@]+)$/.exec(image)?.[1];
            if (!digest && tag === undefined)
                at("DL3006", `FROM ${image}: name a release tag or a digest (an untagged base is whatever "latest" is on build day)`);
            else if (!digest && tag === "latest") at("DL3007", `FROM ${image}: "latest" moves; name a release tag (e.g. trixie-slim) or a digest`);
        } else if (ins.keyword === "RUN") {
            const calls = commands(ins.args)
                .map(aptCall)
                .filter((c) => c !== null);
            for (const c of calls) {
                if (["upgrade", "dist-upgrade", "full-upgrade"].includes(c.sub)) {
                    at("DL3005", `apt-get ${c.sub}: not in an image — the base's release tag decides the packages; rebuild on a newer base instead`);
                }
                if (c.sub === "install" && !c.args.includes("--no-install-recommends") && !c.args.some((a) => /APT::Install-Recommends=(false|0)/.test(a))) {
                    at("DL3015", "apt-get install without --no-install-recommends: add it (recommended packages are installed but never used)");
                }
            }
            if (calls.some((c) => c.sub === "install" || c.sub === "update") && !/rm\s+(-\w+\s+)*\/var\/lib\/apt\/lists\/\*/.test(ins.args)) {
                at("DL3009", "apt-get in this RUN leaves /var/lib/apt/lists behind: end the same RUN with rm -rf /var/lib/apt/lists/*");
            }
        } else if (ins.keyword === "ADD") {
            const sources = ins.args
                .split(/\s+/)
                .filter((w) => w && !w.startsWith("--"))
                .slice(0, -1);
            if (sources.some((s) => !/^https?:\/\//.test(s)))
                at("DL3020", "ADD of a local file or folder: use COPY (ADD also unpacks archives and fetches URLs)");
        } else if (ins.keyword === "USER") {
            lastUser = ins;
        }
    }
    if (!lastUser) {
        findings.push({
            line: 1,
            rule: "USER",
            message: "no USER: say who the image runs as (USER uid:gid, or USER root with the reason in a comment above it)",
        });
    } else if (ROOT_USERS.test(lastUser.args.trim()) && lastUser.comments.length === 0) {
        findings.push({
            line: lastUser.line,
            rule: "DL3002",
            message: `USER ${lastUser.args.trim()}: an image that starts as root needs the reason in a comment directly above the USER line`,
        });
    }
    return findings;
}
