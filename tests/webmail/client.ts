// A browser stand-in for the webmail int test: curl inside the pod's network namespace, from the browser's address,
// keeping cookies in a jar and verifying the served certificate; and the memory of a container's processes.
// Asynchronous on purpose: couchmail runs in the test's own process and must keep answering Dovecot meanwhile.
import { execFile } from "child_process";
import { randomBytes } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";

export interface HttpReply {
    status: number;
    /** Lowercased names; the last value of a repeated header. */
    headers: Record<string, string>;
    /** Every Set-Cookie value, in order. */
    cookies: string[];
    body: string;
}

export interface ClientOptions {
    netns: string;
    /** The name in the certificate: curl resolves it to the pod's loopback. */
    host: string;
    port: number;
    /** The browser's address (on the pod's loopback). */
    source: string;
    caFile: string;
}

/** curl's `-D -` output followed by the body: the last header block is the final response's. */
function parseReply(out: string): HttpReply {
    let rest = out;
    let block = "";
    while (/^HTTP\/[\d.]+ \d{3}/.test(rest)) {
        const end = rest.indexOf("\r\n\r\n");
        block = rest.slice(0, end);
        rest = rest.slice(end + 4);
    }
    const [statusLine, ...lines] = block.split("\r\n");
    const headers: Record<string, string> = {};
    const cookies: string[] = [];
    for (const line of lines) {
        const i = line.indexOf(":");
        const name = line.slice(0, i).toLowerCase();
        const value = line.slice(i + 1).trim();
        headers[name] = value;
        if (name === "set-cookie") cookies.push(value);
    }
    return { status: Number(/ (\d{3})/.exec(statusLine ?? "")?.[1] ?? 0), headers, cookies, body: rest };
}

export class WebmailClient {
    private readonly jar = path.join(os.tmpdir(), `webmail-cookies-${randomBytes(4).toString("hex")}`);

    constructor(private readonly opts: ClientOptions) {}

    /** The same browser with no cookies (a new private window). */
    fresh(): WebmailClient {
        return new WebmailClient(this.opts);
    }

    private curl(url: string, args: string[] = []): Promise<HttpReply> {
        const { netns, host, port, source, caFile } = this.opts;
        const argv = [
            `--net=/run/netns/${netns}`,
            "curl",
            "-sS",
            "-D",
            "-",
            "--interface",
            source,
            "--cacert",
            caFile,
            "--resolve",
            `${host}:${port}:127.0.0.1`,
            "-b",
            this.jar,
            "-c",
            this.jar,
            ...args,
            url,
        ];
        return new Promise((resolve, reject) =>
            execFile("nsenter", argv, { encoding: "utf8", timeout: 60_000, maxBuffer: 16 * 1024 * 1024 }, (error, stdout, stderr) =>
                error ? reject(new Error(`curl ${url} failed (${String(error.code)}): ${stderr}`)) : resolve(parseReply(stdout)),
            ),
        );
    }

    get(pathAndQuery: string): Promise<HttpReply> {
        return this.curl(`https://${this.opts.host}:${this.opts.port}${pathAndQuery}`);
    }

    /** Plain HTTP to another port of the pod (the redirect and the probes' port). */
    plain(port: number, pathAndQuery: string): Promise<HttpReply> {
        return this.curl(`http://127.0.0.1:${port}${pathAndQuery}`, ["-H", `Host: ${this.opts.host}`]);
    }

    async waitForHealth(port: number, healthPath: string, timeoutMs = 60_000): Promise<void> {
        const end = Date.now() + timeoutMs;
        for (;;) {
            try {
                if ((await this.plain(port, healthPath)).status === 200) return;
            } catch (e) {
                if (Date.now() > end) throw e;
            }
            if (Date.now() > end) throw new Error(`${healthPath} on port ${port} never answered 200`);
            await new Promise((r) => setTimeout(r, 500));
        }
    }

    /** Roundcube's login form as a browser submits it: the page's request token, then the POST. */
    async login(user: string, password: string): Promise<HttpReply> {
        const page = await this.get("/");
        const token = /name="_token" value="([^"]+)"/.exec(page.body)?.[1];
        if (!token) throw new Error(`no request token on the login page (${page.status}):\n${page.body.slice(0, 2000)}`);
        const fields = { _token: token, _task: "login", _action: "login", _timezone: "UTC", _url: "", _user: user, _pass: password };
        return this.curl(
            `https://${this.opts.host}:${this.opts.port}/?_task=login`,
            Object.entries(fields).flatMap(([k, v]) => ["--data-urlencode", `${k}=${v}`]),
        );
    }
}

/** The program of a process: nginx and PHP-FPM rewrite argv[0] into a title ("php-fpm: pool roundcube"). */
function program(pid: string): string {
    try {
        return path.basename(fs.readFileSync(`/proc/${pid}/cmdline`, "utf8").split("\0")[0].split(/[: ]/)[0]);
    } catch {
        return "";
    }
}

/**
 * The proportional set size of every process in the container's mount namespace, as a pod's memory is counted,
 * without buildah's own helpers (they are this test machine's runtime, not the pod's).
 */
export function containerMemory(appPid: number): { totalMiB: number; detail: string } {
    const ns = fs.readlinkSync(`/proc/${appPid}/ns/mnt`);
    const byProgram = new Map<string, { count: number; kib: number }>();
    for (const pid of fs.readdirSync("/proc").filter((e) => /^\d+$/.test(e))) {
        try {
            if (fs.readlinkSync(`/proc/${pid}/ns/mnt`) !== ns) continue;
            const name = program(pid);
            if (name.startsWith("buildah")) continue;
            const pss = Number(/^Pss:\s+(\d+) kB/m.exec(fs.readFileSync(`/proc/${pid}/smaps_rollup`, "utf8"))?.[1] ?? 0);
            const entry = byProgram.get(name) ?? { count: 0, kib: 0 };
            byProgram.set(name, { count: entry.count + 1, kib: entry.kib + pss });
        } catch {
            // exited meanwhile
        }
    }
    const totalKib = [...byProgram.values()].reduce((a, e) => a + e.kib, 0);
    const detail = [...byProgram.entries()].map(([name, e]) => `${name} x${e.count}: ${(e.kib / 1024).toFixed(1)} MiB`).join(", ");
    return { totalMiB: totalKib / 1024, detail };
}
