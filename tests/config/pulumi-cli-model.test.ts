import { base64Crypter, cliProgramConfig, loadProject, ProgramConfig } from "../kit/pulumi-cli-config";

// The model replays Pulumi's own tests of ValidateStackConfigAndApplyProjectConfig and LoadProject:
// pulumi/pulumi sdk/go/common/workspace/project_test.go (Test* names below) and config_test.go.
const run = (projectYaml: string, stackYaml: string): ProgramConfig =>
    cliProgramConfig({ projectYaml: `name: test\nruntime: dotnet\n${projectYaml}`, stackYaml, stackName: "dev" });
const fails = (projectYaml: string, stackYaml: string) => () => run(projectYaml, stackYaml);

describe("Pulumi CLI config model: Pulumi's own cases", () => {
    it("TestStackConfigIsInheritedFromProjectConfig", () => {
        const { config } = run("config:\n  instanceSize: t3.micro\n  instanceCount: 20\n  protect: true", "config:\n  test:instanceSize: t4.large");
        expect(config).toEqual({ "test:instanceSize": "t4.large", "test:instanceCount": "20", "test:protect": "true" });
    });

    it("TestNamespacedConfigValuesAreInheritedCorrectly", () => {
        const { config } = run(
            'config:\n  aws:region: us-west-1\n  pulumi:disable-default-providers: ["*"]\n  instanceSize: t3.micro',
            "config:\n  test:instanceSize: t4.large",
        );
        expect(config).toEqual({ "test:instanceSize": "t4.large", "aws:region": "us-west-1", "pulumi:disable-default-providers": '["*"]' });
    });

    it("TestLoadingStackConfigWithoutNamespacingTheProject", () => {
        const { config } = run("config:\n  aws:region: us-west-1\n  instanceSize: t3.micro", "config:\n  instanceSize: t4.large");
        expect(config).toEqual({ "test:instanceSize": "t4.large", "aws:region": "us-west-1" });
    });

    it("TestUntypedProjectConfigValuesAreNotValidated", () => {
        const { config } = run("config:\n  instanceSize: t3.micro\n  aws:region: us-west-1", "config:\n  instanceSize: 9999\n  aws:region: 42");
        expect(config).toEqual({ "test:instanceSize": "9999", "aws:region": "42" });
    });

    it("TestUntypedProjectConfigValuesWithOnlyDefaultOrOnlyValue", () => {
        const { config } = run("config:\n  instanceSize:\n    default: t3.micro\n  region:\n    value: us-west-1", "config:\n  aws:answer: 42");
        expect(config).toEqual({ "test:instanceSize": "t3.micro", "test:region": "us-west-1", "aws:answer": "42" });
    });

    it("TestUntypedStackConfigValuesDoNeedProjectDeclaration: undeclared project keys pass", () => {
        const { config } = run("config:\n  createVpc: true", "config:\n  instanceSize: 42");
        expect(config).toEqual({ "test:instanceSize": "42", "test:createVpc": "true" });
    });

    it("TestUntypedProjectConfigObjectValuesPassedDownToStack", () => {
        const { config } = run(
            "config:\n  instanceSize:\n    value:\n      hello: world\n  aws:config:\n    value:\n      region: us-west-1",
            "config:\n  aws:whatever: 42",
        );
        expect(config).toEqual({ "test:instanceSize": '{"hello":"world"}', "aws:config": '{"region":"us-west-1"}', "aws:whatever": "42" });
    });

    it("TestStackConfigDoesNotErrorWhenProjectHasNotDefinedConfig", () => {
        expect(run("", "config:\n  hello: 21\n  world: 42\n  another: 42").config).toEqual({ "test:hello": "21", "test:world": "42", "test:another": "42" });
    });

    it.each([
        [
            "TestNamespacedProjectConfigShouldNotBeExplicitlyTyped",
            "config:\n  aws:region:\n    type: string\n    value:\n      region: us-west-1",
            "Configuration key 'aws:region' is not namespaced by the project and should not define a type",
        ],
        [
            "TestProjectConfigCannotHaveBothValueAndDefault",
            "config:\n  instanceSize:\n    type: string\n    default: t3.micro\n    value: t4.large",
            "project config 'instanceSize' cannot have both a 'default' and 'value' attribute",
        ],
        [
            "TestProjectConfigCannotBeTypedArrayWithoutItems",
            "config:\n  instanceSize:\n    type: array\n    default: [t3.micro, t4.large]",
            "The configuration key 'instanceSize' declares an array but does not specify the underlying type via the 'items' attribute",
        ],
        [
            "TestNamespacedProjectConfigShouldNotBeProvideDefault",
            "config:\n  aws:region:\n    default: us-west-1",
            "Configuration key 'aws:region' is not namespaced by the project and should not define a default value. Did you mean to use the 'value' attribute instead of 'default'?",
        ],
        [
            "TestProjectValidationFailsForIncorrectDefaultValueType (integer)",
            "config:\n  instanceSize:\n    type: integer\n    default: hello",
            "The default value specified for configuration key 'instanceSize' is not of the expected type 'integer'",
        ],
        [
            "TestProjectValidationFailsForIncorrectDefaultValueType (array)",
            "config:\n  values:\n    type: array\n    items:\n      type: array\n      items:\n        type: string\n    default: [hello]",
            "The default value specified for configuration key 'values' is not of the expected type 'array<array<string>>'",
        ],
    ])("%s", (_name, projectYaml, message) => {
        expect(() => loadProject(`name: test\nruntime: dotnet\n${projectYaml}`)).toThrow(message);
    });

    it("TestProjectValidationSucceedsForCorrectDefaultValueType", () => {
        expect(() => loadProject("name: test\nruntime: dotnet\nconfig:\n  instanceSize:\n    type: integer\n    default: 1")).not.toThrow();
        expect(() =>
            loadProject(
                "name: test\nruntime: dotnet\nconfig:\n  values:\n    type: array\n    items:\n      type: array\n      items:\n        type: string\n    default: [[hello]]",
            ),
        ).not.toThrow();
    });

    it("TestStackConfigErrorsWhenStackValueIsNotCorrectlyTyped", () => {
        expect(fails("config:\n  values:\n    type: array\n    items:\n      type: string\n    default: [value]", "config:\n  test:values: someValue")).toThrow(
            "validating stack config: Stack 'dev' with configuration key 'values' must be of type 'array<string>'",
        );
    });

    it("TestStackConfigIntegerTypeIsCorrectlyValidated", () => {
        const project = "config:\n  importantNumber:\n    type: integer";
        expect(run(project, "config:\n  test:importantNumber: 20").config).toEqual({ "test:importantNumber": "20" });
        expect(fails(project, "config:\n  test:importantNumber: hello")).toThrow(
            "Stack 'dev' with configuration key 'importantNumber' must be of type 'integer'",
        );
    });

    it.each([
        [
            "TestStackConfigErrorsWhenMissingStackValueForConfigTypeWithNoDefault",
            "config:\n  values:\n    type: array\n    items:\n      type: string",
            "Stack 'dev' is missing configuration value 'values'",
        ],
        [
            "TestStackConfigErrorsWhenMissingTwoStackValueForConfigTypeWithNoDefault",
            "config:\n  another:\n    type: string\n  values:\n    type: array\n    items:\n      type: string",
            "Stack 'dev' is missing configuration values 'another' and 'values'",
        ],
        [
            "TestStackConfigErrorsWhenMissingMultipleStackValueForConfigTypeWithNoDefault",
            "config:\n  hello:\n    type: integer\n  values:\n    type: array\n    items:\n      type: string\n  world:\n    type: string",
            "Stack 'dev' is missing configuration values 'hello', 'values' and 'world'",
        ],
    ])("%s", (_name, projectYaml, message) => {
        expect(fails(projectYaml, "")).toThrow(`validating stack config: ${message}`);
    });

    it("TestStackConfigSecretIsCorrectlyValidated", () => {
        const project = "config:\n  importantNumber:\n    type: integer\n    secret: true";
        const valid = run(project, `config:\n  test:importantNumber:\n    secure: ${base64Crypter.encrypt("20")}`);
        expect(valid).toEqual({ config: { "test:importantNumber": "20" }, secretKeys: ["test:importantNumber"] });
        expect(fails(project, "config:\n  test:importantNumber: 20")).toThrow(
            "Stack 'dev' with configuration key 'importantNumber' must be encrypted as it's secret",
        );
    });

    it("config_test.go Decrypt Error Is Propagated", () => {
        const decrypt = () => {
            throw new Error("decrypt failed");
        };
        expect(() =>
            cliProgramConfig({
                projectYaml: "name: test\nruntime: dotnet",
                stackYaml: "config:\n  test:someKey:\n    secure: someVal",
                stackName: "stackA",
                decrypt,
            }),
        ).toThrow("decrypt failed");
    });
});

describe("Pulumi CLI config model: behaviour read from the CLI's code", () => {
    it("a secret key's default is applied as plaintext, so the key fails unless the stack sets it encrypted (mergeConfig, then validateStackConfigValue)", () => {
        const project = 'config:\n  token:\n    type: string\n    secret: true\n    default: ""';
        expect(fails(project, "")).toThrow("Stack 'dev' with configuration key 'token' must be encrypted as it's secret");
        expect(run(project, `config:\n  test:token:\n    secure: ${base64Crypter.encrypt("t")}`).config).toEqual({ "test:token": "t" });
    });

    it("`default: null` is no default (Default != nil): the key is required", () => {
        expect(fails("config:\n  key:\n    type: string\n    default: null", "")).toThrow("Stack 'dev' is missing configuration value 'key'");
    });

    it("a key of another namespace cannot be declared, only given a fixed value", () => {
        expect(() => loadProject("name: test\nruntime: dotnet\nconfig:\n  aws:region:\n    description: x")).toThrow(
            "Configuration key 'aws:region' is namespaced and must provide an attribute 'value'",
        );
    });

    it("scalars reach the program as their YAML text, lists and maps as JSON, and defaults as fmt %v or JSON", () => {
        const project =
            'config:\n  n:\n    type: integer\n    default: 26214400\n  b:\n    type: boolean\n    default: true\n  e:\n    type: string\n    default: ""\n  l:\n    type: array\n    items:\n      type: string\n    default: []';
        expect(run(project, "config:\n  test:s: 5.0\n  test:x: ~\n  test:m: [a, 1]").config).toEqual({
            "test:n": "26214400",
            "test:b": "true",
            "test:e": "",
            "test:l": "[]",
            "test:s": "5.0",
            "test:x": "",
            "test:m": '["a",1]',
        });
    });

    it.each([
        ["string", "config:\n  test:k: [a]", "must be of type 'string'"],
        ["string", "config:\n  test:k: 7", undefined],
        ["boolean", "config:\n  test:k: yes", "must be of type 'boolean'"],
        ["boolean", "config:\n  test:k: True", "must be of type 'boolean'"],
        ["integer", "config:\n  test:k: 1.5", "must be of type 'integer'"],
        ["integer", "config:\n  test:k: 99999999999999999999", "must be of type 'integer'"],
        ["object", "config:\n  test:k:\n    a: 1", undefined],
        ["object", "config:\n  test:k: text", "must be of type 'object'"],
    ])("a %s key with %j", (type, stackYaml, problem) => {
        const attempt = fails(`config:\n  k:\n    type: ${type}`, stackYaml);
        if (problem) expect(attempt).toThrow(`Stack 'dev' with configuration key 'k' ${problem}`);
        else expect(attempt).not.toThrow();
    });

    it("a list item of the wrong type fails the whole key", () => {
        expect(fails("config:\n  l:\n    type: array\n    items:\n      type: string", "config:\n  test:l: [a, 42]")).toThrow(
            "must be of type 'array<string>'",
        );
    });

    it("the schema refuses unknown types and attributes before anything else (pulumi/docs#18971, pulumi/pulumi#16056)", () => {
        expect(() => loadProject("name: test\nruntime: nodejs\nconfig:\n  n:\n    type: number")).toThrow(
            `#/config/n/type: value must be one of "string", "integer", "boolean", "array", "object"`,
        );
        expect(() => loadProject("name: test\nruntime: nodejs\nconfig:\n  n:\n    type: string\n    required: true")).toThrow(
            "#/config/n: additionalProperties 'required' not allowed",
        );
    });

    it("refuses what it does not model", () => {
        expect(fails("", "environment:\n  - shared")).toThrow("not modelled: ESC environments");
        expect(fails("config:\n  a.b:\n    type: string\n    default: x", "")).toThrow("not modelled: project config key a.b is a property path");
    });

    it("keys with two colons must use the old `:config:` form", () => {
        expect(run("", "config:\n  aws:config:region: us-east-1").config).toEqual({ "aws:region": "us-east-1" });
        expect(fails("", "config:\n  a:b:c: x")).toThrow("could not parse a:b:c as a configuration key");
    });
});
