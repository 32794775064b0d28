#!/usr/bin/env node
// Entry point of the `kiln` bin (bin/kiln requires dist/cli/main.js).
import { run } from './program';

run(process.argv).then((code) => {
  process.exitCode = code;
});
