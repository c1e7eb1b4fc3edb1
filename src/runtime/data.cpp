// TokenSource (data.h): the file is memory-mapped read-only and checked once; batches are cut
// from it on demand, in an order that depends only on the seed, the epoch and the position.
#include "strata/runtime/data.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

namespace strata::runtime {

namespace {

constexpr int32_t kLlmcMagic = 20240520;
constexpr int64_t kLlmcHeaderBytes = 256 * 4;

uint64_t splitmix64(uint64_t& state) {
  uint64_t z = (state += 0x9e3779b97f4a7c15ull);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  return z ^ (z >> 31);
}

int32_t read_le_int32(const unsigned char* bytes) {
  const uint32_t value = static_cast<uint32_t>(bytes[0]) | (static_cast<uint32_t>(bytes[1]) << 8) |
                         (static_cast<uint32_t>(bytes[2]) << 16) | (static_cast<uint32_t>(bytes[3]) << 24);
  return static_cast<int32_t>(value);
}

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

}  // namespace

// A read-only mapping of the whole file, unmapped when the last TokenSource copy goes away.
struct TokenSource::File {
  const unsigned char* bytes = nullptr;
  int64_t size_bytes = 0;
  TokenFormat format = TokenFormat::text_bytes;
  int64_t first_byte = 0;  // where the tokens start (after an llm.c header)
  int64_t num_tokens = 0;

  File() = default;
  File(const File&) = delete;
  File& operator=(const File&) = delete;
  ~File() {
    if (bytes != nullptr) ::munmap(const_cast<unsigned char*>(bytes), static_cast<size_t>(size_bytes));
  }

  int32_t token(int64_t index) const {
    if (format == TokenFormat::text_bytes) return bytes[index];
    const unsigned char* at = bytes + first_byte + 2 * index;
    return static_cast<int32_t>(at[0] | (at[1] << 8));
  }
};

const char* token_format_name(TokenFormat format) {
  switch (format) {
    case TokenFormat::text_bytes: return "text (byte tokens)";
    case TokenFormat::uint16_raw: return "uint16";
    case TokenFormat::uint16_llmc: return "uint16 (llm.c header)";
  }
  return "?";
}

Expected<TokenSource> TokenSource::open(const DataOptions& options) {
  const std::string& path = options.path;
  if (path.empty()) return make_error("", "data", "no data file given");
  if (options.seq_len < 1) return make_error(path, "seq_len", "must be >= 1, got " + std::to_string(options.seq_len));
  if (options.global_batch < 1) {
    return make_error(path, "global_batch", "must be >= 1, got " + std::to_string(options.global_batch));
  }
  if (options.vocab < 1) return make_error(path, "vocab", "must be >= 1, got " + std::to_string(options.vocab));
  if (options.dp_size < 1 || options.dp_rank < 0 || options.dp_rank >= options.dp_size) {
    return make_error(path, "dp_rank", "data-parallel rank " + std::to_string(options.dp_rank) + " is not in 0.." +
                                           std::to_string(options.dp_size - 1));
  }
  if (options.global_batch % options.dp_size != 0) {
    return make_error(path, "global_batch",
                      std::to_string(options.global_batch) + " sequences do not split evenly over " +
                          std::to_string(options.dp_size) + " data-parallel ranks");
  }

  const int fd = ::open(path.c_str(), O_RDONLY);
  if (fd < 0) return make_error(path, "", std::string("cannot open the data file: ") + std::strerror(errno));
  struct stat info {};
  if (::fstat(fd, &info) != 0 || !S_ISREG(info.st_mode)) {
    ::close(fd);
    return make_error(path, "", "not a regular file (a data file of tokens or text expected)");
  }
  if (info.st_size == 0) {
    ::close(fd);
    return make_error(path, "", "the data file is empty");
  }
  void* mapped = ::mmap(nullptr, static_cast<size_t>(info.st_size), PROT_READ, MAP_PRIVATE, fd, 0);
  const int saved_errno = errno;
  ::close(fd);  // the mapping stays valid
  if (mapped == MAP_FAILED) return make_error(path, "", std::string("cannot map the data file: ") + std::strerror(saved_errno));
  auto file = std::make_shared<File>();
  file->bytes = static_cast<const unsigned char*>(mapped);
  file->size_bytes = info.st_size;

  if (ends_with(path, ".bin")) {
    file->format = TokenFormat::uint16_raw;
    if (file->size_bytes >= kLlmcHeaderBytes && read_le_int32(file->bytes) == kLlmcMagic &&
        read_le_int32(file->bytes + 4) == 1 &&
        kLlmcHeaderBytes + 2 * static_cast<int64_t>(read_le_int32(file->bytes + 8)) == file->size_bytes) {
      file->format = TokenFormat::uint16_llmc;
      file->first_byte = kLlmcHeaderBytes;
    }
    const int64_t payload = file->size_bytes - file->first_byte;
    if (payload % 2 != 0) {
      return make_error(path, "", "size " + std::to_string(file->size_bytes) +
                                      " bytes is odd: not a file of uint16 tokens (.bin)");
    }
    file->num_tokens = payload / 2;
    if (file->num_tokens == 0) return make_error(path, "", "the token file holds no tokens after its header");
  } else {
    file->num_tokens = file->size_bytes;
  }

  for (int64_t i = 0; i < file->num_tokens; ++i) {
    const int32_t token = file->token(i);
    if (token >= options.vocab) {
      std::string reason = "token " + std::to_string(token) + " at index " + std::to_string(i) +
                           " is not below the model's vocab " + std::to_string(options.vocab);
      if (file->format == TokenFormat::text_bytes) {
        reason += " (a text file's byte tokens need a vocab of at least 256, or pass a .bin token file)";
      }
      return make_error(path, "tokens", reason);
    }
  }

  const int64_t windows = (file->num_tokens - 1) / options.seq_len;
  if (windows < options.global_batch) {
    return make_error(path, "",
                      "too short: " + std::to_string(file->num_tokens) + " tokens make " + std::to_string(windows) +
                          " windows of seq_len + 1 = " + std::to_string(options.seq_len + 1) +
                          " tokens, fewer than one global batch of " + std::to_string(options.global_batch) +
                          " (needs at least " + std::to_string(options.global_batch * options.seq_len + 1) +
                          " tokens)");
  }
  return TokenSource(options, std::move(file));
}

TokenSource::TokenSource(DataOptions options, std::shared_ptr<const File> file)
    : options_(std::move(options)), file_(std::move(file)) {}

TokenFormat TokenSource::format() const { return file_->format; }
int64_t TokenSource::num_tokens() const { return file_->num_tokens; }
int64_t TokenSource::num_windows() const { return (file_->num_tokens - 1) / options_.seq_len; }

int32_t TokenSource::token(int64_t index) const {
  STRATA_CHECK(index >= 0 && index < file_->num_tokens, "token index out of range");
  return file_->token(index);
}

int64_t TokenSource::window_of_sample(int64_t sample) {
  const int64_t windows = num_windows();
  const int64_t epoch = sample / windows;
  if (epoch != cached_epoch_) {
    permutation_.resize(static_cast<size_t>(windows));
    for (int64_t i = 0; i < windows; ++i) permutation_[static_cast<size_t>(i)] = i;
    uint64_t state = options_.seed;
    state = splitmix64(state) ^ (static_cast<uint64_t>(epoch) * 0xd1b54a32d192ed03ull);
    for (int64_t i = windows - 1; i > 0; --i) {
      const int64_t j = static_cast<int64_t>(splitmix64(state) % static_cast<uint64_t>(i + 1));
      std::swap(permutation_[static_cast<size_t>(i)], permutation_[static_cast<size_t>(j)]);
    }
    cached_epoch_ = epoch;
  }
  return permutation_[static_cast<size_t>(sample % windows)];
}

TokenBatch TokenSource::batch_at(int64_t position) {
  STRATA_CHECK(position >= 0, "negative data position");
  TokenBatch out;
  out.batch = local_batch();
  out.seq_len = options_.seq_len;
  out.position = position;
  const int64_t first_sample = position * options_.global_batch + options_.dp_rank * out.batch;
  out.input_ids.reserve(static_cast<size_t>(out.batch * out.seq_len));
  out.labels.reserve(static_cast<size_t>(out.batch * out.seq_len));
  for (int64_t row = 0; row < out.batch; ++row) {
    const int64_t window = window_of_sample(first_sample + row);
    out.windows.push_back(window);
    const int64_t start = window * options_.seq_len;
    for (int64_t t = 0; t < options_.seq_len; ++t) {
      out.input_ids.push_back(file_->token(start + t));
      out.labels.push_back(file_->token(start + t + 1));
    }
  }
  return out;
}

std::vector<int64_t> window_tokens(const TokenBatch& batch) {
  std::vector<int64_t> tokens;
  tokens.reserve(static_cast<size_t>(batch.batch * (batch.seq_len + 1)));
  for (int64_t row = 0; row < batch.batch; ++row) {
    const size_t first = static_cast<size_t>(row * batch.seq_len);
    tokens.insert(tokens.end(), batch.input_ids.begin() + first, batch.input_ids.begin() + first + batch.seq_len);
    tokens.push_back(batch.labels[first + batch.seq_len - 1]);
  }
  return tokens;
}

TokenBatch TokenSource::next() { return batch_at(position_++); }

Status TokenSource::seek(int64_t position) {
  if (position < 0) {
    return make_error(options_.path, "data_position", "must be >= 0, got " + std::to_string(position));
  }
  position_ = position;
  return Status::ok();
}

}  // namespace strata::runtime
