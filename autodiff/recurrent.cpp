#include "autodiff/recurrent.hpp"

#include <memory>
#include <vector>

#include "autodiff/kernels/recurrent.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

/// The layer as recorded ops: the input projection, then lstm_cell step by step.
template <class T>
Variable<T> lstm_unrolled(const Variable<T>& x, const Variable<T>& w_ih, const Variable<T>& w_hh,
                          const Variable<T>& b_ih, const Variable<T>& b_hh, const Variable<T>& h0,
                          const Variable<T>& c0) {
  const std::size_t L = x.shape()[1], H = h0.shape()[1];
  const Variable<T> xw = linear(x, w_ih, b_ih);
  Variable<T> h = h0, c = c0;
  std::vector<Variable<T>> steps;
  for (std::size_t t = 0; t < L; ++t) {
    const Variable<T> hc = lstm_cell(select(xw, 1, t), linear(h, w_hh, b_hh), c);
    h = slice(hc, 1, 0, H);
    c = slice(hc, 1, H, 2 * H);
    steps.push_back(h);
  }
  steps.push_back(c);
  return stack(steps, 1);
}

}  // namespace

template <class T>
Variable<T> lstm(const Variable<T>& x, const Variable<T>& w_ih, const Variable<T>& w_hh,
                 const Variable<T>& b_ih, const Variable<T>& b_hh, const Variable<T>& h0,
                 const Variable<T>& c0) {
  const Shape& sx = x.shape();
  const Shape& sh = h0.shape();
  if (sx.size() != 3 || sh.size() != 2 || c0.shape() != sh || sh[0] != sx[0] ||
      w_ih.shape() != Shape{4 * sh[1], sx[2]} || w_hh.shape() != Shape{4 * sh[1], sh[1]} ||
      (b_ih.defined() && b_ih.shape() != Shape{4 * sh[1]}) ||
      (b_hh.defined() && b_hh.shape() != Shape{4 * sh[1]}))
    fail(
        "lstm: x ", shape_str(sx), ", w_ih ", shape_str(w_ih.shape()), ", w_hh ",
        shape_str(w_hh.shape()), ", biases ", b_ih.defined() ? shape_str(b_ih.shape()) : "none",
        " and ", b_hh.defined() ? shape_str(b_hh.shape()) : "none", ", h0 ", shape_str(sh),
        " and c0 ", shape_str(c0.shape()),
        " do not match (x (N, L, in), w_ih (4H, in), w_hh (4H, H), biases (4H), h0 and c0 (N, H))");
  kernels::LstmShape s;
  s.n = sx[0];
  s.length = sx[1];
  s.input = sx[2];
  s.hidden = sh[1];
  const bool biased = b_ih.defined() || b_hh.defined();
  if (b_ih.defined() != b_hh.defined()) fail("lstm: give both biases or neither");
  auto body = [&] {
    Array<T> out = Array<T>::from_shape({s.n, s.length + 1, s.hidden});
    // The gates' activations and the cells, kept for the backward.
    auto saved = std::make_shared<std::pair<Array<T>, Array<T>>>(
        Array<T>::from_shape({s.n, s.length, 4 * s.hidden}),
        Array<T>::from_shape({s.n, s.length, s.hidden}));
    kernels::lstm_forward(s, x.value().data(), w_ih.value().data(), w_hh.value().data(),
                          biased ? b_ih.value().data() : nullptr,
                          biased ? b_hh.value().data() : nullptr, h0.value().data(),
                          c0.value().data(), saved->first.data(), saved->second.data(), out.data());
    auto backward = [s, saved, biased](const BackwardContext<T>& c) -> Grads<T> {
      // inputs: x, w_ih, w_hh, (b_ih, b_hh,) h0, c0
      const std::size_t ih = biased ? 5 : 3, ic = ih + 1;
      if (c.create_graph) {  // the unrolled composite's derivative, recorded
        const Variable<T> none;
        const Variable<T> y =
            lstm_unrolled(c.input(0), c.input(1), c.input(2), biased ? c.input(3) : none,
                          biased ? c.input(4) : none, c.input(ih), c.input(ic));
        std::vector<Variable<T>> inputs(c.inputs.begin(), c.inputs.end());
        const std::vector<Variable<T>> g = grad(y, inputs, c.grad, BackwardOptions{true, true});
        return Grads<T>(g.begin(), g.end());
      }
      Grads<T> grads(c.inputs.size());
      auto maybe = [&](std::size_t i) {
        return c.needs(i) ? detail::new_gradient(grads, i, c.input(i).shape()) : nullptr;
      };
      T* dx = maybe(0);
      T* dw_ih = maybe(1);
      T* dw_hh = maybe(2);
      T* db = biased && (c.needs(3) || c.needs(4))
                  ? detail::new_gradient(grads, 3, Shape{4 * s.hidden})
                  : nullptr;
      T* dh0 = maybe(ih);
      T* dc0 = maybe(ic);
      Array<T> dgates = Array<T>::from_shape({s.n, s.length, 4 * s.hidden});
      kernels::lstm_backward(s, c.input(0).value().data(), c.input(1).value().data(),
                             c.input(2).value().data(), c.input(ih).value().data(),
                             c.input(ic).value().data(), saved->first.data(), saved->second.data(),
                             c.output.value().data(), c.grad.value().data(), dgates.data(), dx,
                             dw_ih, dw_hh, db, dh0, dc0);
      if (db) grads[4] = grads[3];  // both biases get the same gradient
      return grads;
    };
    if (biased)
      return make_op<T>("lstm", std::move(out), {x, w_ih, w_hh, b_ih, b_hh, h0, c0}, backward);
    return make_op<T>("lstm", std::move(out), {x, w_ih, w_hh, h0, c0}, backward);
  };
  return detail::traced<T>("lstm", {&x, &w_ih, &w_hh, &b_ih, &b_hh, &h0, &c0}, body, "biased",
                           biased);
}

template <class T>
std::vector<const void*> recurrent_ops() {
  return detail::addresses(&lstm<T>);
}
template std::vector<const void*> recurrent_ops<float>();
template std::vector<const void*> recurrent_ops<double>();

namespace detail {
template <class T>
Replays<T> recurrent_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"lstm",
       [](const In& x, const A& a) {
         if (a.flag("biased"))
           return lstm(x.at(0), x.at(1), x.at(2), x.at(3), x.at(4), x.at(5), x.at(6));
         return lstm(x.at(0), x.at(1), x.at(2), Variable<T>(), Variable<T>(), x.at(3), x.at(4));
       }},
  };
}
template Replays<float> recurrent_replays<float>();
template Replays<double> recurrent_replays<double>();
}  // namespace detail

}  // namespace ad
