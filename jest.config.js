// One jest run for the whole repository. Tests named *.int.test.ts drive real daemons
// (Postfix, Dovecot, … inside our buildah-built images) and need root, buildah and the
// Debian packages that .ci/run installs; `npm run test:unit` leaves them out.
/** @type {import('jest').Config} */
module.exports = {
  testEnvironment: "node",
  roots: ["<rootDir>/tests", "<rootDir>/couchmail"],
  testMatch: ["**/*.test.ts"],
  testPathIgnorePatterns: ["/node_modules/", "/dist/"],
  transform: {
    // Type-checking is `npm run typecheck`; ts-jest only transpiles, which keeps runs fast.
    "^.+\\.ts$": ["ts-jest", { isolatedModules: true, diagnostics: false }],
  },
  testTimeout: 30000,
};
