/** The CLI as users run it: the bundled binary in a child process, against the test CouchDB. */
import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import bcrypt from "bcryptjs";
import { Couch, couchConfigFromEnv } from "../src/couch";
import { MailboxDoc } from "../src/model";
import { TestCouch, startCouch } from "./couchdb";

let couchServer: TestCouch;
let dir: string;
let cli: string;

beforeAll(async () => {
  couchServer = await startCouch();
  dir = mkdtempSync(join(tmpdir(), "couchmail-cli-"));
  cli = join(dir, "couchmail.js");
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- esbuild's JS API, dev dependency
  require("esbuild").buildSync({
    entryPoints: [join(__dirname, "../src/cli.ts")],
    bundle: true,
    platform: "node",
    target: "node20",
    outfile: cli,
    logLevel: "warning",
  });
});
afterAll(async () => {
  await couchServer.stop();
  rmSync(dir, { recursive: true, force: true });
});

// Asynchronous: the test CouchDB lives in this process and must keep answering.
function run(args: string[], input = "", env: Record<string, string | undefined> = {}): Promise<{ code: number | null; out: string; err: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [cli, ...args], {
      // No sievec on this PATH: the compile check is exercised by the real-client test.
      env: { PATH: "/nonexistent", COUCHDB_URL: couchServer.url, COUCHDB_DATABASE: "cli", ...env },
    });
    let out = "";
    let err = "";
    child.stdout.on("data", (c) => (out += c));
    child.stderr.on("data", (c) => (err += c));
    child.on("close", (code) => resolve({ code, out, err }));
    child.stdin.end(input);
  });
}

describe("couchmail CLI", () => {
  it("sets up a domain and a mailbox with a bcrypt hash read from stdin", async () => {
    expect((await run(["init"])).code).toBe(0);
    expect(await run(["domain", "add", "Example.org"])).toMatchObject({ code: 0, out: "added domain example.org\n" });
    expect((await run(["user", "add", "Alice@Example.org", "--password-stdin", "--quota", "2G"], "correct horse\n")).code).toBe(0);
    const doc = await new Couch({ url: couchServer.url, db: "cli" }).get<MailboxDoc>("mailbox:alice@example.org");
    expect(doc!.password).toMatch(/^\{BLF-CRYPT\}\$2b\$12\$/);
    expect(await bcrypt.compare("correct horse", doc!.password.slice("{BLF-CRYPT}".length))).toBe(true);
    expect(doc!.quota_bytes).toBe(2 * 1024 ** 3);
    expect(JSON.parse((await run(["--json", "user", "ls"])).out)).toEqual([
      { address: "alice@example.org", enabled: true, login: true, quota_bytes: 2 * 1024 ** 3, sieve: [] },
    ]);
  });

  it("fails clearly, with distinct exit codes", async () => {
    const noDomain = await run(["user", "add", "bob@else.net", "--password-stdin"], "a long password");
    expect(noDomain.code).toBe(3);
    expect(noDomain.err).toMatch(/domain else\.net does not exist/);
    const bad = await run(["user", "add", "not-an-address", "--password-stdin"], "a long password");
    expect(bad.code).toBe(2);
    expect(bad.err).toMatch(/not an address/);
    expect((await run(["user", "add", "x/y@example.org", "--password-stdin"], "a long password")).code).toBe(2);
    const dup = await run(["domain", "add", "example.org"]);
    expect(dup.code).toBe(4);
    expect(dup.err).toMatch(/already exists/);
    expect((await run(["user", "add", "bob@example.org", "--password-stdin"], "short")).err).toMatch(/too short/);
    expect((await run(["user", "add", "bob@example.org"], "")).err).toMatch(/--password-stdin/);
    expect(await run(["domain", "ls"], "", { COUCHDB_URL: undefined })).toMatchObject({ code: 2, err: expect.stringMatching(/COUCHDB_URL/) });
    expect((await run(["domain", "ls"], "", { COUCHDB_URL: "http://127.0.0.1:9" })).code).toBe(1);
    const json = await run(["--json", "user", "rm", "nobody@example.org"]);
    expect(json.code).toBe(3);
    expect(JSON.parse(json.out)).toEqual({ ok: false, error: "mailbox nobody@example.org does not exist", exit: 3 });
  });

  it("never takes a password on the command line", async () => {
    const r = await run(["user", "add", "bob@example.org", "--password", "hunter22"]);
    expect(r.code).toBe(2);
    expect(r.err).toMatch(/unknown option/);
  });

  it("manages aliases, sieve scripts and refuses to drop a non-empty domain", async () => {
    expect((await run(["alias", "add", "info@example.org", "alice@example.org", "ext@else.net"])).out).toBe(
      "info@example.org -> alice@example.org, ext@else.net\n",
    );
    expect((await run(["alias", "rm", "info@example.org", "ext@else.net"])).code).toBe(0);
    expect(JSON.parse((await run(["--json", "alias", "ls"])).out)).toEqual([{ source: "info@example.org", targets: ["alice@example.org"] }]);
    const put = await run(["sieve", "put", "alice@example.org"], "keep;\n");
    expect(put.code).toBe(0);
    expect(put.err).toMatch(/sievec not found/);
    expect((await run(["sieve", "put", "alice@example.org", "--no-check"], "discard;\n")).out).toMatch(/revision 2/);
    expect((await run(["sieve", "get", "alice@example.org"])).out).toBe("discard;\n");
    expect(JSON.parse((await run(["--json", "sieve", "ls", "alice@example.org"])).out)).toEqual([{ name: "default", rev: 2, bytes: 9 }]);
    expect((await run(["sieve", "rm", "alice@example.org"])).code).toBe(0);
    expect((await run(["sieve", "get", "alice@example.org"])).code).toBe(3);
    expect(await run(["domain", "rm", "example.org"])).toMatchObject({ code: 4, err: expect.stringMatching(/1 mailbox\(es\) and 1 alias/) });
    expect((await run(["user", "rm", "alice@example.org"])).out).toMatch(/aliases still point to it: info@example.org/);
  });

  it("sync, as the deploy's Job runs it, then the addFirstUser command on the fresh stack", async () => {
    const env = { COUCHDB_DATABASE: "fresh" };
    const first = await run(["sync", "--domains", "example.test,example.net", "--postmaster", "postmaster@example.test"], "", env);
    expect(first).toMatchObject({ code: 0, err: "" });
    expect(first.out).toBe(
      [
        "design document created",
        "domains created: example.test, example.net; already present: none",
        "role addresses (postmaster@, abuse@ of every domain) go to postmaster@example.test (created); its mail: mailbox created — give it a password with: couchmail user add postmaster@example.test",
        "",
      ].join("\n"),
    );
    const again = JSON.parse((await run(["--json", "sync", "--domains", "example.test", "--postmaster", "postmaster@example.test"], "", env)).out);
    expect(again).toMatchObject({ ok: true, design: "unchanged", created: [], unlisted: ["example.net"] });
    expect((await run(["user", "ls"], "", env)).out).toBe("postmaster@example.test (no password yet)\n");
    expect(await run(["user", "add", "postmaster@example.test", "--password-stdin"], "a long password\n", env)).toMatchObject({
      code: 0,
      out: "password set for mailbox postmaster@example.test, which had none\n",
    });
    expect(await run(["sync", "--domains", "example.test"], "", env)).toMatchObject({ code: 2, err: expect.stringMatching(/--postmaster/) });
  });

  it("reads connection settings from *_FILE variables (Kubernetes Secrets)", () => {
    const f = join(dir, "password");
    writeFileSync(f, "s3cret\n");
    expect(couchConfigFromEnv({ COUCHDB_URL: "http://db:5984/", COUCHDB_USER: "admin", COUCHDB_PASSWORD_FILE: f })).toEqual({
      url: "http://db:5984",
      db: "mail",
      user: "admin",
      password: "s3cret",
    });
  });
});
