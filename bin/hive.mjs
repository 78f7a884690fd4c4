#!/usr/bin/env node
import { pathToFileURL } from 'node:url';
import { bundledHive } from './bundle.mjs';

// The hive starts from a bundle of its sources (bin/bundle.mjs): a cold
// start is the time to serve heartbeats, and tsx's loader costs ~0.6 s of it.
let main;
try {
  main = pathToFileURL(await bundledHive()).href;
} catch {
  // No writable dist/ (a read-only install): run the sources through tsx.
  const { register } = await import('tsx/esm/api');
  register();
  main = '../hive/main.ts';
}
await import(main);
