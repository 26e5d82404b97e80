import { DeclaredKey, PROJECT, SECRET_KEYS } from "./reader";

export const DOCS_BEGIN = "<!-- config-keys:begin (generated from Pulumi.yaml by `UPDATE_DOCS=1 npx jest tests/config`) -->";
export const DOCS_END = "<!-- config-keys:end -->";

/** The README table of config keys, generated from Pulumi.yaml's declarations so the two never drift. */
export function configKeysTable(declared: Record<string, DeclaredKey>): string {
    const rows = Object.entries(declared).map(([key, d]) => {
        const type = d.type === "array" ? `list of ${d.items?.type ?? "?"}` : d.type;
        // The Pulumi CLI refuses to run a stack that lacks a key without a default.
        const dflt = d.default === undefined ? "**required**" : d.default === "" ? '`""`' : `\`${JSON.stringify(d.default).replace(/^"|"$/g, "")}\``;
        const secret = SECRET_KEYS.includes(key) ? " (secret: set with `--secret`)" : "";
        return `| \`${PROJECT}:${key}\` | ${type}${secret} | ${dflt} | ${(d.description ?? "").replace(/\|/g, "\\|")} |`;
    });
    return [DOCS_BEGIN, "| key | type | default | description |", "|---|---|---|---|", ...rows, DOCS_END].join("\n");
}
