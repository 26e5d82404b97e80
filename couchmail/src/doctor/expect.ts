/**
 * The deployed stack's expected state, read from `pulumi stack output --json`: the `dnsRecords` the program asks to
 * publish, the `dkimTxt` values of the keys OpenDKIM signs with, the `publicAddresses` of the mail host and the
 * stack's `warnings`. Only these outputs are read; every other output (secrets included) is ignored.
 */
export interface ExpectedRecord {
  name: string;
  type: "MX" | "TXT" | "A" | "AAAA" | "CNAME";
  value: string;
}

export interface Expected {
  /** The mail host name: the MX target of every domain. */
  hostname: string;
  domains: string[];
  records: ExpectedRecord[];
  /** domain → `v=DKIM1; k=rsa; p=…` of the key in use. */
  dkimTxt: Record<string, string>;
  /** domain → DKIM selector (from the `<selector>._domainkey.<domain>` record). */
  dkimSelector: Record<string, string>;
  publicAddresses: string[];
  stackWarnings: string[];
}

export class ExpectError extends Error {}

const RECORD_TYPES = ["MX", "TXT", "A", "AAAA", "CNAME"];
const lowerName = (n: string) => n.toLowerCase().replace(/\.$/, "");

function stringArray(value: unknown, key: string): string[] {
  if (value === undefined) return [];
  if (!Array.isArray(value) || value.some((v) => typeof v !== "string")) throw new ExpectError(`${key} must be a list of strings`);
  return value as string[];
}

/** Parses the stack outputs (JSON text); errors name the output key and what is allowed. */
export function parseExpected(text: string): Expected {
  let outputs: unknown;
  try {
    outputs = JSON.parse(text);
  } catch (e) {
    throw new ExpectError(`the expected state is not JSON (give the output of \`pulumi stack output --json\`): ${(e as Error).message}`);
  }
  if (!outputs || typeof outputs !== "object" || Array.isArray(outputs)) throw new ExpectError("the expected state must be a JSON object of stack outputs");
  const o = outputs as Record<string, unknown>;
  if (!Array.isArray(o.dnsRecords)) throw new ExpectError("stack output dnsRecords is missing or not a list (give the output of `pulumi stack output --json`)");
  const records = o.dnsRecords.map((r: unknown, i: number): ExpectedRecord => {
    const rec = r as Record<string, unknown>;
    if (!rec || typeof rec.name !== "string" || typeof rec.value !== "string" || !RECORD_TYPES.includes(rec.type as string)) {
      throw new ExpectError(`dnsRecords[${i}] must have a string name, a string value and a type of ${RECORD_TYPES.join(", ")}`);
    }
    return { name: lowerName(rec.name), type: rec.type as ExpectedRecord["type"], value: rec.value };
  });
  const mx = records.filter((r) => r.type === "MX");
  if (!mx.length) throw new ExpectError("dnsRecords holds no MX record: nothing says which domains the stack serves");
  const hosts = new Set(mx.map((r) => lowerName(r.value.split(/\s+/)[1] ?? "")));
  if (hosts.size !== 1) throw new ExpectError(`dnsRecords' MX records name ${hosts.size} hosts (${[...hosts].join(", ")}); expected one mail host`);
  const dkimTxt: Record<string, string> = {};
  if (o.dkimTxt !== undefined) {
    if (!o.dkimTxt || typeof o.dkimTxt !== "object" || Object.values(o.dkimTxt).some((v) => typeof v !== "string")) {
      throw new ExpectError("stack output dkimTxt must map each domain to its `v=DKIM1; …` text");
    }
    for (const [d, v] of Object.entries(o.dkimTxt as Record<string, string>)) dkimTxt[lowerName(d)] = v;
  }
  const domains = [...new Set(mx.map((r) => r.name))];
  const dkimSelector: Record<string, string> = {};
  for (const r of records) {
    const m = /^([^.]+)\._domainkey\.(.+)$/.exec(r.name);
    if (r.type === "TXT" && m) {
      dkimSelector[m[2]] = m[1];
      dkimTxt[m[2]] ??= r.value;
    }
  }
  return {
    hostname: [...hosts][0],
    domains,
    records,
    dkimTxt,
    dkimSelector,
    publicAddresses: stringArray(o.publicAddresses, "stack output publicAddresses"),
    stackWarnings: stringArray(o.warnings, "stack output warnings"),
  };
}
