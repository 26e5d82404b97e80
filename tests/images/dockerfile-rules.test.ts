import * as fs from "fs";
import * as path from "path";
import { checkDockerfile, parseDockerfile } from "./dockerfile-rules";
import { IMAGES_DIR, shellScripts } from "./lint-images";

const rules = (text: string) => checkDockerfile(text).map((f) => f.rule);

/** A Dockerfile that follows every rule; each bad case below changes one thing in it. */
const GOOD = `FROM debian:trixie-slim
RUN groupadd --system --gid 101 svc \\
 && apt-get update \\
 && DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends postfix \\
 && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt
COPY images/svc/entrypoint.sh /usr/local/bin/entrypoint
USER 101:101
ENTRYPOINT ["/usr/local/bin/entrypoint"]
`;

describe("Dockerfile rules", () => {
    it("accept a Dockerfile that follows them", () => {
        expect(checkDockerfile(GOOD)).toEqual([]);
    });

    it.each([
        ["an untagged base", GOOD.replace("debian:trixie-slim", "debian"), "DL3006"],
        ["a latest base", GOOD.replace("debian:trixie-slim", "debian:latest"), "DL3007"],
        ["a registry with a port but no tag", GOOD.replace("debian:trixie-slim", "registry.local:5000/debian"), "DL3006"],
        ["apt-get upgrade", GOOD.replace(" && apt-get update \\", " && apt-get update && apt-get upgrade -y \\"), "DL3005"],
        ["apt-get dist-upgrade", GOOD.replace(" && apt-get update \\", " && apt-get update; apt-get -y dist-upgrade \\"), "DL3005"],
        ["install without --no-install-recommends", GOOD.replace("install -y --no-install-recommends", "install -y"), "DL3015"],
        ["apt lists left behind", GOOD.replace(" && rm -rf /var/lib/apt/lists/* /var/log/apt", ""), "DL3009"],
        [
            "apt lists removed in a later layer",
            GOOD.replace(" && apt-get clean && rm -rf /var/lib/apt/lists/* /var/log/apt", " && apt-get clean\nRUN rm -rf /var/lib/apt/lists/*"),
            "DL3009",
        ],
        ["no USER", GOOD.replace("USER 101:101\n", ""), "USER"],
        ["USER root without a reason", GOOD.replace("USER 101:101", "USER root"), "DL3002"],
        ["USER 0:0 without a reason", GOOD.replace("USER 101:101", "USER 0:0"), "DL3002"],
        ["a non-root USER followed by root", GOOD.replace("USER 101:101", "USER 101:101\nRUN true\n\nUSER 0"), "DL3002"],
        ["ADD of a local file", GOOD.replace("COPY images/svc", "ADD images/svc"), "DL3020"],
        ["ADD of a local archive", GOOD.replace("COPY images/svc/entrypoint.sh", "ADD rootfs.tar.gz"), "DL3020"],
    ])("refuse %s", (_what, dockerfile, rule) => {
        expect(rules(dockerfile)).toEqual([rule]);
    });

    it("name the line and say what is allowed", () => {
        expect(checkDockerfile(GOOD.replace("install -y --no-install-recommends", "install -y"))).toEqual([
            { line: 2, rule: "DL3015", message: expect.stringContaining("add it") },
        ]);
    });

    it("accept a digest, scratch, a stage of the same file, ADD of a URL and USER root with its reason", () => {
        const ok = GOOD.replace("debian:trixie-slim", "debian:trixie-slim@sha256:" + "a".repeat(64))
            .replace("FROM ", "FROM scratch AS empty\nFROM ")
            .replace("COPY images/svc/entrypoint.sh", "ADD https://example.org/entrypoint.sh")
            .replace("USER 101:101", "# The master process binds port 25 and drops to its users itself.\nUSER root");
        expect(checkDockerfile(ok)).toEqual([]);
        expect(checkDockerfile("FROM debian:trixie AS build\nFROM build\nUSER 1\n")).toEqual([]);
    });

    it("join continuation lines and keep the comments above an instruction", () => {
        expect(parseDockerfile("# why\n# because\nRUN a \\\n  # dropped\n  && b\n\n# other\nUSER 1\n")).toEqual([
            { line: 3, keyword: "RUN", args: "a && b", comments: ["why", "because"] },
            { line: 8, keyword: "USER", args: "1", comments: ["other"] },
        ]);
    });

    it.each(fs.readdirSync(IMAGES_DIR).filter((d) => fs.existsSync(path.join(IMAGES_DIR, d, "Dockerfile"))))("hold for images/%s", (image) => {
        expect(checkDockerfile(fs.readFileSync(path.join(IMAGES_DIR, image, "Dockerfile"), "utf8"))).toEqual([]);
    });
});

describe("the shell scripts lint:images hands to shellcheck", () => {
    it("are the .sh files and the extensionless scripts with a sh or bash shebang, not Perl or Python", () => {
        const found = shellScripts().map((f) => path.relative(IMAGES_DIR, f));
        expect(found).toEqual(
            expect.arrayContaining(["build.sh", "common/mailconf.sh", "postfix/entrypoint.sh", "dovecot/spam-learn", "spamassassin/spam-train"]),
        );
        expect(found).not.toContain("opendkim/syslog-sink");
        expect(found.some((f) => f.endsWith("Dockerfile"))).toBe(false);
    });
});
