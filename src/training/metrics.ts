/** Held-out metrics, rounded so manifests and reports stay readable. */
export type Metrics = Record<string, number>;

const round = (x: number, digits = 4) => Math.round(x * 10 ** digits) / 10 ** digits;

export function classificationMetrics(
  probs: readonly ArrayLike<number>[],
  targets: readonly number[],
): Metrics {
  let correct = 0;
  let logLoss = 0;
  probs.forEach((p, i) => {
    let best = 0;
    for (let j = 1; j < p.length; j++) if (p[j]! > p[best]!) best = j;
    if (best === targets[i]) correct++;
    logLoss -= Math.log(Math.max(p[targets[i]!]!, 1e-12));
  });
  return {
    accuracy: round(correct / targets.length),
    log_loss: round(logLoss / targets.length),
    rows: targets.length,
  };
}

export function regressionMetrics(predicted: readonly number[], targets: readonly number[]): Metrics {
  const n = targets.length;
  const mean = targets.reduce((a, b) => a + b, 0) / n;
  let se = 0;
  let ae = 0;
  let tot = 0;
  predicted.forEach((p, i) => {
    const d = p - targets[i]!;
    se += d * d;
    ae += Math.abs(d);
    tot += (targets[i]! - mean) ** 2;
  });
  return { rmse: round(Math.sqrt(se / n)), mae: round(ae / n), r2: round(1 - se / tot), rows: n };
}
