#!/usr/bin/env node
// Runs a TypeScript entry point through tsx's loader: the entry points work
// right after `npm ci`, with no build step.
import { register } from 'tsx/esm/api';
import { pathToFileURL } from 'node:url';
import { resolve } from 'node:path';

register();
const [entry] = process.argv.splice(2, 1);
await import(pathToFileURL(resolve(entry)).href);
