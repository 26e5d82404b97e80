/**
 * A lookup handler that throws must answer a temporary failure (Postfix: TEMP ⇒ 451, Dovecot:
 * 503 ⇒ INTERNAL_FAILURE, Pigeonhole: F), be counted, and leave the process serving.
 */
import { EventEmitter } from "node:events";
import * as lookups from "../src/lookups";
import { installLastResort } from "../src/guard";
import { encodeNetstring } from "../src/netstring";
import { LogSink, SocketmapClient, Stack, rawExchange, startStack, waitFor } from "./harness";
import { createLogger } from "../src/log";
import net from "node:net";

function boom(): never {
  throw new TypeError("simulated bug in a lookup handler");
}

/** One dict connection kept open, so "still serving" means the same connection too. */
async function dictConnection(path: string): Promise<{ ask(line: string): Promise<string>; close(): void }> {
  const s = net.connect(path);
  await new Promise<void>((resolve, reject) => s.once("connect", resolve).once("error", reject));
  let buf = "";
  const waiters: ((l: string) => void)[] = [];
  s.setEncoding("utf8");
  s.on("data", (c: string) => {
    buf += c;
    let nl: number;
    while ((nl = buf.indexOf("\n")) >= 0 && waiters.length) {
      const line = buf.slice(0, nl);
      buf = buf.slice(nl + 1);
      waiters.shift()!(line);
    }
  });
  s.write("H4\t0\t0\t\tsieve\n");
  return {
    ask(line: string) {
      s.write(line + "\n");
      return new Promise((resolve) => waiters.push(resolve));
    },
    close: () => s.destroy(),
  };
}

/** A counter's value with one label, from the stack's /metrics. */
async function counter(st: Stack, name: string, label: string, value: string): Promise<number> {
  const text = await (await fetch(`${st.httpUrl}/metrics`)).text();
  const m = new RegExp(`^${name}\\{${label}="${value}"\\} (\\d+)$`, "m").exec(text);
  return m ? Number(m[1]) : 0;
}
const failures = (st: Stack, map: string) => counter(st, "couchmail_lookup_failures_total", "map", map);

let st: Stack;
beforeAll(async () => {
  st = await startStack();
  await waitFor(() => st.running.cache.loaded);
});
afterAll(async () => {
  jest.restoreAllMocks();
  await st.stop();
});
afterEach(() => jest.restoreAllMocks());

describe("a handler that throws", () => {
  it("socketmap: TEMP, counted, and the same connection answers the next request", async () => {
    const sm = await SocketmapClient.connect(st.socketmapPort);
    jest.spyOn(lookups.socketmapMaps, "domains").mockImplementationOnce(boom);
    expect(await sm.query("domains", "example.org")).toBe("TEMP internal error");
    expect(await sm.query("domains", "example.org")).toBe("OK example.org");
    expect(await failures(st, "domains")).toBe(1);
    sm.close();
  });

  it("dict: F, counted, and the same connection answers the next request", async () => {
    const c = await dictConnection(st.dictPath);
    jest.spyOn(lookups, "sieveLookup").mockImplementationOnce(boom);
    expect(await c.ask("Lpriv/sieve/name/default\tbob@example.org")).toBe("Finternal error");
    expect(await c.ask("Lpriv/sieve/name/default\tbob@example.org")).toBe("Oempty");
    expect(await failures(st, "sieve")).toBe(1);
    c.close();
  });

  it.each(["passdb", "userdb"] as const)("HTTP %s: 503 (Dovecot's INTERNAL_FAILURE), counted, and the next request is served", async (kind) => {
    jest.spyOn(lookups, kind).mockImplementationOnce(boom);
    const failed = await fetch(`${st.httpUrl}/dovecot/${kind}/bob%40example.org`);
    expect(failed.status).toBe(503);
    expect(await failed.json()).toEqual({ error: "internal error" });
    const next = await fetch(`${st.httpUrl}/dovecot/${kind}/bob%40example.org`);
    expect(next.status).toBe(200);
    expect(await failures(st, kind)).toBe(1);
    expect(st.log.lines.some((l) => l.includes('"event":"lookup_failed"') && l.includes(`"map":"${kind}"`) && l.includes("simulated bug"))).toBe(true);
  });
});

/**
 * A bug outside the lookups (here: recording a lookup's metrics throws) is ours, not the client's: every
 * protocol answers a temporary failure, logs it as an internal error and counts it as one — never as the
 * client breaking the protocol — and the process keeps serving.
 */
describe("a failure outside the lookups", () => {
  const failOnce = () =>
    jest.spyOn(st.running.metrics, "observe").mockImplementationOnce(() => {
      throw new TypeError("simulated bug outside the lookups");
    });
  const loggedInternal = (protocol: string) =>
    st.log.lines.some((l) => l.includes('"event":"internal_error"') && l.includes(`"protocol":"${protocol}"`) && l.includes("simulated bug outside"));

  it("socketmap: TEMP, the connection closed, counted as an internal error", async () => {
    failOnce();
    const r = await rawExchange(st.socketmapPort, encodeNetstring("domains example.org"));
    expect(r).toEqual({ data: "19:TEMP internal error,", closedByServer: true });
    expect(await counter(st, "couchmail_internal_errors_total", "protocol", "socketmap")).toBe(1);
    expect(await counter(st, "couchmail_protocol_errors_total", "protocol", "socketmap")).toBe(0);
    expect(loggedInternal("socketmap")).toBe(true);
  });

  it("dict: F, the connection closed, counted as an internal error and not as the client's protocol error", async () => {
    failOnce();
    const r = await rawExchange(st.dictPath, "H4\t0\t0\t\tsieve\nLpriv/sieve/name/default\tbob@example.org\n");
    expect(r).toEqual({ data: "Finternal error\n", closedByServer: true });
    expect(await counter(st, "couchmail_internal_errors_total", "protocol", "dict")).toBe(1);
    expect(await counter(st, "couchmail_protocol_errors_total", "protocol", "dict")).toBe(0);
    expect(loggedInternal("dict")).toBe(true);
    expect(st.log.lines.some((l) => l.includes('"event":"protocol_error"') && l.includes('"protocol":"dict"'))).toBe(false);
  });

  it("HTTP: 503 (Dovecot's INTERNAL_FAILURE), counted as an internal error, and the next request is served", async () => {
    failOnce();
    const failed = await fetch(`${st.httpUrl}/dovecot/userdb/bob%40example.org`);
    expect(failed.status).toBe(503);
    expect(await failed.json()).toEqual({ error: "internal error" });
    expect((await fetch(`${st.httpUrl}/dovecot/userdb/bob%40example.org`)).status).toBe(200);
    expect(await counter(st, "couchmail_internal_errors_total", "protocol", "http")).toBe(1);
    expect(loggedInternal("http")).toBe(true);
  });
});

describe("the process-level last resort", () => {
  it("logs what escaped every guard and exits for a restart instead of serving from an unknown state", () => {
    const proc = new EventEmitter();
    const sink = new LogSink();
    const exits: number[] = [];
    installLastResort(proc, createLogger("info", sink), (code) => exits.push(code));
    proc.emit("uncaughtException", new Error("escaped"));
    proc.emit("unhandledRejection", new Error("also escaped"));
    expect(exits).toEqual([70, 70]);
    expect(sink.lines.map((l) => JSON.parse(l))).toEqual([
      expect.objectContaining({ level: "fatal", event: "uncaught_exception", err: "escaped" }),
      expect.objectContaining({ level: "fatal", event: "unhandled_rejection", err: "also escaped" }),
    ]);
  });
});
