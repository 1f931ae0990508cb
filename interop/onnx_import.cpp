// ONNX import: a model's graph read into plain structures (no protobuf past load()), and a module
// that runs it node by node on this library's ops. Floating-point tensors are Variables (so the
// graph is differentiable); integer tensors (shapes, axes, indices) are computed eagerly beside
// them, as the shape arithmetic of exported models needs.
#include <algorithm>
#include <cmath>
#include <cstring>
#include <fstream>
#include <iterator>
#include <limits>
#include <map>
#include <numeric>
#include <set>
#include <variant>

#include <onnx/onnx_pb.h>

#include "autodiff/kernels/elementwise.hpp"
#include "autodiff/ops.hpp"
#include "interop/half.hpp"
#include "interop/onnx.hpp"

namespace ad::onnx {

namespace detail {

/// A tensor of a model (an initializer or a constant): ONNX's element type, the shape, and the
/// values as doubles (floating types) or as int64s (integer and bool types).
struct Tensor {
  int type = 0;
  Shape shape;
  std::vector<double> reals;
  std::vector<std::int64_t> ints;
  bool real() const {
    return type == ::onnx::TensorProto::FLOAT || type == ::onnx::TensorProto::DOUBLE ||
           type == ::onnx::TensorProto::FLOAT16 || type == ::onnx::TensorProto::BFLOAT16;
  }
};

using AttributeValue = std::variant<std::int64_t, float, std::string, std::vector<std::int64_t>,
                                    std::vector<float>, Tensor>;

struct Node {
  std::string op, name;
  std::vector<std::string> inputs, outputs;
  std::map<std::string, AttributeValue> attributes;
};

struct GraphInput {
  std::string name;
  int type = 0;
};

struct Graph {
  int opset = 0;
  std::vector<GraphInput> inputs;
  std::vector<std::string> outputs;
  std::vector<std::pair<std::string, Tensor>> initializers;
  std::vector<Node> nodes;
};

}  // namespace detail

namespace {

using detail::Graph;
using detail::Tensor;
using ::onnx::TensorProto;
using I64 = std::int64_t;
using Ints = Array<I64>;

// ---------------------------------------------------------------------------------------------
// Reading the model

std::size_t element_size(int type) {
  switch (type) {
    case TensorProto::FLOAT:
    case TensorProto::INT32:
    case TensorProto::UINT32:
      return 4;
    case TensorProto::DOUBLE:
    case TensorProto::INT64:
    case TensorProto::UINT64:
      return 8;
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16:
    case TensorProto::INT16:
    case TensorProto::UINT16:
      return 2;
    case TensorProto::INT8:
    case TensorProto::UINT8:
    case TensorProto::BOOL:
      return 1;
    default:
      return 0;
  }
}

/// A half or a bfloat16 as a number.
double half_value(std::uint16_t h, bool bfloat) {
  return bfloat ? interop::bfloat16_to_float(h) : interop::half_to_float(h);
}

/// One element of `type` from little-endian bytes, as a double or an int64.
void decode(int type, const char* p, Tensor& t) {
  switch (type) {
    case TensorProto::FLOAT: {
      float v;
      std::memcpy(&v, p, 4);
      t.reals.push_back(v);
      break;
    }
    case TensorProto::DOUBLE: {
      double v;
      std::memcpy(&v, p, 8);
      t.reals.push_back(v);
      break;
    }
    case TensorProto::FLOAT16:
    case TensorProto::BFLOAT16: {
      std::uint16_t h;
      std::memcpy(&h, p, 2);
      t.reals.push_back(half_value(h, type == TensorProto::BFLOAT16));
      break;
    }
    case TensorProto::INT64:
    case TensorProto::UINT64: {
      I64 v;
      std::memcpy(&v, p, 8);
      t.ints.push_back(v);
      break;
    }
    case TensorProto::INT32: {
      std::int32_t v;
      std::memcpy(&v, p, 4);
      t.ints.push_back(v);
      break;
    }
    case TensorProto::UINT32: {
      std::uint32_t v;
      std::memcpy(&v, p, 4);
      t.ints.push_back(v);
      break;
    }
    case TensorProto::INT16: {
      std::int16_t v;
      std::memcpy(&v, p, 2);
      t.ints.push_back(v);
      break;
    }
    case TensorProto::UINT16: {
      std::uint16_t v;
      std::memcpy(&v, p, 2);
      t.ints.push_back(v);
      break;
    }
    case TensorProto::INT8:
      t.ints.push_back(static_cast<std::int8_t>(*p));
      break;
    case TensorProto::UINT8:
      t.ints.push_back(static_cast<std::uint8_t>(*p));
      break;
    case TensorProto::BOOL:
      t.ints.push_back(*p != 0);
      break;
  }
}

}  // namespace

namespace detail {
/// A TensorProto read into a Tensor, its sizes checked; errors name `what`.
Tensor read_tensor_proto(const TensorProto& p, const std::string& what) {
  Tensor t;
  t.type = p.data_type();
  const std::size_t size = element_size(t.type);
  if (!size)
    fail("onnx: ", what, " has element type ", t.type, " (",
         TensorProto::DataType_Name(static_cast<TensorProto::DataType>(t.type)),
         "), which this library does not read");
  if (p.data_location() == TensorProto::EXTERNAL)
    fail("onnx: ", what, " keeps its data in an external file, which this library does not read");
  for (I64 d : p.dims()) {
    if (d < 0) fail("onnx: ", what, " has a negative extent ", d);
    t.shape.push_back(std::size_t(d));
  }
  // (Also for a shape with a zero extent: xtensor multiplies the others into signed strides.)
  const std::optional<std::size_t> checked = checked_shape_size(t.shape);
  if (!checked || *checked > (std::size_t(1) << 40))
    fail("onnx: ", what, " has a shape ", shape_str(t.shape), " whose size overflows");
  const std::size_t count = *checked;
  // The data must be there before anything is allocated for it.
  std::size_t held = 0;
  if (p.has_raw_data()) {
    held = p.raw_data().size() / size;
    if (p.raw_data().size() != count * size)
      fail("onnx: ", what, " holds ", p.raw_data().size(), " bytes of data, its shape ",
           shape_str(t.shape), " needs ", count * size);
  } else {
    switch (t.type) {
      case TensorProto::FLOAT:
        held = std::size_t(p.float_data_size());
        break;
      case TensorProto::DOUBLE:
        held = std::size_t(p.double_data_size());
        break;
      case TensorProto::INT64:
        held = std::size_t(p.int64_data_size());
        break;
      case TensorProto::UINT32:
      case TensorProto::UINT64:
        held = std::size_t(p.uint64_data_size());
        break;
      default:
        held = std::size_t(p.int32_data_size());
        break;
    }
    if (held != count)
      fail("onnx: ", what, " holds ", held, " values, its shape ", shape_str(t.shape), " needs ",
           count);
  }
  if (t.real())
    t.reals.reserve(count);
  else
    t.ints.reserve(count);
  if (p.has_raw_data()) {
    const char* d = p.raw_data().data();
    for (std::size_t i = 0; i < count; ++i) decode(t.type, d + i * size, t);
    return t;
  }
  for (std::size_t i = 0; i < count; ++i) {
    switch (t.type) {
      case TensorProto::FLOAT:
        t.reals.push_back(p.float_data(int(i)));
        break;
      case TensorProto::DOUBLE:
        t.reals.push_back(p.double_data(int(i)));
        break;
      case TensorProto::INT64:
        t.ints.push_back(p.int64_data(int(i)));
        break;
      case TensorProto::UINT32:
      case TensorProto::UINT64:
        t.ints.push_back(I64(p.uint64_data(int(i))));
        break;
      case TensorProto::FLOAT16:
      case TensorProto::BFLOAT16:
        t.reals.push_back(
            half_value(std::uint16_t(p.int32_data(int(i))), t.type == TensorProto::BFLOAT16));
        break;
      case TensorProto::BOOL:
        t.ints.push_back(p.int32_data(int(i)) != 0);
        break;
      default:
        t.ints.push_back(p.int32_data(int(i)));
        break;
    }
  }
  return t;
}

}  // namespace detail

namespace {

std::shared_ptr<const Graph> read_graph(const std::string& bytes, const std::string& source) {
  ::onnx::ModelProto model;
  if (bytes.empty() || !model.ParseFromString(bytes))
    fail("onnx: '", source, "' is not an ONNX model (no ModelProto could be read)");
  auto g = std::make_shared<Graph>();
  for (const auto& o : model.opset_import())
    if (o.domain().empty() || o.domain() == "ai.onnx") g->opset = int(o.version());
  if (!model.has_graph()) fail("onnx: '", source, "' has no graph");
  const ::onnx::GraphProto& graph = model.graph();
  std::set<std::string> defined;
  for (const auto& init : graph.initializer()) {
    if (defined.count(init.name()))
      fail("onnx: '", source, "': initializer '", init.name(), "' is defined twice");
    g->initializers.emplace_back(
        init.name(), detail::read_tensor_proto(init, "initializer '" + init.name() + "'"));
    defined.insert(init.name());
  }
  for (const auto& in : graph.input()) {
    if (defined.count(in.name())) continue;  // an initializer listed as an input (IR < 4)
    int type = in.type().tensor_type().elem_type();
    for (const auto& d : in.type().tensor_type().shape().dim())
      if (d.has_dim_value() && d.dim_value() < 0)
        fail("onnx: '", source, "': input '", in.name(), "' declares a negative extent");
    g->inputs.push_back({in.name(), type});
    defined.insert(in.name());
  }
  for (int k = 0; k < graph.node_size(); ++k) {
    const auto& n = graph.node(k);
    detail::Node node;
    node.op = n.op_type();
    node.name = n.name();
    if (!n.domain().empty() && n.domain() != "ai.onnx")
      fail("onnx: '", source, "': node ", k, " ('", n.name(), "') is ", n.op_type(),
           " of the domain '", n.domain(), "', which this library does not run");
    for (const auto& in : n.input()) {
      if (!in.empty() && !defined.count(in))
        fail("onnx: '", source, "': node ", k, " ('", n.name(), "', ", n.op_type(), ") reads '", in,
             "', which no input, initializer or earlier node defines (a missing initializer, or "
             "nodes out of order: a cycle)");
      node.inputs.push_back(in);
    }
    for (const auto& out : n.output()) {
      if (!out.empty() && defined.count(out))
        fail("onnx: '", source, "': node ", k, " ('", n.name(), "') defines '", out, "' again");
      if (!out.empty()) defined.insert(out);
      node.outputs.push_back(out);
    }
    for (const auto& a : n.attribute()) {
      using A = ::onnx::AttributeProto;
      switch (a.type()) {
        case A::INT:
          node.attributes[a.name()] = I64(a.i());
          break;
        case A::FLOAT:
          node.attributes[a.name()] = a.f();
          break;
        case A::STRING:
          node.attributes[a.name()] = a.s();
          break;
        case A::INTS:
          node.attributes[a.name()] = std::vector<I64>(a.ints().begin(), a.ints().end());
          break;
        case A::FLOATS:
          node.attributes[a.name()] = std::vector<float>(a.floats().begin(), a.floats().end());
          break;
        case A::TENSOR:
          node.attributes[a.name()] = detail::read_tensor_proto(
              a.t(), "attribute '" + a.name() + "' of node '" + n.name() + "'");
          break;
        default:
          break;  // graphs, sparse tensors, types: no op this library runs takes them
      }
    }
    g->nodes.push_back(std::move(node));
  }
  for (const auto& out : graph.output()) {
    if (!defined.count(out.name()))
      fail("onnx: '", source, "': output '", out.name(), "' is not computed by the graph");
    g->outputs.push_back(out.name());
  }
  if (g->outputs.empty()) fail("onnx: '", source, "' has no output");
  return g;
}

// ---------------------------------------------------------------------------------------------
// Values and ops

/// A value of the running graph: a floating-point tensor (a Variable) or an integer one.
template <class T>
struct Value {
  Variable<T> real;
  Ints ints;
  bool integer = false;
  bool boolean = false;
  bool defined() const { return integer || real.defined(); }
  static Value of(Variable<T> v) {
    Value x;
    x.real = std::move(v);
    return x;
  }
  static Value of(Ints i, bool boolean = false) {
    Value x;
    x.ints = std::move(i);
    x.integer = true;
    x.boolean = boolean;
    return x;
  }
  Shape shape() const {
    return integer ? Shape(ints.shape().begin(), ints.shape().end()) : real.shape();
  }
};

template <class T>
Value<T> from_tensor(const Tensor& t) {
  if (t.real()) {
    Array<T> a = Array<T>::from_shape(t.shape);
    std::transform(t.reals.begin(), t.reals.end(), a.data(), [](double v) { return T(v); });
    return Value<T>::of(Variable<T>(std::move(a)));
  }
  Ints i = Ints::from_shape(t.shape);
  std::copy(t.ints.begin(), t.ints.end(), i.data());
  return Value<T>::of(std::move(i), t.type == TensorProto::BOOL);
}

/// An ONNX name as one module name: '.', '/' and ':' replaced by '_'.
std::string flat_name(const std::string& name) {
  std::string flat = name.empty() ? "unnamed" : name;
  for (char& ch : flat)
    if (ch == '.' || ch == '/' || ch == ':') ch = '_';
  return flat;
}

Ints ints_of(const std::vector<I64>& v) {
  Ints a = Ints::from_shape({v.size()});
  std::copy(v.begin(), v.end(), a.data());
  return a;
}

/// One node being run: its inputs, attributes, and what its errors say.
template <class T>
struct Call {
  const detail::Node& node;
  std::size_t index;
  int opset;
  std::vector<Value<T>> in;

  [[noreturn]] void error(const std::string& what) const {
    fail("onnx: node ", index, " ('", node.name, "', ", node.op, "): ", what);
  }
  bool has(std::size_t i) const { return i < in.size() && in[i].defined(); }
  const Value<T>& at(std::size_t i) const {
    if (!has(i)) error("input " + std::to_string(i) + " is missing");
    return in[i];
  }
  /// Input i as a floating-point Variable (an integer input as a constant).
  Variable<T> real(std::size_t i) const {
    const Value<T>& v = at(i);
    if (!v.integer) return v.real;
    Array<T> a = Array<T>::from_shape(v.shape());
    std::transform(v.ints.begin(), v.ints.end(), a.begin(), [](I64 x) { return T(x); });
    return Variable<T>(std::move(a));
  }
  /// Input i as integers (a floating input whose values are whole numbers is taken too: a
  /// graph input of token ids given as T).
  Ints ints(std::size_t i) const {
    const Value<T>& v = at(i);
    if (v.integer) return v.ints;
    Ints a = Ints::from_shape(v.real.shape());
    const T* p = v.real.value().data();
    for (std::size_t k = 0; k < a.size(); ++k) {
      if (!(std::isfinite(p[k]) && std::floor(p[k]) == p[k]))
        error("input " + std::to_string(i) + " must hold integers, got " + std::to_string(p[k]));
      a.data()[k] = I64(p[k]);
    }
    return a;
  }
  std::vector<I64> list(std::size_t i) const {
    Ints a = ints(i);
    return std::vector<I64>(a.begin(), a.end());
  }
  bool attr(const char* name) const { return node.attributes.count(name) > 0; }
  template <class V>
  const V* find(const char* name) const {
    auto it = node.attributes.find(name);
    if (it == node.attributes.end()) return nullptr;
    const V* v = std::get_if<V>(&it->second);
    if (!v) error(std::string("attribute '") + name + "' has the wrong type");
    return v;
  }
  I64 i(const char* name, I64 otherwise) const {
    const I64* v = find<I64>(name);
    return v ? *v : otherwise;
  }
  float f(const char* name, float otherwise) const {
    const float* v = find<float>(name);
    return v ? *v : otherwise;
  }
  std::string s(const char* name, const std::string& otherwise) const {
    const std::string* v = find<std::string>(name);
    return v ? *v : otherwise;
  }
  std::vector<I64> is(const char* name, std::vector<I64> otherwise = {}) const {
    const std::vector<I64>* v = find<std::vector<I64>>(name);
    return v ? *v : otherwise;
  }
  /// An axis attribute or value normalised against `rank`.
  std::size_t axis(I64 a, std::size_t rank) const {
    const I64 r = I64(rank);
    if (a < -r || a >= r)
      error("axis " + std::to_string(a) + " is out of range for rank " + std::to_string(rank));
    return std::size_t(a < 0 ? a + r : a);
  }
};

template <class T>
using Outputs = std::vector<Value<T>>;
template <class T>
using OpFn = Outputs<T> (*)(Call<T>&);

template <class T>
Outputs<T> one(Variable<T> v) {
  return {Value<T>::of(std::move(v))};
}
template <class T>
Outputs<T> one(Ints i, bool boolean = false) {
  return {Value<T>::of(std::move(i), boolean)};
}

/// A shape read from an integer tensor: no negative extent, a size that can be counted.
template <class T>
Shape to_shape(const Call<T>& c, const std::vector<I64>& v) {
  Shape s;
  for (I64 d : v) {
    if (d < 0) c.error("a negative extent " + std::to_string(d));
    s.push_back(std::size_t(d));
  }
  if (!checked_shape_size(s)) c.error("the shape " + shape_str(s) + " overflows");
  return s;
}

/// Integers reshaped (they keep their order).
Ints reshaped(Ints a, const Shape& s) {
  a.reshape(s);
  return a;
}

/// The target of an ONNX Reshape: 0 copies the input's extent (unless allowzero), -1 is inferred.
template <class T>
Shape reshape_target(const Call<T>& c, const Shape& in, const std::vector<I64>& want,
                     bool allowzero) {
  Shape out;
  std::size_t known = 1;
  std::ptrdiff_t inferred = -1;
  for (std::size_t k = 0; k < want.size(); ++k) {
    I64 d = want[k];
    if (d == 0 && !allowzero) {
      if (k >= in.size()) c.error("shape entry 0 at " + std::to_string(k) + " has no input extent");
      d = I64(in[k]);
    }
    if (d == -1) {
      if (inferred >= 0) c.error("the shape has two -1 entries");
      inferred = std::ptrdiff_t(k);
      out.push_back(1);
      continue;
    }
    if (d < 0) c.error("the shape has a negative entry " + std::to_string(d));
    out.push_back(std::size_t(d));
    known *= std::size_t(d);
  }
  const std::size_t total = shape_size(in);
  if (!checked_shape_size(out)) c.error("the shape " + shape_str(out) + " overflows");
  if (inferred >= 0) {
    if (known == 0 || total % known) c.error("cannot infer -1 for " + shape_str(in));
    out[std::size_t(inferred)] = total / known;
  }
  if (shape_size(out) != total)
    c.error("cannot reshape " + shape_str(in) + " to " + shape_str(out));
  return out;
}

/// The broadcast of two shapes (NumPy's rule; Expand's two-way broadcasting).
template <class T>
Shape broadcast(const Call<T>& c, const Shape& a, const Shape& b) {
  Shape out(std::max(a.size(), b.size()), 1);
  for (std::size_t k = 0; k < out.size(); ++k) {
    const std::size_t x = k < out.size() - a.size() ? 1 : a[k - (out.size() - a.size())];
    const std::size_t y = k < out.size() - b.size() ? 1 : b[k - (out.size() - b.size())];
    if (x != y && x != 1 && y != 1)
      c.error("shapes " + shape_str(a) + " and " + shape_str(b) + " do not broadcast");
    out[k] = x == 1 ? y : x;
  }
  if (!checked_shape_size(out)) c.error("the broadcast shape " + shape_str(out) + " overflows");
  return out;
}

/// Integers of `a` broadcast to `shape`.
Ints broadcast_ints(const Ints& a, const Shape& shape) {
  Ints zero = Ints::from_shape(shape);
  std::fill(zero.begin(), zero.end(), 0);
  return kernels::binary(
      a, zero, [](I64 x, I64) { return x; }, "Expand");
}

/// Integers along `axis` at `positions` (Gather on integers, Slice's general case).
Ints take_ints(const Ints& a, std::size_t axis, const std::vector<std::size_t>& positions) {
  Shape s(a.shape().begin(), a.shape().end());
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= s[d];
  for (std::size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
  const std::size_t extent = s[axis];
  s[axis] = positions.size();
  Ints out = Ints::from_shape(s);
  I64* o = out.data();
  for (std::size_t q = 0; q < outer; ++q)
    for (std::size_t p : positions)
      for (std::size_t r = 0; r < inner; ++r) *o++ = a.data()[(q * extent + p) * inner + r];
  return out;
}

/// Integer arrays joined along `axis`.
template <class T>
Ints concat_ints(const Call<T>& c, const std::vector<Ints>& parts, std::size_t axis) {
  Shape s(parts[0].shape().begin(), parts[0].shape().end());
  std::size_t outer = 1, inner = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= s[d];
  for (std::size_t d = axis + 1; d < s.size(); ++d) inner *= s[d];
  s[axis] = 0;
  for (const Ints& p : parts) {
    if (p.dimension() != s.size()) c.error("inputs of different ranks");
    for (std::size_t d = 0; d < s.size(); ++d)
      if (d != axis && p.shape()[d] != parts[0].shape()[d]) c.error("inputs do not agree");
    s[axis] += p.shape()[axis];
  }
  Ints out = Ints::from_shape(s);
  I64* o = out.data();
  for (std::size_t q = 0; q < outer; ++q)
    for (const Ints& p : parts) {
      const std::size_t n = p.shape()[axis] * inner;
      std::copy(p.data() + q * n, p.data() + (q + 1) * n, o);
      o += n;
    }
  return out;
}

/// Zeros added before and after along `axis` (differentiable: unslice).
template <class T>
Variable<T> pad_zeros(const Variable<T>& x, std::size_t axis, std::size_t before,
                      std::size_t after) {
  if (before == 0 && after == 0) return x;
  Shape s = x.shape();
  s[axis] += before + after;
  return unslice(x, s, long(axis), before, 1);
}

/// x with `value` added around it along `axis` (constant padding).
template <class T>
Variable<T> pad_value(const Variable<T>& x, std::size_t axis, std::size_t before, std::size_t after,
                      T value) {
  if (value == T(0)) return pad_zeros(x, axis, before, after);
  std::vector<Variable<T>> parts;
  Shape s = x.shape();
  if (before) {
    s[axis] = before;
    parts.push_back(full(s, value));
  }
  parts.push_back(x);
  if (after) {
    s[axis] = after;
    parts.push_back(full(s, value));
  }
  return parts.size() == 1 ? x : concatenate(parts, long(axis));
}

/// Positions start, start + step, ... of ONNX's Slice along an axis of `extent` (negative starts
/// and ends count from the end; both are clamped as the spec says).
std::vector<std::size_t> slice_positions(I64 start, I64 end, I64 step, I64 extent) {
  std::vector<std::size_t> out;
  if (start < 0) start += extent;
  if (end < 0) end += extent;
  if (step > 0) {
    start = std::clamp<I64>(start, 0, extent);
    end = std::clamp<I64>(end, 0, extent);
    for (I64 k = start; k < end; k += step) out.push_back(std::size_t(k));
  } else {
    start = std::clamp<I64>(start, 0, extent - 1);
    end = std::clamp<I64>(end, -1, extent - 1);
    for (I64 k = start; k > end; k += step) out.push_back(std::size_t(k));
  }
  return out;
}

/// x's entries at `positions` along `axis`: a slice when they are evenly spaced going up, else
/// an index_select.
template <class T>
Variable<T> take(const Variable<T>& x, std::size_t axis,
                 const std::vector<std::size_t>& positions) {
  if (positions.size() == x.shape()[axis]) {
    bool identity = true;
    for (std::size_t k = 0; k < positions.size(); ++k) identity = identity && positions[k] == k;
    if (identity) return x;
  }
  if (!positions.empty()) {
    const std::size_t step = positions.size() > 1 ? positions[1] - positions[0] : 1;
    bool even = positions.size() == 1 || (positions[1] > positions[0]);
    for (std::size_t k = 1; even && k < positions.size(); ++k)
      even = positions[k] == positions[0] + k * step;
    if (even)
      return slice(x, long(axis), positions[0], positions.back() + 1,
                   std::max<std::size_t>(step, 1));
  }
  return index_select(x, long(axis), Index(positions));
}

/// Reduction axes from the attribute "axes" (or from input 1 where the opset takes them so),
/// normalised; empty means all.
template <class T>
std::vector<long> reduction_axes(const Call<T>& c, bool from_input, std::size_t rank) {
  std::vector<I64> axes = from_input ? (c.has(1) ? c.list(1) : std::vector<I64>{}) : c.is("axes");
  std::vector<long> out;
  for (I64 a : axes) out.push_back(long(c.axis(a, rank)));
  return out;
}

/// A reduction of op `f` with ONNX's keepdims (default 1) and, for an empty axes list, either
/// every axis or (noop_with_empty_axes) none.
template <class T, class F>
Outputs<T> reduction(Call<T>& c, bool axes_input, F f) {
  const Variable<T> x = c.real(0);
  std::vector<long> axes = reduction_axes(c, axes_input, x.dim());
  if (axes.empty() && c.i("noop_with_empty_axes", 0)) return one(x);
  if (axes.empty())
    for (std::size_t d = 0; d < x.dim(); ++d) axes.push_back(long(d));
  if (x.dim() == 0) return one(x);
  return one(f(x, axes, c.i("keepdims", 1) != 0));
}

/// A 2-D window operation's geometry from ONNX's attributes (1-D: height 1).
struct Window {
  std::size_t kh = 1, kw = 1, sh = 1, sw = 1, dh = 1, dw = 1;
  std::size_t top = 0, bottom = 0, left = 0, right = 0;
  bool symmetric() const { return top == bottom && left == right; }
};

/// The window of a Conv or pooling node over spatial extents (h, w), the kernel given.
template <class T>
Window window(const Call<T>& c, bool one_d, std::size_t h, std::size_t w, std::size_t kh,
              std::size_t kw) {
  Window g;
  g.kh = kh, g.kw = kw;
  const std::size_t n = one_d ? 1 : 2;
  auto pick = [&](const char* name, std::size_t def) {
    std::vector<I64> v = c.is(name);
    if (v.empty()) v.assign(n, I64(def));
    if (v.size() != n) c.error(std::string("attribute '") + name + "' has the wrong length");
    for (I64 x : v)
      if (x <= 0) c.error(std::string("attribute '") + name + "' must be positive");
    return one_d ? std::pair<std::size_t, std::size_t>{1, std::size_t(v[0])}
                 : std::pair<std::size_t, std::size_t>{std::size_t(v[0]), std::size_t(v[1])};
  };
  std::tie(g.sh, g.sw) = pick("strides", 1);
  std::tie(g.dh, g.dw) = pick("dilations", 1);
  const std::string auto_pad = c.s("auto_pad", "NOTSET");
  if (auto_pad == "SAME_UPPER" || auto_pad == "SAME_LOWER") {
    auto same = [&](std::size_t in, std::size_t k, std::size_t s, std::size_t d, std::size_t& begin,
                    std::size_t& end) {
      const std::size_t out = (in + s - 1) / s;
      const std::size_t need = (out - 1) * s + (k - 1) * d + 1;
      const std::size_t total = need > in ? need - in : 0;
      begin = auto_pad == "SAME_UPPER" ? total / 2 : total - total / 2;
      end = total - begin;
    };
    same(h, g.kh, g.sh, g.dh, g.top, g.bottom);
    same(w, g.kw, g.sw, g.dw, g.left, g.right);
  } else if (auto_pad == "NOTSET") {
    std::vector<I64> p = c.is("pads");
    if (p.empty()) p.assign(2 * n, 0);
    if (p.size() != 2 * n) c.error("attribute 'pads' has the wrong length");
    for (I64 x : p)
      if (x < 0) c.error("negative pads");
    if (one_d) {
      g.left = std::size_t(p[0]), g.right = std::size_t(p[1]);
    } else {
      g.top = std::size_t(p[0]), g.left = std::size_t(p[1]);
      g.bottom = std::size_t(p[2]), g.right = std::size_t(p[3]);
    }
  } else if (auto_pad != "VALID") {
    c.error("auto_pad '" + auto_pad + "' is unknown");
  }
  return g;
}

/// A 1-D input (N, C, L) as (N, C, 1, L).
template <class T>
Variable<T> lift(const Variable<T>& x) {
  const Shape& s = x.shape();
  return reshape(x, Shape{s[0], s[1], 1, s[2]});
}

/// Max or average pooling over any window (kernels, strides, dilations, pads per axis) as a
/// composite of slices: each tap of the window is one strided slice of the padded input.
template <class T>
Variable<T> pool_by_taps(const Variable<T>& x, const Window& g, bool max, bool include_pad,
                         const Call<T>& c) {
  const T low = -std::numeric_limits<T>::infinity();
  Variable<T> p = max ? pad_value(pad_value(x, 2, g.top, g.bottom, low), 3, g.left, g.right, low)
                      : pad_zeros(pad_zeros(x, 2, g.top, g.bottom), 3, g.left, g.right);
  const std::size_t H = p.shape()[2], W = p.shape()[3];
  const std::size_t span_h = (g.kh - 1) * g.dh + 1, span_w = (g.kw - 1) * g.dw + 1;
  if (H < span_h || W < span_w) c.error("the window is larger than the padded input");
  const std::size_t ho = (H - span_h) / g.sh + 1, wo = (W - span_w) / g.sw + 1;
  Variable<T> out;
  for (std::size_t i = 0; i < g.kh; ++i)
    for (std::size_t j = 0; j < g.kw; ++j) {
      Variable<T> tap = slice(slice(p, 2, i * g.dh, i * g.dh + (ho - 1) * g.sh + 1, g.sh), 3,
                              j * g.dw, j * g.dw + (wo - 1) * g.sw + 1, g.sw);
      out = !out.defined() ? tap : max ? maximum(out, tap) : out + tap;
    }
  if (max) return out;
  if (include_pad) return out * (T(1) / T(g.kh * g.kw));
  // Divide by the taps inside the input: the same sum over a padded tensor of ones.
  Shape ones_shape = x.shape();
  Variable<T> ones(Array<T>(xt::ones<T>(ones_shape)));
  Window counting = g;
  Variable<T> count = pool_by_taps(ones, counting, false, true, c) * T(g.kh * g.kw);
  return out / Variable<T>(count.value());
}

/// A Conv, MaxPool or AveragePool node's input as 2-D: (N, C, H, W), and whether it was 1-D.
template <class T>
std::pair<Variable<T>, bool> spatial(const Call<T>& c, const Variable<T>& x) {
  if (x.dim() == 3) return {lift(x), true};
  if (x.dim() != 4)
    c.error("input " + shape_str(x.shape()) + " is not 1-D or 2-D spatial (3-D is not supported)");
  return {x, false};
}

template <class T>
Variable<T> unlift(const Variable<T>& y, bool one_d) {
  if (!one_d) return y;
  const Shape& s = y.shape();
  return reshape(y, Shape{s[0], s[1], s[3]});
}

template <class T>
Outputs<T> pooling(Call<T>& c, bool max) {
  auto [x, one_d] = spatial(c, c.real(0));
  if (c.node.outputs.size() > 1 && !c.node.outputs[1].empty())
    c.error("the indices output of MaxPool is not supported");
  if (c.i("ceil_mode", 0)) c.error("ceil_mode = 1 is not supported");
  if (c.i("storage_order", 0)) c.error("storage_order = 1 is not supported");
  const std::vector<I64> k = c.is("kernel_shape");
  if (k.size() != (one_d ? 1u : 2u)) c.error("kernel_shape has the wrong length");
  for (I64 v : k)
    if (v <= 0) c.error("kernel_shape must be positive");
  const std::size_t kh = one_d ? 1 : std::size_t(k[0]), kw = std::size_t(k.back());
  const Window g = window(c, one_d, x.shape()[2], x.shape()[3], kh, kw);
  const bool include_pad = c.i("count_include_pad", 0) != 0;
  const bool square = g.kh == g.kw && g.sh == g.sw && g.dh == 1 && g.dw == 1 && g.symmetric() &&
                      g.top == g.left && 2 * g.top <= g.kh;
  Variable<T> y;
  if (square && max)
    y = max_pool2d(x, g.kh, g.sh, g.top);
  else if (square && (include_pad || g.top == 0))
    y = avg_pool2d(x, g.kh, g.sh, g.top);
  else
    y = pool_by_taps(x, g, max, include_pad, c);
  return one(unlift(y, one_d));
}

template <class T>
Outputs<T> convolution(Call<T>& c) {
  auto [x, one_d] = spatial(c, c.real(0));
  Variable<T> w = c.real(1);
  if (w.dim() != (one_d ? 3u : 4u)) c.error("weight " + shape_str(w.shape()) + " does not match");
  if (one_d) w = lift(w);
  Window g = window(c, one_d, x.shape()[2], x.shape()[3], w.shape()[2], w.shape()[3]);
  if (!g.symmetric()) {
    x = pad_zeros(pad_zeros(x, 2, g.top, g.bottom), 3, g.left, g.right);
    g.top = g.bottom = g.left = g.right = 0;
  }
  ConvOptions o;
  o.stride_h = g.sh, o.stride_w = g.sw, o.dilation_h = g.dh, o.dilation_w = g.dw;
  o.padding_h = g.top, o.padding_w = g.left;
  o.groups = std::size_t(c.i("group", 1));
  return one(unlift(conv2d(x, w, c.has(2) ? c.real(2) : Variable<T>(), o), one_d));
}

template <class T>
Outputs<T> conv_transpose(Call<T>& c) {
  auto [x, one_d] = spatial(c, c.real(0));
  Variable<T> w = c.real(1);
  if (w.dim() != (one_d ? 3u : 4u)) c.error("weight " + shape_str(w.shape()) + " does not match");
  if (one_d) w = lift(w);
  if (c.s("auto_pad", "NOTSET") != "NOTSET") c.error("auto_pad is not supported for ConvTranspose");
  const Window g = window(c, one_d, x.shape()[2], x.shape()[3], w.shape()[2], w.shape()[3]);
  if (!g.symmetric()) c.error("asymmetric pads are not supported");
  const std::size_t groups = std::size_t(c.i("group", 1));
  std::vector<I64> extra = c.is("output_padding", std::vector<I64>(one_d ? 1 : 2, 0));
  if (one_d) extra.insert(extra.begin(), 0);
  auto out_extent = [&](std::size_t in, std::size_t k, std::size_t s, std::size_t d,
                        std::size_t pad, I64 add) {
    const I64 v = I64(s * (in - 1) + (k - 1) * d + 1) + add - 2 * I64(pad);
    if (v <= 0) c.error("the output would be empty");
    return std::size_t(v);
  };
  std::size_t H = out_extent(x.shape()[2], w.shape()[2], g.sh, g.dh, g.top, extra.at(0));
  std::size_t W = out_extent(x.shape()[3], w.shape()[3], g.sw, g.dw, g.left, extra.at(1));
  const std::vector<I64> given = c.is("output_shape");
  if (!given.empty()) {
    if (given.size() != (one_d ? 1u : 2u)) c.error("output_shape has the wrong length");
    W = std::size_t(given.back());
    if (!one_d) H = std::size_t(given[0]);
  }
  ConvOptions o;
  o.stride_h = g.sh, o.stride_w = g.sw, o.dilation_h = g.dh, o.dilation_w = g.dw;
  o.padding_h = g.top, o.padding_w = g.left, o.groups = groups;
  const Shape out{x.shape()[0], w.shape()[1] * groups, H, W};
  Variable<T> y = conv2d_input_grad(x, w, out, o);
  if (c.has(2)) y = y + reshape(c.real(2), Shape{1, out[1], 1, 1});
  return one(unlift(y, one_d));
}

/// A per-channel vector (C) as (1, C, 1, ...) for an input of `rank`.
template <class T>
Variable<T> channels(const Variable<T>& v, std::size_t rank) {
  Shape s(rank, 1);
  s[1] = v.size();
  return reshape(v, s);
}

template <class T>
Variable<T> matmul_nd(const Call<T>& c, Variable<T> a, Variable<T> b) {
  const bool vec_a = a.dim() == 1, vec_b = b.dim() == 1;
  if (vec_a) a = reshape(a, Shape{1, a.size()});
  if (vec_b) b = reshape(b, Shape{b.size(), 1});
  if (a.dim() < 2 || b.dim() < 2) c.error("operands of rank 0");
  Variable<T> y;
  const std::size_t m = a.shape()[a.dim() - 2], k = a.shape().back(), n = b.shape().back();
  if (b.dim() == 2 && a.dim() <= 3) {
    y = matmul(a, b);
  } else if (b.dim() == 2) {
    Shape s = a.shape();
    y = reshape(matmul(reshape(a, Shape{a.size() / k, k}), b), [&] {
      s.back() = n;
      return s;
    }());
  } else {
    Shape ba(a.shape().begin(), a.shape().end() - 2), bb(b.shape().begin(), b.shape().end() - 2);
    const Shape batch = broadcast(c, ba, bb);
    Shape sa = batch, sb = batch;
    sa.push_back(m), sa.push_back(k), sb.push_back(b.shape()[b.dim() - 2]), sb.push_back(n);
    const std::size_t count = shape_size(batch);
    Variable<T> a3 = reshape(broadcast_to(a, sa), Shape{count, m, k});
    Variable<T> b3 = reshape(broadcast_to(b, sb), Shape{count, sb[sb.size() - 2], n});
    Shape so = batch;
    so.push_back(m), so.push_back(n);
    y = reshape(matmul(a3, b3), so);
  }
  if (vec_a || vec_b) {
    Shape s = y.shape();
    if (vec_b) s.erase(s.end() - 1);
    if (vec_a) s.erase(s.end() - (vec_b ? 1 : 2));
    y = reshape(y, s);
  }
  return y;
}

/// Softmax-like ops: opset 13 takes one axis; earlier opsets flatten to 2-D at the axis.
template <class T, class F>
Outputs<T> softmax_like(Call<T>& c, F f) {
  const Variable<T> x = c.real(0);
  if (x.dim() == 0) return one(reshape(f(reshape(x, Shape{1}), -1), Shape{}));
  if (c.opset >= 13) return one(f(x, long(c.axis(c.i("axis", -1), x.dim()))));
  const std::size_t axis = c.axis(c.i("axis", 1), x.dim());
  std::size_t outer = 1;
  for (std::size_t d = 0; d < axis; ++d) outer *= x.shape()[d];
  return one(reshape(f(reshape(x, Shape{outer, x.size() / std::max<std::size_t>(outer, 1)}), 1),
                     x.shape()));
}

template <class T, class F>
Outputs<T> variadic(Call<T>& c, F f) {
  Variable<T> y = c.real(0);
  for (std::size_t k = 1; k < c.in.size(); ++k) y = f(y, c.real(k));
  return one(y);
}

/// An elementwise binary op on integers (shape arithmetic) or on Variables.
template <class T, class R, class I>
Outputs<T> arithmetic(Call<T>& c, R real, I integer) {
  if (c.at(0).integer && c.at(1).integer)
    return one<T>(kernels::binary(c.ints(0), c.ints(1), integer, c.node.op.c_str()));
  return one(real(c.real(0), c.real(1)));
}

template <class T, class P>
Outputs<T> comparison(Call<T>& c, P p) {
  if (c.at(0).integer && c.at(1).integer)
    return one<T>(
        kernels::binary(
            c.ints(0), c.ints(1), [p](I64 x, I64 y) { return I64(p(double(x), double(y))); },
            c.node.op.c_str()),
        true);
  return one<T>(kernels::binary(
                    c.real(0).value(), c.real(1).value(),
                    [p](T x, T y) { return I64(p(double(x), double(y))); }, c.node.op.c_str()),
                true);
}

template <class T, class P>
Outputs<T> logical(Call<T>& c, P p) {
  return one<T>(kernels::binary(
                    c.ints(0), c.ints(1), [p](I64 x, I64 y) { return I64(p(x != 0, y != 0)); },
                    c.node.op.c_str()),
                true);
}

/// The mask of a boolean value.
template <class T>
Mask mask_of(const Call<T>& c, std::size_t i) {
  const Ints v = c.ints(i);
  return kernels::unary(v, [](I64 x) { return x != 0; });
}

/// ONNX's LSTM (opset 7 to 14) on lstm_cell: the default activations, no peepholes, clip or
/// coupled gates, every sequence of full length; forward, reverse or both directions; the input
/// projection of all steps as one product before the recurrence.
template <class T>
Outputs<T> lstm(Call<T>& c) {
  using V = Variable<T>;
  if (c.has(4)) {
    // Lengths that are all the full length change nothing.
    const std::vector<I64> lengths = c.list(4);
    const I64 full = I64(c.at(0).shape()[c.i("layout", 0) ? 1 : 0]);
    for (I64 l : lengths)
      if (l != full) c.error("sequence_lens shorter than the sequence is not supported");
  }
  if (c.has(7)) c.error("peepholes (input P) are not supported");
  if (c.attr("clip")) c.error("clip is not supported");
  if (c.i("input_forget", 0)) c.error("input_forget = 1 is not supported");
  if (c.attr("activations")) c.error("activations other than the defaults are not supported");
  const bool batch_first = c.i("layout", 0) != 0;
  V x = c.real(0);
  if (x.dim() != 3) c.error("X must be 3-D");
  if (batch_first) x = permute(x, {1, 0, 2});  // (L, N, input)
  const std::size_t length = x.shape()[0], n = x.shape()[1];
  const V w = c.real(1), r = c.real(2);
  const std::size_t hidden = std::size_t(c.i("hidden_size", I64(r.shape().back())));
  const std::string direction = c.s("direction", "forward");
  const std::size_t dirs = direction == "bidirectional" ? 2 : 1;
  if (direction != "forward" && direction != "reverse" && direction != "bidirectional")
    c.error("direction '" + direction + "' is unknown");
  if (w.shape() != Shape{dirs, 4 * hidden, x.shape()[2]} ||
      r.shape() != Shape{dirs, 4 * hidden, hidden})
    c.error("W " + shape_str(w.shape()) + " or R " + shape_str(r.shape()) + " does not match");
  // ONNX orders the gates i, o, f, c; lstm_cell takes i, f, c, o.
  auto reorder = [&](const V& m, std::size_t axis) {
    auto gate = [&](std::size_t k) { return slice(m, long(axis), k * hidden, (k + 1) * hidden); };
    return concatenate<T>({gate(0), gate(2), gate(3), gate(1)}, long(axis));
  };
  std::vector<V> ys, hs, cs;
  for (std::size_t d = 0; d < dirs; ++d) {
    const V wd = reorder(select(w, 0, d), 0), rd = reorder(select(r, 0, d), 0);
    V wb, rb;
    if (c.has(3)) {
      const V b = select(c.real(3), 0, d);  // (8H): W's biases, then R's
      wb = reorder(slice(b, 0, 0, 4 * hidden), 0);
      rb = reorder(slice(b, 0, 4 * hidden, 8 * hidden), 0);
    }
    V h = c.has(5) ? select(c.real(5), 0, d) : full(Shape{n, hidden}, T(0));
    V cell = c.has(6) ? select(c.real(6), 0, d) : full(Shape{n, hidden}, T(0));
    const bool reverse = direction == "reverse" || d == 1;
    if (!reverse) {  // the one op ad::lstm, batch first
      const V y = lstm(permute(x, {1, 0, 2}), wd, rd, wb, rb, h, cell);  // (N, L + 1, H)
      ys.push_back(permute(slice(y, 1, 0, length), {1, 0, 2}));
      hs.push_back(length ? select(y, 1, length - 1) : h);
      cs.push_back(select(y, 1, length));
      continue;
    }
    const V xw = linear(x, wd, wb);  // (L, N, 4H): every step's input projection at once
    std::vector<V> steps(length);
    for (std::size_t k = 0; k < length; ++k) {
      const std::size_t t = reverse ? length - 1 - k : k;
      const V hc = lstm_cell(select(xw, 0, t), linear(h, rd, rb), cell);
      h = slice(hc, 1, 0, hidden);
      cell = slice(hc, 1, hidden, 2 * hidden);
      steps[t] = h;
    }
    ys.push_back(length ? stack(steps, 0) : full(Shape{0, n, hidden}, T(0)));  // (L, N, H)
    hs.push_back(h);
    cs.push_back(cell);
  }
  V y = stack(ys, 1);                             // (L, dirs, N, H)
  if (batch_first) y = permute(y, {2, 0, 1, 3});  // (N, L, dirs, H)
  V yh = stack(hs, 0), yc = stack(cs, 0);         // (dirs, N, H)
  if (batch_first) yh = permute(yh, {1, 0, 2}), yc = permute(yc, {1, 0, 2});
  return {Value<T>::of(y), Value<T>::of(yh), Value<T>::of(yc)};
}

template <class T>
const std::map<std::string, OpFn<T>>& op_table() {
  using V = Variable<T>;
  static const std::map<std::string, OpFn<T>> table = {
      // Elementwise
      {"Identity", [](Call<T>& c) -> Outputs<T> { return {c.at(0)}; }},
      {"Abs",
       [](Call<T>& c) -> Outputs<T> {
         if (c.at(0).integer) return one<T>(kernels::unary(c.ints(0), [](I64 x) { return x < 0 ? -x : x; }));
         return one(abs(c.real(0)));
       }},
      {"Neg",
       [](Call<T>& c) -> Outputs<T> {
         if (c.at(0).integer) return one<T>(kernels::unary(c.ints(0), [](I64 x) { return -x; }));
         return one(neg(c.real(0)));
       }},
      {"Exp", [](Call<T>& c) { return one(exp(c.real(0))); }},
      {"Log", [](Call<T>& c) { return one(log(c.real(0))); }},
      {"Sqrt", [](Call<T>& c) { return one(sqrt(c.real(0))); }},
      {"Tanh", [](Call<T>& c) { return one(tanh(c.real(0))); }},
      {"Sigmoid", [](Call<T>& c) { return one(sigmoid(c.real(0))); }},
      {"Relu", [](Call<T>& c) { return one(relu(c.real(0))); }},
      {"Erf", [](Call<T>& c) { return one(erf(c.real(0))); }},
      {"Sin", [](Call<T>& c) { return one(sin(c.real(0))); }},
      {"Cos", [](Call<T>& c) { return one(cos(c.real(0))); }},
      {"Softplus", [](Call<T>& c) { return one(softplus(c.real(0))); }},
      {"Reciprocal", [](Call<T>& c) { return one(div(scalar<T>(1), c.real(0))); }},
      {"Softsign",
       [](Call<T>& c) {
         const V x = c.real(0);
         return one(x / (abs(x) + 1.0));
       }},
      {"Elu", [](Call<T>& c) { return one(elu(c.real(0), c.f("alpha", 1.0f))); }},
      {"Celu",
       [](Call<T>& c) {
         const double alpha = c.f("alpha", 1.0f);
         return one(elu(c.real(0) * (1.0 / alpha), 1.0) * alpha);
       }},
      {"Selu",
       [](Call<T>& c) {
         return one(elu(c.real(0), c.f("alpha", 1.67326319217681884765625f)) *
                    double(c.f("gamma", 1.05070102214813232421875f)));
       }},
      {"LeakyRelu", [](Call<T>& c) { return one(leaky_relu(c.real(0), c.f("alpha", 0.01f))); }},
      {"PRelu",
       [](Call<T>& c) {
         // relu(x) + slope·min(x, 0), min(x, 0) = x − relu(x)
         const V x = c.real(0), r = relu(x);
         V slope = c.real(1);
         // Models of opsets before 7 give one slope per channel, (C), for any rank.
         if (slope.dim() == 1 && x.dim() >= 3 && slope.size() == x.shape()[1] &&
             slope.size() != x.shape().back())
           slope = channels(slope, x.dim());
         return one(r + slope * (x - r));
       }},
      {"HardSigmoid",
       [](Call<T>& c) {
         return one(clamp(c.real(0) * double(c.f("alpha", 0.2f)) + double(c.f("beta", 0.5f)), 0.0,
                          1.0));
       }},
      {"HardSwish",
       [](Call<T>& c) {
         const V x = c.real(0);
         return one(x * clamp(x * (1.0 / 6.0) + 0.5, 0.0, 1.0));
       }},
      {"ThresholdedRelu",
       [](Call<T>& c) {
         const V x = c.real(0);
         const T alpha = T(c.f("alpha", 1.0f));
         return one(ad::where(kernels::unary(x.value(), [alpha](T v) { return v > alpha; }), x,
                          scalar<T>(0)));
       }},
      {"Clip",
       [](Call<T>& c) {
         double lo = -std::numeric_limits<double>::infinity(), hi = -lo;
         if (c.opset < 11) {
           lo = c.f("min", -std::numeric_limits<float>::max());
           hi = c.f("max", std::numeric_limits<float>::max());
         } else {
           if (c.has(1)) lo = double(c.real(1).item());
           if (c.has(2)) hi = double(c.real(2).item());
         }
         const V x = c.real(0);
         if (lo > hi) return one(full(x.shape(), T(hi)));
         return one(clamp(x, lo, hi));
       }},
      {"Add", [](Call<T>& c) { return arithmetic(c, [](const V& a, const V& b) { return a + b; }, std::plus<I64>()); }},
      {"Sub", [](Call<T>& c) { return arithmetic(c, [](const V& a, const V& b) { return a - b; }, std::minus<I64>()); }},
      {"Mul", [](Call<T>& c) { return arithmetic(c, [](const V& a, const V& b) { return a * b; }, std::multiplies<I64>()); }},
      {"Div",
       [](Call<T>& c) {
         return arithmetic(c, [](const V& a, const V& b) { return a / b; },
                           [](I64 x, I64 y) { return y ? x / y : 0; });
       }},
      {"Pow", [](Call<T>& c) { return one(pow(c.real(0), c.real(1))); }},
      {"Max", [](Call<T>& c) { return variadic(c, [](const V& a, const V& b) { return maximum(a, b); }); }},
      {"Min", [](Call<T>& c) { return variadic(c, [](const V& a, const V& b) { return minimum(a, b); }); }},
      {"Sum", [](Call<T>& c) { return variadic(c, [](const V& a, const V& b) { return a + b; }); }},
      {"Mean",
       [](Call<T>& c) {
         Outputs<T> s = variadic(c, [](const V& a, const V& b) { return a + b; });
         return one(s[0].real * (1.0 / double(c.in.size())));
       }},
      {"Equal", [](Call<T>& c) { return comparison(c, [](double x, double y) { return x == y; }); }},
      {"Greater", [](Call<T>& c) { return comparison(c, [](double x, double y) { return x > y; }); }},
      {"Less", [](Call<T>& c) { return comparison(c, [](double x, double y) { return x < y; }); }},
      {"GreaterOrEqual", [](Call<T>& c) { return comparison(c, [](double x, double y) { return x >= y; }); }},
      {"LessOrEqual", [](Call<T>& c) { return comparison(c, [](double x, double y) { return x <= y; }); }},
      {"And", [](Call<T>& c) { return logical(c, [](bool x, bool y) { return x && y; }); }},
      {"Or", [](Call<T>& c) { return logical(c, [](bool x, bool y) { return x || y; }); }},
      {"Xor", [](Call<T>& c) { return logical(c, [](bool x, bool y) { return x != y; }); }},
      {"Not", [](Call<T>& c) { return one<T>(kernels::unary(c.ints(0), [](I64 x) { return I64(x == 0); }), true); }},
      {"Where",
       [](Call<T>& c) -> Outputs<T> {
         if (c.at(1).integer && c.at(2).integer) {
           const Mask m = mask_of(c, 0);
           return one<T>(kernels::select(m, c.ints(1), c.ints(2), "Where"), c.at(1).boolean);
         }
         return one(ad::where(mask_of(c, 0), c.real(1), c.real(2)));
       }},
      // Products, convolutions, pooling, normalisation
      {"MatMul", [](Call<T>& c) { return one(matmul_nd(c, c.real(0), c.real(1))); }},
      {"Gemm",
       [](Call<T>& c) {
         const V a = c.real(0), b = c.real(1);
         if (a.dim() != 2 || b.dim() != 2) c.error("Gemm takes 2-D operands");
         V y = matmul(a, b, c.i("transA", 0) != 0, c.i("transB", 0) != 0);
         const double alpha = c.f("alpha", 1.0f), beta = c.f("beta", 1.0f);
         if (alpha != 1.0) y = y * alpha;
         if (c.has(2)) y = y + (beta == 1.0 ? c.real(2) : c.real(2) * beta);
         return one(y);
       }},
      {"Conv", [](Call<T>& c) { return convolution(c); }},
      {"LSTM", [](Call<T>& c) { return lstm(c); }},
      {"ConvTranspose", [](Call<T>& c) { return conv_transpose(c); }},
      {"MaxPool", [](Call<T>& c) { return pooling(c, true); }},
      {"AveragePool", [](Call<T>& c) { return pooling(c, false); }},
      {"GlobalAveragePool",
       [](Call<T>& c) {
         const V x = c.real(0);
         std::vector<long> axes;
         for (std::size_t d = 2; d < x.dim(); ++d) axes.push_back(long(d));
         return one(mean(x, axes, true));
       }},
      {"GlobalMaxPool",
       [](Call<T>& c) {
         const V x = c.real(0);
         std::vector<long> axes;
         for (std::size_t d = 2; d < x.dim(); ++d) axes.push_back(long(d));
         return one(max(x, axes, true));
       }},
      {"BatchNormalization",
       [](Call<T>& c) {
         if (c.i("training_mode", 0)) c.error("training_mode = 1 is not supported");
         for (std::size_t k = 1; k < c.node.outputs.size(); ++k)
           if (!c.node.outputs[k].empty()) c.error("the training outputs are not supported");
         const V x = c.real(0);
         if (x.dim() < 2) c.error("the input needs a channel axis");
         const std::size_t r = x.dim();
         const V inv = 1.0 / sqrt(c.real(4) + double(c.f("epsilon", 1e-5f)));
         return one((x - channels(c.real(3), r)) * channels(inv * c.real(1), r) +
                    channels(c.real(2), r));
       }},
      {"InstanceNormalization",
       [](Call<T>& c) {
         const V x = c.real(0);
         std::vector<long> axes;
         for (std::size_t d = 2; d < x.dim(); ++d) axes.push_back(long(d));
         const V centred = x - mean(x, axes, true);
         const V y = centred / sqrt(mean(centred * centred, axes, true) + double(c.f("epsilon", 1e-5f)));
         return one(y * channels(c.real(1), x.dim()) + channels(c.real(2), x.dim()));
       }},
      {"LayerNormalization",
       [](Call<T>& c) {
         const V x = c.real(0);
         const std::size_t axis = c.axis(c.i("axis", -1), x.dim());
         std::vector<long> axes;
         for (std::size_t d = axis; d < x.dim(); ++d) axes.push_back(long(d));
         const double eps = double(c.f("epsilon", 1e-5f));
         const Shape normalised(x.shape().begin() + long(axis), x.shape().end());
         if (c.node.outputs.size() == 1 && c.real(1).shape() == normalised &&
             (!c.has(2) || c.real(2).shape() == normalised))  // the one op
           return one(layer_norm(x, x.dim() - axis, c.real(1), c.has(2) ? c.real(2) : V(), eps));
         const V centred = x - mean(x, axes, true);
         const V inv = 1.0 / sqrt(mean(centred * centred, axes, true) + eps);
         V y = centred * inv * c.real(1);
         if (c.has(2)) y = y + c.real(2);
         return Outputs<T>{Value<T>::of(y), Value<T>::of(mean(x, axes, true)), Value<T>::of(inv)};
       }},
      {"Softmax", [](Call<T>& c) { return softmax_like(c, [](const V& x, long a) { return softmax(x, a); }); }},
      {"LogSoftmax", [](Call<T>& c) { return softmax_like(c, [](const V& x, long a) { return log_softmax(x, a); }); }},
      {"Dropout",
       [](Call<T>& c) -> Outputs<T> {
         if (c.opset >= 12 && c.has(2) && c.ints(2).size() && c.ints(2).data()[0])
           c.error("training_mode = true is not supported");
         Outputs<T> out{c.at(0)};
         if (c.node.outputs.size() > 1) {
           Ints ones = Ints::from_shape(c.at(0).shape());
           std::fill(ones.begin(), ones.end(), 1);
           out.push_back(Value<T>::of(std::move(ones), true));
         }
         return out;
       }},
      // Reductions
      {"ReduceSum",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 13, [](const V& x, const std::vector<long>& a, bool k) { return sum(x, a, k); });
       }},
      {"ReduceMean",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return mean(x, a, k); });
       }},
      {"ReduceMax",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return max(x, a, k); });
       }},
      {"ReduceMin",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return min(x, a, k); });
       }},
      {"ReduceL1",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return sum(abs(x), a, k); });
       }},
      {"ReduceL2",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return norm(x, 2.0, a, k); });
       }},
      {"ReduceSumSquare",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return sum(x * x, a, k); });
       }},
      {"ReduceLogSum",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return log(sum(x, a, k)); });
       }},
      {"ReduceLogSumExp",
       [](Call<T>& c) {
         return reduction(c, c.opset >= 18, [](const V& x, const std::vector<long>& a, bool k) { return log_sum_exp(x, a, k); });
       }},
      {"ArgMax",
       [](Call<T>& c) -> Outputs<T> {
         if (c.i("select_last_index", 0)) c.error("select_last_index = 1 is not supported");
         const V x = c.real(0);
         const Index at = argmax(x, long(c.axis(c.i("axis", 0), x.dim())), c.i("keepdims", 1) != 0);
         Ints out = Ints::from_shape(at.shape());
         std::copy(at.data(), at.data() + at.size(), out.data());
         return one<T>(std::move(out));
       }},
      {"ArgMin",
       [](Call<T>& c) -> Outputs<T> {
         if (c.i("select_last_index", 0)) c.error("select_last_index = 1 is not supported");
         const V x = c.real(0);
         const Index at = argmin(x, long(c.axis(c.i("axis", 0), x.dim())), c.i("keepdims", 1) != 0);
         Ints out = Ints::from_shape(at.shape());
         std::copy(at.data(), at.data() + at.size(), out.data());
         return one<T>(std::move(out));
       }},
      {"CumSum",
       [](Call<T>& c) {
         const V x = c.real(0);
         const std::vector<I64> a = c.list(1);
         if (a.size() != 1) c.error("the axis must be one number");
         const bool reverse = c.i("reverse", 0) != 0;
         V y = cumsum(x, long(c.axis(a[0], x.dim())), reverse);
         if (c.i("exclusive", 0)) y = y - x;
         return one(y);
       }},
      // Shapes and indexing
      {"Shape",
       [](Call<T>& c) {
         const Shape s = c.at(0).shape();
         const I64 r = I64(s.size());
         I64 start = c.i("start", 0), end = c.i("end", r);
         if (start < 0) start += r;
         if (end < 0) end += r;
         start = std::clamp<I64>(start, 0, r), end = std::clamp<I64>(end, 0, r);
         std::vector<I64> v;
         for (I64 k = start; k < end; ++k) v.push_back(I64(s[std::size_t(k)]));
         return one<T>(ints_of(v));
       }},
      {"Size",
       [](Call<T>& c) {
         Ints v = Ints::from_shape(Shape{});
         v() = I64(shape_size(c.at(0).shape()));
         return one<T>(std::move(v));
       }},
      {"Reshape",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         const Shape s = reshape_target(c, in, c.opset >= 5 ? c.list(1) : c.is("shape"),
                                        c.i("allowzero", 0) != 0);
         if (c.at(0).integer) return one<T>(reshaped(c.ints(0), s), c.at(0).boolean);
         return one(reshape(c.real(0), s));
       }},
      {"Flatten",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         I64 axis = c.i("axis", 1);
         if (axis < 0) axis += I64(in.size());
         if (axis < 0 || axis > I64(in.size())) c.error("axis out of range");
         std::size_t outer = 1;
         for (I64 d = 0; d < axis; ++d) outer *= in[std::size_t(d)];
         const Shape s{outer, outer ? shape_size(in) / outer : 0};
         if (c.at(0).integer) return one<T>(reshaped(c.ints(0), s), c.at(0).boolean);
         return one(reshape(c.real(0), s));
       }},
      {"Transpose",
       [](Call<T>& c) -> Outputs<T> {
         const std::size_t r = c.at(0).shape().size();
         std::vector<I64> perm = c.is("perm");
         if (perm.empty())
           for (std::size_t d = 0; d < r; ++d) perm.push_back(I64(r - 1 - d));
         std::vector<std::size_t> axes;
         for (I64 p : perm) axes.push_back(c.axis(p, r));
         if (c.at(0).integer) {
           Ints t = xt::transpose(c.ints(0), axes);
           return one<T>(std::move(t), c.at(0).boolean);
         }
         return one(permute(c.real(0), axes));
       }},
      {"Squeeze",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         std::vector<I64> axes = c.opset >= 13 ? (c.has(1) ? c.list(1) : std::vector<I64>{}) : c.is("axes");
         std::vector<bool> drop(in.size(), false);
         if (axes.empty())
           for (std::size_t d = 0; d < in.size(); ++d) drop[d] = in[d] == 1;
         for (I64 a : axes) {
           const std::size_t d = c.axis(a, in.size());
           if (in[d] != 1) c.error("axis " + std::to_string(a) + " of " + shape_str(in) + " is not 1");
           drop[d] = true;
         }
         Shape s;
         for (std::size_t d = 0; d < in.size(); ++d)
           if (!drop[d]) s.push_back(in[d]);
         if (c.at(0).integer) return one<T>(reshaped(c.ints(0), s), c.at(0).boolean);
         return one(reshape(c.real(0), s));
       }},
      {"Unsqueeze",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         const std::vector<I64> axes = c.opset >= 13 ? c.list(1) : c.is("axes");
         const std::size_t r = in.size() + axes.size();
         std::vector<bool> added(r, false);
         for (I64 a : axes) {
           const std::size_t d = c.axis(a, r);
           if (added[d]) c.error("an axis is repeated");
           added[d] = true;
         }
         Shape s;
         for (std::size_t d = 0, k = 0; d < r; ++d) s.push_back(added[d] ? 1 : in[k++]);
         if (c.at(0).integer) return one<T>(reshaped(c.ints(0), s), c.at(0).boolean);
         return one(reshape(c.real(0), s));
       }},
      {"Concat",
       [](Call<T>& c) -> Outputs<T> {
         const std::size_t r = c.at(0).shape().size();
         const std::size_t axis = c.axis(c.i("axis", 0), r);
         bool integer = true;
         for (const auto& v : c.in) integer = integer && v.integer;
         if (integer) {
           std::vector<Ints> parts;
           for (std::size_t k = 0; k < c.in.size(); ++k) parts.push_back(c.ints(k));
           return one<T>(concat_ints(c, parts, axis), c.at(0).boolean);
         }
         std::vector<V> parts;
         for (std::size_t k = 0; k < c.in.size(); ++k)
           if (c.at(k).shape()[axis] > 0 || c.in.size() == 1) parts.push_back(c.real(k));
         if (parts.empty()) return one(c.real(0));
         return one(concatenate(parts, long(axis)));
       }},
      {"Split",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         const std::size_t axis = c.axis(c.i("axis", 0), in.size());
         std::vector<I64> sizes = c.opset >= 13 ? (c.has(1) ? c.list(1) : std::vector<I64>{}) : c.is("split");
         const std::size_t n = c.node.outputs.size();
         if (sizes.empty()) {
           if (in[axis] % n) c.error("axis " + std::to_string(axis) + " does not split evenly");
           sizes.assign(n, I64(in[axis] / n));
         }
         if (sizes.size() != n) c.error("the split sizes do not match the outputs");
         Outputs<T> out;
         std::size_t at = 0;
         for (I64 s : sizes) {
           if (s < 0) c.error("a negative split size");
           std::vector<std::size_t> positions(static_cast<std::size_t>(s));
           std::iota(positions.begin(), positions.end(), at);
           at += std::size_t(s);
           if (at > in[axis]) c.error("the split sizes exceed the axis");
           if (c.at(0).integer)
             out.push_back(Value<T>::of(take_ints(c.ints(0), axis, positions), c.at(0).boolean));
           else
             out.push_back(Value<T>::of(slice(c.real(0), long(axis), positions.empty() ? at : positions[0], at)));
         }
         return out;
       }},
      {"Slice",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         std::vector<I64> starts, ends, axes, steps;
         if (c.opset >= 10) {
           starts = c.list(1), ends = c.list(2);
           if (c.has(3)) axes = c.list(3);
           if (c.has(4)) steps = c.list(4);
         } else {
           starts = c.is("starts"), ends = c.is("ends"), axes = c.is("axes");
         }
         if (axes.empty())
           for (std::size_t d = 0; d < starts.size(); ++d) axes.push_back(I64(d));
         if (steps.empty()) steps.assign(starts.size(), 1);
         if (ends.size() != starts.size() || axes.size() != starts.size() || steps.size() != starts.size())
           c.error("starts, ends, axes and steps differ in length");
         Value<T> v = c.at(0);
         for (std::size_t k = 0; k < starts.size(); ++k) {
           if (steps[k] == 0) c.error("a step of 0");
           const std::size_t axis = c.axis(axes[k], in.size());
           const auto positions = slice_positions(starts[k], ends[k], steps[k], I64(in[axis]));
           if (v.integer)
             v = Value<T>::of(take_ints(v.ints, axis, positions), v.boolean);
           else
             v = Value<T>::of(take(v.real, axis, positions));
         }
         return {v};
       }},
      {"Gather",
       [](Call<T>& c) -> Outputs<T> {
         const Shape in = c.at(0).shape();
         const std::size_t axis = c.axis(c.i("axis", 0), in.size());
         const Ints idx = c.ints(1);
         std::vector<std::size_t> positions;
         for (I64 k : idx) {
           const I64 p = k < 0 ? k + I64(in[axis]) : k;
           if (p < 0 || p >= I64(in[axis]))
             c.error("index " + std::to_string(k) + " is out of range for axis " + std::to_string(axis) + " of " + shape_str(in));
           positions.push_back(std::size_t(p));
         }
         Shape s(in.begin(), in.begin() + long(axis));
         for (std::size_t d : idx.shape()) s.push_back(d);
         for (std::size_t d = axis + 1; d < in.size(); ++d) s.push_back(in[d]);
         if (c.at(0).integer) return one<T>(reshaped(take_ints(c.ints(0), axis, positions), s), c.at(0).boolean);
         return one(reshape(index_select(c.real(0), long(axis), Index(positions)), s));
       }},
      {"GatherElements",
       [](Call<T>& c) {
         const V x = c.real(0);
         const std::size_t axis = c.axis(c.i("axis", 0), x.dim());
         const Ints idx = c.ints(1);
         Array<std::size_t> at = Array<std::size_t>::from_shape(idx.shape());
         for (std::size_t k = 0; k < idx.size(); ++k) {
           const I64 p = idx.data()[k] < 0 ? idx.data()[k] + I64(x.shape()[axis]) : idx.data()[k];
           if (p < 0) c.error("an index is out of range");
           at.data()[k] = std::size_t(p);
         }
         return one(gather(x, long(axis), Index(std::move(at))));
       }},
      {"Pad",
       [](Call<T>& c) {
         const std::string mode = c.s("mode", "constant");
         if (mode != "constant") c.error("mode '" + mode + "' is not supported (only constant)");
         V x = c.real(0);
         const std::size_t r = x.dim();
         std::vector<I64> pads = c.opset >= 11 ? c.list(1) : c.is("pads");
         T value = c.opset >= 11 ? (c.has(2) ? c.real(2).item() : T(0)) : T(c.f("value", 0.0f));
         std::vector<I64> axes;
         if (c.opset >= 18 && c.has(3)) {
           axes = c.list(3);
         } else {
           for (std::size_t d = 0; d < r; ++d) axes.push_back(I64(d));
         }
         if (pads.size() != 2 * axes.size()) c.error("pads has the wrong length");
         for (std::size_t k = 0; k < axes.size(); ++k) {
           const std::size_t d = c.axis(axes[k], r);
           I64 before = pads[k], after = pads[k + axes.size()];
           if (before < 0 || after < 0) {  // cropping
             const I64 extent = I64(x.shape()[d]);
             const I64 from = std::max<I64>(-before, 0), to = extent - std::max<I64>(-after, 0);
             if (to < from) c.error("pads crop more than the axis");
             x = slice(x, long(d), std::size_t(from), std::size_t(to));
             before = std::max<I64>(before, 0), after = std::max<I64>(after, 0);
           }
           x = pad_value(x, d, std::size_t(before), std::size_t(after), value);
         }
         return one(x);
       }},
      {"Expand",
       [](Call<T>& c) -> Outputs<T> {
         const Shape want = to_shape(c, c.list(1));
         const Shape s = broadcast(c, c.at(0).shape(), want);
         if (c.at(0).integer) return one<T>(broadcast_ints(c.ints(0), s), c.at(0).boolean);
         return one(broadcast_to(c.real(0), s));
       }},
      {"Tile",
       [](Call<T>& c) {
         V x = c.real(0);
         const std::vector<I64> repeats = c.list(1);
         if (repeats.size() != x.dim()) c.error("repeats has the wrong length");
         for (std::size_t d = 0; d < repeats.size(); ++d) {
           if (repeats[d] < 0) c.error("a negative repeat");
           if (repeats[d] == 1) continue;
           if (repeats[d] == 0) {
             Shape s = x.shape();
             s[d] = 0;
             x = full(s, T(0));
             continue;
           }
           x = concatenate(std::vector<V>(std::size_t(repeats[d]), x), long(d));
         }
         return one(x);
       }},
      {"Cast",
       [](Call<T>& c) -> Outputs<T> {
         const I64 to = c.i("to", 0);
         const bool real_target = to == TensorProto::FLOAT || to == TensorProto::DOUBLE ||
                                  to == TensorProto::FLOAT16 || to == TensorProto::BFLOAT16;
         if (real_target) return one(c.real(0));
         if (!element_size(int(to)) || to == TensorProto::STRING) c.error("cast to an unsupported type");
         if (c.at(0).integer) {
           if (to == TensorProto::BOOL)
             return one<T>(kernels::unary(c.ints(0), [](I64 x) { return I64(x != 0); }), true);
           return one<T>(c.ints(0));
         }
         const Array<T>& x = c.real(0).value();
         if (to == TensorProto::BOOL) return one<T>(kernels::unary(x, [](T v) { return I64(v != 0); }), true);
         return one<T>(kernels::unary(x, [](T v) { return std::isfinite(v) ? I64(v) : I64(0); }));
       }},
      {"Constant",
       [](Call<T>& c) -> Outputs<T> {
         if (const Tensor* t = c.template find<Tensor>("value")) return {from_tensor<T>(*t)};
         if (const float* f = c.template find<float>("value_float")) return one(scalar<T>(T(*f)));
         if (const I64* i = c.template find<I64>("value_int")) {
           Ints v = Ints::from_shape(Shape{});
           v() = *i;
           return one<T>(std::move(v));
         }
         if (const auto* fs = c.template find<std::vector<float>>("value_floats")) {
           Array<T> a = Array<T>::from_shape({fs->size()});
           std::copy(fs->begin(), fs->end(), a.begin());
           return one(V(std::move(a)));
         }
         if (const auto* is = c.template find<std::vector<I64>>("value_ints")) return one<T>(ints_of(*is));
         c.error("no value this library reads (sparse or string constants are not supported)");
       }},
      {"ConstantOfShape",
       [](Call<T>& c) -> Outputs<T> {
         const Shape s = to_shape(c, c.list(0));
         if (shape_size(s) > (std::size_t(1) << 32)) c.error("the shape is too large");
         const Tensor* t = c.template find<Tensor>("value");
         if (t && !t->real()) {
           Ints v = Ints::from_shape(s);
           std::fill(v.begin(), v.end(), t->ints.empty() ? 0 : t->ints[0]);
           return one<T>(std::move(v), t->type == TensorProto::BOOL);
         }
         return one(full(s, T(t && !t->reals.empty() ? t->reals[0] : 0.0)));
       }},
      {"Range",
       [](Call<T>& c) -> Outputs<T> {
         if (c.at(0).integer) {
           const I64 start = c.list(0).at(0), limit = c.list(1).at(0), delta = c.list(2).at(0);
           if (delta == 0) c.error("a delta of 0");
           std::vector<I64> v;
           for (I64 x = start; delta > 0 ? x < limit : x > limit; x += delta) {
             v.push_back(x);
             if (v.size() > (std::size_t(1) << 28)) c.error("the range is too long");
           }
           return one<T>(ints_of(v));
         }
         const double start = c.real(0).item(), limit = c.real(1).item(), delta = c.real(2).item();
         if (delta == 0) c.error("a delta of 0");
         const double n = std::max(std::ceil((limit - start) / delta), 0.0);
         if (!(n < double(std::size_t(1) << 28))) c.error("the range is too long");
         Array<T> a = Array<T>::from_shape({std::size_t(n)});
         for (std::size_t k = 0; k < a.size(); ++k) a(k) = T(start + double(k) * delta);
         return one(V(std::move(a)));
       }},
  };
  return table;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// The module

/// Holds parameters below a model, so that named_parameters() gives their dotted names.
template <class T>
class ParameterNode : public nn::Module<T> {
 public:
  Variable<T> forward(const Variable<T>&) override {
    fail("onnx: a parameter holder of an imported model is not a layer");
  }
  std::size_t add(const std::string& name, Array<T> value) {
    return this->register_parameter(name, std::move(value));
  }
  Variable<T>& at(std::size_t i) { return this->parameter(i); }
  void register_child(const std::string& name, std::shared_ptr<ParameterNode> m) {
    this->register_module(name, std::move(m));
  }
  /// The child `name` of `parent`, made when it is not there.
  static std::shared_ptr<ParameterNode> child(
      nn::Module<T>& parent, const std::string& name,
      const std::function<void(std::shared_ptr<ParameterNode>)>& add) {
    for (const auto& [n, m] : parent.children())
      if (n == name) return std::dynamic_pointer_cast<ParameterNode>(m);
    auto made = std::make_shared<ParameterNode>();
    add(made);
    return made;
  }
};

/// Where an initializer's value comes from at run time: a parameter or a constant.
template <class T>
struct Model<T>::Slot {
  std::string onnx_name;
  bool parameter = false;
  std::shared_ptr<ParameterNode<T>> holder;  ///< null: a parameter of the model itself
  std::size_t index = 0;
  Value<T> constant;
};

namespace {

/// A module path for an ONNX name: its dot-separated parts when each is a valid name, else the
/// name with '.', '/' and ':' replaced by '_'.
std::vector<std::string> path_of(const std::string& name) {
  std::vector<std::string> parts;
  std::string part;
  bool ok = !name.empty();
  for (char ch : name) {
    if (ch == '.') {
      ok = ok && !part.empty();
      parts.push_back(part);
      part.clear();
    } else {
      ok = ok && ch != '/';
      part += ch;
    }
  }
  ok = ok && !part.empty();
  parts.push_back(part);
  if (ok) return parts;
  return {flat_name(name)};
}

}  // namespace

template <class T>
Model<T>::Model(std::shared_ptr<const detail::Graph> graph, const LoadOptions& options)
    : graph_(std::move(graph)) {
  std::set<std::string> used;  // module paths taken, and their prefixes
  for (const auto& [name, tensor] : graph_->initializers) {
    auto slot = std::make_shared<Slot>();
    slot->onnx_name = name;
    if (!(tensor.real() && options.trainable)) {
      slot->constant = from_tensor<T>(tensor);
      slots_.push_back(std::move(slot));
      continue;
    }
    std::vector<std::string> path = path_of(name);
    // A path that is also the prefix of another ("a" and "a.b") cannot be both: flatten it.
    std::string joined;
    bool clash = false;
    for (std::size_t k = 0; k < path.size(); ++k) {
      joined += (k ? "." : "") + path[k];
      clash = clash ||
              (k + 1 < path.size() ? used.count(joined + "#leaf") > 0
                                   : used.count(joined) > 0 || used.count(joined + "#leaf") > 0);
    }
    if (clash) {
      std::string flat = flat_name(name);
      while (used.count(flat) || used.count(flat + "#leaf")) flat += "_";
      path = {flat};
      joined = flat;
    }
    std::string prefix;
    std::shared_ptr<ParameterNode<T>> holder;
    for (std::size_t k = 0; k + 1 < path.size(); ++k) {
      prefix += (k ? "." : "") + path[k];
      used.insert(prefix);
      nn::Module<T>& parent = holder ? static_cast<nn::Module<T>&>(*holder) : *this;
      holder = ParameterNode<T>::child(parent, path[k], [&](std::shared_ptr<ParameterNode<T>> m) {
        if (holder)
          holder->register_child(path[k], m);
        else
          this->register_module(path[k], m);
      });
    }
    used.insert(joined + "#leaf");
    Value<T> v = from_tensor<T>(tensor);
    slot->parameter = true;
    slot->holder = holder;
    slot->index = holder ? holder->add(path.back(), v.real.value())
                         : this->register_parameter(path.back(), v.real.value());
    onnx_names_[joined] = name;
    slots_.push_back(std::move(slot));
  }
}

template <class T>
std::vector<std::string> Model<T>::input_names() const {
  std::vector<std::string> out;
  for (const auto& in : graph_->inputs) out.push_back(in.name);
  return out;
}

template <class T>
std::vector<std::string> Model<T>::output_names() const {
  return graph_->outputs;
}

template <class T>
std::vector<std::string> Model<T>::unsupported_ops() const {
  std::set<std::string> missing;
  const auto& table = op_table<T>();
  for (const auto& n : graph_->nodes)
    if (!table.count(n.op)) missing.insert(n.op);
  return std::vector<std::string>(missing.begin(), missing.end());
}

template <class T>
std::map<std::string, Variable<T>> Model<T>::run_all(const std::vector<Variable<T>>& inputs,
                                                     const std::vector<std::string>& wanted) {
  if (inputs.size() != graph_->inputs.size())
    fail(
        "onnx: the model takes ", graph_->inputs.size(), " inputs (",
        [&] {
          std::string s;
          for (const auto& in : graph_->inputs) s += (s.empty() ? "" : ", ") + in.name;
          return s;
        }(),
        "), ", inputs.size(), " were given");
  std::map<std::string, Value<T>> values;
  for (std::size_t k = 0; k < inputs.size(); ++k) {
    const auto& in = graph_->inputs[k];
    if (!inputs[k].defined()) fail("onnx: input '", in.name, "' is undefined");
    const bool integer = in.type != TensorProto::FLOAT && in.type != TensorProto::DOUBLE &&
                         in.type != TensorProto::FLOAT16 && in.type != TensorProto::BFLOAT16 &&
                         in.type != 0;
    if (!integer) {
      values[in.name] = Value<T>::of(inputs[k]);
      continue;
    }
    Ints v = Ints::from_shape(inputs[k].shape());
    const T* p = inputs[k].value().data();
    for (std::size_t i = 0; i < v.size(); ++i) {
      if (!(std::isfinite(p[i]) && std::floor(p[i]) == p[i]))
        fail("onnx: input '", in.name, "' is an integer tensor, but holds ", p[i], " at ", i);
      v.data()[i] = I64(p[i]);
    }
    values[in.name] = Value<T>::of(std::move(v), in.type == TensorProto::BOOL);
  }
  for (const auto& slot : slots_) {
    if (!slot->parameter)
      values[slot->onnx_name] = slot->constant;
    else
      values[slot->onnx_name] =
          Value<T>::of(slot->holder ? slot->holder->at(slot->index) : this->parameter(slot->index));
  }
  const auto& table = op_table<T>();
  for (std::size_t k = 0; k < graph_->nodes.size(); ++k) {
    const detail::Node& node = graph_->nodes[k];
    auto op = table.find(node.op);
    if (op == table.end())
      fail("onnx: node ", k, " ('", node.name, "') is ", node.op,
           ", an op this library does not run (docs/onnx.md lists those it does)");
    Call<T> call{node, k, graph_->opset, {}};
    for (const auto& in : node.inputs) call.in.push_back(in.empty() ? Value<T>() : values.at(in));
    Outputs<T> out;
    try {
      out = op->second(call);
    } catch (const std::exception& e) {
      const std::string what = e.what();
      if (what.rfind("onnx: node ", 0) == 0) throw;
      call.error(what);
    }
    for (std::size_t o = 0; o < node.outputs.size(); ++o) {
      if (node.outputs[o].empty()) continue;
      if (o >= out.size()) call.error("output " + std::to_string(o) + " is not supported");
      values[node.outputs[o]] = std::move(out[o]);
    }
  }
  std::map<std::string, Variable<T>> result;
  for (const auto& name : wanted) {
    auto it = values.find(name);
    if (it == values.end()) fail("onnx: the model has no value '", name, "'");
    const Value<T>& v = it->second;
    if (!v.integer) {
      result[name] = v.real;
      continue;
    }
    Array<T> a = Array<T>::from_shape(v.shape());
    std::transform(v.ints.begin(), v.ints.end(), a.begin(), [](I64 x) { return T(x); });
    result[name] = Variable<T>(std::move(a));
  }
  return result;
}

template <class T>
std::vector<Variable<T>> Model<T>::run(const std::vector<Variable<T>>& inputs) {
  auto all = run_all(inputs, graph_->outputs);
  std::vector<Variable<T>> out;
  for (const auto& name : graph_->outputs) out.push_back(all.at(name));
  return out;
}

template <class T>
std::vector<Variable<T>> Model<T>::run(const std::map<std::string, Variable<T>>& inputs) {
  std::vector<Variable<T>> ordered;
  for (const auto& in : graph_->inputs) {
    auto it = inputs.find(in.name);
    if (it == inputs.end()) fail("onnx: input '", in.name, "' is missing");
    ordered.push_back(it->second);
  }
  for (const auto& [name, v] : inputs) {
    bool known = false;
    for (const auto& in : graph_->inputs) known = known || in.name == name;
    if (!known) fail("onnx: the model has no input '", name, "'");
  }
  return run(ordered);
}

template <class T>
Variable<T> Model<T>::forward(const Variable<T>& x) {
  if (graph_->inputs.size() != 1)
    fail("onnx: forward takes one input, the model has ", graph_->inputs.size(), "; call run()");
  return run(std::vector<Variable<T>>{x})[0];
}

template <class T>
std::shared_ptr<Model<T>> load_bytes(const std::string& bytes, const LoadOptions& options) {
  return std::make_shared<Model<T>>(read_graph(bytes, "the model's bytes"), options);
}

template <class T>
std::shared_ptr<Model<T>> load(const std::string& path, const LoadOptions& options) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("onnx: cannot open '", path, "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  if (in.bad()) fail("onnx: cannot read '", path, "'");
  return std::make_shared<Model<T>>(read_graph(bytes, path), options);
}

template <class T>
std::pair<Array<T>, int> read_tensor(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) fail("onnx: cannot open '", path, "'");
  const std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  TensorProto proto;
  if (!proto.ParseFromString(bytes)) fail("onnx: '", path, "' is not a TensorProto");
  const Tensor t = detail::read_tensor_proto(proto, "'" + path + "'");
  Array<T> a = Array<T>::from_shape(t.shape);
  if (t.real())
    std::transform(t.reals.begin(), t.reals.end(), a.begin(), [](double v) { return T(v); });
  else
    std::transform(t.ints.begin(), t.ints.end(), a.begin(), [](I64 v) { return T(v); });
  return {std::move(a), t.type};
}

std::vector<std::string> supported_ops() {
  std::vector<std::string> out;
  for (const auto& [name, f] : op_table<float>()) out.push_back(name);
  return out;
}

#define AD_INSTANTIATE(T)                                                                   \
  template class Model<T>;                                                                  \
  template std::shared_ptr<Model<T>> load<T>(const std::string&, const LoadOptions&);       \
  template std::shared_ptr<Model<T>> load_bytes<T>(const std::string&, const LoadOptions&); \
  template std::pair<Array<T>, int> read_tensor<T>(const std::string&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::onnx
