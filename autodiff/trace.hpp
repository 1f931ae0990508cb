// How an op describes itself to a trace (ad::trace, program.hpp): its name, its inputs, its output
// and its attributes (axes, stride, scale, ...). An op's public function wraps its body in
// detail::traced(); while no trace records on the thread that costs two thread-local tests and
// stores nothing. Each op file also lists how to run each of its ops again from a node's
// attributes (its `*_replays()`), the inverse of what it records: Program runs on it.
#pragma once

#include <cstddef>
#include <functional>
#include <initializer_list>
#include <string>
#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

#include "autodiff/index.hpp"
#include "autodiff/variable.hpp"

namespace ad {

/// A boolean mask (where()'s first argument).
using Mask = Array<bool>;

/// The value of one attribute of a program's node: a flag, an integer, a number, a name, a list
/// of integers (axes, shapes) or of numbers, or the indices or mask an op takes besides its
/// Variables (gather's index, where's mask: constants of the program).
using AttributeValue = std::variant<bool, long, double, std::string, std::vector<long>,
                                    std::vector<double>, Index, Mask>;

/// A named attribute of a node.
struct Attribute {
  std::string name;      ///< e.g. "axes"
  AttributeValue value;  ///< its value
};

/// A node's attributes, in the order the op gives them.
using Attributes = std::vector<Attribute>;

/// Reads a node's attributes by name, for running it again or exporting it; a missing attribute
/// or one of another type is an ad::Error naming the op.
class AttributeReader {
 public:
  /// Reads `attributes` of a node of op `op` (which errors name); both must outlive the reader.
  AttributeReader(const std::string& op, const Attributes& attributes)
      : op_(op), attributes_(attributes) {}
  /// Whether the node has the attribute.
  bool has(const char* name) const;
  /// A flag.
  bool flag(const char* name) const { return get<bool>(name); }
  /// An integer.
  long integer(const char* name) const { return get<long>(name); }
  /// A number.
  double number(const char* name) const { return get<double>(name); }
  /// A name.
  const std::string& text(const char* name) const { return get<std::string>(name); }
  /// A list of integers.
  const std::vector<long>& integers(const char* name) const { return get<std::vector<long>>(name); }
  /// Indices.
  const Index& index(const char* name) const { return get<Index>(name); }
  /// A mask.
  const Mask& mask(const char* name) const { return get<Mask>(name); }
  /// A list of non-negative integers as a Shape.
  Shape shape(const char* name) const;
  /// A list of non-negative integers (axes, a permutation).
  std::vector<std::size_t> sizes(const char* name) const;
  /// The attribute itself.
  const AttributeValue& value(const char* name) const;

 private:
  template <class V>
  const V& get(const char* name) const {
    const AttributeValue& v = value(name);
    if (!std::holds_alternative<V>(v)) wrong_type(name);
    return std::get<V>(v);
  }
  [[noreturn]] void wrong_type(const char* name) const;
  const std::string& op_;
  const Attributes& attributes_;
};

/// "axes=[0,1] keepdims=false": attributes as a program prints them.
std::string attributes_str(const Attributes& attributes);

namespace detail {

template <class T>
struct TraceRecorder;

/// The trace recording on this thread (null: none).
template <class T>
inline thread_local TraceRecorder<T>* active_trace = nullptr;

/// Runs `body` with the trace suspended (the op's own inner ops are not nodes of their own) and
/// notes its output as one node (program.cpp).
template <class T>
Variable<T> trace_call(const char* op, const Variable<T>* const* inputs, std::size_t count,
                       const std::function<Variable<T>()>& body, Attributes&& attributes);

/// Suspends the trace of this thread for its lifetime (a backward pass is not part of a trace).
template <class T>
class TraceSuspend {
 public:
  TraceSuspend() : saved_(active_trace<T>) { active_trace<T> = nullptr; }
  ~TraceSuspend() { active_trace<T> = saved_; }
  TraceSuspend(const TraceSuspend&) = delete;
  TraceSuspend& operator=(const TraceSuspend&) = delete;

 private:
  TraceRecorder<T>* saved_;
};

inline AttributeValue attribute_value(bool v) {
  return v;
}
template <class I, std::enable_if_t<std::is_integral_v<I> && !std::is_same_v<I, bool>, int> = 0>
AttributeValue attribute_value(I v) {
  return static_cast<long>(v);
}
inline AttributeValue attribute_value(double v) {
  return v;
}
inline AttributeValue attribute_value(const char* v) {
  return std::string(v);
}
inline AttributeValue attribute_value(const std::string& v) {
  return v;
}
inline AttributeValue attribute_value(const Shape& v) {
  return std::vector<long>(v.begin(), v.end());
}
template <class I>
AttributeValue attribute_value(const std::vector<I>& v) {
  if constexpr (std::is_floating_point_v<I>)
    return std::vector<double>(v.begin(), v.end());
  else
    return std::vector<long>(v.begin(), v.end());
}
inline AttributeValue attribute_value(const Index& v) {
  return v;
}
inline AttributeValue attribute_value(const Mask& v) {
  return v;
}

inline void add_attributes(Attributes&) {}
template <class V, class... Rest>
void add_attributes(Attributes& out, const char* name, const V& value, const Rest&... rest) {
  out.push_back({name, attribute_value(value)});
  add_attributes(out, rest...);
}

/// A library op running on this thread while a tape observer is installed: its name and
/// attributes, which the gradient checker's localisation prints beside the ops it records.
struct OpCall {
  const char* op;
  Attributes attributes;
};
/// The library ops running on this thread under a tape observer, the innermost last.
template <class T>
inline thread_local std::vector<OpCall> op_calls;

/// body() with op `op` and its attributes noted in op_calls while it runs.
template <class T, class Body, class... A>
Variable<T> observed_call(const char* op, Body&& body, const A&... attributes) {
  struct Pop {
    ~Pop() { op_calls<T>.pop_back(); }
  };
  Attributes list;
  add_attributes(list, attributes...);
  op_calls<T>.push_back({op, std::move(list)});
  Pop pop;
  return body();
}

/// body(), described to the trace recording on this thread, if any, as one node: the op `op` of
/// `inputs` (undefined ones left out) with the attributes given as name, value, name, value...
/// Under a tape observer the op and its attributes are noted for it (observed_call).
template <class T, class Body, class... A>
Variable<T> traced(const char* op, std::initializer_list<const Variable<T>*> inputs, Body&& body,
                   const A&... attributes) {
  if (__builtin_expect(active_trace<T> == nullptr, 1)) {
    if (__builtin_expect(tape_observer<T> == nullptr, 1)) return body();
    return observed_call<T>(op, body, attributes...);
  }
  Attributes list;
  add_attributes(list, attributes...);
  return trace_call<T>(op, inputs.begin(), inputs.size(), std::function<Variable<T>()>(body),
                       std::move(list));
}

/// traced() for a list of inputs known at run time (concatenate).
template <class T, class Body, class... A>
Variable<T> traced(const char* op, const std::vector<Variable<T>>& inputs, Body&& body,
                   const A&... attributes) {
  if (__builtin_expect(active_trace<T> == nullptr, 1)) {
    if (__builtin_expect(tape_observer<T> == nullptr, 1)) return body();
    return observed_call<T>(op, body, attributes...);
  }
  std::vector<const Variable<T>*> pointers;
  for (const auto& v : inputs) pointers.push_back(&v);
  Attributes list;
  add_attributes(list, attributes...);
  return trace_call<T>(op, pointers.data(), pointers.size(), std::function<Variable<T>()>(body),
                       std::move(list));
}

/// How a program runs a node of op `op` again: from its inputs and its attributes.
template <class T>
using Replay = Variable<T> (*)(const std::vector<Variable<T>>& inputs, const AttributeReader& a);

/// An op file's replays, by op name.
template <class T>
using Replays = std::vector<std::pair<const char*, Replay<T>>>;

// The replays of each op file (next to its ops).
template <class T>
Replays<T> arithmetic_replays();
template <class T>
Replays<T> elementwise_replays();
template <class T>
Replays<T> linalg_replays();
template <class T>
Replays<T> reduce_replays();
template <class T>
Replays<T> shape_replays();
template <class T>
Replays<T> conv_replays();
template <class T>
Replays<T> attention_replays();
template <class T>
Replays<T> recurrent_replays();

}  // namespace detail

}  // namespace ad
