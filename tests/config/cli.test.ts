import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { loadConfig } from "../../components/config/load";
import type { StackConfig } from "../../components/config/types";
import { SECRET_KEYS } from "../../components/config/reader";
import { cliProgramConfig, opaqueDecrypter, ProgramConfig } from "../kit/pulumi-cli-config";
import { allProfiles, mockConfig, Profile, profileValues, refusal, stackFile, StackValues } from "./profiles";

// What `pulumi up --stack <name>` checks before the program runs (tests/kit/pulumi-cli-config.ts), then what the
// program's own reader makes of the config the CLI hands it.
const ROOT = path.join(__dirname, "..", "..");
const projectYaml = fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8");
const committedStacks = fs
    .readdirSync(ROOT)
    .filter((f) => /^Pulumi\.[^.]+\.yaml$/.test(f))
    .map((f) => ({ file: f, stackName: f.split(".")[1] }));

const cli = (stackYaml: string, stackName = "test"): ProgramConfig => cliProgramConfig({ projectYaml, stackYaml, stackName });

function readAsProgram(program: ProgramConfig): StackConfig {
    pulumi.runtime.setAllConfig(program.config, program.secretKeys);
    return loadConfig();
}

/** Secret keys given a plaintext value: the CLI lets them through (Pulumi.yaml cannot mark them secret), so we look. */
const plaintextSecrets = (program: ProgramConfig) =>
    SECRET_KEYS.filter((k) => (program.config[`mail:${k}`] ?? "") !== "" && !program.secretKeys.includes(`mail:${k}`));

/** Secrets compared by value: a Pulumi secret Output resolves without an engine. */
async function plain(value: unknown): Promise<unknown> {
    if (pulumi.Output.isInstance(value)) return { secret: await new Promise((resolve) => value.apply(resolve)) };
    if (Array.isArray(value)) return Promise.all(value.map(plain));
    if (value && typeof value === "object") return Object.fromEntries(await Promise.all(Object.entries(value).map(async ([k, v]) => [k, await plain(v)])));
    return value;
}

describe("the CLI's checks on committed stack files", () => {
    it("there is at least the dev stack", () => {
        expect(committedStacks.map((s) => s.file)).toContain("Pulumi.dev.yaml");
    });

    it.each(committedStacks)("$file passes the CLI and the program's reader", ({ file, stackName }) => {
        const stackYaml = fs.readFileSync(path.join(ROOT, file), "utf8");
        const program = cliProgramConfig({ projectYaml, stackYaml, stackName, decrypt: opaqueDecrypter });
        expect(() => readAsProgram(program)).not.toThrow();
        expect(plaintextSecrets(program)).toEqual([]);
    });
});

describe("the CLI's checks on every profile", () => {
    const profiles = allProfiles();
    const name = (p: Profile) => `${p.clusterProvider} ${p.edgeMode} ${p.tlsMode} dnsManage=${p.dnsManage}`;

    it("covers clusterProvider × edgeMode × tlsMode × dnsManage", () => {
        expect(profiles).toHaveLength(3 * 3 * 3 * 2);
        expect(profiles.filter((p) => refusal(p) === undefined).length).toBeGreaterThan(20);
    });

    it.each(profiles.map((p) => [name(p), p] as const))("%s: the CLI accepts it; the reader accepts it or refuses it by name", (_name, profile) => {
        const program = cli(stackFile(profileValues(profile)));
        const problem = refusal(profile);
        if (problem) expect(() => readAsProgram(program)).toThrow(problem);
        else expect(() => readAsProgram(program)).not.toThrow();
    });

    it.each(profiles.filter((p) => refusal(p) === undefined).map((p) => [name(p), p] as const))(
        "%s: the reader reads the same config from the CLI (defaults applied) as from the test mocks (none applied)",
        async (_name, profile) => {
            const values = profileValues(profile);
            const viaCli = await plain(readAsProgram(cli(stackFile(values))));
            pulumi.runtime.setAllConfig(mockConfig(values));
            expect(viaCli).toEqual(await plain(loadConfig()));
        },
    );
});

describe("required keys", () => {
    const minimal: StackValues = { mailHostname: "mail.example.com", mailDomains: ["example.com"] };

    it("a stack that sets only the required keys starts", () => {
        expect(() => readAsProgram(cli(stackFile(minimal), "dev"))).not.toThrow();
    });

    it("an empty stack is refused naming exactly the keys README calls required", () => {
        const readme = fs.readFileSync(path.join(ROOT, "README.md"), "utf8");
        const required = [...readme.matchAll(/^\| `mail:(\w+)` \|[^|]*\|[^|]*\| Required\./gm)].map((m) => m[1]).sort();
        expect(required).toEqual(["mailDomains", "mailHostname"]);
        expect(() => cli("config: {}\n", "prod")).toThrow(
            `validating stack config: Stack 'prod' is missing configuration values ${required.map((k) => `'${k}'`).join(" and ")}`,
        );
    });
});

describe("where the CLI and the reader draw the line", () => {
    it.each([
        [{ mailDomains: "example.com" }, "Stack 'test' with configuration key 'mailDomains' must be of type 'array<string>'"],
        [{ clusterNodeCount: "two" }, "Stack 'test' with configuration key 'clusterNodeCount' must be of type 'integer'"],
        [{ dnsManage: "yes" }, "Stack 'test' with configuration key 'dnsManage' must be of type 'boolean'"],
        [{ spamClusterNetworks: [10] }, "Stack 'test' with configuration key 'spamClusterNetworks' must be of type 'array<string>'"],
    ])("the CLI refuses a value of the wrong type before the program runs: %j", (bad, message) => {
        expect(() => cli(stackFile({ mailHostname: "mail.example.com", mailDomains: ["example.com"], ...bad }))).toThrow(`validating stack config: ${message}`);
    });

    it("the CLI passes an undeclared key through; the reader refuses it by name", () => {
        const program = cli(stackFile({ mailHostname: "mail.example.com", mailDomains: ["example.com"], mailHostName: "x" }));
        expect(program.config["mail:mailHostName"]).toBe("x");
        expect(() => readAsProgram(program)).toThrow("mail:mailHostName is not a known key; did you mean mailHostname?");
    });

    /** A stack file that relays through a smarthost with this password (plain, or `{ secret }` as --secret writes it). */
    const relayStackFile = (relayPassword: unknown) =>
        stackFile({ mailHostname: "mail.example.com", mailDomains: ["example.com"], relayHost: "smtp.relay.example", relayUsername: "me", relayPassword });

    it("a relay password set with --secret reaches the program as a secret", async () => {
        const program = cli(relayStackFile({ secret: "pw" }));
        expect(program.secretKeys).toEqual(["mail:relayPassword"]);
        expect(plaintextSecrets(program)).toEqual([]);
        const relay = readAsProgram(program).relay!;
        expect(await plain(relay.password)).toEqual({ secret: "pw" });
    });

    it("the CLI lets a relay password set without --secret through; the committed-file check catches it", () => {
        const program = cli(relayStackFile("pw"));
        expect(plaintextSecrets(program)).toEqual(["relayPassword"]);
    });
});
