#!/usr/bin/env node
// Verify a credential or presentation read from stdin with the Digital Bazaar libraries.
//
//   node verify.mjs < credential.json
//   node verify.mjs --presentation --challenge C --domain D < presentation.json
//   node verify.mjs --status-file URL=FILE < credential-with-status.json
//
// Prints {"verified": true|false, "error": "..."} and exits 0 if verified, 1 if not,
// 2 on unusable input (bad arguments or JSON), so a crash is never read as a rejection.
// Only DataIntegrityProof / eddsa-rdfc-2022 proofs are accepted; the document loader is
// offline (see loader.mjs). A credential with a BitstringStatusListEntry is checked
// against the status list credential read from the --status-file for its URL (whose
// proof and issuer are checked too); without one it is refused.
import {readFileSync} from 'node:fs';
import {text} from 'node:stream/consumers';
import {parseArgs} from 'node:util';
import * as vc from '@digitalbazaar/vc';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite as eddsaRdfc2022CryptoSuite} from
  '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import {checkStatus as checkBitstringStatus} from '@digitalbazaar/vc-bitstring-status-list';
import {makeDocumentLoader} from './loader.mjs';

function finish(verified, error, code) {
  const out = {verified};
  if(error) {
    out.error = error;
  }
  process.stdout.write(JSON.stringify(out) + '\n');
  process.exitCode = code ?? (verified ? 0 : 1);
}

// Every distinct error message in a verification result, innermost first.
function messages(result) {
  const found = [];
  const seen = new Set();
  const visit = error => {
    if(!error || seen.has(error)) {
      return;
    }
    seen.add(error);
    if(Array.isArray(error)) {
      error.forEach(visit);
      return;
    }
    if(Array.isArray(error.errors)) {
      error.errors.forEach(visit);
    }
    if(error.cause) {
      visit(error.cause);
    }
    if(error.message && !found.includes(error.message)) {
      found.push(error.message);
    }
  };
  const walk = r => {
    if(!r) {
      return;
    }
    visit(r.error);
    for(const key of ['results', 'credentialResults']) {
      for(const sub of r[key] ?? []) {
        walk(sub);
      }
    }
    for(const key of ['presentationResult', 'statusResult']) {
      walk(r[key]);
    }
  };
  walk(result);
  // drop the generic wrapper message when a specific one is known
  const specific = found.filter(m => m !== 'Verification error(s).');
  return (specific.length ? specific : found).join('; ') || 'not verified';
}

let options;
try {
  ({values: options} = parseArgs({options: {
    presentation: {type: 'boolean', default: false},
    challenge: {type: 'string'},
    domain: {type: 'string'},
    'status-file': {type: 'string', multiple: true, default: []}
  }}));
  if(options.presentation && options.challenge === undefined) {
    throw new Error('--presentation needs --challenge');
  }
} catch(e) {
  finish(false, `usage: ${e.message}`, 2);
  process.exit();
}

const statusLists = new Map();
try {
  for(const pair of options['status-file']) {
    const at = pair.indexOf('=');
    if(at < 1) {
      throw new Error(`--status-file "${pair}" is not URL=FILE`);
    }
    statusLists.set(pair.slice(0, at), JSON.parse(readFileSync(pair.slice(at + 1), 'utf8')));
  }
} catch(e) {
  finish(false, `usage: ${e.message}`, 2);
  process.exit();
}

let document;
try {
  document = JSON.parse(await text(process.stdin));
} catch(e) {
  finish(false, `stdin is not JSON: ${e.message}`, 2);
  process.exit();
}

const suite = new DataIntegrityProof({cryptosuite: eddsaRdfc2022CryptoSuite});
const documentLoader = makeDocumentLoader({documents: statusLists});
// Offered only when status lists were given, so that vc refuses a credentialStatus it
// cannot check. The library reports the bit at the index (`status`), with `verified`
// meaning only that the list was checked, so a set revocation or suspension bit is turned
// into a failure here.
async function checkStatus({credential}) {
  const result = await checkBitstringStatus({
    credential, documentLoader, suite,
    verifyBitstringStatusListCredential: true, verifyMatchingIssuers: true
  });
  if(!result.verified) {
    return result;
  }
  const set = result.results.filter(({status, credentialStatus: {statusPurpose}}) =>
    status && ['revocation', 'suspension'].includes(statusPurpose));
  if(set.length === 0) {
    return result;
  }
  const [{credentialStatus: entry}] = set;
  const state = entry.statusPurpose === 'revocation' ? 'revoked' : 'suspended';
  return {...result, verified: false, error: new Error(
    `credential is ${state} (status list ${entry.statusListCredential}, ` +
    `index ${entry.statusListIndex})`)};
}

const withStatus = statusLists.size > 0 ? {checkStatus} : {};
try {
  const result = options.presentation ?
    await vc.verify({
      presentation: document,
      challenge: options.challenge,
      domain: options.domain,
      suite,
      documentLoader,
      ...withStatus
    }) :
    await vc.verifyCredential({credential: document, suite, documentLoader, ...withStatus});
  finish(result.verified === true, result.verified ? undefined : messages(result));
} catch(e) {
  // the libraries report failures in their result; an exception here is a bug
  finish(false, `internal error: ${e.stack ?? e}`, 2);
}
