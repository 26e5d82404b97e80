// Headless Chromium (Debian's `chromium`) driven over the DevTools protocol on a pipe (`--remote-debugging-pipe`:
// requests on fd 3, replies and events on fd 4, each message JSON ended by a NUL byte — chromium
// content/browser/devtools/devtools_pipe_handler.cc), so no WebSocket client or puppeteer is needed.
// Methods used: Target.createTarget/attachToTarget (flatten sessions), Page.*, Runtime.evaluate, Log.entryAdded
// (https://chromedevtools.github.io/devtools-protocol/).
import { ChildProcess, spawn } from "child_process";
import { createHash, X509Certificate } from "crypto";
import * as fs from "fs";
import * as os from "os";
import * as path from "path";
import { Readable, Writable } from "stream";

export interface BrowserOptions {
    /** Run Chromium inside this network namespace (where the webmail is reachable). */
    netns?: string;
    /** Host name → address, instead of DNS (Chromium's --host-resolver-rules). */
    resolve: Record<string, string>;
    /**
     * The served certificate (PEM): Chromium trusts exactly its key (--ignore-certificate-errors-spki-list pins a key;
     * every other certificate error still fails the navigation).
     */
    trustedCertPem: string;
}

/** What a page logged: console messages and the browser's own log entries (CSP violations are among them). */
export interface LogEntry {
    source: string;
    level: string;
    text: string;
}

/** The base64 SHA-256 of a certificate's SubjectPublicKeyInfo: Chromium's SPKI pin format. */
export function spkiPin(certPem: string): string {
    const spki = new X509Certificate(certPem).publicKey.export({ type: "spki", format: "der" });
    return createHash("sha256").update(spki).digest("base64");
}

type Message = {
    id?: number;
    method?: string;
    params?: Record<string, unknown>;
    result?: Record<string, unknown>;
    error?: { message: string };
    sessionId?: string;
};

export class Browser {
    private readonly proc: ChildProcess;
    private readonly profile: string;
    private nextId = 1;
    private pending = new Map<number, { resolve: (r: Record<string, unknown>) => void; reject: (e: Error) => void; method: string }>();
    private waiters: { method: string; sessionId?: string; resolve: (p: Record<string, unknown>) => void }[] = [];
    private buffer = "";
    private stderr = "";
    private sessionId = "";
    readonly log: LogEntry[] = [];

    private constructor(opts: BrowserOptions) {
        this.profile = fs.mkdtempSync(path.join(os.tmpdir(), "webmail-chromium-"));
        const rules = Object.entries(opts.resolve)
            .map(([host, address]) => `MAP ${host} ${address}`)
            .join(", ");
        const args = [
            "--headless",
            // Root cannot use Chromium's sandbox (it refuses to start as root without this).
            "--no-sandbox",
            "--disable-gpu",
            "--no-first-run",
            "--disable-extensions",
            "--disable-background-networking",
            "--disable-sync",
            "--remote-debugging-pipe",
            `--user-data-dir=${this.profile}`,
            `--host-resolver-rules=${rules}`,
            `--ignore-certificate-errors-spki-list=${spkiPin(opts.trustedCertPem)}`,
            "--window-size=1280,900",
            "about:blank",
        ];
        const [cmd, argv] = opts.netns ? ["nsenter", [`--net=/run/netns/${opts.netns}`, "chromium", ...args]] : ["chromium", args];
        this.proc = spawn(cmd, argv, { stdio: ["ignore", "ignore", "pipe", "pipe", "pipe"] });
        this.proc.stderr!.on("data", (d) => (this.stderr += d));
        (this.proc.stdio[4] as Readable).on("data", (chunk: Buffer) => this.receive(chunk.toString("utf8")));
        this.proc.on("exit", (code) => {
            for (const p of this.pending.values()) p.reject(new Error(`chromium exited (${code}) during ${p.method}:\n${this.stderr.slice(-3000)}`));
            this.pending.clear();
        });
    }

    /** Starts Chromium with one page (tab) attached, its console and log collected. */
    static async launch(opts: BrowserOptions): Promise<Browser> {
        const browser = new Browser(opts);
        const { targetId } = await browser.send("Target.createTarget", { url: "about:blank" });
        const { sessionId } = await browser.send("Target.attachToTarget", { targetId, flatten: true });
        browser.sessionId = String(sessionId);
        browser.on("Runtime.consoleAPICalled", (p) => {
            const args = (p.args as { value?: string | number | boolean; description?: string }[]) ?? [];
            browser.log.push({ source: "console", level: String(p.type), text: args.map((a) => String(a.value ?? a.description ?? "")).join(" ") });
        });
        browser.on("Log.entryAdded", (p) => {
            const e = p.entry as { source: string; level: string; text: string };
            browser.log.push({ source: e.source, level: e.level, text: e.text });
        });
        await Promise.all(["Page.enable", "Runtime.enable", "Log.enable"].map((m) => browser.page(m)));
        return browser;
    }

    private receive(text: string): void {
        this.buffer += text;
        let end: number;
        while ((end = this.buffer.indexOf("\0")) >= 0) {
            const msg = JSON.parse(this.buffer.slice(0, end)) as Message;
            this.buffer = this.buffer.slice(end + 1);
            if (msg.id !== undefined) {
                const p = this.pending.get(msg.id);
                this.pending.delete(msg.id);
                if (msg.error) p?.reject(new Error(`${p.method}: ${msg.error.message}`));
                else p?.resolve(msg.result ?? {});
            } else if (msg.method) {
                for (const l of this.listeners.get(msg.method) ?? []) l(msg.params ?? {});
                const i = this.waiters.findIndex((w) => w.method === msg.method && (w.sessionId === undefined || w.sessionId === msg.sessionId));
                if (i >= 0) this.waiters.splice(i, 1)[0].resolve(msg.params ?? {});
            }
        }
    }

    private listeners = new Map<string, ((p: Record<string, unknown>) => void)[]>();
    private on(method: string, listener: (p: Record<string, unknown>) => void): void {
        this.listeners.set(method, [...(this.listeners.get(method) ?? []), listener]);
    }

    private send(method: string, params: Record<string, unknown> = {}, sessionId?: string): Promise<Record<string, unknown>> {
        const id = this.nextId++;
        const promise = new Promise<Record<string, unknown>>((resolve, reject) => this.pending.set(id, { resolve, reject, method }));
        (this.proc.stdio[3] as Writable).write(JSON.stringify({ id, method, params, ...(sessionId ? { sessionId } : {}) }) + "\0");
        return promise;
    }

    /** A command to the page's session. */
    page(method: string, params: Record<string, unknown> = {}): Promise<Record<string, unknown>> {
        return this.send(method, params, this.sessionId);
    }

    private waitFor(method: string, timeoutMs: number): Promise<Record<string, unknown>> {
        return new Promise((resolve, reject) => {
            const waiter = { method, sessionId: this.sessionId, resolve: (p: Record<string, unknown>) => (clearTimeout(timer), resolve(p)) };
            const timer = setTimeout(() => {
                this.waiters = this.waiters.filter((w) => w !== waiter);
                reject(new Error(`no ${method} within ${timeoutMs} ms`));
            }, timeoutMs);
            this.waiters.push(waiter);
        });
    }

    /** Navigates and waits for the load event; throws with Chromium's error text when the navigation fails. */
    async goto(url: string, timeoutMs = 30_000): Promise<void> {
        const loaded = this.waitFor("Page.loadEventFired", timeoutMs);
        const r = await this.page("Page.navigate", { url });
        if (typeof r.errorText === "string" && r.errorText) throw new Error(`navigating to ${url}: ${r.errorText}`);
        await loaded;
    }

    /** Runs an expression in the page (awaiting a promise) and returns its JSON value. */
    async evaluate<T>(expression: string): Promise<T> {
        const r = await this.page("Runtime.evaluate", { expression, awaitPromise: true, returnByValue: true });
        if (r.exceptionDetails) throw new Error(`in the page: ${JSON.stringify(r.exceptionDetails)}`);
        return (r.result as { value: T }).value;
    }

    /** Polls an expression until it is truthy. */
    async waitUntil(expression: string, what: string, timeoutMs = 30_000): Promise<void> {
        const end = Date.now() + timeoutMs;
        while (!(await this.evaluate<boolean>(`Boolean(${expression})`))) {
            if (Date.now() > end) throw new Error(`timed out waiting for ${what}; page: ${await this.evaluate<string>("location.href")}`);
            await new Promise((r) => setTimeout(r, 250));
        }
    }

    /** Runs an action that makes the page navigate (a form submit), and waits for the new page's load event. */
    async navigating(action: () => Promise<unknown>, timeoutMs = 30_000): Promise<void> {
        const loaded = this.waitFor("Page.loadEventFired", timeoutMs);
        await action();
        await loaded;
    }

    async screenshot(file: string): Promise<void> {
        const { data } = await this.page("Page.captureScreenshot", { format: "png" });
        fs.mkdirSync(path.dirname(file), { recursive: true });
        fs.writeFileSync(file, Buffer.from(String(data), "base64"));
    }

    async close(): Promise<void> {
        const exited = new Promise((r) => this.proc.once("exit", r));
        if (this.proc.exitCode === null) {
            this.send("Browser.close").catch(() => undefined);
            await Promise.race([exited, new Promise((r) => setTimeout(r, 5000))]);
            if (this.proc.exitCode === null) this.proc.kill("SIGKILL");
        }
        fs.rmSync(this.profile, { recursive: true, force: true });
    }
}
