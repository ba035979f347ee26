// Fused non-causal BRL-Attention for the CPU: window, write hop and read hop of one
// (sequence, head) in one pass over its tokens. Built on first use by
// brlgraph/ops/brl/fused.py (torch.utils.cpp_extension); the reference is naive.py.
//
// Layout: q, k, v, dy [B, H, N, D] with the last axis contiguous (any strides otherwise);
// rqw, rkr [B, H, M, D] (stride 0 on B allowed) and du [B, H, M, D], last axes contiguous;
// lam [H]; kvalid [B, N] uint8 or empty.
// Scores are scale * q . k with scale = D^-1/2; temperatures are folded into rqw, rkr.
//
// Forward per (b, h):
//   write hop  u_c   = softmax_j(rqw_c . k_j) v          over valid keys        (pw)
//   window     yl_i  = softmax_j(q_i . k_j) v            over window and valid  (pl)
//   read hop   yg_i  = softmax_c(q_i . rkr_c) u                                 (pr)
//   y_i = (1 - lam) yl_i + lam yg_i, zero at padded queries.
// The probabilities are kept for the backward: per query its row over its tile's run of
// keys (2w + kTile keys, about 4w in block mode) and its m reservoir weights, per
// reservoir token its row over the n keys, so memory stays O(n (w + m)); they are stored
// in the tiles' layout, so the backward reads them in place. The backward of a softmax
// row needs only its probabilities: with e_j = g . v_j, g . y_row = sum_j p_j e_j.
//
// Speed: rows are processed in tiles of kTile queries (or reservoir tokens) that
// share one run of keys (the union of their windows). Three primitives do all the
// arithmetic, each with its sums in registers: tile_scores (a tile of rows against a
// run of keys, the keys transposed per (b, h) into a zero-padded buffer, so the
// products are vectorised over keys), tile_gather (weighted sums of rows, one per
// tile row) and tile_scatter (each key row receives the weighted sum of the tile's
// rows: one read-modify-write per key and tile). The head size D is a template
// parameter (8, 16, 32, 64); softmax rows run over whole vectors, the exponentials of
// float rows through a polynomial written with vector types.

#include <torch/extension.h>
#include <ATen/Parallel.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <vector>

namespace {

template <typename T>
constexpr T kNegInf = -std::numeric_limits<T>::infinity();

// rows per tile
constexpr int kTile = 4;

// Vectors as wide as the registers of the CPU the build targets (-march=native), through
// GCC/Clang vector extensions: 512 bits with AVX-512, else 256 with AVX, else 128.
// (512-bit vectors split by the compiler into AVX2 halves made this kernel slower than
// the sdpa path on an AVX2 CPU, an AMD EPYC: docs/attention.md.)
#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#elif defined(__AVX__)
constexpr int kVecBytes = 32;
#else
constexpr int kVecBytes = 16;
#endif
template <typename T>
struct Vec;
template <>
struct Vec<float> {
  typedef float type __attribute__((vector_size(kVecBytes)));
};
template <>
struct Vec<double> {
  typedef double type __attribute__((vector_size(kVecBytes)));
};
template <typename T>
using vec_t = typename Vec<T>::type;
template <typename T>
constexpr int64_t kLanes = kVecBytes / sizeof(T);

template <typename T>
inline vec_t<T> vload(const T* p) {
  vec_t<T> v;
  std::memcpy(&v, p, sizeof v);
  return v;
}

// keys a score block spans: four vectors
template <typename T>
constexpr int64_t kBlock = 4 * kLanes<T>;

// out[q * ldo + l] = scale * x[q] . Xt[:, l] for l < NV lanes-wide vectors
template <typename T, int D, int NV>
inline void score_block(T* __restrict out, int64_t ldo, const T* const* x,
                        const T* __restrict Xt, int64_t ldx, T scale) {
  constexpr int64_t L = kLanes<T>;
  vec_t<T> a[kTile][NV] = {};
  for (int d = 0; d < D; ++d) {
    vec_t<T> kv[NV];
    for (int v = 0; v < NV; ++v) kv[v] = vload(Xt + d * ldx + v * L);
    for (int q = 0; q < kTile; ++q) {
      const T xq = x[q][d];
      for (int v = 0; v < NV; ++v) a[q][v] += xq * kv[v];
    }
  }
  for (int q = 0; q < kTile; ++q)
    for (int v = 0; v < NV; ++v) {
      const vec_t<T> r = a[q][v] * scale;
      std::memcpy(out + q * ldo + v * L, &r, sizeof r);
    }
}

// Scores of the kTile rows x[q] against keys [0, n) of Xt (head-dimension major, row
// length ldx, readable and zero past n up to a whole vector): out[q * ldo + j], with
// ldo >= n rounded up to a whole vector.
template <typename T, int D>
inline void tile_scores(T* __restrict out, int64_t ldo, const T* const* x,
                        const T* __restrict Xt, int64_t ldx, int64_t n, T scale) {
  constexpr int64_t L = kLanes<T>;
  for (int64_t j0 = 0; j0 < n; j0 += kBlock<T>) {
    switch (std::min<int64_t>(4, (n - j0 + L - 1) / L)) {
      case 1: score_block<T, D, 1>(out + j0, ldo, x, Xt + j0, ldx, scale); break;
      case 2: score_block<T, D, 2>(out + j0, ldo, x, Xt + j0, ldx, scale); break;
      case 3: score_block<T, D, 3>(out + j0, ldo, x, Xt + j0, ldx, scale); break;
      default: score_block<T, D, 4>(out + j0, ldo, x, Xt + j0, ldx, scale);
    }
  }
}

// acc[q] += sum_{j < n} P[q * ldp + j] rows[j * stride]
template <typename T, int D>
inline void tile_gather(T (&acc)[kTile][D], const T* __restrict P, int64_t ldp,
                        const T* __restrict rows, int64_t stride, int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    const T* r = rows + j * stride;
    for (int q = 0; q < kTile; ++q) {
      const T c = P[q * ldp + j];
#pragma omp simd
      for (int d = 0; d < D; ++d) acc[q][d] += c * r[d];
    }
  }
}

// rows[j * stride] += sum_q C[q * ldc + j] x[q] for j < n
template <typename T, int D>
inline void tile_scatter(T* __restrict rows, int64_t stride, const T* __restrict C, int64_t ldc,
                         const T (&x)[kTile][D], int64_t n) {
  for (int64_t j = 0; j < n; ++j) {
    T t[D] = {};
    for (int q = 0; q < kTile; ++q) {
      const T c = C[q * ldc + j];
#pragma omp simd
      for (int d = 0; d < D; ++d) t[d] += c * x[q][d];
    }
    T* r = rows + j * stride;
#pragma omp simd
    for (int d = 0; d < D; ++d) r[d] += t[d];
  }
}

template <typename T, int D>
inline void load_rows(T (&x)[kTile][D], const T* const* rows) {
  for (int q = 0; q < kTile; ++q) std::copy(rows[q], rows[q] + D, x[q]);
}


// exp(x) of a vector of x <= 0 (x = score - row max): 2^t = 2^floor(t) p(t - floor(t)),
// p a degree-6 polynomial of 2^f on [0, 1) (relative error about 2e-7); x is clamped at -87
inline vec_t<float> vexp_neg(vec_t<float> x) {
  typedef int32_t vint __attribute__((vector_size(kVecBytes)));
  const vec_t<float> lo = vec_t<float>{} - 87.0f;
  x = x < lo ? lo : x;
  const vec_t<float> t = x * 1.44269504088896341f;
  vint i = __builtin_convertvector(t, vint);  // toward zero; floor for t < 0:
  i += (__builtin_convertvector(i, vec_t<float>) > t);  // a true lane is -1
  const vec_t<float> f = t - __builtin_convertvector(i, vec_t<float>);
  vec_t<float> p = f * 1.535336188319500e-4f + 1.339887440266574e-3f;
  p = p * f + 9.618437357674640e-3f;
  p = p * f + 5.550332471162809e-2f;
  p = p * f + 2.402264791363012e-1f;
  p = p * f + 6.931472028550421e-1f;
  p = p * f + 1.0f;
  const vint bits = (i + 127) << 23;
  vec_t<float> two;
  std::memcpy(&two, &bits, sizeof two);
  return p * two;
}

// Softmax in place of s[0, n), n a whole number of vectors, excluded entries -inf
// (they get 0). A row with nothing allowed becomes 0.
template <typename T>
inline void softmax(T* __restrict s, int64_t n) {
  T mx = kNegInf<T>;
#pragma omp simd reduction(max : mx)
  for (int64_t j = 0; j < n; ++j) mx = std::max(mx, s[j]);
  if (mx == kNegInf<T>) {
    std::fill(s, s + n, T(0));
    return;
  }
  T sum = 0;
  for (int64_t j = 0; j < n; ++j) {
    s[j] = s[j] == kNegInf<T> ? T(0) : std::exp(s[j] - mx);
    sum += s[j];
  }
  const T inv = T(1) / sum;
  for (int64_t j = 0; j < n; ++j) s[j] *= inv;
}

template <>
inline void softmax<float>(float* __restrict s, int64_t n) {
  constexpr int64_t L = kLanes<float>;
  vec_t<float> m = vload(s);
  for (int64_t j = L; j < n; j += L) {
    const vec_t<float> x = vload(s + j);
    m = x > m ? x : m;
  }
  float mx = m[0];
  for (int64_t l = 1; l < L; ++l) mx = std::max(mx, m[l]);
  if (mx == kNegInf<float>) {
    std::fill(s, s + n, 0.0f);
    return;
  }
  // vexp_neg clamps its argument, so excluded entries are zeroed explicitly
  const vec_t<float> zero = {}, ninf = zero + kNegInf<float>;
  vec_t<float> acc = zero;
  for (int64_t j = 0; j < n; j += L) {
    const vec_t<float> x = vload(s + j);
    vec_t<float> e = vexp_neg(x - mx);
    e = x == ninf ? zero : e;
    acc += e;
    std::memcpy(s + j, &e, sizeof e);
  }
  float sum = 0;
  for (int64_t l = 0; l < L; ++l) sum += acc[l];
  const float inv = 1.0f / sum;
  for (int64_t j = 0; j < n; j += L) {
    const vec_t<float> e = vload(s + j) * inv;
    std::memcpy(s + j, &e, sizeof e);
  }
}

inline int64_t round_up(int64_t n, int64_t k) { return (n + k - 1) / k * k; }

template <typename T>
inline T row_dot(const T* __restrict a, const T* __restrict b, int64_t n) {
  T s = 0;
#pragma omp simd reduction(+ : s)
  for (int64_t j = 0; j < n; ++j) s += a[j] * b[j];
  return s;
}

template <typename T>
struct View {  // [B, H, N, D] with the last axis contiguous; empty: no reservoir
  T* p = nullptr;
  int64_t sb = 0, sh = 0, sn = 0;
  explicit View(const at::Tensor& t) {
    if (t.dim() == 4 && t.numel()) {
      p = t.data_ptr<T>();
      sb = t.stride(0);
      sh = t.stride(1);
      sn = t.stride(2);
    }
  }
  inline T* at(int64_t b, int64_t h, int64_t i) const { return p + b * sb + h * sh + i * sn; }
  // rows [0, n) of (b, h) set to rows [0, n) of `from` (an empty view: to zero)
  template <int D>
  inline void init_rows(int64_t b, int64_t h, int64_t n, const View& from) const {
    for (int64_t i = 0; i < n; ++i) {
      T* r = at(b, h, i);
      if (from.p)
        std::copy(from.at(b, h, i), from.at(b, h, i) + D, r);
      else
        std::fill(r, r + D, T(0));
    }
  }
  // the kTile rows i0, i0 + 1, ... of (b, h); past the last of `count` rows, the last
  // again (its probabilities are zero there, so it adds nothing)
  inline void tile(const T* (&x)[kTile], int64_t b, int64_t h, int64_t i0,
                   int64_t count) const {
    for (int q = 0; q < kTile; ++q) x[q] = at(b, h, i0 + std::min<int64_t>(q, count - 1));
  }
};

// Transposed copy of rows [0, n) of (b, h): out[d * ld + j] = x[b, h, j, d]; the padding
// out[d * ld + j], n <= j < ld, stays as allocated (zero).
template <typename T, int D>
inline void transpose(T* __restrict out, const View<T>& x, int64_t b, int64_t h, int64_t n,
                      int64_t ld) {
  // blocks of 64 rows, head dimension outer: the rows stay in L1, the writes run along
  // the output rows
  const T* base = x.at(b, h, 0);
  for (int64_t j0 = 0; j0 < n; j0 += 64) {
    const int64_t j1 = std::min<int64_t>(n, j0 + 64);
    for (int d = 0; d < D; ++d) {
      T* o = out + d * ld;
      for (int64_t j = j0; j < j1; ++j) o[j] = base[j * x.sn + d];
    }
  }
}

struct Window {
  int64_t w;
  bool block;
  // the most keys the windows of a tile of queries span together
  int64_t run_width(int64_t n) const {
    int64_t most = 1;
    for (int64_t i0 = 0; i0 < n; i0 += kTile) {
      int64_t lo, hi, a, b;
      range(i0, n, lo, a);
      range(std::min(n, i0 + kTile) - 1, n, b, hi);
      most = std::max(most, hi - lo);
    }
    return most;
  }
  // the keys [lo, hi) in the window of query i of n
  void range(int64_t i, int64_t n, int64_t& lo, int64_t& hi) const {
    if (block) {
      const int64_t blk = i / w;
      lo = (blk - 1) * w;
      hi = (blk + 2) * w;
    } else {
      lo = i - w;
      hi = i + w + 1;
    }
    lo = std::max<int64_t>(lo, 0);
    hi = std::min(hi, n);
  }
};

struct Inputs {  // what the forward and the backward both read
  at::Tensor q, k, v, rqw, rkr, lam;
  const uint8_t* valid;
  Window win;
  int64_t B, H, N, M;
  bool res;
};

// One (b, h)'s buffers: keys (forward) or values (backward) and the reservoir keys or
// values, transposed and zero-padded, the key bias and a tile of scores.
template <typename T, int D>
struct Scratch {
  int64_t ldn, ldm;
  std::vector<T> xt, rt, bias, s;
  Scratch(int64_t N, int64_t M)
      : ldn(round_up(N, kLanes<T>) + kBlock<T>), ldm(round_up(M, kLanes<T>) + kBlock<T>),
        xt(D * ldn, T(0)), rt(D * ldm, T(0)), bias(ldn, T(0)), s(kTile * ldn) {}
};

// Shapes of the saved probabilities: per (b, h), the window rows of each tile over its
// run of keys (rows padded to a whole tile), the read rows and the write rows.
struct Saved {
  int64_t wt, npad, mpad;
  Saved(const Window& win, int64_t N, int64_t M)
      : wt(win.run_width(N)), npad(round_up(N, kTile)), mpad(round_up(M, kTile)) {}
};

// A live row becomes the softmax of its scores over [a, b), the key bias added (0 or
// -inf, may be null), with zeros elsewhere in [0, n); a row that is not live becomes 0.
// n is a whole number of vectors.
template <typename T>
inline void row_softmax(T* __restrict row, bool live, const T* __restrict bias, int64_t a,
                        int64_t b, int64_t n) {
  if (!live) {
    std::fill(row, row + n, T(0));
    return;
  }
#pragma omp simd
  for (int64_t j = 0; j < n; ++j)
    row[j] = (j >= a && j < b) ? row[j] + (bias ? bias[j] : T(0)) : kNegInf<T>;
  softmax(row, n);
}

template <typename T, int D>
void forward_kernel(const Inputs& in, const Saved& sv, const at::Tensor& y,
                    const at::Tensor& u, const at::Tensor& pl, const at::Tensor& pr,
                    const at::Tensor& pw) {
  const int64_t H = in.H, N = in.N, M = in.M, Wt = sv.wt;
  constexpr int64_t L = kLanes<T>;
  const T scale = T(1) / std::sqrt(T(D));
  const View<T> Q(in.q), K(in.k), V(in.v), RQ(in.rqw), RK(in.rkr), Y(y), U(u);
  const T* Lam = in.res ? in.lam.data_ptr<T>() : nullptr;
  T* PL = pl.data_ptr<T>();
  T* PR = pr.data_ptr<T>();
  T* PW = pw.data_ptr<T>();
  at::parallel_for(0, in.B * H, 1, [&](int64_t begin, int64_t end) {
    Scratch<T, D> w(N, M);
    const int64_t ld = w.ldn;
    T* S = w.s.data();
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const uint8_t* ok = in.valid ? in.valid + b * N : nullptr;
      if (ok) {
        for (int64_t j = 0; j < N; ++j) w.bias[j] = ok[j] ? T(0) : kNegInf<T>;
      }
      const T* kb = ok ? w.bias.data() : nullptr;
      transpose<T, D>(w.xt.data(), K, b, h, N, ld);
      // write hop, kTile reservoir tokens at a time: u_c = sum_j pw[c, j] v_j
      const int64_t nr = round_up(N, L);
      for (int64_t c0 = 0; c0 < sv.mpad; c0 += kTile) {
        const int64_t nc = std::min<int64_t>(kTile, M - c0);
        const T* x[kTile];
        RQ.tile(x, b, h, c0, nc);
        tile_scores<T, D>(S, ld, x, w.xt.data(), ld, N, scale);
        for (int q = 0; q < kTile; ++q) {
          T* row = S + q * ld;
          row_softmax(row, q < nc, kb, 0, N, nr);
          std::copy(row, row + N, PW + (bh * sv.mpad + c0 + q) * N);
        }
        T acc[kTile][D] = {};
        tile_gather<T, D>(acc, S, ld, V.at(b, h, 0), V.sn, N);
        for (int q = 0; q < nc; ++q) std::copy(acc[q], acc[q] + D, U.at(b, h, c0 + q));
      }
      const T la = in.res ? Lam[h] : T(0);
      if (in.res) transpose<T, D>(w.rt.data(), RK, b, h, M, w.ldm);
      // window and read hop, kTile queries at a time over the union of their windows
      for (int64_t i0 = 0; i0 < N; i0 += kTile) {
        const int64_t nq = std::min<int64_t>(kTile, N - i0);
        int64_t lo, hi, lo_q, hi_q;
        in.win.range(i0, N, lo, hi_q);
        in.win.range(i0 + nq - 1, N, lo_q, hi);
        const int64_t n = hi - lo, nn = round_up(n, L);
        const T* x[kTile];
        Q.tile(x, b, h, i0, nq);
        tile_scores<T, D>(S, ld, x, w.xt.data() + lo, ld, n, scale);
        bool live[kTile];
        for (int q = 0; q < kTile; ++q) {
          T* row = S + q * ld;
          live[q] = q < nq && !(ok && !ok[i0 + q]);
          in.win.range(std::min(i0 + q, N - 1), N, lo_q, hi_q);
          row_softmax(row, live[q], kb ? kb + lo : nullptr, lo_q - lo, hi_q - lo, nn);
          T* p = PL + (bh * sv.npad + i0 + q) * Wt;
          std::copy(row, row + n, p);
          std::fill(p + n, p + Wt, T(0));
        }
        T loc[kTile][D] = {};
        tile_gather<T, D>(loc, S, ld, V.at(b, h, lo), V.sn, n);
        if (in.res) {
          const int64_t mm = round_up(M, L);
          tile_scores<T, D>(S, ld, x, w.rt.data(), w.ldm, M, scale);
          for (int q = 0; q < kTile; ++q) {
            T* row = S + q * ld;
            row_softmax(row, live[q], static_cast<const T*>(nullptr), 0, M, mm);
            std::copy(row, row + M, PR + (bh * sv.npad + i0 + q) * M);
          }
          T glob[kTile][D] = {};
          tile_gather<T, D>(glob, S, ld, U.at(b, h, 0), U.sn, M);
          for (int q = 0; q < nq; ++q) {
            T* yi = Y.at(b, h, i0 + q);
#pragma omp simd
            for (int d = 0; d < D; ++d) yi[d] = (T(1) - la) * loc[q][d] + la * glob[q][d];
          }
        } else {
          for (int q = 0; q < nq; ++q) std::copy(loc[q], loc[q] + D, Y.at(b, h, i0 + q));
        }
      }
    }
  });
}

// E[q, j] <- f P[q, j] (E[q, j] - sum_l P[q, l] E[q, l]) for j < n: the softmax backward of
// each tile row, with E[q, j] = g_q . v_j on entry
template <typename T>
inline void softmax_backward(T* __restrict E, int64_t lde, const T* __restrict P, int64_t ldp,
                             int64_t n, T f, T (&dot)[kTile]) {
  for (int q = 0; q < kTile; ++q) {
    T* e = E + q * lde;
    const T* p = P + q * ldp;
    dot[q] = row_dot(p, e, n);
    const T c = dot[q];
#pragma omp simd
    for (int64_t j = 0; j < n; ++j) e[j] = f * p[j] * (e[j] - c);
  }
}

template <typename T, int D>
void backward_kernel(const Inputs& in, const Saved& sv, const at::Tensor& dy,
                     const at::Tensor& u, const at::Tensor& pl, const at::Tensor& pr,
                     const at::Tensor& pw, const at::Tensor& dq, const at::Tensor& dk,
                     const at::Tensor& dv, const at::Tensor& drqw, const at::Tensor& drkr,
                     const at::Tensor& dlam, const at::Tensor& du, const at::Tensor& du_in) {
  const int64_t H = in.H, N = in.N, M = in.M, Wt = sv.wt;
  const T scale = T(1) / std::sqrt(T(D));
  const View<T> Q(in.q), K(in.k), V(in.v), RQ(in.rqw), RK(in.rkr), G(dy), U(u), DQ(dq), DK(dk),
      DV(dv), DRQ(drqw), DRK(drkr), DU(du), DU_IN(du_in), NONE{at::Tensor()};
  const T* Lam = in.res ? in.lam.data_ptr<T>() : nullptr;
  const T* PL = pl.data_ptr<T>();
  const T* PR = pr.data_ptr<T>();
  const T* PW = pw.data_ptr<T>();
  T* DL = dlam.data_ptr<T>();
  at::parallel_for(0, in.B * H, 1, [&](int64_t begin, int64_t end) {
    Scratch<T, D> w(N, M);
    const int64_t ld = w.ldn;
    T* E = w.s.data();  // e[q, j] = g_q . v_j, then the score gradients
    for (int64_t bh = begin; bh < end; ++bh) {
      const int64_t b = bh / H, h = bh % H;
      const T la = in.res ? Lam[h] : T(0);
      // the accumulated gradients start here, one (b, h) at a time, while in cache
      DK.template init_rows<D>(b, h, N, NONE);
      DV.template init_rows<D>(b, h, N, NONE);
      if (in.res) {
        DRK.template init_rows<D>(b, h, M, NONE);
        DU.template init_rows<D>(b, h, M, DU_IN);
      }
      transpose<T, D>(w.xt.data(), V, b, h, N, ld);
      if (in.res) transpose<T, D>(w.rt.data(), U, b, h, M, w.ldm);
      T dla = 0;
      for (int64_t i0 = 0; i0 < N; i0 += kTile) {
        const int64_t nq = std::min<int64_t>(kTile, N - i0);
        int64_t lo, hi, lo_q, hi_q;
        in.win.range(i0, N, lo, hi_q);
        in.win.range(i0 + nq - 1, N, lo_q, hi);
        const int64_t n = hi - lo;
        const T *xq[kTile], *xg[kTile];
        Q.tile(xq, b, h, i0, nq);
        G.tile(xg, b, h, i0, nq);
        // rows of a padded query or past the end have zero probabilities, so they add
        // nothing below
        T qr[kTile][D], gl[kTile][D], gg[kTile][D];
        load_rows<T, D>(qr, xq);
        for (int q = 0; q < kTile; ++q)
          for (int d = 0; d < D; ++d) {
            gl[q][d] = (T(1) - la) * xg[q][d];
            gg[q][d] = la * xg[q][d];
          }
        // window: ds_j = (1 - lam) scale p_j (e_j - g . y_loc), g . y_loc = sum_j p_j e_j
        const T* P = PL + (bh * sv.npad + i0) * Wt;
        tile_scores<T, D>(E, ld, xg, w.xt.data() + lo, ld, n, T(1));
        T gy[kTile], gr[kTile];
        softmax_backward(E, ld, P, Wt, n, (T(1) - la) * scale, gy);
        T acc[kTile][D] = {};
        tile_gather<T, D>(acc, E, ld, K.at(b, h, lo), K.sn, n);
        tile_scatter<T, D>(DK.at(b, h, lo), DK.sn, E, ld, qr, n);
        tile_scatter<T, D>(DV.at(b, h, lo), DV.sn, P, Wt, gl, n);
        if (in.res) {
          // read hop: the same over the reservoir keys rkr and values u; the gradient of
          // lambda is g . (y_glob - y_loc)
          const T* R = PR + (bh * sv.npad + i0) * M;
          tile_scores<T, D>(E, ld, xg, w.rt.data(), w.ldm, M, T(1));
          softmax_backward(E, ld, R, M, M, la * scale, gr);
          for (int q = 0; q < kTile; ++q) dla += gr[q] - gy[q];
          tile_gather<T, D>(acc, E, ld, RK.at(b, h, 0), RK.sn, M);
          tile_scatter<T, D>(DRK.at(b, h, 0), DRK.sn, E, ld, qr, M);
          tile_scatter<T, D>(DU.at(b, h, 0), DU.sn, R, M, gg, M);
        }
        for (int q = 0; q < nq; ++q) std::copy(acc[q], acc[q] + D, DQ.at(b, h, i0 + q));
      }
      if (in.res) DL[bh] = dla;
      // write hop, kTile reservoir tokens at a time, with the gradient du gathered above
      for (int64_t c0 = 0; c0 < sv.mpad; c0 += kTile) {
        const int64_t nc = std::min<int64_t>(kTile, M - c0);
        const T *xr[kTile], *xu[kTile];
        RQ.tile(xr, b, h, c0, nc);
        DU.tile(xu, b, h, c0, nc);
        T rr[kTile][D], ur[kTile][D];
        load_rows<T, D>(rr, xr);
        load_rows<T, D>(ur, xu);
        const T* P = PW + (bh * sv.mpad + c0) * N;
        tile_scores<T, D>(E, ld, xu, w.xt.data(), ld, N, T(1));
        T gu[kTile];
        softmax_backward(E, ld, P, N, N, scale, gu);
        T acc[kTile][D] = {};
        tile_gather<T, D>(acc, E, ld, K.at(b, h, 0), K.sn, N);
        tile_scatter<T, D>(DK.at(b, h, 0), DK.sn, E, ld, rr, N);
        tile_scatter<T, D>(DV.at(b, h, 0), DV.sn, P, N, ur, N);
        for (int q = 0; q < nc; ++q) std::copy(acc[q], acc[q] + D, DRQ.at(b, h, c0 + q));
      }
    }
  });
}

void check(const at::Tensor& t, const char* name) {
  TORCH_CHECK(t.dim() == 4 && t.stride(3) == 1, "brl fused kernel: ", name,
              " must be [B, H, N, D] with a contiguous last axis");
}

// Calls fn.template operator()<T, D>() for the dtype and head size of q.
template <typename F>
void dispatch(const at::Tensor& q, F&& fn) {
  const int64_t D = q.size(3);
  AT_DISPATCH_FLOATING_TYPES(q.scalar_type(), "brl_fused", [&] {
    switch (D) {
      case 8: fn.template operator()<scalar_t, 8>(); break;
      case 16: fn.template operator()<scalar_t, 16>(); break;
      case 32: fn.template operator()<scalar_t, 32>(); break;
      case 64: fn.template operator()<scalar_t, 64>(); break;
      default: TORCH_CHECK(false, "brl fused kernel: head size ", D, " is not 8, 16, 32 or 64");
    }
  });
}

Inputs inputs(const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
              const at::Tensor& rqw, const at::Tensor& rkr, const at::Tensor& lam,
              const at::Tensor& kvalid, int64_t window, bool block) {
  check(q, "q");
  check(k, "k");
  check(v, "v");
  const bool res = rqw.numel() > 0;
  if (res) {
    check(rqw, "rqw");
    check(rkr, "rkr");
  }
  return Inputs{q, k, v, rqw, rkr, lam, kvalid.numel() ? kvalid.data_ptr<uint8_t>() : nullptr,
                Window{window, block}, q.size(0), q.size(1), q.size(2),
                res ? rqw.size(2) : 0, res};
}

}  // namespace

// Returns y [B, H, N, D] (memory [B, N, H, D]), u [B, H, M, D] (memory [B, M, H, D]: the
// heads merge without a copy) and, for the backward, the
// probabilities: pl [B, H, N rounded up to the tile, run width] (each tile's rows over
// the keys its windows span), pr [B, H, N rounded up, M], pw [B, H, M rounded up, N].
// M = 0 (empty rqw) is local attention alone (pr, pw are empty).
std::vector<at::Tensor> brl_fused_forward(const at::Tensor& q, const at::Tensor& k,
                                          const at::Tensor& v, const at::Tensor& rqw,
                                          const at::Tensor& rkr, const at::Tensor& lam,
                                          const at::Tensor& kvalid, int64_t window,
                                          bool block) {
  const Inputs in = inputs(q, k, v, rqw, rkr, lam, kvalid, window, block);
  const Saved sv(in.win, in.N, in.M);
  const int64_t B = in.B, H = in.H, N = in.N, M = in.M, D = q.size(3);
  auto opts = q.options();
  at::Tensor y = at::empty({B, N, H, D}, opts).transpose(1, 2);
  at::Tensor u = at::empty({B, M, H, D}, opts).transpose(1, 2);
  at::Tensor pl = at::empty({B, H, sv.npad, sv.wt}, opts);
  at::Tensor pr = at::empty({B, H, M ? sv.npad : 0, M}, opts);
  at::Tensor pw = at::empty({B, H, sv.mpad, N}, opts);
  dispatch(q, [&]<typename T, int DC>() { forward_kernel<T, DC>(in, sv, y, u, pl, pr, pw); });
  return {y, u, pl, pr, pw};
}

// Gradients dq, dk, dv [B, H, N, D], drqw, drkr [B, H, M, D], dlam [B, H].
// du_in is the gradient reaching u from outside (empty: none).
std::vector<at::Tensor> brl_fused_backward(
    const at::Tensor& dy, const at::Tensor& q, const at::Tensor& k, const at::Tensor& v,
    const at::Tensor& rqw, const at::Tensor& rkr, const at::Tensor& lam,
    const at::Tensor& kvalid, const at::Tensor& u, const at::Tensor& pl, const at::Tensor& pr, const at::Tensor& pw, const at::Tensor& du_in,
    int64_t window, bool block) {
  check(dy, "dy");
  const Inputs in = inputs(q, k, v, rqw, rkr, lam, kvalid, window, block);
  const Saved sv(in.win, in.N, in.M);
  const int64_t B = in.B, H = in.H, N = in.N, M = in.M, D = q.size(3);
  auto opts = q.options();
  at::Tensor dq = at::empty({B, N, H, D}, opts).transpose(1, 2);
  // dk, dv, drkr and du are zeroed (du: set to du_in) per (b, h) by the kernel
  at::Tensor dk = at::empty({B, N, H, D}, opts).transpose(1, 2);
  at::Tensor dv = at::empty({B, N, H, D}, opts).transpose(1, 2);
  at::Tensor drqw = at::empty({B, H, M, D}, opts);
  at::Tensor drkr = at::empty({B, H, M, D}, opts);
  at::Tensor dlam = at::zeros({B, H}, opts);
  at::Tensor du = at::empty({B, H, M, D}, opts);
  if (du_in.numel()) check(du_in, "du");
  dispatch(q, [&]<typename T, int DC>() {
    backward_kernel<T, DC>(in, sv, dy, u, pl, pr, pw, dq, dk, dv, drqw, drkr, dlam, du, du_in);
  });
  return {dq, dk, dv, drqw, drkr, dlam};
}

PYBIND11_MODULE(TORCH_EXTENSION_NAME, m) {
  m.def("forward", &brl_fused_forward, "fused BRL-Attention forward (CPU)");
  m.def("backward", &brl_fused_backward, "fused BRL-Attention backward (CPU)");
}
