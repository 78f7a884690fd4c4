import type { HiveApi } from '../hive-client.js';
import { errorText } from '../hive-errors.js';
import type { RestartAction } from './action.js';

// The agent action: a RESTART command that the hive pushes down the
// worker's open heartbeat stream (or hands over with the next heartbeat
// reply). The agent restarts its supervised process and reports the result
// in its next heartbeat; whether it worked is judged by verification.

export function createAgentAction(hive: Pick<HiveApi, 'sendRestart'>): RestartAction {
  return async (req) => {
    try {
      const { commandId, delivered } = await hive.sendRestart(req.worker.workerId, req.reason);
      return { ok: true, detail: delivered ? `command ${commandId} delivered on the open stream` : `command ${commandId} queued for the next heartbeat (no open stream)` };
    } catch (err) {
      return { ok: false, detail: `SendCommand failed: ${errorText(err)}` };
    }
  };
}
