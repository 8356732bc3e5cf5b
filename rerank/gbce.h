// Generalised binary cross-entropy (gBCE; Petrov & Macdonald, RecSys 2023,
// used for shallow cross-encoders by Petrov, MacAvaney & Macdonald, ECIR
// 2024) over one group of scores: a positive s⁺ and n sampled negatives sᵢ.
//
//   L = −[β·log σ(s⁺) + Σᵢ log(1 − σ(sᵢ))] / (n + 1)
//   β = α·(t·(1 − 1/α) + 1/α) = t·(α − 1) + 1,   α = n / candidate pool
//
// Sampling n of a pool of P negatives makes plain BCE over-confident: the
// positive is compared with a few easy negatives only. gBCE raises σ(s⁺) to
// the power β ≤ 1 to correct for it; t = 1 is the full correction (β = α),
// t = 0 is plain BCE (β = 1). The paper uses t = 0.75; 128 negatives of a
// 1000-candidate pool give β = 0.75·(0.128 − 1) + 1 = 0.346.
//
// Stable for any score: log σ(x) = −softplus(−x), log(1 − σ(x)) =
// −softplus(x), softplus(x) = max(x, 0) + log1p(exp(−|x|)).
#ifndef PHREX_RERANK_GBCE_H
#define PHREX_RERANK_GBCE_H

#define PHREX_GBCE_DEFAULT_T 0.75

// β for n negatives sampled from a pool of `pool` candidates (1 <= n <= pool)
// and calibration t in [0, 1]. Returns NaN on arguments out of range.
double phrex_gbce_beta(int n, int pool, double t);

// The loss of one group. scores: (1 + n), scores[0] the positive, the n
// negatives after it; n >= 0. dscores (may be NULL): (1 + n) gets dL/dscores.
// Returns L (NaN if a score is NaN).
float phrex_gbce_loss(const float *scores, int n, float beta, float *dscores);

// The score that minimises the loss when every candidate gets the same one:
// σ(s) = β/(β + n), s = log(β/n) (−3.25 for β 0.31, n 8). A model that
// predicts only the prior sits here; a fresh head should start here too.
double phrex_gbce_prior_score(double beta, int n);

// softplus(x) = log(1 + eˣ), computed without overflow (exposed for tests).
double phrex_gbce_softplus(double x);

#endif
