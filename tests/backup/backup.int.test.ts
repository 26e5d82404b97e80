// The backup image's mail-backup and mail-restore against real Dovecot 2.4 (doveadm in the image, on a mail tree a
// second Dovecot writes to at the same time) and the CouchDB test server, with a local restic repository standing
// in for the bucket.
import * as fs from "fs";
import * as http from "http";
import * as path from "path";
import { BACKUP_PATHS, renderBackupDovecot } from "../../components/backup/config";
import { DOVECOT_DEFAULTS, VMAIL_UID } from "../../components/dovecot/config";
import { startCouch, TestCouch } from "../../couchmail/test/couchdb";
import { buildImage, Pod, RunResult, shInImage, tempDir, writeConfigMapVolume } from "../kit/images";

jest.setTimeout(300_000);

const ADMIN = { user: "admin", password: "backup-test-admin" };
const DB = "mail";
const PASSWORD = "restic-test-password";
let image: string;
let dir: string;
let couch: TestCouch;
const p = (name: string) => path.join(dir, name);

/** A fresh, empty directory owned by vmail, as the kubelet gives an emptyDir or a new volume. */
function vmailDir(name: string): string {
    fs.rmSync(p(name), { recursive: true, force: true });
    fs.mkdirSync(p(name), { recursive: true });
    fs.chownSync(p(name), VMAIL_UID, VMAIL_UID);
    return p(name);
}

/** A bash script in the backup image as vmail, with the job's mounts and environment. */
function inJob(script: string, env: Record<string, string> = {}): RunResult {
    return shInImage(image, script, {
        user: `${VMAIL_UID}:${VMAIL_UID}`,
        mounts: [
            { host: p("mail"), ctr: DOVECOT_DEFAULTS.mailRoot, ro: false },
            { host: p("repo"), ctr: "/repo", ro: false },
            { host: p("scratch"), ctr: "/backup", ro: false },
            { host: p("conf"), ctr: BACKUP_PATHS.config },
        ],
        env: {
            BACKUP_DOVECOT_CONF: `${BACKUP_PATHS.config}/dovecot.conf`,
            RESTIC_REPOSITORY: "/repo",
            RESTIC_PASSWORD: PASSWORD,
            COUCHDB_URL: couch.url,
            COUCHDB_DATABASE: DB,
            COUCHDB_USER: ADMIN.user,
            COUCHDB_PASSWORD: ADMIN.password,
            ...env,
        },
    });
}

/** Runs doveadm commands as Dovecot would (its own auth process), e.g. to seed or read mail. */
function withDovecot(script: string): RunResult {
    return inJob(`. /usr/local/lib/mail/backup-lib.sh; start_dovecot; ${script}`);
}

const message = (id: string, subject: string) =>
    `From: sender@example.net\nTo: someone@example.test\nMessage-ID: <${id}>\nSubject: ${subject}\n\nbody of ${id}\n`;

/** Every message of every user: user, mailbox, flags, Message-ID, sorted (UIDs may change; these may not). */
function mailState(users: string[]): string[] {
    const r = withDovecot(
        users
            .map((u) => `doveadm -c "$BACKUP_DOVECOT_CONF" -f tab fetch -u ${u} "mailbox flags hdr.message-id" all | tail -n +2 | sed "s/^/${u}\\t/"`)
            .join("; "),
    );
    expect(r.stderr).not.toMatch(/Error|Fatal/);
    // \Recent is per session, not stored.
    return r.stdout
        .split("\n")
        .filter(Boolean)
        .map((l) => l.replace(/ ?\\Recent/, ""))
        .sort();
}

/** One request on its own connection: the test blocks its event loop in buildah runs, so a kept-alive socket may be dead. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any -- CouchDB answers with JSON of many shapes
function couchCall(method: string, urlPath: string, body?: unknown): Promise<{ status: number; json: any }> {
    return new Promise((resolve, reject) => {
        const req = http.request(
            `${couch.url}/${urlPath}`,
            {
                method,
                agent: false,
                auth: `${ADMIN.user}:${ADMIN.password}`,
                headers: { "content-type": "application/json" },
            },
            (res) => {
                let text = "";
                res.on("data", (d) => (text += d));
                res.on("end", () => resolve({ status: res.statusCode ?? 0, json: JSON.parse(text) }));
            },
        );
        req.on("error", reject);
        req.end(body === undefined ? undefined : JSON.stringify(body));
    });
}

async function allDocs(): Promise<unknown[]> {
    const r = await couchCall("GET", `${DB}/_all_docs?include_docs=true`);
    expect(r.status).toBe(200);
    return r.json.rows.map((row: { doc: unknown }) => row.doc);
}

const USERS = ["alice@example.test", "bob@example.org"];

beforeAll(async () => {
    image = buildImage("backup");
    dir = tempDir("backup-int");
    writeConfigMapVolume(p("conf"), renderBackupDovecot(DOVECOT_DEFAULTS));
    couch = await startCouch(0, "127.0.0.1", { admins: { [ADMIN.user]: ADMIN.password } });
}, 600_000);

afterAll(async () => {
    await couch?.stop();
    if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

beforeEach(async () => {
    for (const d of ["mail", "repo", "scratch"]) vmailDir(d);
    await couchCall("DELETE", DB);
    expect((await couchCall("PUT", DB)).status).toBe(201);
    await couchCall("PUT", `${DB}/_security`, { admins: { names: [], roles: ["_admin"] }, members: { names: [], roles: ["_admin"] } });
    const created = await couchCall("PUT", `${DB}/mailbox:alice@example.test`, {
        type: "mailbox",
        address: "alice@example.test",
        password: "{BLF-CRYPT}$2y$10$x",
    });
    // A second revision: the restore must bring back the current one, with its revision id.
    await couchCall("PUT", `${DB}/mailbox:alice@example.test`, {
        _rev: created.json.rev,
        type: "mailbox",
        address: "alice@example.test",
        password: "{BLF-CRYPT}$2y$10$y",
    });
    await couchCall("PUT", `${DB}/alias:info@example.test`, { type: "alias", address: "info@example.test", targets: ["alice@example.test"] });
    await couchCall("PUT", `${DB}/_design/mail`, { validate_doc_update: "function(newDoc, oldDoc, userCtx) {}" });
});

function seedMail(): void {
    fs.writeFileSync(p("scratch/a1.eml"), message("a1@example.net", "first"));
    fs.writeFileSync(p("scratch/a2.eml"), message("a2@example.net", "second"));
    fs.writeFileSync(p("scratch/a3.eml"), message("a3@example.net", "third"));
    fs.writeFileSync(p("scratch/b1.eml"), message("b1@example.net", "archived"));
    const d = `doveadm -c "$BACKUP_DOVECOT_CONF"`;
    const r = withDovecot(
        [
            `${d} save -u alice@example.test -m INBOX < /backup/a1.eml`,
            `${d} save -u alice@example.test -m INBOX < /backup/a2.eml`,
            `${d} mailbox create -u alice@example.test Archive`,
            `${d} save -u alice@example.test -m Archive < /backup/a3.eml`,
            `${d} flags add -u alice@example.test '\\Seen' mailbox INBOX header message-id a1@example.net`,
            `${d} flags add -u alice@example.test '\\Flagged $Important' mailbox INBOX header message-id a2@example.net`,
            `${d} mailbox create -u bob@example.org "Old mail"`,
            `${d} save -u bob@example.org -m "Old mail" < /backup/b1.eml`,
            `${d} flags add -u bob@example.org '\\Answered \\Seen' mailbox "Old mail" all`,
            // A ManageSieve script, active.
            "mkdir -p /var/mail/example.test/alice/sieve && printf 'keep;\\n' > /var/mail/example.test/alice/sieve/mine.sieve",
            "ln -s sieve/mine.sieve /var/mail/example.test/alice/.dovecot.sieve",
            "rm /backup/*.eml",
        ].join(" && "),
    );
    expect(r.stderr).not.toMatch(/Error|Fatal/);
    expect(r.code).toBe(0);
}

test("backup, wipe the mail volume and the datastore, restore: the same messages (Message-ID, flags, folders), sieve scripts and documents (revisions) are back, and mail that arrived meanwhile stays", async () => {
    seedMail();
    const mailBefore = mailState(USERS);
    expect(mailBefore).toHaveLength(4);
    expect(mailBefore.join("\n")).toMatch(/alice@example.test\tINBOX\t\\Flagged \$Important\t<a2@example.net>/);
    const docsBefore = await allDocs();

    const backup = inJob("mail-backup");
    expect(backup.stderr).toMatch(/backed up snapshot=[0-9a-f]{8} users=2 messages=4 couchdb_docs=3 /);
    expect(backup.code).toBe(0);

    // The disaster: the volume and the database are gone; Dovecot starts afresh and new mail arrives.
    vmailDir("mail");
    expect((await couchCall("DELETE", DB)).status).toBe(200);
    fs.writeFileSync(p("scratch/new.eml"), message("new@example.net", "after the disaster"));
    expect(withDovecot(`doveadm -c "$BACKUP_DOVECOT_CONF" save -u alice@example.test -m INBOX < /backup/new.eml && rm /backup/new.eml`).code).toBe(0);

    const restore = inJob("mail-restore latest");
    expect(restore.stderr).toMatch(/verified: 4 mailboxes, 3 documents/);
    expect(restore.stderr).toMatch(/restored snapshot=latest users=2 messages=4 couchdb_docs=3 /);
    expect(restore.code).toBe(0);

    const after = mailState(USERS);
    expect(after.filter((l) => !l.includes("<new@example.net>"))).toEqual(mailBefore);
    expect(after.filter((l) => l.includes("<new@example.net>"))).toHaveLength(1);
    expect(await allDocs()).toEqual(docsBefore);
    expect((await couchCall("GET", `${DB}/_security`)).json.members.roles).toEqual(["_admin"]);
    expect(fs.readFileSync(p("mail/example.test/alice/sieve/mine.sieve"), "utf8")).toBe("keep;\n");
    expect(fs.readlinkSync(p("mail/example.test/alice/.dovecot.sieve"))).toBe("sieve/mine.sieve");

    // Again: nothing is duplicated, nothing deleted.
    expect(inJob("mail-restore latest").code).toBe(0);
    expect(mailState(USERS)).toEqual(after);
});

test("a backup taken while Dovecot moves and flags the same messages holds each of them exactly once", async () => {
    const count = 150;
    for (let i = 0; i < count; i++) fs.writeFileSync(p(`scratch/m${i}.eml`), message(`m${i}@example.net`, `message ${i}`));
    const seeded = withDovecot(
        `doveadm -c "$BACKUP_DOVECOT_CONF" mailbox create -u alice@example.test Archive && for f in /backup/m*.eml; do doveadm -c "$BACKUP_DOVECOT_CONF" save -u alice@example.test -m INBOX < "$f"; done && rm /backup/m*.eml`,
    );
    expect(seeded.code).toBe(0);

    // A second Dovecot (another process tree, as the live pod is) moves everything from one folder to the other and
    // flags it every 2 s, renaming the files under the backup's feet, until the backup is done. (Before each copy was
    // checked and repeated, this snapshot held 124 of the 150 messages.)
    const churn = `. /usr/local/lib/mail/backup-lib.sh; start_dovecot; d="doveadm -c $BACKUP_DOVECOT_CONF"
      moved() { n=$(( $(cat /backup/rounds 2>/dev/null || echo 0) + 1 )); echo $n > /backup/rounds; sleep 2; }
      while [ ! -e /backup/stop ]; do
        $d move -u alice@example.test Archive mailbox INBOX all && $d flags add -u alice@example.test '\\Seen' mailbox Archive all && moved
        $d move -u alice@example.test INBOX mailbox Archive all && $d flags remove -u alice@example.test '\\Seen' mailbox INBOX all && moved
      done`;
    const writer = new Pod(image, ["bash", "-c", churn], {
        user: `${VMAIL_UID}:${VMAIL_UID}`,
        mounts: [
            { host: p("mail"), ctr: DOVECOT_DEFAULTS.mailRoot, ro: false },
            { host: p("scratch"), ctr: "/backup", ro: false },
            { host: p("conf"), ctr: BACKUP_PATHS.config },
        ],
        env: { BACKUP_DOVECOT_CONF: `${BACKUP_PATHS.config}/dovecot.conf` },
    });
    try {
        const started = Date.now();
        while (!fs.existsSync(p("scratch/rounds")) && Date.now() - started < 60_000) await new Promise((r) => setTimeout(r, 200));
        const rounds = () => Number(fs.readFileSync(p("scratch/rounds"), "utf8"));
        const before = rounds();
        // The staging tree is /backup/stage: the writer's files sit beside it, not in it.
        const backup = inJob("mail-backup");
        const during = rounds() - before;
        fs.writeFileSync(p("scratch/stop"), "");
        expect(await writer.exitCode(60_000)).toBe(0);
        expect(backup.stderr).toMatch(/backed up/);
        expect(backup.code).toBe(0);
        // The mail was really moving while the backup ran.
        expect(during).toBeGreaterThan(0);
        expect(backup.stderr).toMatch(new RegExp(`users=1 messages=${count} `));
        expect(writer.logs).not.toMatch(/Error|Fatal/);
    } finally {
        fs.writeFileSync(p("scratch/stop"), "");
        await writer.remove();
    }

    vmailDir("mail");
    const restore = inJob("mail-restore latest");
    expect(restore.stderr).toMatch(new RegExp(`restored snapshot=latest users=1 messages=${count} `));
    expect(restore.code).toBe(0);
    const ids = mailState(["alice@example.test"]).map((l) => l.split("\t").pop());
    expect(ids).toHaveLength(count);
    expect(new Set(ids).size).toBe(count);
});

test("a snapshot whose mail differs from its manifest is refused before anything live changes", async () => {
    seedMail();
    expect(inJob("mail-backup").code).toBe(0);
    // A snapshot made by hand under the backup's tag: its manifest claims a message that its mail does not hold.
    const forged = inJob(`set -e; s=${BACKUP_PATHS.stage}; mkdir -p $s/mail/example.test $s/couchdb
        cp -r /var/mail/example.test/alice $s/mail/example.test/
        echo '{"docs":[]}' > $s/couchdb/${DB}.json; echo '{}' > $s/couchdb/security.json
        printf 'format\\t1\\nmailbox\\talice@example.test\\tINBOX\\t3\\ncouchdb_database\\t${DB}\\ncouchdb_docs\\t0\\ncouchdb_sha256\\t%s\\n' "$(sha256sum $s/couchdb/${DB}.json | cut -d' ' -f1)" > $s/manifest.tsv
        restic backup --quiet --tag mail --host mail $s`);
    expect(forged.code).toBe(0);
    vmailDir("mail");
    expect((await couchCall("DELETE", DB)).status).toBe(200);

    const restore = inJob("mail-restore latest");
    expect(restore.code).toBe(1);
    expect(restore.stderr).toMatch(/FAILED: the staged mail differs from the manifest/);
    expect(restore.stderr).toMatch(/< mailbox\talice@example.test\tINBOX\t3/);
    expect(fs.readdirSync(p("mail"))).toEqual([]);
    expect((await couchCall("GET", DB)).status).toBe(404);
});

test("a repository that cannot be opened fails the backup and is never initialised over", () => {
    expect(inJob("mail-backup").code).toBe(0);
    const files = fs.readdirSync(p("repo")).sort();
    const wrong = inJob("mail-backup", { RESTIC_PASSWORD: "not the password" });
    expect(wrong.code).toBe(1);
    expect(wrong.stderr).toMatch(/FAILED: cannot open the repository \(restic exit 12\): .*wrong password/);
    expect(fs.readdirSync(p("repo")).sort()).toEqual(files);
    const missing = inJob("mail-backup", { RESTIC_PASSWORD: "" });
    expect(missing.stderr).toMatch(/FAILED: RESTIC_PASSWORD is not set/);
});
