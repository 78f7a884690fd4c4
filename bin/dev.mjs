#!/usr/bin/env node
// `npm start`: the hive with its embedded database in ./data, plus one
// local worker-agent beside it, so a newcomer sees a worker appear.
// Ctrl-C stops both (the agent leaves cleanly first).
import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { hostname } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..');
const dataDir = process.env.HIVE_DATA_DIR || join(root, 'data');
const joinToken = `hive_join_dev_${randomBytes(16).toString('hex')}`;
const workerId = process.env.WORKER_ID || `local-${hostname().replace(/[^A-Za-z0-9._-]/g, '-')}`;
const children = [];

function start(name, script, args) {
  const child = spawn(process.execPath, [join(root, 'bin', script), ...args], {
    cwd: root,
    env: { ...process.env, HIVE_DATA_DIR: dataDir },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  children.push(child);
  let buf = '';
  child.stdout.on('data', (chunk) => {
    buf += chunk;
    let i;
    while ((i = buf.indexOf('\n')) >= 0) {
      const line = buf.slice(0, i);
      buf = buf.slice(i + 1);
      try {
        const e = JSON.parse(line);
        const extra = Object.entries(e)
          .filter(([k]) => !['level', 'time', 'pid', 'hostname', 'name', 'msg'].includes(k))
          .map(([k, v]) => `${k}=${typeof v === 'object' ? JSON.stringify(v) : v}`)
          .join(' ');
        process.stdout.write(`${name.padEnd(6)} ${e.msg}${extra ? `  ${extra}` : ''}\n`);
        child.emit('log', e);
      } catch {
        process.stdout.write(`${name.padEnd(6)} ${line}\n`);
      }
    }
  });
  child.on('exit', (code) => {
    if (!stopping) {
      process.stderr.write(`${name} exited with code ${code}\n`);
      stop(1);
    }
  });
  return child;
}

let stopping = false;
function stop(code = 0) {
  if (stopping) return;
  stopping = true;
  const [hive, ...rest] = children;
  Promise.all(rest.map((c) => new Promise((r) => (c.exitCode !== null ? r() : (c.once('exit', r), c.kill('SIGTERM'))))))
    .then(() => new Promise((r) => (hive.exitCode !== null ? r() : (hive.once('exit', r), hive.kill('SIGTERM')))))
    .then(() => process.exit(code));
}
process.on('SIGINT', () => stop(0));
process.on('SIGTERM', () => stop(0));

const hive = start('hive', 'hive.mjs', ['--join-token', joinToken, ...process.argv.slice(2)]);
hive.on('log', (e) => {
  if (e.msg !== 'hive serving') return;
  start('agent', 'worker-agent.mjs', [
    '--hive', e.grpc, '--join-token', joinToken, '--worker-id', workerId, '--interval', '5s',
    '--label', 'env=dev', '--token-file', join(dataDir, `agent-${workerId}.token`),
  ]);
  const admin = process.env.HIVE_ADMIN_TOKEN || readFileSync(join(dataDir, 'admin-token'), 'utf8').trim();
  process.stdout.write(
    `\n  hive is up. gRPC ${e.grpc}, HTTP http://${e.http}\n` +
      `  a local agent joins as "${workerId}". List the workers:\n\n` +
      `  curl -s -H 'content-type: application/json' -H "authorization: Bearer $(cat ${join(dataDir, 'admin-token')})" \\\n` +
      `       -d '{}' http://${e.http}/hive.v1.RegistryService/ListWorkers\n\n`,
  );
  void admin;
});
