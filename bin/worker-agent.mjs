#!/usr/bin/env node
import { pathToFileURL } from 'node:url';
import { bundled } from './bundle.mjs';

let main;
try {
  main = pathToFileURL(await bundled('worker-agent', 'worker-agent/main.ts', ['worker-agent', 'lib', 'gen'])).href;
} catch {
  // No writable dist/ (a read-only install): run the sources through tsx.
  const { register } = await import('tsx/esm/api');
  register();
  main = '../worker-agent/main.ts';
}
await import(main);
