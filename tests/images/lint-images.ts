// `npm run lint:images`: every Dockerfile under images/ against dockerfile-rules.ts, every shell script under images/
// through shellcheck (the Debian package, listed in .ci/apt-packages). Prints one line per finding, exits 1 on any.
import { spawnSync } from "child_process";
import * as fs from "fs";
import * as path from "path";
import { checkDockerfile } from "./dockerfile-rules";

export const IMAGES_DIR = path.resolve(__dirname, "../../images");

function filesUnder(dir: string): string[] {
    return fs
        .readdirSync(dir, { withFileTypes: true })
        .flatMap((e) => (e.isDirectory() ? filesUnder(path.join(dir, e.name)) : e.isFile() ? [path.join(dir, e.name)] : []))
        .sort();
}

const SHELL_SHEBANG = /^#!\s*(\/usr\/bin\/env\s+)?(\/bin\/|\/usr\/bin\/)?(ba)?sh(\s|$)/;

/** The shell scripts: `*.sh`, and extensionless files whose shebang names sh or bash. */
export function shellScripts(dir = IMAGES_DIR): string[] {
    return filesUnder(dir).filter((f) => {
        if (f.endsWith(".sh")) return true;
        if (path.basename(f).includes(".")) return false;
        return SHELL_SHEBANG.test(fs.readFileSync(f, "utf8").split("\n", 1)[0]);
    });
}

export function dockerfiles(dir = IMAGES_DIR): string[] {
    return filesUnder(dir).filter((f) => path.basename(f) === "Dockerfile");
}

function main(): number {
    const repo = path.dirname(IMAGES_DIR);
    const findings: string[] = [];
    for (const file of dockerfiles()) {
        for (const f of checkDockerfile(fs.readFileSync(file, "utf8"))) findings.push(`${path.relative(repo, file)}:${f.line}: ${f.rule} ${f.message}`);
    }
    // -x follows `. file` with a `# shellcheck source=` directive, so hooks and variables an entrypoint shares with
    // mailconf.sh are seen from both sides.
    const r = spawnSync("shellcheck", ["-x", "-f", "gcc", ...shellScripts().map((f) => path.relative(repo, f))], { cwd: repo, encoding: "utf8" });
    if (r.error) {
        findings.push(`shellcheck could not run (${r.error.message}): apt-get install shellcheck (it is in .ci/apt-packages)`);
    } else {
        findings.push(...r.stdout.split("\n").filter(Boolean));
        if (r.status !== 0 && r.stdout.trim() === "") findings.push(`shellcheck failed: ${r.stderr.trim()}`);
    }
    for (const f of findings) console.log(f);
    console.log(findings.length ? `lint:images: ${findings.length} finding(s)` : "lint:images: Dockerfiles and shell scripts clean");
    return findings.length ? 1 : 0;
}

if (require.main === module) process.exitCode = main();
