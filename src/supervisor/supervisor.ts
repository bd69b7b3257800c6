import { fork, type ChildProcess } from "node:child_process";
import { isExitingMessage, isRecyclingMessage, isSignalsHeldMessage } from "../contracts/child-messages.js";
import type { Logger } from "../telemetry/logger.js";
import { terminateChild } from "./terminate.js";

export interface ChildSpec {
  readonly name: string;
  readonly args: readonly string[];
  /** Variables for this child only, on top of the supervisor's environment. */
  readonly env?: Readonly<Record<string, string>>;
  /** True for the IPC message by which the child says it is ready (the API: "listening"). */
  readonly readyWhen?: (message: unknown) => boolean;
  /** With readyWhen: stop restarting a child that exited this many times in a row before it was ready. */
  readonly giveUpAfter?: number;
}

/** How a child process ended. */
export interface ChildExit {
  readonly pid: number;
  /** Its exit status, or the one it announced before a SIGKILL; null when a signal ended it. */
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

interface Slot {
  readonly spec: ChildSpec;
  child: ChildProcess | undefined;
  failures: number;
  /** Whether the running child said it was ready, and launches in a row that never did. */
  ready: boolean;
  unready: number;
  /** Whether the running child said it holds stop signals (from its entry's first line). */
  signalsHeld: boolean;
  stopping: boolean;
  exited: Promise<void>;
  /** The status the running child said it exits with before a SIGKILL hid it. */
  announced: number | undefined;
  /** The jobs the running child said it took before recycling itself. */
  recycledAfter: number | undefined;
  /** A restart waiting out its backoff; it keeps the supervisor alive meanwhile. */
  restart: NodeJS.Timeout | undefined;
  /** When the running child was launched (epoch ms). */
  launchedAt: number;
}

export interface SupervisorOptions {
  /** The CLI entry to fork (`inferline <args>`). */
  readonly entry: string;
  readonly env: NodeJS.ProcessEnv;
  readonly restartBackoffMs: number;
  readonly stopTimeoutMs: number;
  /** A clean exit sooner than this after launch backs off like a crash (ms; default 5000). */
  readonly quickExitMs?: number;
  readonly logger: Logger;
  /** Messages children send over IPC (the API reports its URL). */
  readonly onMessage?: (name: string, message: unknown) => void;
  /** A child process ended, for whatever reason. */
  readonly onExit?: (name: string, exit: ChildExit) => void;
  /** A child reached its `giveUpAfter`: it is not restarted any more. */
  readonly onGiveUp?: (name: string) => void;
}

/**
 * Runs child processes and keeps them running: a child that exits 0 (a worker recycling
 * itself, also one that announced status 0 over IPC and then ended by SIGKILL) is replaced at
 * once; one that crashes, or exits 0 within seconds of its launch without having said it
 * recycled after some jobs, is restarted after an exponential backoff (reset once one has run
 * for a minute, or recycled after work). `stop()` sends SIGTERM to all and
 * waits. Idempotent.
 * Children run in process groups of their own, so only the supervisor decides when they stop.
 */
export class Supervisor {
  private readonly slots = new Map<string, Slot>();
  /** Every child still running, also those being drained after `remove()`. */
  private readonly live = new Set<ChildProcess>();
  private readonly unclean: string[] = [];

  /**
   * The children told to stop that did not end with status 0 (killed after the stop timeout,
   * or failing): "worker-2 (SIGKILL)".
   */
  get uncleanStops(): readonly string[] {
    return this.unclean;
  }
  private stopping: Promise<void> | undefined;

  constructor(private readonly opts: SupervisorOptions) {}

  add(spec: ChildSpec): void {
    const slot: Slot = {
      spec,
      child: undefined,
      failures: 0,
      ready: false,
      unready: 0,
      signalsHeld: false,
      stopping: false,
      exited: Promise.resolve(),
      announced: undefined,
      recycledAfter: undefined,
      restart: undefined,
      launchedAt: 0,
    };
    this.slots.set(spec.name, slot);
    this.launch(slot);
  }

  /** Stops one child gracefully (SIGTERM, then SIGKILL after the timeout) and forgets it. */
  async remove(name: string): Promise<void> {
    const slot = this.slots.get(name);
    if (!slot) return;
    this.slots.delete(name);
    await this.terminate(slot);
  }

  names(): string[] {
    return [...this.slots.keys()];
  }

  pid(name: string): number | undefined {
    return this.slots.get(name)?.child?.pid;
  }

  /** The running child of `name` (not one that exited, is waiting to restart or is stopping). */
  running(name: string): { pid: number; launchedAt: number } | undefined {
    const slot = this.slots.get(name);
    const child = slot?.child;
    if (!slot || slot.stopping || this.stopping || child?.pid === undefined) return undefined;
    if (child.exitCode !== null || child.signalCode !== null) return undefined;
    return { pid: child.pid, launchedAt: slot.launchedAt };
  }

  /**
   * Ends the child of `name` by SIGKILL if it is still process `pid` (a hung one that would not
   * answer SIGTERM); it is restarted after the backoff, as a crashed child is.
   */
  killChild(name: string, pid: number): void {
    const child = this.slots.get(name)?.child;
    if (child?.pid === pid && child.exitCode === null && child.signalCode === null) child.kill("SIGKILL");
  }

  private launch(slot: Slot): void {
    const { logger } = this.opts;
    const started = Date.now();
    // Each child leads a process group of its own: the terminal's Ctrl-C (SIGINT to the
    // foreground group) then reaches the supervisor alone, which stops the children in order.
    const child = fork(this.opts.entry, [...slot.spec.args], {
      env: { ...this.opts.env, ...slot.spec.env },
      stdio: "inherit",
      detached: true,
    });
    slot.child = child;
    slot.launchedAt = started;
    this.live.add(child);
    slot.ready = false;
    slot.signalsHeld = false;
    slot.announced = undefined;
    slot.recycledAfter = undefined;
    child.on("message", (m) => {
      if (isSignalsHeldMessage(m)) slot.signalsHeld = true;
      if (isExitingMessage(m)) slot.announced = m.code;
      if (isRecyclingMessage(m)) slot.recycledAfter = m.jobs;
      if (slot.spec.readyWhen?.(m)) {
        slot.ready = true;
        slot.unready = 0;
      }
      this.opts.onMessage?.(slot.spec.name, m);
    });
    slot.exited = new Promise((resolve) => {
      // 'close', not 'exit': it comes once the IPC channel is read to its end too, so a message
      // sent just before the exit has been seen.
      child.once("close", (exitCode, signal) => {
        this.live.delete(child);
        resolve();
        // A worker that recycles itself while holding a thread it cannot stop ends by SIGKILL,
        // having said first which status it means: that exit is treated as the one announced.
        const code = exitCode ?? (signal === "SIGKILL" ? (slot.announced ?? null) : null);
        if (child.pid !== undefined) this.opts.onExit?.(slot.spec.name, { pid: child.pid, code, signal });
        if (slot.stopping || this.stopping) {
          // The stop's SIGTERM ends a child by the default action only before its first line
          // has run (it holds signals from there on, and says so: cli/early-signals.ts), so
          // before it started anything: stopped as cleanly as one that finished its work.
          const unstarted = signal === "SIGTERM" && !slot.signalsHeld;
          const clean = code === 0 || unstarted;
          // Stopped by a signal or a failure, not by finishing its work: `start` says so.
          if (!clean) this.unclean.push(`${slot.spec.name} (${signal ?? code})`);
          logger[clean ? "info" : "warn"](
            {
              event: "child_stopped",
              child: slot.spec.name,
              code,
              signal,
              ...(unstarted && { before_start: true }),
            },
            unstarted
              ? `${slot.spec.name} stopped before it had started`
              : `${slot.spec.name} stopped (${signal ?? code})`,
          );
          return;
        }
        // A child that never gets ready (an API whose port is taken) would fail for ever.
        if (slot.spec.giveUpAfter !== undefined && !slot.ready && ++slot.unready >= slot.spec.giveUpAfter) {
          logger.error(
            { event: "child_gave_up", child: slot.spec.name, code, signal, exits: slot.unready },
            `${slot.spec.name} exited ${slot.unready} times in a row before it was ready; not restarting it`,
          );
          this.opts.onGiveUp?.(slot.spec.name);
          return;
        }
        const ran = Date.now() - started;
        const clean = code === 0;
        // A worker that recycled itself after real work is replaced at once, however soon: under
        // a backlog WORKER_MAX_JOBS comes within seconds, and backing off would leave no worker.
        const worked = clean && (slot.recycledAfter ?? 0) > 0;
        if (ran > 60_000 || worked) slot.failures = 0;
        // A clean exit right after launch that did no work would be restarted at once, over and
        // over: it backs off like a crash.
        const backoff = !clean || (!worked && ran < (this.opts.quickExitMs ?? 5000));
        const delay = backoff ? Math.min(this.opts.restartBackoffMs * 2 ** slot.failures, 30_000) : 0;
        if (backoff) slot.failures++;
        logger[clean ? "info" : "warn"](
          {
            event: "child_exited",
            child: slot.spec.name,
            code,
            signal,
            ran_ms: ran,
            recycled_after_jobs: slot.recycledAfter,
            restart_in_ms: delay,
          },
          `${slot.spec.name} exited (${signal ?? code}); restarting in ${delay} ms`,
        );
        // Not unref'd: with every child down at once (and no autoscaler timer), this timer is
        // all that keeps the supervisor from exiting before it restarts them.
        slot.restart = setTimeout(() => {
          slot.restart = undefined;
          if (!slot.stopping && !this.stopping && this.slots.get(slot.spec.name) === slot) this.launch(slot);
        }, delay);
      });
    });
  }

  private async terminate(slot: Slot): Promise<void> {
    slot.stopping = true;
    clearTimeout(slot.restart);
    const child = slot.child;
    if (!child) return;
    // Exited already: its channel's close is still waited for (bounded), as for any stop.
    await terminateChild(child, slot.exited, this.opts.stopTimeoutMs);
  }

  /**
   * Sends SIGTERM to every running child, including those draining, and returns at once: for a
   * second Ctrl-C, after which the supervisor exits without waiting. A child already stopping
   * takes it as its own second signal and exits at once; no child is restarted any more.
   */
  kill(): void {
    this.stopping ??= Promise.resolve();
    for (const slot of this.slots.values()) {
      slot.stopping = true;
      clearTimeout(slot.restart);
    }
    for (const child of this.live) {
      if (child.exitCode === null && child.signalCode === null) child.kill("SIGTERM");
    }
  }

  stop(): Promise<void> {
    this.stopping ??= Promise.all([...this.slots.values()].map((s) => this.terminate(s))).then(() => {});
    return this.stopping;
  }
}
