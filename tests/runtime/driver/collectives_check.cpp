// Every Communicator operation of a backend against values computed on the host: all_reduce
// (blocking, and started with all_reduce_async while a blocking one runs), all_gather and
// reduce_scatter along each dim of a rank-3 tensor, all_to_all for every (split, concat) pair, and
// a tagged send/recv ring, in f32, bf16 and i32, over the world and over two interleaved halves of
// it (MPI_Comm_split, so group ranks differ from world ranks). Values are
// small integers, so every result is exact in bf16 too and must match to the last bit.
//   mpirun -np 4 collectives_check --backend cpu|cuda [--collectives nccl|mpi]
// On one GPU: --backend cuda --collectives mpi, any number of ranks (bench/gpu_multirank_check.sh).
#include <cstdio>
#include <cstdlib>
#include <string>
#include <vector>

#include "strata/runtime/backend.h"
#include "strata/runtime/cuda_backend.h"

namespace {

using namespace strata;
using interp::Tensor;

// Row-major strides of `shape`.
std::vector<int64_t> strides_of(const ir::Shape& shape) {
  std::vector<int64_t> s(shape.size(), 1);
  for (int d = static_cast<int>(shape.size()) - 2; d >= 0; --d) s[d] = s[d + 1] * shape[d + 1];
  return s;
}

// The block [start, start + size) of `t` along `dim`.
Tensor slice_along(const Tensor& t, int dim, int64_t start, int64_t size) {
  ir::Shape shape = t.shape;
  shape[dim] = size;
  Tensor out(shape);
  const auto in_strides = strides_of(t.shape), out_strides = strides_of(shape);
  for (int64_t i = 0; i < out.numel(); ++i) {
    int64_t src = 0;
    for (size_t d = 0; d < shape.size(); ++d) {
      int64_t index = (i / out_strides[d]) % shape[d];
      if (static_cast<int>(d) == dim) index += start;
      src += index * in_strides[d];
    }
    out[i] = t[src];
  }
  return out;
}

// `parts` concatenated along `dim`.
Tensor concat_along(const std::vector<Tensor>& parts, int dim) {
  ir::Shape shape = parts[0].shape;
  shape[dim] = 0;
  for (const Tensor& p : parts) shape[dim] += p.shape[dim];
  Tensor out(shape);
  const auto out_strides = strides_of(shape);
  for (int64_t i = 0; i < out.numel(); ++i) {
    std::vector<int64_t> index(shape.size());
    for (size_t d = 0; d < shape.size(); ++d) index[d] = (i / out_strides[d]) % shape[d];
    size_t part = 0;
    while (index[dim] >= parts[part].shape[dim]) index[dim] -= parts[part++].shape[dim];
    const auto in_strides = strides_of(parts[part].shape);
    int64_t src = 0;
    for (size_t d = 0; d < shape.size(); ++d) src += index[d] * in_strides[d];
    out[i] = parts[part][src];
  }
  return out;
}

struct Checker {
  runtime::Backend& backend;
  int world_rank = 0;
  int passed = 0, failed = 0;

  void expect(const std::string& what, const Expected<Tensor>& got, const Tensor& want) {
    std::string problem;
    if (!got) {
      problem = got.error().message();
    } else if (got->shape != want.shape) {
      problem = "shape " + ir::shape_string(got->shape) + ", expected " + ir::shape_string(want.shape);
    } else {
      for (int64_t i = 0; i < want.numel() && problem.empty(); ++i) {
        if ((*got)[i] != want[i]) {
          problem = "element " + std::to_string(i) + " is " + std::to_string((*got)[i]) + ", expected " +
                    std::to_string(want[i]);
        }
      }
    }
    if (problem.empty()) {
      ++passed;
    } else {
      ++failed;
      std::printf("rank %d: FAILED %s: %s\n", world_rank, what.c_str(), problem.c_str());
      std::fflush(stdout);
    }
  }

  Expected<Tensor> result(const Expected<runtime::TensorPtr>& t) {
    if (!t) return t.error();
    return backend.download(**t);
  }
};

// Group rank g's input: integers in [-5, 5], different per group, rank and element.
Tensor input_of(const ir::Shape& shape, int color, int g) {
  Tensor t(shape);
  for (int64_t i = 0; i < t.numel(); ++i) t[i] = static_cast<double>((color * 5 + g * 7 + i * 3) % 11 - 5);
  return t;
}

void check_group(Checker& c, MPI_Comm comm, int color, const std::string& label) {
  int g = 0, n = 1;
  MPI_Comm_rank(comm, &g);
  MPI_Comm_size(comm, &n);
  auto made = c.backend.communicator(comm);
  if (!made) {
    c.expect(label + " communicator", Expected<Tensor>(made.error()), Tensor());
    return;
  }
  runtime::Communicator& comm_ = **made;
  const ir::Shape shape{2 * n, 3 * n, n};
  std::vector<Tensor> inputs;
  for (int r = 0; r < n; ++r) inputs.push_back(input_of(shape, color, r));
  Tensor sum(shape);
  for (const Tensor& x : inputs)
    for (int64_t i = 0; i < sum.numel(); ++i) sum[i] += x[i];

  for (const DType dtype : {DType::f32, DType::bf16, DType::i32}) {
    const std::string tag = label + " " + dtype_name(dtype);
    auto upload = [&]() { return c.backend.upload(inputs[static_cast<size_t>(g)], dtype); };
    {
      auto t = upload();
      Status s = t ? comm_.all_reduce(**t) : Status(t.error());
      c.expect(tag + " all_reduce", s.is_ok() ? c.backend.download(**t) : Expected<Tensor>(s.error()), sum);
    }
    {
      // Started, then a blocking all-reduce issued while it is in flight, then waited for (on
      // NCCL: a second communicator and stream beside the blocking one's).
      auto t = upload();
      auto between = upload();
      Status s = t && between ? Status::ok() : Status(make_error("", "upload", "failed"));
      std::unique_ptr<runtime::Request> request;
      if (s.is_ok()) {
        auto started = comm_.all_reduce_async(*t);
        if (started) request = std::move(*started);
        else s = started.error();
      }
      if (s.is_ok()) s = comm_.all_reduce(**between);
      if (s.is_ok()) s = request->wait();
      c.expect(tag + " all_reduce_async", s.is_ok() ? c.backend.download(**t) : Expected<Tensor>(s.error()), sum);
      c.expect(tag + " all_reduce beside all_reduce_async",
               s.is_ok() ? c.backend.download(**between) : Expected<Tensor>(s.error()), sum);
    }
    for (int dim = 0; dim < 3; ++dim) {
      const std::string d = std::to_string(dim);
      auto t = upload();
      if (!t) {
        c.expect(tag + " upload", Expected<Tensor>(t.error()), Tensor());
        continue;
      }
      c.expect(tag + " all_gather dim " + d, c.result(comm_.all_gather(**t, dim)), concat_along(inputs, dim));
      const int64_t block = shape[dim] / n;
      c.expect(tag + " reduce_scatter dim " + d, c.result(comm_.reduce_scatter(**t, dim)),
               slice_along(sum, dim, g * block, block));
      for (int concat = 0; concat < 3; ++concat) {
        std::vector<Tensor> received;
        for (int r = 0; r < n; ++r) received.push_back(slice_along(inputs[static_cast<size_t>(r)], dim, g * block, block));
        c.expect(tag + " all_to_all split " + d + " concat " + std::to_string(concat),
                 c.result(comm_.all_to_all(**t, dim, concat)), concat_along(received, concat));
      }
    }
    // A ring: send to g + 1, receive from g - 1, tag 5 (and a decoy message with tag 6 first).
    auto t = upload();
    auto decoy = c.backend.upload(Tensor(shape, 9.0), dtype);
    auto landing = c.backend.upload(Tensor(shape, 0.0), dtype);
    auto decoy_landing = c.backend.upload(Tensor(shape, 0.0), dtype);
    if (!t || !decoy || !landing || !decoy_landing) {
      c.expect(tag + " ring upload", Expected<Tensor>(make_error("", "", "upload failed")), Tensor());
      continue;
    }
    const int next = (g + 1) % n, prev = (g + n - 1) % n;
    auto send_decoy = comm_.isend(*decoy, next, 6);
    auto send = comm_.isend(*t, next, 5);
    auto recv = comm_.irecv(*landing, prev, 5);
    auto recv_decoy = comm_.irecv(*decoy_landing, prev, 6);
    Status s = Status::ok();
    for (auto* r : {&send_decoy, &send, &recv, &recv_decoy}) {
      if (!*r) s = Status((*r).error());
      else if (Status w = (**r)->wait(); !w.is_ok()) s = w;
    }
    c.expect(tag + " send/recv tag 5", s.is_ok() ? c.backend.download(**landing) : Expected<Tensor>(s.error()),
             inputs[static_cast<size_t>(prev)]);
    c.expect(tag + " send/recv tag 6", s.is_ok() ? c.backend.download(**decoy_landing) : Expected<Tensor>(s.error()),
             Tensor(shape, 9.0));
  }
}

int run(int argc, char** argv) {
  int rank = 0, world = 1;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  std::string backend_name = "cpu";
  for (int i = 1; i + 1 < argc; i += 2) {
    const std::string key = argv[i], value = argv[i + 1];
    if (key == "--backend") {
      backend_name = value;
    } else if (key == "--collectives") {
      auto c = runtime::parse_collectives(value);
      if (!c) {
        if (rank == 0) std::fprintf(stderr, "collectives_check: %s\n", c.error().message().c_str());
        return 2;
      }
      setenv("STRATA_CUDA_COLLECTIVES", value.c_str(), 1);
    } else {
      if (rank == 0) std::fprintf(stderr, "collectives_check: %s: unknown flag\n", key.c_str());
      return 2;
    }
  }
  int local_rank = rank;
  if (const char* env = std::getenv("OMPI_COMM_WORLD_LOCAL_RANK")) local_rank = std::atoi(env);
  auto backend = runtime::make_backend(backend_name, local_rank);
  if (!backend) {
    std::fprintf(stderr, "collectives_check: rank %d: %s\n", rank, backend.error().message().c_str());
    return 2;
  }
  Checker c{**backend, rank};
  check_group(c, MPI_COMM_WORLD, 0, "world");
  if (world >= 2 && world % 2 == 0) {
    MPI_Comm half = MPI_COMM_NULL;
    MPI_Comm_split(MPI_COMM_WORLD, rank % 2, rank, &half);
    check_group(c, half, 1 + rank % 2, "half " + std::to_string(rank % 2));
    MPI_Comm_free(&half);
  }
  int counts[2] = {c.passed, c.failed}, totals[2] = {0, 0};
  MPI_Reduce(counts, totals, 2, MPI_INT, MPI_SUM, 0, MPI_COMM_WORLD);
  if (rank == 0) {
    std::printf("collectives check: %s on %d rank(s): %d passed, %d failed\n", backend_name.c_str(), world, totals[0],
                totals[1]);
  }
  return totals[1] == 0 ? 0 : 1;
}

}  // namespace

int main(int argc, char** argv) {
  MPI_Init(&argc, &argv);
  const int rc = run(argc, argv);
  int all = 0;
  MPI_Allreduce(&rc, &all, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  MPI_Finalize();
  return all;
}
