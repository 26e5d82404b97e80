// Building and running our buildah images from tests (root + buildah, chroot isolation).
import { ChildProcess, execFileSync, spawn, spawnSync } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { selfSigned } from "../../couchmail/test/doctor-fakes";

const REPO = path.resolve(__dirname, "../..");

export interface Mount {
    host: string;
    ctr: string;
    ro?: boolean;
}

export interface RunOptions {
    mounts?: Mount[];
    env?: Record<string, string>;
    user?: string;
}

export interface RunResult {
    code: number;
    stdout: string;
    stderr: string;
}

/** Fails with a clear message when the machine cannot build or run images. */
export function requireBuildah(): void {
    const probe = spawnSync("buildah", ["--version"], { encoding: "utf8" });
    if (probe.error || probe.status !== 0) {
        throw new Error("buildah is not installed: image tests need root, buildah and debootstrap (see .ci/apt-packages)");
    }
    if (process.getuid?.() !== 0) throw new Error("image tests need root (buildah with chroot isolation)");
}

/** The users images/NAME/Dockerfile creates (`useradd --uid U --gid G … NAME`), in file order. */
export function imageUsers(service: string): { name: string; uid: number; gid: number }[] {
    const dockerfile = fs.readFileSync(path.join(REPO, "images", service, "Dockerfile"), "utf8");
    return [...dockerfile.matchAll(/useradd[^\n]*?--uid (\d+) --gid (\d+)[^\n]*? (\S+) \\?$/gm)].map((m) => ({
        name: m[3],
        uid: Number(m[1]),
        gid: Number(m[2]),
    }));
}

/** Builds images/NAME/Dockerfile via images/build.sh; returns the image reference. */
export function buildImage(name: string): string {
    requireBuildah();
    const r = spawnSync(path.join(REPO, "images/build.sh"), [name], { encoding: "utf8" });
    if (r.status !== 0) throw new Error(`images/build.sh ${name} failed (${r.status}):\n${r.stderr}\n${r.stdout}`);
    return `mail/${name}:dev`;
}

function runArgs(name: string, argv: string[], opts: RunOptions): string[] {
    const args = ["run", "--isolation", "chroot"];
    for (const m of opts.mounts ?? []) args.push("-v", `${m.host}:${m.ctr}${m.ro === false ? "" : ":ro"}`);
    for (const [k, v] of Object.entries(opts.env ?? {})) args.push("--env", `${k}=${v}`);
    if (opts.user) args.push("--user", opts.user);
    return [...args, name, "--", ...argv];
}

function newContainer(image: string): string {
    const name = `mailtest-${randomBytes(4).toString("hex")}`;
    execFileSync("buildah", ["from", "--pull=never", "--name", name, image], { stdio: "ignore" });
    return name;
}

function removeContainer(name: string): void {
    spawnSync("buildah", ["rm", name], { stdio: "ignore" });
}

/** Runs argv in a fresh container of image and removes the container afterwards. */
export function runInImage(image: string, argv: string[], opts: RunOptions = {}): RunResult {
    const name = newContainer(image);
    try {
        const r = spawnSync("buildah", runArgs(name, argv, opts), { encoding: "utf8", timeout: 120_000 });
        return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    } finally {
        removeContainer(name);
    }
}

/** Runs a shell script inside a fresh container (bash -c). */
export function shInImage(image: string, script: string, opts: RunOptions = {}): RunResult {
    return runInImage(image, ["bash", "-c", script], opts);
}

/** A temp directory removed by the caller via cleanup(). */
export function tempDir(prefix: string): string {
    return fs.mkdtempSync(path.join(os.tmpdir(), `${prefix}-`));
}

/**
 * Writes files into dir the way the kubelet updates a ConfigMap/Secret volume: a new `..<version>`
 * directory, the `..data` symlink swapped by rename, and per-file symlinks through `..data`.
 */
export function writeConfigMapVolume(dir: string, files: Record<string, string>, mode = 0o644): void {
    fs.mkdirSync(dir, { recursive: true });
    const version = `..${Date.now()}_${randomBytes(3).toString("hex")}`;
    fs.mkdirSync(path.join(dir, version));
    for (const [name, content] of Object.entries(files)) fs.writeFileSync(path.join(dir, version, name), content, { mode });
    const tmp = path.join(dir, "..data_tmp");
    fs.symlinkSync(version, tmp);
    const old = fs.existsSync(path.join(dir, "..data")) ? fs.readlinkSync(path.join(dir, "..data")) : undefined;
    fs.renameSync(tmp, path.join(dir, "..data"));
    for (const entry of fs.readdirSync(dir)) {
        if (!entry.startsWith("..") && !(entry in files)) fs.unlinkSync(path.join(dir, entry));
    }
    for (const name of Object.keys(files)) {
        if (!fs.existsSync(path.join(dir, name))) fs.symlinkSync(path.join("..data", name), path.join(dir, name));
    }
    if (old) fs.rmSync(path.join(dir, old), { recursive: true, force: true });
}

/** A self-signed certificate for the host name, valid two days, as tls.crt/tls.key (a kubernetes.io/tls Secret). */
export function selfSignedCert(hostname: string): Record<string, string> {
    const { cert, key } = selfSigned([hostname], 2);
    return { "tls.crt": cert, "tls.key": key };
}

/** Child PIDs from /proc/N/stat (a Go parent forks from any thread, so per-task lists miss some). */
export function children(pid: number): number[] {
    const out: number[] = [];
    for (const e of fs.readdirSync("/proc")) {
        if (!/^\d+$/.test(e)) continue;
        try {
            const stat = fs.readFileSync(`/proc/${e}/stat`, "utf8");
            if (Number(stat.slice(stat.lastIndexOf(")") + 2).split(" ")[1]) === pid) out.push(Number(e));
        } catch {
            // exited meanwhile
        }
    }
    return out;
}

/** argv[0]'s base name (buildah's helpers re-exec from memfd, so comm would not tell). */
function program(pid: number): string {
    try {
        return path.basename(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0]);
    } catch {
        return "";
    }
}

// Unref: a pending race timer must not keep jest alive after the tests.
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms).unref());

/** A long-running container in its own network namespace (only loopback), like one pod. */
export class Pod {
    private proc: ChildProcess;
    private out = "";
    private exited: Promise<number>;
    readonly netns: string;
    private readonly name: string;
    private readonly ownNetns: boolean;

    /** With `network`, the container joins that pod's network namespace (like a second container of one pod). */
    constructor(image: string, argv: string[], opts: RunOptions & { network?: Pod } = {}) {
        this.name = newContainer(image);
        this.ownNetns = !opts.network;
        this.netns = opts.network?.netns ?? this.name;
        if (this.ownNetns) {
            execFileSync("ip", ["netns", "add", this.netns]);
            execFileSync("ip", ["-n", this.netns, "link", "set", "lo", "up"]);
        }
        // `ip netns exec` would hide buildah's overlay mount; nsenter only switches the network.
        this.proc = spawn("nsenter", [`--net=/run/netns/${this.netns}`, "buildah", ...runArgs(this.name, argv, opts)], {
            stdio: ["ignore", "pipe", "pipe"],
        });
        this.proc.stdout?.on("data", (d) => (this.out += d));
        this.proc.stderr?.on("data", (d) => (this.out += d));
        this.exited = new Promise((resolve) => this.proc.on("exit", (code, signal) => resolve(code ?? (signal ? 128 : -1))));
    }

    get logs(): string {
        return this.out;
    }

    /** Waits for the container to exit by itself (a job); returns its exit code, or throws with the log. */
    async exitCode(timeoutMs = 60_000): Promise<number> {
        const code = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)]);
        if (code === undefined) throw new Error(`still running after ${timeoutMs} ms; log:\n${this.out}`);
        return code;
    }

    /** Waits until the combined log matches re (checked from offset `from`), or throws with the log. */
    async waitForLog(re: RegExp, timeoutMs = 30_000, from = 0): Promise<string> {
        const end = Date.now() + timeoutMs;
        for (;;) {
            const m = re.exec(this.out.slice(from));
            if (m) return m[0];
            if (Date.now() > end) throw new Error(`timed out waiting for ${re} in log:\n${this.out}`);
            await sleep(200);
        }
    }

    /** The container's own top process (below buildah's helpers). */
    appPid(): number | undefined {
        let frontier = [this.proc.pid ?? -1];
        for (let depth = 0; depth < 6 && frontier.length; depth++) {
            const next: number[] = [];
            for (const p of frontier) {
                for (const c of children(p)) {
                    if (!program(c).startsWith("buildah") && program(c) !== "nsenter") return c;
                    next.push(c);
                }
            }
            frontier = next;
        }
        return undefined;
    }

    /** Runs a command on the host inside this pod's network namespace (e.g. a protocol probe). */
    inNetns(argv: string[], input?: string): RunResult {
        const r = spawnSync("nsenter", [`--net=/run/netns/${this.netns}`, ...argv], { encoding: "utf8", input, timeout: 20_000 });
        return { code: r.status ?? -1, stdout: r.stdout, stderr: r.stderr };
    }

    /** SIGTERM to the app (signals to buildah skip its handler); returns the exit code. */
    async stop(timeoutMs = 20_000): Promise<number> {
        const pid = this.appPid();
        if (!pid) throw new Error(`no app process found under buildah (pid ${this.proc.pid}); log:\n${this.out}`);
        process.kill(pid, "SIGTERM");
        const code = await Promise.race([this.exited, sleep(timeoutMs).then(() => undefined)]);
        if (code !== undefined) return code;
        this.kill();
        throw new Error(`container ignored SIGTERM for ${timeoutMs} ms; log:\n${this.out}`);
    }

    /** Kills whatever still runs in the container's mount namespace, then removes container and netns. */
    kill(): void {
        const pid = this.appPid();
        if (pid) {
            const ns = fs.readlinkSync(`/proc/${pid}/ns/mnt`);
            // Never sweep the host's own namespace (if the app had not got its own yet).
            if (ns === fs.readlinkSync("/proc/self/ns/mnt")) return;
            for (const p of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
                try {
                    if (fs.readlinkSync(`/proc/${p}/ns/mnt`) === ns) process.kill(Number(p), "SIGKILL");
                } catch {
                    // exited meanwhile
                }
            }
        }
    }

    async remove(): Promise<void> {
        if (this.proc.exitCode === null && this.proc.signalCode === null) {
            this.kill();
            if ((await Promise.race([this.exited, sleep(10_000).then(() => undefined)])) === undefined) this.proc.kill("SIGKILL");
        }
        removeContainer(this.name);
        if (this.ownNetns) spawnSync("ip", ["netns", "del", this.netns], { stdio: "ignore" });
    }
}
