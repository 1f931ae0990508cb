#include "autodiff/conv.hpp"

#include <limits>
#include <memory>

#include "autodiff/kernels/conv.hpp"
#include "autodiff/kernels/pool.hpp"
#include "autodiff/ops.hpp"
#include "autodiff/trace.hpp"

namespace ad {

using kernels::ConvGeometry;

namespace {

/// The output extent along an axis, or an error when the (dilated) kernel does not fit.
std::size_t output_extent(std::size_t in, std::size_t k, std::size_t stride, std::size_t pad,
                          std::size_t dilation, const Shape& x, const char* op) {
  const std::size_t span = dilation * (k - 1) + 1;
  if (in + 2 * pad < span)
    fail(op, ": kernel ", k, dilation > 1 ? " dilated by " + std::to_string(dilation) : "",
         " is larger than the input ", shape_str(x), " padded by ", pad);
  return (in + 2 * pad - span) / stride + 1;
}

ConvGeometry pool_geometry(const Shape& x, std::size_t k, std::size_t stride, std::size_t pad,
                           const char* op) {
  if (x.size() != 4) fail(op, ": input must be (N, C, H, W), got ", shape_str(x));
  if (k == 0 || stride == 0) fail(op, ": kernel and stride must be positive");
  ConvGeometry g;
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3];
  g.kh = g.kw = k, g.sh = g.sw = stride, g.ph = g.pw = pad;
  g.ho = output_extent(g.h, k, stride, pad, 1, x, op);
  g.wo = output_extent(g.w, k, stride, pad, 1, x, op);
  return g;
}

ConvGeometry conv_geometry(const Shape& x, const Shape& w, const ConvOptions& o, const char* op) {
  if (x.size() != 4) fail(op, ": input must be (N, C, H, W), got ", shape_str(x));
  if (w.size() != 4 || w[2] == 0 || w[3] == 0)
    fail(op, ": weight must be (O, C/groups, kh, kw) with kh, kw > 0, got ", shape_str(w));
  if (o.stride_h == 0 || o.stride_w == 0 || o.dilation_h == 0 || o.dilation_w == 0 || o.groups == 0)
    fail(op, ": strides, dilations and groups must be positive");
  if (x[1] % o.groups != 0 || w[0] % o.groups != 0)
    fail(op, ": ", o.groups, " groups do not divide the ", x[1], " input channels of ",
         shape_str(x), " and the ", w[0], " output channels of weight ", shape_str(w));
  if (w[1] * o.groups != x[1])
    fail(op, ": input ", shape_str(x), " has ", x[1], " channels but weight ", shape_str(w),
         " expects ", w[1] * o.groups,
         o.groups > 1 ? " (" + std::to_string(o.groups) + " groups)" : "");
  ConvGeometry g;
  g.n = x[0], g.c = x[1], g.h = x[2], g.w = x[3], g.o = w[0];
  g.kh = w[2], g.kw = w[3], g.sh = o.stride_h, g.sw = o.stride_w, g.ph = o.padding_h,
  g.pw = o.padding_w, g.dh = o.dilation_h, g.dw = o.dilation_w, g.groups = o.groups;
  g.ho = output_extent(g.h, g.kh, g.sh, g.ph, g.dh, x, op);
  g.wo = output_extent(g.w, g.kw, g.sw, g.pw, g.dw, x, op);
  return g;
}

ConvGeometry checked_pool(const Shape& x, std::size_t k, std::size_t stride, std::size_t pad,
                          const char* op) {
  ConvGeometry g = pool_geometry(x, k, stride, pad, op);
  if (2 * pad > k) fail(op, ": padding ", pad, " is more than half the kernel ", k);
  g.o = g.c;
  return g;
}

void check_output_grad(const Shape& g, const ConvGeometry& geo, const char* op) {
  Shape want{geo.n, geo.o, geo.ho, geo.wo};
  if (g != want)
    fail(op, ": gradient of shape ", shape_str(g), " does not match the output shape ",
         shape_str(want));
}

}  // namespace

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   const ConvOptions& options) {
  return detail::traced<T>(
      "conv2d", {&x, &w, &b},
      [&] {
        const ConvGeometry g = conv_geometry(x.shape(), w.shape(), options, "conv2d");
        if (b.defined() && b.shape() != Shape{g.o})
          fail("conv2d: bias ", shape_str(b.shape()), " does not match weight ",
               shape_str(w.shape()), " (bias is (O))");
        // When the weight gradient will be wanted, the patch matrices are kept for it. (An Array:
        // not zero-filled, and its large blocks come back from the allocator's cache.)
        std::shared_ptr<Array<T>> kept;
        if (records<T>({w}))
          kept = std::make_shared<Array<T>>(Array<T>::from_shape({g.ckk() * g.n * g.hw()}));
        Array<T> out = kernels::conv2d(x.value().data(), w.value().data(),
                                       b.defined() ? b.value().data() : nullptr, g,
                                       kept ? kept->data() : nullptr);
        auto backward = [options, kept, g](const BackwardContext<T>& c) -> Grads<T> {
          // d/dx = conv2d_input_grad(gy, w), d/dw = conv2d_weight_grad(x, gy), d/db = Σ_{n,h,w} gy.
          // Recorded, with those ops; otherwise the same products by one kernel in one pass over
          // the output gradient, with the patches kept by the forward pass.
          const auto& x = c.input(0);
          const auto& w = c.input(1);
          const bool need_b = c.inputs.size() == 3 && c.needs(2);
          Grads<T> grads(c.inputs.size());
          if (c.create_graph) {
            if (c.needs(0)) grads[0] = conv2d_input_grad(c.grad, w, x.shape(), options);
            if (c.needs(1)) grads[1] = conv2d_weight_grad(x, c.grad, w.shape(), options);
            if (need_b) grads[2] = sum(c.grad, {0, 2, 3});
            return grads;
          }
          T* dx = c.needs(0) ? detail::new_gradient(grads, 0, x.shape()) : nullptr;
          T* dw = c.needs(1) ? detail::new_gradient(grads, 1, w.shape(), true) : nullptr;
          T* db = need_b ? detail::new_gradient(grads, 2, Shape{g.o}, true) : nullptr;
          kernels::conv2d_backward(c.grad.value().data(), w.value().data(), x.value().data(),
                                   kept ? kept->data() : nullptr, g, dx, dw, db);
          return grads;
        };
        if (b.defined()) return make_op<T>("conv2d", std::move(out), {x, w, b}, backward);
        return make_op<T>("conv2d", std::move(out), {x, w}, backward);
      },
      "stride", std::vector<std::size_t>{options.stride_h, options.stride_w}, "padding",
      std::vector<std::size_t>{options.padding_h, options.padding_w}, "dilation",
      std::vector<std::size_t>{options.dilation_h, options.dilation_w}, "groups", options.groups);
}

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, const Variable<T>& b,
                   std::size_t stride, std::size_t padding) {
  return conv2d(x, w, b, ConvOptions::square(stride, padding));
}

template <class T>
Variable<T> conv2d(const Variable<T>& x, const Variable<T>& w, std::size_t stride,
                   std::size_t padding) {
  return conv2d(x, w, Variable<T>(), ConvOptions::square(stride, padding));
}

template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              const ConvOptions& options) {
  return detail::traced<T>(
      "conv2d_input_grad", {&g, &w},
      [&] {
        const ConvGeometry geo = conv_geometry(x_shape, w.shape(), options, "conv2d_input_grad");
        check_output_grad(g.shape(), geo, "conv2d_input_grad");
        Array<T> dx = Array<T>::from_shape(x_shape);
        kernels::conv2d_backward<T>(g.value().data(), w.value().data(), nullptr, nullptr, geo,
                                    dx.data(), nullptr, nullptr);
        return make_op<T>("conv2d_input_grad", std::move(dx), {g, w},
                          [options](const BackwardContext<T>& c) -> Grads<T> {
                            // with h the incoming gradient (x's shape):
                            // d/dg = conv2d(h, w), d/dw = conv2d_weight_grad(h, g)
                            const auto& g = c.input(0);
                            const auto& w = c.input(1);
                            Grads<T> grads(2);
                            if (c.needs(0)) grads[0] = conv2d(c.grad, w, Variable<T>(), options);
                            if (c.needs(1))
                              grads[1] = conv2d_weight_grad(c.grad, g, w.shape(), options);
                            return grads;
                          });
      },
      "x_shape", x_shape, "stride", std::vector<std::size_t>{options.stride_h, options.stride_w},
      "padding", std::vector<std::size_t>{options.padding_h, options.padding_w}, "dilation",
      std::vector<std::size_t>{options.dilation_h, options.dilation_w}, "groups", options.groups);
}

template <class T>
Variable<T> conv2d_input_grad(const Variable<T>& g, const Variable<T>& w, const Shape& x_shape,
                              std::size_t stride, std::size_t padding) {
  return conv2d_input_grad(g, w, x_shape, ConvOptions::square(stride, padding));
}

template <class T>
Variable<T> conv2d_weight_grad(const Variable<T>& x, const Variable<T>& g, const Shape& w_shape,
                               const ConvOptions& options) {
  return detail::traced<T>(
      "conv2d_weight_grad", {&x, &g},
      [&] {
        const ConvGeometry geo = conv_geometry(x.shape(), w_shape, options, "conv2d_weight_grad");
        check_output_grad(g.shape(), geo, "conv2d_weight_grad");
        Array<T> dw = xt::zeros<T>(w_shape);
        kernels::conv2d_backward<T>(g.value().data(), nullptr, x.value().data(), nullptr, geo,
                                    nullptr, dw.data(), nullptr);
        return make_op<T>("conv2d_weight_grad", std::move(dw), {x, g},
                          [options](const BackwardContext<T>& c) -> Grads<T> {
                            // with h the incoming gradient (w's shape):
                            // d/dx = conv2d_input_grad(g, h), d/dg = conv2d(x, h)
                            const auto& x = c.input(0);
                            const auto& g = c.input(1);
                            Grads<T> grads(2);
                            if (c.needs(0))
                              grads[0] = conv2d_input_grad(g, c.grad, x.shape(), options);
                            if (c.needs(1)) grads[1] = conv2d(x, c.grad, Variable<T>(), options);
                            return grads;
                          });
      },
      "w_shape", w_shape, "stride", std::vector<std::size_t>{options.stride_h, options.stride_w},
      "padding", std::vector<std::size_t>{options.padding_h, options.padding_w}, "dilation",
      std::vector<std::size_t>{options.dilation_h, options.dilation_w}, "groups", options.groups);
}

template <class T>
Variable<T> conv2d_weight_grad(const Variable<T>& x, const Variable<T>& g, const Shape& w_shape,
                               std::size_t stride, std::size_t padding) {
  return conv2d_weight_grad(x, g, w_shape, ConvOptions::square(stride, padding));
}

namespace {

// Max pooling is a selection by index within each (n, c) plane, and its gradient the scatter
// back; each is the other's adjoint, so second order works. The indices are shared, not copied.
using PlaneIndex = std::shared_ptr<const kernels::PoolIndex>;

template <class T>
Variable<T> pool_scatter(const Variable<T>& g, const PlaneIndex& idx, const Shape& x_shape);

/// The op whose value `out` holds x's entries at idx, plane by plane.
template <class T>
Variable<T> pool_selected(Array<T> out, const Variable<T>& x, const PlaneIndex& idx) {
  return make_op<T>("max_pool2d", std::move(out), {x},
                    [idx](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dx = g scattered back to the selected positions
                      return {pool_scatter(c.grad, idx, c.input(0).shape())};
                    });
}

/// x's entries at idx, plane by plane, shaped `out_shape`.
template <class T>
Variable<T> pool_select(const Variable<T>& x, const PlaneIndex& idx, const Shape& out_shape) {
  return pool_selected(kernels::pool_select(x.value(), *idx, out_shape), x, idx);
}

/// g added back at idx into zeros of x_shape: pool_select's adjoint.
template <class T>
Variable<T> pool_scatter(const Variable<T>& g, const PlaneIndex& idx, const Shape& x_shape) {
  return make_op<T>("max_pool2d_grad", kernels::pool_scatter(g.value(), *idx, x_shape), {g},
                    [idx](const BackwardContext<T>& c) -> Grads<T> {
                      // d/dg = the incoming gradient read at the selected positions
                      return {pool_select(c.grad, idx, c.input(0).shape())};
                    });
}

}  // namespace

template <class T>
Variable<T> max_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  return detail::traced<T>(
      "max_pool2d", {&x},
      [&] {
        const ConvGeometry g = checked_pool(x.shape(), kernel, stride, padding, "max_pool2d");
        if (g.h * g.w > std::numeric_limits<std::uint32_t>::max())
          fail("max_pool2d: input planes of ", g.h, "×", g.w,
               " are too large (at most 2^32 elements)");
        auto [out, idx] = kernels::max_pool2d(x.value(), g);
        return pool_selected(std::move(out), x,
                             std::make_shared<const kernels::PoolIndex>(std::move(idx)));
      },
      "kernel", kernel, "stride", stride, "padding", padding);
}

template <class T>
Variable<T> avg_pool2d(const Variable<T>& x, std::size_t kernel, std::size_t stride,
                       std::size_t padding) {
  return detail::traced<T>(
      "avg_pool2d", {&x},
      [&] {
        const ConvGeometry g = checked_pool(x.shape(), kernel, stride, padding, "avg_pool2d");
        return make_op<T>(
            "avg_pool2d", kernels::avg_pool2d(x.value(), g), {x},
            [kernel, stride, padding](const BackwardContext<T>& c) -> Grads<T> {
              // d/dx = each window's gradient spread evenly over it (the adjoint)
              return {avg_pool2d_grad(c.grad, c.input(0).shape(), kernel, stride, padding)};
            });
      },
      "kernel", kernel, "stride", stride, "padding", padding);
}

template <class T>
Variable<T> avg_pool2d_grad(const Variable<T>& g, const Shape& x_shape, std::size_t kernel,
                            std::size_t stride, std::size_t padding) {
  return detail::traced<T>(
      "avg_pool2d_grad", {&g},
      [&] {
        const ConvGeometry geo = checked_pool(x_shape, kernel, stride, padding, "avg_pool2d_grad");
        check_output_grad(g.shape(), geo, "avg_pool2d_grad");
        return make_op<T>("avg_pool2d_grad", kernels::avg_pool2d_grad(g.value(), geo), {g},
                          [kernel, stride, padding](const BackwardContext<T>& c) -> Grads<T> {
                            // d/dg = avg_pool2d of the incoming gradient (the adjoint's adjoint)
                            return {avg_pool2d(c.grad, kernel, stride, padding)};
                          });
      },
      "x_shape", x_shape, "kernel", kernel, "stride", stride, "padding", padding);
}

template <class T>
std::vector<const void*> conv_ops() {
  using V = Variable<T>;
  using Square = std::size_t;
  return detail::addresses(
      static_cast<V (*)(const V&, const V&, const V&, const ConvOptions&)>(&conv2d<T>),
      static_cast<V (*)(const V&, const V&, Square, Square)>(&conv2d<T>),
      static_cast<V (*)(const V&, const V&, const V&, Square, Square)>(&conv2d<T>),
      static_cast<V (*)(const V&, const V&, const Shape&, const ConvOptions&)>(
          &conv2d_input_grad<T>),
      static_cast<V (*)(const V&, const V&, const Shape&, Square, Square)>(&conv2d_input_grad<T>),
      static_cast<V (*)(const V&, const V&, const Shape&, const ConvOptions&)>(
          &conv2d_weight_grad<T>),
      static_cast<V (*)(const V&, const V&, const Shape&, Square, Square)>(&conv2d_weight_grad<T>),
      &max_pool2d<T>, &avg_pool2d<T>, &avg_pool2d_grad<T>);
}
template std::vector<const void*> conv_ops<float>();
template std::vector<const void*> conv_ops<double>();

namespace detail {
namespace {
/// The ConvOptions of a node's attributes.
ConvOptions conv_options(const AttributeReader& a) {
  const std::vector<std::size_t> stride = a.sizes("stride"), padding = a.sizes("padding"),
                                 dilation = a.sizes("dilation");
  if (stride.size() != 2 || padding.size() != 2 || dilation.size() != 2)
    fail("conv2d: stride, padding and dilation need two entries each");
  ConvOptions o;
  o.stride_h = stride[0], o.stride_w = stride[1];
  o.padding_h = padding[0], o.padding_w = padding[1];
  o.dilation_h = dilation[0], o.dilation_w = dilation[1];
  o.groups = static_cast<std::size_t>(a.integer("groups"));
  return o;
}
std::size_t size_of(const AttributeReader& a, const char* name) {
  const long v = a.integer(name);
  if (v < 0) fail("pooling: attribute '", name, "' is negative");
  return static_cast<std::size_t>(v);
}
}  // namespace

template <class T>
Replays<T> conv_replays() {
  using In = std::vector<Variable<T>>;
  using A = AttributeReader;
  return {
      {"conv2d",
       [](const In& x, const A& a) {
         return conv2d(x.at(0), x.at(1), x.size() > 2 ? x[2] : Variable<T>(), conv_options(a));
       }},
      {"conv2d_input_grad",
       [](const In& x, const A& a) {
         return conv2d_input_grad(x.at(0), x.at(1), a.shape("x_shape"), conv_options(a));
       }},
      {"conv2d_weight_grad",
       [](const In& x, const A& a) {
         return conv2d_weight_grad(x.at(0), x.at(1), a.shape("w_shape"), conv_options(a));
       }},
      {"max_pool2d",
       [](const In& x, const A& a) {
         return max_pool2d(x.at(0), size_of(a, "kernel"), size_of(a, "stride"),
                           size_of(a, "padding"));
       }},
      {"avg_pool2d",
       [](const In& x, const A& a) {
         return avg_pool2d(x.at(0), size_of(a, "kernel"), size_of(a, "stride"),
                           size_of(a, "padding"));
       }},
      {"avg_pool2d_grad",
       [](const In& x, const A& a) {
         return avg_pool2d_grad(x.at(0), a.shape("x_shape"), size_of(a, "kernel"),
                                size_of(a, "stride"), size_of(a, "padding"));
       }},
  };
}
template Replays<float> conv_replays<float>();
template Replays<double> conv_replays<double>();
}  // namespace detail

}  // namespace ad
