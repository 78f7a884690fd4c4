#!/usr/bin/env node
import { setFlagsFromString } from 'node:v8';
import { bundledAgent, startable } from './bundle.mjs';

// The agent runs beside every worker and must stay small. It heartbeats once
// a second, so nothing in it is hot enough to pay for V8's optimising
// compilers: without TurboFan (--no-opt) and the baseline compiler
// (--no-sparkplug) ~3 MB less is resident, at no measurable CPU cost. Set
// here, before the agent's code is loaded, because `node bin/worker-agent.mjs`
// is how the agent is started (node's own command-line flags would need a
// wrapper process, and then a second process per worker).
setFlagsFromString('--no-opt');
setFlagsFromString('--no-sparkplug');

await import(await startable(bundledAgent, 'worker-agent/main.ts'));
