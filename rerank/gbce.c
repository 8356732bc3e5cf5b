#include "rerank/gbce.h"

#include <math.h>

double phrex_gbce_softplus(double x) { return (x > 0 ? x : 0) + log1p(exp(-fabs(x))); }

// σ(x) without overflow: exp of a non-positive number only.
static double sigmoid(double x) {
    if (x >= 0) return 1.0 / (1.0 + exp(-x));
    double e = exp(x);
    return e / (1.0 + e);
}

double phrex_gbce_beta(int n, int pool, double t) {
    if (n < 1 || pool < n || !(t >= 0 && t <= 1)) return NAN;
    double alpha = (double)n / (double)pool;
    return alpha * (t * (1.0 - 1.0 / alpha) + 1.0 / alpha);
}

// d/ds [β·softplus(−s) + n·softplus(s)] = −β(1 − σ(s)) + n·σ(s) = 0.
double phrex_gbce_prior_score(double beta, int n) {
    if (!(beta > 0) || n < 1) return NAN;
    return log(beta / (double)n);
}

// L = [β·softplus(−s⁺) + Σ softplus(sᵢ)] / (n + 1), summed in double.
//   dL/ds⁺ = −β·σ(−s⁺) / (n + 1),   dL/dsᵢ = σ(sᵢ) / (n + 1)
float phrex_gbce_loss(const float *scores, int n, float beta, float *dscores) {
    double inv = 1.0 / (double)(n + 1), sum = beta * phrex_gbce_softplus(-(double)scores[0]);
    if (dscores) dscores[0] = (float)(-beta * sigmoid(-(double)scores[0]) * inv);
    for (int i = 1; i <= n; i++) {
        sum += phrex_gbce_softplus(scores[i]);
        if (dscores) dscores[i] = (float)(sigmoid(scores[i]) * inv);
    }
    return (float)(sum * inv);
}
