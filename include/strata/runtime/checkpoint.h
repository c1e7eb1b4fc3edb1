// Checkpoints: the whole training state of every rank in HDF5, written so that a crash at any
// moment leaves the last good checkpoint in place, and found again by latest_checkpoint().
//
// Layout on disk (one file per rank per step; no rank ever waits for another to save):
//
//   DIR/step-000000120/rank-00000.h5     rank 0's state after 120 optimizer steps
//   DIR/step-000000120/rank-00001.h5     ...
//   DIR/step-000000120/rank-00003.h5.tmp.<pid>   a write in progress (or one that crashed): ignored
//
// Each rank's file is written to a temporary name in the step directory, flushed and fsync'ed,
// renamed into place, and then the directory is fsync'ed. The `complete` attribute is the last
// thing written before the file is closed. So a rank file under its final name is whole, and a
// step is complete exactly when the files of ranks 0 .. world_size-1 are all there, open as HDF5,
// carry complete = 1 and agree on the step, the world size and the plan hash. latest_checkpoint()
// returns the highest complete step and skips (and reports) the incomplete ones, so a job killed
// while some ranks were still saving resumes from the step before.
//
// File contents (readable with h5dump/h5py): root attributes format = "strata-checkpoint",
// version, plan_hash, step, data_position, rank, world_size, num_tensors, complete; one dataset
// per tensor, /tensors/t<index>, holding this rank's local tile in the tensor's dtype, with
// attributes name, sharding, dtype and global_shape. Names are free text (op names may hold
// '/' or '.'), which is why they are attributes and not HDF5 paths.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "strata/core/dtype.h"
#include "strata/core/status.h"
#include "strata/interp/interp.h"
#include "strata/plan/plan.h"

namespace strata::runtime {

// One tensor of a rank's state: a parameter's or an optimizer state's local tile.
struct CheckpointTensor {
  std::string name;                   // unique in the file, e.g. "param/embed.token", "adam_m/embed.token"
  std::string sharding;               // the tile's sharding spec as text, e.g. "S0R" (free text)
  std::vector<int64_t> global_shape;  // the whole tensor's shape (the tile's is value.shape)
  DType dtype = DType::f32;           // stored as: f64 -> float64, i32 -> int32, other floats -> float32
  interp::Tensor value;               // this rank's tile
};

// Everything a rank needs to continue training exactly where it stopped.
struct TrainingState {
  std::string plan_hash;      // plan_hash() of the plan that produced the tiles
  int64_t step = 0;           // optimizer steps completed
  int64_t data_position = 0;  // TokenSource::position() after those steps (data.h)
  int rank = 0;               // MPI world rank that owns the tiles
  int world_size = 1;
  std::vector<CheckpointTensor> tensors;
};

// A short stable fingerprint of a plan ("fnv1a64:" + 16 hex digits) over plan_to_yaml(plan), so
// a checkpoint of another plan, or of the same plan edited, is refused.
std::string plan_hash(const plan::Plan& plan);
// The same fingerprint of any text (what plan_hash uses).
std::string text_hash(const std::string& text);

// DIR/step-<9 digits> and DIR/step-<9 digits>/rank-<5 digits>.h5.
std::string checkpoint_step_dir(const std::string& dir, int64_t step);
std::string checkpoint_rank_file(const std::string& dir, int64_t step, int rank);

// Fault injection for tests: called with the temporary file's path after it is written and
// fsync'ed but before it is renamed into place (a test may crash the process there).
struct SaveHooks {
  std::function<void(const std::string& temp_path)> before_rename;
};

// Writes `state` as rank state.rank's file of step state.step under `dir` (directories are
// created), atomically as described above. Overwrites an older file of the same step and rank.
// Errors (unwritable dir, full disk, duplicate tensor names, a tile whose size differs from its
// shape) name the file and the field.
Status save_checkpoint(const std::string& dir, const TrainingState& state, const SaveHooks& hooks = {});

struct CheckpointInfo {
  int64_t step = 0;
  int world_size = 0;
  std::string plan_hash;
  std::string step_dir;               // DIR/step-<N>
  std::vector<std::string> skipped;   // newer steps passed over, each with why ("step 130: rank 3's file is missing")
};

// The newest complete step under `dir`, or nullopt when `dir` does not exist or holds none.
// Every rank may call it at start-up: with no save in flight all ranks see the same answer.
// An error only when `dir` exists but cannot be listed (or is not a directory).
Expected<std::optional<CheckpointInfo>> latest_checkpoint(const std::string& dir);

// What the loading rank expects; a checkpoint that differs is refused with an error naming the
// file and the field (a checkpoint of another plan, or saved by a different number of ranks).
struct CheckpointExpectation {
  std::string plan_hash;  // required
  int rank = 0;
  int world_size = 1;
};

// Reads rank expect.rank's file of `step` under `dir`. Truncated, partial or foreign files are
// errors, never a crash.
Expected<TrainingState> load_checkpoint(const std::string& dir, int64_t step, const CheckpointExpectation& expect);

// Removes this rank's files (and its temporary files) of every step newer than `step`; rank 0
// also removes the emptied step directories. Call it on resume, after every rank has read
// latest_checkpoint(): the newer steps are incomplete, so this keeps their answer unchanged, and
// a later save can never complete such a step with files left over from the lost run.
// step = -1 discards every step.
Status discard_checkpoints_after(const std::string& dir, int64_t step, int rank);

// Keeps the newest `keep` complete steps: deletes this rank's files (and its leftover temporary
// files) of every step older than the oldest of them; rank 0 also removes the emptied step
// directories (on a later call when other ranks were still deleting). Never touches the kept steps
// or anything newer, so a crash of another rank mid-save still leaves a checkpoint to resume from.
// keep >= 1.
Status prune_checkpoints(const std::string& dir, int rank, int keep);

}  // namespace strata::runtime
