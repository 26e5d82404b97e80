import { Document, isMap, isScalar, isSeq, parse as parseYaml, parseDocument, Scalar } from "yaml";

/**
 * What the Pulumi CLI does with a stack's config before `pulumi preview`/`up` starts the program: it loads
 * Pulumi.yaml (schema, then `Project.Validate`), reads Pulumi.<stack>.yaml, then runs
 * `ValidateStackConfigAndApplyProjectConfig` — required keys, defaults, secrets, types — and hands the merged,
 * decrypted config to the language host as PULUMI_CONFIG and PULUMI_CONFIG_SECRET_KEYS.
 *
 * Modelled on pulumi/pulumi:
 * - sdk/go/common/workspace/config.go: mergeConfig, validateStackConfigValues, validateStackConfigValue,
 *   missingStackConfigurationKeysError/formatMissingKeys, createConfigValue, parseConfigKey;
 * - sdk/go/common/workspace/project.go: RewriteShorthandConfigValues, Project.Validate, ValidateConfigValue,
 *   InferFullTypeName, configKeyIsNamespacedByProject;
 * - sdk/go/common/workspace/project.json: configTypeDeclaration (`object` joined the types in pulumi/pulumi#20129);
 * - sdk/go/common/resource/config/value.go (how a stack-file value is read) and key.go (ParseKey);
 * - pkg/cmd/pulumi up/preview: `validating stack config: %w`;
 * - sdk/go/common/workspace/project_test.go and config_test.go: the behaviour tests/config/pulumi-cli-model.test.ts
 *   replays (bare stack keys belong to the project: TestLoadingStackConfigWithoutNamespacingTheProject).
 * Not modelled (refused loudly): ESC `environment:` imports, and project keys that are property paths (`a.b`).
 */

export class PulumiCliError extends Error {
    constructor(message: string) {
        super(message);
        this.name = "PulumiCliError";
    }
}

/** Turns a `secure:` ciphertext into plaintext, as the stack's secrets manager would. */
export type Decrypter = (ciphertext: string) => string;

/** Pulumi's own test crypter (config.Base64Crypter, used by TestStackConfigSecretIsCorrectlyValidated). */
export const base64Crypter = {
    encrypt: (plaintext: string): string => Buffer.from(plaintext, "utf8").toString("base64"),
    decrypt: (ciphertext: string): string => Buffer.from(ciphertext, "base64").toString("utf8"),
};

/** For committed stack files, whose passphrase or KMS key a test cannot have: every secret reads as one placeholder. */
export const opaqueDecrypter: Decrypter = () => "[secret]";

const CONFIG_TYPES = ["string", "integer", "boolean", "array", "object"] as const;
type ConfigTypeName = (typeof CONFIG_TYPES)[number];

interface ItemsType {
    type: string;
    items?: ItemsType;
}

export interface ProjectConfigType {
    type?: ConfigTypeName;
    items?: ItemsType;
    description?: string;
    default?: unknown;
    value?: unknown;
    secret?: boolean;
}

export interface Project {
    name: string;
    config: Record<string, ProjectConfigType>;
}

/** config.Value: the raw string, whether it is a `secure:` ciphertext, and whether it holds a JSON list/map. */
export interface StackValue {
    value: string;
    secure: boolean;
    object: boolean;
}

/** What the language host gets: `namespace:key` → string (lists and maps as JSON), and which keys were secure. */
export interface ProgramConfig {
    config: Record<string, string>;
    secretKeys: string[];
}

// --- Pulumi.yaml --------------------------------------------------------------------------------------------

const DECLARATION_ATTRIBUTES = ["type", "items", "description", "secret", "default", "value"];

/** LoadProject: project.json schema, RewriteShorthandConfigValues, then Project.Validate. */
export function loadProject(text: string, file = "Pulumi.yaml"): Project {
    const raw = parseYaml(text) as unknown;
    if (!isObject(raw)) throw new PulumiCliError(`expected project to be an object, was '${typeof raw}'`);
    if (!("name" in raw)) throw new PulumiCliError("project is missing a 'name' attribute");
    if (typeof raw.name !== "string" || raw.name === "") throw new PulumiCliError("project is missing a non-empty string 'name' attribute");
    const name = raw.name;
    if (!("runtime" in raw)) throw new PulumiCliError(`could not validate '${file}': project is missing a 'runtime' attribute`);

    const schemaErrors: string[] = [];
    const config: Record<string, ProjectConfigType> = {};
    // A string `config:` is the old spelling of stackConfigDir and declares nothing.
    const block = raw.config === null || raw.config === undefined || typeof raw.config === "string" ? {} : raw.config;
    if (!isObject(block)) throw new PulumiCliError(`could not validate '${file}': 1 errors occurred:\n\t* #/config: expected object, string or null`);
    for (const [key, entry] of Object.entries(block)) {
        const where = `#/config/${key}`;
        if (typeof entry === "string" || typeof entry === "boolean" || Number.isInteger(entry) || Array.isArray(entry)) {
            // Shorthand: a project key's value is its default, another namespace's is a fixed value.
            config[key] = namespacedByProject(name, key) ? { default: entry } : { value: entry };
            continue;
        }
        if (!isObject(entry)) {
            schemaErrors.push(`${where}: oneOf failed`);
            continue;
        }
        for (const attribute of Object.keys(entry)) {
            if (!DECLARATION_ATTRIBUTES.includes(attribute)) schemaErrors.push(`${where}: additionalProperties '${attribute}' not allowed`);
        }
        if ("type" in entry && !CONFIG_TYPES.includes(entry.type as ConfigTypeName)) {
            schemaErrors.push(`${where}/type: value must be one of ${CONFIG_TYPES.map((t) => `"${t}"`).join(", ")}`);
        }
        if ("items" in entry) schemaErrors.push(...itemsSchemaErrors(`${where}/items`, entry.items));
        if ("description" in entry && typeof entry.description !== "string")
            schemaErrors.push(`${where}/description: expected string, but got ${typeof entry.description}`);
        if ("secret" in entry && typeof entry.secret !== "boolean") schemaErrors.push(`${where}/secret: expected boolean, but got ${typeof entry.secret}`);
        config[key] = entry;
    }
    if (schemaErrors.length > 0) {
        throw new PulumiCliError(`could not validate '${file}': ${schemaErrors.length} errors occurred:\n${schemaErrors.map((e) => `\t* ${e}`).join("\n")}`);
    }
    const project = { name, config };
    const invalid = validateProject(project);
    if (invalid) throw new PulumiCliError(`could not unmarshal '${file}': ${invalid}`);
    return project;
}

function itemsSchemaErrors(where: string, items: unknown): string[] {
    if (!isObject(items) || !("type" in items)) return [`${where}: missing properties: 'type'`];
    const errors: string[] = [];
    if (!CONFIG_TYPES.includes(items.type as ConfigTypeName))
        errors.push(`${where}/type: value must be one of ${CONFIG_TYPES.map((t) => `"${t}"`).join(", ")}`);
    if (items.type === "array" && !("items" in items)) errors.push(`${where}: missing properties: 'items'`);
    if ("items" in items) errors.push(...itemsSchemaErrors(`${where}/items`, items.items));
    return errors;
}

/** Project.Validate, for the config block. */
function validateProject(project: Project): string | undefined {
    for (const [key, declaration] of Object.entries(project.config)) {
        const hasDefault = present(declaration.default);
        const hasValue = present(declaration.value);
        if (hasDefault && hasValue) return `project config '${key}' cannot have both a 'default' and 'value' attribute`;
        if (namespacedByProject(project.name, key)) {
            if (declaration.type === "array" && !declaration.items) {
                return `The configuration key '${key}' declares an array but does not specify the underlying type via the 'items' attribute`;
            }
            if (declaration.type && hasDefault && !validateConfigValue(declaration.type, declaration.items, declaration.default)) {
                return `The default value specified for configuration key '${key}' is not of the expected type '${fullTypeName(declaration.type, declaration.items)}'`;
            }
        } else {
            if (declaration.type) return `Configuration key '${key}' is not namespaced by the project and should not define a type`;
            if (hasDefault) {
                return `Configuration key '${key}' is not namespaced by the project and should not define a default value. Did you mean to use the 'value' attribute instead of 'default'?`;
            }
            if (!hasValue) return `Configuration key '${key}' is namespaced and must provide an attribute 'value'`;
        }
    }
    return undefined;
}

// --- Pulumi.<stack>.yaml ------------------------------------------------------------------------------------

/** Reads a stack file's `config:` block the way config.Map/config.Value unmarshal it. */
export function parseStackConfig(text: string, projectName: string): Map<string, StackValue> {
    const doc = parseDocument(text);
    if (doc.errors.length > 0) throw new PulumiCliError(`could not unmarshal stack file: ${doc.errors[0].message}`);
    const root = doc.contents;
    const stack = new Map<string, StackValue>();
    if (root === null || (isScalar(root) && root.value === null)) return stack;
    if (!isMap(root)) throw new PulumiCliError("could not unmarshal stack file: expected a mapping");
    if (root.has("environment")) throw new PulumiCliError("not modelled: ESC environments in the stack file");
    const block = root.get("config", true);
    if (block === undefined || block === null || (isScalar(block) && block.value === null)) return stack;
    if (!isMap(block)) throw new PulumiCliError("could not unmarshal stack file: config must be a mapping");
    for (const pair of block.items) {
        const rawKey = String(isScalar(pair.key) ? pair.key.value : pair.key);
        stack.set(parseStackKey(rawKey, projectName), readValue(pair.value, doc));
    }
    return stack;
}

function parseStackKey(raw: string, projectName: string): string {
    const colons = raw.split(":").length - 1;
    if (colons === 0) return `${projectName}:${raw}`;
    if (colons === 1) return raw;
    // The old `<namespace>:config:<name>` form is still accepted.
    const [namespace, module, name] = raw.split(":");
    if (colons === 2 && module === "config" && namespace !== "" && name !== "") return `${namespace}:${name}`;
    throw new PulumiCliError(`could not parse ${raw} as a configuration key (configuration keys should be of the form \`<namespace>:<name>\`)`);
}

function readValue(node: unknown, doc: Document): StackValue {
    if (node === null || node === undefined) return { value: "", secure: false, object: false };
    if (isScalar(node)) {
        // A scalar is read as a string: a plain scalar keeps its source text (2 stays "2", 5.0 stays "5.0"); null is "".
        if (node.value === null) return { value: "", secure: false, object: false };
        // Quoted and block scalars hold strings; only an explicit tag (`!!int "2"`) gives a number or boolean here.
        // eslint-disable-next-line @typescript-eslint/no-base-to-string -- never an object: a collection is not a scalar
        const text = node.type === Scalar.PLAIN && typeof node.source === "string" ? node.source : String(node.value);
        return { value: text, secure: false, object: false };
    }
    if (isMap(node) || isSeq(node)) {
        const obj = node.toJS(doc) as unknown;
        const secure = secureCiphertext(obj);
        if (secure !== undefined) return { value: secure, secure: true, object: false };
        return { value: JSON.stringify(obj), secure: hasSecureValue(obj), object: true };
    }
    throw new PulumiCliError("malformed config value");
}

function secureCiphertext(v: unknown): string | undefined {
    if (isObject(v) && Object.keys(v).length === 1 && typeof v.secure === "string") return v.secure;
    return undefined;
}

function hasSecureValue(v: unknown): boolean {
    if (secureCiphertext(v) !== undefined) return true;
    if (Array.isArray(v)) return v.some(hasSecureValue);
    if (isObject(v)) return Object.values(v).some(hasSecureValue);
    return false;
}

function decryptObject(v: unknown, decrypt: Decrypter): unknown {
    const secure = secureCiphertext(v);
    if (secure !== undefined) return decrypt(secure);
    if (Array.isArray(v)) return v.map((item) => decryptObject(item, decrypt));
    if (isObject(v)) return Object.fromEntries(Object.entries(v).map(([k, item]) => [k, decryptObject(item, decrypt)]));
    return v;
}

/** config.Value.Value(decrypter). */
function plaintext(v: StackValue, decrypt: Decrypter): string {
    if (!v.secure) return v.value;
    if (v.object) return JSON.stringify(decryptObject(JSON.parse(v.value), decrypt));
    return decrypt(v.value);
}

// --- ValidateStackConfigAndApplyProjectConfig -----------------------------------------------------------------

/**
 * mergeConfig(validate = true) without an ESC environment: fills in each missing project key's default or value,
 * reports every required key the stack lacks at once, then checks secrets and types key by key (sorted), stopping
 * at the first problem. Mutates `stack` like the CLI does and throws the CLI's own error text.
 */
export function validateStackConfigAndApplyProjectConfig(stackName: string, project: Project, stack: Map<string, StackValue>, decrypt: Decrypter): void {
    const keys = Object.keys(project.config).sort();
    const missing: string[] = [];
    for (const projectKey of keys) {
        const declaration = project.config[projectKey];
        const key = parseConfigKey(project.name, projectKey);
        const hasDefault = present(declaration.default);
        const hasValue = present(declaration.value);
        if (stack.has(key)) continue;
        if (!hasValue && !hasDefault) {
            if (namespaceOf(key) === project.name) missing.push(projectKey);
            continue;
        }
        // With both present Project.Validate has already failed; `default` wins in the CLI's code.
        stack.set(key, createConfigValue(hasDefault ? declaration.default : declaration.value));
    }
    if (missing.length > 0) {
        throw new PulumiCliError(`Stack '${stackName}' is missing configuration ${missing.length > 1 ? "values" : "value"} ${formatMissingKeys(missing)}`);
    }

    // Every value is decrypted once up front; a ciphertext the secrets manager cannot read fails here.
    const decrypted = new Map([...stack].map(([key, v]) => [key, plaintext(v, decrypt)]));
    for (const projectKey of keys) {
        const declaration = project.config[projectKey];
        if (!declaration.type) continue;
        const key = parseConfigKey(project.name, projectKey);
        const stackValue = stack.get(key) ?? { value: "", secure: false, object: false };
        if (declaration.secret && !stackValue.secure) {
            throw new PulumiCliError(`Stack '${stackName}' with configuration key '${projectKey}' must be encrypted as it's secret`);
        }
        const text = decrypted.get(key) ?? "";
        const content = stackValue.object ? (JSON.parse(text) as unknown) : text;
        if (!validateConfigValue(declaration.type, declaration.items, content)) {
            throw new PulumiCliError(
                `Stack '${stackName}' with configuration key '${projectKey}' must be of type '${fullTypeName(declaration.type, declaration.items)}'`,
            );
        }
    }
}

function parseConfigKey(projectName: string, key: string): string {
    if (/[.[]/.test(key)) throw new PulumiCliError(`not modelled: project config key ${key} is a property path`);
    return key.includes(":") ? parseStackKey(key, projectName) : `${projectName}:${key}`;
}

function namespaceOf(key: string): string {
    return key.slice(0, key.indexOf(":"));
}

function formatMissingKeys(keys: string[]): string {
    if (keys.length === 1) return `'${keys[0]}'`;
    const sorted = [...keys].sort();
    return `${sorted
        .slice(0, -1)
        .map((k) => `'${k}'`)
        .join(", ")} and '${sorted[sorted.length - 1]}'`;
}

/** createConfigValue: strings, integers and booleans become plain values (fmt %v), anything else JSON. */
function createConfigValue(raw: unknown): StackValue {
    if (typeof raw === "string") return { value: raw, secure: false, object: false };
    if (typeof raw === "boolean" || (typeof raw === "number" && Number.isInteger(raw))) return { value: String(raw), secure: false, object: false };
    return { value: JSON.stringify(raw), secure: false, object: true };
}

/** ValidateConfigValue: Go's view of a value decoded from YAML or JSON. */
function validateConfigValue(type: string, items: ItemsType | undefined, value: unknown): boolean {
    switch (type) {
        case "string":
            return typeof value === "string";
        case "integer":
            if (typeof value === "number") return Number.isInteger(value);
            // strconv.Atoi: optional sign, decimal digits, within 64 bits.
            return typeof value === "string" && /^[+-]?\d+$/.test(value) && BigInt(value) <= 2n ** 63n - 1n && BigInt(value) >= -(2n ** 63n);
        case "boolean":
            return typeof value === "boolean" || value === "true" || value === "false";
        case "object":
            return isObject(value);
        default:
            // "array", and whatever else got past the schema: only a list whose items all match.
            return Array.isArray(value) && items !== undefined && value.every((item) => validateConfigValue(items.type, items.items, item));
    }
}

function fullTypeName(type: string, items: ItemsType | undefined): string {
    return items ? `array<${fullTypeName(items.type, items.items)}>` : type;
}

function namespacedByProject(projectName: string, key: string): boolean {
    return !key.includes(":") || key.startsWith(`${projectName}:`);
}

function present(v: unknown): boolean {
    return v !== undefined && v !== null;
}

function isObject(v: unknown): v is Record<string, unknown> {
    return typeof v === "object" && v !== null && !Array.isArray(v);
}

// --- the whole path of `pulumi preview --stack <name>` up to the program start -----------------------------------

/**
 * Loads the project, reads the stack file, validates and merges like `pulumi up`/`preview`, and returns what the
 * language host passes to the program. Errors carry the CLI's wording (`validating stack config: …`).
 */
export function cliProgramConfig(opts: { projectYaml: string; stackYaml: string; stackName: string; decrypt?: Decrypter }): ProgramConfig {
    const project = loadProject(opts.projectYaml);
    const stack = parseStackConfig(opts.stackYaml, project.name);
    const decrypt = opts.decrypt ?? base64Crypter.decrypt;
    try {
        validateStackConfigAndApplyProjectConfig(opts.stackName, project, stack, decrypt);
    } catch (e) {
        throw new PulumiCliError(`validating stack config: ${(e as Error).message}`);
    }
    const config: Record<string, string> = {};
    const secretKeys: string[] = [];
    for (const [key, value] of [...stack].sort(([a], [b]) => a.localeCompare(b))) {
        config[key] = plaintext(value, decrypt);
        if (value.secure) secretKeys.push(key);
    }
    return { config, secretKeys };
}
