import { createClient, type Client } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { chmod, mkdir, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { chromium, type Browser, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { ControlService } from '../../gen/hive/v1/control_pb.js';
import { HealthStatus, RegistryService, TokenScope } from '../../gen/hive/v1/registry_pb.js';
import { msToDuration } from '../../lib/duration.js';
import { NVIDIA_SMI_FIELDS } from '../../worker-agent/collectors/gpu.js';
import { dropSchema, PG_URL, uniqueSchema } from '../support/pg.js';
import { eventually, ROOT, startHiveProc, startProc, tempDir, type HiveProc, type Proc } from '../support/procs.js';
import { projectQueryGpu, readFixture } from '../worker-agent/support/nvidia-smi-capture.js';

// The status page in a real browser (Debian's Chromium driven by
// playwright-core) against a real hive process, real agents and the real
// monitor (bin/hive-monitor.mjs): the page shows the workers, keeps them
// live over one WatchWorkers stream without polling, and a killed agent's
// card turns red without a reload once the monitor marks it stale.

const ADMIN = 'admin-token-for-status-page-tests';
const JOIN = 'join-token-for-status-page-tests';
const INTERVAL_MS = 1000;
const SCREENSHOT = join(ROOT, 'test-results', 'status-page.png');
const CHROMIUM = { executablePath: '/usr/bin/chromium', args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking'] };

describe('status page in Chromium', () => {
  const schema = uniqueSchema('status_page');
  let dir: Awaited<ReturnType<typeof tempDir>>;
  let hive: HiveProc;
  const agents: Record<string, Proc> = {};
  let monitor: Proc | undefined;
  let browser: Browser;
  let page: Page;
  let readToken: string;
  let registry: Client<typeof RegistryService>;
  let control: Client<typeof ControlService>;
  const pageErrors: string[] = [];
  /** Every API call the page makes, by method name, with when it was made. */
  const calls: Array<{ method: string; at: number }> = [];
  const callsSince = (i: number, method: string) => calls.slice(i).filter((c) => c.method === method).length;
  const auth = { headers: { authorization: `Bearer ${ADMIN}` } };

  /** A stand-in nvidia-smi that answers the agent's query from a real capture. */
  const fakeNvidiaSmi = async (name: string, capture: string) => {
    const path = join(dir.path, name);
    const out = projectQueryGpu(readFixture(`nvidia-smi/${capture}`), NVIDIA_SMI_FIELDS);
    await writeFile(path, `#!/bin/sh\ncat <<'EOF'\n${out}EOF\n`);
    await chmod(path, 0o755);
    return path;
  };

  const startAgent = (id: string, pool: string, nvidiaSmi: string) => {
    agents[id] = startProc('worker-agent.mjs', [
      '--hive', hive.grpcAddr, '--join-token', JOIN, '--worker-id', id, '--interval', `${INTERVAL_MS}ms`, '--label', `pool=${pool}`,
      '--token-file', join(dir.path, `${id}.token`), '--metrics-addr', '127.0.0.1:0', '--nvidia-smi', nvidiaSmi,
    ], { LOG_LEVEL: 'info' });
  };

  beforeAll(async () => {
    dir = await tempDir();
    const [h100, h200] = await Promise.all([
      fakeNvidiaSmi('nvidia-smi-h100', 'linux-x86_64__nvidia-h100-mig__590.48.01__idle.query-gpu-all.csv'),
      fakeNvidiaSmi('nvidia-smi-h200', 'linux-x86_64__nvidia-h200__580.173.02__idle.query-gpu-all.csv'),
    ]);
    const launched = chromium.launch(CHROMIUM);
    hive = await startHiveProc(
      ['--data-dir', join(dir.path, 'data'), '--database-url', PG_URL, '--database-schema', schema, '--admin-token', ADMIN, '--join-token', JOIN],
      { LOG_LEVEL: 'info' },
    );
    startAgent('gpu-a', 'h100', h100);
    startAgent('gpu-b', 'h200', h200);
    const transport = createConnectTransport({ baseUrl: hive.httpUrl, httpVersion: '1.1' });
    registry = createClient(RegistryService, transport);
    control = createClient(ControlService, transport);
    readToken = (await registry.createToken({ scope: TokenScope.READ, description: 'status page test' }, auth)).token;
    const monitorToken = (await registry.createToken({ scope: TokenScope.MONITOR, description: 'status page test' }, auth)).token;
    monitor = startProc('hive-monitor.mjs', ['--hive', hive.grpcAddr, '--token', monitorToken, '--http-addr', '127.0.0.1:0'], { LOG_LEVEL: 'info' });
    await monitor.waitForLog((e) => e.msg === 'monitor serving', 30_000);
    browser = await launched;
    page = await browser.newPage({ viewport: { width: 1280, height: 720 } });
    page.on('pageerror', (err) => pageErrors.push(err.message));
    page.on('request', (req) => {
      const m = /\/hive\.v1\.RegistryService\/(\w+)$/.exec(new URL(req.url()).pathname);
      if (m) calls.push({ method: m[1], at: Date.now() });
    });
    page.on('console', (msg) => {
      if (msg.type() === 'error' && !/Failed to load resource/.test(msg.text())) pageErrors.push(msg.text());
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await Promise.all(Object.values(agents).map((a) => a.kill('SIGKILL')));
    await monitor?.kill('SIGTERM');
    await hive?.kill('SIGTERM');
    await dropSchema(schema);
    await dir?.remove();
  });

  it('asks for a read token once, then shows both workers live with VRAM, memory and disk bars', async () => {
    await page.goto(hive.httpUrl + '/');
    await page.locator('#login').waitFor({ state: 'visible' });
    await page.fill('#token', readToken);
    await page.click('#login button[type=submit]');

    await page.locator('.card[data-worker="gpu-a"][data-state="healthy"]').waitFor({ timeout: 20_000 });
    await page.locator('.card[data-worker="gpu-b"][data-state="healthy"]').waitFor({ timeout: 20_000 });
    expect(await page.locator('#connection').textContent()).toBe('live');
    const a = page.locator('.card[data-worker="gpu-a"]');
    expect(await a.locator('.bar-label').allTextContents()).toEqual(['GPU 0 · NVIDIA H100 80GB HBM3', 'Memory', 'Disk /']);
    expect(await a.locator('.bar-value').first().textContent()).toBe('59.0 MiB / 79.6 GiB');
    expect(await page.locator('.card[data-worker="gpu-b"] .bar-label').first().textContent()).toBe('GPU 0 · NVIDIA H200');
    expect(await a.locator('.labels li').allTextContents()).toEqual(['pool=h100']);
    await page.locator('#events li[data-kind="first_heartbeat"]').first().waitFor();

    // Kept for the tab's session: a reload does not ask again.
    await page.reload();
    await page.locator('.card[data-worker="gpu-b"][data-state="healthy"]').waitFor();
    expect(await page.locator('#login').isVisible()).toBe(false);
    expect(await page.evaluate(() => sessionStorage.length)).toBe(1);
    expect(pageErrors).toEqual([]);
  });

  it('holds one WatchWorkers stream per connection and does not poll', async () => {
    const from = calls.length;
    await page.reload();
    await page.locator('.card[data-worker="gpu-a"][data-state="healthy"]').waitFor();
    await eventually(async () => (await page.locator('#connection').textContent()) === 'live', 10_000, 'live');
    await eventually(async () => callsSince(from, 'ListEvents') === 1, 5_000, 'the events panel read once');
    const seen = await page.locator('.card[data-worker="gpu-a"] .age').getAttribute('data-last-seen');
    // A few heartbeat intervals with no state change: the cards keep moving
    // (through the stream), and nothing is asked again.
    await page.waitForTimeout(4 * INTERVAL_MS);
    expect(await page.locator('.card[data-worker="gpu-a"] .age').getAttribute('data-last-seen')).not.toBe(seen);
    expect(calls.slice(from).map((c) => c.method)).toEqual(['WatchWorkers', 'ListEvents']);
  });

  it('filters by label selector (on the hive) and by state (in the page)', async () => {
    await page.fill('#selector', 'pool=h200');
    await page.press('#selector', 'Enter');
    await eventually(async () => (await page.locator('.card').count()) === 1, 10_000, 'one card');
    expect(await page.locator('.card').getAttribute('data-worker')).toBe('gpu-b');
    await page.fill('#selector', '');
    await page.press('#selector', 'Enter');
    await eventually(async () => (await page.locator('.card').count()) === 2, 10_000, 'both cards');

    await page.click('#states button[data-state="degraded"]');
    expect(await page.locator('.card').count()).toBe(0);
    expect(await page.locator('#empty').textContent()).toBe('No worker in the selected states.');
    await page.click('#states button[data-state="degraded"]');
    expect(await page.locator('.card').count()).toBe(2);
  });

  it('shows the last health-check run, answered by the real agents, without a reload', async () => {
    expect(await page.locator('#check-empty').isVisible()).toBe(true);
    const started = (await control.startHealthCheck({ timeout: { seconds: 20n, nanos: 0 } }, auth)).check!;
    await eventually(async () => (await page.locator('#check .check-id').textContent()) === started.checkId, 15_000, 'the run on the page');
    await eventually(async () => /score 1\.00 healthy, 0 of 2 failed/.test((await page.locator('#check .check-score').textContent()) ?? ''), 15_000, 'the finished run on the page');
    expect(await page.locator('#check .check-summary').textContent()).toMatch(/^2 workers checked: 2 healthy, 0 degraded, 0 failed\./);
    expect(await page.locator('#check-empty').isVisible()).toBe(false);
  });

  it("turns a killed agent's card red without a reload once the worker is marked stale", async () => {
    await page.evaluate(() => ((window as unknown as { sameDocument: string }).sameDocument = 'yes'));
    const from = calls.length;
    await agents['gpu-b'].kill('SIGKILL');

    const card = page.locator('.card[data-worker="gpu-b"]');
    await page.locator('.card[data-worker="gpu-b"][data-state="stale"]').waitFor({ timeout: 20_000 });
    expect(await card.getAttribute('class')).toContain('tone-bad');
    expect(await card.locator('.badge').textContent()).toBe('STALE');
    expect(await card.locator('.badge').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(214, 59, 59)');
    expect(await page.locator('.card[data-worker="gpu-a"]').getAttribute('data-state')).toBe('healthy');
    expect(await page.locator('.card[data-worker="gpu-a"] .badge').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(31, 157, 85)');
    await page.locator('#events li[data-kind="marked_stale"]').waitFor({ timeout: 10_000 });
    const { events } = await registry.listEvents({ workerId: 'gpu-b', pageSize: 10 }, auth);
    expect(events.find((e) => e.kind === 'marked_stale')?.actor).toBe('monitor');
    // The same document all along: no reload, no navigation.
    expect(await page.evaluate(() => (window as unknown as { sameDocument?: string }).sameDocument)).toBe('yes');
    expect(await page.locator('#states button[data-state="stale"] b').textContent()).toBe('1');
    // The change came down the same stream; the events panel was read again
    // because of it, not on a timer.
    expect(callsSince(from, 'WatchWorkers')).toBe(0);
    expect(callsSince(from, 'ListEvents')).toBeGreaterThanOrEqual(1);
    expect(calls.slice(from).every((c) => c.method === 'ListEvents')).toBe(true);

    await mkdir(join(ROOT, 'test-results'), { recursive: true });
    await page.waitForTimeout(400); // let the bars' width transition finish for the picture
    await page.screenshot({ path: SCREENSHOT, fullPage: true });
    expect(pageErrors).toEqual([]);
  });

  it("the stale card's last seen keeps ticking, in the same element", async () => {
    const card = '.card[data-worker="gpu-b"]';
    await page.evaluate((sel) => ((window as unknown as { staleCard: Element | null }).staleCard = document.querySelector(sel)), card);
    const before = await page.locator(`${card} .age`).textContent();
    expect(before).toMatch(/^\d+s ago$/);
    await page.waitForTimeout(2500);
    const after = await page.locator(`${card} .age`).textContent();
    expect(Number.parseInt(after!, 10) - Number.parseInt(before!, 10)).toBeGreaterThanOrEqual(2);
    expect(await page.evaluate((sel) => (window as unknown as { staleCard: Element | null }).staleCard === document.querySelector(sel), card)).toBe(true);
    expect(await page.locator(card).getAttribute('data-state')).toBe('stale');
  });

  it('shows a degraded worker yellow and a worker that left grey', async () => {
    const beat = (workerId: string, token: string, status: HealthStatus, detail: string) =>
      registry.heartbeat({ workerId, sessionId: 's1', seq: 1n, status, statusDetail: detail }, { headers: { authorization: `Bearer ${token}` } });
    // A long interval: the monitor leaves them alone for the test's length.
    const register = async (workerId: string) =>
      (await registry.registerWorker({ workerId, labels: { pool: 'cpu' }, heartbeatInterval: msToDuration(120_000) }, auth)).workerToken;
    const degraded = await register('cpu-degraded');
    await beat('cpu-degraded', degraded, HealthStatus.DEGRADED, 'probe slower than 2s');
    const gone = await register('cpu-left');
    await beat('cpu-left', gone, HealthStatus.HEALTHY, 'ok');
    await registry.leave({ workerId: 'cpu-left', reason: 'shutdown' }, { headers: { authorization: `Bearer ${gone}` } });

    const yellow = page.locator('.card[data-worker="cpu-degraded"][data-state="degraded"]');
    const grey = page.locator('.card[data-worker="cpu-left"][data-state="left"]');
    await yellow.waitFor({ timeout: 10_000 });
    await grey.waitFor({ timeout: 10_000 });
    expect(await yellow.getAttribute('class')).toContain('tone-warn');
    expect(await yellow.locator('.badge').textContent()).toBe('DEGRADED');
    expect(await yellow.locator('.badge').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(201, 154, 6)');
    expect(await yellow.locator('.detail').textContent()).toBe('probe slower than 2s');
    expect(await grey.getAttribute('class')).toContain('tone-gone');
    expect(await grey.locator('.badge').textContent()).toBe('LEFT');
    expect(await grey.locator('.badge').evaluate((el) => getComputedStyle(el).backgroundColor)).toBe('rgb(138, 145, 156)');
    expect(pageErrors).toEqual([]);
  });

  it('a refused token brings the token dialog back with the reason', async () => {
    const context = await browser.newContext();
    try {
      const other = await context.newPage();
      await other.goto(hive.httpUrl + '/');
      await other.fill('#token', 'not-a-valid-token');
      await other.click('#login button[type=submit]');
      await other.locator('#login-error').waitFor({ state: 'visible', timeout: 10_000 });
      expect(await other.locator('#login-error').textContent()).toContain('refused the token');
      expect(await other.evaluate(() => sessionStorage.length)).toBe(0);
    } finally {
      await context.close();
    }
  });
});
