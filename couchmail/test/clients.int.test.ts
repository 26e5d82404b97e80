/**
 * couchmail against the real clients from Debian 13: Postfix's postmap for every socketmap,
 * Dovecot 2.4.1 (Lua passdb/userdb through the shipped script, doveadm auth test / user,
 * LMTP delivery running a sieve script fetched through the dict proxy) and Pigeonhole's
 * sievec behind `couchmail sieve put`. couchmail runs here (node, loopback and a unix socket
 * in a temp dir); the clients run in a buildah container sharing the host network.
 * Needs root and buildah; builds mail/couchmail-test-clients:dev when missing (cached).
 */
import { execFileSync, spawn, spawnSync } from "node:child_process";
import { chmodSync, copyFileSync, existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import net from "node:net";
import { join } from "node:path";
import * as admin from "../src/admin";
import { Stack, freePort, startStack, waitFor } from "./harness";

const IMAGE = "mail/couchmail-test-clients:dev";
const HERE = __dirname;

function requireBuildah(): void {
  const r = spawnSync("buildah", ["--version"], { encoding: "utf8" });
  if (r.error || r.status !== 0) throw new Error("buildah is required for couchmail's real-client tests (apt-get install buildah), and root to run it");
}

function buildImage(): void {
  // Idempotent: with --layers an unchanged Dockerfile rebuilds from cache in about a second.
  execFileSync(
    "buildah",
    ["bud", "--isolation", "chroot", "--layers", "--pull=never", "--quiet", "-f", join(HERE, "clients/Dockerfile"), "-t", IMAGE, join(HERE, "clients")],
    {
      stdio: ["ignore", "ignore", "inherit"],
    },
  );
}

function bundleCli(outfile: string): void {
  // eslint-disable-next-line @typescript-eslint/no-require-imports -- esbuild's JS API, dev dependency
  const esbuild = require("esbuild");
  esbuild.buildSync({ entryPoints: [join(HERE, "../src/cli.ts")], bundle: true, platform: "node", target: "node20", outfile, logLevel: "warning" });
}

/** A line-at-a-time LMTP conversation. */
async function lmtp(port: number, from: string, rcpts: string[], message: string): Promise<{ rcpt: string[]; data: string[] }> {
  const sock = net.connect(port, "127.0.0.1");
  let buf = "";
  const waiters: ((l: string) => void)[] = [];
  const lines: string[] = [];
  sock.on("data", (c) => {
    buf += c.toString();
    let nl;
    while ((nl = buf.indexOf("\r\n")) >= 0) {
      const l = buf.slice(0, nl);
      buf = buf.slice(nl + 2);
      const w = waiters.shift();
      if (w) w(l);
      else lines.push(l);
    }
  });
  const line = () => (lines.length ? Promise.resolve(lines.shift()!) : new Promise<string>((r) => waiters.push(r)));
  const reply = async () => {
    let l = await line();
    while (/^\d{3}-/.test(l)) l = await line();
    return l;
  };
  const cmd = async (c: string) => {
    sock.write(c + "\r\n");
    return reply();
  };
  try {
    expect(await reply()).toMatch(/^220/);
    expect(await cmd("LHLO test.example")).toMatch(/^250/);
    expect(await cmd(`MAIL FROM:<${from}>`)).toMatch(/^250/);
    const rcpt: string[] = [];
    for (const r of rcpts) rcpt.push(await cmd(`RCPT TO:<${r}>`));
    const accepted = rcpt.filter((r) => r.startsWith("250")).length;
    const data: string[] = [];
    if (accepted) {
      expect(await cmd("DATA")).toMatch(/^354/);
      sock.write(message.replace(/\n/g, "\r\n") + "\r\n.\r\n");
      for (let i = 0; i < accepted; i++) data.push(await reply());
    }
    await cmd("QUIT");
    return { rcpt, data };
  } finally {
    sock.destroy();
  }
}

function mailIn(dir: string): string[] {
  return existsSync(dir) ? readdirSync(dir) : [];
}

describe("real clients (Postfix 3.10 postmap, Dovecot 2.4.1, Pigeonhole)", () => {
  let st: Stack;
  let down: Stack;
  let dir: string;
  let ctr: string;
  let child: ReturnType<typeof spawn>;
  let childDone: Promise<number | null>;
  let stderr = "";
  const out = (name: string) => readFileSync(join(dir, "out", name), "utf8");
  let lmtpPort: number;

  beforeAll(async () => {
    requireBuildah();
    buildImage();
    st = await startStack({
      serve: (d) => {
        // The container's dovecot (auth) and vmail (delivery, dict socket via group 5000) users need access.
        chmodSync(d, 0o755);
        mkdirSync(join(d, "mail"), { mode: 0o777 });
        chmodSync(join(d, "mail"), 0o777);
        return { socketGroup: "5000", mailHome: join(d, "mail"), cache: { heartbeatMs: 1000, staleAfterMs: 5000 } };
      },
    });
    dir = st.dir;
    await waitFor(() => st.running.cache.loaded);
    await admin.userAdd(st.couch, "carol@example.org", "carol's password", {});
    down = await startStack({ couchUp: false });

    const smPort = Number(st.running.addresses.socketmap[0].split(":").pop());
    lmtpPort = await freePort();
    copyFileSync(join(HERE, "../lua/couchmail-auth.lua"), join(dir, "couchmail-auth.lua"));
    copyFileSync(join(HERE, "clients/run.sh"), join(dir, "run.sh"));
    writeFileSync(
      join(dir, "dovecot.conf"),
      readFileSync(join(HERE, "clients/dovecot.conf"), "utf8")
        .replaceAll("@DIR@", dir)
        .replaceAll("@HTTP@", `http://${st.running.addresses.http[0]}`)
        .replaceAll("@LMTP_PORT@", String(lmtpPort)),
    );
    bundleCli(join(dir, "couchmail.js"));
    for (const f of ["couchmail-auth.lua", "run.sh", "dovecot.conf", "couchmail.js"]) chmodSync(join(dir, f), 0o644);

    ctr = `couchmail-clients-${process.pid}`;
    execFileSync("buildah", ["from", "--pull=never", "--name", ctr, IMAGE], { stdio: "ignore" });
    const downPort = down.socketmapPort;
    child = spawn(
      "buildah",
      [
        "run",
        "--isolation",
        "chroot",
        "--env",
        `COUCHDB_URL=${st.couch.config.url}`,
        "-v",
        `${dir}:${dir}`,
        ctr,
        "--",
        "sh",
        join(dir, "run.sh"),
        dir,
        String(smPort),
        String(downPort),
      ],
      { stdio: ["ignore", "ignore", "pipe"] },
    );
    child.stderr!.on("data", (c) => (stderr += c.toString()));
    childDone = new Promise((r) => child.on("exit", (code) => r(code)));
    await waitFor(() => existsSync(join(dir, "out/ready")) || child.exitCode !== null, 120_000);
    if (!existsSync(join(dir, "out/ready"))) throw new Error(`client container failed: ${stderr}`);
  }, 900_000);

  afterAll(async () => {
    if (dir) writeFileSync(join(dir, "stop"), "");
    await childDone;
    if (ctr) spawnSync("buildah", ["rm", ctr], { stdio: "ignore" });
    await down?.stop();
    await st?.stop();
  }, 60_000);

  it("postmap: every map, found and not found; +ext and catch-all resolved by the server", () => {
    expect(out("postmap.domain")).toBe("example.org\nrc=0\n");
    expect(out("postmap.domain-none")).toBe("rc=1\n");
    expect(out("postmap.mailbox")).toBe("alice@example.org\nrc=0\n");
    expect(out("postmap.mailbox-ext")).toBe("alice@example.org\nrc=0\n");
    expect(out("postmap.mailbox-none")).toBe("rc=1\n");
    expect(out("postmap.alias")).toBe("alice@example.org,bob@example.org\nrc=0\n");
    expect(out("postmap.alias-catchall")).toBe("alice@example.org\nrc=0\n");
    expect(out("postmap.alias-mailbox")).toBe("rc=1\n");
    expect(out("postmap.sender")).toBe("alice@example.org,bob@example.org\nrc=0\n");
    expect(out("postmap.sender-none")).toBe("rc=1\n");
  });

  it("postmap: TEMP and PERM are lookup errors to Postfix (smtpd: 451), never 'not found'", () => {
    // postmap exits 1 for both; "query error" is what makes smtpd answer 4xx instead of 5xx.
    expect(out("postmap.down")).toMatch(/socketmap server temporary error: datastore not loaded yet\n.*fatal: .*query error/);
    expect(out("postmap.badmap")).toMatch(/socketmap server permanent error: unknown map nosuchmap\n.*fatal: .*query error/);
  });

  it("doveadm auth test through the Lua passdb: right, wrong and unknown", () => {
    expect(out("auth-ok")).toMatch(/auth succeeded/);
    expect(out("auth-ok")).toMatch(/rc=0/);
    expect(out("auth-bad")).toMatch(/auth failed/);
    expect(out("auth-bad")).not.toMatch(/rc=0/);
    expect(out("auth-unknown")).toMatch(/auth failed/);
  });

  it("doveadm user through the Lua userdb", () => {
    const u = out("user");
    expect(u).toMatch(new RegExp(`home\\s+${dir}/mail/example.org/alice`));
    expect(u).toMatch(/quota_storage_size\s+1G/);
    expect(u).toMatch(/rc=0/);
    expect(out("user-unknown")).toMatch(/doesn't exist|unknown/i);
    expect(out("user-unknown")).not.toMatch(/rc=0/);
  });

  it("couchmail sieve put refuses a script sievec rejects, and stores one it accepts", () => {
    expect(out("sieve-bad")).toMatch(/does not compile/);
    expect(out("sieve-bad")).toMatch(/rc=2/);
    expect(out("sieve-good")).toMatch(/"checked":true/);
    expect(out("sieve-good")).toMatch(/rc=0/);
  });

  it("LMTP: the dict-served sieve script runs; users without one get the empty script; unknown users 550", async () => {
    await waitFor(() => st.running.cache.snapshot!.mailboxes.get("carol@example.org")?.sieve?.default !== undefined, 2000);
    const msg = "From: a@else.net\nTo: alice@example.org\nSubject: hi\n\nhello\n";
    const r = await lmtp(lmtpPort, "a@else.net", ["alice@example.org", "bob@example.org", "carol+tag@example.org", "nobody@example.org"], msg);
    expect(r.rcpt.slice(0, 3)).toEqual([expect.stringMatching(/^250/), expect.stringMatching(/^250/), expect.stringMatching(/^250/)]);
    expect(r.rcpt[3]).toMatch(/^550 5\.1\.1/);
    expect(r.data).toEqual([expect.stringMatching(/^250/), expect.stringMatching(/^250/), expect.stringMatching(/^250/)]);
    const home = (u: string) => join(dir, "mail/example.org", u, "Maildir");
    // alice's stored script files into "Alice", carol's into "Carol" (never each other's), bob has none.
    expect(mailIn(join(home("alice"), ".Alice/new"))).toHaveLength(1);
    expect(mailIn(join(home("carol"), ".Carol/new"))).toHaveLength(1);
    expect(mailIn(join(home("bob"), "new"))).toHaveLength(1);
    expect(mailIn(join(home("alice"), "new"))).toHaveLength(0);
    expect(existsSync(join(home("bob"), ".Alice"))).toBe(false);
  });
});
