// Signals during native passes must not crash the process. Debian's
// LibTorch 1.13 build calls oneDNN 2.6's sgemm directly, whose JIT kernels
// run with rsp pointing into the heap (oneDNN issue #4845): before the fix
// in native/tangent.cc a stream of handled signals aborted a loop of MLP
// passes within about 3,500 signals, and `node --cpu-prof` at once. The
// child handles SIGHUP; the parent sends them as fast as it can for two
// seconds, at one and at two threads; the child must finish and report.
// Builds that do not link oneDNN (2.x) call it too when USAM_DNNL_SGEMM=1
// and the system's libdnnl.so.2 loads: that case runs as well where it can.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { existsSync } from 'node:fs';
import { native } from '../../lib/native/load.js';
import { repoRoot } from '../helpers.js';

async function storm(
  threads: number,
  ms: number,
  env: NodeJS.ProcessEnv = process.env,
): Promise<{ code: number | null; signal: string | null; sent: number; report?: { passes: number; handled: number; sgemm: string } }> {
  const child = spawn(process.execPath, ['--import', 'tsx', join(repoRoot, 'test/fixtures/signal-storm.ts'), String(threads)], { cwd: repoRoot, stdio: ['pipe', 'pipe', 'inherit'], env });
  const exited = new Promise<[number | null, string | null]>((resolve) => child.on('exit', (c, s) => resolve([c, s])));
  let out = '';
  await new Promise<void>((resolve, reject) => {
    child.stdout.on('data', (d: Buffer) => {
      out += d.toString();
      if (out.includes('ready\n')) resolve();
    });
    child.on('exit', () => reject(new Error(`the child exited before it was ready: ${out}`)));
  });
  let sent = 0;
  const end = Date.now() + ms;
  while (Date.now() < end && child.exitCode === null && child.signalCode === null) {
    try {
      process.kill(child.pid!, 'SIGHUP');
      sent++;
    } catch {
      break;
    }
    if (sent % 200 === 0) await new Promise((r) => setImmediate(r));
  }
  child.stdin.end();
  const [code, signal] = await exited;
  const last = out.trim().split('\n').at(-1)!;
  return { code, signal, sent, ...(last.startsWith('{') ? { report: JSON.parse(last) } : {}) };
}

describe('signals during native passes', () => {
  it.each([1, 2])('%i thread(s): thousands of handled signals during training passes and HVPs, and the process finishes', async (threads) => {
    const r = await storm(threads, 2000);
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(r.sent).toBeGreaterThan(1000);
    expect(r.report!.passes).toBeGreaterThan(10);
    expect(r.report!.handled).toBeGreaterThan(0);
    expect(r.report!.sgemm).toBe(native().versions().sgemm);
  }, 30_000);

  // a build that does not link oneDNN, with Debian's libdnnl2 installed
  const optIn = native().versions().sgemm === 'libtorch' && existsSync('/usr/lib/x86_64-linux-gnu/libdnnl.so.2');
  it.skipIf(!optIn)(`USAM_DNNL_SGEMM=1 on a build that does not link oneDNN: its sgemm runs, and so do the signals${optIn ? '' : ' (skipped: the build links oneDNN, or no libdnnl.so.2)'}`, async () => {
    const r = await storm(1, 2000, { ...process.env, USAM_DNNL_SGEMM: '1' });
    expect(r.signal).toBeNull();
    expect(r.code).toBe(0);
    expect(r.report!.sgemm).toBe('onednn');
    expect(r.report!.passes).toBeGreaterThan(10);
    expect(r.report!.handled).toBeGreaterThan(0);
  }, 30_000);
});
