// `strata train`: runs a plan with strategies under mpirun/srun, one rank per device, and logs
// loss, step time and tokens/s on rank 0. Data: --data (a uint16 token file or any text as byte
// tokens), else a synthetic, learnable stream (each sequence counts upward from a random start
// modulo the vocabulary). --checkpoint DIR saves every rank's tiles; --resume continues from the
// newest complete step with the data stream, Adam's step and the lr schedule where they were.
#include <unistd.h>

#include <chrono>
#include <condition_variable>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <mutex>
#include <optional>
#include <random>
#include <string>
#include <thread>

#include "cli/commands.h"
#include "cli/common.h"
#include "strata/core/args.h"
#include "strata/core/units.h"
#include "strata/plan/plan.h"
#include "strata/runtime/checkpoint.h"
#include "strata/runtime/cuda_backend.h"
#include "strata/runtime/data.h"
#include "strata/runtime/executor.h"
#include "strata/runtime/train.h"

namespace strata::cli {
namespace {

// Sequences of seq_len + 1 tokens for one step, the same on every rank.
std::vector<int64_t> synthetic_sequences(int64_t batch, int64_t seq_len, int64_t vocab, uint64_t seed, int64_t step) {
  std::mt19937_64 rng(seed * 1000003 + static_cast<uint64_t>(step));
  std::vector<int64_t> tokens;
  for (int64_t b = 0; b < batch; ++b) {
    const int64_t start = static_cast<int64_t>(rng() % static_cast<uint64_t>(vocab));
    for (int64_t s = 0; s <= seq_len; ++s) tokens.push_back((start + s) % vocab);
  }
  return tokens;
}

int local_rank() {
  MPI_Comm node = MPI_COMM_NULL;
  int rank = 0;
  if (MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, 0, MPI_INFO_NULL, &node) == MPI_SUCCESS) {
    MPI_Comm_rank(node, &rank);
    MPI_Comm_free(&node);
  }
  return rank;
}

// A failure during the steps is this rank's alone: the other ranks may be blocked in a transfer or
// collective with it, so the job ends here (mpirun then stops every rank and exits non-zero).
[[noreturn]] void abort_job(int rank, const Error& error) {
  std::fprintf(stderr, "strata train: rank %d: %s\n", rank, error.message().c_str());
  std::fflush(stderr);
  std::fflush(stdout);
  MPI_Abort(MPI_COMM_WORLD, kExitFailure);
  std::_Exit(kExitFailure);  // MPI_Abort does not return; in case it does
}

// Ends the process when one step runs longer than the timeout: a peer that died or hung leaves
// this rank blocked in MPI, which no MPI error would end. Exiting without MPI_Finalize makes
// mpirun stop the job. The thread makes no MPI call.
class Watchdog {
 public:
  Watchdog(int rank, int64_t timeout_seconds) : rank_(rank), timeout_(timeout_seconds) {
    if (timeout_ > 0) thread_ = std::thread([this] { watch(); });
  }
  ~Watchdog() {
    {
      std::lock_guard<std::mutex> lock(mutex_);
      stop_ = true;
    }
    wake_.notify_all();
    if (thread_.joinable()) thread_.join();
  }
  void arm(int64_t step) {
    std::lock_guard<std::mutex> lock(mutex_);
    step_ = step;
    deadline_ = std::chrono::steady_clock::now() + std::chrono::seconds(timeout_);
    armed_ = true;
    wake_.notify_all();
  }
  void disarm() {
    std::lock_guard<std::mutex> lock(mutex_);
    armed_ = false;
  }

 private:
  void watch() {
    std::unique_lock<std::mutex> lock(mutex_);
    while (!stop_) {
      if (!armed_) {
        wake_.wait(lock);
        continue;
      }
      if (wake_.wait_until(lock, deadline_) == std::cv_status::timeout && armed_ && !stop_ &&
          std::chrono::steady_clock::now() >= deadline_) {
        std::fprintf(stderr,
                     "strata train: rank %d: --comm-timeout: step %lld made no progress in %lld s (another rank "
                     "died or hangs)\n",
                     rank_, static_cast<long long>(step_), static_cast<long long>(timeout_));
        std::fflush(stderr);
        _exit(kExitFailure);
      }
    }
  }

  int rank_;
  int64_t timeout_;
  std::thread thread_;
  std::mutex mutex_;
  std::condition_variable wake_;
  bool stop_ = false, armed_ = false;
  int64_t step_ = 0;
  std::chrono::steady_clock::time_point deadline_;
};

// Test hook (docs/runtime.md): STRATA_FAULT_RANK=R STRATA_FAULT_STEP=S make rank R fail at the
// start of step S, as a kernel or transfer error on one rank would.
Status injected_fault(int rank, int64_t step) {
  const char* fault_rank = std::getenv("STRATA_FAULT_RANK");
  const char* fault_step = std::getenv("STRATA_FAULT_STEP");
  if (fault_rank == nullptr || fault_step == nullptr) return Status::ok();
  if (std::atoll(fault_rank) != rank || std::atoll(fault_step) != step) return Status::ok();
  return make_error("", "STRATA_FAULT_STEP", "injected fault at step " + std::to_string(step) + " (test hook)");
}

// --trace: every rank's instruction events, gathered to rank 0 and written there as Chrome/Perfetto
// trace JSON, one event a line (pid = rank, tid = stage; times in microseconds since the first step).
Status write_trace(const std::string& path, const std::vector<runtime::TraceEvent>& events, int rank, int stage,
                   int world) {
  std::string mine;
  char line[512];
  std::snprintf(line, sizeof(line), "{\"name\":\"process_name\",\"ph\":\"M\",\"pid\":%d,\"args\":{\"name\":\"rank %d (stage %d)\"}}",
                rank, rank, stage);
  mine += line;
  for (const runtime::TraceEvent& e : events) {
    std::snprintf(line, sizeof(line),
                  ",\n{\"name\":\"%s\",\"cat\":\"stage %d\",\"ph\":\"X\",\"pid\":%d,\"tid\":%d,\"ts\":%.3f,\"dur\":%.3f,"
                  "\"args\":{\"step\":%lld,\"micro_batch\":%d,\"peer\":%d}}",
                  e.name.c_str(), stage, rank, stage, e.start * 1e6, e.seconds * 1e6, static_cast<long long>(e.step),
                  e.micro_batch, e.peer);
    mine += line;
  }
  int length = static_cast<int>(mine.size());
  std::vector<int> lengths(static_cast<size_t>(world)), offsets(static_cast<size_t>(world));
  STRATA_MPI_CALL(MPI_Gather(&length, 1, MPI_INT, lengths.data(), 1, MPI_INT, 0, MPI_COMM_WORLD));
  std::string all;
  if (rank == 0) {
    int64_t total = 0;
    for (int r = 0; r < world; ++r) {
      offsets[r] = static_cast<int>(total);
      total += lengths[r];
    }
    if (total > (int64_t{1} << 30)) return make_error(path, "--trace", "trace too large to gather");
    all.resize(static_cast<size_t>(total));
  }
  STRATA_MPI_CALL(MPI_Gatherv(mine.data(), length, MPI_CHAR, all.data(), lengths.data(), offsets.data(), MPI_CHAR, 0,
                                 MPI_COMM_WORLD));
  if (rank != 0) return Status::ok();
  std::string text = "{\"displayTimeUnit\":\"ms\",\"traceEvents\":[\n";
  for (int r = 0; r < world; ++r) {
    if (r > 0) text += ",\n";
    text.append(all, static_cast<size_t>(offsets[r]), static_cast<size_t>(lengths[r]));
  }
  text += "\n]}\n";
  return write_file_atomically(path, text);
}

// The --lr-* flags replace the plan's schedule keys (as Megatron-LM's flags set its schedule); the
// result obeys the plan's rules, an error naming the flag when the key came from one. The plan hash
// covers the schedule, so --resume needs the same flags.
Status override_schedule(const ArgParser& args, plan::Training& training, const std::string& plan_file) {
  const std::map<std::string, std::string> flag_of = {{"warmup_steps", "lr-warmup-steps"},
                                                      {"decay", "lr-decay"},
                                                      {"decay_steps", "lr-decay-steps"},
                                                      {"min_lr", "min-lr"}};
  for (auto [flag, value] : {std::pair{"lr-warmup-steps", &training.warmup_steps}, {"lr-decay-steps", &training.decay_steps}}) {
    if (!args.has(flag)) continue;
    STRATA_ASSIGN_OR_RETURN(*value, args.get_int(flag, 0));
  }
  if (args.has("lr-decay")) training.decay = args.get("lr-decay");
  if (args.has("min-lr")) {
    STRATA_ASSIGN_OR_RETURN(training.min_lr, args.get_double("min-lr", 0));
  }
  Status valid = plan::validate_schedule(training);
  if (valid) return valid;
  const std::string& flag = flag_of.at(valid.error().field);
  if (args.has(flag)) return make_error("", "--" + flag, valid.error().reason);
  return valid.error().under("training").in_file(plan_file);
}

int train_on_rank(const ArgParser& args, int rank) {
  auto fail = [&](const Error& error, int code) {
    // Errors that every rank sees alike are printed once, by rank 0.
    if (rank != 0) return code;
    return report_failure("train", error, code);
  };
  auto steps = args.get_int("steps", 10);
  auto log_every = args.get_int("log-every", 1);
  auto checkpoint_every = args.get_int("checkpoint-every", 0);
  auto seed = args.get_int("seed", 0);
  auto comm_timeout = args.get_int("comm-timeout", 600);
  for (const auto* value : {&steps, &log_every, &checkpoint_every, &seed, &comm_timeout}) {
    if (!*value) return fail(value->error(), kExitBadInput);
  }
  if (*steps < 1) return fail(make_error("", "--steps", "must be at least 1"), kExitBadInput);
  if (*log_every < 1) return fail(make_error("", "--log-every", "must be at least 1"), kExitBadInput);
  if (*checkpoint_every < 0) return fail(make_error("", "--checkpoint-every", "must not be negative"), kExitBadInput);
  if (*comm_timeout < 0) return fail(make_error("", "--comm-timeout", "must not be negative"), kExitBadInput);
  const std::string checkpoint_dir = args.get("checkpoint");
  if (args.has("resume") && checkpoint_dir.empty()) {
    return fail(make_error("", "--resume", "needs --checkpoint DIR to resume from"), kExitBadInput);
  }
  auto plan = plan::read_plan(args.get("plan"));
  if (!plan) return fail(plan.error(), kExitBadInput);
  if (Status overridden = override_schedule(args, plan->training, plan->source_file); !overridden) {
    return fail(overridden.error(), kExitBadInput);
  }
  auto model = runtime::load_planned_model(*plan);
  if (!model) return fail(model.error(), kExitBadInput);
  const models::ModelSpec& spec = model->spec;
  if (spec.family != models::Family::gpt && spec.family != models::Family::moe) {
    return fail(make_error(spec.file, "model.family", std::string("strata train feeds token models (gpt, moe), not ") +
                                                          models::family_name(spec.family)),
                kExitBadInput);
  }
  // Every rank reads the whole global batch and feeds its devices' tiles of it.
  std::optional<runtime::TokenSource> data;
  if (args.has("data")) {
    runtime::DataOptions options;
    options.path = args.get("data");
    options.global_batch = spec.global_batch;
    options.seq_len = spec.seq_len;
    options.vocab = spec.vocab;
    options.seed = static_cast<uint64_t>(*seed);
    auto opened = runtime::TokenSource::open(options);
    if (!opened) return fail(opened.error(), kExitBadInput);
    data = std::move(*opened);
  }
  const std::string backend_name = args.get("backend", "cpu");
  if (args.has("collectives")) {
    auto collectives = runtime::parse_collectives(args.get("collectives"));
    if (!collectives) return fail(collectives.error(), kExitBadInput);
    if (backend_name != "cuda" && *collectives != runtime::Collectives::mpi) {
      return fail(make_error("", "--collectives", "nccl needs --backend cuda (the " + backend_name +
                                                      " backend's collectives are MPI)"),
                  kExitBadInput);
    }
    // The cuda backend reads its options from the environment (runtime/cuda_backend.h).
    if (backend_name == "cuda") setenv("STRATA_CUDA_COLLECTIVES", runtime::collectives_name(*collectives), 1);
  }
  auto backend = runtime::make_backend(backend_name, local_rank());
  if (!backend) return fail(backend.error(), kExitBadInput);
  auto exec = runtime::Executor::create(model->training_graph, *plan, **backend, MPI_COMM_WORLD,
                                        static_cast<uint64_t>(*seed));
  if (!exec) return fail(exec.error(), kExitBadInput);
  int world = 1;
  MPI_Comm_size(MPI_COMM_WORLD, &world);
  const std::string hash = runtime::plan_hash(*plan);

  int64_t done = 0;  // optimizer steps completed before this run
  if (args.has("resume")) {
    auto latest = runtime::latest_checkpoint(checkpoint_dir);
    if (!latest) return fail(latest.error(), kExitBadInput);
    if (*latest) {
      auto state = runtime::load_checkpoint(checkpoint_dir, (*latest)->step, {hash, rank, world});
      Status loaded = state ? (*exec)->load_local_state(state->tensors) : Status(state.error());
      if (!loaded) return fail(loaded.error(), kExitBadInput);
      done = state->step;
      if (data) {
        if (Status sought = data->seek(state->data_position); !sought) return fail(sought.error(), kExitBadInput);
      }
      if (Status discarded = runtime::discard_checkpoints_after(checkpoint_dir, done, rank); !discarded)
        return fail(discarded.error(), kExitFailure);
      if (rank == 0) std::printf("# resumed from %s (step %lld)\n", (*latest)->step_dir.c_str(), static_cast<long long>(done));
    } else if (rank == 0) {
      std::printf("# no checkpoint under %s: starting at step 1\n", checkpoint_dir.c_str());
    }
  }
  auto save = [&](int64_t step) -> Status {
    runtime::TrainingState state;
    state.plan_hash = hash;
    state.step = step;
    state.data_position = data ? data->position() : step;
    state.rank = rank;
    state.world_size = world;
    STRATA_ASSIGN_OR_RETURN(state.tensors, (*exec)->local_state());
    STRATA_RETURN_IF_ERROR(runtime::save_checkpoint(checkpoint_dir, state));
    return runtime::prune_checkpoints(checkpoint_dir, rank, 2);
  };

  const double tokens_per_step = static_cast<double>(spec.global_batch * spec.seq_len);
  // Model FLOPs per device: the training graph's forward and backward ops (at micro-batch size,
  // counted as `strata inspect` counts them: the attention's full square, whatever the runtime
  // skips; no optimizer) times the micro-batches, over the ranks.
  double flops_per_device = 0;
  for (ir::OpId id = 0; id < model->training_graph.num_ops(); ++id) {
    if (model->training_graph.op(id).role != ir::Role::update) flops_per_device += model->training_graph.op_flops(id);
  }
  flops_per_device *= static_cast<double>(plan->num_micro_batches) / world;
  if (rank == 0) {
    std::printf("# strata train: %s on %d stage(s), %d rank(s), backend %s, %d micro-batch(es) of %lld, data %s\n",
                spec.name.c_str(), plan->num_stages(), world, (*backend)->name().c_str(), plan->num_micro_batches,
                static_cast<long long>(plan->micro_batch_size()), data ? data->options().path.c_str() : "synthetic");
    if (plan::has_schedule(plan->training)) {
      const plan::Training& t = plan->training;
      std::printf("# lr: warmup over %lld step(s) to %g, then %s", static_cast<long long>(t.warmup_steps), t.lr,
                  t.decay.c_str());
      if (t.decay != "constant") std::printf(" decay to %g at step %lld", t.min_lr, static_cast<long long>(t.decay_steps));
      std::printf("\n");
    }
    std::printf("%6s %12s %10s %12s %12s %12s\n", "step", "loss", "seconds", "tokens/s", "TFLOP/s/dev", "lr");
  }
  double first_loss = 0, last_loss = 0;
  Watchdog watchdog(rank, *comm_timeout);
  const bool tracing = args.has("trace");
  if (tracing) {
    MPI_Barrier(MPI_COMM_WORLD);  // a common origin: ranks of one node share the clock
    (*exec)->set_trace(true, MPI_Wtime());
  }
  for (int64_t step = done + 1; step <= *steps; ++step) {
    const std::vector<int64_t> tokens =
        data ? runtime::window_tokens(data->next())
             : synthetic_sequences(spec.global_batch, spec.seq_len, spec.vocab, static_cast<uint64_t>(*seed), step);
    auto inputs = runtime::language_model_inputs(tokens, spec.global_batch, spec.seq_len);
    if (!inputs) abort_job(rank, inputs.error());
    if (Status fault = injected_fault(rank, step); !fault) abort_job(rank, fault.error());
    watchdog.arm(step);
    auto result = (*exec)->step(runtime::feeder_of(*inputs), step);
    watchdog.disarm();
    if (!result) abort_job(rank, result.error());
    if (step == done + 1) first_loss = result->loss;
    last_loss = result->loss;
    if (rank == 0 && (step % *log_every == 0 || step == *steps)) {
      std::printf("%6lld %12.6f %10.4f %12.1f %12.4g %12.6g\n", static_cast<long long>(step), result->loss,
                  result->seconds, tokens_per_step / result->seconds, flops_per_device / result->seconds / 1e12,
                  plan::learning_rate(plan->training, step));
      std::fflush(stdout);
    }
    const bool periodic = *checkpoint_every > 0 && step % *checkpoint_every == 0;
    if (!checkpoint_dir.empty() && (periodic || step == *steps)) {
      if (Status saved = save(step); !saved) abort_job(rank, output_error(saved.error(), "checkpoint"));
    }
  }
  if (tracing) {
    if (Status traced = write_trace(args.get("trace"), (*exec)->take_trace(), rank, (*exec)->stage(), world); !traced)
      abort_job(rank, output_error(traced.error(), "trace"));
  }
  if (rank == 0 && done < *steps) {
    std::printf("# loss %.6f -> %.6f over steps %lld..%lld\n", first_loss, last_loss, static_cast<long long>(done + 1),
                static_cast<long long>(*steps));
  }
  return 0;
}

}  // namespace

int run_train(int argc, char** argv) {
  ArgParser args("train", "train a plan (with strategies) under mpirun/srun, one rank per device");
  args.option("plan", "plan with per-op strategies (YAML, docs/plan_format.md)", "plan.yaml")
      .option("backend", "cpu (MPI, fp32) or cuda (needs a CUDA build)", "NAME")
      .option("collectives", "cuda backend: nccl (default; one rank per GPU) or mpi (host-staged through MPI: "
              "ranks may share a GPU, no NCCL needed)", "NAME")
      .option("steps", "optimizer steps to run (default 10)", "N")
      .option("seed", "seed of the initial weights and the synthetic data (default 0)", "N")
      .option("log-every", "log every K steps (default 1)", "K")
      .option("data", "training tokens: a .bin of uint16 ids or any text file as byte tokens", "FILE")
      .option("checkpoint", "save every rank's state under this directory (at the end, and see --checkpoint-every)", "DIR")
      .option("checkpoint-every", "also save every N steps (default 0: only at the end)", "N")
      .flag("resume", "continue from the newest complete checkpoint under --checkpoint")
      .option("trace", "write every rank's executor instructions as Chrome/Perfetto trace JSON (on rank 0)", "t.json")
      .option("lr-warmup-steps", "override the plan's training.warmup_steps: lr rises linearly over steps 1..N", "N")
      .option("lr-decay", "override training.decay: constant, linear or cosine (after the warmup)", "STYLE")
      .option("lr-decay-steps", "override training.decay_steps: the step the decay reaches --min-lr, warmup included", "N")
      .option("min-lr", "override training.min_lr: where a linear or cosine decay ends", "LR")
      .option("comm-timeout", "end the job when one step takes longer (a dead or hung rank; default 600, 0: never)", "S")
      .required("plan");
  Status parsed = args.parse(argc, argv);
  if (args.help_requested()) {
    std::printf("%s", args.help_text().c_str());
    return 0;
  }
  if (!parsed.is_ok()) return report_failure("train", parsed.error(), kExitBadInput);
  if (Status status = check_input_file(args.get("plan"), "plan"); !status)
    return report_failure("train", status.error(), kExitBadInput);
  if (args.has("trace")) {
    if (Status status = check_output_file(args.get("trace"), "trace"); !status)
      return report_failure("train", status.error(), kExitBadInput);
  }
  int provided = 0;  // the --comm-timeout watchdog is a second thread that makes no MPI call
  if (MPI_Init_thread(&argc, &argv, MPI_THREAD_FUNNELED, &provided) != MPI_SUCCESS) {
    std::fprintf(stderr, "strata train: MPI_Init failed\n");
    return kExitFailure;
  }
  int rank = 0;
  MPI_Comm_rank(MPI_COMM_WORLD, &rank);
  const int code = train_on_rank(args, rank);
  MPI_Finalize();
  return code;
}

}  // namespace strata::cli
