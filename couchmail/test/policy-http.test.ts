/**
 * The auth policy over couchmail's HTTP listener, as Dovecot calls it (auth-policy.c: POST JSON to
 * `<url>?command=allow|report`, reads `{"status":N,"msg":…}` from allow, ignores report's body; a
 * non-2xx answer is "Policy server HTTP error" and, with auth_policy_reject_on_fail = no, lets the
 * login go on).
 */
import { AuthPolicy, POLICY_REFUSAL } from "../src/policy";
import { Stack, startStack } from "./harness";

const attempt = (login: string, remote: string, extra: Record<string, unknown> = {}) => ({
  login,
  remote,
  protocol: "imap",
  session_id: `s-${Math.random()}`,
  fail_type: "",
  tls: true,
  ...extra,
});

async function post(st: Stack, command: string, body: unknown, headers: Record<string, string> = {}): Promise<{ status: number; json: unknown }> {
  const r = await fetch(`${st.httpUrl}/dovecot/policy?command=${command}`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: typeof body === "string" ? body : JSON.stringify(body),
  });
  const text = await r.text();
  return { status: r.status, json: text ? JSON.parse(text) : null };
}

describe("POST /dovecot/policy", () => {
  let st: Stack;
  beforeAll(async () => {
    st = await startStack({ couchUp: false });
  });
  afterAll(() => st.stop());

  it("answers before the datastore is loaded (the policy needs no datastore): allow, then refuse past the limit", async () => {
    expect(st.running.cache.loaded).toBe(false);
    const answers = [];
    for (let i = 0; i < 6; i++) answers.push(await post(st, "allow", attempt("alice@example.org", "192.0.2.7")));
    expect(answers.slice(0, 5).map((a) => a.json)).toEqual(Array(5).fill({ status: 0 }));
    expect(answers[5]).toEqual({ status: 200, json: { status: -1, msg: POLICY_REFUSAL } });
    const report = await post(st, "report", attempt("alice@example.org", "192.0.2.7", { success: false, policy_reject: true }));
    expect(report.status).toBe(200);
  });

  it("logs and counts refusals without the password hash Dovecot could send", async () => {
    const secret = "9f8e7d6c5b4a";
    for (let i = 0; i < 8; i++) await post(st, "allow", attempt("bob@example.org", "192.0.2.8", { pwhash: secret }));
    const lines = st.log.lines.filter((l) => l.includes("policy_reject"));
    expect(lines.length).toBeGreaterThan(0);
    expect(JSON.parse(lines.at(-1)!)).toMatchObject({
      event: "policy_reject",
      remote: "192.0.2.8",
      login: "bob@example.org",
      protocol: "imap",
      limit: "guess",
    });
    expect(st.log.lines.join("\n")).not.toContain(secret);
    const metrics = await (await fetch(`${st.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/couchmail_policy_decisions_total\{decision="reject",limit="guess"\} [1-9]/);
    expect(metrics).toMatch(/couchmail_policy_decisions_total\{decision="allow",limit="none"\} [1-9]/);
    expect(metrics).toMatch(/couchmail_policy_reports_total\{result="refused"\} 1/);
    expect(metrics).toMatch(/couchmail_policy_tracked\{kind="buckets"\} [1-9]/);
  });

  it("refuses what Dovecot never sends: other methods, commands, malformed or oversized bodies", async () => {
    expect((await fetch(`${st.httpUrl}/dovecot/policy?command=allow`)).status).toBe(405);
    expect((await post(st, "forget", attempt("a@example.org", "192.0.2.1"))).status).toBe(400);
    expect((await post(st, "allow", "{not json")).status).toBe(400);
    expect((await post(st, "allow", { login: 7 })).status).toBe(400);
    expect((await post(st, "allow", { login: "x".repeat(20_000) })).status).toBe(413);
    const metrics = await (await fetch(`${st.httpUrl}/metrics`)).text();
    expect(metrics).toMatch(/couchmail_protocol_errors_total\{protocol="policy"\} 3/);
  });

  it("a policy that throws answers 503 (Dovecot then goes on without it), is logged and counted, and keeps serving", async () => {
    const spy = jest.spyOn(AuthPolicy.prototype, "allow").mockImplementation(() => {
      throw new TypeError("simulated bug in the policy");
    });
    try {
      expect((await post(st, "allow", attempt("carol@example.org", "192.0.2.9"))).status).toBe(503);
    } finally {
      spy.mockRestore();
    }
    expect(st.log.lines.some((l) => l.includes("policy_failed") && l.includes("simulated bug"))).toBe(true);
    expect(await (await fetch(`${st.httpUrl}/metrics`)).text()).toMatch(/couchmail_lookup_failures_total\{map="policy"\} 1/);
    expect((await post(st, "allow", attempt("carol@example.org", "192.0.2.9"))).json).toEqual({ status: 0 });
  });
});

describe("with COUCHMAIL_HTTP_TOKEN", () => {
  let st: Stack;
  beforeAll(async () => {
    st = await startStack({ couchUp: false, serve: { httpToken: "s3cret" } });
  });
  afterAll(() => st.stop());

  it("the policy needs the token like the passdb (Dovecot sends it with auth_policy_server_api_header)", async () => {
    expect((await post(st, "allow", attempt("a@example.org", "192.0.2.1"))).status).toBe(401);
    expect((await post(st, "allow", attempt("a@example.org", "192.0.2.1"), { authorization: "Bearer s3cret" })).json).toEqual({ status: 0 });
  });
});
