// GPT and GShard-MoE forward graphs: pre-LayerNorm decoder blocks, causal attention through a
// fed mask, tied embedding/LM head, and top-2 gated expert FFNs on every other layer (moe).
#include <cmath>

#include "models/internal.h"

namespace strata::models {
namespace {

using ir::Attrs;
using ir::Graph;
using ir::OpKind;
using ir::Shape;
using ir::Value;
using Ints = std::vector<int64_t>;

Attrs dot_attrs(Ints lhs_batch, Ints rhs_batch, Ints lhs_contract, Ints rhs_contract) {
  return Attrs{{"lhs_batch", lhs_batch}, {"rhs_batch", rhs_batch}, {"lhs_contract", lhs_contract},
               {"rhs_contract", rhs_contract}};
}

class TransformerBuilder {
 public:
  TransformerBuilder(const ModelSpec& spec, int64_t batch) : s_(spec), batch_(batch) {}

  Expected<Graph> build() {
    const int64_t B = batch_, S = s_.seq_len, H = s_.hidden;
    Value tokens = g_.input("tokens", {B, S}, DType::i32);
    Value labels = g_.input("labels", {B * S}, DType::i32);
    mask_ = g_.input("causal_mask", {S, S}, s_.dtype);
    Value wte = g_.parameter("embed.token", {s_.vocab, H}, s_.dtype);
    Value wpe = g_.parameter("embed.position", {S, H}, s_.dtype);
    Value x = g_.add_value(OpKind::Gather, {wte, tokens}, {}, "embed.lookup");
    x = g_.add_value(OpKind::Add, {x, wpe}, {}, "embed.add_position");
    for (int64_t layer = 0; layer < s_.layers; ++layer) {
      const std::string p = "layer" + std::to_string(layer) + ".";
      x = attention(x, p);
      const bool moe = s_.family == Family::moe && layer % 2 == 1;
      if (moe) {
        STRATA_ASSIGN_OR_RETURN(x, moe_ffn(x, p));
      } else {
        x = mlp(x, p);
      }
    }
    x = layer_norm(x, "final.ln");
    // Tied LM head: logits = x . wte^T.
    Value logits = g_.add_value(OpKind::Dot, {x, wte}, dot_attrs({}, {}, {2}, {1}), "lm_head");
    logits = g_.add_value(OpKind::Reshape, {logits}, {{"shape", Ints{B * S, s_.vocab}}}, "lm_head.flatten");
    Value loss = g_.add_value(OpKind::CrossEntropy, {logits, labels}, {}, "loss");
    g_.mark_output(loss);
    return std::move(g_);
  }

 private:
  Value layer_norm(Value x, const std::string& name) {
    Value gamma = g_.parameter(name + ".gamma", {s_.hidden}, s_.dtype, "ones", 0);
    Value beta = g_.parameter(name + ".beta", {s_.hidden}, s_.dtype, "zeros", 0);
    return g_.add_value(OpKind::LayerNorm, {x, gamma, beta}, {{"eps", s_.layer_norm_eps}}, name);
  }

  // x[B, S, in] . w[in, out] + b[out].
  Value dense(Value x, int64_t in, int64_t out, const std::string& name) {
    Value w = g_.parameter(name + ".weight", {in, out}, s_.dtype);
    Value b = g_.parameter(name + ".bias", {out}, s_.dtype, "zeros", 0);
    Value y = g_.add_value(OpKind::Dot, {x, w}, dot_attrs({}, {}, {2}, {0}), name);
    return g_.add_value(OpKind::Add, {y, b}, {}, name + ".add_bias");
  }

  Value attention(Value x, const std::string& p) {
    const int64_t B = batch_, S = s_.seq_len, H = s_.hidden, N = s_.heads, D = H / N;
    Value h = layer_norm(x, p + "ln1");
    Value qkv = dense(h, H, 3 * H, p + "attn.qkv");
    qkv = g_.add_value(OpKind::Reshape, {qkv}, {{"shape", Ints{B, S, 3, N, D}}}, p + "attn.split_heads");
    Value part[3];
    const char* names[3] = {"q", "k", "v"};
    for (int64_t i = 0; i < 3; ++i) {
      Value slice = g_.add_value(OpKind::Slice, {qkv},
                                 {{"starts", Ints{0, 0, i, 0, 0}}, {"limits", Ints{B, S, i + 1, N, D}}},
                                 p + "attn." + names[i]);
      part[i] = g_.add_value(OpKind::Reshape, {slice}, {{"shape", Ints{B, S, N, D}}},
                             p + "attn." + names[i] + ".reshape");
    }
    // scores[B, N, Sq, Sk] = q[B, Sq, N, D] . k[B, Sk, N, D] over D, batched over (B, N).
    Value scores = g_.add_value(OpKind::Dot, {part[0], part[1]}, dot_attrs({0, 2}, {0, 2}, {3}, {3}),
                                p + "attn.scores");
    scores = g_.add_value(OpKind::Scale, {scores}, {{"scalar", 1.0 / std::sqrt(static_cast<double>(D))}},
                          p + "attn.scale");
    scores = g_.add_value(OpKind::Add, {scores, mask_}, {}, p + "attn.mask");
    Value probs = g_.add_value(OpKind::Softmax, {scores}, {{"axis", int64_t{-1}}}, p + "attn.softmax");
    // context[B, N, Sq, D] = probs[B, N, Sq, Sk] . v[B, Sk, N, D] over Sk.
    Value context = g_.add_value(OpKind::Dot, {probs, part[2]}, dot_attrs({0, 1}, {0, 2}, {3}, {1}),
                                 p + "attn.context");
    context = g_.add_value(OpKind::Transpose, {context}, {{"perm", Ints{0, 2, 1, 3}}}, p + "attn.merge_heads");
    context = g_.add_value(OpKind::Reshape, {context}, {{"shape", Ints{B, S, H}}}, p + "attn.merge_heads.reshape");
    Value out = dense(context, H, H, p + "attn.out");
    return g_.add_value(OpKind::Add, {x, out}, {}, p + "attn.residual");
  }

  Value mlp(Value x, const std::string& p) {
    Value h = layer_norm(x, p + "ln2");
    h = dense(h, s_.hidden, s_.ffn_hidden, p + "mlp.fc1");
    h = g_.add_value(OpKind::Gelu, {h}, {}, p + "mlp.gelu");
    h = dense(h, s_.ffn_hidden, s_.hidden, p + "mlp.fc2");
    return g_.add_value(OpKind::Add, {x, h}, {}, p + "mlp.residual");
  }

  // GShard MoE FFN: tokens in groups [G, T, H]; top-2 gating gives combine weights [G, T, E, C];
  // dispatch = Indicator(combine) moves tokens to expert slots [G, E, C, H]; each expert's FFN runs
  // batched over E; combine brings the slots back to tokens weighted by the gate.
  Expected<Value> moe_ffn(Value x, const std::string& p) {
    const int64_t B = batch_, S = s_.seq_len, H = s_.hidden, E = s_.experts, F = s_.expert_ffn_hidden;
    const int64_t tokens = B * S;
    const int64_t T = std::min(s_.expert_group_size, tokens);
    if (tokens % T != 0)
      return make_error(s_.file, "model.expert_group_size",
                        "must divide the tokens of a micro-batch (" + std::to_string(tokens) + "), got " +
                            std::to_string(T));
    const int64_t G = tokens / T;
    const int64_t C = static_cast<int64_t>(std::ceil(s_.capacity_factor * 2.0 * static_cast<double>(T) /
                                                     static_cast<double>(E)));
    Value h = layer_norm(x, p + "ln2");
    h = g_.add_value(OpKind::Reshape, {h}, {{"shape", Ints{G, T, H}}}, p + "moe.group");
    Value w_gate = g_.parameter(p + "moe.gate.weight", {H, E}, s_.dtype);
    Value logits = g_.add_value(OpKind::Dot, {h, w_gate}, dot_attrs({}, {}, {2}, {0}), p + "moe.gate");
    Value probs = g_.add_value(OpKind::Softmax, {logits}, {{"axis", int64_t{-1}}}, p + "moe.gate.softmax");
    Value combine = g_.add_value(OpKind::MoEGate, {probs}, {{"k", int64_t{2}}, {"capacity", C}}, p + "moe.top2");
    Value dispatch = g_.add_value(OpKind::Indicator, {combine}, {}, p + "moe.dispatch_mask");
    // [G, E, C, H] = dispatch[G, T, E, C] . h[G, T, H] over T, batched over G.
    Value slots = g_.add_value(OpKind::Dot, {dispatch, h}, dot_attrs({0}, {0}, {1}, {1}), p + "moe.dispatch");
    Value w1 = g_.parameter(p + "moe.expert.fc1.weight", {E, H, F}, s_.dtype);
    Value b1 = g_.parameter(p + "moe.expert.fc1.bias", {E, 1, 1, F}, s_.dtype, "zeros", 0);
    Value w2 = g_.parameter(p + "moe.expert.fc2.weight", {E, F, H}, s_.dtype);
    Value b2 = g_.parameter(p + "moe.expert.fc2.bias", {E, 1, 1, H}, s_.dtype, "zeros", 0);
    // [E, G, C, F] = slots[G, E, C, H] . w1[E, H, F], batched over E.
    Value y = g_.add_value(OpKind::Dot, {slots, w1}, dot_attrs({1}, {0}, {3}, {1}), p + "moe.expert.fc1");
    y = g_.add_value(OpKind::Add, {y, b1}, {}, p + "moe.expert.fc1.add_bias");
    y = g_.add_value(OpKind::Gelu, {y}, {}, p + "moe.expert.gelu");
    // [E, G, C, H] = y[E, G, C, F] . w2[E, F, H], batched over E.
    y = g_.add_value(OpKind::Dot, {y, w2}, dot_attrs({0}, {0}, {3}, {1}), p + "moe.expert.fc2");
    y = g_.add_value(OpKind::Add, {y, b2}, {}, p + "moe.expert.fc2.add_bias");
    // [G, T, H] = combine[G, T, E, C] . y[E, G, C, H] over (E, C), batched over G.
    Value out = g_.add_value(OpKind::Dot, {combine, y}, dot_attrs({0}, {1}, {2, 3}, {0, 2}), p + "moe.combine");
    out = g_.add_value(OpKind::Reshape, {out}, {{"shape", Ints{B, S, H}}}, p + "moe.ungroup");
    return g_.add_value(OpKind::Add, {x, out}, {}, p + "moe.residual");
  }

  const ModelSpec& s_;
  int64_t batch_;
  Graph g_;
  Value mask_;
};

}  // namespace

Expected<ir::Graph> build_transformer(const ModelSpec& spec, int64_t batch) {
  STRATA_CHECK(spec.family == Family::gpt || spec.family == Family::moe, "not a transformer spec");
  STRATA_CHECK(batch > 0 && spec.hidden % spec.heads == 0, "unvalidated transformer spec");
  return TransformerBuilder(spec, batch).build();
}

}  // namespace strata::models
