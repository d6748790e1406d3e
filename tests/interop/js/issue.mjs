#!/usr/bin/env node
// Issue a VC 2.0 credential with the Digital Bazaar libraries, signed with a fresh
// Ed25519 did:key (Multikey) and a DataIntegrityProof / eddsa-rdfc-2022 proof.
//
//   node issue.mjs --subject DID --claim KEY=VALUE [--claim ...] [--type TYPE]
//                  [--valid-until ISO8601]
//
// Prints the credential as JSON on stdout and the issuer DID on stderr.
import {parseArgs} from 'node:util';
import {randomUUID} from 'node:crypto';
import * as vc from '@digitalbazaar/vc';
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';
import {DataIntegrityProof} from '@digitalbazaar/data-integrity';
import {cryptosuite as eddsaRdfc2022CryptoSuite} from
  '@digitalbazaar/eddsa-rdfc-2022-cryptosuite';
import {driver as didKeyDriver} from '@digitalbazaar/did-method-key';
import {documentLoader} from './loader.mjs';

let options;
try {
  ({values: options} = parseArgs({options: {
    subject: {type: 'string'},
    claim: {type: 'string', multiple: true, default: []},
    type: {type: 'string', default: 'MemberCredential'},
    'valid-until': {type: 'string'}
  }}));
  if(!options.subject) {
    throw new Error('--subject DID is required');
  }
  if(options.claim.length === 0) {
    throw new Error('at least one --claim KEY=VALUE is required');
  }
} catch(e) {
  process.stderr.write(`usage: ${e.message}\n`);
  process.exit(2);
}

const credentialSubject = {id: options.subject};
for(const claim of options.claim) {
  const at = claim.indexOf('=');
  if(at < 1) {
    process.stderr.write(`usage: claim "${claim}" is not KEY=VALUE\n`);
    process.exit(2);
  }
  credentialSubject[claim.slice(0, at)] = claim.slice(at + 1);
}

const didKey = didKeyDriver();
didKey.use({multibaseMultikeyHeader: 'z6Mk', fromMultibase: Ed25519Multikey.from});
// generate a key, derive its did:key document, then give the key pair that DID's
// verification method id and controller so the proof names it
const generated = await Ed25519Multikey.generate();
const {didDocument} = await didKey.fromKeyPair({verificationKeyPair: generated});
const {id: methodId} = didKey.publicMethodFor({didDocument, purpose: 'assertionMethod'});
const issuerKey = await Ed25519Multikey.from({
  ...await generated.export({secretKey: true}),
  id: methodId,
  controller: didDocument.id
});

const now = new Date().toISOString().replace(/\.\d{3}Z$/, 'Z');
const credential = {
  '@context': [
    'https://www.w3.org/ns/credentials/v2',
    'https://www.w3.org/ns/credentials/undefined-terms/v2'
  ],
  id: `urn:uuid:${randomUUID()}`,
  type: ['VerifiableCredential', options.type],
  issuer: didDocument.id,
  validFrom: now,
  ...(options['valid-until'] ? {validUntil: options['valid-until']} : {}),
  credentialSubject
};

const suite = new DataIntegrityProof({
  signer: issuerKey.signer(), cryptosuite: eddsaRdfc2022CryptoSuite
});
const signed = await vc.issue({credential, suite, documentLoader});
process.stdout.write(JSON.stringify(signed, null, 2) + '\n');
process.stderr.write(`${didDocument.id}\n`);
