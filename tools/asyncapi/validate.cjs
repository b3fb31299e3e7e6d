#!/usr/bin/env node
// Validates an AsyncAPI document with @asyncapi/parser, the AsyncAPI project's own
// parser and its rule set, or (--openapi) an OpenAPI 3.x document with Spectral's
// OpenAPI rule set (@stoplight/spectral-rulesets, `oas` recommended: the OpenAPI schema and its
// rules). Prints every diagnostic as "severity path: message"; exits 1 when there is
// an error (or, with --strict, any warning), 2 when the parser is not installed
// (scripts/bootstrap installs both).
//
//   node tools/asyncapi/validate.cjs [--strict] [--openapi] FILE
'use strict';
const fs = require('fs');
const path = require('path');
const { createRequire } = require('module');

const args = process.argv.slice(2);
const strict = args.includes('--strict');
const openapi = args.includes('--openapi');
const file = args.find((a) => !a.startsWith('--'));
if (!file) {
  console.error('usage: validate.cjs [--strict] [--openapi] FILE');
  process.exit(2);
}

// Where scripts/bootstrap installs the parser (outside the source tree, like a package).
const homes = [
  process.env.TROUPE_ASYNCAPI_MODULES,
  '/usr/local/lib/troupe/asyncapi',
  path.join(process.env.HOME || '/root', '.cache/troupe/asyncapi'),
].filter(Boolean);
function load(name) {
  for (const home of homes) {
    try {
      return createRequire(path.join(home, 'package.json'))(name);
    } catch (e) {
      // next
    }
  }
  console.error('validate: ' + name + ' is not installed in ' + homes.join(' or ') + ' (run scripts/bootstrap)');
  process.exit(2);
}

const severities = ['error', 'warning', 'info', 'hint'];
function report(diagnostics) {
  let errors = 0;
  let warnings = 0;
  for (const d of diagnostics) {
    const sev = severities[d.severity] || String(d.severity);
    if (d.severity === 0) errors++;
    if (d.severity === 1) warnings++;
    console.log(sev + ' ' + (d.path || []).join('.') + ': ' + d.message + (d.code ? ' [' + d.code + ']' : ''));
  }
  return { errors, warnings };
}

async function asyncapiCheck(text) {
  const parserModule = load('@asyncapi/parser');
  const parser = new parserModule.Parser();
  const { document, diagnostics } = await parser.parse(text, { source: path.resolve(file) });
  const { errors, warnings } = report(diagnostics);
  if (document) {
    console.log('valid AsyncAPI ' + document.version() + ': ' + document.channels().length + ' channels, ' +
                document.operations().length + ' operations, ' + document.components().messages().length +
                ' messages; ' + errors + ' error(s), ' + warnings + ' warning(s)');
  } else {
    console.log('not a valid AsyncAPI document: ' + errors + ' error(s)');
  }
  return errors > 0 || !document || (strict && warnings > 0) ? 1 : 0;
}

async function openapiCheck(text) {
  const { Spectral, Document } = load('@stoplight/spectral-core');
  const Parsers = load('@stoplight/spectral-parsers');
  const { oas } = load('@stoplight/spectral-rulesets');
  const spectral = new Spectral();
  spectral.setRuleset({ extends: [[oas, 'recommended']] });
  const parser = file.endsWith('.json') ? Parsers.Json : Parsers.Yaml;
  const diagnostics = await spectral.run(new Document(text, parser, path.resolve(file)));
  const { errors, warnings } = report(diagnostics);
  let version = '?';
  try {
    version = JSON.parse(text).openapi || '?';
  } catch (e) {
    // YAML: the rules said what they found
  }
  console.log((errors ? 'not a valid' : 'valid') + ' OpenAPI ' + version + ' document: ' + errors + ' error(s), ' +
              warnings + ' warning(s)');
  return errors > 0 || (strict && warnings > 0) ? 1 : 0;
}

(async () => {
  const text = fs.readFileSync(file, 'utf8');
  process.exit(await (openapi ? openapiCheck(text) : asyncapiCheck(text)));
})().catch((e) => {
  console.error('validate: ' + e.message);
  process.exit(1);
});
