import js from "@eslint/js";
import tseslint from "typescript-eslint";

export default tseslint.config(
  { ignores: ["**/node_modules/**", "**/dist/**", "**/build/**", "coverage/**", ".e2e/**", "**/*.js", "**/*.mjs"] },
  js.configs.recommended,
  // Type-checked: the rules that need types (floating or misused promises, needless assertions, "[object Object]" in
  // strings) find real bugs. tsconfig.json names every file the linter sees.
  ...tseslint.configs.recommendedTypeChecked,
  {
    languageOptions: { parserOptions: { projectService: true, tsconfigRootDir: import.meta.dirname } },
    rules: {
      "@typescript-eslint/no-unused-vars": ["error", { argsIgnorePattern: "^_" }],
      eqeqeq: ["error", "always"],
      "no-console": "off",
      // One import statement per module; a separate `import type` from the same module is allowed.
      "no-duplicate-imports": ["error", { allowSeparateTypeImports: true }],
      // node:test's describe/it/test return promises its runner tracks itself; suites do not await them.
      "@typescript-eslint/no-floating-promises": [
        "error",
        {
          allowForKnownSafeCalls: [
            { from: "package", package: "node:test", name: ["describe", "it", "test", "suite", "before", "after", "beforeEach", "afterEach"] },
          ],
        },
      ],
      // Kubernetes objects, CouchDB documents (validate_doc_update is plain JavaScript run by CouchDB), parsed JSON and
      // Pulumi mock inputs are read as `any` on purpose; these rules flag each such read (about 1,200 places) and the
      // checks against those values are the tests' assertions.
      "@typescript-eslint/no-unsafe-argument": "off",
      "@typescript-eslint/no-unsafe-assignment": "off",
      "@typescript-eslint/no-unsafe-call": "off",
      "@typescript-eslint/no-unsafe-member-access": "off",
      "@typescript-eslint/no-unsafe-return": "off",
    },
  },
);
