import { isIP } from "node:net";
import { Target, TlsOptions } from "./conn";
import { checkDkim, checkDmarc, checkHostAddress, checkMx, checkOptionalTxt, checkSpf } from "./dns-checks";
import { Expected } from "./expect";
import { CheckResult, fail, skip } from "./report";
import { roundTrip } from "./roundtrip";
import { DoctorResolver } from "./resolver";
import { PORTS, PortName, parseTarget } from "./targets";
import { TlsEndpoint, checkBannerName, checkDnsbl, checkOpenRelay, checkOutbound, checkPtr, checkTlsEndpoint } from "./smtp-checks";

export interface DoctorOptions {
  expected: Expected;
  resolver: DoctorResolver;
  timeoutMs: number;
  /** Extra trusted CA (PEM). */
  ca?: string;
  /** The addresses mail leaves from; default: the stack's publicAddresses, else the mail host's A records. */
  outboundAddresses: string[];
  /** Where to connect instead of the mail host's address and standard port. */
  endpoints: Partial<Record<PortName, Target>>;
  ehloName: string;
  relayProbe: { from: string; to: string };
  /** A host name or address, optionally `:port`; a name with MX records means its first MX. */
  outboundProbe?: string;
  relay?: Target;
  dnsbls: string[];
  roundTrip?: { user: string; password: string; arrivalMs: number };
  now: () => Date;
}

async function resolveProbe(resolver: DoctorResolver, spec: string): Promise<Target | undefined> {
  const t = parseTarget(spec, 25, "--outbound-probe");
  if (isIP(t.host)) return t;
  const mx = await resolver.mx(t.host);
  const host = mx.kind === "records" && mx.records.length ? [...mx.records].sort((a, b) => a.priority - b.priority)[0].exchange : t.host;
  const a = await resolver.a(host);
  return a.kind === "records" && a.records.length ? { host: a.records[0], port: t.port } : undefined;
}

/** Every check, in the order of the table: DNS, the host's identity, TLS, abuse, outbound, the round trip. */
export async function runDoctor(o: DoctorOptions): Promise<CheckResult[]> {
  const { expected: e, resolver } = o;
  const results: CheckResult[] = [];
  const host = await checkHostAddress(e, resolver);
  results.push(host.result);
  const outbound = o.outboundAddresses.length ? o.outboundAddresses : e.publicAddresses.length ? e.publicAddresses : host.addresses;
  for (const domain of e.domains) {
    results.push(await checkMx(e, resolver, domain));
    results.push(await checkSpf(e, resolver, domain, outbound));
    results.push(await checkDkim(e, resolver, domain));
    results.push(await checkDmarc(e, resolver, domain));
    results.push(await checkOptionalTxt(e, resolver, "MTA-STS", `_mta-sts.${domain}`, /^v=STSv1/i));
    results.push(await checkOptionalTxt(e, resolver, "TLS-RPT", `_smtp._tls.${domain}`, /^v=TLSRPTv1/i));
  }
  for (const address of outbound) results.push(await checkPtr(resolver, address, e.hostname));
  const target = (name: PortName): Target | undefined => o.endpoints[name] ?? (host.addresses[0] ? { host: host.addresses[0], port: PORTS[name] } : undefined);
  const unreachable = (check: string) => fail(check, `${e.hostname} has no address to connect to`, `publish an A record for ${e.hostname}, or give --endpoint`);
  const smtp = target("smtp");
  results.push(smtp ? await checkBannerName(smtp, e.hostname, o.ehloName, o.timeoutMs) : unreachable("SMTP banner 25"));
  const tls: TlsOptions = { servername: e.hostname, ca: o.ca };
  const tlsPorts: [PortName, TlsEndpoint["kind"]][] = [
    ["smtp", "smtp-starttls"],
    ["submission", "smtp-starttls"],
    ["submissions", "smtp-implicit"],
    ["imaps", "imap-implicit"],
  ];
  for (const [name, kind] of tlsPorts) {
    const t = target(name);
    results.push(t ? await checkTlsEndpoint({ name, target: t, kind }, tls, o.ehloName, o.timeoutMs, o.now()) : unreachable(`TLS ${name}`));
  }
  results.push(smtp ? await checkOpenRelay(smtp, o.relayProbe.from, o.relayProbe.to, o.ehloName, o.timeoutMs) : unreachable("open relay 25"));
  for (const address of outbound) results.push(await checkDnsbl(resolver, address, o.dnsbls));
  const probe = o.outboundProbe ? await resolveProbe(resolver, o.outboundProbe) : undefined;
  results.push(await checkOutbound(e.stackWarnings, probe, o.relay, o.timeoutMs));
  if (!o.roundTrip) {
    results.push(skip("round trip", "no credentials given (--user with --password-stdin or --password-file)"));
  } else {
    const submission = target("submission");
    const imaps = target("imaps");
    if (!submission || !imaps) results.push(unreachable("round trip"));
    else if (!outbound.length) results.push(fail("round trip", "no outbound address to judge SPF for", "give --outbound-address"));
    else {
      results.push(
        ...(await roundTrip({
          user: o.roundTrip.user,
          password: o.roundTrip.password,
          submission,
          imaps,
          tls,
          ehloName: o.ehloName,
          outboundAddress: outbound[0],
          hostname: e.hostname,
          resolver,
          timeoutMs: o.timeoutMs,
          arrivalMs: o.roundTrip.arrivalMs,
        })),
      );
    }
  }
  return results;
}
