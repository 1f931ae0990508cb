#include "autodiff/program.hpp"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <sstream>
#include <unordered_map>

#include "autodiff/ops.hpp"

namespace ad {

// ---------------------------------------------------------------------------------------------
// Attributes

bool AttributeReader::has(const char* name) const {
  for (const auto& a : attributes_)
    if (a.name == name) return true;
  return false;
}

const AttributeValue& AttributeReader::value(const char* name) const {
  for (const auto& a : attributes_)
    if (a.name == name) return a.value;
  fail(op_, ": the node has no attribute '", name, "'");
}

void AttributeReader::wrong_type(const char* name) const {
  fail(op_, ": attribute '", name, "' has the wrong type");
}

std::vector<std::size_t> AttributeReader::sizes(const char* name) const {
  std::vector<std::size_t> out;
  for (long v : integers(name)) {
    if (v < 0) fail(op_, ": attribute '", name, "' holds a negative extent ", v);
    out.push_back(static_cast<std::size_t>(v));
  }
  return out;
}

Shape AttributeReader::shape(const char* name) const {
  std::vector<std::size_t> s = sizes(name);
  return Shape(s.begin(), s.end());
}

namespace {

template <class V>
std::string list_str(const std::vector<V>& v) {
  std::ostringstream os;
  os << "[";
  for (std::size_t i = 0; i < v.size(); ++i) os << (i ? "," : "") << v[i];
  os << "]";
  return os.str();
}

std::string value_str(const AttributeValue& v) {
  std::ostringstream os;
  os.precision(9);
  if (auto b = std::get_if<bool>(&v)) return *b ? "true" : "false";
  if (auto i = std::get_if<long>(&v)) return std::to_string(*i);
  if (auto d = std::get_if<double>(&v)) {
    os << *d;
    return os.str();
  }
  if (auto s = std::get_if<std::string>(&v)) return *s;
  if (auto l = std::get_if<std::vector<long>>(&v)) return list_str(*l);
  if (auto l = std::get_if<std::vector<double>>(&v)) return list_str(*l);
  if (auto x = std::get_if<Index>(&v)) return "index" + shape_str(x->shape());
  return "mask" + shape_str(std::get<Mask>(v).shape());
}

}  // namespace

std::string attributes_str(const Attributes& attributes) {
  std::string out;
  for (const auto& a : attributes) {
    if (!out.empty()) out += " ";
    out += a.name + "=" + value_str(a.value);
  }
  return out;
}

std::string Dim::str() const {
  if (scale == 0) return std::to_string(offset);
  std::string s = (scale == 1 ? "" : std::to_string(scale)) + "B";
  if (offset > 0) s += "+" + std::to_string(offset);
  if (offset < 0) s += std::to_string(offset);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Recording

namespace detail {

/// One run of the traced function: the values and nodes seen, with their concrete shapes.
template <class T>
struct TraceRecorder {
  explicit TraceRecorder(const TraceOptions<T>& o) : options(o) {}
  const TraceOptions<T>& options;
  Program<T> program;
  std::vector<Shape> shapes;  ///< each value's shape in this run
  std::unordered_map<const VariableImpl<T>*, std::size_t> ids;
  /// Every Variable seen, held so that no address is reused for another during the trace.
  std::vector<Variable<T>> held;
  std::size_t unnamed_parameters = 0;
  std::uint64_t start = 0;

  std::size_t add_value(const Variable<T>& v, typename Program<T>::Source source, std::string name,
                        std::size_t index) {
    const std::size_t id = program.values.size();
    program.values.push_back({source, std::move(name), {}, index});
    shapes.push_back(v.shape());
    ids.emplace(&v.impl(), id);
    held.push_back(v);
    return id;
  }

  /// The id of a value an op reads: known, or a parameter or constant met for the first time.
  std::size_t id_of(const Variable<T>& v, const char* op) {
    auto it = ids.find(&v.impl());
    if (it != ids.end()) return it->second;
    using S = typename Program<T>::Source;
    for (const auto& [name, p] : options.parameters)
      if (p.defined() && &p.impl() == &v.impl()) {
        program.parameters.emplace_back(name, v);
        return add_value(v, S::parameter, name, program.parameters.size() - 1);
      }
    if (!v.is_leaf() && v.impl().node->seq > start)
      fail("trace: an input of op '", op, "' (node ", program.nodes.size(), ") was made by '",
           v.op_name(),
           "', which a program cannot describe (a custom op, or an op without a trace "
           "description)");
    if (v.is_leaf() && v.requires_grad()) {
      std::string name = "param" + std::to_string(unnamed_parameters++);
      program.parameters.emplace_back(name, v);
      return add_value(v, S::parameter, name, program.parameters.size() - 1);
    }
    program.constants.push_back(v.value());
    return add_value(v, S::constant, "c" + std::to_string(program.constants.size() - 1),
                     program.constants.size() - 1);
  }

  void add_node(const char* op, Attributes&& attributes, std::vector<std::size_t>&& inputs,
                const Variable<T>& out) {
    if (ids.count(&out.impl())) return;  // an op that returned a value already there
    const std::size_t n = program.nodes.size();
    const std::size_t id = add_value(out, Program<T>::Source::node, "%" + std::to_string(n), n);
    program.nodes.push_back({op, std::move(attributes), std::move(inputs), id, {}});
  }
};

template <class T>
Variable<T> trace_call(const char* op, const Variable<T>* const* inputs, std::size_t count,
                       const std::function<Variable<T>()>& body, Attributes&& attributes) {
  TraceRecorder<T>* recorder = active_trace<T>;
  Variable<T> out;
  {
    TraceSuspend<T> inner;
    out = body();
  }
  if (!out.defined()) return out;
  for (std::size_t i = 0; i < count; ++i)
    if (inputs[i]->defined() && inputs[i]->impl_ptr() == out.impl_ptr()) return out;  // identity
  std::vector<std::size_t> ids;
  for (std::size_t i = 0; i < count; ++i)
    if (inputs[i]->defined()) ids.push_back(recorder->id_of(*inputs[i], op));
  recorder->add_node(op, std::move(attributes), std::move(ids), out);
  return out;
}

}  // namespace detail

// ---------------------------------------------------------------------------------------------
// trace()

namespace {

/// The inputs with their first sample appended along axis 0 (batch B + 1).
template <class T>
std::vector<Variable<T>> grown_inputs(const std::vector<Variable<T>>& inputs) {
  std::vector<Variable<T>> out;
  for (const auto& v : inputs) {
    Shape s = v.shape();
    const std::size_t row = v.size() / s[0];
    s[0] += 1;
    Array<T> a(s);
    std::copy(v.value().data(), v.value().data() + v.size(), a.data());
    std::copy(v.value().data(), v.value().data() + row, a.data() + v.size());
    out.emplace_back(std::move(a), v.requires_grad());
  }
  return out;
}

template <class T>
std::unique_ptr<detail::TraceRecorder<T>> record_once(const TracedFn<T>& f,
                                                      const std::vector<Variable<T>>& examples,
                                                      const std::vector<std::string>& names,
                                                      const TraceOptions<T>& options) {
  auto recorder = std::make_unique<detail::TraceRecorder<T>>(options);
  std::vector<Variable<T>> inputs;
  for (std::size_t i = 0; i < examples.size(); ++i) {
    inputs.emplace_back(examples[i].value(), examples[i].requires_grad());
    recorder->program.inputs.push_back(
        recorder->add_value(inputs.back(), Program<T>::Source::input, names[i], i));
  }
  recorder->start = detail::next_seq();
  std::vector<Variable<T>> outputs;
  {
    detail::TraceRecorder<T>* previous = detail::active_trace<T>;
    detail::active_trace<T> = recorder.get();
    try {
      outputs = f(inputs);
    } catch (...) {
      detail::active_trace<T> = previous;
      throw;
    }
    detail::active_trace<T> = previous;
  }
  if (outputs.empty()) fail("trace: the function returned no output");
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    if (!outputs[i].defined()) fail("trace: output ", i, " is undefined");
    recorder->program.outputs.push_back(recorder->id_of(outputs[i], "output"));
  }
  return recorder;
}

bool same_number(double a, double b) {
  return a == b || (std::isnan(a) && std::isnan(b));
}

/// Whether two attribute values agree, but for integers (which may depend on the batch).
bool same_kind_and_value(const AttributeValue& a, const AttributeValue& b) {
  if (a.index() != b.index()) return false;
  if (auto x = std::get_if<double>(&a)) return same_number(*x, std::get<double>(b));
  if (auto x = std::get_if<std::vector<double>>(&a)) {
    const auto& y = std::get<std::vector<double>>(b);
    if (x->size() != y.size()) return false;
    for (std::size_t i = 0; i < x->size(); ++i)
      if (!same_number((*x)[i], y[i])) return false;
    return true;
  }
  if (auto x = std::get_if<Index>(&a)) {
    const Index& y = std::get<Index>(b);
    return x->shape() == y.shape() && std::equal(x->data(), x->data() + x->size(), y.data());
  }
  if (auto x = std::get_if<Mask>(&a)) return *x == std::get<Mask>(b);
  if (auto x = std::get_if<std::vector<long>>(&a))
    return x->size() == std::get<std::vector<long>>(b).size();
  if (auto x = std::get_if<bool>(&a)) return *x == std::get<bool>(b);
  if (auto x = std::get_if<std::string>(&a)) return *x == std::get<std::string>(b);
  return true;  // an integer: it may depend on the batch
}

template <class T>
bool same_array(const Array<T>& a, const Array<T>& b) {
  if (a.shape() != b.shape()) return false;
  for (std::size_t i = 0; i < a.size(); ++i)
    if (!same_number(a.data()[i], b.data()[i])) return false;
  return true;
}

/// The first node that reads value `id` ("output" when only an output does).
template <class T>
std::string reader_of(const Program<T>& p, std::size_t id) {
  for (std::size_t n = 0; n < p.nodes.size(); ++n)
    for (std::size_t in : p.nodes[n].inputs)
      if (in == id) return "node " + std::to_string(n) + " (" + p.nodes[n].op + ")";
  return "an output";
}

/// Merges the traces at batch B (a) and B + 1 (b) into a's program, with every extent and integer
/// attribute that differs as a function of B.
template <class T>
void merge_batch(detail::TraceRecorder<T>& a, const detail::TraceRecorder<T>& b, long batch) {
  Program<T>& p = a.program;
  const Program<T>& q = b.program;
  const std::string sizes =
      " at batch sizes " + std::to_string(batch) + " and " + std::to_string(batch + 1);
  auto differ = [&](const std::string& what) {
    fail("trace: the computation differs", sizes, ": ", what,
         " (a program needs the same ops for every batch size; trace with "
         "TraceOptions::dynamic_batch = false for a fixed one)");
  };
  if (p.nodes.size() != q.nodes.size())
    differ(std::to_string(p.nodes.size()) + " against " + std::to_string(q.nodes.size()) +
           " nodes");
  if (p.values.size() != q.values.size() || p.outputs != q.outputs)
    differ("its values or outputs are not the same");
  auto dim = [batch](long x, long y) { return Dim{y - x, x - (y - x) * batch}; };
  for (std::size_t v = 0; v < p.values.size(); ++v) {
    const Shape &s = a.shapes[v], &t = b.shapes[v];
    if (p.values[v].source != q.values[v].source || s.size() != t.size())
      differ("value " + p.values[v].name + " is not the same");
    for (std::size_t d = 0; d < s.size(); ++d)
      p.values[v].shape.push_back(dim(long(s[d]), long(t[d])));
    if (p.values[v].source == Program<T>::Source::constant &&
        !same_array(p.constants[p.values[v].index], q.constants[q.values[v].index]))
      fail("trace: constant ", p.values[v].name, " read by ", reader_of(p, v), " differs", sizes,
           ": it was computed from the inputs outside an op that a program can describe (a mask "
           "or an index made from the data, a tensor made for the batch size), or by a custom "
           "op; make it with the library's ops, or trace with TraceOptions::dynamic_batch = "
           "false");
  }
  for (std::size_t n = 0; n < p.nodes.size(); ++n) {
    auto& x = p.nodes[n];
    const auto& y = q.nodes[n];
    const std::string at = "node " + std::to_string(n) + " (" + x.op + ")";
    if (x.op != y.op || x.inputs != y.inputs || x.attributes.size() != y.attributes.size())
      differ(at + " against node " + std::to_string(n) + " (" + y.op + ")");
    for (std::size_t k = 0; k < x.attributes.size(); ++k) {
      const AttributeValue &u = x.attributes[k].value, &w = y.attributes[k].value;
      if (x.attributes[k].name != y.attributes[k].name || u.index() != w.index())
        differ("attribute '" + x.attributes[k].name + "' of " + at);
      if (!same_kind_and_value(u, w))
        fail("trace: attribute '", x.attributes[k].name, "' of ", at, " differs", sizes,
             std::holds_alternative<Index>(u) || std::holds_alternative<Mask>(u)
                 ? ": the indices or the mask were made from the inputs' values or for the batch "
                   "size outside an op (trace with TraceOptions::dynamic_batch = false for a "
                   "fixed batch, where they are constants)"
                 : ": a number computed from the inputs' values or from the batch size outside "
                   "an op (a mean's count, for instance); make it with the library's ops");
      if (auto i = std::get_if<long>(&u)) {
        if (*i != std::get<long>(w))
          x.batch_entries.push_back({x.attributes[k].name, 0, dim(*i, std::get<long>(w))});
      } else if (auto l = std::get_if<std::vector<long>>(&u)) {
        const auto& m = std::get<std::vector<long>>(w);
        for (std::size_t e = 0; e < l->size(); ++e)
          if ((*l)[e] != m[e])
            x.batch_entries.push_back({x.attributes[k].name, e, dim((*l)[e], m[e])});
      }
    }
  }
  for (std::size_t i = 0; i < p.parameters.size(); ++i)
    if (p.parameters[i].second.impl_ptr() != q.parameters[i].second.impl_ptr())
      differ("parameter " + p.parameters[i].first + " is not the same");
  p.batch = batch;
}

}  // namespace

template <class T>
Program<T> trace(const TracedFn<T>& f, const std::vector<Variable<T>>& examples,
                 const TraceOptions<T>& options) {
  if (!f) fail("trace: the function is empty");
  if (examples.empty()) fail("trace: needs at least one example input");
  std::vector<std::string> names = options.input_names;
  if (names.empty()) {
    if (examples.size() == 1) names.push_back("x");
    for (std::size_t i = 0; examples.size() > 1 && i < examples.size(); ++i)
      names.push_back("x" + std::to_string(i));
  }
  if (names.size() != examples.size())
    fail("trace: ", names.size(), " input names for ", examples.size(), " inputs");
  for (std::size_t i = 0; i < examples.size(); ++i)
    if (!examples[i].defined()) fail("trace: example input ", i, " is undefined");
  auto first = record_once(f, examples, names, options);
  if (!options.dynamic_batch) {
    for (std::size_t v = 0; v < first->program.values.size(); ++v)
      for (std::size_t d : first->shapes[v]) first->program.values[v].shape.push_back({0, long(d)});
    return std::move(first->program);
  }
  const Shape& s0 = examples[0].shape();
  for (std::size_t i = 0; i < examples.size(); ++i)
    if (examples[i].dim() == 0 || examples[i].shape()[0] != s0[0] || s0[0] == 0)
      fail(
          "trace: with a dynamic batch, every input needs the same non-zero extent along axis 0 "
          "(the batch); input '",
          names[i], "' is ", shape_str(examples[i].shape()), " and input '", names[0], "' ",
          shape_str(s0), " (TraceOptions::dynamic_batch = false traces fixed shapes)");
  auto second = record_once(f, grown_inputs(examples), names, options);
  merge_batch(*first, *second, long(s0[0]));
  return std::move(first->program);
}

template <class T>
Program<T> trace(const std::function<Variable<T>(const Variable<T>&)>& f, const Variable<T>& x,
                 const TraceOptions<T>& options) {
  if (!f) fail("trace: the function is empty");
  return trace<T>(TracedFn<T>([&f](const std::vector<Variable<T>>& in) {
                    return std::vector<Variable<T>>{f(in[0])};
                  }),
                  std::vector<Variable<T>>{x}, options);
}

// ---------------------------------------------------------------------------------------------
// Running, printing

namespace detail {

template <class T>
Replay<T> find_replay(const std::string& op) {
  static const std::unordered_map<std::string, Replay<T>> table = [] {
    std::unordered_map<std::string, Replay<T>> t;
    for (const auto& list : {arithmetic_replays<T>(), elementwise_replays<T>(), linalg_replays<T>(),
                             reduce_replays<T>(), shape_replays<T>(), conv_replays<T>(),
                             attention_replays<T>(), recurrent_replays<T>()})
      for (const auto& [name, replay] : list) t.emplace(name, replay);
    return t;
  }();
  auto it = table.find(op);
  return it == table.end() ? nullptr : it->second;
}

}  // namespace detail

template <class T>
Shape Program<T>::shape_of(std::size_t value, long batch_size) const {
  Shape s;
  for (const Dim& d : values.at(value).shape)
    s.push_back(std::size_t(std::max(0L, d.at(batch_size))));
  return s;
}

template <class T>
Attributes Program<T>::attributes_for(const Node& node, long batch_size) const {
  Attributes out = node.attributes;
  if (batch_size == batch) return out;
  for (const BatchEntry& e : node.batch_entries)
    for (auto& a : out) {
      if (a.name != e.attribute) continue;
      if (auto i = std::get_if<long>(&a.value)) *i = e.dim.at(batch_size);
      if (auto l = std::get_if<std::vector<long>>(&a.value))
        l->at(e.position) = e.dim.at(batch_size);
    }
  return out;
}

template <class T>
std::vector<Variable<T>> Program<T>::run(const std::vector<Variable<T>>& given) const {
  if (given.size() != inputs.size())
    fail("program: ", given.size(), " inputs given, it takes ", inputs.size());
  long b = batch;
  if (batch > 0) {
    if (!given[0].defined() || given[0].dim() == 0)
      fail("program: input '", values[inputs[0]].name, "' needs a batch axis");
    b = long(given[0].shape()[0]);
  }
  std::vector<Variable<T>> v(values.size());
  for (std::size_t i = 0; i < inputs.size(); ++i) {
    const Value& value = values[inputs[i]];
    if (!given[i].defined()) fail("program: input '", value.name, "' is undefined");
    Shape want = shape_of(inputs[i], b);
    if (!same_shape(given[i].shape(), want)) {
      std::string dims;
      for (const Dim& d : value.shape) dims += (dims.empty() ? "" : ",") + d.str();
      fail("program: input '", value.name, "' has shape ", shape_str(given[i].shape()),
           ", the program takes (", dims, ")", batch > 0 ? " with B = " + std::to_string(b) : "");
    }
    v[inputs[i]] = given[i];
  }
  for (std::size_t id = 0; id < values.size(); ++id) {
    const Value& value = values[id];
    if (value.source == Source::parameter) v[id] = parameters.at(value.index).second;
    if (value.source == Source::constant) v[id] = Variable<T>(constants.at(value.index));
  }
  for (std::size_t n = 0; n < nodes.size(); ++n) {
    const Node& node = nodes[n];
    detail::Replay<T> replay = detail::find_replay<T>(node.op);
    if (!replay) fail("program: node ", n, ": no op '", node.op, "' in this library");
    std::vector<Variable<T>> args;
    for (std::size_t in : node.inputs) args.push_back(v.at(in));
    const Attributes attributes = attributes_for(node, b);
    try {
      v.at(node.output) = replay(args, AttributeReader(node.op, attributes));
    } catch (const Error& e) {
      fail("program: node ", n, " (", node.op, "): ", e.what());
    }
  }
  std::vector<Variable<T>> out;
  for (std::size_t id : outputs) out.push_back(v.at(id));
  return out;
}

template <class T>
Variable<T> Program<T>::operator()(const Variable<T>& x) const {
  if (inputs.size() != 1 || outputs.size() != 1)
    fail("program: takes ", inputs.size(), " inputs and gives ", outputs.size(),
         " outputs; call run()");
  return run({x})[0];
}

namespace {

template <class T>
std::string type_str(const std::vector<Dim>& shape) {
  std::string s = std::is_same_v<T, float> ? "f32[" : "f64[";
  for (std::size_t d = 0; d < shape.size(); ++d) s += (d ? "," : "") + shape[d].str();
  return s + "]";
}

std::string dot_quote(const std::string& s) {
  std::string out = "\"";
  for (char c : s) {
    if (c == '"' || c == '\\') out += '\\';
    out += c;
  }
  return out + "\"";
}

/// A node's attributes as attributes_str prints them, with the integers that follow the batch
/// size written in terms of B ("shape=[B,6,8]").
template <class Node>
std::string node_attributes_str(const Node& node) {
  if (node.batch_entries.empty()) return attributes_str(node.attributes);
  std::string out;
  for (const auto& a : node.attributes) {
    std::string text = value_str(a.value);
    auto symbolic = [&](std::size_t position) -> const Dim* {
      for (const auto& e : node.batch_entries)
        if (e.attribute == a.name && e.position == position) return &e.dim;
      return nullptr;
    };
    if (auto list = std::get_if<std::vector<long>>(&a.value)) {
      text = "[";
      for (std::size_t i = 0; i < list->size(); ++i) {
        const Dim* d = symbolic(i);
        text += (i ? "," : "") + (d ? d->str() : std::to_string((*list)[i]));
      }
      text += "]";
    } else if (std::holds_alternative<long>(a.value) && symbolic(0)) {
      text = symbolic(0)->str();
    }
    out += (out.empty() ? "" : " ") + a.name + "=" + text;
  }
  return out;
}

}  // namespace

template <class T>
std::string Program<T>::str() const {
  std::ostringstream os;
  auto typed = [&](std::size_t id) {
    return values[id].name + ": " + type_str<T>(values[id].shape);
  };
  os << "program(";
  for (std::size_t i = 0; i < inputs.size(); ++i) os << (i ? ", " : "") << typed(inputs[i]);
  bool first = true;
  for (std::size_t id = 0; id < values.size(); ++id)
    if (values[id].source == Source::parameter) {
      os << (first ? "; " : ", ") << typed(id);
      first = false;
    }
  os << ") {\n";
  for (std::size_t id = 0; id < values.size(); ++id)
    if (values[id].source == Source::constant) os << "  " << typed(id) << " = constant\n";
  for (const Node& node : nodes) {
    os << "  " << typed(node.output) << " = " << node.op << "(";
    for (std::size_t i = 0; i < node.inputs.size(); ++i)
      os << (i ? ", " : "") << values[node.inputs[i]].name;
    os << ")";
    const std::string attributes = node_attributes_str(node);
    if (!attributes.empty()) os << " " << attributes;
    os << "\n";
  }
  os << "  return ";
  for (std::size_t i = 0; i < outputs.size(); ++i) os << (i ? ", " : "") << values[outputs[i]].name;
  os << "\n}\n";
  return os.str();
}

template <class T>
std::string Program<T>::dot() const {
  std::ostringstream os;
  os << "digraph program {\n  rankdir=TB;\n  node [fontname=\"Helvetica\", fontsize=10];\n"
     << "  edge [fontname=\"Helvetica\", fontsize=9];\n";
  auto id = [](std::size_t v) { return "v" + std::to_string(v); };
  for (std::size_t v = 0; v < values.size(); ++v) {
    const Value& value = values[v];
    const std::string type = type_str<T>(value.shape);
    if (value.source == Source::input)
      os << "  " << id(v) << " [shape=ellipse, style=filled, fillcolor=\"#d8e8ff\", label="
         << dot_quote(value.name + "\n" + type) << "];\n";
    else if (value.source == Source::parameter)
      os << "  " << id(v) << " [shape=note, style=filled, fillcolor=\"#eeeeee\", label="
         << dot_quote(value.name + "\n" + type) << "];\n";
    else if (value.source == Source::constant)
      os << "  " << id(v) << " [shape=note, label=" << dot_quote(value.name + "\n" + type)
         << "];\n";
  }
  for (std::size_t n = 0; n < nodes.size(); ++n) {
    const Node& node = nodes[n];
    std::string label = node.op;
    const std::string attributes = node_attributes_str(node);
    if (!attributes.empty()) label += "\n" + attributes;
    os << "  " << id(node.output)
       << " [shape=box, style=\"rounded,filled\", fillcolor=\"#fff4d0\", "
       << "label=" << dot_quote(label) << "];\n";
    for (std::size_t in : node.inputs)
      os << "  " << id(in) << " -> " << id(node.output)
         << " [label=" << dot_quote(type_str<T>(values[in].shape)) << "];\n";
  }
  for (std::size_t i = 0; i < outputs.size(); ++i) {
    os << "  out" << i << " [shape=ellipse, style=filled, fillcolor=\"#d8ffd8\", label="
       << dot_quote("output " + std::to_string(i)) << "];\n";
    os << "  " << id(outputs[i]) << " -> out" << i
       << " [label=" << dot_quote(type_str<T>(values[outputs[i]].shape)) << "];\n";
  }
  os << "}\n";
  return os.str();
}

#define AD_INSTANTIATE(T)                                                                         \
  template struct Program<T>;                                                                     \
  template Program<T> trace<T>(const TracedFn<T>&, const std::vector<Variable<T>>&,               \
                               const TraceOptions<T>&);                                           \
  template Program<T> trace<T>(const std::function<Variable<T>(const Variable<T>&)>&,             \
                               const Variable<T>&, const TraceOptions<T>&);                       \
  template Variable<T> detail::trace_call<T>(const char*, const Variable<T>* const*, std::size_t, \
                                             const std::function<Variable<T>()>&, Attributes&&);  \
  template detail::Replay<T> detail::find_replay<T>(const std::string&);
AD_INSTANTIATE(float)
AD_INSTANTIATE(double)
#undef AD_INSTANTIATE

}  // namespace ad
