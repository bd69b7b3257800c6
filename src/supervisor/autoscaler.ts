import type { Logger } from "../telemetry/logger.js";

/** When and how far to scale. Thresholds apart (up > down) plus a sustain window = hysteresis. */
export interface ScalePolicy {
  readonly min: number;
  readonly max: number;
  /** How often to sample (ms). */
  readonly intervalMs: number;
  /**
   * Shortest span the drain rate is measured over (ms). The processed counter moves only when
   * worker heartbeats land, so a span shorter than the heartbeat interval can read no progress
   * at all while jobs complete.
   */
  readonly rateWindowMs: number;
  /** Scale up when queued jobs exceed this. */
  readonly upDepth: number;
  /** …or when draining the queue at the measured rate would take longer than this (s). */
  readonly upDrainSeconds: number;
  readonly upStep: number;
  /** Scale down once queued jobs stay under this for `downAfterMs`. */
  readonly downDepth: number;
  readonly downAfterMs: number;
  readonly downStep: number;
  /** No step within this long of the previous one (ms). */
  readonly cooldownMs: number;
}

/** One reading: queued jobs of every model, and jobs processed so far (a counter). */
export interface Sample {
  readonly at: number;
  readonly depth: number;
  readonly processed: number;
}

export interface ScaleState {
  /** The sample the drain rate is being measured from. */
  readonly previous: Sample | undefined;
  /** Jobs per second over the last full rate window (undefined: none measured yet). */
  readonly rate: number | undefined;
  /** Since when the queue has been under `downDepth` (undefined: it is not). */
  readonly shallowSince: number | undefined;
  readonly lastScaleAt: number | undefined;
}

export interface Decision {
  readonly target: number;
  readonly reason: string;
  /** Seconds to drain the queue at the measured rate (Infinity: no progress measured). */
  readonly drainSeconds: number | undefined;
  readonly state: ScaleState;
}

export const INITIAL_STATE: ScaleState = {
  previous: undefined,
  rate: undefined,
  shallowSince: undefined,
  lastScaleAt: undefined,
};

/** Pure: the worker count to run after `sample`, given `current`. */
export function decide(policy: ScalePolicy, state: ScaleState, sample: Sample, current: number): Decision {
  // The rate is measured across a full window; in between, the last one stands for it.
  let from = state.previous ?? sample;
  let rate = state.rate;
  if (sample.at - from.at >= policy.rateWindowMs && sample.at > from.at) {
    rate = Math.max(0, sample.processed - from.processed) / ((sample.at - from.at) / 1000);
    from = sample;
  }
  const drainSeconds =
    rate === undefined ? undefined : sample.depth === 0 ? 0 : rate > 0 ? sample.depth / rate : Infinity;
  const deep = sample.depth > policy.upDepth;
  // A deep queue is never shallow, whatever the thresholds say.
  const shallow = sample.depth < policy.downDepth && !deep;
  const shallowSince = shallow ? (state.shallowSince ?? sample.at) : undefined;
  const next: ScaleState = { previous: from, rate, shallowSince, lastScaleAt: state.lastScaleAt };
  const clamp = (n: number) => Math.min(policy.max, Math.max(policy.min, n));
  const hold = (reason: string, target = clamp(current)): Decision => ({
    target,
    reason,
    drainSeconds,
    state: next,
  });

  // Out of bounds (a restart or changed limits) is corrected at once, cooldown or not.
  if (current < policy.min || current > policy.max) return step(clamp(current), "out_of_bounds");
  if (state.lastScaleAt !== undefined && sample.at - state.lastScaleAt < policy.cooldownMs)
    return hold("cooldown");

  // A handful of queued jobs never counts as slow: the rate behind it is mostly noise.
  const slow =
    drainSeconds !== undefined &&
    drainSeconds > policy.upDrainSeconds &&
    sample.depth >= Math.max(1, policy.downDepth);
  if ((deep || slow) && current < policy.max) {
    return step(clamp(current + policy.upStep), deep ? "queue_deep" : "drain_slow");
  }
  if (shallowSince !== undefined && sample.at - shallowSince >= policy.downAfterMs && current > policy.min) {
    // Restart the shallow window: the next step down needs another full quiet period.
    const d = step(clamp(current - policy.downStep), "queue_shallow");
    return { ...d, state: { ...d.state, shallowSince: sample.at } };
  }
  return hold("steady");

  function step(target: number, reason: string): Decision {
    if (target === current) return hold(reason, target);
    return { target, reason, drainSeconds, state: { ...next, lastScaleAt: sample.at } };
  }
}

export interface AutoscalerDeps {
  readonly policy: ScalePolicy;
  readonly logger: Logger;
  /** Reads queue depth and the processed counter. */
  readonly sample: () => Promise<Sample>;
  /** Worker processes running now (draining ones excluded). */
  readonly current: () => number;
  /** Starts or drains processes until `target` run. */
  readonly scaleTo: (target: number) => Promise<void>;
}

/** Samples on an interval and scales the worker pool. `stop()` is idempotent. */
export class Autoscaler {
  private state: ScaleState = INITIAL_STATE;
  private timer: NodeJS.Timeout | undefined;
  private running: Promise<void> | undefined;
  private stopped = false;
  /** Since when samples fail (Redis away): said once, and once when they work again. */
  private failingSince: number | undefined;

  constructor(private readonly deps: AutoscalerDeps) {}

  start(): void {
    if (this.timer || this.stopped) return;
    this.timer = setInterval(() => {
      // A slow sample (Redis away) never stacks up ticks.
      this.running ??= this.tick().then(
        () => void (this.running = undefined),
        () => void (this.running = undefined),
      );
    }, this.deps.policy.intervalMs);
    this.timer.unref();
  }

  /** One sample-and-decide round (also called directly by tests). */
  async tick(): Promise<Decision | undefined> {
    const { policy, logger } = this.deps;
    let sample: Sample;
    try {
      sample = await this.deps.sample();
    } catch (err) {
      const first = this.failingSince === undefined;
      this.failingSince ??= Date.now();
      logger[first ? "warn" : "debug"](
        { event: "autoscale_sample_failed", err: (err as Error).message },
        "autoscaler: cannot read the queues; holding the worker count until it can",
      );
      return undefined;
    }
    if (this.failingSince !== undefined) {
      logger.info(
        { event: "autoscale_sample_restored", down_ms: Date.now() - this.failingSince },
        "autoscaler: reads the queues again",
      );
      this.failingSince = undefined;
    }
    if (this.stopped) return undefined;
    const current = this.deps.current();
    const d = decide(policy, this.state, sample, current);
    this.state = d.state;
    if (d.target !== current) {
      logger.info(
        {
          event: "autoscale",
          from: current,
          to: d.target,
          reason: d.reason,
          depth: sample.depth,
          drain_seconds: d.drainSeconds === Infinity ? null : d.drainSeconds,
        },
        `autoscaler: ${current} -> ${d.target} worker processes (${d.reason}, ${sample.depth} queued)`,
      );
      await this.deps.scaleTo(d.target);
    }
    return d;
  }

  async stop(): Promise<void> {
    this.stopped = true;
    if (this.timer) clearInterval(this.timer);
    this.timer = undefined;
    await this.running;
  }
}
