import { toBinary } from '@bufbuild/protobuf';
import type { Registry as PromRegistry } from 'prom-client';
import { DefaultPolicySchema } from '../gen/hive/v1/control_pb.js';
import { WorkerState, type Worker } from '../gen/hive/v1/registry_pb.js';
import type { Clock } from '../lib/clock.js';
import { durationToMs, timestampToMs } from '../lib/duration.js';
import type { Logger } from '../lib/logger.js';
import { createPeriodic } from '../lib/periodic.js';
import type { RestartAction } from './actions/action.js';
import { createAgentAction } from './actions/agent.js';
import { createExecAction } from './actions/exec.js';
import { createWebhookAction } from './actions/webhook.js';
import { alertRules, createAlerter, type Alert, type Receiver, type Severity } from './alerts.js';
import type { HiveApi } from './hive-client.js';
import { errorText } from './hive-errors.js';
import { createCheckScheduler } from './check-scheduler.js';
import { createInformer, type InformerListener } from './informer.js';
import type { IsLeader } from './leader.js';
import { MassStaleGuard } from './mass-stale-guard.js';
import { createMonitorMetrics } from './metrics.js';
import { PolicyBook, type ActionName } from './policy.js';
import { postJson } from './post-json.js';
import { createRestartSupervisor } from './restart-supervisor.js';
import { SilenceBook } from './silences.js';
import { soleLeadership, type Leadership } from './leader-lease.js';
import { createStaleDetector, graceBaseAfterGap } from './stale-detector.js';

// The monitor's parts and how changes flow between them: the informer's
// view feeds the stale detector (deadlines), the mass-stale guard (who is
// stale), the restart supervisor (policies) and the alert rules
// (transitions). main.ts adds configuration, the gRPC client, the HTTP
// port and signals; tests build this with a fake hive and a manual clock.

export interface MonitorOptions {
  selector: string;
  massStaleShare: number;
  massStaleMin: number;
  massStaleWindow: number | null;
  guardResumeInterval: number;
  outageGraceFactor: number;
  outageGraceMax: number;
  execAllow: readonly string[];
  webhookRetries: number;
  receivers: readonly Receiver[];
  alertTimeout: number;
  alertCooldown: number;
  alertStartupGrace: number;
  alertMinSeverity: Severity;
  refresh: number;
}

export interface MonitorDeps {
  hive: HiveApi;
  clock: Clock;
  log: Logger;
  prom: PromRegistry;
  options: MonitorOptions;
  /** The monitor's token, kept out of exec'd commands' environment. */
  secret?: string;
  random?: () => number;
  /** Replaces actions (tests). */
  actions?: Partial<Record<ActionName, RestartAction>>;
  fetchImpl?: typeof fetch;
  /** Leader election among several monitors; alone, this monitor always leads. */
  leadership?: Leadership;
}

const HEALTHY = new Set([WorkerState.HEALTHY, WorkerState.DEGRADED]);
const WAS_DOWN = new Set([WorkerState.STALE, WorkerState.RESTARTING, WorkerState.FAILED]);

export type Monitor = ReturnType<typeof createMonitor>;

export function createMonitor(deps: MonitorDeps) {
  const { hive, clock, log, options: o } = deps;
  const leadership = deps.leadership ?? soleLeadership();
  // One answer to "do I act?" for everything leader-only (restarts, scheduled checks).
  const isLeader: IsLeader = () => leadership.isLeader();
  const policies = new PolicyBook();
  const silences = new SilenceBook();
  let graceBase = -Infinity;

  // The informer is created last (it needs the listener); parts read it lazily.
  let informer!: ReturnType<typeof createInformer>;
  const fleetSize = () => informer.size - informer.countIn(WorkerState.LEFT);

  const alerter = createAlerter({
    clock,
    log: log.child({ component: 'alerts' }),
    receivers: o.receivers,
    post: (url, body) => postJson(url, body, { clock, timeoutMs: o.alertTimeout, retries: o.webhookRetries, fetchImpl: deps.fetchImpl }),
    cooldownMs: o.alertCooldown,
    startupGraceMs: o.alertStartupGrace,
    minSeverity: o.alertMinSeverity,
    silences,
    metrics: { sent: (s) => metrics.alertSent(s) },
  });
  const alert = (a: Alert) => void alerter.fire(a);

  let supervisor!: ReturnType<typeof createRestartSupervisor>;
  const guardLog = log.child({ component: 'mass-stale-guard' });
  const guard = new MassStaleGuard({
    threshold: o.massStaleShare,
    minCount: o.massStaleMin,
    windowMs: o.massStaleWindow,
    resumeIntervalMs: o.guardResumeInterval,
    fleetSize,
    onEngage(info) {
      guardLog.error({ ...info }, 'mass-stale guard engaged: restart actions paused');
      alert(alertRules.massStale(info));
    },
    onRelease(info) {
      guardLog.warn({ ...info, resumeIntervalMs: o.guardResumeInterval }, 'mass-stale guard released: restarts resume at a limited rate');
      supervisor.released();
      alert(alertRules.massStaleReleased(info));
    },
  });

  const detector = createStaleDetector({
    clock,
    log: log.child({ component: 'stale-detector' }),
    hive,
    hiveNow: () => informer.hiveClock.now(),
    viewThrough: () => informer.completeThrough,
    onMarked: (_w, lagMs) => metrics.staleDetected(lagMs / 1000),
    onStamped: (hiveMs, sentAt) => informer.hiveClock.answered(hiveMs, sentAt),
    onAnswer: (answer) => metrics.markAnswer(answer),
  });

  const metrics = createMonitorMetrics(deps.prom, {
    watchedWorkers: () => informer.size,
    failedWorkers: () => informer.countIn(WorkerState.FAILED),
    deadlines: () => detector.size,
    heldMarks: () => detector.held,
    viewBehindMs: () => {
      const through = informer.completeThrough;
      return through === null ? 0 : Math.max(0, informer.hiveClock.now() - through);
    },
    guardEngaged: () => guard.engaged,
    watchConnected: () => informer.synced,
    leader: isLeader,
  });
  const scheduler = createCheckScheduler({ hive, clock, log: log.child({ component: 'check-scheduler' }), isLeader, refreshMs: o.refresh });

  const actions: Record<ActionName, RestartAction> = {
    agent: deps.actions?.agent ?? createAgentAction(hive),
    exec: deps.actions?.exec ?? createExecAction({ clock, log: log.child({ component: 'exec' }), allow: o.execAllow, secret: deps.secret }),
    webhook: deps.actions?.webhook ?? createWebhookAction({ clock, retries: o.webhookRetries, fetchImpl: deps.fetchImpl }),
  };

  supervisor = createRestartSupervisor({
    clock,
    log: log.child({ component: 'restart-supervisor' }),
    hive,
    actions,
    policies,
    view: { get: (id) => informer.get(id) },
    guard,
    random: deps.random,
    metrics,
    minWaitMs: (trigger, w) => (trigger === 'stale' ? (o.massStaleWindow ?? 2 * (durationToMs(w.heartbeatInterval) ?? 0)) : 0),
    notify: {
      attemptFailed: (w, rec, detail) => alert(alertRules.restartFailed(w, rec.id, rec.episodeAttempts, rec.policy.maxAttempts, detail)),
      gaveUp: (w, rec, why) => alert(alertRules.gaveUp(w, rec.id, why)),
    },
  });

  function guardNote(w: Worker, prev: Worker | undefined): void {
    const now = clock.now();
    const isStale = w.state === WorkerState.STALE;
    const wasStale = prev?.state === WorkerState.STALE;
    if (isStale && !wasStale) {
      const since = timestampToMs(w.stateSince);
      // A mark seen late (a snapshot) counts from when it happened.
      const at = since === undefined ? now : Math.min(now, informer.hiveClock.toLocal(since));
      guard.noteStale(w.workerId, at, now, durationToMs(w.heartbeatInterval) ?? 0);
    } else if (!isStale && wasStale) {
      guard.noteNotStale(w.workerId, now);
    }
    if ((w.state === WorkerState.LEFT) !== (prev?.state === WorkerState.LEFT)) guard.maybeRelease(now);
  }

  function transitionAlerts(w: Worker, prev: Worker | undefined): void {
    // Only changes seen happen are news; a snapshot's first sight is not.
    if (!prev || prev.state === w.state) return;
    if (w.state === WorkerState.STALE) {
      // During a mass event the one critical alert speaks for all.
      if (guard.engaged) return;
      const silent = (timestampToMs(w.stateSince) ?? 0) - (timestampToMs(w.lastSeen) ?? timestampToMs(w.registeredAt) ?? 0);
      alert(alertRules.stale(w, silent));
    } else if (w.state === WorkerState.LEFT) {
      alert(alertRules.left(w));
    } else if (w.state === WorkerState.UNHEALTHY && HEALTHY.has(prev.state)) {
      alert(alertRules.unhealthy(w));
    } else if (HEALTHY.has(w.state) && WAS_DOWN.has(prev.state)) {
      alert(alertRules.recovered(w, prev.state));
    }
  }

  /** Only a synced leader judges and acts: a standby watches, ready to take over. */
  function setActing(): void {
    const on = informer.synced && leadership.isLeader();
    detector.setEnabled(on);
    supervisor.setEnabled(on);
  }

  leadership.onChange((leader, fence) => {
    if (leader) {
      // etcd's promote: every deadline gets a grace, and the restarts the
      // standby saw coming resume at the guard's limited rate, not at once.
      const now = clock.now();
      detector.setPromotedAt(informer.hiveClock.now());
      for (const w of informer.values()) detector.observe(w);
      guard.throttleFrom(now);
      log.info({ fencingToken: String(fence), workers: informer.size }, 'leading: deadlines graced, restarts rate-limited until the backlog drains');
    } else {
      log.warn('standing by: no stale marks or restarts from this monitor');
    }
    setActing();
  });

  const listener: InformerListener = {
    onSynced(info) {
      const hiveNow = informer.hiveClock.now();
      graceBase = info.first ? hiveNow : graceBaseAfterGap(hiveNow, info.gapMs, o.outageGraceFactor, o.outageGraceMax);
      detector.setGraceBase(graceBase);
      if (!info.first) {
        log.warn({ gapMs: info.gapMs, hiveRestarted: info.hiveRestarted, graceMs: Math.round(graceBase - hiveNow) }, 'registry back in sight: every deadline gets a fresh grace');
      }
      setActing();
    },
    onChange(w, prev) {
      detector.observe(w);
      guardNote(w, prev);
      supervisor.observe(w);
      transitionAlerts(w, prev);
    },
    onRemove(prev) {
      detector.remove(prev.workerId);
      supervisor.remove(prev.workerId);
      const now = clock.now();
      guard.noteNotStale(prev.workerId, now);
      guard.maybeRelease(now);
    },
    onProgress() {
      detector.advanced();
    },
    onDisconnected() {
      // What we cannot see we do not judge: no marks, no restarts.
      detector.setEnabled(false);
      supervisor.setEnabled(false);
      log.warn('registry out of sight: stale marks and restarts paused');
    },
  };

  informer = createInformer({
    watch: (signal) => hive.watch(signal, o.selector),
    clock,
    log: log.child({ component: 'informer' }),
    listeners: [listener],
    random: deps.random,
  });

  let policyKey = '';
  async function refresh(): Promise<void> {
    try {
      const list = await hive.listDefaultPolicies();
      const key = list.map((d) => Buffer.from(toBinary(DefaultPolicySchema, d)).toString('base64')).join(',');
      if (key !== policyKey) {
        policyKey = key;
        policies.set(list, (name, err) => log.warn({ policy: name, err: err.message }, 'default policy skipped: bad label selector'));
        log.info({ defaults: policies.size }, 'default restart policies loaded');
        // A new default may cover workers already waiting in a trigger state.
        if (informer.synced) for (const w of informer.values()) if (!HEALTHY.has(w.state)) supervisor.observe(w);
      }
    } catch (err) {
      log.warn({ err: errorText(err) }, 'default policies not refreshed');
    }
    try {
      silences.set(await hive.listSilences(), (id, err) => log.warn({ silence: id, err: err.message }, 'silence skipped: bad label selector'));
    } catch (err) {
      log.warn({ err: errorText(err) }, 'silences not refreshed');
    }
  }
  const refresher = createPeriodic(clock, o.refresh, refresh);

  let started = false;
  return {
    informer,
    detector,
    supervisor,
    guard,
    alerter,
    scheduler,
    policies,
    silences,
    refresh,
    /** Reads policies once (so the first snapshot is judged by them), then starts watching. */
    async start(): Promise<void> {
      if (started) return;
      started = true;
      detector.setEnabled(false);
      supervisor.setEnabled(false);
      detector.start();
      supervisor.start();
      leadership.start();
      const ctl = new AbortController();
      await Promise.race([refresh(), clock.sleep(5000, ctl.signal).catch(() => undefined)]);
      ctl.abort();
      informer.start();
      refresher.start();
      scheduler.start();
    },
    leadership,
    async stop(): Promise<void> {
      await leadership.stop();
      await informer.stop();
      await refresher.stop();
      await scheduler.stop();
      await detector.stop();
      await supervisor.stop();
      await alerter.drain();
    },
    health() {
      return {
        ok: informer.synced,
        watch: informer.synced ? 'synced' : 'disconnected',
        leader: leadership.isLeader(),
        workers: informer.size,
        deadlines: detector.size,
        massStaleGuard: guard.engaged ? 'engaged' : guard.limiting ? 'resuming' : 'off',
        restartsActive: supervisor.active,
      };
    },
  };
}
