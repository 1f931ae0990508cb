#include "autodiff/attention.hpp"

#include <cmath>
#include <limits>
#include <memory>

#include "autodiff/kernels/attention.hpp"
#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/kernels/reduce.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// The shapes of one attention call, checked.
struct Geometry {
  Shape lead;  ///< the leading axes q, k and v share
  std::size_t n = 1, heads = 1, lq = 0, lk = 0, d = 0, dv = 0;
  double scale = 0;
  Shape scores;  ///< (lead..., H, Lq, Lk), without H for one head

  Geometry(const Shape& sq, const Shape& sk, const Shape& sv, const AttentionOptions& o,
           const Shape* mask) {
    auto bad = [&](const char* why) {
      fail("scaled_dot_product_attention: q ", shape_str(sq), ", k ", shape_str(sk), ", v ",
           shape_str(sv), " with ", o.heads, " heads: ", why);
    };
    if (o.heads == 0) bad("heads must be positive");
    if (sq.size() < 2 || sk.size() != sq.size() || sv.size() != sq.size())
      bad("q, k and v must have the same rank, at least 2: (..., L, heads·width)");
    if (!std::equal(sq.begin(), sq.end() - 2, sk.begin()) ||
        !std::equal(sq.begin(), sq.end() - 2, sv.begin()))
      bad("the leading axes differ");
    if (sk[sk.size() - 2] != sv[sv.size() - 2]) bad("k and v have different lengths");
    if (sq.back() != sk.back()) bad("q and k have different widths");
    if (sq.back() % o.heads || sv.back() % o.heads) bad("the heads do not divide the widths");
    lead.assign(sq.begin(), sq.end() - 2);
    n = shape_size(lead);
    heads = o.heads;
    lq = sq[sq.size() - 2];
    lk = sk[sk.size() - 2];
    d = sq.back() / heads;
    dv = sv.back() / heads;
    if (d == 0 && o.scale == 0) bad("q and k have no features (and no scale was given)");
    if (!std::isfinite(o.scale)) bad("the scale is not finite");
    scale = o.scale != 0 ? o.scale : 1.0 / std::sqrt(static_cast<double>(d));
    scores = lead;
    if (heads > 1) scores.push_back(heads);
    scores.push_back(lq);
    scores.push_back(lk);
    bool fits = !mask || mask->size() <= scores.size();
    for (std::size_t i = 1; mask && fits && i <= mask->size(); ++i) {
      const std::size_t m = (*mask)[mask->size() - i], s = scores[scores.size() - i];
      fits = m == 1 || m == s;
    }
    if (!fits)
      fail("scaled_dot_product_attention: mask ", shape_str(*mask),
           " does not broadcast to the scores ", shape_str(scores));
  }
};

/// (lead..., L, H·w) → (N·H, L, w): each head a batch of its own (a permuted copy).
template <class T>
Variable<T> heads_first(const Variable<T>& x, const Geometry& g, std::size_t length,
                        std::size_t width) {
  const Variable<T> split = reshape(x, Shape{g.n, length, g.heads, width});
  return reshape(permute(split, {0, 2, 1, 3}), Shape{g.n * g.heads, length, width});
}

/// The inverse of heads_first, to a shape like `like`'s.
template <class T>
Variable<T> heads_last(const Variable<T>& x, const Geometry& g, std::size_t length,
                       std::size_t width, const Shape& like) {
  const Variable<T> split = reshape(x, Shape{g.n, g.heads, length, width});
  return reshape(permute(split, {0, 2, 1, 3}), like);
}

/// The scores scale·q·kᵀ + mask (−∞ where the causal rule hides a key) as recorded ops, (N·H,
/// Lq, Lk).
template <class T>
Variable<T> scores_of(const Variable<T>& q, const Variable<T>& k, const Variable<T>& mask,
                      const Geometry& g, bool causal) {
  Variable<T> s =
      matmul(heads_first(q, g, g.lq, g.d), heads_first(k, g, g.lk, g.d), false, true) * g.scale;
  if (mask.defined()) s = reshape(reshape(s, g.scores) + mask, Shape{g.n * g.heads, g.lq, g.lk});
  if (causal) {
    Array<T> hide = xt::zeros<T>({g.lq, g.lk});
    for (std::size_t i = 0; i < g.lq; ++i)
      for (std::size_t j = i + 1; j < g.lk; ++j) hide(i, j) = -std::numeric_limits<T>::infinity();
    s = s + Variable<T>(std::move(hide));
  }
  return s;
}

/// The kernel's description of a call; the mask's offsets per problem from its broadcast strides.
template <class T>
kernels::Attention<T> kernel_call(const Geometry& g, bool causal, const Variable<T>& mask) {
  kernels::Attention<T> a;
  a.batch = g.n;
  a.heads = g.heads;
  a.lq = g.lq;
  a.lk = g.lk;
  a.d = g.d;
  a.dv = g.dv;
  a.scale = static_cast<T>(g.scale);
  a.causal = causal;
  if (mask.defined()) {
    a.mask = mask.value().data();
    const kernels::Strides st = kernels::broadcast_strides(mask.shape(), g.scores);
    const std::size_t prefix = g.scores.size() - 2;
    a.mask_i = st[prefix];
    a.mask_j = st[prefix + 1];
    Shape idx(prefix, 0);
    a.mask_offset.resize(g.n * g.heads);
    for (auto& offset : a.mask_offset) {  // problems in row-major order of the prefix axes
      std::ptrdiff_t at = 0;
      for (std::size_t d = 0; d < prefix; ++d) at += st[d] * static_cast<std::ptrdiff_t>(idx[d]);
      offset = at;
      for (std::size_t d = prefix; d-- > 0;) {
        if (++idx[d] < g.scores[d]) break;
        idx[d] = 0;
      }
    }
  }
  return a;
}

}  // namespace

template <class T>
Variable<T> attention_weights(const Variable<T>& q, const Variable<T>& k,
                              const AttentionOptions& options, const Variable<T>& mask) {
  const Shape sv = k.shape();  // v plays no part: k stands in for its shape
  const Geometry g(q.shape(), k.shape(), sv, options, mask.defined() ? &mask.shape() : nullptr);
  return reshape(softmax(scores_of(q, k, mask, g, options.causal), -1), g.scores);
}

template <class T>
Variable<T> scaled_dot_product_attention(const Variable<T>& q, const Variable<T>& k,
                                         const Variable<T>& v, const AttentionOptions& options,
                                         const Variable<T>& mask) {
  const Geometry g(q.shape(), k.shape(), v.shape(), options,
                   mask.defined() ? &mask.shape() : nullptr);
  const bool causal = options.causal;
  auto body = [&] {
    Shape shape = q.shape();
    shape.back() = g.heads * g.dv;
    Array<T> out = Array<T>::from_shape(shape);
    auto lse = std::make_shared<Array<T>>(Array<T>::from_shape({g.n * g.heads, g.lq}));
    kernels::attention_forward(kernel_call(g, causal, mask), q.value().data(), k.value().data(),
                               v.value().data(), out.data(), lse->data());
    auto backward = [g, causal, lse](const BackwardContext<T>& c) -> Grads<T> {
      const Variable<T> none;
      const Variable<T>& mask = c.inputs.size() > 3 ? c.input(3) : none;
      if (c.create_graph) {  // the same derivative with recorded ops
        const Variable<T> p = softmax(scores_of(c.input(0), c.input(1), mask, g, causal), -1);
        const Variable<T> dout = heads_first(c.grad, g, g.lq, g.dv);
        const Variable<T> dp = matmul(dout, heads_first(c.input(2), g, g.lk, g.dv), false, true);
        const Variable<T> ds = p * (dp - sum(dp * p, {-1}, true));
        Grads<T> grads{
            heads_last(matmul(ds, heads_first(c.input(1), g, g.lk, g.d)) * g.scale, g, g.lq, g.d,
                       c.input(0).shape()),
            heads_last(matmul(ds, heads_first(c.input(0), g, g.lq, g.d), true, false) * g.scale, g,
                       g.lk, g.d, c.input(1).shape()),
            heads_last(matmul(p, dout, true, false), g, g.lk, g.dv, c.input(2).shape())};
        if (mask.defined()) grads.push_back(sum_to(reshape(ds, g.scores), mask.shape()));
        return grads;
      }
      Grads<T> grads(c.inputs.size());
      T* dq = c.needs(0) ? detail::new_gradient(grads, 0, c.input(0).shape()) : nullptr;
      T* dk = c.needs(1) ? detail::new_gradient(grads, 1, c.input(1).shape()) : nullptr;
      T* dv = c.needs(2) ? detail::new_gradient(grads, 2, c.input(2).shape()) : nullptr;
      const bool mask_grad = mask.defined() && c.needs(3);
      Array<T> dscores;  // (a default array holds one element: mask_grad says whether it is used)
      if (mask_grad) dscores = xt::zeros<T>({g.n * g.heads, g.lq, g.lk});
      kernels::attention_backward(kernel_call(g, causal, mask), c.input(0).value().data(),
                                  c.input(1).value().data(), c.input(2).value().data(),
                                  c.output.value().data(), lse->data(), c.grad.value().data(), dq,
                                  dk, dv, mask_grad ? dscores.data() : nullptr);
      if (mask_grad) {
        dscores.reshape(g.scores);
        grads[3] = Variable<T>(kernels::sum_to(dscores, mask.shape()));
      }
      return grads;
    };
    if (mask.defined())
      return make_op<T>("scaled_dot_product_attention", std::move(out), {q, k, v, mask}, backward);
    return make_op<T>("scaled_dot_product_attention", std::move(out), {q, k, v}, backward);
  };
  return detail::traced<T>("scaled_dot_product_attention", {&q, &k, &v, &mask}, body, "causal",
                           causal, "scale", g.scale, "heads", g.heads);
}

template <class T>
std::vector<const void*> attention_ops() {
  return detail::addresses(&scaled_dot_product_attention<T>, &attention_weights<T>);
}
template std::vector<const void*> attention_ops<float>();
template std::vector<const void*> attention_ops<double>();

namespace detail {
template <class T>
Replays<T> attention_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"scaled_dot_product_attention",
       [](const In& x, const A& a) {
         AttentionOptions o;
         o.causal = a.flag("causal");
         o.scale = a.number("scale");
         o.heads = static_cast<std::size_t>(a.integer("heads"));
         return scaled_dot_product_attention(x.at(0), x.at(1), x.at(2), o,
                                             x.size() > 3 ? x[3] : Variable<T>());
       }},
  };
}
template Replays<float> attention_replays<float>();
template Replays<double> attention_replays<double>();
}  // namespace detail

}  // namespace ad
