// Plan <-> YAML: a strict reader whose errors name the file and the field, and a writer with a
// fixed key order and shortest round-trip numbers so that the text is byte-stable.
#include <yaml-cpp/yaml.h>

#include <charconv>
#include <cstdio>
#include <set>

#include "strata/core/units.h"
#include "strata/plan/plan.h"

namespace strata::plan {
namespace {

// Reads the fields of one YAML mapping whose dotted path is `where`.
class Fields {
 public:
  Fields(const YAML::Node& node, std::string file, std::string where)
      : node_(node), file_(std::move(file)), where_(std::move(where)) {}

  std::string path(const std::string& key) const { return where_.empty() ? key : where_ + "." + key; }
  Error error(const std::string& key, const std::string& reason) const {
    return make_error(file_, path(key), reason);
  }
  bool has(const std::string& key) const { return static_cast<bool>(node_[key]); }
  YAML::Node node(const std::string& key) const { return node_[key]; }

  Expected<std::string> text(const std::string& key) const {
    auto node = node_[key];
    if (!node) return error(key, "missing field");
    if (!node.IsScalar()) return error(key, "must be a string");
    return node.as<std::string>();
  }
  Expected<double> number(const std::string& key) const {
    auto node = node_[key];
    if (!node) return error(key, "missing field");
    double value = 0;
    if (!node.IsScalar() || !YAML::convert<double>::decode(node, value)) return error(key, "must be a number");
    if (!(value >= 0)) return error(key, "must be non-negative, got " + node.as<std::string>());
    return value;
  }
  Expected<int64_t> integer(const std::string& key) const {
    auto node = node_[key];
    if (!node) return error(key, "missing field");
    int64_t value = 0;
    if (!node.IsScalar() || !YAML::convert<int64_t>::decode(node, value)) return error(key, "must be an integer");
    if (value < 0) return error(key, "must be non-negative, got " + std::to_string(value));
    return value;
  }
  // Every key of the mapping must be one of `known`: a typo is an error, not a silent default.
  Status only(const std::set<std::string>& known) const {
    if (!node_.IsMap()) return make_error(file_, where_, "must be a mapping");
    for (const auto& item : node_) {
      if (!item.first.IsScalar()) return make_error(file_, where_, "a key is not a field name (a list or map as key)");
      auto key = item.first.Scalar();
      if (!known.count(key)) return error(key, "unknown field");
    }
    return Status::ok();
  }

 private:
  YAML::Node node_;
  std::string file_;
  std::string where_;
};

Expected<int> small_int(const Fields& fields, const std::string& key) {
  STRATA_ASSIGN_OR_RETURN(int64_t value, fields.integer(key));
  if (value > (int64_t{1} << 30)) return fields.error(key, "too large: " + std::to_string(value));
  return static_cast<int>(value);
}

Expected<Stage> parse_stage(const YAML::Node& node, const std::string& file, const std::string& where) {
  Fields f(node, file, where);
  STRATA_RETURN_IF_ERROR(f.only({"layers", "submesh", "logical_mesh", "forward_seconds", "backward_seconds",
                                 "update_seconds", "grad_sync_seconds", "weights_bytes", "optimizer_state_bytes",
                                 "activation_bytes_per_micro_batch", "send_bytes", "strategies"}));
  Stage stage;
  auto layers = f.node("layers");
  if (!layers) return f.error("layers", "missing field");
  int first = 0, last = 0;
  if (!layers.IsSequence() || layers.size() != 2 || !YAML::convert<int>::decode(layers[0], first) ||
      !YAML::convert<int>::decode(layers[1], last)) {
    return f.error("layers", "must be [first, last]");
  }
  stage.first_layer = first;
  stage.last_layer = last;

  if (!f.has("submesh")) return f.error("submesh", "missing field");
  Fields sub(f.node("submesh"), file, f.path("submesh"));
  STRATA_RETURN_IF_ERROR(sub.only({"rows", "cols", "first_node", "first_gpu"}));
  STRATA_ASSIGN_OR_RETURN(stage.submesh.rows, small_int(sub, "rows"));
  STRATA_ASSIGN_OR_RETURN(stage.submesh.cols, small_int(sub, "cols"));
  STRATA_ASSIGN_OR_RETURN(stage.first_node, small_int(sub, "first_node"));
  STRATA_ASSIGN_OR_RETURN(stage.first_gpu, small_int(sub, "first_gpu"));

  if (!f.has("logical_mesh")) return f.error("logical_mesh", "missing field");
  Fields mesh(f.node("logical_mesh"), file, f.path("logical_mesh"));
  STRATA_RETURN_IF_ERROR(mesh.only({"n0", "n1"}));
  STRATA_ASSIGN_OR_RETURN(stage.logical_mesh.n0, small_int(mesh, "n0"));
  STRATA_ASSIGN_OR_RETURN(stage.logical_mesh.n1, small_int(mesh, "n1"));

  STRATA_ASSIGN_OR_RETURN(stage.forward_seconds, f.number("forward_seconds"));
  STRATA_ASSIGN_OR_RETURN(stage.backward_seconds, f.number("backward_seconds"));
  STRATA_ASSIGN_OR_RETURN(stage.update_seconds, f.number("update_seconds"));
  STRATA_ASSIGN_OR_RETURN(stage.grad_sync_seconds, f.number("grad_sync_seconds"));
  STRATA_ASSIGN_OR_RETURN(stage.weights_bytes, f.integer("weights_bytes"));
  STRATA_ASSIGN_OR_RETURN(stage.optimizer_state_bytes, f.integer("optimizer_state_bytes"));
  STRATA_ASSIGN_OR_RETURN(stage.activation_bytes_per_micro_batch, f.integer("activation_bytes_per_micro_batch"));
  STRATA_ASSIGN_OR_RETURN(stage.send_bytes, f.integer("send_bytes"));

  if (f.has("strategies")) {
    auto strategies = f.node("strategies");
    if (!strategies.IsMap()) return f.error("strategies", "must be a mapping of op name to spec");
    for (const auto& item : strategies) {
      if (!item.first.IsScalar()) return f.error("strategies", "a key is not an op name (a list or map as key)");
      auto op = item.first.Scalar();
      if (!item.second.IsScalar()) return f.error("strategies." + op, "must be a spec string");
      stage.strategies[op] = item.second.as<std::string>();
    }
  }
  return stage;
}

// The `training` block: every key optional, defaults from plan::Training.
Expected<Training> parse_training(const YAML::Node& node, const std::string& file) {
  Fields f(node, file, "training");
  STRATA_RETURN_IF_ERROR(f.only({"optimizer", "lr", "beta1", "beta2", "eps", "weight_decay", "warmup_steps", "decay",
                                  "decay_steps", "min_lr"}));
  Training training;
  if (f.has("optimizer")) {
    STRATA_ASSIGN_OR_RETURN(training.optimizer, f.text("optimizer"));
  }
  if (f.has("decay")) {
    STRATA_ASSIGN_OR_RETURN(training.decay, f.text("decay"));
  }
  for (auto& [key, value] : {std::pair{"warmup_steps", &training.warmup_steps}, {"decay_steps", &training.decay_steps}}) {
    if (f.has(key)) {
      STRATA_ASSIGN_OR_RETURN(*value, f.integer(key));
    }
  }
  std::pair<const char*, double*> numbers[] = {{"lr", &training.lr},
                                               {"beta1", &training.beta1},
                                               {"beta2", &training.beta2},
                                               {"eps", &training.eps},
                                               {"weight_decay", &training.weight_decay},
                                               {"min_lr", &training.min_lr}};
  for (auto& [key, value] : numbers) {
    if (f.has(key)) {
      STRATA_ASSIGN_OR_RETURN(*value, f.number(key));
    }
  }
  return training;
}

// Shortest text that reads back to the same double.
std::string number_text(double value) {
  char buffer[64];
  auto result = std::to_chars(buffer, buffer + sizeof(buffer), value);
  STRATA_CHECK(result.ec == std::errc(), "to_chars failed");
  return std::string(buffer, result.ptr);
}

// A double-quoted YAML scalar.
std::string quoted(const std::string& text) {
  std::string out = "\"";
  for (char c : text) {
    if (c == '"' || c == '\\') {
      out += '\\';
      out += c;
    } else if (static_cast<unsigned char>(c) < 0x20) {
      char buffer[8];
      std::snprintf(buffer, sizeof(buffer), "\\x%02x", static_cast<unsigned char>(c));
      out += buffer;
    } else {
      out += c;
    }
  }
  return out + "\"";
}

}  // namespace

Expected<Plan> parse_plan(const std::string& yaml_text, const std::string& file) {
  YAML::Node root;
  try {
    root = YAML::Load(yaml_text);
  } catch (const YAML::Exception& e) {
    return make_error(file, "", "not valid YAML: " + e.msg + " at line " + std::to_string(e.mark.line + 1));
  }
  if (!root.IsMap()) return make_error(file, "", "must be a YAML mapping");
  Fields f(root, file, "");
  STRATA_RETURN_IF_ERROR(f.only({"model", "model_file", "cluster", "global_batch", "num_micro_batches",
                                 "micro_batch_size", "schedule", "training", "cross_stage_link", "stages",
                                 "predicted"}));
  Plan plan;
  plan.source_file = file;
  STRATA_ASSIGN_OR_RETURN(plan.model, f.text("model"));
  if (f.has("model_file")) {
    STRATA_ASSIGN_OR_RETURN(plan.model_file, f.text("model_file"));
    if (plan.model_file.empty()) return f.error("model_file", "must not be empty (leave the key out instead)");
  }

  if (!f.has("cluster")) return f.error("cluster", "missing field");
  Fields c(f.node("cluster"), file, "cluster");
  STRATA_RETURN_IF_ERROR(c.only({"name", "num_nodes", "gpus_per_node"}));
  STRATA_ASSIGN_OR_RETURN(plan.cluster.name, c.text("name"));
  STRATA_ASSIGN_OR_RETURN(plan.cluster.num_nodes, small_int(c, "num_nodes"));
  STRATA_ASSIGN_OR_RETURN(plan.cluster.gpus_per_node, small_int(c, "gpus_per_node"));

  STRATA_ASSIGN_OR_RETURN(plan.global_batch, f.integer("global_batch"));
  STRATA_ASSIGN_OR_RETURN(plan.num_micro_batches, small_int(f, "num_micro_batches"));
  if (f.has("micro_batch_size")) {
    STRATA_ASSIGN_OR_RETURN(int64_t size, f.integer("micro_batch_size"));
    // A num_micro_batches that does not divide the batch is validate's error, not this one.
    const bool divides = plan.num_micro_batches >= 1 && plan.global_batch % plan.num_micro_batches == 0;
    if (divides && size * plan.num_micro_batches != plan.global_batch) {
      return f.error("micro_batch_size", std::to_string(size) + " x num_micro_batches " +
                                             std::to_string(plan.num_micro_batches) + " is not global_batch " +
                                             std::to_string(plan.global_batch));
    }
  }
  STRATA_ASSIGN_OR_RETURN(plan.schedule, f.text("schedule"));
  if (f.has("training")) {
    STRATA_ASSIGN_OR_RETURN(plan.training, parse_training(f.node("training"), file));
  }

  if (!f.has("cross_stage_link")) return f.error("cross_stage_link", "missing field");
  Fields link(f.node("cross_stage_link"), file, "cross_stage_link");
  STRATA_RETURN_IF_ERROR(link.only({"bandwidth_bytes_per_second", "latency_seconds"}));
  STRATA_ASSIGN_OR_RETURN(plan.cross_stage_link.bandwidth_bytes_per_second, link.number("bandwidth_bytes_per_second"));
  STRATA_ASSIGN_OR_RETURN(plan.cross_stage_link.latency_seconds, link.number("latency_seconds"));

  auto stages = f.node("stages");
  if (!stages) return f.error("stages", "missing field");
  if (!stages.IsSequence()) return f.error("stages", "must be a list");
  for (size_t i = 0; i < stages.size(); ++i) {
    STRATA_ASSIGN_OR_RETURN(Stage stage, parse_stage(stages[i], file, "stages[" + std::to_string(i) + "]"));
    plan.stages.push_back(std::move(stage));
  }

  if (f.has("predicted")) {
    Fields p(f.node("predicted"), file, "predicted");
    STRATA_RETURN_IF_ERROR(p.only({"step_seconds", "peak_memory_bytes"}));
    STRATA_ASSIGN_OR_RETURN(plan.predicted.step_seconds, p.number("step_seconds"));
    STRATA_ASSIGN_OR_RETURN(plan.predicted.peak_memory_bytes, p.integer("peak_memory_bytes"));
  }
  return plan;
}

autodiff::TrainingOptions autodiff_options(const Training& t) {
  autodiff::TrainingOptions o;
  o.optimizer = t.optimizer == "sgd" ? autodiff::Optimizer::sgd : autodiff::Optimizer::adam;
  o.lr = t.lr;
  o.beta1 = t.beta1;
  o.beta2 = t.beta2;
  o.eps = t.eps;
  o.weight_decay = t.weight_decay;
  return o;
}

std::string Plan::model_path() const {
  if (model_file.empty() || model_file.front() == '/') return model_file;
  auto slash = source_file.find_last_of('/');
  if (slash == std::string::npos) return model_file;
  return source_file.substr(0, slash + 1) + model_file;
}

Expected<Plan> read_plan(const std::string& path) {
  STRATA_ASSIGN_OR_RETURN(std::string text, read_text_file(path));
  STRATA_ASSIGN_OR_RETURN(Plan plan, parse_plan(text, path));
  STRATA_RETURN_IF_ERROR(validate(plan));
  return plan;
}

std::string plan_to_yaml(const Plan& plan) {
  std::string out = "# Strata plan (format: docs/plan_format.md)\n";
  out += "model: " + quoted(plan.model) + "\n";
  if (!plan.model_file.empty()) out += "model_file: " + quoted(plan.model_file) + "\n";
  out += "cluster:\n";
  out += "  name: " + quoted(plan.cluster.name) + "\n";
  out += "  num_nodes: " + std::to_string(plan.cluster.num_nodes) + "\n";
  out += "  gpus_per_node: " + std::to_string(plan.cluster.gpus_per_node) + "\n";
  out += "global_batch: " + std::to_string(plan.global_batch) + "\n";
  out += "num_micro_batches: " + std::to_string(plan.num_micro_batches) + "\n";
  out += "micro_batch_size: " + std::to_string(plan.micro_batch_size()) + "\n";
  out += "schedule: " + quoted(plan.schedule) + "\n";
  out += "training:\n";
  out += "  optimizer: " + quoted(plan.training.optimizer) + "\n";
  out += "  lr: " + number_text(plan.training.lr) + "\n";
  out += "  beta1: " + number_text(plan.training.beta1) + "\n";
  out += "  beta2: " + number_text(plan.training.beta2) + "\n";
  out += "  eps: " + number_text(plan.training.eps) + "\n";
  out += "  weight_decay: " + number_text(plan.training.weight_decay) + "\n";
  if (has_schedule(plan.training)) {  // plans with a constant lr keep their text (and checkpoints' plan hash)
    out += "  warmup_steps: " + std::to_string(plan.training.warmup_steps) + "\n";
    out += "  decay: " + quoted(plan.training.decay) + "\n";
    out += "  decay_steps: " + std::to_string(plan.training.decay_steps) + "\n";
    out += "  min_lr: " + number_text(plan.training.min_lr) + "\n";
  }
  out += "cross_stage_link:\n";
  out += "  bandwidth_bytes_per_second: " + number_text(plan.cross_stage_link.bandwidth_bytes_per_second) + "\n";
  out += "  latency_seconds: " + number_text(plan.cross_stage_link.latency_seconds) + "\n";
  out += plan.stages.empty() ? "stages: []\n" : "stages:\n";
  for (const Stage& s : plan.stages) {
    out += "  - layers: [" + std::to_string(s.first_layer) + ", " + std::to_string(s.last_layer) + "]\n";
    out += "    submesh: {rows: " + std::to_string(s.submesh.rows) + ", cols: " + std::to_string(s.submesh.cols) +
           ", first_node: " + std::to_string(s.first_node) + ", first_gpu: " + std::to_string(s.first_gpu) + "}\n";
    out += "    logical_mesh: {n0: " + std::to_string(s.logical_mesh.n0) + ", n1: " +
           std::to_string(s.logical_mesh.n1) + "}\n";
    out += "    forward_seconds: " + number_text(s.forward_seconds) + "\n";
    out += "    backward_seconds: " + number_text(s.backward_seconds) + "\n";
    out += "    update_seconds: " + number_text(s.update_seconds) + "\n";
    out += "    grad_sync_seconds: " + number_text(s.grad_sync_seconds) + "\n";
    out += "    weights_bytes: " + std::to_string(s.weights_bytes) + "\n";
    out += "    optimizer_state_bytes: " + std::to_string(s.optimizer_state_bytes) + "\n";
    out += "    activation_bytes_per_micro_batch: " + std::to_string(s.activation_bytes_per_micro_batch) + "\n";
    out += "    send_bytes: " + std::to_string(s.send_bytes) + "\n";
    if (s.strategies.empty()) {
      out += "    strategies: {}\n";
    } else {
      out += "    strategies:\n";
      for (const auto& [op, spec] : s.strategies) out += "      " + quoted(op) + ": " + quoted(spec) + "\n";
    }
  }
  out += "predicted:\n";
  out += "  step_seconds: " + number_text(plan.predicted.step_seconds) + "\n";
  out += "  peak_memory_bytes: " + std::to_string(plan.predicted.peak_memory_bytes) + "\n";
  return out;
}

Status write_plan(const Plan& plan, const std::string& path) {
  return write_file_atomically(path, plan_to_yaml(plan));
}

}  // namespace strata::plan
