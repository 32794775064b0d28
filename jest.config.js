// Unit tests are fast and need nothing; integration tests start real redis-server, gateway,
// invoker and runc containers (they need root and the layers prepared by scripts/setup.sh).
// Types (tests included) are checked by `tsc -p tsconfig.test.json` in `npm test`; jest only
// transpiles.
const transform = { '^.+\\.ts$': ['ts-jest', { tsconfig: 'tsconfig.test.json', diagnostics: false }] };
const common = { transform, testEnvironment: 'node', modulePathIgnorePatterns: ['<rootDir>/.kiln/', '<rootDir>/functions/', '<rootDir>/dist/'] };
module.exports = {
  projects: [
    { ...common, displayName: 'unit', testMatch: ['<rootDir>/tests/unit/**/*.test.ts'] },
    { ...common, displayName: 'integration', testMatch: ['<rootDir>/tests/integration/**/*.test.ts'], testTimeout: 120000 },
  ],
};
