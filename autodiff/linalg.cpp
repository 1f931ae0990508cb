#include "autodiff/linalg.hpp"

#include "autodiff/activation.hpp"
#include "autodiff/kernels/gemm.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

namespace {

std::string operand_str(const char* name, const Shape& s, bool trans) {
  return std::string(name) + " " + shape_str(s) + (trans ? " (transposed)" : "");
}

}  // namespace

template <class T>
Variable<T> matmul(const Variable<T>& a, const Variable<T>& b, bool ta, bool tb) {
  return detail::traced<T>(
      "matmul", {&a, &b},
      [&] {
        const Shape& sa = a.shape();
        const Shape& sb = b.shape();
        if (sa.size() < 2 || sa.size() > 3 || sb.size() < 2 || sb.size() > 3)
          fail("matmul: operands must be 2-D or 3-D, got ", operand_str("a", sa, ta), " and ",
               operand_str("b", sb, tb));
        const std::size_t ra = sa[sa.size() - 2], ca = sa[sa.size() - 1];
        const std::size_t rb = sb[sb.size() - 2], cb = sb[sb.size() - 1];
        const std::size_t k = ta ? ra : ca, kb = tb ? cb : rb;
        if (k != kb)
          fail("matmul: inner dimensions differ: ", operand_str("a", sa, ta), ", ",
               operand_str("b", sb, tb));
        const std::size_t batch_a = sa.size() == 3 ? sa[0] : 0;
        const std::size_t batch_b = sb.size() == 3 ? sb[0] : 0;
        if (batch_a && batch_b && batch_a != batch_b)
          fail("matmul: batch sizes differ: ", operand_str("a", sa, ta), ", ",
               operand_str("b", sb, tb));
        return make_op<T>("matmul", kernels::matmul(a.value(), b.value(), ta, tb), {a, b},
                          [ta, tb](const BackwardContext<T>& c) -> Grads<T> {
                            // C = op(A)·op(B): d/dA = G·op(B)ᵀ, d/dB = op(A)ᵀ·G, each written as
                            // one matmul with transpose flags (sum_to folds a shared 2-D operand's
                            // batch).
                            const auto& a = c.input(0);
                            const auto& b = c.input(1);
                            const auto& g = c.grad;
                            Variable<T> da, db;
                            if (c.needs(0))
                              da = !ta ? matmul(g, b, false, !tb) : matmul(b, g, tb, true);
                            if (c.needs(1))
                              db = !tb ? matmul(a, g, !ta, false) : matmul(g, a, true, ta);
                            if (da.defined()) da = sum_to(da, a.shape());
                            if (db.defined()) db = sum_to(db, b.shape());
                            return {da, db};
                          });
      },
      "trans_a", ta, "trans_b", tb);
}

namespace {

/// The gradients of y = x·wᵀ + b for the inputs of c (x, w and, when there are three, b) from g,
/// the gradient of y: d/dx = g·w, d/dw = gᵀ·x (over all rows), d/db = Σ_rows g.
template <class T>
Grads<T> linear_grads(const BackwardContext<T>& c, const Variable<T>& g) {
  const auto& x = c.input(0);
  const auto& w = c.input(1);
  const bool need_b = c.inputs.size() == 3 && c.needs(2);
  const std::size_t out_features = w.shape()[0], in_features = w.shape()[1];
  if (!c.create_graph) {  // first order: the three products in one kernel
    Grads<T> grads(c.inputs.size());
    T* dx = c.needs(0) ? detail::new_gradient(grads, 0, x.shape()) : nullptr;
    T* dw = c.needs(1) ? detail::new_gradient(grads, 1, w.shape()) : nullptr;
    T* db = need_b ? detail::new_gradient(grads, 2, Shape{out_features}) : nullptr;
    kernels::linear_backward(g.value().data(), x.value().data(), w.value().data(),
                             x.size() / std::max<std::size_t>(in_features, 1), in_features,
                             out_features, dx, dw, db);
    return grads;
  }
  const bool flat = x.dim() == 2;
  Variable<T> g2 =
      flat ? g : reshape(g, Shape{x.size() / std::max<std::size_t>(in_features, 1), out_features});
  Grads<T> grads(c.inputs.size());
  if (c.needs(0)) grads[0] = flat ? matmul(g2, w) : reshape(matmul(g2, w), x.shape());
  if (c.needs(1)) {
    Variable<T> x2 = flat ? x : reshape(x, Shape{g2.shape()[0], in_features});
    grads[1] = matmul(g2, x2, true, false);
  }
  if (need_b) grads[2] = sum_to(g, c.input(2).shape());
  return grads;
}

/// The Activation of a name activation_name gives.
Activation activation_of(const std::string& name) {
  for (Activation a : {Activation::none, Activation::relu, Activation::tanh, Activation::sigmoid})
    if (name == activation_name(a)) return a;
  fail("linear: unknown activation '", name, "'");
}

/// f(y) in place, f the activation (activation.hpp: the standalone op's values, the same bits).
template <class T>
void activate(Array<T>& y, Activation act) {
  if (act == Activation::relu)
    detail::activate_in_place<detail::Relu>(y);
  else if (act == Activation::tanh)
    detail::activate_in_place<detail::Tanh>(y);
  else if (act == Activation::sigmoid)
    detail::activate_in_place<detail::Sigmoid>(y);
}

}  // namespace

const char* activation_name(Activation act, const char* op) {
  static constexpr const char* names[] = {"none", "relu", "tanh", "sigmoid"};
  const int i = static_cast<int>(act);
  if (i < 0 || i > 3) fail(op, ": unknown activation ", i);
  return names[i];
}

template <class T>
Variable<T> linear(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   Activation act) {
  activation_name(act);  // refuses a value that is no activation
  const Shape& sx = x.shape();
  const Shape& sw = w.shape();
  if (sw.size() != 2 || sx.empty() || sx.back() != sw[1])
    fail("linear: x ", shape_str(sx), " does not match weight ", shape_str(sw),
         " (weight is (out, in), x is (..., in))");
  const std::size_t outf = sw[0];
  if (b.defined() && (b.dim() != 1 || b.shape()[0] != outf))
    fail("linear: bias ", shape_str(b.shape()), " does not match weight ", shape_str(sw),
         " (bias is (out))");
  Shape shape = sx;
  shape.back() = outf;
  auto make = [&] {
    Array<T> y =
        kernels::linear(x.value(), w.value(), b.defined() ? b.value().data() : nullptr, shape);
    activate(y, act);
    return y;
  };
  auto backward = [act](const BackwardContext<T>& c) -> Grads<T> {
    switch (act) {
      case Activation::relu:
        return linear_grads(c, detail::elementwise_rule(c, detail::Relu(), c.output));
      case Activation::tanh:
        return linear_grads(c, detail::elementwise_rule(c, detail::Tanh(), c.output));
      case Activation::sigmoid:
        return linear_grads(c, detail::elementwise_rule(c, detail::Sigmoid(), c.output));
      default:
        return linear_grads(c, c.grad);
    }
  };
  static constexpr const char* names[] = {"linear", "linear_relu", "linear_tanh", "linear_sigmoid"};
  const char* name = names[static_cast<int>(act)];
  return detail::traced<T>(
      "linear", {&x, &w, &b},
      [&] {
        if (b.defined()) return make_op_in_place<T>(name, make, {x, w, b}, backward);
        return make_op_in_place<T>(name, make, {x, w}, backward);
      },
      "activation", activation_name(act));
}

template <class T>
Variable<T> linear(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b) {
  return linear(x, w, b, Activation::none);
}

template <class T>
std::vector<const void*> linalg_ops() {
  using Linear = Variable<T> (*)(const Variable<T>&, const Variable<T>&, const Variable<T>&);
  using Activated =
      Variable<T> (*)(const Variable<T>&, const Variable<T>&, const Variable<T>&, Activation);
  return detail::addresses(&matmul<T>, static_cast<Linear>(&linear<T>),
                           static_cast<Activated>(&linear<T>));
}
template std::vector<const void*> linalg_ops<float>();
template std::vector<const void*> linalg_ops<double>();

namespace detail {
template <class T>
Replays<T> linalg_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"matmul",
       [](const In& x, const A& a) {
         return matmul(x.at(0), x.at(1), a.flag("trans_a"), a.flag("trans_b"));
       }},
      {"linear",
       [](const In& x, const A& a) {
         return linear(x.at(0), x.at(1), x.size() > 2 ? x[2] : Variable<T>(),
                       activation_of(a.text("activation")));
       }},
  };
}
template Replays<float> linalg_replays<float>();
template Replays<double> linalg_replays<double>();
}  // namespace detail

}  // namespace ad
