// A benchmark peer: a persistent child process that answers one JSON line per
// command line on its standard input (the step and Hessian benchmarks).
import { type ChildProcessWithoutNullStreams, spawn } from 'node:child_process';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..');
const EXITED = '\u0000exited:';

export class Peer {
  private readonly lines: string[] = [];
  private waiting?: (line: string) => void;
  private readonly child: ChildProcessWithoutNullStreams;
  constructor(cmd: string, argv: string[], env: NodeJS.ProcessEnv) {
    this.child = spawn(cmd, argv, { cwd: root, env });
    // a peer that dies while asked fails the ask instead of leaving it waiting
    this.child.on('exit', (code) => this.waiting?.(`${EXITED}${code}`));
    this.child.stderr.on('data', (d) => process.stderr.write(d));
    createInterface({ input: this.child.stdout }).on('line', (l) => {
      if (this.waiting) {
        const w = this.waiting;
        this.waiting = undefined;
        w(l);
      } else this.lines.push(l);
    });
  }
  private next(): Promise<string> {
    const l = this.lines.shift();
    return l !== undefined ? Promise.resolve(l) : new Promise((r) => (this.waiting = r));
  }
  async ask<T>(cmd?: string): Promise<T> {
    if (cmd) this.child.stdin.write(cmd + '\n');
    const line = await this.next();
    if (line.startsWith(EXITED)) throw new Error(`benchmark peer ${this.child.spawnargs.join(' ')} exited (code ${line.slice(EXITED.length)})`);
    return JSON.parse(line) as T;
  }
  close(): void {
    this.child.stdin.end('quit\n');
  }
}
