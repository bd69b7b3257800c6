import vader from "vader-sentiment";
import type { LoadedModel, ModelDescriptor, PredictItem } from "../types.js";

/**
 * VADER (Hutto & Gilbert, 2014): a lexicon and rule-based sentiment model validated on social
 * media, reviews and news text. Labels follow the authors' thresholds on the compound score.
 */
export function sentimentModel(descriptor: ModelDescriptor): LoadedModel {
  return {
    descriptor,
    async predictBatch(items: readonly PredictItem[]) {
      return items.map(({ input }) => {
        const { text } = input as { text: string };
        const s = vader.SentimentIntensityAnalyzer.polarity_scores(text);
        const label = s.compound >= 0.05 ? "positive" : s.compound <= -0.05 ? "negative" : "neutral";
        return {
          label,
          compound: s.compound,
          scores: { negative: s.neg, neutral: s.neu, positive: s.pos },
        };
      });
    },
    async close() {},
  };
}
