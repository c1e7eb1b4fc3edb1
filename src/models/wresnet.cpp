// Wide-ResNet forward graph (bottleneck blocks, as in Alpa's benchmark): convolutions without
// bias, each followed by training-mode BatchNorm; global average pool and a dense classifier.
#include "models/internal.h"

namespace strata::models {

std::vector<int64_t> wresnet_stages(int64_t depth) {
  switch (depth) {
    case 26: return {2, 2, 2, 2};
    case 50: return {3, 4, 6, 3};
    case 101: return {3, 4, 23, 3};
    case 152: return {3, 8, 36, 3};
    default: return {};
  }
}

namespace {

using ir::Attrs;
using ir::Graph;
using ir::OpKind;
using ir::Value;
using Ints = std::vector<int64_t>;

class WResNetBuilder {
 public:
  WResNetBuilder(const ModelSpec& spec, int64_t batch) : s_(spec), batch_(batch) {}

  Expected<Graph> build() {
    const int64_t N = batch_, C = s_.base_channels;
    Value x = g_.input("images", {N, 3, s_.image_size, s_.image_size}, s_.dtype);
    Value labels = g_.input("labels", {N}, DType::i32);
    x = conv_bn(x, 3, C, 7, 2, 3, "stem", true);
    x = g_.add_value(OpKind::MaxPool2d, {x}, {{"window", int64_t{3}}, {"stride", int64_t{2}}, {"padding", int64_t{1}}},
                     "stem.max_pool");
    int64_t channels = C;
    const std::vector<int64_t> stages = wresnet_stages(s_.depth);
    for (size_t stage = 0; stage < stages.size(); ++stage) {
      const int64_t filters = C << stage;
      for (int64_t block = 0; block < stages[stage]; ++block) {
        const int64_t stride = stage > 0 && block == 0 ? 2 : 1;
        const std::string p = "stage" + std::to_string(stage) + ".block" + std::to_string(block) + ".";
        x = bottleneck(x, channels, filters, stride, p);
        channels = 4 * filters;
      }
    }
    const int64_t spatial = g_.type(x).shape[2];
    x = g_.add_value(OpKind::AvgPool2d, {x}, {{"window", spatial}, {"stride", spatial}}, "head.avg_pool");
    x = g_.add_value(OpKind::Reshape, {x}, {{"shape", Ints{N, channels}}}, "head.flatten");
    Value w = g_.parameter("head.fc.weight", {channels, s_.num_classes}, s_.dtype);
    Value b = g_.parameter("head.fc.bias", {s_.num_classes}, s_.dtype, "zeros", 0);
    Value logits = g_.add_value(OpKind::Dot, {x, w},
                                {{"lhs_batch", Ints{}}, {"rhs_batch", Ints{}}, {"lhs_contract", Ints{1}},
                                 {"rhs_contract", Ints{0}}},
                                "head.fc");
    logits = g_.add_value(OpKind::Add, {logits, b}, {}, "head.fc.add_bias");
    Value loss = g_.add_value(OpKind::CrossEntropy, {logits, labels}, {}, "loss");
    g_.mark_output(loss);
    return std::move(g_);
  }

 private:
  Value conv_bn(Value x, int64_t in, int64_t out, int64_t kernel, int64_t stride, int64_t padding,
                const std::string& name, bool relu) {
    Value w = g_.parameter(name + ".conv.weight", {out, in, kernel, kernel}, s_.dtype);
    Value y = g_.add_value(OpKind::Conv2d, {x, w}, {{"stride", stride}, {"padding", padding}}, name + ".conv");
    Value gamma = g_.parameter(name + ".bn.gamma", {out}, s_.dtype, "ones", 0);
    Value beta = g_.parameter(name + ".bn.beta", {out}, s_.dtype, "zeros", 0);
    y = g_.add_value(OpKind::BatchNorm, {y, gamma, beta}, {{"eps", s_.batch_norm_eps}}, name + ".bn");
    return relu ? g_.add_value(OpKind::Relu, {y}, {}, name + ".relu") : y;
  }

  // 1x1 (filters) -> 3x3 (filters * width, strided) -> 1x1 (4 * filters), plus the shortcut
  // (a strided 1x1 projection when the shape changes).
  Value bottleneck(Value x, int64_t in, int64_t filters, int64_t stride, const std::string& p) {
    const int64_t wide = filters * s_.width_factor;
    Value y = conv_bn(x, in, filters, 1, 1, 0, p + "conv1", true);
    y = conv_bn(y, filters, wide, 3, stride, 1, p + "conv2", true);
    y = conv_bn(y, wide, 4 * filters, 1, 1, 0, p + "conv3", false);
    Value shortcut = x;
    if (in != 4 * filters || stride != 1) shortcut = conv_bn(x, in, 4 * filters, 1, stride, 0, p + "shortcut", false);
    y = g_.add_value(OpKind::Add, {y, shortcut}, {}, p + "residual");
    return g_.add_value(OpKind::Relu, {y}, {}, p + "relu");
  }

  const ModelSpec& s_;
  int64_t batch_;
  Graph g_;
};

}  // namespace

Expected<ir::Graph> build_wresnet(const ModelSpec& spec, int64_t batch) {
  STRATA_CHECK(spec.family == Family::wresnet && batch > 0, "unvalidated wresnet spec");
  return WResNetBuilder(spec, batch).build();
}

}  // namespace strata::models
