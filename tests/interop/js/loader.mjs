// Offline JSON-LD document loader shared by verify.mjs and issue.mjs.
//
// Contexts come only from the published npm packages (never from mpcid's own copies), and
// did:key DIDs are resolved locally by the did-method-key driver to Ed25519 Multikey
// verification methods. Any other URL is refused: nothing is fetched from the network.
import * as Ed25519Multikey from '@digitalbazaar/ed25519-multikey';
import {contexts as credentialsContexts} from '@digitalbazaar/credentials-context';
import dataIntegrityContext from '@digitalbazaar/data-integrity-context';
import multikeyContext from '@digitalbazaar/multikey-context';
import didContext from 'did-context';
import {driver as didKeyDriver} from '@digitalbazaar/did-method-key';

const contexts = new Map([
  ...credentialsContexts,         // VC v1, VC v2, undefined-terms v2
  ...dataIntegrityContext.contexts,
  ...multikeyContext.contexts,
  ...didContext.contexts
]);

const didKey = didKeyDriver();
didKey.use({multibaseMultikeyHeader: 'z6Mk', fromMultibase: Ed25519Multikey.from});

export const contextUrls = [...contexts.keys()];

// A loader that also serves `documents` (a Map of URL to JSON, e.g. status lists read from
// files given on the command line).
export function makeDocumentLoader({documents = new Map()} = {}) {
  return async function documentLoader(url) {
    const document = contexts.get(url) ?? documents.get(url);
    if(document !== undefined) {
      return {contextUrl: null, documentUrl: url, document};
    }
    if(url.startsWith('did:key:')) {
      return {contextUrl: null, documentUrl: url, document: await didKey.get({url})};
    }
    throw new Error(`Document "${url}" is not available offline.`);
  };
}

export const documentLoader = makeDocumentLoader();
