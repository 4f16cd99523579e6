// Data-parallel runs that open no door (#31): a local `usam train --nproc 2`
// run listens on no outside address (read from /proc: every listening TCP
// socket of every process of the run, against a TCPStore group that does
// listen on every interface, so the check is shown to see one); a process of
// another run (another run token) is refused at rendezvous with a clear error
// and nobody hangs; two local runs side by side do not interfere.
import { execFile, spawn } from 'node:child_process';
import { connect, createServer } from 'node:net';
import { existsSync, mkdtempSync, readdirSync, readFileSync, readlinkSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { afterAll, describe, expect, it } from 'vitest';
import { localRendezvous } from '../../lib/cli/launch.js';
import { freePort } from '../../lib/distributed.js';
import { native } from '../../lib/native/load.js';
import { repoRoot } from '../helpers.js';

const hasGloo = native().versions().distributed.includes('gloo');
const tsx = pathToFileURL(join(repoRoot, 'node_modules/tsx/dist/esm/index.mjs')).href;
const worker = join(repoRoot, 'test/distributed-worker.ts');
const usam = join(repoRoot, 'scripts/usam.mjs');
const work = mkdtempSync(join(tmpdir(), 'usam-security-'));
afterAll(() => rmSync(work, { recursive: true, force: true }));

/** The process and its descendants, from /proc. */
function tree(root: number): number[] {
  const parent = new Map<number, number>();
  for (const d of readdirSync('/proc')) {
    if (!/^\d+$/.test(d)) continue;
    try {
      const stat = readFileSync(`/proc/${d}/stat`, 'utf8');
      parent.set(Number(d), Number(stat.slice(stat.lastIndexOf(')') + 2).split(' ')[1]));
    } catch {
      /* gone */
    }
  }
  const out = [root];
  for (let i = 0; i < out.length; i++) for (const [pid, ppid] of parent) if (ppid === out[i]) out.push(pid);
  return out;
}

/** Listening TCP sockets (IPv4 and IPv6) of these processes: their local addresses. */
function listening(pids: number[]): string[] {
  const inodes = new Set<string>();
  for (const pid of pids) {
    try {
      for (const fd of readdirSync(`/proc/${pid}/fd`)) {
        try {
          const m = /^socket:\[(\d+)\]$/.exec(readlinkSync(`/proc/${pid}/fd/${fd}`));
          if (m) inodes.add(m[1]);
        } catch {
          /* closed meanwhile */
        }
      }
    } catch {
      /* exited */
    }
  }
  const out: string[] = [];
  for (const file of ['/proc/net/tcp', '/proc/net/tcp6']) {
    for (const line of readFileSync(file, 'utf8').split('\n').slice(1)) {
      const f = line.trim().split(/\s+/);
      if (f.length < 10 || f[3] !== '0A' || !inodes.has(f[9])) continue; // 0A: LISTEN
      out.push(f[1]);
    }
  }
  return out;
}

/** A /proc local address (hex ip:port) is on loopback: 127.0.0.0/8, ::1, or ::ffff:127.x. */
function loopback(address: string): boolean {
  const ip = address.split(':')[0];
  if (ip.length === 8) return ip.endsWith('7F'); // little-endian IPv4: 127 is the last byte
  if (ip === '00000000000000000000000001000000') return true; // ::1
  return /^0000000000000000FFFF0000[0-9A-F]{6}7F$/.test(ip); // ::ffff:127.x.y.z
}

/** Polls the listening sockets of the run started by `start` until it exits; returns them and its exit code. */
async function watch(child: ReturnType<typeof spawn>): Promise<{ sockets: string[]; processes: number; code: number | null; stderr: string }> {
  const sockets = new Set<string>();
  let processes = 0;
  let stderr = '';
  child.stderr?.on('data', (d: Buffer) => (stderr += d.toString()));
  const done = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  let finished = false;
  void done.then(() => (finished = true));
  while (!finished) {
    const pids = tree(child.pid!);
    processes = Math.max(processes, pids.length);
    for (const s of listening(pids)) sockets.add(s);
    await new Promise((r) => setTimeout(r, 50));
  }
  return { sockets: [...sockets], processes, code: await done, stderr };
}

/** A free TCP port in 20000–29999 (outside Linux's ephemeral range). */
async function fixedPort(): Promise<number> {
  for (let i = 0; i < 50; i++) {
    const port = 20000 + Math.floor(Math.random() * 10000);
    const free = await new Promise<boolean>((resolve) => {
      const s = createServer();
      s.once('error', () => resolve(false));
      s.listen(port, () => s.close(() => resolve(true)));
    });
    if (free) return port;
  }
  throw new Error('no free port in 20000–29999');
}

/** Resolves once something accepts connections on 127.0.0.1:port (within 60 s). */
async function listeningOn(port: number): Promise<void> {
  for (let i = 0; i < 600; i++) {
    const ok = await new Promise<boolean>((resolve) => {
      const c = connect(port, '127.0.0.1');
      c.once('connect', () => {
        c.destroy();
        resolve(true);
      });
      c.once('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 100));
  }
  throw new Error(`nothing listens on 127.0.0.1:${port}`);
}

function rank(env: Record<string, string>, scenario = 'collectives'): Promise<{ error?: string; ms: number }> {
  const t0 = Date.now();
  return new Promise((resolve) =>
    execFile(process.execPath, ['--import', tsx, worker, scenario], { env: { ...process.env, USAM_TEST_TIMEOUT_MS: '8000', ...env }, timeout: 60_000 }, (err, stdout) => {
      const line = stdout.trim().split('\n').at(-1);
      resolve({ ...(line ? (JSON.parse(line) as { error?: string }) : { error: `no output: ${err?.message}` }), ms: Date.now() - t0 });
    }),
  );
}

describe.skipIf(!hasGloo)('data-parallel runs open no door', () => {
  it('a local 2-rank run listens on loopback only; a TCPStore group, for contrast, on every interface', async () => {
    const local = await watch(spawn(process.execPath, [usam, 'train', '--nproc', '2', '--dataset', 'synthetic', '--epochs', '6', '--quiet', '--out', join(work, 'local')], { stdio: ['ignore', 'ignore', 'pipe'] }));
    expect(local.code, local.stderr).toBe(0);
    expect(local.processes).toBeGreaterThanOrEqual(3); // the launcher and its two ranks were watched
    expect(local.sockets.filter((s) => !loopback(s))).toEqual([]);
    // the check sees an open door: rank 0 of a TCPStore group listens on 0.0.0.0 or ::
    const port = await freePort();
    const base = { WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port) };
    const zero = spawn(process.execPath, ['--import', tsx, worker, 'collectives'], { env: { ...process.env, ...base, RANK: '0' }, stdio: ['ignore', 'ignore', 'pipe'] });
    const watched = watch(zero);
    const one = await rank({ ...base, RANK: '1' });
    const tcp = await watched;
    expect(one.error).toBeUndefined();
    expect(tcp.sockets.some((s) => !loopback(s))).toBe(true);
  }, 120_000);

  it('a rank with another run token refuses itself at once, naming the token; rank 0 stops within its timeout, pointing at it', async () => {
    const store = join(mkdtempSync(join(work, 'store-')), 'store');
    const base = { WORLD_SIZE: '2', USAM_STORE_FILE: store, USAM_GLOO_HOST: '127.0.0.1' };
    // and, at the same time (each rank 0 waits out its timeout), a config of another run, named as such
    const store2 = join(mkdtempSync(join(work, 'store-')), 'store');
    const [a, b, , c] = await Promise.all([
      rank({ ...base, RANK: '0', USAM_RUN_TOKEN: 'aaaa' }),
      rank({ ...base, RANK: '1', USAM_RUN_TOKEN: 'bbbb' }),
      rank({ ...base, USAM_STORE_FILE: store2, RANK: '0', USAM_RUN_TOKEN: 't', USAM_TEST_FINGERPRINT: 'config-a' }),
      rank({ ...base, USAM_STORE_FILE: store2, RANK: '1', USAM_RUN_TOKEN: 't', USAM_TEST_FINGERPRINT: 'config-b' }),
    ]);
    expect(b.error).toMatch(/rank 1 and rank 0 belong to different runs: the run token differs\. .*USAM_RUN_TOKEN.*refused before any tensor was exchanged/);
    expect(b.ms).toBeLessThan(20_000);
    expect(a.error).toMatch(/rank 0 did not hear from rank 1 within 8000 ms .*another run .*stops at once/);
    expect(c.error).toMatch(/belong to different runs: the config differs/);
  }, 60_000);

  it('a stranger with the right address but another token is refused; the run completes or stops with that error, never hangs', async () => {
    // a port below the ephemeral range: a client retrying an ephemeral port before anyone listens can connect to itself
    const port = await fixedPort();
    const base = { WORLD_SIZE: '2', MASTER_ADDR: '127.0.0.1', MASTER_PORT: String(port), USAM_GLOO_HOST: '127.0.0.1' };
    // the run meets and stays 10 s; the stranger comes once rank 0's store listens (refused 1.4 s after it starts, measured on 2 cores)
    const run = Promise.all([rank({ ...base, RANK: '0', USAM_RUN_TOKEN: 'ours', USAM_TEST_HOLD_MS: '10000' }, 'hold'), rank({ ...base, RANK: '1', USAM_RUN_TOKEN: 'ours', USAM_TEST_HOLD_MS: '10000' }, 'hold')]);
    await listeningOn(port);
    const stranger = await rank({ ...base, RANK: '1', USAM_RUN_TOKEN: 'theirs' });
    const [zero, one] = await run;
    expect(stranger.error).toMatch(/rank 1 and rank 0 belong to different runs: the run token differs/);
    // it wrote nothing the run reads: the run completes
    expect(zero.error).toBeUndefined();
    expect(one.error).toBeUndefined();
  }, 90_000);

  it('two local runs side by side do not interfere: both finish with the numbers one of them gets alone', async () => {
    const run = (out: string) =>
      new Promise<number | null>((resolve) =>
        spawn(process.execPath, [usam, 'train', '--nproc', '2', '--dataset', 'synthetic', '--epochs', '2', '--quiet', '--out', out], { stdio: 'ignore' }).on('exit', resolve),
      );
    const codes = await Promise.all([run(join(work, 'a')), run(join(work, 'b'))]);
    expect(codes).toEqual([0, 0]);
    const metrics = (d: string) => readFileSync(join(d, 'metrics.jsonl'), 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l).trainLoss);
    expect(metrics(join(work, 'a'))).toEqual(metrics(join(work, 'b')));
    // what a run writes is no wider than the umask allows; the store folder is the user's alone
    const umask = process.umask();
    for (const f of ['checkpoint.safetensors', 'metrics.jsonl', 'config.json']) expect(statSync(join(work, 'a', f)).mode & umask, f).toBe(0);
    const r = localRendezvous();
    expect(statSync(dirname(r.env.USAM_STORE_FILE)).mode & 0o777).toBe(0o700);
    r.cleanup();
    expect(existsSync(dirname(r.env.USAM_STORE_FILE))).toBe(false);
  }, 120_000);
});
