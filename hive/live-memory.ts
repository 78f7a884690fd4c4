import type { Command } from '../gen/hive/v1/registry_pb.js';
import { CommandQueue } from './commands.js';
import { failedPrecondition } from './errors.js';
import type { CasResult, LiveState, SharedLive } from './live-state.js';

// The live state of a single hive: its own memory is the whole truth, so
// the compare-and-set was already decided by the registry's check of its
// map, commands wait in a local queue, and there is nobody to tell.

const OK: CasResult = { ok: true };

export function createMemoryLiveState(): LiveState {
  const commands = new CommandQueue();
  // The highest fencing token seen: a monitor that lost its lease never
  // gets in after its successor has been heard.
  let fence = 0n;

  return {
    kind: 'memory',
    replicaId: 'local',
    async start() {},
    async seed() {
      return new Map<string, SharedLive>();
    },
    beat() {},
    compareAndSet: () => OK,
    stateChanged() {},
    registryChanged() {},
    forget: (id) => commands.drop(id),
    enqueueCommand(id: string, command: Command) {
      return commands.push(id, command);
    },
    takeCommands: (id) => commands.take(id),
    listenCommands: (id, fn) => commands.listen(id, fn),
    streamOpened() {},
    streamClosed() {},
    checkFence(token, required) {
      fence = checkAgainst(fence, token, required);
    },
    degraded: () => null,
    overdue: async () => null,
    async stop() {},
  };
}

/** The fencing rule: returns the new highest token, or throws when this one is older. */
export function checkAgainst(highest: bigint, token: bigint, required: boolean): bigint {
  if (token === 0n && !required) return highest;
  if (token < highest) throw failedPrecondition(`fencing token ${token} is older than ${highest}: this monitor is no longer the leader`);
  return token;
}
