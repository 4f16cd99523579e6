// Process groups for data-parallel training, on LibTorch's c10d: a rendezvous
// through a store file in a private folder (runs on one machine: no listening
// socket but Gloo's, on loopback) or a TCPStore (torchrun's environment
// variables or explicit options; c10d binds it to every interface), and Gloo
// collectives on flat CPU tensors. Every rank presents the run's fingerprint
// (run token, config, world size) at rendezvous; a process of another run is
// refused. Collectives block until every rank has joined them, and fail with
// an error (never hang) when a peer dies or does not come within the timeout.
import * as check from './arguments.js';
import { UsamError } from './errors.js';
import { createServer } from 'node:net';
import type { DType, NativeProcessGroup } from './native/binding.js';
import { native } from './native/load.js';
import { ops } from './tensor/ops.js';
import { persistent } from './tensor/scope.js';
import { type Tensor, tensorArg } from './tensor/tensor.js';

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
  /** meet through this file (a c10d FileStore; its folder should be the run's alone, mode 0700) instead of a TCPStore: no listening socket */
  storeFile?: string;
  /** the address Gloo's connections listen on (e.g. 127.0.0.1 for one machine); default: glooInterface's, else this machine's hostname's */
  glooHost?: string;
  /** the network interface Gloo listens on (PyTorch's GLOO_SOCKET_IFNAME) */
  glooInterface?: string;
  /** what every rank of the run shares (run token, config hash, ...; the world size always): a rank whose fields differ from rank 0's refuses itself, naming them, before it writes anything the run reads */
  fingerprint?: Record<string, string>;
}

/** "name=value;..." with the world size, for the native check (names and values may not hold ';' or '='). */
function fingerprintOf(fields: Record<string, string>, worldSize: number): string {
  const all: Record<string, string> = { ...fields, 'world size': String(worldSize) };
  for (const [k, v] of Object.entries(all))
    if (/[;=]/.test(k) || /[;=]/.test(v)) throw new UsamError(`process group: fingerprint field '${k}' may not contain ';' or '='`);
  return Object.keys(all)
    .sort()
    .map((k) => `${k}=${all[k]}`)
    .join(';');
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
    const fn = 'new ProcessGroup';
    check.object(fn, 'options', o, 'process group options { rank, worldSize, masterAddr?, masterPort?, storeFile?, ... }');
    if (!positiveInt(o.worldSize)) throw new check.ArgumentError(fn, 'options.worldSize', `must be a positive integer, got ${check.describeValue(o.worldSize)}`);
    if (!(Number.isInteger(o.rank) && o.rank >= 0 && o.rank < o.worldSize))
      throw new check.ArgumentError(fn, 'options.rank', `must be an integer in 0 .. ${o.worldSize - 1} (worldSize ${o.worldSize}), got ${check.describeValue(o.rank)}`);
    const port = o.masterPort ?? 29500;
    if (o.storeFile !== undefined && (typeof o.storeFile !== 'string' || o.storeFile === '')) throw new UsamError(`process group: storeFile must be a file path, got ${String(o.storeFile)}`);
    if (!(positiveInt(port) && port <= 65535)) throw new UsamError(`process group: masterPort must be a TCP port (1 .. 65535), got ${port}`);
    const timeoutMs = o.timeoutMs ?? DEFAULT_PROCESS_GROUP_TIMEOUT_MS;
    if (!positiveInt(timeoutMs)) throw new UsamError(`process group: timeoutMs must be a positive integer, got ${timeoutMs}`);
    if (native().versions().distributed === '')
      throw new UsamError(
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
      ...(o.storeFile ? { storeFile: o.storeFile } : {}),
      ...(o.glooHost ? { glooHost: o.glooHost } : {}),
      ...(o.glooInterface ? { glooInterface: o.glooInterface } : {}),
      fingerprint: fingerprintOf(o.fingerprint ?? {}, o.worldSize),
    });
  }

  private live(what: string): NativeProcessGroup {
    if (!this.group) throw new UsamError(`ProcessGroup.${what}: this process group was disposed; it cannot be used after dispose()`);
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
  /**
   * How allreduces of CPU tensors travel: 'shared memory' between ranks that
   * met through a store file (`usam train --nproc`: one machine), else 'gloo'
   * (with the reason in parentheses when a store-file group could not share
   * memory, e.g. USAM_SHARED_MEMORY=0 on a rank); 'nccl' for CUDA.
   */
  get transport(): string {
    return this.live('transport').transport;
  }
  /** In place: every rank ends with the sum (mean, max, min) of all ranks' values. */
  allreduce(t: Tensor, op: 'sum' | 'avg' | 'max' | 'min' = 'sum'): void {
    const g = this.live('allreduce');
    tensorArg('ProcessGroup.allreduce', 'tensor', t);
    check.oneOf('ProcessGroup.allreduce', 'op', op, ['sum', 'avg', 'max', 'min'] as const);
    g.allreduce(t, op);
  }
  /** In place: every rank ends with root's values. */
  broadcast(t: Tensor, root = 0): void {
    const g = this.live('broadcast');
    tensorArg('ProcessGroup.broadcast', 'tensor', t);
    check.number('ProcessGroup.broadcast', 'root', root, { integer: true, min: 0, max: g.worldSize - 1 });
    g.broadcast(t, root);
  }
  barrier(): void {
    this.live('barrier').barrier();
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
 * TORCHELASTIC_USE_AGENT_STORE / TORCHELASTIC_RESTART_COUNT; or, from
 * `usam train --nproc`, USAM_STORE_FILE (then no MASTER_* are needed). Gloo
 * listens on USAM_GLOO_HOST's address or GLOO_SOCKET_IFNAME's interface when
 * set; USAM_RUN_TOKEN joins the fingerprint.
 */
export function processGroupFromEnv(env: NodeJS.ProcessEnv = process.env, o: { timeoutMs?: number; backend?: 'gloo' | 'nccl'; fingerprint?: Record<string, string> } = {}): ProcessGroup {
  check.record('processGroupFromEnv', 'env', env);
  check.options('processGroupFromEnv', 'options', o);
  const need = (name: string) => {
    const v = env[name];
    if (v === undefined || v === '') throw new UsamError(`process group from the environment: ${name} is not set (torchrun sets RANK, WORLD_SIZE, MASTER_ADDR and MASTER_PORT)`);
    return v;
  };
  const int = (name: string) => {
    const v = Number(need(name));
    if (!Number.isInteger(v) || v < 0) throw new UsamError(`process group from the environment: ${name} must be a non-negative integer, got '${env[name]}'`);
    return v;
  };
  const agent = env.TORCHELASTIC_USE_AGENT_STORE === 'True' || env.TORCHELASTIC_USE_AGENT_STORE === 'true';
  const storeFile = env.USAM_STORE_FILE || undefined;
  return new ProcessGroup({
    rank: int('RANK'),
    worldSize: int('WORLD_SIZE'),
    ...(storeFile ? { storeFile } : { masterAddr: need('MASTER_ADDR'), masterPort: int('MASTER_PORT') }),
    timeoutMs: o.timeoutMs,
    backend: o.backend,
    ...(env.USAM_GLOO_HOST ? { glooHost: env.USAM_GLOO_HOST } : {}),
    ...(env.GLOO_SOCKET_IFNAME ? { glooInterface: env.GLOO_SOCKET_IFNAME } : {}),
    fingerprint: { ...o.fingerprint, ...(env.USAM_RUN_TOKEN ? { 'run token': env.USAM_RUN_TOKEN } : {}) },
    ...(agent && !storeFile ? { agentStore: { restartCount: env.TORCHELASTIC_RESTART_COUNT ? int('TORCHELASTIC_RESTART_COUNT') : 0 } } : {}),
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
