// Unit tests are fast and need nothing; integration tests start real redis-server, gateway,
// invoker and runc containers (they need root and the prepared layers from scripts/setup.sh).
const tsJest = ['ts-jest', { isolatedModules: true, diagnostics: false }];
module.exports = {
  projects: [
    { displayName: 'unit', testMatch: ['<rootDir>/tests/unit/**/*.test.ts'], transform: { '^.+\\.ts$': tsJest }, testEnvironment: 'node' },
    { displayName: 'integration', testMatch: ['<rootDir>/tests/integration/**/*.test.ts'], transform: { '^.+\\.ts$': tsJest }, testEnvironment: 'node', testTimeout: 120000 },
  ],
};
