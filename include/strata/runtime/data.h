// Training data: a token stream from a file, cut into windows of seq_len + 1 tokens, shuffled per
// epoch by a seed, served as (input ids, labels) batches, sharded by data-parallel rank and
// resumable from a position.
//
// Files. A path ending in ".bin" holds little-endian uint16 token ids, either raw or after llm.c's
// 1024-byte header (int32 magic 20240520, version 1, token count). Any other file is text, and
// its tokens are its bytes (ids 0..255). Every token id must be below the model's vocab; the file
// is checked once when opened (errors name the file and the first offending token).
//
// Order. Window w holds tokens [w * seq_len, w * seq_len + seq_len + 1); there are
// W = (tokens - 1) / seq_len of them. The sample stream is epoch 0's permutation of the windows,
// then epoch 1's, ...; each epoch's permutation is a Fisher-Yates shuffle driven by splitmix64 of
// (seed, epoch), so the order is the same on every machine and standard library. Global batch p
// is samples [p * G, (p + 1) * G) of that stream (G = global_batch); data-parallel rank r of D
// takes the r-th of its D equal slices. The position is the number of global batches consumed: the
// same on every rank, and all that a checkpoint needs to resume the stream exactly.
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "strata/core/status.h"

namespace strata::runtime {

struct DataOptions {
  std::string path;
  int64_t global_batch = 1;  // sequences per optimizer step, over all data-parallel ranks
  int64_t seq_len = 1;
  int64_t vocab = 256;       // the model's vocab: every token id must be below it
  uint64_t seed = 0;
  int dp_rank = 0;           // this rank's slice of each global batch
  int dp_size = 1;           // must divide global_batch
};

enum class TokenFormat { text_bytes, uint16_raw, uint16_llmc };
const char* token_format_name(TokenFormat format);  // "text (byte tokens)", "uint16", "uint16 (llm.c header)"

// One rank's slice of a global batch; row-major [batch, seq_len], labels[i] = the token after
// input_ids[i].
struct TokenBatch {
  int64_t batch = 0;
  int64_t seq_len = 0;
  int64_t position = 0;              // the global batch this came from
  std::vector<int32_t> input_ids;
  std::vector<int32_t> labels;
  std::vector<int64_t> windows;      // the window index of each row (for tests and logs)
};

// The batch as whole windows, row-major [batch, seq_len + 1] (input ids and then the last label):
// the token layout that runtime::language_model_inputs takes.
std::vector<int64_t> window_tokens(const TokenBatch& batch);

class TokenSource {
 public:
  // Opens and checks the file (missing, empty, unreadable, odd-sized .bin, a token >= vocab, too
  // short for one global batch of distinct windows) and the options (sizes >= 1, dp_size divides
  // global_batch, 0 <= dp_rank < dp_size); each error names the file or the option.
  static Expected<TokenSource> open(const DataOptions& options);

  const DataOptions& options() const { return options_; }
  TokenFormat format() const;
  int64_t num_tokens() const;
  int64_t num_windows() const;    // W
  int64_t local_batch() const { return options_.global_batch / options_.dp_size; }
  int64_t position() const { return position_; }

  // The token at index i of the file's stream (0 <= i < num_tokens()).
  int32_t token(int64_t index) const;

  // This rank's slice of global batch position(); then position() grows by one.
  TokenBatch next();
  // This rank's slice of global batch `position` (does not move position()).
  TokenBatch batch_at(int64_t position);
  // Continue from `position` (from a checkpoint); an error when negative.
  Status seek(int64_t position);

 private:
  struct File;
  TokenSource(DataOptions options, std::shared_ptr<const File> file);
  int64_t window_of_sample(int64_t sample);

  DataOptions options_;
  std::shared_ptr<const File> file_;  // the mapped file, shared by copies
  int64_t position_ = 0;
  int64_t cached_epoch_ = -1;         // the epoch whose permutation is in `permutation_`
  std::vector<int64_t> permutation_;
};

}  // namespace strata::runtime
