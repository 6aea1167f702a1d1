/*
 * askd-ref: the compiled row kernel of the chunked path (chunked_loss(..., kernel="compiled")).
 *
 * For each row of a chunk it computes what the eager "fused" kernel computes over a block of rows
 * (askd_ref/chunked.py): both log-softmaxes, the target token's log-probs, the divergence value and,
 * if asked, the logit gradient w·∂D/∂z into the student's buffer. The formulas are the same closed
 * forms (see _fused_kernel there); here every row is one pass for its log-sum-exps and one or two
 * passes for the divergence, with no temporaries, instead of a dozen vectorised torch passes.
 *
 * Built at first use by askd_ref/compiled.py with the system C compiler (-O3 -march=native); plain
 * C99 that GCC and Clang vectorise (the per-lane loops below), POSIX threads for the rows.
 *
 * Numerics (float32): exp and log(1 + u) are the cephes expf/logf polynomials (at most
 * 1.5 ulp each, measured by tests/test_compiled.py); exp has no upper clamp (valid up to 88; the
 * kernel's arguments are all ≤ 0), and underflows to 0 below −87.34 (the smallest normal float,
 * e^−87.34 ≈ 1.2e−38) where torch.exp returns subnormals. Log-probs are formed as (z − max) − log Σ exp(z − max), as
 * torch.log_softmax does. Row sums accumulate in 16 lanes, then add the lanes.
 * tests/test_compiled.py checks these functions against float64 and the kernel against the eager
 * kernels and autograd.
 */
#include <math.h>
#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define ASKD_ABI 1
#define LANES 16   /* accumulators per row sum: one AVX-512 vector, two AVX2 vectors */
#define PIECE 1024 /* elements of one piece of the log-sum-exp pass (4 KiB, held in L1) */
#define MAX_THREADS 256

static inline float bits_f(int32_t i) { float f; memcpy(&f, &i, 4); return f; }
static inline int32_t f_bits(float f) { int32_t i; memcpy(&i, &f, 4); return i; }

/* exp(x): n = round(x·log₂e) by adding and subtracting 1.5·2²³ (round to nearest even, as rintf;
   its bits give n without a conversion), r = x − n·ln 2 (two-part ln 2), the cephes expf
   polynomial, times 2ⁿ. 0 below −87.34 (2ⁿ would be subnormal); NaN stays NaN. No upper clamp:
   exact up to 88, meaningless above about 88.4 where 2ⁿ leaves the float range; the kernel's
   arguments are all ≤ 0 (log-probs, x − max, lo − hi). */
static inline float exp_f(float x) {
    const float lo = -87.33654475f, shift = 12582912.0f;
    const float xc = x < lo ? lo : x;
    const float nb = xc * 1.44269504088896341f + shift;
    const float n = nb - shift;
    float r = xc - n * 0.693359375f;
    r = r - n * -2.12194440e-4f;
    float p = 1.9875691500E-4f;
    p = p * r + 1.3981999507E-3f;
    p = p * r + 8.3334519073E-3f;
    p = p * r + 4.1665795894E-2f;
    p = p * r + 1.6666665459E-1f;
    p = p * r + 5.0000001201E-1f;
    p = p * r * r + r + 1.0f;
    const float y = p * bits_f((f_bits(nb) - f_bits(shift) + 127) << 23);
    return x < lo ? 0.0f : y;
}

/* log(1 + f) − f for f in [−0.293, 0.414]: the polynomial of cephes logf. */
static inline float log1p_poly(float f) {
    const float z = f * f;
    float y = 7.0376836292E-2f;
    y = y * f - 1.1514610310E-1f;
    y = y * f + 1.1676998740E-1f;
    y = y * f - 1.2420140846E-1f;
    y = y * f + 1.4249322787E-1f;
    y = y * f - 1.6668057665E-1f;
    y = y * f + 2.0000714765E-1f;
    y = y * f - 2.4999993993E-1f;
    y = y * f + 3.3333331174E-1f;
    return y * f * z - 0.5f * z;
}

/* log(1 + u) for u in [0, 1] without rounding 1 + u: f = u, or f = (u − 1)/2 and one ln 2 (both
   exact), so log(1 + u) = e·ln 2 + log(1 + f) with f in [−0.293, 0.414]. */
static inline float log1p_unit(float u) {
    const int big = u > 0.41421356237309503f;
    const float f = big ? (u - 1.0f) * 0.5f : u;
    const float e = big ? 1.0f : 0.0f;
    return f + log1p_poly(f) + e * -2.12194440e-4f + e * 0.693359375f;
}

/* logaddexp(x, c) = hi + log(1 + u), u = exp(lo − hi) in [0, 1]. Also *xhi = (x ≥ c), *u and
   *inv = 1/(1 + u): the ratios eˣ/(eˣ + eᶜ) and eᶜ/(eˣ + eᶜ) are inv and u·inv (which is which
   by *xhi), each without cancellation, and u is the ratio the kernels derive a probability from. */
static inline float logaddexp_u(float x, float c, int *xhi, float *u, float *inv) {
    *xhi = x >= c;
    const float hi = *xhi ? x : c, lo = *xhi ? c : x;
    *u = exp_f(lo - hi);
    *inv = 1.0f / (1.0f + *u);
    return hi + log1p_unit(*u);
}

/* logaddexp(x, c), with *r = eˣ/(eˣ + eᶜ) and *rc = 1 − *r = eᶜ/(eˣ + eᶜ). */
static inline float logaddexp_r(float x, float c, float *r, float *rc) {
    int xhi;
    float u, inv;
    const float y = logaddexp_u(x, c, &xhi, &u, &inv);
    *r = xhi ? inv : u * inv;
    *rc = xhi ? u * inv : inv;
    return y;
}

/* The divergence codes: askd_ref.divergences.Divergence. */
enum { SKL = 0, SRKL_FULL = 1, SRKL_STOP = 2, FKL = 3, RKL = 4, GJSD = 5 };

typedef struct {
    int64_t vocab, ld;
    float *s, *t;
    const int64_t *ids;
    int code;
    const float *a, *la, *l1a, *w;
    int want_grad;
    float *s_tok, *t_tok, *values;
    int64_t r0, r1;
} job_t;

/* max_v x_v and log Σ_v exp(x_v − max) in one pass over memory: each PIECE-element piece is read
   once for its max and again, from L1, for its exponentials (the sum is rescaled when the running
   max grows). The max loop prefetches the next piece: the hardware prefetchers alone left this
   pass waiting on memory. */
static void row_lse(const float *restrict x, int64_t n, float *max, float *log_sum) {
    float M = -INFINITY, S = 0.0f;
    for (int64_t i0 = 0; i0 < n; i0 += PIECE) {
        const int64_t m = n - i0 < PIECE ? n - i0 : PIECE;
        const float *restrict xs = x + i0;
        float mx[LANES];
        for (int k = 0; k < LANES; k++) mx[k] = -INFINITY;
        int64_t i = 0;
        for (; i + LANES <= m; i += LANES) {
            __builtin_prefetch(xs + i + PIECE, 0, 0); /* the next piece: one cache line per step */
            for (int k = 0; k < LANES; k++) mx[k] = mx[k] > xs[i + k] ? mx[k] : xs[i + k];
        }
        float cm = -INFINITY;
        for (int k = 0; k < LANES; k++) cm = cm > mx[k] ? cm : mx[k];
        for (; i < m; i++) cm = cm > xs[i] ? cm : xs[i];
        if (cm > M) {
            S = M == -INFINITY ? 0.0f : S * exp_f(M - cm);
            M = cm;
        }
        float acc[LANES];
        for (int k = 0; k < LANES; k++) acc[k] = 0.0f;
        for (i = 0; i + LANES <= m; i += LANES)
            for (int k = 0; k < LANES; k++) acc[k] += exp_f(xs[i + k] - M);
        float sum = 0.0f;
        for (int k = 0; k < LANES; k++) sum += acc[k];
        for (; i < m; i++) sum += exp_f(xs[i] - M);
        S += sum;
    }
    *max = M;
    *log_sum = logf(S); /* once per row: libm's */
}

/* A row loop in LANES independent lanes (what the compiler vectorises): the body sees the index v
   and the lane k and adds into acc[k] and acc2[k]; afterwards acc[0] and acc2[0] hold the row sums. */
#define ROWLOOP(...)                                                                  \
    do {                                                                              \
        for (int k = 0; k < LANES; k++) { acc[k] = 0.0f; acc2[k] = 0.0f; }            \
        int64_t i = 0;                                                                \
        for (; i + LANES <= V; i += LANES)                                            \
            for (int k = 0; k < LANES; k++) { const int64_t v = i + k; __VA_ARGS__ }  \
        for (int k = 1; k < LANES; k++) { acc[0] += acc[k]; acc2[0] += acc2[k]; }     \
        for (; i < V; i++) { const int64_t v = i; const int k = 0; __VA_ARGS__ }      \
    } while (0)

/* s_v ← w·(s_v·c − t_v): the closing pass of the divergences whose gradient needs a row sum c,
   with q already in s. */
static void grad_pass(float *restrict s, const float *restrict t, int64_t V, float c, float w) {
    for (int64_t v = 0; v < V; v++) s[v] = w * (s[v] * c - t[v]);
}

/* One exponential for two probabilities. With x = log(k·a/b) for probabilities a, b and a
   constant k, logaddexp(x, c) takes u = exp(lo − hi) ≤ 1 anyway; then the larger-weighted of a, b
   is exp of its log-prob and the other is that times u and a ratio of the constants: no second
   exponential, and no division by a possibly vanishing u. "Fast" rows use it; a parameter within
   2⁻²⁴ of 0 or 1 would make those ratios overflow, so such rows take both exponentials. */
#define FAST_PARAM(a) ((a) >= 0x1p-24f && (a) <= 1.0f - 0x1p-24f)

/* SKL_α: m = αp + (1−α)q, x = log((1−α)q/p), y = log(m/p) = logaddexp(x, log α);
   value −⟨p, y⟩, ∂/∂z = q·⟨p, r⟩ − p ⊙ r with r = (1−α)q/m. q goes to s, p·r to t. */
#define SKL_BODY(FAST)                                                                    \
    const float ls = (s[v] - ms) - lss, lt = (t[v] - mt) - lst;                           \
    int qbig;                                                                             \
    float u, inv;                                                                         \
    const float y = logaddexp_u(l1a + ls - lt, la, &qbig, &u, &inv);                      \
    const float rr = qbig ? inv : u * inv;                                                \
    const float e = FAST ? exp_f(qbig ? ls : lt) : 0.0f;                                  \
    const float p = FAST ? (qbig ? e * (k1 * u) : e) : exp_f(lt);                         \
    const float q = FAST ? (qbig ? e : e * (k2 * u)) : exp_f(ls);                         \
    acc[k] -= p * y;                                                                      \
    const float pr = p * rr;                                                              \
    acc2[k] += pr;                                                                        \
    t[v] = pr;                                                                            \
    s[v] = q;

/* SRKL_α: m = (1−α)p + αq, x = log((1−α)p/q), y = log(m/q) = logaddexp(x, log α);
   value −⟨q, y⟩, ∂/∂z = q ⊙ (c − g), g = y + αq/m (full) or y (stop). q goes to s, q·g to t. */
#define SRKL_BODY(FAST)                                                                   \
    const float ls = (s[v] - ms) - lss, lt = (t[v] - mt) - lst;                           \
    int pbig;                                                                             \
    float u, inv;                                                                         \
    const float y = logaddexp_u(l1a + lt - ls, la, &pbig, &u, &inv);                      \
    const float rc = pbig ? u * inv : inv; /* αq/m */                                     \
    const float e = exp_f(FAST && pbig ? lt : ls);                                        \
    const float q = FAST && pbig ? e * (k1 * u) : e;                                      \
    acc[k] -= q * y;                                                                      \
    const float qg = q * (full ? y + rc : y);                                             \
    acc2[k] += qg;                                                                        \
    t[v] = qg;                                                                            \
    s[v] = q;

/* JSD_β: M = βp + (1−β)q, z = log(βp/q), y = log(M/q) = logaddexp(z, log(1−β));
   value β⟨p, log(p/M)⟩ − (1−β)⟨q, y⟩, ∂/∂z = (1−β)·q ⊙ (⟨q, y⟩ − y). q goes to s, q·y to t. */
#define GJSD_BODY(FAST)                                                                   \
    const float ls = (s[v] - ms) - lss, lt = (t[v] - mt) - lst;                           \
    const float x = lt - ls;                                                              \
    int pbig;                                                                             \
    float u, inv;                                                                         \
    const float y = logaddexp_u(x + la, l1a, &pbig, &u, &inv);                            \
    const float e = FAST ? exp_f(pbig ? lt : ls) : 0.0f;                                  \
    const float p = FAST ? (pbig ? e : e * (k1 * u)) : exp_f(lt);                         \
    const float q = FAST ? (pbig ? e * (k2 * u) : e) : exp_f(ls);                         \
    acc[k] += p * (x - y);                                                                \
    const float qy = q * y;                                                               \
    acc2[k] += qy;                                                                        \
    t[v] = qy;                                                                            \
    s[v] = q;

/* One row: s, t hold the student's and teacher's logits; s ends as w·∂D/∂z if want_grad (else
   as q), t as scratch. */
static void one_row(const job_t *j, int64_t r) {
    const int64_t V = j->vocab;
    float *restrict s = j->s + r * j->ld;
    float *restrict t = j->t + r * j->ld;
    float ms, lss, mt, lst;
    row_lse(s, V, &ms, &lss);
    row_lse(t, V, &mt, &lst);
    const int64_t id = j->ids[r];
    j->s_tok[r] = (s[id] - ms) - lss;
    j->t_tok[r] = (t[id] - mt) - lst;
    const float a = j->a[r], la = j->la[r], l1a = j->l1a[r], w = j->w[r];
    const int g = j->want_grad, fast = FAST_PARAM(a);
    const float k1 = fast ? (1.0f - a) / a : 0.0f, k2 = fast ? a / (1.0f - a) : 0.0f;
    float acc[LANES], acc2[LANES], value = 0.0f;
    switch (j->code) {
    case SKL:
        if (fast) ROWLOOP(SKL_BODY(1));
        else ROWLOOP(SKL_BODY(0));
        value = acc[0];
        if (g) grad_pass(s, t, V, acc2[0], w);
        break;
    case SRKL_FULL:
    case SRKL_STOP: {
        const int full = j->code == SRKL_FULL;
        if (fast) ROWLOOP(SRKL_BODY(1));
        else ROWLOOP(SRKL_BODY(0));
        value = acc[0];
        if (g) grad_pass(s, t, V, full ? acc2[0] : -value, w);
        break;
    }
    case FKL: /* ⟨p, log p − log q⟩; ∂/∂z = q − p */
        ROWLOOP({
            const float ls = (s[v] - ms) - lss, lt = (t[v] - mt) - lst;
            const float p = exp_f(lt);
            acc[k] += p * (lt - ls);
            if (g) s[v] = w * (exp_f(ls) - p);
        });
        value = acc[0];
        break;
    case RKL: /* ⟨q, d⟩, d = log q − log p; ∂/∂z = q ⊙ (d − RKL) = q·(−RKL) − (−q d) */
        ROWLOOP({
            const float ls = (s[v] - ms) - lss, lt = (t[v] - mt) - lst;
            const float q = exp_f(ls);
            const float qd = q * (ls - lt);
            acc[k] += qd;
            t[v] = -qd;
            s[v] = q;
        });
        value = acc[0];
        if (g) grad_pass(s, t, V, -value, w);
        break;
    case GJSD:
        if (fast) ROWLOOP(GJSD_BODY(1));
        else ROWLOOP(GJSD_BODY(0));
        value = a * acc[0] - (1.0f - a) * acc2[0];
        if (g) grad_pass(s, t, V, acc2[0], (1.0f - a) * w);
        break;
    }
    j->values[r] = value;
}

static void *worker(void *arg) {
    const job_t *j = (const job_t *)arg;
    for (int64_t r = j->r0; r < j->r1; r++) one_row(j, r);
    return NULL;
}

int askd_abi_version(void) { return ASKD_ABI; }

/* Rows [0, rows) of one divergence, split into `threads` contiguous ranges (POSIX threads; the
   calling thread takes the first). s and t: row r at s + r·ld, `vocab` contiguous floats. a, la,
   l1a, w: per-row α (β), log α, log(1 − α), loss weight. Returns 0, or −1 for a bad argument. */
int askd_rows(int64_t rows, int64_t vocab, int64_t ld, float *s, float *t, const int64_t *ids, int code,
              const float *a, const float *la, const float *l1a, const float *w, int want_grad,
              float *s_tok, float *t_tok, float *values, int threads) {
    if (rows < 0 || vocab < 1 || ld < vocab || code < SKL || code > GJSD) return -1;
    for (int64_t r = 0; r < rows; r++)
        if (ids[r] < 0 || ids[r] >= vocab) return -1;
    if (rows == 0) return 0;
    if (threads < 1) threads = 1;
    if (threads > MAX_THREADS) threads = MAX_THREADS;
    if (threads > rows) threads = (int)rows;
    job_t jobs[MAX_THREADS];
    pthread_t tid[MAX_THREADS];
    int started[MAX_THREADS];
    for (int k = 0; k < threads; k++) {
        const job_t j = {vocab, ld, s, t, ids, code, a, la, l1a, w, want_grad, s_tok, t_tok, values,
                         rows * k / threads, rows * (k + 1) / threads};
        jobs[k] = j;
    }
    for (int k = 1; k < threads; k++) started[k] = pthread_create(&tid[k], NULL, worker, &jobs[k]) == 0;
    worker(&jobs[0]);
    for (int k = 1; k < threads; k++) {
        if (started[k]) pthread_join(tid[k], NULL);
        else worker(&jobs[k]); /* no thread to be had: run its rows here */
    }
    return 0;
}

/* Element-wise entry points of the building blocks, for tests/test_compiled.py. */
void askd_exp(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = exp_f(x[i]);
}
void askd_log1p_unit(int64_t n, const float *x, float *y) {
    for (int64_t i = 0; i < n; i++) y[i] = log1p_unit(x[i]);
}
void askd_logaddexp(int64_t n, const float *x, const float *c, float *y, float *r, float *rc) {
    for (int64_t i = 0; i < n; i++) y[i] = logaddexp_r(x[i], c[i], &r[i], &rc[i]);
}
void askd_lse(int64_t rows, int64_t vocab, const float *x, float *max, float *log_sum) {
    for (int64_t r = 0; r < rows; r++) row_lse(x + r * vocab, vocab, &max[r], &log_sum[r]);
}
