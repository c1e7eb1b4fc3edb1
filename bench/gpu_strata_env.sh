# Sourced by the bench scripts that run `strata` on a one-GPU machine (gpt_gpu_train.sh,
# gpu_fidelity.sh), with $src set to the source tree: builds strata with CUDA through
# gpt_gpu_run.sh's build stage, then sets $strata, $mpi (one rank) and the library path of the
# unpacked lp_solve.
export NCCL_NVLS_ENABLE=0
TARGETS=strata bash "$src/bench/gpt_gpu_run.sh" "$src" configs/models/gpt-tiny.yaml 8 build || exit 1
strata=/tmp/strata-build/strata
export LD_LIBRARY_PATH=/tmp/lp/usr/lib/x86_64-linux-gnu:${LD_LIBRARY_PATH:-}
mpi="mpirun --allow-run-as-root -np 1 -x NCCL_NVLS_ENABLE -x LD_LIBRARY_PATH"
