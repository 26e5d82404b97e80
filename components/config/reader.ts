import * as fs from "fs";
import * as path from "path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { ConfigError, Rule } from "./checks";

type DeclaredType = "string" | "integer" | "boolean" | "array" | "object";

export interface DeclaredKey {
    type: DeclaredType;
    default?: unknown;
    description?: string;
    secret?: boolean;
    items?: { type: DeclaredType };
}

/** The `config:` block of Pulumi.yaml: the one place keys, types and defaults are declared. */
export function declaredKeys(projectFile = path.join(__dirname, "..", "..", "Pulumi.yaml")): Record<string, DeclaredKey> {
    const project = parseYaml(fs.readFileSync(projectFile, "utf8")) as { name: string; config?: Record<string, DeclaredKey> };
    return project.config ?? {};
}

export const PROJECT = "mail";

/**
 * The optional keys read as secrets. Pulumi.yaml cannot mark them `secret: true`: the CLI applies a default as a
 * plaintext value and then refuses it for a secret key, so a secret key is required in every stack. They default
 * to "" instead, and the docs say to set them with --secret.
 */
export const SECRET_KEYS: readonly string[] = ["tlsAcmeDigitaloceanToken", "relayPassword", "backupPassword", "backupCredentials"];

/**
 * Reads the project's config keys with the types declared in Pulumi.yaml, applying its defaults (the Pulumi CLI
 * applies them too; under test mocks it does not). Every read is checked against the declaration, so the program
 * cannot read a key that Pulumi.yaml does not declare.
 */
export class ConfigReader {
    private readonly config = new pulumi.Config(PROJECT);
    readonly read = new Set<string>();
    readonly readAsSecret = new Set<string>();

    constructor(private readonly declared: Record<string, DeclaredKey> = declaredKeys()) {
        this.rejectUnknownKeys();
    }

    string(key: string, check?: Rule): string {
        const value = this.raw(key, "string");
        if (value === undefined) throw new ConfigError(`${PROJECT}:${key} is required: ${this.declared[key].description ?? ""}`);
        return this.checked(key, value, check);
    }

    oneOf<T extends string>(key: string, allowed: readonly T[]): T {
        return this.string(key, (v) => (allowed.includes(v as T) ? undefined : `expected one of ${allowed.join(", ")}`)) as T;
    }

    integer(key: string, min: number, max = Number.MAX_SAFE_INTEGER): number {
        const value = this.raw(key, "integer");
        if (value === undefined) throw new ConfigError(`${PROJECT}:${key} is required`);
        const n = Number(value);
        if (!/^-?\d+$/.test(value) || n < min || n > max) {
            throw new ConfigError(`${PROJECT}:${key} = ${JSON.stringify(value)} is not allowed: expected a whole number from ${min} to ${max}`);
        }
        return n;
    }

    boolean(key: string): boolean {
        const value = this.raw(key, "boolean");
        if (value === "true" || value === "false") return value === "true";
        throw new ConfigError(`${PROJECT}:${key} = ${JSON.stringify(value)} is not allowed: expected true or false`);
    }

    stringList(key: string, check?: Rule, minItems = 0): string[] {
        const value = this.raw(key, "array");
        if (value === undefined && minItems > 0) throw new ConfigError(`${PROJECT}:${key} is required: ${this.declared[key].description ?? ""}`);
        let list: unknown;
        try {
            list = value === undefined ? [] : JSON.parse(value);
        } catch {
            throw new ConfigError(`${PROJECT}:${key} = ${JSON.stringify(value)} is not allowed: expected a list, e.g. set with --path '${key}[0]'`);
        }
        if (!Array.isArray(list) || list.some((item) => typeof item !== "string")) {
            throw new ConfigError(`${PROJECT}:${key} = ${value} is not allowed: expected a list of strings`);
        }
        if (list.length < minItems) throw new ConfigError(`${PROJECT}:${key} needs at least ${minItems} item(s)`);
        return list.map((item: string, i: number) => this.checked(`${key}[${i}]`, item, check));
    }

    /** A map of strings (`pulumi config set --path 'key.name' value`), each value checked as `key.name`. */
    stringMap(key: string, check?: Rule): Record<string, string> {
        const value = this.raw(key, "object") ?? "{}";
        let map: unknown;
        try {
            map = JSON.parse(value);
        } catch {
            map = undefined;
        }
        if (typeof map !== "object" || map === null || Array.isArray(map) || Object.values(map).some((v) => typeof v !== "string")) {
            throw new ConfigError(`${PROJECT}:${key} = ${value} is not allowed: expected a map of strings, e.g. set with --path '${key}.name'`);
        }
        return Object.fromEntries(Object.entries(map as Record<string, string>).map(([name, v]) => [name, this.checked(`${key}.${name}`, v, check)]));
    }

    /**
     * A secret (set with `pulumi config set --secret`); undefined when unset or "" (its default: the CLI hands the
     * program the default of every key the stack does not set).
     */
    secret(key: string): pulumi.Output<string> | undefined {
        const declaration = this.declaration(key, "string");
        // Programming errors: see SECRET_KEYS.
        if (!SECRET_KEYS.includes(key)) throw new Error(`config key ${key} is read as a secret but is not in SECRET_KEYS`);
        if (declaration.default !== "" || declaration.secret) throw new Error(`Pulumi.yaml must declare ${key} with default "" and without secret: true`);
        this.readAsSecret.add(key);
        return this.raw(key, "string") === "" ? undefined : this.config.requireSecret(key);
    }

    /**
     * A secret whose value must parse (e.g. NAME=value lines): checked when the config is read, so a preview reports
     * it naming the key; `parse` throws an Error whose message starts with the key and never quotes the value.
     */
    parsedSecret<T>(key: string, parse: (value: string) => T): pulumi.Output<pulumi.Unwrap<T>> | undefined {
        if (!this.secret(key)) return undefined;
        try {
            return pulumi.secret(parse(this.raw(key, "string")!));
        } catch (e) {
            throw new ConfigError(`${PROJECT}:${(e as Error).message}`);
        }
    }

    private raw(key: string, type: DeclaredType): string | undefined {
        const declaration = this.declaration(key, type);
        const value = this.config.get(key);
        if (value !== undefined) return value;
        if (declaration.default === undefined) return undefined;
        return typeof declaration.default === "string" ? declaration.default : JSON.stringify(declaration.default);
    }

    private declaration(key: string, type: DeclaredType): DeclaredKey {
        const declaration = this.declared[key];
        // A programming error, not a user's: the program and Pulumi.yaml must agree.
        if (!declaration) throw new Error(`config key ${key} is read but not declared in Pulumi.yaml`);
        if (declaration.type !== type) throw new Error(`config key ${key} is read as ${type} but declared as ${declaration.type}`);
        this.read.add(key);
        return declaration;
    }

    private checked(key: string, value: string, check?: Rule): string {
        const problem = check?.(value);
        if (problem) throw new ConfigError(`${PROJECT}:${key} = ${JSON.stringify(value)} is not allowed: ${problem}`);
        return value;
    }

    /** A typo in a key name would otherwise be ignored silently. */
    private rejectUnknownKeys(): void {
        const prefix = `${PROJECT}:`;
        for (const fullKey of Object.keys(pulumi.runtime.allConfig())) {
            if (!fullKey.startsWith(prefix)) continue;
            const key = fullKey.slice(prefix.length);
            if (!(key in this.declared)) {
                // A key that differs only in case is the one meant; otherwise keys sharing its first letters.
                const declaredKeys = Object.keys(this.declared);
                const sameButCase = declaredKeys.filter((k) => k.toLowerCase() === key.toLowerCase());
                const near = sameButCase.length ? sameButCase : declaredKeys.filter((k) => k.toLowerCase().includes(key.toLowerCase().slice(0, 5)));
                throw new ConfigError(`${fullKey} is not a known key${near.length ? `; did you mean ${near.join(", ")}?` : ""} (see Pulumi.yaml)`);
            }
        }
    }
}
