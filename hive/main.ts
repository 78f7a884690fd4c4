import { ConfigError } from '../lib/config.js';
import { createLogger } from '../lib/logger.js';
import { loadHiveConfig } from './config.js';
import { heapPolicyBeforeLoad, startHeapPolicy } from './heap-policy.js';
import { startHive } from './server.js';

let config;
try {
  config = loadHiveConfig(process.argv.slice(2));
} catch (err) {
  if (err instanceof ConfigError) {
    process.stderr.write(`hive: ${err.message}\n`);
    process.exit(2);
  }
  throw err;
}
const log = createLogger('hive', config.logLevel);
// The process's own heap (tests run hives in-process and leave V8 alone).
heapPolicyBeforeLoad();
const hive = await startHive(config, { log }).catch((err) => {
  log.fatal({ err }, 'hive failed to start');
  process.exit(1);
});
startHeapPolicy(() => hive.registry.workers.size, log);

let stopping = false;
for (const sig of ['SIGTERM', 'SIGINT'] as const) {
  process.on(sig, () => {
    if (stopping) return;
    stopping = true;
    log.info({ signal: sig }, 'shutting down');
    const force = setTimeout(() => process.exit(1), 10_000);
    force.unref();
    hive.stop().then(() => process.exit(0), (err) => {
      log.error({ err }, 'unclean shutdown');
      process.exit(1);
    });
  });
}
