// ONNX export: each node of a program becomes one ONNX node or a few, written with the classes
// that ONNX's own onnx.proto generates. The table of docs/onnx.md follows emit() below.
#include <cmath>
#include <cstring>
#include <fstream>
#include <limits>
#include <map>

#include <onnx/checker.h>
#include <onnx/onnx_pb.h>
#include <onnx/shape_inference/implementation.h>

#include "interop/onnx.hpp"
#include "nn/atomic_write.hpp"

namespace ad::onnx {

namespace {

using ::onnx::AttributeProto;
using ::onnx::NodeProto;
using ::onnx::TensorProto;

template <class T>
constexpr int elem_type() {
  return std::is_same_v<T, float> ? TensorProto::FLOAT : TensorProto::DOUBLE;
}

void set(NodeProto* n, const std::string& name, std::int64_t v) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::INT);
  a->set_i(v);
}

void set(NodeProto* n, const std::string& name, float v) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::FLOAT);
  a->set_f(v);
}

void set(NodeProto* n, const std::string& name, const std::vector<std::int64_t>& v) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::INTS);
  for (std::int64_t x : v) a->add_ints(x);
}

void set(NodeProto* n, const std::string& name, const TensorProto& t) {
  AttributeProto* a = n->add_attribute();
  a->set_name(name);
  a->set_type(AttributeProto::TENSOR);
  *a->mutable_t() = t;
}

/// A tensor of `count` elements of type `type` from raw little-endian bytes.
TensorProto tensor(const std::string& name, int type, const std::vector<std::int64_t>& dims,
                   const void* data, std::size_t bytes) {
  TensorProto t;
  t.set_name(name);
  t.set_data_type(type);
  for (std::int64_t d : dims) t.add_dims(d);
  t.set_raw_data(std::string(static_cast<const char*>(data), bytes));
  return t;
}

/// One program written as an ONNX graph.
template <class T>
class Exporter {
 public:
  Exporter(const Program<T>& program, const SaveOptions& options)
      : p_(program), options_(options) {}

  std::string run() {
    ::onnx::ModelProto model;
    model.set_ir_version(::onnx::IR_VERSION);
    model.set_producer_name("ad");
    model.set_producer_version("0.1.0");
    auto* opset_id = model.add_opset_import();
    opset_id->set_domain("");
    opset_id->set_version(opset);
    g_ = model.mutable_graph();
    g_->set_name(options_.graph_name);
    name_values();
    for (std::size_t id : p_.inputs) declare(g_->add_input(), id, names_[id]);
    for (std::size_t i = 0; i < p_.parameters.size(); ++i) {
      const Array<T>& v = p_.parameters[i].second.value();
      *g_->add_initializer() = array_tensor(p_.parameters[i].first, v);
    }
    for (std::size_t id = 0; id < p_.values.size(); ++id)
      if (p_.values[id].source == Program<T>::Source::constant)
        *g_->add_initializer() = array_tensor(names_[id], p_.constants[p_.values[id].index]);
    for (n_ = 0; n_ < p_.nodes.size(); ++n_) emit(p_.nodes[n_]);
    for (std::size_t i = 0; i < p_.outputs.size(); ++i) {
      const std::string& name = output_names_[i];
      if (names_[p_.outputs[i]] != name) add("Identity", {names_[p_.outputs[i]]}, name);
      declare(g_->add_output(), p_.outputs[i], name);
    }
    std::string bytes;
    if (!model.SerializeToString(&bytes)) fail("onnx: the model could not be serialized");
    return bytes;
  }

 private:
  using Source = typename Program<T>::Source;

  /// Names every value: inputs and parameters keep theirs, node outputs are "t<node>" (or the
  /// graph output's name when a node makes an output).
  void name_values() {
    for (std::size_t i = 0; i < p_.outputs.size(); ++i) {
      std::string name = i < options_.output_names.size() ? options_.output_names[i]
                         : p_.outputs.size() == 1         ? "output"
                                                          : "output" + std::to_string(i);
      output_names_.push_back(name);
    }
    if (!options_.output_names.empty() && options_.output_names.size() != p_.outputs.size())
      fail("onnx: ", options_.output_names.size(), " output names for ", p_.outputs.size(),
           " outputs");
    std::vector<bool> named_output(p_.values.size(), false);
    for (const auto& v : p_.values) names_.push_back(v.name);
    for (std::size_t i = 0; i < p_.outputs.size(); ++i) {
      const std::size_t id = p_.outputs[i];
      if (p_.values[id].source == Source::node && !named_output[id]) {
        names_[id] = output_names_[i];
        named_output[id] = true;
      }
    }
    for (std::size_t id = 0; id < p_.values.size(); ++id)
      if (p_.values[id].source == Source::node && !named_output[id])
        names_[id] = "t" + std::to_string(p_.values[id].index);
  }

  /// A graph input or output: its type and shape, the batch axis symbolic.
  void declare(::onnx::ValueInfoProto* info, std::size_t id, const std::string& name) {
    info->set_name(name);
    auto* type = info->mutable_type()->mutable_tensor_type();
    type->set_elem_type(elem_type<T>());
    auto* shape = type->mutable_shape();
    for (const Dim& d : p_.values[id].shape) {
      auto* dim = shape->add_dim();
      if (d.scale == 0)
        dim->set_dim_value(d.offset);
      else if (d.scale == 1 && d.offset == 0)
        dim->set_dim_param(options_.batch_name);
    }
  }

  TensorProto array_tensor(const std::string& name, const Array<T>& a) {
    std::vector<std::int64_t> dims(a.shape().begin(), a.shape().end());
    return tensor(name, elem_type<T>(), dims, a.data(), a.size() * sizeof(T));
  }

  /// A new name for an intermediate value of the current node.
  std::string fresh(const std::string& what) {
    return "t" + std::to_string(n_) + "_" + what + "_" + std::to_string(fresh_++);
  }

  /// Adds an initializer of int64s (an axes or shape input); returns its name.
  std::string int64s(const std::vector<std::int64_t>& v, bool scalar = false) {
    const std::string name = fresh("i64");
    std::vector<std::int64_t> dims;
    if (!scalar) dims.push_back(std::int64_t(v.size()));
    *g_->add_initializer() =
        tensor(name, TensorProto::INT64, dims, v.data(), v.size() * sizeof(std::int64_t));
    return name;
  }

  /// Adds a 0-d initializer of the program's type; returns its name.
  std::string number(double x) {
    const std::string name = fresh("c");
    const T v = static_cast<T>(x);
    *g_->add_initializer() = tensor(name, elem_type<T>(), {}, &v, sizeof(T));
    return name;
  }

  /// Adds a node; returns the name of its output (`output`, or a fresh one when empty).
  std::string add(const std::string& type, const std::vector<std::string>& inputs,
                  std::string output = "", NodeProto** made = nullptr) {
    if (output.empty()) output = fresh(type);
    NodeProto* n = g_->add_node();
    n->set_op_type(type);
    n->set_name("n" + std::to_string(n_) + "_" + std::to_string(g_->node_size()));
    for (const auto& in : inputs) n->add_input(in);
    n->add_output(output);
    if (made) *made = n;
    return output;
  }

  /// add() returning the node, for its attributes.
  NodeProto* add_node(const std::string& type, const std::vector<std::string>& inputs,
                      const std::string& output = "") {
    NodeProto* n = nullptr;
    add(type, inputs, output, &n);
    return n;
  }

  [[noreturn]] void unsupported(const typename Program<T>::Node& node, const std::string& why) {
    fail("onnx: node ", n_, " (", node.op, ") cannot be exported: ", why,
         "; in the program: ", line_of(node));
  }

  std::string line_of(const typename Program<T>::Node& node) const {
    std::string s = names_[node.output] + " = " + node.op + "(";
    for (std::size_t i = 0; i < node.inputs.size(); ++i)
      s += (i ? ", " : "") + p_.values[node.inputs[i]].name;
    s += ")";
    const std::string a = attributes_str(node.attributes);
    return a.empty() ? s : s + " " + a;
  }

  const std::vector<Dim>& dims(std::size_t id) const { return p_.values[id].shape; }

  /// A reshape target from a value's extents: -1 for the one that follows the batch size.
  std::vector<std::int64_t> target(const typename Program<T>::Node& node,
                                   const std::vector<Dim>& extents) {
    std::vector<std::int64_t> out;
    bool inferred = false;
    for (const Dim& d : extents) {
      if (d.scale != 0) {
        if (inferred) unsupported(node, "its result has two extents that follow the batch size");
        inferred = true;
        out.push_back(-1);
      } else {
        out.push_back(d.offset);
      }
    }
    return out;
  }

  /// Reshape to the extents of value `id`.
  void reshape_to(const typename Program<T>::Node& node, const std::string& in, std::size_t id,
                  const std::string& out) {
    reshape_to(node, in, dims(id), out);
  }

  /// Reshape to `extents`.
  std::string reshape_to(const typename Program<T>::Node& node, const std::string& in,
                         const std::vector<Dim>& extents, const std::string& out = "") {
    std::vector<std::int64_t> t = target(node, extents);
    NodeProto* n = add_node("Reshape", {in, int64s(t)}, out);
    if (std::find(t.begin(), t.end(), 0) != t.end()) set(n, "allowzero", std::int64_t(1));
    return n->output(0);
  }

  /// Transpose of value `in` of rank `rank` swapping axes i and j.
  std::string swap_axes(const std::string& in, std::size_t rank, std::size_t i, std::size_t j) {
    std::vector<std::int64_t> perm;
    for (std::size_t d = 0; d < rank; ++d) perm.push_back(std::int64_t(d));
    std::swap(perm[i], perm[j]);
    NodeProto* t = add_node("Transpose", {in});
    set(t, "perm", perm);
    return t->output(0);
  }

  /// Adds an initializer of the program's type and the given shape; returns its name.
  std::string constant(const std::vector<std::int64_t>& shape, const std::vector<T>& values) {
    const std::string name = fresh("c");
    *g_->add_initializer() =
        tensor(name, elem_type<T>(), shape, values.data(), values.size() * sizeof(T));
    return name;
  }

  /// Unsqueeze of `in` at `axis`.
  std::string unsqueeze(const std::string& in, std::int64_t axis) {
    return add("Unsqueeze", {in, int64s({axis})});
  }

  /// lstm as ONNX's LSTM (sequence first; gates reordered from i, f, g, o to i, o, f, g), its Y and
  /// Y_c joined into the op's (N, L + 1, H).
  void recurrent(const typename Program<T>::Node& node, const AttributeReader& a,
                 const std::vector<std::string>& in, const std::string& out) {
    const bool biased = a.flag("biased");
    const std::int64_t hidden = dims(node.inputs[2])[1].offset;
    auto reorder = [&](const std::string& m) {  // blocks i, f, g, o → i, o, f, g along axis 0
      std::vector<std::string> blocks;
      for (std::int64_t k : {0, 3, 1, 2})
        blocks.push_back(
            add("Slice", {m, int64s({k * hidden}), int64s({(k + 1) * hidden}), int64s({0})}));
      NodeProto* c = add_node("Concat", blocks);
      set(c, "axis", std::int64_t(0));
      return c->output(0);
    };
    std::vector<std::string> inputs{swap_axes(in[0], 3, 0, 1), unsqueeze(reorder(in[1]), 0),
                                    unsqueeze(reorder(in[2]), 0), ""};
    if (biased) {
      NodeProto* b = add_node("Concat", {reorder(in[3]), reorder(in[4])});
      set(b, "axis", std::int64_t(0));
      inputs[3] = unsqueeze(b->output(0), 0);
    }
    const std::size_t ih = biased ? 5 : 3;
    inputs.push_back("");  // sequence_lens
    inputs.push_back(unsqueeze(in[ih], 0));
    inputs.push_back(unsqueeze(in[ih + 1], 0));
    NodeProto* lstm = add_node("LSTM", inputs);
    lstm->clear_output();
    const std::string y = fresh("Y"), yc = fresh("Y_c");
    lstm->add_output(y);
    lstm->add_output("");
    lstm->add_output(yc);
    set(lstm, "hidden_size", hidden);
    // Y (L, 1, N, H) → (N, L, H); Y_c (1, N, H) → (N, 1, H)
    const std::string hs = swap_axes(add("Squeeze", {y, int64s({1})}), 3, 0, 1);
    NodeProto* joined = add_node("Concat", {hs, swap_axes(yc, 3, 0, 1)}, out);
    set(joined, "axis", std::int64_t(1));
  }

  /// scaled_dot_product_attention as MatMul, Softmax, MatMul, the heads split off and joined
  /// again with Reshape and Transpose.
  void attention(const typename Program<T>::Node& node, const AttributeReader& a,
                 const std::vector<std::string>& in, const std::string& out) {
    const std::size_t heads = std::size_t(a.integer("heads")), rank = dims(node.inputs[0]).size();
    // (..., L, H·w) → (..., H, L, w)
    auto split = [&](std::size_t i) {
      if (heads == 1) return in[i];
      std::vector<Dim> d = dims(node.inputs[i]);
      const Dim width{0, d.back().offset / long(heads)};
      d.back() = Dim{0, long(heads)};
      d.push_back(width);
      return swap_axes(reshape_to(node, in[i], d), rank + 1, rank - 2, rank - 1);
    };
    const std::size_t r = heads == 1 ? rank : rank + 1;
    const std::string q = split(0), k = split(1), v = split(2);
    std::string s =
        add("Mul", {add("MatMul", {q, swap_axes(k, r, r - 2, r - 1)}), number(a.number("scale"))});
    if (in.size() > 3) s = add("Add", {s, in[3]});
    if (a.flag("causal")) {
      const std::int64_t lq = dims(node.inputs[0])[rank - 2].offset,
                         lk = dims(node.inputs[1])[rank - 2].offset;
      std::vector<T> hide(std::size_t(lq * lk), T(0));
      for (std::int64_t i = 0; i < lq; ++i)
        for (std::int64_t j = i + 1; j < lk; ++j)
          hide[std::size_t(i * lk + j)] = -std::numeric_limits<T>::infinity();
      s = add("Add", {s, constant({lq, lk}, hide)});
    }
    NodeProto* softmax = add_node("Softmax", {s});
    set(softmax, "axis", std::int64_t(-1));
    const std::string o = add("MatMul", {softmax->output(0), v}, heads == 1 ? out : "");
    if (heads > 1) reshape_to(node, swap_axes(o, r, r - 3, r - 2), node.output, out);
  }

  /// The axes of a reduction (all when empty), as non-negative numbers.
  std::vector<std::int64_t> reduced_axes(const AttributeReader& a, std::size_t rank) {
    std::vector<std::int64_t> axes;
    for (long x : a.integers("axes")) axes.push_back(x < 0 ? x + long(rank) : x);
    if (axes.empty())
      for (std::size_t d = 0; d < rank; ++d) axes.push_back(std::int64_t(d));
    return axes;
  }

  /// A reduction whose axes are an attribute in opset 17 (all but ReduceSum).
  std::string reduce(const std::string& type, const std::string& in,
                     const std::vector<std::int64_t>& axes, bool keepdims,
                     const std::string& out = "") {
    if (axes.empty()) return add("Identity", {in}, out);
    NodeProto* n = add_node(type, {in}, out);
    set(n, "axes", axes);
    set(n, "keepdims", std::int64_t(keepdims));
    return n->output(0);
  }

  std::string reduce_sum(const std::string& in, const std::vector<std::int64_t>& axes,
                         bool keepdims, const std::string& out = "") {
    if (axes.empty()) return add("Identity", {in}, out);
    NodeProto* n = add_node("ReduceSum", {in, int64s(axes)}, out);
    set(n, "keepdims", std::int64_t(keepdims));
    return n->output(0);
  }

  /// The number of elements reduced over `axes` of value `id` (fixed, or an error).
  double count(const typename Program<T>::Node& node, std::size_t id,
               const std::vector<std::int64_t>& axes) {
    double n = 1;
    for (std::int64_t d : axes) {
      const Dim& x = dims(id)[std::size_t(d)];
      if (x.scale != 0) unsupported(node, "it reduces over the batch axis, whose extent varies");
      n *= double(x.offset);
    }
    return n;
  }

  void set_conv(NodeProto* n, const AttributeReader& a, std::int64_t kh, std::int64_t kw) {
    const std::vector<long> s = a.integers("stride"), p = a.integers("padding"),
                            d = a.integers("dilation");
    set(n, "kernel_shape", std::vector<std::int64_t>{kh, kw});
    set(n, "strides", std::vector<std::int64_t>{s.at(0), s.at(1)});
    set(n, "pads", std::vector<std::int64_t>{p.at(0), p.at(1), p.at(0), p.at(1)});
    set(n, "dilations", std::vector<std::int64_t>{d.at(0), d.at(1)});
    set(n, "group", std::int64_t(a.integer("groups")));
  }

  void set_pool(NodeProto* n, const AttributeReader& a) {
    const std::int64_t k = a.integer("kernel"), s = a.integer("stride"), p = a.integer("padding");
    set(n, "kernel_shape", std::vector<std::int64_t>{k, k});
    set(n, "strides", std::vector<std::int64_t>{s, s});
    set(n, "pads", std::vector<std::int64_t>{p, p, p, p});
  }

  /// The shape `dims` as an int64 tensor computed from the batch size of the first input.
  std::string dynamic_shape(const std::vector<Dim>& target) {
    const std::string shape = add("Shape", {names_[p_.inputs.at(0)]});
    const std::string batch = add("Gather", {shape, int64s({0})});  // (1): [B]
    std::vector<std::string> parts;
    for (const Dim& d : target) {
      if (d.scale == 0) {
        parts.push_back(int64s({d.offset}));
        continue;
      }
      std::string x = d.scale == 1 ? batch : add("Mul", {batch, int64s({d.scale})});
      if (d.offset != 0) x = add("Add", {x, int64s({d.offset})});
      parts.push_back(x);
    }
    NodeProto* n = add_node("Concat", parts);
    set(n, "axis", std::int64_t(0));
    return n->output(0);
  }

  void emit(const typename Program<T>::Node& node) {
    static const std::map<std::string, std::string> unary = {
        {"exp", "Exp"},   {"log", "Log"},         {"sqrt", "Sqrt"}, {"abs", "Abs"},
        {"tanh", "Tanh"}, {"sigmoid", "Sigmoid"}, {"relu", "Relu"}, {"erf", "Erf"},
        {"sin", "Sin"},   {"cos", "Cos"},         {"neg", "Neg"},   {"softplus", "Softplus"}};
    static const std::map<std::string, std::string> binary = {
        {"add", "Add"}, {"sub", "Sub"},     {"mul", "Mul"},
        {"div", "Div"}, {"maximum", "Max"}, {"minimum", "Min"}};
    const std::string& op = node.op;
    const AttributeReader a(op, node.attributes);
    std::vector<std::string> in;
    for (std::size_t id : node.inputs) in.push_back(names_[id]);
    const std::string out = names_[node.output];
    auto rank = [&](std::size_t i) { return dims(node.inputs.at(i)).size(); };
    auto activation = [&](const std::string& name, const std::string& x) {
      if (name == "none") return add("Identity", {x}, out);
      if (name == "relu") return add("Relu", {x}, out);
      if (name == "tanh") return add("Tanh", {x}, out);
      if (name == "sigmoid") return add("Sigmoid", {x}, out);
      unsupported(node, "unknown activation '" + name + "'");
    };
    if (auto u = unary.find(op); u != unary.end()) {
      add(u->second, in, out);
    } else if (auto b = binary.find(op); b != binary.end()) {
      add(b->second, in, out);
    } else if (op == "affine") {
      const double scale = a.number("scale"), shift = a.number("shift");
      std::string x = in[0];
      if (scale != 1.0) x = add("Mul", {x, number(scale)}, shift == 0.0 ? out : "");
      if (shift != 0.0) x = add("Add", {x, number(shift)}, out);
      if (x != out) add("Identity", {x}, out);
    } else if (op == "pow") {
      add("Pow", {in[0], in.size() == 2 ? in[1] : number(a.number("exponent"))}, out);
    } else if (op == "where") {
      const Mask& m = a.mask("mask");
      std::vector<std::uint8_t> bytes(m.begin(), m.end());
      const std::string name = fresh("mask");
      *g_->add_initializer() = tensor(name, TensorProto::BOOL,
                                      std::vector<std::int64_t>(m.shape().begin(), m.shape().end()),
                                      bytes.data(), bytes.size());
      add("Where", {name, in[0], in[1]}, out);
    } else if (op == "leaky_relu") {
      set(add_node("LeakyRelu", in, out), "alpha", float(a.number("slope")));
    } else if (op == "elu") {
      set(add_node("Elu", in, out), "alpha", float(a.number("alpha")));
    } else if (op == "clamp" || op == "hardtanh") {
      add("Clip", {in[0], number(a.number("lo")), number(a.number("hi"))}, out);
    } else if (op == "lstm_cell") {
      // c' = σ(f)·c + σ(i)·tanh(g), h' = σ(o)·tanh(c'), out = [h', c']
      const std::string gates = add("Add", {in[0], in[1]});
      NodeProto* split = add_node("Split", {gates});
      split->clear_output();
      std::vector<std::string> part;
      for (const char* name : {"i", "f", "g", "o"}) {
        part.push_back(fresh(name));
        split->add_output(part.back());
      }
      set(split, "axis", std::int64_t(1));
      const std::string i = add("Sigmoid", {part[0]}), f = add("Sigmoid", {part[1]}),
                        g = add("Tanh", {part[2]}), o = add("Sigmoid", {part[3]});
      const std::string c = add("Add", {add("Mul", {f, in[2]}), add("Mul", {i, g})});
      const std::string h = add("Mul", {o, add("Tanh", {c})});
      set(add_node("Concat", {h, c}, out), "axis", std::int64_t(1));
    } else if (op == "gelu") {  // x/2·(1 + erf(x/√2)), or the tanh form
      std::string t;
      if (a.text("approximate") == "tanh") {
        const std::string cube = add("Mul", {add("Mul", {in[0], in[0]}), in[0]});
        const std::string inner = add("Add", {in[0], add("Mul", {cube, number(0.044715)})});
        t = add("Tanh", {add("Mul", {inner, number(std::sqrt(2.0 / M_PI))})});
      } else {
        t = add("Erf", {add("Mul", {in[0], number(M_SQRT1_2)})});
      }
      add("Mul", {add("Mul", {in[0], number(0.5)}), add("Add", {t, number(1.0)})}, out);
    } else if (op == "layer_norm") {
      const std::size_t axes = std::size_t(a.integer("axes"));
      const bool affine = a.flag("affine"), shift = a.flag("shift");
      std::vector<std::int64_t> shape;
      std::size_t n = 1;
      for (std::size_t d = rank(0) - axes; d < rank(0); ++d) {
        const Dim& x = dims(node.inputs[0])[d];
        if (x.scale != 0) unsupported(node, "it normalises over the batch axis");
        shape.push_back(x.offset);
        n *= std::size_t(x.offset);
      }
      std::vector<std::string> inputs{in[0],
                                      affine ? in[1] : constant(shape, std::vector<T>(n, T(1)))};
      if (shift) inputs.push_back(in[affine ? 2 : 1]);
      NodeProto* ln = add_node("LayerNormalization", inputs, out);
      set(ln, "axis", -std::int64_t(axes));
      set(ln, "epsilon", float(a.number("eps")));
    } else if (op == "scaled_dot_product_attention") {
      attention(node, a, in, out);
    } else if (op == "lstm") {
      recurrent(node, a, in, out);
    } else if (op == "matmul") {
      auto operand = [&](std::size_t k, bool transposed) {
        if (!transposed) return in[k];
        std::vector<std::int64_t> perm;
        for (std::size_t d = 0; d < rank(k); ++d) perm.push_back(std::int64_t(d));
        std::swap(perm[perm.size() - 1], perm[perm.size() - 2]);
        NodeProto* t = add_node("Transpose", {in[k]});
        set(t, "perm", perm);
        return t->output(0);
      };
      add("MatMul", {operand(0, a.flag("trans_a")), operand(1, a.flag("trans_b"))}, out);
    } else if (op == "linear") {
      const std::string& act = a.text("activation");
      const std::string y = act == "none" ? out : "";
      std::string z;
      if (rank(0) == 2) {
        NodeProto* gemm = add_node("Gemm", in, y);
        set(gemm, "transB", std::int64_t(1));
        z = gemm->output(0);
      } else {
        NodeProto* t = add_node("Transpose", {in[1]});
        set(t, "perm", std::vector<std::int64_t>{1, 0});
        z = add("MatMul", {in[0], t->output(0)}, in.size() == 3 ? "" : y);
        if (in.size() == 3) z = add("Add", {z, in[2]}, y);
      }
      if (act != "none") activation(act, z);
    } else if (op == "sum") {
      reduce_sum(in[0], reduced_axes(a, rank(0)), a.flag("keepdims"), out);
    } else if (op == "mean" || op == "max" || op == "min" || op == "log_sum_exp") {
      static const std::map<std::string, std::string> types = {{"mean", "ReduceMean"},
                                                               {"max", "ReduceMax"},
                                                               {"min", "ReduceMin"},
                                                               {"log_sum_exp", "ReduceLogSumExp"}};
      reduce(types.at(op), in[0], reduced_axes(a, rank(0)), a.flag("keepdims"), out);
    } else if (op == "log_softmax" || op == "softmax") {
      set(add_node(op == "softmax" ? "Softmax" : "LogSoftmax", in, out), "axis",
          std::int64_t(a.integer("axis")));
    } else if (op == "squared_distance") {
      const std::string d = add("Sub", in);
      const std::string s = reduce_sum(add("Mul", {d, d}), all_axes(rank(0)), false);
      add("Mul", {s, number(a.number("scale"))}, out);
    } else if (op == "var" || op == "std") {
      const std::vector<std::int64_t> axes = reduced_axes(a, rank(0));
      const double n = count(node, node.inputs[0], axes);
      const std::string m = reduce("ReduceMean", in[0], axes, true);
      const std::string d = add("Sub", {in[0], m});
      const std::string s = reduce_sum(add("Mul", {d, d}), axes, a.flag("keepdims"));
      const std::string v = add("Div", {s, number(std::max(n - a.number("correction"), 0.0))},
                                op == "var" ? out : "");
      if (op == "std") add("Sqrt", {v}, out);
    } else if (op == "norm") {
      const double p = a.number("p");
      const std::vector<std::int64_t> axes = reduced_axes(a, rank(0));
      const bool keep = a.flag("keepdims");
      if (p == 2) {
        reduce("ReduceL2", in[0], axes, keep, out);
      } else if (p == 1) {
        reduce("ReduceL1", in[0], axes, keep, out);
      } else if (std::isinf(p)) {
        reduce("ReduceMax", add("Abs", in), axes, keep, out);
      } else {
        const std::string s = reduce_sum(add("Pow", {add("Abs", in), number(p)}), axes, keep);
        add("Pow", {s, number(1.0 / p)}, out);
      }
    } else if (op == "cumsum") {
      NodeProto* c = add_node("CumSum", {in[0], int64s({a.integer("axis")}, true)}, out);
      if (a.flag("reverse")) set(c, "reverse", std::int64_t(1));
    } else if (op == "reshape" || op == "flatten") {
      reshape_to(node, in[0], node.output, out);
    } else if (op == "permute") {
      std::vector<std::int64_t> perm;
      for (long x : a.integers("axes")) perm.push_back(x);
      set(add_node("Transpose", in, out), "perm", perm);
    } else if (op == "slice") {
      if (!node.batch_entries.empty()) unsupported(node, "its bounds follow the batch size");
      std::int64_t stop = a.integer("stop");
      if (stop < 0) stop = std::numeric_limits<std::int64_t>::max();
      add("Slice",
          {in[0], int64s({a.integer("start")}), int64s({stop}), int64s({a.integer("axis")}),
           int64s({a.integer("step")})},
          out);
    } else if (op == "select") {
      set(add_node("Gather", {in[0], int64s({a.integer("index")}, true)}, out), "axis",
          std::int64_t(a.integer("axis")));
    } else if (op == "unslice") {
      if (a.integer("step") != 1) unsupported(node, "a step other than 1 has no ONNX equivalent");
      const std::size_t r = rank(0);
      long axis = a.integer("axis");
      if (axis < 0) axis += long(r);
      const std::vector<long> shape = a.integers("shape");
      std::vector<std::int64_t> pads(2 * r, 0);
      const std::int64_t len = dims(node.inputs[0]).at(std::size_t(axis)).offset;
      pads[std::size_t(axis)] = a.integer("start");
      pads[r + std::size_t(axis)] = shape.at(std::size_t(axis)) - a.integer("start") - len;
      add("Pad", {in[0], int64s(pads)}, out);
    } else if (op == "index_select" || op == "gather") {
      const Index& idx = a.index(op == "gather" ? "index" : "indices");
      std::vector<std::int64_t> v(idx.data(), idx.data() + idx.size());
      const Shape s = idx.shape();
      const std::string name = fresh("index");
      *g_->add_initializer() =
          tensor(name, TensorProto::INT64, std::vector<std::int64_t>(s.begin(), s.end()), v.data(),
                 v.size() * sizeof(std::int64_t));
      set(add_node(op == "gather" ? "GatherElements" : "Gather", {in[0], name}, out), "axis",
          std::int64_t(a.integer("axis")));
    } else if (op == "concatenate") {
      set(add_node("Concat", in, out), "axis", std::int64_t(a.integer("axis")));
    } else if (op == "broadcast_to") {
      // Expand broadcasts both ways: an extent that follows the batch may be written as 1 where
      // the input has it already.
      const std::vector<Dim>& from = dims(node.inputs[0]);
      const std::vector<Dim>& to = dims(node.output);
      std::vector<std::int64_t> shape;
      for (std::size_t d = 0; d < to.size(); ++d) {
        if (to[d].scale == 0) {
          shape.push_back(to[d].offset);
          continue;
        }
        const std::size_t lead = to.size() - from.size();
        if (d < lead || from[d - lead].scale != to[d].scale ||
            from[d - lead].offset != to[d].offset)
          unsupported(node, "it broadcasts along an axis that follows the batch size");
        shape.push_back(1);
      }
      add("Expand", {in[0], int64s(shape)}, out);
    } else if (op == "sum_to") {
      const std::vector<Dim>& from = dims(node.inputs[0]);
      const std::vector<Dim>& to = dims(node.output);
      const std::size_t lead = from.size() - to.size();
      std::vector<std::int64_t> axes;
      for (std::size_t d = 0; d < from.size(); ++d) {
        const bool summed = d < lead || (to[d - lead].scale == 0 && to[d - lead].offset == 1 &&
                                         !(from[d].scale == 0 && from[d].offset == 1));
        if (summed) axes.push_back(std::int64_t(d));
      }
      if (lead == 0) {
        reduce_sum(in[0], axes, true, out);
      } else {
        reshape_to(node, reduce_sum(in[0], axes, true), node.output, out);
      }
    } else if (op == "embedding") {
      NodeProto* cast = add_node("Cast", {in[1]});
      set(cast, "to", std::int64_t(TensorProto::INT64));
      set(add_node("Gather", {in[0], cast->output(0)}, out), "axis", std::int64_t(0));
    } else if (op == "full") {
      const T value = static_cast<T>(a.number("value"));
      const std::vector<Dim>& to = dims(node.output);
      std::string shape;
      if (node.batch_entries.empty()) {
        std::vector<std::int64_t> fixed;
        for (const Dim& d : to) fixed.push_back(d.offset);
        shape = int64s(fixed);
      } else {
        shape = dynamic_shape(to);
      }
      set(add_node("ConstantOfShape", {shape}, out), "value",
          tensor("value", elem_type<T>(), {1}, &value, sizeof(T)));
    } else if (op == "conv2d") {
      const std::vector<Dim>& w = dims(node.inputs[1]);
      set_conv(add_node("Conv", in, out), a, w.at(2).offset, w.at(3).offset);
    } else if (op == "conv2d_input_grad") {
      // The transposed convolution: its output padding makes the extents of x_shape.
      const std::vector<Dim>& w = dims(node.inputs[1]);
      const std::vector<Dim>& g = dims(node.inputs[0]);
      const std::vector<long> x = a.integers("x_shape"), s = a.integers("stride"),
                              p = a.integers("padding"), d = a.integers("dilation");
      NodeProto* t = add_node("ConvTranspose", in, out);
      set_conv(t, a, w.at(2).offset, w.at(3).offset);
      std::vector<std::int64_t> extra;
      for (std::size_t k = 0; k < 2; ++k)
        extra.push_back(x.at(2 + k) - (s.at(k) * (g.at(2 + k).offset - 1) +
                                       d.at(k) * (w.at(2 + k).offset - 1) + 1 - 2 * p.at(k)));
      set(t, "output_padding", extra);
    } else if (op == "max_pool2d") {
      set_pool(add_node("MaxPool", in, out), a);
    } else if (op == "avg_pool2d") {
      NodeProto* n = add_node("AveragePool", in, out);
      set_pool(n, a);
      set(n, "count_include_pad", std::int64_t(1));
    } else if (op == "softmax_cross_entropy" || op == "index_add" || op == "scatter_add" ||
               op == "conv2d_weight_grad" || op == "avg_pool2d_grad") {
      unsupported(node, "it has no ONNX equivalent here (a loss or a gradient op)");
    } else {
      unsupported(node, "no ONNX mapping for this op");
    }
  }

  static std::vector<std::int64_t> all_axes(std::size_t rank) {
    std::vector<std::int64_t> axes;
    for (std::size_t d = 0; d < rank; ++d) axes.push_back(std::int64_t(d));
    return axes;
  }

  const Program<T>& p_;
  const SaveOptions& options_;
  ::onnx::GraphProto* g_ = nullptr;
  std::vector<std::string> names_;
  std::vector<std::string> output_names_;
  std::size_t n_ = 0;
  std::size_t fresh_ = 0;
};

}  // namespace

template <class T>
std::string to_model(const Program<T>& program, const SaveOptions& options) {
  if (program.outputs.empty()) fail("onnx: the program has no output");
  return Exporter<T>(program, options).run();
}

template <class T>
void save(const Program<T>& program, const std::string& path, const SaveOptions& options) {
  const std::string bytes = to_model(program, options);
  nn::write_atomically(
      path,
      [&](const std::string& temporary) {
        std::ofstream out(temporary, std::ios::binary);
        out.write(bytes.data(), std::streamsize(bytes.size()));
        out.flush();
        if (!out) fail("cannot write '", temporary, "'");
      },
      "ONNX model");
}

template <class T>
void save(nn::Module<T>& module, const Variable<T>& example, const std::string& path,
          const SaveOptions& options) {
  const bool training = module.is_training();
  module.eval();
  Program<T> program;
  try {
    TraceOptions<T> trace_options;
    trace_options.parameters = module.named_parameters();
    program = ad::trace<T>(std::function<Variable<T>(const Variable<T>&)>(
                               [&module](const Variable<T>& x) { return module(x); }),
                           example, trace_options);
  } catch (...) {
    module.train(training);
    throw;
  }
  module.train(training);
  save(program, path, options);
}

std::vector<std::string> check(const std::string& bytes) {
  ::onnx::ModelProto model;
  if (!model.ParseFromString(bytes)) fail("onnx: the model is not a valid ModelProto");
  try {
    ::onnx::checker::check_model(model);
    ::onnx::shape_inference::InferShapes(model, ::onnx::OpSchemaRegistry::Instance(),
                                         ::onnx::ShapeInferenceOptions(true, 1, false));
  } catch (const std::exception& e) {
    fail("onnx: the model does not pass ONNX's checks: ", e.what());
  }
  std::vector<std::string> shapes;
  for (const auto& out : model.graph().output()) {
    std::string s;
    for (const auto& d : out.type().tensor_type().shape().dim()) {
      if (!s.empty()) s += ",";
      s += d.has_dim_value() ? std::to_string(d.dim_value()) : d.dim_param();
    }
    shapes.push_back(s);
  }
  return shapes;
}

#define AD_INSTANTIATE(T)                                                           \
  template std::string to_model<T>(const Program<T>&, const SaveOptions&);          \
  template void save<T>(const Program<T>&, const std::string&, const SaveOptions&); \
  template void save<T>(nn::Module<T>&, const Variable<T>&, const std::string&, const SaveOptions&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad::onnx
