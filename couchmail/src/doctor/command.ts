import { readFileSync } from "node:fs";
import { Command } from "commander";
import { AdminError, EXIT } from "../admin";
import { ExpectError, parseExpected } from "./expect";
import { exitCode, renderTable } from "./report";
import { createResolver } from "./resolver";
import { DEFAULT_DNSBLS, PORTS, PortName, parseTarget } from "./targets";

const collect = (value: string, previous: string[] = []) => [...previous, value];

function seconds(flag: string) {
  return (v: string): number => {
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new AdminError(`${flag} ${v}: give a positive number of seconds`, EXIT.usage);
    return n;
  };
}

interface DoctorFlags {
  expect: string;
  resolver?: string[];
  timeout: number;
  ca?: string;
  outboundAddress?: string[];
  endpoint?: string[];
  ehlo: string;
  relayProbeFrom: string;
  relayProbeTo: string;
  outboundProbe: string;
  relay?: string;
  dnsbl?: string[];
  user?: string;
  passwordStdin?: boolean;
  passwordFile?: string;
  arrivalTimeout: number;
}

const usage = (m: string) => new AdminError(m, EXIT.usage);

function readSource(path: string, what: string): string {
  try {
    return readFileSync(path === "-" ? 0 : path, "utf8");
  } catch (e) {
    throw usage(`${what} ${path}: ${(e as Error).message}`);
  }
}

/**
 * `couchmail doctor`: the deliverability check. Exit 0 when every check passed, 1 when the worst is a warning, 2
 * when one failed (usage errors are 2 too, with a message and no table).
 */
export function addDoctorCommand(program: Command, json: () => boolean): void {
  program
    .command("doctor")
    .description("check that mail from and to the deployed stack is delivered: DNS, reverse DNS, TLS, open relay, DNSBLs, a round trip")
    .requiredOption("--expect <file>", "the stack outputs: `pulumi stack output --json` saved to a file, or - for standard input")
    .option("--resolver <ip[:port]>", "DNS server to ask (repeatable); default the system's", collect)
    .option("--timeout <seconds>", "limit for each connection, reply and DNS question", seconds("--timeout"), 10)
    .option("--ca <file>", "also trust this CA certificate (PEM), e.g. a private CA")
    .option("--outbound-address <ip>", "address mail leaves the cluster from (repeatable); default publicAddresses, else the mail host's A records", collect)
    .option("--endpoint <name=host:port>", `connect here instead of the mail host's address (repeatable; names: ${Object.keys(PORTS).join(", ")})`, collect)
    .option("--ehlo <name>", "name the doctor gives in EHLO", "doctor.invalid")
    .option("--relay-probe-from <address>", "foreign sender for the open-relay probe", "doctor-probe@gmail.com")
    .option("--relay-probe-to <address>", "foreign recipient for the open-relay probe", "doctor-probe@outlook.com")
    .option("--outbound-probe <host[:port]>", "an MX outside your network to test outbound port 25 against (a domain means its MX)", "gmail.com")
    .option("--relay <host[:port]>", "the smarthost the stack sends through (relayHost): checked instead of outbound port 25")
    .option("--dnsbl <zone>", `DNSBL zone (repeatable); default ${DEFAULT_DNSBLS.join(", ")}`, collect)
    .option("--user <address>", "mailbox for the round trip (submit to itself, fetch over IMAP); needs a password")
    .option("--password-stdin", "read the round trip's password from standard input")
    .option("--password-file <file>", "read the round trip's password from a file")
    .option("--arrival-timeout <seconds>", "how long the round trip waits for the message", seconds("--arrival-timeout"), 60)
    .action(async (f: DoctorFlags) => {
      if (f.passwordStdin && f.expect === "-") throw usage("--password-stdin and --expect - both want standard input: save the stack outputs to a file");
      if ((f.passwordStdin || f.passwordFile) && !f.user) throw usage("a password was given without --user");
      if (f.user && !f.passwordStdin && !f.passwordFile) throw usage("--user needs --password-stdin or --password-file");
      let expected;
      try {
        expected = parseExpected(readSource(f.expect, "--expect"));
      } catch (e) {
        if (e instanceof ExpectError) throw usage(`--expect: ${e.message}`);
        throw e;
      }
      const endpoints: Partial<Record<PortName, ReturnType<typeof parseTarget>>> = {};
      for (const spec of f.endpoint ?? []) {
        const [name, value] = spec.split("=", 2);
        if (!(name in PORTS) || !value) throw usage(`--endpoint ${spec}: give NAME=HOST:PORT with NAME one of ${Object.keys(PORTS).join(", ")}`);
        endpoints[name as PortName] = wrap(() => parseTarget(value, PORTS[name as PortName], `--endpoint ${name}`));
      }
      const password = f.passwordFile ? readSource(f.passwordFile, "--password-file") : f.passwordStdin ? readSource("-", "--password-stdin") : undefined;
      const timeoutMs = f.timeout * 1000;
      // Loaded here: mailauth is large, and every other command (the sidecar's probes above all) starts without it.
      const { runDoctor } = await import("./index");
      const results = await runDoctor({
        expected,
        resolver: wrap(() => createResolver(f.resolver ?? [], timeoutMs)),
        timeoutMs,
        ca: f.ca ? readSource(f.ca, "--ca") : undefined,
        outboundAddresses: f.outboundAddress ?? [],
        endpoints,
        ehloName: f.ehlo,
        relayProbe: { from: f.relayProbeFrom, to: f.relayProbeTo },
        outboundProbe: f.outboundProbe,
        relay: f.relay ? wrap(() => parseTarget(f.relay!, 587, "--relay")) : undefined,
        dnsbls: f.dnsbl ?? DEFAULT_DNSBLS,
        roundTrip:
          f.user && password !== undefined ? { user: f.user, password: password.replace(/\r?\n$/, ""), arrivalMs: f.arrivalTimeout * 1000 } : undefined,
        now: () => new Date(),
      });
      const code = exitCode(results);
      if (json()) process.stdout.write(JSON.stringify({ ok: code === 0, exit: code, results }) + "\n");
      else process.stdout.write(renderTable(results) + "\n");
      if (code !== 0) throw new DoctorVerdict(code);
    });
}

/** A finished run whose worst result was a warning or a failure: the table says why, so nothing more is printed. */
export class DoctorVerdict extends AdminError {
  constructor(code: 1 | 2) {
    super("", code);
  }
}

function wrap<T>(fn: () => T): T {
  try {
    return fn();
  } catch (e) {
    throw usage((e as Error).message);
  }
}
