// Process groups for data-parallel training, on LibTorch's c10d: a TCPStore
// rendezvous (torchrun's environment variables or explicit options) and Gloo
// collectives on flat CPU tensors. Collectives block until every rank has
// joined them, and fail with an error (never hang) when a peer dies or does
// not come within the timeout.
import { createServer } from 'node:net';
import type { DType, NativeProcessGroup } from './native/binding.js';
import { native } from './native/load.js';
import { ops } from './ops.js';
import { persistent } from './scope.js';
import type { Tensor } from './tensor.js';

export interface ProcessGroupOptions {
  rank: number;
  worldSize: number;
  /** where rank 0's store listens (MASTER_ADDR), default 127.0.0.1 */
  masterAddr?: string;
  /** its TCP port (MASTER_PORT), default 29500 */
  masterPort?: number;
  /** the rendezvous and every collective fail after this long, default 300 000 ms */
  timeoutMs?: number;
  /** torchrun's agent store (TORCHELASTIC_USE_AGENT_STORE): every rank is a client, keys under /worker/attempt_N */
  agentStore?: { restartCount: number };
  /** 'gloo' for CPU tensors (default), 'nccl' for CUDA tensors (CUDA builds with NCCL) */
  backend?: 'gloo' | 'nccl';
}

export const DEFAULT_PROCESS_GROUP_TIMEOUT_MS = 300_000;

/** A free TCP port on loopback, for a store on this machine (usam train --nproc, tests, benchmarks). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address() as { port: number };
      s.close(() => resolve(port));
    });
  });
}

const positiveInt = (v: unknown) => typeof v === 'number' && Number.isInteger(v) && v > 0;

export class ProcessGroup {
  private group: NativeProcessGroup | undefined;

  /** Meets the other ranks; returns when all `worldSize` have joined. */
  constructor(o: ProcessGroupOptions) {
    if (!positiveInt(o.worldSize)) throw new Error(`process group: worldSize must be a positive integer, got ${o.worldSize}`);
    if (!(Number.isInteger(o.rank) && o.rank >= 0 && o.rank < o.worldSize))
      throw new Error(`process group: rank must be an integer in 0 .. ${o.worldSize - 1} (worldSize ${o.worldSize}), got ${o.rank}`);
    const port = o.masterPort ?? 29500;
    if (!(positiveInt(port) && port <= 65535)) throw new Error(`process group: masterPort must be a TCP port (1 .. 65535), got ${port}`);
    const timeoutMs = o.timeoutMs ?? DEFAULT_PROCESS_GROUP_TIMEOUT_MS;
    if (!positiveInt(timeoutMs)) throw new Error(`process group: timeoutMs must be a positive integer, got ${timeoutMs}`);
    if (native().versions().distributed === '')
      throw new Error(
        'this build of universal-sam has no c10d Gloo backend (compiled without Gloo headers): install libgloo-dev (apt-get install libgloo-dev) and rebuild with `npm run build:native`',
      );
    this.group = new (native().ProcessGroup)({
      rank: o.rank,
      worldSize: o.worldSize,
      host: o.masterAddr ?? '127.0.0.1',
      port,
      timeoutMs,
      backend: o.backend ?? 'gloo',
      ...(o.agentStore ? { server: false, prefix: `/worker/attempt_${o.agentStore.restartCount}` } : {}),
    });
  }

  private live(what: string): NativeProcessGroup {
    if (!this.group) throw new Error(`process group: ${what} after dispose()`);
    return this.group;
  }
  get rank(): number {
    return this.live('rank').rank;
  }
  get worldSize(): number {
    return this.live('worldSize').worldSize;
  }
  get backend(): string {
    return this.live('backend').backend;
  }
  /** In place: every rank ends with the sum (mean, max, min) of all ranks' values. */
  allreduce(t: Tensor, op: 'sum' | 'avg' | 'max' | 'min' = 'sum'): void {
    this.live('allreduce()').allreduce(t, op);
  }
  /** In place: every rank ends with root's values. */
  broadcast(t: Tensor, root = 0): void {
    this.live('broadcast()').broadcast(t, root);
  }
  barrier(): void {
    this.live('barrier()').barrier();
  }
  dispose(): void {
    this.group?.dispose();
    this.group = undefined;
  }
  [Symbol.dispose](): void {
    this.dispose();
  }
}

/**
 * The process group torchrun (or a launcher setting the same variables)
 * describes: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT, and
 * TORCHELASTIC_USE_AGENT_STORE / TORCHELASTIC_RESTART_COUNT.
 */
export function processGroupFromEnv(env: NodeJS.ProcessEnv = process.env, o: { timeoutMs?: number; backend?: 'gloo' | 'nccl' } = {}): ProcessGroup {
  const need = (name: string) => {
    const v = env[name];
    if (v === undefined || v === '') throw new Error(`process group from the environment: ${name} is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)`);
    return v;
  };
  const int = (name: string) => {
    const v = Number(need(name));
    if (!Number.isInteger(v) || v < 0) throw new Error(`process group from the environment: ${name} must be a non-negative integer, got '${env[name]}'`);
    return v;
  };
  const agent = env.TORCHELASTIC_USE_AGENT_STORE === 'True' || env.TORCHELASTIC_USE_AGENT_STORE === 'true';
  return new ProcessGroup({
    rank: int('RANK'),
    worldSize: int('WORLD_SIZE'),
    masterAddr: need('MASTER_ADDR'),
    masterPort: int('MASTER_PORT'),
    timeoutMs: o.timeoutMs,
    backend: o.backend,
    ...(agent ? { agentStore: { restartCount: env.TORCHELASTIC_RESTART_COUNT ? int('TORCHELASTIC_RESTART_COUNT') : 0 } } : {}),
  });
}

/**
 * Sums a flat result (a gradient, an HVP, a block of them) and a few scalars
 * over the ranks in one collective: they travel in one buffer, kept between
 * calls. The scalars go in the tensor's dtype.
 */
export class Reducer {
  private wire?: Tensor;
  constructor(readonly group: ProcessGroup) {}

  /** out ← Σ_ranks out, in place; returns Σ_ranks of each scalar. */
  sum(out: Tensor, scalars: number[]): number[] {
    const n = out.numel;
    if (this.wire?.numel !== n + scalars.length || this.wire.dtype !== out.dtype) {
      this.wire?.dispose();
      this.wire = persistent(() => native().Tensor.zeros([n + scalars.length], out.dtype as DType, out.device));
    }
    const body = this.wire.narrow(0, n), tail = this.wire.narrow(n, scalars.length), flat = out.view([n]);
    try {
      ops.copy(body, flat);
      tail.copyFrom(Float64Array.from(scalars));
      this.group.allreduce(this.wire, 'sum');
      ops.copy(flat, body);
      return Array.from(tail.toArray() as Float32Array | Float64Array);
    } finally {
      for (const t of [body, tail, flat]) t.dispose();
    }
  }

  dispose(): void {
    this.wire?.dispose();
    this.wire = undefined;
  }
}
