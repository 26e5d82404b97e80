#!/usr/bin/env node
import { Command, Option } from "commander";
import * as admin from "./admin";
import { AdminError, EXIT } from "./admin";
import { Couch, CouchError, couchConfigFromEnv } from "./couch";
import { installLastResort } from "./guard";
import { addDoctorCommand, DoctorVerdict } from "./doctor/command";
import { createLogger } from "./log";
import { parseSize } from "./model";
import { serve } from "./serve";
import { serveConfigFromEnv } from "./serveconfig";

const DEFAULT_SIEVE = "default";

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const c of process.stdin) chunks.push(c as Buffer);
  return Buffer.concat(chunks).toString("utf8");
}

/** Reads a password without echo from the terminal. */
function promptHidden(question: string): Promise<string> {
  return new Promise((resolve, reject) => {
    const stdin = process.stdin;
    process.stderr.write(question);
    stdin.setRawMode(true);
    stdin.resume();
    let value = "";
    const done = (err?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      process.stderr.write("\n");
      if (err) reject(err);
      else resolve(value);
    };
    const onData = (buf: Buffer) => {
      for (const ch of buf.toString("utf8")) {
        if (ch === "\r" || ch === "\n") return done();
        if (ch === "\u0003") return done(new AdminError("cancelled", EXIT.failure));
        if (ch === "\u007f" || ch === "\b") value = value.slice(0, -1);
        else value += ch;
      }
    };
    stdin.on("data", onData);
  });
}

async function readPassword(opts: { passwordStdin?: boolean }): Promise<string> {
  if (opts.passwordStdin) return (await readStdin()).replace(/\r?\n$/, "");
  if (!process.stdin.isTTY) throw new AdminError("no terminal to prompt for the password: use --password-stdin", EXIT.usage);
  const a = await promptHidden("New password: ");
  const b = await promptHidden("Repeat password: ");
  if (a !== b) throw new AdminError("passwords do not match", EXIT.usage);
  return a;
}

function size(v: string): number {
  try {
    return parseSize(v);
  } catch (e) {
    throw new AdminError((e as Error).message, EXIT.usage);
  }
}

export function buildProgram(): Command {
  const program = new Command("couchmail")
    .description("CouchDB-backed lookups for Postfix and Dovecot, and the mail datastore's admin tool")
    .option("--json", "machine-readable output")
    .showHelpAfterError()
    .exitOverride();

  const json = () => program.opts().json === true;
  const couch = () => {
    try {
      return new Couch(couchConfigFromEnv());
    } catch (e) {
      throw new AdminError((e as Error).message, EXIT.usage);
    }
  };
  const done = (text: string, data: unknown = { ok: true }) => {
    if (json()) process.stdout.write(JSON.stringify(data) + "\n");
    else if (text) process.stdout.write(text + "\n");
  };

  program
    .command("serve")
    .description("run the lookup daemon (configured by environment variables, see README)")
    .action(async () => {
      const log = createLogger();
      installLastResort(process, log, (code) => process.exit(code));
      const running = await serve(serveConfigFromEnv(couchConfigFromEnv()), log);
      await new Promise<void>((resolve) => {
        const stop = (signal: string) => {
          log.info({ event: "shutdown", signal }, "closing listeners");
          running.close().then(resolve, resolve);
        };
        process.once("SIGTERM", () => stop("SIGTERM"));
        process.once("SIGINT", () => stop("SIGINT"));
      });
      log.info({ event: "stopped" }, "bye");
    });

  program
    .command("probe <check>")
    .description("exit 0 when the local daemon is ready (first load done) or live (answering); for Kubernetes probes")
    .action(async (check: string) => {
      const paths: Record<string, string> = { ready: "/readyz", live: "/healthz" };
      if (!paths[check]) throw new AdminError(`unknown check ${check}: use ready or live`, EXIT.usage);
      const listen = serveConfigFromEnv({ url: "http://unused", db: "unused" }).http[0];
      if (listen?.kind !== "tcp") throw new AdminError("COUCHMAIL_HTTP_LISTEN names no TCP listener to probe", EXIT.usage);
      const host = listen.host.includes(":") ? `[${listen.host}]` : listen.host;
      const res = await fetch(`http://${host}:${listen.port}${paths[check]}`, { signal: AbortSignal.timeout(2000) }).catch((e: Error) => {
        throw new AdminError(`probe ${check}: ${e.message}`, EXIT.failure);
      });
      const body = await res.text();
      if (!res.ok) throw new AdminError(`probe ${check}: HTTP ${res.status} ${body}`, EXIT.failure);
      done(body.trim(), JSON.parse(body));
    });

  program
    .command("init")
    .description("create the database if missing and install or upgrade the design document")
    .action(async () => {
      const what = await admin.init(couch());
      done(`design document ${what}`, { ok: true, design: what });
    });

  program
    .command("sync")
    .description("make the datastore match the stack's config: design document, domains, role addresses (run by the deploy's Job; safe to repeat)")
    .requiredOption("--domains <list>", "the served domains, comma-separated")
    .requiredOption("--postmaster <address>", "where postmaster@ and abuse@ of every domain go unless an alias or mailbox of theirs exists")
    .option("--delete-unlisted", "delete domains the list does not name, with their mailboxes and aliases (mail on disk is kept)")
    .action(async (o: { domains: string; postmaster: string; deleteUnlisted?: boolean }) => {
      const r = await admin.sync(couch(), { domains: o.domains.split(","), postmaster: o.postmaster, deleteUnlisted: o.deleteUnlisted });
      const lines = [
        `design document ${r.design}`,
        `domains created: ${r.created.join(", ") || "none"}; already present: ${r.present.join(", ") || "none"}`,
        ...(r.unlisted.length
          ? [`not in --domains, kept with their mailboxes: ${r.unlisted.join(", ")} (remove them with couchmail domain rm, or sync --delete-unlisted)`]
          : []),
        ...r.removed.map((x) => `deleted domain ${x.domain} with ${x.mailboxes} mailbox(es) and ${x.aliases} alias(es)`),
        `role addresses (postmaster@, abuse@ of every domain) go to ${r.postmaster.address} (${r.postmaster.roles}); its mail: ${r.postmaster.delivery}` +
          (r.postmaster.delivery === "mailbox created" ? ` — give it a password with: couchmail user add ${r.postmaster.address}` : ""),
      ];
      done(lines.join("\n"), { ok: true, ...r });
    });

  const domain = program.command("domain").description("mail domains");
  domain.command("add <domain>").action(async (d: string) => {
    await admin.domainAdd(couch(), d);
    done(`added domain ${d.toLowerCase()}`);
  });
  domain.command("rm <domain>").action(async (d: string) => {
    await admin.domainRm(couch(), d);
    done(`removed domain ${d.toLowerCase()}`);
  });
  domain.command("ls").action(async () => {
    const list = await admin.domainList(couch());
    done(list.join("\n"), list);
  });

  const user = program.command("user").description("mailboxes");
  user
    .command("add <address>")
    .option("--password-stdin", "read the password from standard input")
    .option("--quota <size>", "storage quota, e.g. 2G", size)
    .option("--disabled", "create the mailbox unable to log in")
    .action(async (address: string, o: { passwordStdin?: boolean; quota?: number; disabled?: boolean }) => {
      const pw = await readPassword(o);
      const what = await admin.userAdd(couch(), address, pw, { quotaBytes: o.quota, disabled: o.disabled });
      done(what === "added" ? `added mailbox ${address.toLowerCase()}` : `password set for mailbox ${address.toLowerCase()}, which had none`, {
        ok: true,
        result: what,
      });
    });
  user
    .command("passwd <address>")
    .option("--password-stdin", "read the password from standard input")
    .action(async (address: string, o: { passwordStdin?: boolean }) => {
      const pw = await readPassword(o);
      await admin.userPasswd(couch(), address, pw);
      done(`password changed for ${address.toLowerCase()}`);
    });
  user
    .command("set <address>")
    .description("change quota or login state")
    .option("--quota <size>", "storage quota, e.g. 2G; 0 removes it", size)
    .addOption(new Option("--enable", "allow logins"))
    .addOption(new Option("--disable", "refuse logins (mail is still delivered)").conflicts("enable"))
    .action(async (address: string, o: { quota?: number; enable?: boolean; disable?: boolean }) => {
      const enabled = o.enable ? true : o.disable ? false : undefined;
      if (enabled === undefined && o.quota === undefined) throw new AdminError("nothing to change: give --quota, --enable or --disable", EXIT.usage);
      await admin.userSet(couch(), address, { quotaBytes: o.quota, enabled });
      done(`updated ${address.toLowerCase()}`);
    });
  user.command("rm <address>").action(async (address: string) => {
    const dangling = await admin.userRm(couch(), address);
    const note = dangling.length ? `\nnote: aliases still point to it: ${dangling.join(", ")}` : "";
    done(`removed mailbox ${address.toLowerCase()}${note}`, { ok: true, aliases_still_pointing: dangling });
  });
  user.command("ls [domain]").action(async (d?: string) => {
    const list = await admin.userList(couch(), d);
    const text = list
      .map((u) => `${u.address}${u.enabled ? "" : " (disabled)"}${u.login ? "" : " (no password yet)"}${u.quota_bytes ? ` quota=${u.quota_bytes}` : ""}`)
      .join("\n");
    done(text, list);
  });

  const alias = program.command("alias").description("aliases (source → targets; @domain is a catch-all)");
  alias.command("add <source> <targets...>").action(async (source: string, targets: string[]) => {
    const all = await admin.aliasAdd(couch(), source, targets);
    done(`${source.toLowerCase()} -> ${all.join(", ")}`, { ok: true, source: source.toLowerCase(), targets: all });
  });
  alias
    .command("rm <source> [targets...]")
    .description("remove the given targets, or the whole alias")
    .action(async (source: string, targets: string[]) => {
      await admin.aliasRm(couch(), source, targets);
      done(`updated alias ${source.toLowerCase()}`);
    });
  alias.command("ls [domain]").action(async (d?: string) => {
    const list = await admin.aliasList(couch(), d);
    done(list.map((a) => `${a.source} -> ${a.targets.join(", ")}`).join("\n"), list);
  });

  const sieve = program.command("sieve").description(`per-mailbox sieve scripts served to Dovecot (default name "${DEFAULT_SIEVE}")`);
  sieve
    .command("put <address> [name]")
    .description("store a script read from --file or standard input (checked with sievec when installed)")
    .option("--file <path>", "read the script from this file")
    .option("--no-check", "do not compile-check with sievec")
    .action(async (address: string, name: string | undefined, o: { file?: string; check: boolean }) => {
      const { readFileSync } = await import("node:fs");
      const script = o.file ? readFileSync(o.file, "utf8") : await readStdin();
      let checked = false;
      if (o.check) {
        checked = admin.checkSieve(script);
        if (!checked) process.stderr.write("warning: sievec not found; script stored without a compile check\n");
      }
      const rev = await admin.sievePut(couch(), address, name ?? DEFAULT_SIEVE, script);
      done(`stored sieve script ${name ?? DEFAULT_SIEVE} for ${address.toLowerCase()} (revision ${rev})`, { ok: true, rev, checked });
    });
  sieve.command("get <address> [name]").action(async (address: string, name?: string) => {
    const script = await admin.sieveGet(couch(), address, name ?? DEFAULT_SIEVE);
    if (json()) done("", { name: name ?? DEFAULT_SIEVE, script });
    else process.stdout.write(script);
  });
  sieve.command("rm <address> [name]").action(async (address: string, name?: string) => {
    await admin.sieveRm(couch(), address, name ?? DEFAULT_SIEVE);
    done(`removed sieve script ${name ?? DEFAULT_SIEVE} of ${address.toLowerCase()}`);
  });
  sieve.command("ls <address>").action(async (address: string) => {
    const list = await admin.sieveList(couch(), address);
    done(list.map((s) => `${s.name}\trev ${s.rev}\t${s.bytes} bytes`).join("\n"), list);
  });
  addDoctorCommand(program, json);
  return program;
}

/** Runs the CLI; resolves to the exit code. */
export async function main(argv: string[]): Promise<number> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: "user" });
    return 0;
  } catch (e) {
    const err = e as { code?: string; exitCode?: number; message?: string };
    if (typeof err.code === "string" && err.code.startsWith("commander.")) {
      // Help and version are successes; commander already printed its message.
      return err.code === "commander.helpDisplayed" || err.code === "commander.version" || err.code === "commander.help" ? 0 : EXIT.usage;
    }
    // The doctor's table already says what is wrong; its exit code is the verdict.
    if (e instanceof DoctorVerdict) return e.exitCode;
    const wantJson = argv.includes("--json");
    const code = e instanceof AdminError ? e.exitCode : EXIT.failure;
    const message = e instanceof AdminError || e instanceof CouchError ? e.message : `error: ${err.message ?? String(e)}`;
    if (wantJson) process.stdout.write(JSON.stringify({ ok: false, error: message, exit: code }) + "\n");
    process.stderr.write(`couchmail: ${message}\n`);
    return code;
  }
}

if (require.main === module) {
  void main(process.argv.slice(2)).then((code) => {
    process.exitCode = code;
    // After SIGTERM the listeners are closed; do not let a pending retry timer or a
    // half-open CouchDB request delay the exit.
    if (process.argv[2] === "serve") process.exit(code);
  });
}
