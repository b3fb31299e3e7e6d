#!/usr/bin/env node
// Validates an AsyncAPI document with @asyncapi/parser, the AsyncAPI project's own
// parser and its rule set. Prints every diagnostic as "severity path: message"; exits
// 1 when there is an error (or, with --strict, any warning), 2 when the parser is not
// installed (scripts/bootstrap installs it).
//
//   node tools/asyncapi/validate.cjs [--strict] FILE
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const args = process.argv.slice(2);
const strict = args.includes('--strict');
const file = args.find((a) => !a.startsWith('--'));
if (!file) {
  console.error('usage: validate.cjs [--strict] FILE');
  process.exit(2);
}

// Where scripts/bootstrap installs the parser (outside the source tree, like a package).
const homes = [
  process.env.TROUPE_ASYNCAPI_MODULES,
  '/usr/local/lib/troupe/asyncapi',
  path.join(process.env.HOME || '/root', '.cache/troupe/asyncapi'),
].filter(Boolean);
let parserModule = null;
for (const home of homes) {
  try {
    parserModule = createRequire(path.join(home, 'package.json'))('@asyncapi/parser');
    break;
  } catch (e) {
    // next
  }
}
if (!parserModule) {
  console.error('validate: @asyncapi/parser is not installed in ' + homes.join(' or ') + ' (run scripts/bootstrap)');
  process.exit(2);
}

const severities = ['error', 'warning', 'info', 'hint'];
(async () => {
  const parser = new parserModule.Parser();
  const text = fs.readFileSync(file, 'utf8');
  const { document, diagnostics } = await parser.parse(text, { source: path.resolve(file) });
  let errors = 0;
  let warnings = 0;
  for (const d of diagnostics) {
    const sev = severities[d.severity] || String(d.severity);
    if (d.severity === 0) errors++;
    if (d.severity === 1) warnings++;
    console.log(sev + ' ' + (d.path || []).join('.') + ': ' + d.message + (d.code ? ' [' + d.code + ']' : ''));
  }
  if (document) {
    console.log('valid AsyncAPI ' + document.version() + ': ' + document.channels().length + ' channels, ' +
                document.operations().length + ' operations, ' + document.components().messages().length +
                ' messages; ' + errors + ' error(s), ' + warnings + ' warning(s)');
  } else {
    console.log('not a valid AsyncAPI document: ' + errors + ' error(s)');
  }
  process.exit(errors > 0 || !document || (strict && warnings > 0) ? 1 : 0);
})().catch((e) => {
  console.error('validate: ' + e.message);
  process.exit(1);
});
