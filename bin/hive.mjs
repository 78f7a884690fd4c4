#!/usr/bin/env node
import { bundledHive, startable } from './bundle.mjs';

// The hive starts from a bundle of its sources (bin/bundle.mjs): a cold
// start is the time to serve heartbeats, and tsx's loader costs ~0.6 s of it.
await import(await startable(bundledHive, 'hive/main.ts'));
