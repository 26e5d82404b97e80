// Builds the OpenDKIM image, runs `opendkim -n` on the rendered config inside it, checks the syslog
// sink, and drives the entrypoint's watcher (SIGUSR1 reload) like a pod would see a ConfigMap update.
import { execFileSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { OPENDKIM_LIVE_DIR, OPENDKIM_LISTENERS, OpenDkimSettings, dkimKeyFileName, renderOpenDkim } from "../../components/opendkim/config";
import { Pod, buildImage, shInImage, tempDir, writeConfigMapVolume } from "../kit/images";
import { opendkimTestSettings } from "../kit/settings";

jest.setTimeout(120_000);

const settings: OpenDkimSettings = {
    ...opendkimTestSettings,
    domains: ["example.test"],
    authservId: "mail.example.test",
    internalHosts: ["10.244.0.0/16"],
};
let image: string;
let dir: string;

const rsaKey = () => execFileSync("openssl", ["genrsa", "2048"], { encoding: "utf8", stdio: ["ignore", "pipe", "ignore"] });

function mounts(config: string) {
    return [
        { host: config, ctr: "/etc/mail/defaults/opendkim" },
        { host: path.join(dir, "keys"), ctr: "/etc/mail/dkim" },
    ];
}

beforeAll(() => {
    image = buildImage("opendkim");
    dir = tempDir("opendkim-int");
    // Secret volumes are root-owned and group/world readable; the entrypoint makes safe copies.
    writeConfigMapVolume(path.join(dir, "keys"), { [dkimKeyFileName("example.test")]: rsaKey() }, 0o644);
}, 600_000);

afterAll(() => fs.rmSync(dir, { recursive: true, force: true }));

/** opendkim -n on the rendered files placed where the renderer points (the live directory). */
const CHECK = `set -e
mkdir -p ${OPENDKIM_LIVE_DIR} && cp -L /etc/mail/defaults/opendkim/* ${OPENDKIM_LIVE_DIR}/
opendkim -n -x ${OPENDKIM_LIVE_DIR}/opendkim.conf && echo "--config ok"`;

function check(files: Record<string, string>) {
    const cfg = path.join(dir, `cfg-${Math.random().toString(36).slice(2)}`);
    writeConfigMapVolume(cfg, files);
    return shInImage(image, CHECK, { mounts: mounts(cfg) });
}

test("opendkim -n accepts the rendering; a bad value fails the same check", () => {
    const files = renderOpenDkim(settings);
    const ok = check(files);
    expect(ok.stderr).toBe("");
    expect(ok.stdout).toMatch(/^--config ok$/m);
    const bad = check({ ...files, "opendkim.conf": files["opendkim.conf"].replace("Mode sv", "Mode bogus") });
    expect(bad.code).not.toBe(0);
    expect(bad.stderr).toMatch(/unknown mode/);
});

test("the syslog sink prints one line per message, running as nobody", () => {
    const r = shInImage(
        image,
        `install -d -o nobody -g nogroup /run/mail/syslog
setpriv --reuid=nobody --regid=nogroup --clear-groups /usr/local/bin/syslog-sink /run/mail/syslog/log & sink=$!
for _ in 1 2 3 4 5 6 7 8 9 10; do [ -S /run/mail/syslog/log ] && break; sleep 0.2; done
stat -c 'owner=%U' /run/mail/syslog/log
logger -u /run/mail/syslog/log -t opendkim first message; logger -u /run/mail/syslog/log -t opendkim second message
sleep 0.5; kill $sink`,
    );
    expect(r.stdout).toMatch(/^owner=nobody$/m);
    expect(r.stdout).toMatch(/opendkim: first message\n.*opendkim: second message\n/);
});

test("watcher: reload on change, refuse a config whose key is missing, stop on SIGTERM; runs as opendkim", async () => {
    const cfg = path.join(dir, "live");
    writeConfigMapVolume(cfg, renderOpenDkim(settings));
    const pod = new Pod(image, ["/usr/local/bin/opendkim-entrypoint"], { mounts: mounts(cfg), env: { WATCH_INTERVAL: "1" } });
    const listening = () => pod.inNetns(["ss", "-Hltnp", `sport = :${OPENDKIM_LISTENERS.milter.port}`]).stdout;
    const daemonPid = async () => {
        for (let i = 0; i < 50 && !/pid=\d+/.test(listening()); i++) await new Promise((r) => setTimeout(r, 200));
        return Number(/pid=(\d+)/.exec(listening())?.[1]);
    };
    try {
        await pod.waitForLog(/config [0-9a-f]{12} active/);
        const pid = await daemonPid();
        expect(pid).toBeGreaterThan(0);
        // Never root: the daemon runs as the image's opendkim user (uid 101).
        expect(fs.readFileSync(`/proc/${pid}/status`, "utf8")).toMatch(/^Uid:\s+101\s+101\s+101\s+101$/m);

        let mark = pod.logs.length;
        writeConfigMapVolume(cfg, renderOpenDkim({ ...settings, selector: "s2" }));
        await pod.waitForLog(/reloaded with config/, 30_000, mark);
        expect(await daemonPid()).toBe(pid); // SIGUSR1 reload, not a restart

        mark = pod.logs.length;
        writeConfigMapVolume(cfg, renderOpenDkim({ ...settings, domains: ["example.test", "example.org"] }));
        await pod.waitForLog(/config REJECTED, keeping the running one: missing DKIM key for example\.org/, 30_000, mark);
        expect(await daemonPid()).toBe(pid);

        mark = pod.logs.length;
        expect(await pod.stop()).toBe(0);
        expect(pod.logs.slice(mark)).toMatch(/SIGTERM: stopping OpenDKIM[\s\S]*OpenDKIM stopped/);
    } finally {
        await pod.remove();
    }
});
